//! Grids, households (一户一档), residents, visits (走访) and patrols (巡查) through the app API.

use gridsync_proto::{DocId, GridCode, RecordId};
use serde::{Deserialize, Serialize};

use super::{AppError, ConflictView, ProblemView, Replica, conflict_views, vocab};
use crate::clock::now_ms;
use crate::projection::{CaseRow, GridRow, HouseholdRow, InspectionRow};
use crate::records::{
    Checkpoint, Finding, Gps, Grid, Household, Inspection, Relation, Residence, Resident,
    ResidentStatus, RosterEntry, TrackPoint, Visit,
};
use crate::store::ResidentHit;
use crate::validate::check_id_number;

/// A new household.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewHousehold {
    /// Its grid's code.
    pub grid: String,
    /// Standard address.
    pub address: String,
    /// 常住 / 流动 / 人户分离 (or the codes); permanent when empty.
    pub residence: Option<String>,
    /// Flags (空巢, 独居, 出租屋 ... or the codes).
    pub flags: Vec<String>,
}

/// Changes to a household; `None` and empty lists leave things as they are.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HouseholdEdit {
    /// New address.
    pub address: Option<String>,
    /// New residence type.
    pub residence: Option<String>,
    /// Flags to add.
    pub add_flags: Vec<String>,
    /// Flags to remove.
    pub remove_flags: Vec<String>,
}

/// A person's details; `None` and empty lists leave a stored value as it is. Gender and birth
/// date are taken from a valid ID number when not given.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PersonFields {
    /// 18-character ID number.
    pub id_number: Option<String>,
    /// 男/女 or male/female.
    pub gender: Option<String>,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    /// Phones (replace the stored ones when not empty).
    pub phones: Vec<String>,
    /// Work or study.
    pub work: Option<String>,
    /// Key-person categories to add.
    pub categories: Vec<String>,
}

/// A new member of a household.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewResident {
    /// Full name.
    pub name: String,
    /// 与户主关系: 户主, 配偶, 子, 女, 父亲, 母亲, 孙子 ... or the codes.
    pub relation: String,
    /// The rest.
    pub person: PersonFields,
}

/// Changes to a member.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResidentEdit {
    /// New name.
    pub name: Option<String>,
    /// New relation.
    pub relation: Option<String>,
    /// New details.
    pub person: PersonFields,
    /// Moved out on this date.
    pub moved_out: Option<String>,
    /// Died on this date.
    pub deceased: Option<String>,
    /// Was never a member (误录).
    pub entered_by_mistake: bool,
}

/// A visit to record.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewVisit {
    /// The household.
    pub household: Option<DocId>,
    /// Why.
    pub purpose: String,
    /// What was found.
    pub findings: String,
    /// Where (latitude, longitude).
    pub gps: Option<(f64, f64)>,
    /// Who visited (default: this phone's worker).
    pub worker: Option<String>,
}

/// A patrol checkpoint: the result is always stated.
#[derive(Debug, Clone, Deserialize)]
pub struct NewCheckpoint {
    /// What was checked.
    pub name: String,
    /// Whether it was in order.
    pub ok: bool,
    /// Remarks.
    pub note: String,
    /// Where.
    pub gps: Option<(f64, f64)>,
}

/// Which page of a list: `limit` items from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Page {
    /// Items to skip.
    pub offset: u32,
    /// Items to return (1–500).
    pub limit: u32,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            offset: 0,
            limit: 50,
        }
    }
}

/// One page of a resident search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchPage {
    /// The hits on this page.
    pub hits: Vec<ResidentHit>,
    /// Residents matching in all.
    pub total: u64,
    /// This page's offset.
    pub offset: u32,
    /// Whether more pages follow.
    pub more: bool,
}

