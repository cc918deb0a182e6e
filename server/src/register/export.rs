//! Exports for towns and leaders: the case ledger (台账) of a period and scope, indicators per
//! grid, department and category, and the household archive in the register's own column
//! layout (so a town can correct it in Excel and import it again). Tables are built from the
//! projections only, then written as XLSX (`rust_xlsxwriter`: bold frozen header, one sheet
//! per table) or CSV (the first table, UTF-8 with a BOM so Excel reads the Chinese).
//! **Invariant:** ID numbers and phones are masked unless the caller's role may see them.

use std::collections::HashMap;
use std::str::FromStr;

use gridsync_core::projection::CaseRow;
use gridsync_core::vocab;
use gridsync_core::workflow::Reference;
use gridsync_proto::GridCode;
use rust_xlsxwriter::{Format, Workbook, XlsxError};

use super::columns::Field;
use crate::auth::Device;
use crate::indicators::{Figures, GroupBy};
use crate::storage::{Storage, StorageError};
use crate::{AppState, merge};

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// An Excel workbook, one sheet per table.
    Xlsx,
    /// Comma-separated UTF-8 text of the first table.
    Csv,
}

impl ExportFormat {
    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Xlsx => {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
            ExportFormat::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Xlsx => "xlsx",
            ExportFormat::Csv => "csv",
        }
    }
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "xlsx" => Ok(ExportFormat::Xlsx),
            "csv" => Ok(ExportFormat::Csv),
            other => Err(format!("{other:?} is not an export format (xlsx or csv)")),
        }
    }
}

/// Whether personal identifiers are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// ID numbers and phones partly hidden (110101********4477, 138****8000).
    Masked,
    /// Shown whole.
    Unmasked,
}

impl Mask {
    /// The masking a device's role calls for: dispatchers keep residents' contacts to do
    /// their work; leaders read figures and get them masked.
    pub fn for_role(role: gridsync_core::workflow::Role) -> Self {
        if role == gridsync_core::workflow::Role::Dispatcher {
            Mask::Unmasked
        } else {
            Mask::Masked
        }
    }

    fn id(self, id: &str) -> String {
        match self {
            Mask::Unmasked => id.to_owned(),
            Mask::Masked => keep_ends(id, 6, 4),
        }
    }

    fn phones(self, phones: &str) -> String {
        phones
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| match self {
                Mask::Unmasked => p.to_owned(),
                Mask::Masked => keep_ends(p, 3, 4),
            })
            .collect::<Vec<_>>()
            .join("、")
    }
}

