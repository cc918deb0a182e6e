//! Relational projections of documents: the rows lists, name search and dashboards read.
//!
//! A projection is a pure function of one document, so the phone and the server compute the
//! same rows and either can rebuild them from the documents at any time.

use gridsync_proto::{DocId, DocType, RecordId};
use serde::Serialize;

use crate::document::{DocError, Document};
use crate::records::{Case, Grid, Household, Inspection};

/// One grid unit, for the grid list.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct GridRow {
    /// The grid document.
    #[sqlx(try_from = "String")]
    pub doc_id: DocId,
    /// Hierarchical code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// `town`, `district`, `village`, `grid` or `micro_grid`.
    pub level: String,
    /// The code of the unit above, if any.
    pub parent: Option<String>,
    /// How many people are on the roster.
    pub roster_size: i64,
    /// Boundary polygon as JSON `[[lat, lon], ...]`.
    pub boundary: String,
}

/// One household, for the grid's household list.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct HouseholdRow {
    /// The household document.
    #[sqlx(try_from = "String")]
    pub doc_id: DocId,
    /// Its grid (the document scope).
    pub grid: String,
    /// Standard address.
    pub address: String,
    /// Register household number (户号), or empty.
    pub number: String,
    /// Registered (hukou) address (户籍地址), or empty.
    pub registered_address: String,
    /// `permanent`, `floating` or `separated`.
    pub residence: String,
    /// Flags, comma-separated in sorted order.
    pub flags: String,
    /// Name of the head of household, if recorded.
    pub head_name: Option<String>,
    /// Members still living there.
    pub member_count: i64,
    /// Visits recorded.
    pub visit_count: i64,
    /// Time of the latest visit.
    pub last_visit_at: Option<i64>,
    /// Fields with unresolved concurrent values.
    pub conflict_count: i64,
}

/// One resident, for name search.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ResidentRow {
    /// The resident's id inside the household document.
    #[sqlx(try_from = "String")]
    pub resident_id: RecordId,
    /// The household document.
    #[sqlx(try_from = "String")]
    pub household_id: DocId,
    /// The household's grid.
    pub grid: String,
    /// Full name.
    pub name: String,
    /// ID number, if recorded.
    pub id_number: Option<String>,
    /// `male` / `female`.
    pub gender: Option<String>,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    /// Relation to the head of household.
    pub relation: String,
    /// Phones, comma-separated.
    pub phones: String,
    /// Work or study.
    pub work: String,
    /// `present`, `moved_out` or `deceased`.
    pub status: String,
    /// Key-person categories, comma-separated.
    pub categories: String,
}

/// One visit, for a household's visit log.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct VisitRow {
    /// The visit's id inside the household document.
    #[sqlx(try_from = "String")]
    pub visit_id: RecordId,
    /// The household document.
    #[sqlx(try_from = "String")]
    pub household_id: DocId,
    /// Who visited.
    pub worker: String,
    /// When.
    pub at: i64,
    /// Why.
    pub purpose: String,
    /// What was found.
    pub findings: String,
}

/// One case, for case lists, dashboards and indicators.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CaseRow {
    /// The case document.
    #[sqlx(try_from = "String")]
    pub doc_id: DocId,
    /// Its grid.
    pub grid: String,
    /// Short title.
    pub title: String,
    /// Derived workflow status.
    pub status: String,
    /// Where it came from.
    pub source: String,
    /// 大类 code.
    pub category: String,
    /// 小类 code.
    pub subcategory: String,
    /// `normal` / `urgent`.
    pub urgency: String,
    /// When it was reported.
    pub reported_at: i64,
    /// Address of the problem.
    pub address: String,
    /// Lead department, once dispatched.
    pub lead: Option<String>,
    /// Co-departments, comma-separated.
    pub co: String,
    /// When (last) dispatched.
    pub dispatched_at: Option<i64>,
    /// Current deadline.
    pub deadline: Option<i64>,
    /// When the amber flag starts.
    pub amber_at: Option<i64>,
    /// When the department reported its result.
    pub handled_at: Option<i64>,
    /// When it was closed.
    pub closed_at: Option<i64>,
    /// 1 when the grid worker closed it alone (自办自结).
    pub self_closed: i64,
    /// Times the result was sent back.
    pub reworks: i64,
    /// Approved extensions.
    pub extensions: i64,
    /// 1 when it was ever suspended (挂账).
    pub ever_suspended: i64,
    /// 回访 satisfaction.
    pub satisfaction: Option<String>,
    /// 督办 notices.
    pub supervisions: i64,
    /// Workflow events that did not apply (for the dispatcher to look at).
    pub event_conflicts: i64,
    /// Fields with unresolved concurrent values.
    pub conflict_count: i64,
    /// Latitude of the problem's location, when recorded.
    pub lat: Option<f64>,
    /// Longitude of the problem's location, when recorded.
    pub lon: Option<f64>,
}