/// A member as the archive shows it, with labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    /// Resident id.
    pub id: RecordId,
    /// Name.
    pub name: String,
    /// Relation code.
    pub relation: String,
    /// Relation label (子女).
    pub relation_label: String,
    /// Gender code.
    pub gender: Option<String>,
    /// Gender label.
    pub gender_label: Option<String>,
    /// Birth date.
    pub birth_date: Option<String>,
    /// ID number.
    pub id_number: Option<String>,
    /// Phones.
    pub phones: Vec<String>,
    /// Work or study.
    pub work: String,
    /// Key-person categories.
    pub categories: Vec<String>,
    /// Status label (在住, 迁出 ...).
    pub status: String,
    /// When they moved out or died.
    pub status_date: Option<String>,
}

/// A visit as the archive shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisitView {
    /// Visit id.
    pub id: RecordId,
    /// When.
    pub at: i64,
    /// Who.
    pub worker: String,
    /// Why.
    pub purpose: String,
    /// What was found.
    pub findings: String,
    /// Photos attached.
    pub photos: usize,
}

/// A household's archive (一户一档).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HouseholdView {
    /// Household id.
    pub id: DocId,
    /// Grid code.
    pub grid: String,
    /// Address.
    pub address: String,
    /// The register's household number (户号), or empty.
    pub number: String,
    /// The registered (hukou) address (户籍地址), or empty.
    pub registered_address: String,
    /// Residence label.
    pub residence: String,
    /// Flag labels.
    pub flags: Vec<String>,
    /// Members, head first.
    pub members: Vec<MemberView>,
    /// Visits, newest first.
    pub visits: Vec<VisitView>,
    /// Cases naming the household.
    pub past_requests: Vec<CaseRow>,
    /// Fields with concurrent values.
    pub conflicts: Vec<ConflictView>,
    /// Rule problems to fix.
    pub problems: Vec<ProblemView>,
    /// The record itself.
    pub household: Household,
}

/// A patrol.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InspectionView {
    /// Patrol id.
    pub id: DocId,
    /// Grid code.
    pub grid: String,
    /// The record.
    pub inspection: Inspection,
}

pub(crate) fn grid_code(field: &str, s: &str) -> Result<GridCode, AppError> {
    GridCode::parse(s.trim()).map_err(|e| AppError::invalid(field, e.to_string()))
}

fn gps(field: &str, p: Option<(f64, f64)>) -> Result<Option<Gps>, AppError> {
    match p {
        None => Ok(None),
        Some((lat, lon)) => {
            crate::validate::check_gps(lat, lon)
                .map_err(|e| AppError::invalid(field, e.to_string()))?;
            Ok(Some(Gps::new(lat, lon)))
        }
    }
}

fn date(field: &str, d: &str) -> Result<String, AppError> {
    match crate::validate::parse_date(d.trim()) {
        Some(_) => Ok(d.trim().to_owned()),
        None => Err(AppError::invalid(
            field,
            format!("{d:?} is not a YYYY-MM-DD date"),
        )),
    }
}

/// A person's details checked and parsed, ready to apply without failing.
struct Person {
    id_number: Option<String>,
    gender: Option<String>,
    birth_date: Option<String>,
    phones: Vec<String>,
    work: Option<String>,
    categories: Vec<String>,
}

/// Checks `p`: vocabularies parsed, dates checked, and gender and birth date taken from a
/// valid ID number when not given.
fn person(p: &PersonFields) -> Result<Person, AppError> {
    let mut out = Person {
        id_number: None,
        gender: p.gender.as_deref().map(vocab::gender).transpose()?,
        birth_date: p
            .birth_date
            .as_deref()
            .map(|b| date("birth_date", b))
            .transpose()?,
        phones: p.phones.iter().map(|s| s.trim().to_owned()).collect(),
        work: p.work.clone(),
        categories: p
            .categories
            .iter()
            .map(|c| vocab::key_category(c))
            .collect::<Result<_, _>>()?,
    };
    if let Some(id) = &p.id_number {
        let id = id.trim().to_uppercase();
        let facts =
            check_id_number(&id).map_err(|e| AppError::invalid("id_number", e.to_string()))?;
        out.gender.get_or_insert_with(|| facts.gender.to_owned());
        out.birth_date.get_or_insert(facts.birth_date);
        out.id_number = Some(id);
    }
    Ok(out)
}

