//! Importing a household register: every row checked with the phone's own rules (vocabularies
//! from `gridsync_core::vocab`, the ID number's check character, phones, the record's
//! validation), rows grouped into households (by 户号, else by grid and head of household),
//! matched against what is stored (households on 户号 or the head's ID number, residents on
//! ID number, else on name within the household), and written through the merge path as the
//! import device, under an actor of this run, so each change names the run that made it.
//!
//! **Invariant:** a bad row changes nothing and is reported with its row, column and reason;
//! the good rows are imported. Importing the same file again writes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use automerge::ActorId;
use gridsync_core::document::{Document, fresh_actor};
use gridsync_core::records::{Household, Relation, Residence, Resident, ResidentStatus};
use gridsync_core::validate::{check_id_number, check_phone, parse_date};
use gridsync_core::vocab;
use gridsync_core::workflow::Role;
use gridsync_proto::{AckStatus, DocId, DocPush, GridCode, RecordId};
use serde::Serialize;
use serde_bytes::ByteBuf;
use sha2::Digest;

use super::columns::{Field, Layout, Mapping, layout};
use super::read::{Cell, FileKind, ReadError, Row, read};
use crate::auth::Device;
use crate::storage::{ImportRun, ImportState, Receipt, Service, Storage, StorageError};

/// What to import and how.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The file's name (its extension says how to read it; the import log keeps it).
    pub file_name: String,
    /// Columns, sheet and header row, where the defaults do not fit.
    pub mapping: Mapping,
    /// The grid of rows that name none (a register kept per grid has no grid column).
    pub default_grid: Option<GridCode>,
    /// Check and match everything, write nothing.
    pub dry_run: bool,
    /// Who runs the import (kept in the import log).
    pub operator: String,
}

/// One refused row: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// The row number the spreadsheet shows.
    pub row: usize,
    /// The column's header in the file (or the field's usual header when the file lacks it).
    pub column: String,
    /// The register field (`id_number`, ...).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// What an import did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    /// The file's name.
    pub file: String,
    /// The sheet read.
    pub sheet: String,
    /// A CSV file's encoding (`utf-8`, `gbk`).
    pub encoding: String,
    /// The header row's number.
    pub header_row: usize,
    /// Field key → the header it was read from.
    pub columns: BTreeMap<String, String>,
    /// Headers of columns not read: a second column of a field already read (name the one
    /// wanted in a mapping file).
    pub ignored_columns: Vec<String>,
    /// Data rows (blank lines not counted).
    pub rows: usize,
    /// Blank lines skipped.
    pub blank_rows: usize,
    /// Rows imported (or found already there).
    pub good_rows: usize,
    /// Rows refused.
    pub bad_rows: usize,
    /// Households created.
    pub households_created: usize,
    /// Households changed.
    pub households_updated: usize,
    /// Households found as the file has them.
    pub households_unchanged: usize,
    /// Residents added.
    pub residents_created: usize,
    /// Residents changed.
    pub residents_updated: usize,
    /// Nothing was written.
    pub dry_run: bool,
    /// Where the time went, in milliseconds: `read` (the file), `check` (rows and grouping),
    /// `match` (against what is stored), `build` (loading and editing documents), `merge`
    /// (the merge path's transactions), `state` (remembering what the register said).
    pub phase_ms: BTreeMap<String, u64>,
    /// The actor this run's changes carry (hex), when it wrote anything.
    pub actor: Option<String>,
    /// Every refused row, in row order (one entry per problem).
    pub errors: Vec<RowError>,
}

/// Why a file could not be imported at all (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The header row or a required column is missing, or the mapping does not fit.
    #[error("{0}")]
    Columns(String),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Households written per merge transaction.
const BATCH: usize = 200;

/// One row, checked and parsed.
#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    number: String,
    grid: GridCode,
    head_name: String,
    name: String,
    id_number: Option<String>,
    relation: Relation,
    gender: Option<String>,
    birth_date: Option<String>,
    phones: Vec<String>,
    address: String,
    registered_address: String,
    work: String,
    categories: Vec<String>,
    residence: Option<Residence>,
    flags: Vec<String>,
}

/// The rows of one household in the file.
#[derive(Debug, Clone)]
struct Group {
    grid: GridCode,
    number: String,
    /// For a household without 户号: its grid and head's name, remembered by the import so a
    /// re-import finds the household it created.
    head_key: Option<String>,
    address: String,
    registered_address: String,
    residence: Option<Residence>,
    flags: BTreeSet<String>,
    entries: Vec<Entry>,
}

impl Group {
    /// The household's own fields, from its rows in order (the first non-empty value wins):
    /// recomputed when rows are refused, so a refused row leaves no trace.
    fn refresh(&mut self) {
        let first = |f: fn(&Entry) -> &String| {
            self.entries
                .iter()
                .map(f)
                .find(|v| !v.is_empty())
                .cloned()
                .unwrap_or_default()
        };
        self.address = first(|e| &e.address);
        self.registered_address = first(|e| &e.registered_address);
        self.residence = self.entries.iter().find_map(|e| e.residence);
        self.flags = self
            .entries
            .iter()
            .flat_map(|e| e.flags.iter().cloned())
            .collect();
    }
}

/// Errors gathered per row.
#[derive(Default)]
struct Errors {
    list: Vec<RowError>,
    bad: BTreeSet<usize>,
}