/// A case's link to a household (and resident) it concerns: a household's past requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseLinkRow {
    /// The case document.
    pub case_id: DocId,
    /// The household document.
    pub household_id: DocId,
    /// The resident, if known.
    pub resident_id: Option<RecordId>,
}

/// One patrol, for the inspection list.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct InspectionRow {
    /// The inspection document.
    #[sqlx(try_from = "String")]
    pub doc_id: DocId,
    /// Its grid.
    pub grid: String,
    /// Who patrolled.
    pub worker: String,
    /// Start.
    pub started_at: i64,
    /// End, when finished.
    pub ended_at: Option<i64>,
    /// Track points recorded.
    pub track_points: i64,
    /// Findings recorded.
    pub findings: i64,
}

/// One photo a document references (redacted ones left out): what the upload queue, scoped
/// downloads and the evidence checks read.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct PhotoRow {
    /// The referencing document.
    #[sqlx(try_from = "String")]
    pub doc_id: DocId,
    /// The photo's id inside it.
    #[sqlx(try_from = "String")]
    pub photo_id: RecordId,
    /// `household`, `case` or `inspection`.
    pub doc_type: String,
    /// The document's scope.
    pub grid: String,
    /// Where in the document: `photos`, `visits.<id>` or `checkpoints.<id>`.
    pub entry: String,
    /// `before`, `during`, `after`, `check` or `record`.
    pub stage: String,
    /// SHA-256 of the full image.
    pub sha256: String,
    /// Its size in bytes.
    pub size: i64,
    /// SHA-256 of the thumbnail, when the pipeline made one.
    pub thumb_sha256: Option<String>,
    /// Its size in bytes.
    pub thumb_size: Option<i64>,
    /// MIME type of the full image.
    pub mime: String,
    /// Capture time.
    pub taken_at: i64,
    /// Latitude, when known.
    pub lat: Option<f64>,
    /// Longitude, when known.
    pub lon: Option<f64>,
}

/// Bumped whenever a projection's shape or meaning changes: stores rebuild on open.
pub const PROJECTION_VERSION: &str = "6";

/// Every row one document contributes.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// A grid document.
    Grid(GridRow),
    /// A household document with its residents and visits.
    Household {
        /// The household row.
        household: HouseholdRow,
        /// Its members.
        residents: Vec<ResidentRow>,
        /// Its visits.
        visits: Vec<VisitRow>,
        /// Photos of its visible visits.
        photos: Vec<PhotoRow>,
    },
    /// A case document with the households it concerns.
    Case {
        /// The case row.
        case: Box<CaseRow>,
        /// Links to households and residents.
        links: Vec<CaseLinkRow>,
        /// Its photos.
        photos: Vec<PhotoRow>,
    },
    /// An inspection document.
    Inspection {
        /// The inspection row.
        inspection: InspectionRow,
        /// Its photos.
        photos: Vec<PhotoRow>,
    },
}