fn apply_person(r: &mut Resident, p: &Person) {
    if p.id_number.is_some() {
        r.id_number.clone_from(&p.id_number);
    }
    if p.gender.is_some() {
        r.gender.clone_from(&p.gender);
    }
    if p.birth_date.is_some() {
        r.birth_date.clone_from(&p.birth_date);
    }
    if !p.phones.is_empty() {
        r.phones.clone_from(&p.phones);
    }
    if let Some(w) = &p.work {
        r.work.clone_from(w);
    }
    r.categories.extend(p.categories.iter().cloned());
}

/// The name of another present head of `h`, when `member` is to become head too.
fn other_head(h: &Household, member: RecordId, relation: Relation) -> Option<String> {
    if relation != Relation::Head {
        return None;
    }
    h.members
        .iter()
        .find(|(id, m)| {
            **id != member && m.relation == Relation::Head && m.status == ResidentStatus::Present
        })
        .map(|(_, m)| m.name.clone())
}

fn two_heads(name: &str) -> AppError {
    AppError::invalid(
        "relation",
        format!("the household already has a head ({name}); change that member's relation first"),
    )
}

fn member_view(id: RecordId, m: &Resident) -> MemberView {
    MemberView {
        id,
        name: m.name.clone(),
        relation: serde_json::to_value(m.relation)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        relation_label: vocab::relation_label(m.relation),
        gender: m.gender.clone(),
        gender_label: m.gender.as_deref().map(vocab::gender_label),
        birth_date: m.birth_date.clone(),
        id_number: m.id_number.clone(),
        phones: m.phones.clone(),
        work: m.work.clone(),
        categories: m.categories.iter().cloned().collect(),
        status: m.status.label().to_owned(),
        status_date: m.status_date.clone(),
    }
}

impl Replica {
    /// Adds a grid unit (dispatchers and leaders; its level follows from the code's length).
    pub async fn add_grid(&self, code: &str, name: &str) -> Result<DocId, AppError> {
        let code = grid_code("code", code)?;
        let id = self
            .store
            .create(
                code.clone(),
                &Grid {
                    code: code.to_string(),
                    name: name.to_owned(),
                    roster: Default::default(),
                    boundary: Vec::new(),
                },
            )
            .await?;
        self.changed(&[id]);
        Ok(id)
    }

    /// Puts a worker on a grid's roster.
    pub async fn add_to_roster(
        &self,
        grid: DocId,
        worker_id: &str,
        entry: RosterEntry,
    ) -> Result<(), AppError> {
        const DUTIES: &[&str] = &["grid_worker", "part_time", "leader"];
        if !DUTIES.contains(&entry.duty.as_str()) {
            return Err(AppError::invalid(
                "duty",
                format!(
                    "unknown duty {:?}; accepted: {}",
                    entry.duty,
                    DUTIES.join(", ")
                ),
            ));
        }
        self.store
            .update::<Grid>(grid, |g| {
                g.roster.insert(worker_id.to_owned(), entry);
            })
            .await?;
        self.changed(&[grid]);
        Ok(())
    }

    /// Grid units on this phone (under `within`, when given).
    pub async fn grids(&self, within: Option<&str>) -> Result<Vec<GridRow>, AppError> {
        let within = within.map(|w| grid_code("within", w)).transpose()?;
        Ok(self.store.grids(within.as_ref()).await?)
    }

    /// Registers a household; returns its id.
    pub async fn add_household(&self, h: NewHousehold) -> Result<DocId, AppError> {
        let grid = grid_code("grid", &h.grid)?;
        let residence = match &h.residence {
            Some(r) => vocab::residence(r)?,
            None => Residence::Permanent,
        };
        let mut record = Household::new(h.address, residence);
        for f in &h.flags {
            record.flags.insert(vocab::household_flag(f)?);
        }
        let id = self.store.create(grid, &record).await?;
        self.changed(&[id]);
        Ok(id)
    }