impl Errors {
    fn add(&mut self, row: usize, layout: &Layout, field: Field, reason: impl Into<String>) {
        self.bad.insert(row);
        self.list.push(RowError {
            row,
            column: layout.header(field),
            field: field.key().to_owned(),
            reason: reason.into(),
        });
    }
}

/// Imports a register file into `storage`; `progress` is told (households done, total) as
/// the writing goes.
pub async fn import_households<S: Storage>(
    storage: &S,
    bytes: &[u8],
    opts: &ImportOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ImportReport, ImportError> {
    let started = std::time::Instant::now();
    let kind = FileKind::from_name(&opts.file_name)?;
    let sheet = read(bytes, kind, opts.mapping.sheet.as_deref())?;
    let read_ms = elapsed_ms(started);
    let layout = layout(&sheet, &opts.mapping).map_err(ImportError::Columns)?;
    for (needed, why) in [
        (
            Field::Relation,
            "to tell the head of household from the members",
        ),
        (Field::Address, "every household needs its address"),
    ] {
        if layout.col(needed).is_none() {
            return Err(ImportError::Columns(format!(
                "no {} column ({why}); name it in a mapping file (--mapping, columns.{})",
                needed.header(),
                needed.key()
            )));
        }
    }
    if layout.col(Field::Grid).is_none() && opts.default_grid.is_none() {
        return Err(ImportError::Columns(
            "no 网格 column: give the grid of the whole file with --grid, or add the column".into(),
        ));
    }
    let mut report = ImportReport {
        file: opts.file_name.clone(),
        sheet: sheet.name.clone(),
        encoding: sheet.encoding.to_owned(),
        header_row: layout.header_line,
        columns: layout
            .columns
            .iter()
            .map(|(f, (_, h))| (f.key().to_owned(), h.clone()))
            .collect(),
        ignored_columns: layout.ignored.clone(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let grids = GridIndex::load(storage).await?;
    if let Some(g) = &opts.default_grid
        && !grids.codes.contains(g.as_str())
    {
        return Err(ImportError::Columns(format!(
            "--grid: grid {g} is not registered on the server; register the grid first"
        )));
    }
    let mut errors = Errors::default();
    let mut entries = Vec::new();
    for row in &sheet.rows[layout.header_index + 1..] {
        if row.is_blank() {
            report.blank_rows += 1;
            continue;
        }
        report.rows += 1;
        if let Some(e) = parse_row(
            row,
            &layout,
            &grids,
            opts.default_grid.as_ref(),
            &mut errors,
        ) {
            entries.push(e);
        }
    }
    let groups = group(entries, &layout, &mut errors);
    report.phase_ms.insert("read".into(), read_ms);
    report
        .phase_ms
        .insert("check".into(), elapsed_ms(started) - read_ms);
    let matching = std::time::Instant::now();
    let stored = Stored::load(storage, &groups).await?;
    let mut plans = Vec::new();
    for g in groups {
        if let Some(p) = plan(g, &stored, &layout, &mut errors) {
            plans.push(p);
        }
    }
    // Rows refused after grouping (a second head, a resident registered elsewhere) leave their
    // household's plan; a plan left with no rows is dropped.
    for p in &mut plans {
        p.group.entries.retain(|e| !errors.bad.contains(&e.line));
        p.group.refresh();
    }
    plans.retain(|p| !p.group.entries.is_empty());
    report.phase_ms.insert("match".into(), elapsed_ms(matching));
    let sha = file_sha256(bytes);
    let written = write(
        storage,
        plans,
        (opts, &sha),
        &mut report,
        &layout,
        &mut errors,
        progress,
    )
    .await?;
    report.bad_rows = errors.bad.len();
    report.good_rows = report.rows - report.bad_rows;
    errors.list.sort_by_key(|e| e.row);
    report.errors = errors.list;
    if let Some(run) = written {
        storage
            .record_import(&ImportRun {
                rows_total: report.rows as i64,
                rows_bad: report.bad_rows as i64,
                created: report.households_created as i64,
                updated: report.households_updated as i64,
                unchanged: report.households_unchanged as i64,
                ..run
            })
            .await?;
    }
    Ok(report)
}

/// Registered grids by code and by name.
struct GridIndex {
    codes: BTreeSet<String>,
    names: HashMap<String, Vec<String>>,
}

impl GridIndex {
    async fn load<S: Storage>(storage: &S) -> Result<Self, StorageError> {
        let mut codes = BTreeSet::new();
        let mut names: HashMap<String, Vec<String>> = HashMap::new();
        for g in storage.grids().await? {
            codes.insert(g.code.clone());
            names
                .entry(g.name.trim().to_owned())
                .or_default()
                .push(g.code);
        }
        Ok(Self { codes, names })
    }

    fn resolve(&self, text: &str) -> Result<GridCode, String> {
        let t = text.trim();
        if t.bytes().all(|b| b.is_ascii_digit()) {
            let code = GridCode::parse(t).map_err(|e| format!("not a grid code: {}", e.reason))?;
            if !self.codes.contains(code.as_str()) {
                return Err(format!(
                    "grid {code} is not registered on the server; register the grid first"
                ));
            }
            return Ok(code);
        }
        match self.names.get(t).map(Vec::as_slice) {
            Some([one]) => GridCode::parse(one).map_err(|e| e.reason.to_owned()),
            Some(many) => Err(format!(
                "{} grids are called {t:?} ({}); give the grid code",
                many.len(),
                many.join(", ")
            )),
            None => Err(format!(
                "no registered grid is called {t:?}; give a registered grid's code or name"
            )),
        }
    }
}

/// Splits a cell listing several values (commas, 顿号, semicolons, slashes, spaces).
fn split_list(s: &str) -> Vec<String> {
    s.split([',', '，', ';', '；', '、', '/', ' ', '\u{3000}', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A date as people write it (1980-01-02, 1980/1/2, 1980.1.2, 1980年1月2日, 19800102), as
/// `YYYY-MM-DD`, or `None` when it is not a real date.
fn normalize_date(s: &str) -> Option<String> {
    let t = s.trim().trim_end_matches('日');
    let parts: Vec<&str> = if t.len() == 8 && t.bytes().all(|b| b.is_ascii_digit()) {
        vec![&t[0..4], &t[4..6], &t[6..8]]
    } else {
        t.split(['-', '/', '.', '年', '月']).collect()
    };
    let [y, m, d] = parts.as_slice() else {
        return None;
    };
    let (y, m, d): (u32, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let out = format!("{y:04}-{m:02}-{d:02}");
    parse_date(&out).map(|_| out)
}

fn parse_row(
    row: &Row,
    layout: &Layout,
    grids: &GridIndex,
    default_grid: Option<&GridCode>,
    errors: &mut Errors,
) -> Option<Entry> {
    let line = row.line;
    // A leading ' is Excel's mark for "this is text" (and what our CSV exports put before a
    // value that would run as a formula): it is not part of the value.
    let text = |f: Field| -> String {
        layout
            .col(f)
            .map(|c| {
                let t = row.cell(c).text();
                t.strip_prefix('\'')
                    .map_or_else(|| t.clone(), str::to_owned)
            })
            .unwrap_or_default()
    };
    let before = errors.list.len();
    let name = text(Field::Name);
    if name.is_empty() {
        errors.add(line, layout, Field::Name, "is required");
    }
    let relation = match text(Field::Relation) {
        r if r.is_empty() => {
            errors.add(line, layout, Field::Relation, "is required");
            None
        }
        r => match vocab::relation(&r) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.add(line, layout, Field::Relation, e.problem);
                None
            }
        },
    };
    let grid = match (text(Field::Grid), default_grid) {
        (g, _) if !g.is_empty() => match grids.resolve(&g) {
            Ok(g) => Some(g),
            Err(e) => {
                errors.add(line, layout, Field::Grid, e);
                None
            }
        },
        (_, Some(d)) => Some(d.clone()),
        (_, None) => {
            errors.add(line, layout, Field::Grid, "is required (or give --grid)");
            None
        }
    };
    let id_number = match layout.col(Field::IdNumber).map(|c| row.cell(c)) {
        None | Some(Cell::Empty) => None,
        Some(Cell::Number(_)) => {
            errors.add(
                line,
                layout,
                Field::IdNumber,
                "is stored as a number, so Excel kept only its first 15 digits; format the \
                 column as text (文本) and enter the ID number again",
            );
            None
        }
        Some(c) => {
            let raw = c.text();
            let id: String = raw
                .trim_start_matches('\'')
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_uppercase();
            match check_id_number(&id) {
                Ok(_) => Some(id),
                Err(p) => {
                    // The row and column say which; the report does not repeat the number.
                    errors.add(line, layout, Field::IdNumber, p.to_string());
                    None
                }
            }
        }
    };
    let gender = match text(Field::Gender) {
        g if g.is_empty() => None,
        g => match vocab::gender(&g) {
            Ok(g) => Some(g),
            Err(e) => {
                errors.add(line, layout, Field::Gender, e.problem);
                None
            }
        },
    };
    let birth_date = match text(Field::BirthDate) {
        b if b.is_empty() => None,
        b => match normalize_date(&b) {
            Some(d) => Some(d),
            None => {
                errors.add(
                    line,
                    layout,
                    Field::BirthDate,
                    format!("{b:?} is not a real date (write 1980-01-02)"),
                );
                None
            }
        },
    };
    let mut phones = Vec::new();
    // Spaces inside a number (138 0013 8000) are grouping, not separators.
    for p in text(Field::Phone)
        .split([',', '，', ';', '；', '、', '/', '\n'])
        .map(|p| p.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .filter(|p| !p.is_empty())
    {
        match check_phone(&p) {
            Ok(()) => phones.push(p),
            Err(problem) => errors.add(line, layout, Field::Phone, format!("{p}: {problem}")),
        }
    }
    let mut categories = Vec::new();
    for c in split_list(&text(Field::Categories)) {
        match vocab::key_category(&c) {
            Ok(c) => categories.push(c),
            Err(e) => errors.add(line, layout, Field::Categories, e.problem),
        }
    }
    let residence = match text(Field::Residence) {
        r if r.is_empty() => None,
        r => match vocab::residence(&r) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.add(line, layout, Field::Residence, e.problem);
                None
            }
        },
    };
    let mut flags = Vec::new();
    for f in split_list(&text(Field::Flags)) {
        match vocab::household_flag(&f) {
            Ok(f) => flags.push(f),
            Err(e) => errors.add(line, layout, Field::Flags, e.problem),
        }
    }
    let mut entry = Entry {
        line,
        number: text(Field::Number),
        grid: grid?,
        head_name: text(Field::HeadName),
        name,
        id_number,
        relation: relation?,
        gender,
        birth_date,
        phones,
        address: text(Field::Address),
        registered_address: text(Field::RegisteredAddress),
        work: text(Field::Work),
        categories,
        residence,
        flags,
    };
    if let Some(id) = &entry.id_number
        && let Ok(facts) = check_id_number(id)
    {
        // As on the phone: gender and birth date come from a valid ID number when not given.
        entry.gender.get_or_insert_with(|| facts.gender.to_owned());
        entry.birth_date.get_or_insert(facts.birth_date);
    }
    // The record's own rules (lengths, the ID number against gender and birth date, ...), on a
    // household holding only this row, so every problem names this row.
    let mut alone = Household::new(
        if entry.address.is_empty() {
            "-".to_owned()
        } else {
            entry.address.clone()
        },
        Residence::Permanent,
    );
    alone.number.clone_from(&entry.number);
    alone
        .registered_address
        .clone_from(&entry.registered_address);
    alone.members.insert(RecordId::new(), resident_of(&entry));
    if let Err(errs) = gridsync_core::records::Record::validate(&alone) {
        for e in errs.0 {
            let field = field_of_path(&e.field);
            errors.add(line, layout, field, e.problem.to_string());
        }
    }
    (errors.list.len() == before).then_some(entry)
}

/// The register field a record validation path is about.
fn field_of_path(path: &str) -> Field {
    let last = path.rsplit('.').next().unwrap_or(path);
    let field = if path.starts_with("members.") && path.contains(".phones.") {
        "phones"
    } else if path.starts_with("members.") && path.contains(".categories.") {
        "categories"
    } else {
        last
    };
    match field {
        "address" => Field::Address,
        "number" => Field::Number,
        "registered_address" => Field::RegisteredAddress,
        "id_number" => Field::IdNumber,
        "gender" => Field::Gender,
        "birth_date" => Field::BirthDate,
        "phones" => Field::Phone,
        "work" => Field::Work,
        "categories" => Field::Categories,
        "relation" => Field::Relation,
        _ => Field::Name,
    }
}

fn resident_of(e: &Entry) -> Resident {
    let mut r = Resident::new(e.name.clone(), e.relation);
    r.id_number.clone_from(&e.id_number);
    r.gender.clone_from(&e.gender);
    r.birth_date.clone_from(&e.birth_date);
    r.phones.clone_from(&e.phones);
    r.work.clone_from(&e.work);
    r.categories.extend(e.categories.iter().cloned());
    r
}

/// Which household of the file a row belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    /// Its 户号.
    Number(String),
    /// Its grid and head of household's name.
    Head(String, String),
}

/// Groups rows into households, refusing rows that contradict their household (another grid
/// or address, a second head, an ID number already given on another row). A household known
/// only by its head's name whose name is taken by two heads is refused whole: its members'
/// rows cannot say which of the two they belong to.
fn group(entries: Vec<Entry>, layout: &Layout, errors: &mut Errors) -> Vec<Group> {
    let mut order: Vec<Key> = Vec::new();
    let mut groups: HashMap<Key, Group> = HashMap::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut ambiguous: BTreeSet<Key> = BTreeSet::new();
    for e in entries {
        if let Some(first) = e.id_number.as_ref().and_then(|id| ids.get(id)) {
            errors.add(
                e.line,
                layout,
                Field::IdNumber,
                format!("the same ID number as row {first}"),
            );
            continue;
        }
        let key = if !e.number.is_empty() {
            Key::Number(e.number.clone())
        } else {
            let head = if e.relation == Relation::Head {
                e.name.clone()
            } else {
                e.head_name.clone()
            };
            if head.is_empty() {
                errors.add(
                    e.line,
                    layout,
                    Field::HeadName,
                    "a member's row needs 户号 or 户主姓名 to tell which household it is in",
                );
                continue;
            }
            Key::Head(e.grid.to_string(), head)
        };
        let Some(g) = groups.get_mut(&key) else {
            order.push(key.clone());
            if let Some(id) = &e.id_number {
                ids.insert(id.clone(), e.line);
            }
            let head_key = match &key {
                Key::Head(grid, head) => Some(format!("{grid}|{head}")),
                Key::Number(_) => None,
            };
            let mut g = Group {
                grid: e.grid.clone(),
                number: e.number.clone(),
                head_key,
                address: String::new(),
                registered_address: String::new(),
                residence: None,
                flags: BTreeSet::new(),
                entries: vec![e],
            };
            g.refresh();
            groups.insert(key, g);
            continue;
        };
        let first = g.entries[0].line;
        if e.grid != g.grid {
            errors.add(
                e.line,
                layout,
                Field::Grid,
                format!("this household is in grid {} on row {first}", g.grid),
            );
            continue;
        }
        if !e.address.is_empty() && !g.address.is_empty() && e.address != g.address {
            errors.add(
                e.line,
                layout,
                Field::Address,
                format!("this household's address is {:?} on row {first}", g.address),
            );
            if e.relation == Relation::Head && matches!(key, Key::Head(..)) {
                ambiguous.insert(key.clone());
            }
            continue;
        }
        if e.relation == Relation::Head
            && let Some(h) = g.entries.iter().find(|x| x.relation == Relation::Head)
        {
            errors.add(
                e.line,
                layout,
                Field::Relation,
                format!(
                    "a second 户主 of this household (row {} is 户主 {}); give each household \
                     its 户号",
                    h.line, h.name
                ),
            );
            if matches!(key, Key::Head(..)) {
                ambiguous.insert(key.clone());
            }
            continue;
        }
        if let Some(id) = &e.id_number {
            ids.insert(id.clone(), e.line);
        }
        g.entries.push(e);
        g.refresh();
    }
    let mut out = Vec::new();
    for k in order {
        let Some(g) = groups.remove(&k) else { continue };
        if ambiguous.contains(&k) {
            for e in &g.entries {
                errors.add(
                    e.line,
                    layout,
                    Field::HeadName,
                    format!(
                        "two households in grid {} have a 户主 called {}; give each its 户号",
                        g.grid,
                        match &k {
                            Key::Head(_, h) => h.as_str(),
                            Key::Number(n) => n.as_str(),
                        }
                    ),
                );
            }
            continue;
        }
        out.push(g);
    }
    out
}

/// What is stored already for the file's households and people.
struct Stored {
    by_number: HashMap<String, Vec<(DocId, String)>>,
    by_id: HashMap<String, Vec<(DocId, String, String)>>,
    /// Households without 户号 an earlier import created, by grid and head's name.
    by_key: HashMap<String, DocId>,
}

impl Stored {
    async fn load<S: Storage>(storage: &S, groups: &[Group]) -> Result<Self, StorageError> {
        let numbers: Vec<String> = groups
            .iter()
            .filter(|g| !g.number.is_empty())
            .map(|g| g.number.clone())
            .collect();
        let ids: Vec<String> = groups
            .iter()
            .flat_map(|g| g.entries.iter().filter_map(|e| e.id_number.clone()))
            .collect();
        let mut by_number: HashMap<String, Vec<(DocId, String)>> = HashMap::new();
        for h in storage.households_numbered(&numbers).await? {
            by_number
                .entry(h.number.clone())
                .or_default()
                .push((h.doc_id, h.grid));
        }
        let mut by_id: HashMap<String, Vec<(DocId, String, String)>> = HashMap::new();
        for r in storage.residents_with_id(&ids).await? {
            if let Some(id) = r.id_number.clone() {
                by_id
                    .entry(id)
                    .or_default()
                    .push((r.household_id, r.grid, r.relation));
            }
        }
        let keys: Vec<String> = groups.iter().filter_map(|g| g.head_key.clone()).collect();
        let by_key = storage
            .imported_keys(&keys)
            .await?
            .into_iter()
            .filter_map(|r| r.key.map(|k| (k, r.doc_id)))
            .collect();
        Ok(Self {
            by_number,
            by_id,
            by_key,
        })
    }
}

/// A household to write: new, or an existing document to change.
struct Plan {
    group: Group,
    target: Option<DocId>,
}

fn plan(g: Group, stored: &Stored, layout: &Layout, errors: &mut Errors) -> Option<Plan> {
    let lines: Vec<usize> = g.entries.iter().map(|e| e.line).collect();
    let refuse_all = |errors: &mut Errors, field: Field, why: String| {
        for l in &lines {
            errors.add(*l, layout, field, why.clone());
        }
    };
    let mut target: Option<(DocId, String)> = None;
    if !g.number.is_empty()
        && let Some(found) = stored.by_number.get(&g.number)
    {
        if found.len() > 1 {
            refuse_all(
                errors,
                Field::Number,
                format!(
                    "{} households are stored with 户号 {}; correct them on the phones first",
                    found.len(),
                    g.number
                ),
            );
            return None;
        }
        target = found.first().cloned();
    }
    if target.is_none()
        && let Some(head) = g.entries.iter().find(|e| e.relation == Relation::Head)
        && let Some(id) = &head.id_number
        && let Some(found) = stored.by_id.get(id)
    {
        target = found
            .iter()
            .find(|(_, _, rel)| rel == "head")
            .map(|(d, grid, _)| (*d, grid.clone()));
    }
    if target.is_none()
        && let Some(d) = g.head_key.as_ref().and_then(|k| stored.by_key.get(k))
    {
        // A household without 户号 this import created before (the key holds its grid).
        target = Some((*d, g.grid.to_string()));
    }
    if let Some((_, grid)) = &target
        && *grid != g.grid.as_str()
    {
        refuse_all(
            errors,
            Field::Grid,
            format!(
                "this household is registered in grid {grid}; import does not move a household \
                 to another grid"
            ),
        );
        return None;
    }
    let doc = target.as_ref().map(|(d, _)| *d);
    for e in &g.entries {
        if let Some(id) = &e.id_number
            && let Some(elsewhere) = stored
                .by_id
                .get(id)
                .and_then(|f| f.iter().find(|(d, _, _)| Some(*d) != doc))
        {
            errors.add(
                e.line,
                layout,
                Field::IdNumber,
                format!(
                    "this person is already registered in another household ({} in grid {})",
                    elsewhere.0, elsewhere.1
                ),
            );
        }
    }
    if doc.is_none() && g.address.is_empty() {
        refuse_all(
            errors,
            Field::Address,
            "a new household needs its address on one of its rows".into(),
        );
        return None;
    }
    Some(Plan {
        group: g,
        target: doc,
    })
}

/// The values the last import set in one household, by (member id or "" for the household,
/// field): what lets a re-import carry the register's own changes without undoing what
/// workers changed on their phones since.
type LastImported = HashMap<(String, &'static str), String>;

/// The fields whose last imported value is remembered (`key`: a household without 户号 by
/// grid and head's name; `flags` and `categories`: the codes the register listed).
const STATE_FIELDS: &[&str] = &[
    "key",
    "address",
    "number",
    "registered_address",
    "residence",
    "flags",
    "name",
    "relation",
    "id_number",
    "gender",
    "birth_date",
    "phones",
    "work",
    "categories",
];

/// Tracks the values an import gives, and says which of them to write.
struct Given<'a> {
    last: &'a LastImported,
    changed: GivenValues,
}

/// Values a file gave: (member id or "", field, value).
type GivenValues = Vec<(String, &'static str, String)>;

impl Given<'_> {
    fn last(&self, member: &str, field: &'static str) -> Option<&String> {
        self.last.get(&(member.to_owned(), field))
    }

    /// Whether to write `value` for `field` of `member`: unless it is empty or is the one the
    /// last import wrote (then the register did not change it, and whatever the record holds
    /// now, a worker's later edit say, stays). A value that differs is remembered.
    fn take(&mut self, member: &str, field: &'static str, value: &str) -> bool {
        if value.is_empty() {
            return false;
        }
        let new = self.last(member, field).is_none_or(|v| v != value);
        if new {
            self.changed
                .push((member.to_owned(), field, value.to_owned()));
        }
        new
    }

    /// Whether `take` would write `value`, without remembering it.
    fn would(&self, member: &str, field: &'static str, value: &str) -> bool {
        !value.is_empty() && self.last(member, field).is_none_or(|v| v != value)
    }

    /// Of a list of codes the register gives, those it did not list at the last import (to
    /// add: a code a worker removed since stays removed while the register keeps listing it).
    fn added<'c>(
        &mut self,
        member: &str,
        field: &'static str,
        codes: impl IntoIterator<Item = &'c String>,
    ) -> Vec<String> {
        let codes: BTreeSet<&String> = codes.into_iter().collect();
        let joined = codes
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let before: BTreeSet<String> = self
            .last(member, field)
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        if self.last(member, field).is_none_or(|v| *v != joined) && !codes.is_empty() {
            self.changed.push((member.to_owned(), field, joined));
        }
        codes
            .into_iter()
            .filter(|c| !before.contains(*c))
            .cloned()
            .collect()
    }
}

fn code_of<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What applying a household's rows did.
#[derive(Default)]
struct Applied {
    added: usize,
    changed: usize,
    /// Rows refused for a second head: (row, reason).
    refused: Vec<(usize, String)>,
    /// The values the file gave that differ from the last imported, to remember.
    given: GivenValues,
}

/// The stored member a row is: the one with its ID number; else one the last import wrote
/// with this name or this ID number (the register corrected the other, or a worker did since);
/// else one with its name where either side has no ID number. Never a member another row of
/// the file already took.
fn find_member(
    h: &Household,
    e: &Entry,
    given: &Given<'_>,
    taken: &BTreeSet<RecordId>,
) -> Option<RecordId> {
    let free = |id: &RecordId| !taken.contains(id);
    let by_id = |id: &str| {
        h.members
            .iter()
            .find(|(m_id, m)| free(m_id) && m.id_number.as_deref() == Some(id))
    };
    let last_is = |m_id: &RecordId, field, value: &str| {
        given
            .last(&m_id.to_string(), field)
            .is_some_and(|v| v == value)
    };
    e.id_number
        .as_deref()
        .and_then(by_id)
        .or_else(|| {
            h.members.iter().find(|(m_id, _)| {
                free(m_id)
                    && (last_is(m_id, "name", &e.name)
                        || e.id_number
                            .as_deref()
                            .is_some_and(|i| last_is(m_id, "id_number", i)))
            })
        })
        .or_else(|| {
            h.members.iter().find(|(m_id, m)| {
                free(m_id) && m.name == e.name && (m.id_number.is_none() || e.id_number.is_none())
            })
        })
        .map(|(id, _)| *id)
}

/// Applies a household's rows to its record. A value the file gives is written when the
/// register changed it since the last import (or on first contact); an empty cell leaves a
/// field alone; flags and categories the register newly lists are added (never removed).
/// Members are matched by [`find_member`], and new ones are added. Members the file does not
/// list stay as they are (a member leaves by a status, never by import). A row that would
/// make a second head is refused before anything of it is applied.
fn apply(h: &mut Household, g: &mut Group, last: &LastImported) -> Applied {
    let mut given = Given {
        last,
        changed: Vec::new(),
    };
    let mut out = Applied::default();
    let mut taken = BTreeSet::new();
    let mut matched = Vec::new();
    for e in &g.entries {
        let found = find_member(h, e, &given, &taken);
        let key = found.map(|id| id.to_string()).unwrap_or_default();
        let sets_head = e.relation == Relation::Head
            && (found.is_none() || given.would(&key, "relation", &code_of(&e.relation)));
        if sets_head
            && let Some((_, other)) = h.members.iter().find(|(id, m)| {
                Some(**id) != found
                    && m.relation == Relation::Head
                    && m.status == ResidentStatus::Present
            })
        {
            out.refused.push((
                e.line,
                format!(
                    "the household already has a 户主 ({}); change that member's relation first",
                    other.name
                ),
            ));
            continue;
        }
        if let Some(id) = found {
            taken.insert(id);
        }
        matched.push((e.line, found));
    }
    let refused: BTreeSet<usize> = out.refused.iter().map(|(l, _)| *l).collect();
    g.entries.retain(|e| !refused.contains(&e.line));
    g.refresh();
    if let Some(k) = &g.head_key {
        given.take("", "key", k);
    }
    if given.take("", "address", &g.address) {
        h.address.clone_from(&g.address);
    }
    if given.take("", "number", &g.number) {
        h.number.clone_from(&g.number);
    }
    if given.take("", "registered_address", &g.registered_address) {
        h.registered_address.clone_from(&g.registered_address);
    }
    if let Some(r) = g.residence
        && given.take("", "residence", &code_of(&r))
    {
        h.residence = r;
    }
    let flags = given.added("", "flags", &g.flags);
    h.flags.extend(flags);
    for e in &g.entries {
        let Some((_, found)) = matched.iter().find(|(l, _)| *l == e.line) else {
            continue;
        };
        let (id, is_new) = match found {
            Some(id) => (*id, false),
            None => {
                let id = RecordId::new();
                h.members
                    .insert(id, Resident::new(e.name.clone(), e.relation));
                (id, true)
            }
        };
        let key = id.to_string();
        let Some(m) = h.members.get_mut(&id) else {
            continue;
        };
        let before = m.clone();
        if given.take(&key, "name", &e.name) {
            m.name.clone_from(&e.name);
        }
        if given.take(&key, "relation", &code_of(&e.relation)) {
            m.relation = e.relation;
        }
        if let Some(v) = &e.id_number
            && given.take(&key, "id_number", v)
        {
            m.id_number = Some(v.clone());
        }
        if let Some(v) = &e.gender
            && given.take(&key, "gender", v)
        {
            m.gender = Some(v.clone());
        }
        if let Some(v) = &e.birth_date
            && given.take(&key, "birth_date", v)
        {
            m.birth_date = Some(v.clone());
        }
        if given.take(&key, "phones", &e.phones.join(",")) {
            m.phones.clone_from(&e.phones);
        }
        if given.take(&key, "work", &e.work) {
            m.work.clone_from(&e.work);
        }
        let categories = given.added(&key, "categories", &e.categories);
        m.categories.extend(categories);
        if is_new {
            out.added += 1;
        } else if *m != before {
            out.changed += 1;
        }
    }
    out.given = given.changed;
    out
}

/// Writes the plans through the merge path (unless dry); returns the run when it wrote.
async fn write<S: Storage>(
    storage: &S,
    plans: Vec<Plan>,
    (opts, sha): (&ImportOptions, &str),
    report: &mut ImportReport,
    layout: &Layout,
    errors: &mut Errors,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Option<ImportRun>, StorageError> {
    // A dry run writes nothing at all, not even the import device's id.
    let device_id = if opts.dry_run {
        gridsync_proto::DeviceId::new()
    } else {
        storage.service_device(Service::Import).await?
    };
    let actor: ActorId = fresh_actor(device_id);
    let run = ImportRun {
        actor: actor.to_hex_string(),
        device: device_id,
        file_name: opts.file_name.clone(),
        file_sha256: sha.to_owned(),
        operator: opts.operator.clone(),
        started_at: gridsync_core::clock::now_ms(),
        rows_total: 0,
        rows_bad: 0,
        created: 0,
        updated: 0,
        unchanged: 0,
    };
    let total = plans.len();
    let mut started = false;
    let mut done = 0;
    for batch in plans.chunks(BATCH) {
        let targets: Vec<DocId> = batch.iter().filter_map(|p| p.target).collect();
        let mut last: HashMap<DocId, LastImported> = HashMap::new();
        for r in storage.import_state(&targets).await? {
            let fields: BTreeMap<String, String> =
                serde_json::from_str(&r.fields).unwrap_or_default();
            let doc = last.entry(r.doc_id).or_default();
            for (f, v) in fields {
                if let Some(field) = STATE_FIELDS.iter().find(|s| **s == f) {
                    doc.insert((r.member.clone(), field), v);
                }
            }
        }
        let none = LastImported::new();
        let mut refused_docs: BTreeSet<DocId> = BTreeSet::new();
        let mut pushes = Vec::new();
        let mut pushed: Vec<(&Plan, bool, usize, usize)> = Vec::new();
        // The values to remember once the batch is stored: (document, values given).
        let mut remember: Vec<(DocId, GivenValues)> = Vec::new();
        let building = std::time::Instant::now();
        for p in batch {
            let mut next;
            let mut doc = match p.target {
                Some(id) => {
                    let Some(mut doc) = storage.load(id).await? else {
                        continue;
                    };
                    doc.automerge().set_actor(actor.clone());
                    next = doc
                        .read::<Household>()
                        .map_err(|e| StorageError::Corrupt(e.to_string()))?;
                    Some(doc)
                }
                None => {
                    next = Household::new(
                        p.group.address.clone(),
                        p.group.residence.unwrap_or(Residence::Permanent),
                    );
                    None
                }
            };
            if p.target.is_some()
                && !next.number.is_empty()
                && !p.group.number.is_empty()
                && next.number != p.group.number
            {
                // Found by its head's ID number, but the register numbers it otherwise: more
                // likely a mistyped 户号 or a person in the wrong household than a renumbering.
                for e in &p.group.entries {
                    errors.add(
                        e.line,
                        layout,
                        Field::Number,
                        format!(
                            "its 户主 is registered in household {} (户号 {}); correct the 户号 or \
                             the ID number",
                            next.address, next.number
                        ),
                    );
                }
                continue;
            }
            let mut group = p.group.clone();
            let applied = apply(
                &mut next,
                &mut group,
                p.target.and_then(|t| last.get(&t)).unwrap_or(&none),
            );
            let (added, changed) = (applied.added, applied.changed);
            for (line, why) in applied.refused {
                errors.add(line, layout, Field::Relation, why);
            }
            let before: Vec<automerge::ChangeHash> =
                doc.as_mut().map(|d| d.heads()).unwrap_or_default();
            let result = match doc.as_mut() {
                Some(d) => {
                    d.set_role(Role::Worker);
                    d.update::<Household>(|h| *h = next).map(|c| c.is_some())
                }
                None => Document::create_as(
                    DocId::new(),
                    p.group.grid.clone(),
                    device_id,
                    actor.clone(),
                    &next,
                )
                .map(|d| {
                    doc = Some(d);
                    true
                }),
            };
            let wrote = match result {
                Ok(w) => w,
                Err(e) => {
                    for entry in &p.group.entries {
                        errors.add(entry.line, layout, Field::Name, e.to_string());
                    }
                    continue;
                }
            };
            let Some(mut d) = doc else { continue };
            remember.push((d.id(), applied.given));
            if !wrote {
                report.households_unchanged += 1;
                continue;
            }
            let changes = d.changes_since(&before);
            pushes.push(DocPush {
                doc: d.id(),
                header: Some(d.header().clone()),
                heads: d.heads().iter().map(|h| h.0).collect(),
                changes: changes
                    .iter()
                    .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                    .collect(),
                sync: None,
            });
            pushed.push((p, p.target.is_none(), added, changed));
        }
        *report.phase_ms.entry("build".into()).or_default() += elapsed_ms(building);
        let merging = std::time::Instant::now();
        if !opts.dry_run && !pushes.is_empty() {
            if !started {
                storage.record_import(&run).await?;
                started = true;
            }
            let device = Device {
                id: device_id,
                name: "登记导入".into(),
                role: Role::Worker,
                scopes: pushes
                    .iter()
                    .filter_map(|p| p.header.as_ref().map(|h| h.scope.clone()))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                department: None,
            };
            let outcome = storage.merge(&device, &pushes, Receipt::now(0)).await?;
            refused_docs.clear();
            for (ack, (p, created, added, changed)) in outcome.acks.iter().zip(&pushed) {
                if !matches!(ack.status, AckStatus::Stored { .. }) {
                    refused_docs.insert(ack.doc);
                }
                match &ack.status {
                    AckStatus::Stored { .. } => {
                        count(report, *created, *added, *changed);
                    }
                    AckStatus::Rejected { code, message } => {
                        for e in &p.group.entries {
                            errors.add(
                                e.line,
                                layout,
                                Field::Name,
                                format!("the server refused the household ({code}): {message}"),
                            );
                        }
                    }
                    other => {
                        for e in &p.group.entries {
                            errors.add(
                                e.line,
                                layout,
                                Field::Name,
                                format!(
                                    "the household changed while it was imported ({other:?}); \
                                     import the file again"
                                ),
                            );
                        }
                    }
                }
            }
        } else {
            for (_, created, added, changed) in &pushed {
                count(report, *created, *added, *changed);
            }
        }
        *report.phase_ms.entry("merge".into()).or_default() += elapsed_ms(merging);
        let remembering = std::time::Instant::now();
        if !opts.dry_run {
            // What the register says is now the last imported (also for households that
            // needed no change), except where the server refused the household.
            let rows: Vec<ImportState> = remember
                .into_iter()
                .filter(|(doc, given)| !refused_docs.contains(doc) && !given.is_empty())
                .flat_map(|(doc, given)| state_rows(doc, last.get(&doc).unwrap_or(&none), given))
                .collect();
            storage.save_import_state(&rows).await?;
        }
        *report.phase_ms.entry("state".into()).or_default() += elapsed_ms(remembering);
        done += batch.len();
        progress(done, total);
    }
    if started {
        report.actor = Some(run.actor.clone());
    }
    Ok(started.then_some(run))
}

fn count(report: &mut ImportReport, created: bool, added: usize, changed: usize) {
    if created {
        report.households_created += 1;
    } else {
        report.households_updated += 1;
    }
    report.residents_created += added;
    report.residents_updated += changed;
}

/// The rows that remember what the register said of one household: the last imported values
/// with this run's changes over them, one row per member (and one for the household).
fn state_rows(doc: DocId, last: &LastImported, changed: GivenValues) -> Vec<ImportState> {
    let mut by_member: BTreeMap<String, BTreeMap<&'static str, String>> = BTreeMap::new();
    let touched: BTreeSet<String> = changed.iter().map(|(m, _, _)| m.clone()).collect();
    for ((member, field), value) in last {
        if touched.contains(member) {
            by_member
                .entry(member.clone())
                .or_default()
                .insert(field, value.clone());
        }
    }
    for (member, field, value) in changed {
        by_member.entry(member).or_default().insert(field, value);
    }
    by_member
        .into_iter()
        .map(|(member, fields)| ImportState {
            doc_id: doc,
            key: if member.is_empty() {
                fields.get("key").cloned()
            } else {
                None
            },
            fields: serde_json::to_string(&fields).unwrap_or_default(),
            member,
        })
        .collect()
}

fn elapsed_ms(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// SHA-256 of a file's bytes, hex.
pub fn file_sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_as_people_write_them() {
        for (typed, want) in [
            ("1980-01-02", Some("1980-01-02")),
            ("1980/1/2", Some("1980-01-02")),
            ("1980.1.2", Some("1980-01-02")),
            ("1980年1月2日", Some("1980-01-02")),
            ("19800102", Some("1980-01-02")),
            ("1980-02-30", None),
            ("一九八零", None),
        ] {
            assert_eq!(normalize_date(typed).as_deref(), want, "{typed}");
        }
    }

    #[test]
    fn lists_split_on_the_separators_clerks_use() {
        assert_eq!(
            split_list("13800138000、 0571-88886666，13900139000"),
            vec!["13800138000", "0571-88886666", "13900139000"]
        );
    }
}