/// The rows of the photos in `photos` (skipping the redacted ones), found at `entry`.
fn photo_rows<'a>(
    doc: DocId,
    doc_type: DocType,
    grid: &str,
    entry: &dyn Fn(&crate::records::PhotoRef) -> String,
    photos: impl IntoIterator<Item = (&'a RecordId, &'a crate::records::PhotoRef)>,
    hidden: &std::collections::BTreeSet<String>,
) -> Vec<PhotoRow> {
    photos
        .into_iter()
        .filter(|(id, _)| !hidden.contains(&id.to_string()))
        .map(|(id, p)| PhotoRow {
            doc_id: doc,
            photo_id: *id,
            doc_type: doc_type.as_str().to_owned(),
            grid: grid.to_owned(),
            entry: entry(p),
            stage: snake(&p.stage),
            sha256: p.sha256.clone(),
            size: i64::try_from(p.size).unwrap_or(i64::MAX),
            thumb_sha256: p.thumb_sha256.clone(),
            thumb_size: p.thumb_size.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            mime: p.mime.clone(),
            taken_at: p.taken_at,
            lat: p.gps.map(|g| g.lat),
            lon: p.gps.map(|g| g.lon),
        })
        .collect()
}

fn snake<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Computes the rows of one document.
pub fn project(doc: &Document) -> Result<Projection, DocError> {
    let h = doc.header();
    let id = h.id;
    let grid = h.scope.to_string();
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    Ok(match h.doc_type {
        DocType::Grid => {
            let g: Grid = doc.read()?;
            let code = g.grid_code();
            Projection::Grid(GridRow {
                doc_id: id,
                level: code
                    .as_ref()
                    .map(|c| c.level().as_str())
                    .unwrap_or("")
                    .to_owned(),
                parent: code.and_then(|c| c.parent()).map(|p| p.to_string()),
                boundary: serde_json::to_string(&g.boundary).unwrap_or_else(|_| "[]".into()),
                code: g.code,
                name: g.name,
                roster_size: count(g.roster.len()),
            })
        }
        DocType::Household => {
            let (hh, conflicts) = doc.read_with_conflicts::<Household>()?;
            let conflict_count = count(conflicts.len());
            let residents = hh
                .members
                .iter()
                .map(|(rid, m)| ResidentRow {
                    resident_id: *rid,
                    household_id: id,
                    grid: grid.clone(),
                    name: m.name.clone(),
                    id_number: m.id_number.clone(),
                    gender: m.gender.clone(),
                    birth_date: m.birth_date.clone(),
                    relation: snake(&m.relation),
                    phones: m.phones.join(","),
                    work: m.work.clone(),
                    status: snake(&m.status),
                    categories: m.categories.iter().cloned().collect::<Vec<_>>().join(","),
                })
                .collect();
            let mut photos = Vec::new();
            for (vid, v) in hh.visible_visits() {
                let at = format!("visits.{vid}");
                photos.extend(photo_rows(
                    id,
                    h.doc_type,
                    &grid,
                    &|_| at.clone(),
                    &v.photos,
                    &Default::default(),
                ));
            }
            let visits = hh
                .visible_visits()
                .map(|(vid, v)| VisitRow {
                    visit_id: *vid,
                    household_id: id,
                    worker: v.worker.clone(),
                    at: v.at,
                    purpose: v.purpose.clone(),
                    findings: v.findings.clone(),
                })
                .collect();
            Projection::Household {
                household: HouseholdRow {
                    doc_id: id,
                    grid,
                    address: hh.address.clone(),
                    number: hh.number.clone(),
                    registered_address: hh.registered_address.clone(),
                    residence: snake(&hh.residence),
                    flags: hh.flags.iter().cloned().collect::<Vec<_>>().join(","),
                    head_name: hh.head().map(|(_, m)| m.name.clone()),
                    member_count: count(
                        hh.members
                            .values()
                            .filter(|m| m.status == crate::records::ResidentStatus::Present)
                            .count(),
                    ),
                    visit_count: count(hh.visible_visits().count()),
                    last_visit_at: hh.visible_visits().map(|(_, v)| v.at).max(),
                    conflict_count,
                },
                residents,
                visits,
                photos,
            }
        }
        DocType::Case => {
            let (c, conflicts) = doc.read_with_conflicts::<Case>()?;
            let conflict_count = count(conflicts.len());
            let mut links: Vec<CaseLinkRow> = c
                .parties
                .values()
                .filter_map(|p| {
                    p.household.map(|hid| CaseLinkRow {
                        case_id: id,
                        household_id: hid,
                        resident_id: p.resident,
                    })
                })
                .collect();
            links.sort_by_key(|l| (l.household_id, l.resident_id));
            links.dedup();
            let state = c.state();
            let hidden = crate::records::redacted(c.redactions.values(), "photos");
            let photos = photo_rows(
                id,
                h.doc_type,
                &grid,
                &|_| "photos".to_owned(),
                &c.photos,
                &hidden,
            );
            Projection::Case {
                case: Box::new(CaseRow {
                    doc_id: id,
                    grid,
                    status: state.status.as_str().to_owned(),
                    title: c.title,
                    source: snake(&c.source),
                    category: c.category,
                    subcategory: c.subcategory,
                    urgency: snake(&c.urgency),
                    reported_at: state.reported_at.unwrap_or(c.reported_at),
                    address: c.address,
                    lead: state.lead.clone(),
                    co: state.co.join(","),
                    dispatched_at: state.dispatched_at,
                    deadline: state.deadline,
                    amber_at: state.amber_at,
                    handled_at: state.handled_at,
                    closed_at: state.closed_at,
                    self_closed: i64::from(state.self_closed),
                    reworks: i64::from(state.reworks),
                    extensions: i64::from(state.extensions),
                    ever_suspended: i64::from(state.ever_suspended),
                    satisfaction: state.satisfaction.map(|s| snake(&s)),
                    supervisions: count(state.supervisions.len()),
                    event_conflicts: count(state.conflicts.len()),
                    conflict_count,
                    lat: c.location.map(|g| g.lat),
                    lon: c.location.map(|g| g.lon),
                }),
                links,
                photos,
            }
        }
        DocType::Inspection => {
            let i: Inspection = doc.read()?;
            let hidden = crate::records::redacted(i.redactions.values(), "photos");
            let photos = photo_rows(
                id,
                h.doc_type,
                &grid,
                &|p| match p.checkpoint {
                    Some(cp) => format!("checkpoints.{cp}"),
                    None => "photos".to_owned(),
                },
                &i.photos,
                &hidden,
            );
            Projection::Inspection {
                inspection: InspectionRow {
                    doc_id: id,
                    grid,
                    worker: i.worker,
                    started_at: i.started_at,
                    ended_at: i.ended_at,
                    track_points: count(i.track.len()),
                    findings: count(i.findings.len()),
                },
                photos,
            }
        }
    })
}