    /// Changes a household; returns whether anything changed.
    pub async fn edit_household(&self, id: DocId, e: HouseholdEdit) -> Result<bool, AppError> {
        let residence = e.residence.as_deref().map(vocab::residence).transpose()?;
        let add: Vec<String> = e
            .add_flags
            .iter()
            .map(|f| vocab::household_flag(f))
            .collect::<Result<_, _>>()?;
        let remove: Vec<String> = e
            .remove_flags
            .iter()
            .map(|f| vocab::household_flag(f))
            .collect::<Result<_, _>>()?;
        let changed = self
            .store
            .update::<Household>(id, |h| {
                if let Some(a) = e.address {
                    h.address = a;
                }
                if let Some(r) = residence {
                    h.residence = r;
                }
                h.flags.extend(add);
                for f in &remove {
                    h.flags.remove(f);
                }
            })
            .await?;
        if changed {
            self.changed(&[id]);
        }
        Ok(changed)
    }

    /// Households on this phone (in `grid` or under it, when given).
    pub async fn households(&self, grid: Option<&str>) -> Result<Vec<HouseholdRow>, AppError> {
        let grid = grid.map(|g| grid_code("grid", g)).transpose()?;
        Ok(self.store.households(grid.as_ref()).await?)
    }

    /// A household's archive: members, visits, past requests, conflicts and problems.
    pub async fn household(&self, id: DocId) -> Result<HouseholdView, AppError> {
        let doc = self.store.load(id).await?;
        let h: Household = doc.read().map_err(crate::store::StoreError::from)?;
        let mut members: Vec<(&RecordId, &Resident)> = h.members.iter().collect();
        members.sort_by_key(|(_, m)| {
            (
                m.relation != Relation::Head,
                m.status != ResidentStatus::Present,
                m.birth_date.clone(),
            )
        });
        let mut visits: Vec<VisitView> = h
            .visible_visits()
            .map(|(vid, v)| VisitView {
                id: *vid,
                at: v.at,
                worker: v.worker.clone(),
                purpose: v.purpose.clone(),
                findings: v.findings.clone(),
                photos: v.photos.len(),
            })
            .collect();
        visits.sort_by_key(|v| std::cmp::Reverse(v.at));
        Ok(HouseholdView {
            id,
            grid: doc.header().scope.to_string(),
            address: h.address.clone(),
            number: h.number.clone(),
            registered_address: h.registered_address.clone(),
            residence: h.residence.label().to_owned(),
            flags: h
                .flags
                .iter()
                .map(|f| vocab::household_flag_label(f))
                .collect(),
            members: members
                .into_iter()
                .map(|(i, m)| member_view(*i, m))
                .collect(),
            visits,
            past_requests: self.store.cases_of_household(id).await?,
            conflicts: conflict_views(&doc.conflicts()),
            problems: self.problems(id).await?,
            household: h,
        })
    }

    /// Adds a member to a household; returns the resident's id.
    pub async fn add_resident(
        &self,
        household: DocId,
        r: NewResident,
    ) -> Result<RecordId, AppError> {
        if r.name.trim().is_empty() {
            return Err(AppError::invalid("name", "a name is required"));
        }
        let mut resident = Resident::new(r.name.trim(), vocab::relation(&r.relation)?);
        apply_person(&mut resident, &person(&r.person)?);
        let rid = RecordId::new();
        let mut second_head = None;
        self.store
            .update::<Household>(household, |h| {
                second_head = other_head(h, rid, resident.relation);
                if second_head.is_none() {
                    h.members.insert(rid, resident);
                }
            })
            .await?;
        if let Some(name) = second_head {
            return Err(two_heads(&name));
        }
        self.changed(&[household]);
        Ok(rid)
    }