/// `s` with all but its first `head` and last `tail` characters replaced by `*` (all of
/// them when it is too short to keep anything).
fn keep_ends(s: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= head + tail {
        return "*".repeat(chars.len());
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < head || i >= chars.len() - tail {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

/// One cell of an export.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Nothing.
    Empty,
    /// Text.
    Text(String),
    /// A count.
    Int(i64),
    /// A rate or a duration.
    Float(f64),
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        if s.is_empty() {
            Value::Empty
        } else {
            Value::Text(s)
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        s.to_owned().into()
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<Option<f64>> for Value {
    fn from(n: Option<f64>) -> Self {
        n.map_or(Value::Empty, |v| {
            Value::Float((v * 10_000.0).round() / 10_000.0)
        })
    }
}

/// One table (one sheet of a workbook).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The sheet's name.
    pub name: String,
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows of cells, as many as there are headers.
    pub rows: Vec<Vec<Value>>,
}

/// Which units an export covers: those `device` may see (all for the operator's command
/// line), narrowed to `within`.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The device asking, whose scopes bound the export (none: the operator, everything).
    pub device: Option<Device>,
    /// Only this unit and what is inside it.
    pub within: Option<GridCode>,
}

impl Scope {
    /// Whether a record in `grid` is covered.
    pub fn covers(&self, grid: &str) -> bool {
        let Ok(g) = GridCode::parse(grid) else {
            return false;
        };
        self.device.as_ref().is_none_or(|d| merge::in_scope(d, &g))
            && self.within.as_ref().is_none_or(|w| w.contains(&g))
    }
}

/// Data rows one sheet holds (Excel's 1,048,576 rows, less the header).
pub const MAX_ROWS: usize = 1_048_575;

/// Writes tables in a format: a workbook with one sheet each, or CSV of the first.
pub fn encode(tables: &[Table], format: ExportFormat) -> Result<Vec<u8>, XlsxError> {
    match format {
        ExportFormat::Xlsx => {
            let mut book = Workbook::new();
            let bold = Format::new().set_bold();
            for t in tables {
                let sheet = book.add_worksheet();
                sheet.set_name(&t.name)?;
                for (c, h) in t.headers.iter().enumerate() {
                    let col = u16::try_from(c).unwrap_or(u16::MAX);
                    sheet.write_string_with_format(0, col, h, &bold)?;
                    let width = t
                        .rows
                        .iter()
                        .take(200)
                        .map(|r| match r.get(c) {
                            Some(Value::Text(s)) => s.chars().count(),
                            _ => 8,
                        })
                        .chain([h.chars().count() * 2])
                        .max()
                        .unwrap_or(8)
                        .clamp(6, 48);
                    sheet.set_column_width(col, width as f64 * 1.2)?;
                }
                sheet.set_freeze_panes(1, 0)?;
                for (r, row) in t.rows.iter().enumerate() {
                    let line = u32::try_from(r + 1).unwrap_or(u32::MAX);
                    for (c, v) in row.iter().enumerate() {
                        let col = u16::try_from(c).unwrap_or(u16::MAX);
                        match v {
                            Value::Empty => {}
                            // Every text is written as text: an ID number stays 18 characters.
                            Value::Text(s) => {
                                sheet.write_string(line, col, s)?;
                            }
                            Value::Int(n) => {
                                sheet.write_number(line, col, *n as f64)?;
                            }
                            Value::Float(f) => {
                                sheet.write_number(line, col, *f)?;
                            }
                        }
                    }
                }
            }
            book.save_to_buffer()
        }
        ExportFormat::Csv => {
            let mut out = b"\xEF\xBB\xBF".to_vec();
            if let Some(t) = tables.first() {
                let mut w = csv::Writer::from_writer(Vec::new());
                let _ = w.write_record(&t.headers);
                for row in &t.rows {
                    let cells: Vec<String> = row
                        .iter()
                        .map(|v| match v {
                            Value::Empty => String::new(),
                            Value::Text(s) => csv_text(s),
                            Value::Int(n) => n.to_string(),
                            Value::Float(f) => f.to_string(),
                        })
                        .collect();
                    let _ = w.write_record(&cells);
                }
                out.extend(w.into_inner().unwrap_or_default());
            }
            Ok(out)
        }
    }
}

/// Text for a CSV cell: a value Excel would run as a formula (starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return: a case title from the hotline, say) is written after a `'`,
/// so opening the file shows it instead of running it. (XLSX cells are written as strings,
/// which Excel never runs.)
fn csv_text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// A time as China time, `YYYY-MM-DD HH:MM`.
pub fn china_time(ms: i64) -> String {
    let Ok(offset) = time::UtcOffset::from_hms(8, 0, 0) else {
        return String::new();
    };
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return String::new();
    };
    let t = t.to_offset(offset);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

fn when(ms: Option<i64>) -> Value {
    ms.map_or(Value::Empty, |t| Value::Text(china_time(t)))
}

/// The columns of the case ledger.
pub const CASE_HEADERS: &[&str] = &[
    "案件编号",
    "标题",
    "来源",
    "大类",
    "小类",
    "紧急程度",
    "网格",
    "地址",
    "上报时间",
    "状态",
    "主办部门",
    "协办部门",
    "派遣时间",
    "处置时限",
    "办结时间",
    "结案时间",
    "是否按期",
    "延期次数",
    "返工次数",
    "督办次数",
    "回访满意度",
];

/// The case ledger (台账): every case reported in `[from, to)` in scope, oldest first, with
/// its stages, departments and times.
pub async fn cases<S: Storage>(
    storage: &S,
    reference: &Reference,
    from: i64,
    to: i64,
    scope: &Scope,
) -> Result<Vec<Table>, StorageError> {
    let rows = storage.cases_reported_between(from, to).await?;
    let now = gridsync_core::clock::now_ms();
    let dept = |code: &str| -> String {
        reference
            .departments
            .iter()
            .find(|d| d.code == code)
            .map_or_else(|| code.to_owned(), |d| d.name.clone())
    };
    let table_rows = rows
        .iter()
        .filter(|c| scope.covers(&c.grid))
        .map(|c| case_row(c, reference, now, &dept))
        .collect();
    Ok(vec![Table {
        name: "案件台账".into(),
        headers: CASE_HEADERS.iter().map(|h| (*h).to_owned()).collect(),
        rows: table_rows,
    }])
}

fn case_row(
    c: &CaseRow,
    reference: &Reference,
    now: i64,
    dept: &dyn Fn(&str) -> String,
) -> Vec<Value> {
    let category = reference.category(&c.subcategory);
    let status = vocab::status(&c.status)
        .map(|s| vocab::status_label(s).to_owned())
        .unwrap_or_else(|_| c.status.clone());
    let on_time = match (c.deadline, c.handled_at.or(c.closed_at)) {
        (Some(d), Some(done)) => if done <= d { "按期" } else { "超期" }.into(),
        (Some(d), None) if d < now => "已超期".into(),
        _ => Value::Empty,
    };
    vec![
        c.doc_id.to_string().into(),
        c.title.clone().into(),
        vocab::case_source_code_label(&c.source).into(),
        category
            .map_or_else(|| c.category.clone(), |k| k.major_name.clone())
            .into(),
        category
            .map_or_else(|| c.subcategory.clone(), |k| k.name.clone())
            .into(),
        if c.urgency == "urgent" {
            "紧急"
        } else {
            "一般"
        }
        .into(),
        c.grid.clone().into(),
        c.address.clone().into(),
        when(Some(c.reported_at)),
        status.into(),
        c.lead.as_deref().map(dept).unwrap_or_default().into(),
        c.co.split(',')
            .filter(|d| !d.is_empty())
            .map(dept)
            .collect::<Vec<_>>()
            .join("、")
            .into(),
        when(c.dispatched_at),
        when(c.deadline),
        when(c.handled_at),
        when(c.closed_at),
        on_time,
        c.extensions.into(),
        c.reworks.into(),
        c.supervisions.into(),
        c.satisfaction
            .as_deref()
            .map(vocab::satisfaction_label)
            .unwrap_or_default()
            .into(),
    ]
}

/// The indicator columns, after the group's key and name.
const FIGURE_HEADERS: &[&str] = &[
    "案件数",
    "结案率",
    "按期结案率",
    "返工率",
    "延期率",
    "办结率",
    "自办自结率",
    "满意率",
    "平均处置时长(小时)",
    "P90处置时长(小时)",
    "超期数",
    "督办数",
    "时间存疑数",
    "照片存疑数",
];

/// Indicators of the cases reported in `[from, to)` in scope, one table per grouping, each
/// ending with the total; the figures are the ones `GET /v1/indicators` answers.
pub async fn indicators<S: Storage>(
    state: &AppState<S>,
    from: i64,
    to: i64,
    scope: &Scope,
    groupings: &[GroupBy],
) -> Result<Vec<Table>, StorageError> {
    let grids: HashMap<String, String> = state
        .storage
        .grids()
        .await?
        .into_iter()
        .map(|g| (g.code, g.name))
        .collect();
    let reference = &state.config.reference;
    let mut tables = Vec::new();
    for &group_by in groupings {
        let (groups, total) =
            crate::indicators::for_scope(state, from, to, group_by, &|g| scope.covers(g)).await?;
        let (sheet, key_header) = match group_by {
            GroupBy::Grid => ("按网格", "网格"),
            GroupBy::Department => ("按部门", "部门"),
            GroupBy::Category => ("按类别", "大类"),
        };
        let name_of = |key: &str| -> String {
            match group_by {
                GroupBy::Grid => grids.get(key).cloned().unwrap_or_default(),
                GroupBy::Department => reference
                    .departments
                    .iter()
                    .find(|d| d.code == key)
                    .map(|d| d.name.clone())
                    .unwrap_or_default(),
                GroupBy::Category => reference
                    .categories
                    .iter()
                    .find(|c| c.code.starts_with(key))
                    .map(|c| c.major_name.clone())
                    .unwrap_or_default(),
            }
        };
        let mut rows: Vec<Vec<Value>> = groups
            .iter()
            .map(|f| figure_row(f.key.clone(), name_of(&f.key), f))
            .collect();
        rows.push(figure_row("合计".into(), String::new(), &total));
        let mut headers = vec![key_header.to_owned(), "名称".to_owned()];
        headers.extend(FIGURE_HEADERS.iter().map(|h| (*h).to_owned()));
        tables.push(Table {
            name: sheet.into(),
            headers,
            rows,
        });
    }
    Ok(tables)
}

fn figure_row(key: String, name: String, f: &Figures) -> Vec<Value> {
    vec![
        key.into(),
        name.into(),
        (f.cases as i64).into(),
        f.closure_rate.into(),
        f.on_time_rate.into(),
        f.rework_rate.into(),
        f.extension_rate.into(),
        f.handled_rate.into(),
        f.self_closed_rate.into(),
        f.satisfaction_rate.into(),
        f.avg_handling_hours.into(),
        f.p90_handling_hours.into(),
        (f.overdue as i64).into(),
        (f.supervised as i64).into(),
        (f.flagged_time as i64).into(),
        (f.evidence_flagged as i64).into(),
    ]
}

/// The register columns of the archive's people sheet, in the import's field order.
const PERSON_FIELDS: &[Field] = &[
    Field::Number,
    Field::Grid,
    Field::HeadName,
    Field::Name,
    Field::IdNumber,
    Field::Relation,
    Field::Gender,
    Field::BirthDate,
    Field::Phone,
    Field::Address,
    Field::RegisteredAddress,
    Field::Work,
    Field::Categories,
    Field::Residence,
];

/// The household archive in scope: a people sheet in the register's own layout (one row per
/// resident, headers the import reads, plus the member's status) and a households sheet.
pub async fn households<S: Storage>(
    storage: &S,
    scope: &Scope,
    mask: Mask,
) -> Result<Vec<Table>, StorageError> {
    let within = scope.within.as_ref();
    let households: Vec<_> = storage
        .households(within)
        .await?
        .into_iter()
        .filter(|h| scope.covers(&h.grid))
        .collect();
    let by_id: HashMap<_, _> = households.iter().map(|h| (h.doc_id, h)).collect();
    let mut people = Vec::new();
    for r in storage.residents_within(within).await? {
        let Some(h) = by_id.get(&r.household_id) else {
            continue;
        };
        people.push(vec![
            h.number.clone().into(),
            h.grid.clone().into(),
            h.head_name.clone().unwrap_or_default().into(),
            r.name.clone().into(),
            r.id_number
                .as_deref()
                .map(|i| mask.id(i))
                .unwrap_or_default()
                .into(),
            vocab::relation_code_label(&r.relation).into(),
            r.gender
                .as_deref()
                .map(vocab::gender_label)
                .unwrap_or_default()
                .into(),
            // Masked, the birth date would give back the ID number's hidden digits: the year only.
            match mask {
                Mask::Unmasked => r.birth_date.clone().unwrap_or_default(),
                Mask::Masked => r
                    .birth_date
                    .as_deref()
                    .map(|b| b.chars().take(4).collect())
                    .unwrap_or_default(),
            }
            .into(),
            mask.phones(&r.phones).into(),
            h.address.clone().into(),
            h.registered_address.clone().into(),
            r.work.clone().into(),
            vocab::categories_label(&r.categories).into(),
            vocab::residence_code_label(&h.residence).into(),
            vocab::resident_status_code_label(&r.status).into(),
        ]);
    }
    let mut person_headers: Vec<String> = PERSON_FIELDS
        .iter()
        .map(|f| f.header().to_owned())
        .collect();
    person_headers.push("状态".into());
    let homes = households
        .iter()
        .map(|h| {
            vec![
                h.number.clone().into(),
                h.grid.clone().into(),
                h.address.clone().into(),
                h.registered_address.clone().into(),
                vocab::residence_code_label(&h.residence).into(),
                vocab::flags_label(&h.flags).into(),
                h.head_name.clone().unwrap_or_default().into(),
                h.member_count.into(),
                h.visit_count.into(),
                when(h.last_visit_at),
                h.doc_id.to_string().into(),
            ]
        })
        .collect();
    Ok(vec![
        Table {
            name: "人员".into(),
            headers: person_headers,
            rows: people,
        },
        Table {
            name: "户".into(),
            headers: [
                "户号",
                "网格",
                "现住址",
                "户籍地址",
                "居住类型",
                "户标签",
                "户主",
                "在住人数",
                "走访次数",
                "最近走访",
                "档案编号",
            ]
            .iter()
            .map(|h| (*h).to_owned())
            .collect(),
            rows: homes,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_the_ends() {
        assert_eq!(Mask::Masked.id("110101199003074477"), "110101********4477");
        assert_eq!(
            Mask::Masked.phones("13800138000,0571-88886666"),
            "138****8000、057******6666"
        );
        assert_eq!(
            Mask::Unmasked.id("110101199003074477"),
            "110101199003074477"
        );
        assert_eq!(keep_ends("12", 3, 4), "**");
    }

    #[test]
    fn csv_cells_never_run_as_formulas() {
        let t = Table {
            name: "t".into(),
            headers: vec!["标题".into()],
            rows: vec![
                vec!["=HYPERLINK(\"http://x\")".into()],
                vec!["@SUM(A1)".into()],
                vec!["楼道灯".into()],
                vec![Value::Int(-3)],
            ],
        };
        let csv = String::from_utf8(encode(&[t], ExportFormat::Csv).expect("csv")).expect("utf8");
        let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
        assert_eq!(lines[1], "\"'=HYPERLINK(\"\"http://x\"\")\"");
        assert_eq!(lines[2], "'@SUM(A1)");
        assert_eq!(lines[3], "楼道灯");
        assert_eq!(lines[4], "-3");
    }

    #[test]
    fn times_are_china_time() {
        assert_eq!(china_time(0), "1970-01-01 08:00");
    }
}