/// A projection could not be computed or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The document could not be read.
    #[error(transparent)]
    Doc(#[from] DocError),
    /// The database refused a write.
    #[error("writing projections: {0}")]
    Db(#[from] sqlx::Error),
}

/// The rows a document of each type owns. A document's type never changes (the header is
/// immutable), so a rewrite clears only its own type's tables.
fn clear_statements(doc_type: DocType) -> &'static [&'static str] {
    match doc_type {
        DocType::Grid => &["DELETE FROM p_grids WHERE doc_id = $1"],
        DocType::Household => &[
            "DELETE FROM p_households WHERE doc_id = $1",
            "DELETE FROM p_residents WHERE household_id = $1",
            "DELETE FROM p_visits WHERE household_id = $1",
            "DELETE FROM p_photos WHERE doc_id = $1",
        ],
        DocType::Case => &[
            "DELETE FROM p_cases WHERE doc_id = $1",
            "DELETE FROM p_case_links WHERE case_id = $1",
            "DELETE FROM p_photos WHERE doc_id = $1",
        ],
        DocType::Inspection => &[
            "DELETE FROM p_inspections WHERE doc_id = $1",
            "DELETE FROM p_photos WHERE doc_id = $1",
        ],
    }
}

/// The `VALUES` list of a multi-row `INSERT` in numbered parameters: `($1, .. $k),
/// ($k+1, ..), ...` for `rows` rows of `k` parameters (SQLite and PostgreSQL alike).
pub fn value_rows(rows: usize, k: usize) -> String {
    (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=k).map(|i| format!("${}", r * k + i)).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Projection rows written into SQLite (the phone's store and the embedded server).
pub mod sqlite;

/// Projection rows written into PostgreSQL (the county's server).
pub mod postgres;