    /// Changes a member's details, or records a move-out, death or mistaken entry.
    pub async fn edit_resident(
        &self,
        household: DocId,
        resident: RecordId,
        e: ResidentEdit,
    ) -> Result<bool, AppError> {
        let relation = e.relation.as_deref().map(vocab::relation).transpose()?;
        let moved_out = e
            .moved_out
            .as_deref()
            .map(|d| date("moved_out", d))
            .transpose()?;
        let deceased = e
            .deceased
            .as_deref()
            .map(|d| date("deceased", d))
            .transpose()?;
        let details = person(&e.person)?;
        let mut found = false;
        let mut second_head = None;
        // Applied inside the update, on the state it writes over: a change pulled meanwhile
        // to another field of this member is kept.
        let changed = self
            .store
            .update::<Household>(household, |h| {
                if !h.members.contains_key(&resident) {
                    return;
                }
                found = true;
                if let Some(rel) = relation {
                    second_head = other_head(h, resident, rel);
                    if second_head.is_some() {
                        return;
                    }
                }
                let Some(r) = h.members.get_mut(&resident) else {
                    return;
                };
                if let Some(n) = e.name {
                    r.name = n;
                }
                if let Some(rel) = relation {
                    r.relation = rel;
                }
                apply_person(r, &details);
                if let Some(d) = moved_out {
                    r.status = ResidentStatus::MovedOut;
                    r.status_date = Some(d);
                }
                if let Some(d) = deceased {
                    r.status = ResidentStatus::Deceased;
                    r.status_date = Some(d);
                }
                if e.entered_by_mistake {
                    r.status = ResidentStatus::EnteredByMistake;
                    r.status_date = None;
                }
            })
            .await?;
        if !found {
            return Err(AppError::NotFound(format!(
                "household {household} has no member {resident}"
            )));
        }
        if let Some(name) = second_head {
            return Err(two_heads(&name));
        }
        if changed {
            self.changed(&[household]);
        }
        Ok(changed)
    }

    /// Residents whose name contains `query` (or whose ID number is `query`), one page at a
    /// time, exact names first.
    pub async fn search_residents(&self, query: &str, page: Page) -> Result<SearchPage, AppError> {
        if !(1..=500).contains(&page.limit) {
            return Err(AppError::invalid("limit", "a page holds 1 to 500 hits"));
        }
        let (hits, total) = self
            .store
            .search_residents_page(query, page.offset, page.limit)
            .await?;
        let more = u64::from(page.offset) + (hits.len() as u64) < total;
        Ok(SearchPage {
            hits,
            total,
            offset: page.offset,
            more,
        })
    }

    /// Records a visit; returns its id.
    pub async fn add_visit(&self, v: NewVisit) -> Result<RecordId, AppError> {
        let household = v
            .household
            .ok_or_else(|| AppError::invalid("household", "which household was visited"))?;
        if v.purpose.trim().is_empty() {
            return Err(AppError::invalid("purpose", "a visit needs its purpose"));
        }
        let worker = match v.worker {
            Some(w) => w,
            None => self.worker().await?,
        };
        let visit = Visit {
            worker,
            at: now_ms(),
            gps: gps("gps", v.gps)?,
            purpose: v.purpose,
            findings: v.findings,
            photos: Default::default(),
            cases: Vec::new(),
            author: None,
        };
        let vid = RecordId::new();
        self.store
            .update::<Household>(household, |h| {
                h.visits.insert(vid, visit);
            })
            .await?;
        self.changed(&[household]);
        Ok(vid)
    }

    /// Changes a visit's purpose or findings (only its author's device may); returns whether
    /// anything changed.
    pub async fn edit_visit(
        &self,
        household: DocId,
        visit: RecordId,
        purpose: Option<String>,
        findings: Option<String>,
    ) -> Result<bool, AppError> {
        if purpose.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(AppError::invalid("purpose", "a visit needs its purpose"));
        }
        let mut found = false;
        let changed = self
            .store
            .update::<Household>(household, |h| {
                let Some(v) = h.visits.get_mut(&visit) else {
                    return;
                };
                found = true;
                if let Some(p) = purpose {
                    v.purpose = p;
                }
                if let Some(f) = findings {
                    v.findings = f;
                }
            })
            .await?;
        if !found {
            return Err(AppError::NotFound(format!(
                "household {household} has no visit {visit}"
            )));
        }
        if changed {
            self.changed(&[household]);
        }
        Ok(changed)
    }

    /// Starts a patrol of a grid; returns its id.
    pub async fn start_inspection(&self, grid: &str) -> Result<DocId, AppError> {
        let grid = grid_code("grid", grid)?;
        let i = Inspection {
            worker: self.worker().await?,
            started_at: now_ms(),
            ended_at: None,
            track: Vec::new(),
            checkpoints: Default::default(),
            findings: Default::default(),
            photos: Default::default(),
            redactions: Default::default(),
        };
        let id = self.store.create(grid, &i).await?;
        self.changed(&[id]);
        Ok(id)
    }

    /// Appends a GPS point to a patrol's track.
    pub async fn track(&self, id: DocId, lat: f64, lon: f64) -> Result<(), AppError> {
        crate::validate::check_gps(lat, lon)
            .map_err(|e| AppError::invalid("gps", e.to_string()))?;
        self.store
            .update::<Inspection>(id, |i| {
                i.track.push(TrackPoint {
                    at: now_ms(),
                    lat,
                    lon,
                })
            })
            .await?;
        self.changed(&[id]);
        Ok(())
    }

    /// Records a checkpoint; returns its id.
    pub async fn add_checkpoint(&self, id: DocId, c: NewCheckpoint) -> Result<RecordId, AppError> {
        if c.name.trim().is_empty() {
            return Err(AppError::invalid("name", "say what was checked"));
        }
        let cp = Checkpoint {
            name: c.name,
            checked_at: Some(now_ms()),
            ok: Some(c.ok),
            gps: gps("gps", c.gps)?,
            note: c.note,
        };
        let cid = RecordId::new();
        self.store
            .update::<Inspection>(id, |i| {
                i.checkpoints.insert(cid, cp);
            })
            .await?;
        self.changed(&[id]);
        Ok(cid)
    }

    /// Records a finding; returns its id.
    pub async fn add_finding(&self, id: DocId, description: &str) -> Result<RecordId, AppError> {
        if description.trim().is_empty() {
            return Err(AppError::invalid("description", "say what was found"));
        }
        let fid = RecordId::new();
        self.store
            .update::<Inspection>(id, |i| {
                i.findings.insert(
                    fid,
                    Finding {
                        description: description.to_owned(),
                        at: now_ms(),
                        gps: None,
                        case: None,
                    },
                );
            })
            .await?;
        self.changed(&[id]);
        Ok(fid)
    }

    /// Ends a patrol.
    pub async fn finish_inspection(&self, id: DocId) -> Result<(), AppError> {
        self.store
            .update::<Inspection>(id, |i| i.ended_at = Some(now_ms().max(i.started_at)))
            .await?;
        self.changed(&[id]);
        Ok(())
    }

    /// Patrols on this phone (in `grid` or under it).
    pub async fn inspections(&self, grid: Option<&str>) -> Result<Vec<InspectionRow>, AppError> {
        let grid = grid.map(|g| grid_code("grid", g)).transpose()?;
        Ok(self.store.inspections(grid.as_ref()).await?)
    }

    /// One patrol.
    pub async fn inspection(&self, id: DocId) -> Result<InspectionView, AppError> {
        let doc = self.store.load(id).await?;
        let inspection: Inspection = doc.read().map_err(crate::store::StoreError::from)?;
        Ok(InspectionView {
            id,
            grid: doc.header().scope.to_string(),
            inspection,
        })
    }

    /// Writes sample households `range` of the generator seeded `seed` (for trying the app),
    /// in one transaction; returns their ids.
    pub async fn seed(
        &self,
        grid: &str,
        range: std::ops::Range<usize>,
        residents: usize,
        seed: u64,
    ) -> Result<Vec<DocId>, AppError> {
        let grid = grid_code("grid", grid)?;
        let records: Vec<Household> = range
            .map(|i| {
                crate::sample::household(
                    seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                    residents,
                    0,
                )
            })
            .collect();
        let ids = self.store.create_many(grid, &records).await?;
        self.changed(&ids);
        Ok(ids)
    }
}
