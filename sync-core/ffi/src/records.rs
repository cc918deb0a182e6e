//! The records that cross the boundary: plain data (ids as text, times as milliseconds since
//! 1970, coordinates as two numbers), converted from and to the app API's types.

use gridsync_core::app;
use gridsync_core::store::PhotoTarget;

use super::{ApiError, doc_id, record_id};

/// Who this phone is.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Identity {
    /// Device id.
    pub device: String,
    /// The person using it.
    pub worker: Option<String>,
    /// Role (`worker` until enrolled).
    pub role: String,
    /// Department, for a clerk.
    pub department: Option<String>,
    /// The server it enrolled with.
    pub server: Option<String>,
    /// Whether it is enrolled.
    pub enrolled: bool,
}

impl From<app::Identity> for Identity {
    fn from(i: app::Identity) -> Self {
        Self {
            device: i.device,
            worker: i.worker,
            role: i.role,
            department: i.department,
            server: i.server,
            enrolled: i.enrolled,
        }
    }
}

/// What enrollment gave this phone.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Enrollment {
    /// Device id.
    pub device: String,
    /// Device name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Grid scopes.
    pub scopes: Vec<String>,
    /// Department, for a clerk.
    pub department: Option<String>,
}

impl From<app::Enrollment> for Enrollment {
    fn from(e: app::Enrollment) -> Self {
        Self {
            device: e.device,
            name: e.name,
            role: e.role,
            scopes: e.scopes,
            department: e.department,
        }
    }
}

/// A department.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Department {
    /// Code (`D01`).
    pub code: String,
    /// Name.
    pub name: String,
}

impl From<app::DeptRef> for Department {
    fn from(d: app::DeptRef) -> Self {
        Self {
            code: d.code,
            name: d.name,
        }
    }
}

/// A 小类 of the category table.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Category {
    /// Four digits.
    pub code: String,
    /// 小类 name.
    pub name: String,
    /// 大类 code.
    pub major_code: String,
    /// 大类 name.
    pub major_name: String,
    /// Default lead department.
    pub lead: Department,
    /// Default co-departments.
    pub co: Vec<Department>,
    /// Time limit in words.
    pub limit: String,
    /// Urgent time limit in words.
    pub urgent_limit: String,
}

impl From<app::CategoryInfo> for Category {
    fn from(c: app::CategoryInfo) -> Self {
        Self {
            code: c.code,
            name: c.name,
            major_code: c.major_code,
            major_name: c.major_name,
            lead: c.lead.into(),
            co: c.co.into_iter().map(Into::into).collect(),
            limit: c.limit,
            urgent_limit: c.urgent_limit,
        }
    }
}

/// A vocabulary term: stored code and Chinese label.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Term {
    /// Code.
    pub code: String,
    /// Label.
    pub label: String,
}

/// The vocabularies for the app's pickers.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Vocabularies {
    /// 与户主关系.
    pub relations: Vec<Term>,
    /// 居住类型.
    pub residences: Vec<Term>,
    /// 性别.
    pub genders: Vec<Term>,
    /// 户标签.
    pub household_flags: Vec<Term>,
    /// 重点人群.
    pub key_categories: Vec<Term>,
    /// Case sources.
    pub case_sources: Vec<Term>,
    /// Case statuses.
    pub statuses: Vec<Term>,
    /// Workflow actions.
    pub actions: Vec<Term>,
    /// Satisfaction.
    pub satisfactions: Vec<Term>,
    /// Photo stages.
    pub photo_stages: Vec<Term>,
}

fn terms(v: Vec<app::vocab::Term>) -> Vec<Term> {
    v.into_iter()
        .map(|t| Term {
            code: t.code,
            label: t.label,
        })
        .collect()
}

impl From<app::vocab::Vocabularies> for Vocabularies {
    fn from(v: app::vocab::Vocabularies) -> Self {
        Self {
            relations: terms(v.relations),
            residences: terms(v.residences),
            genders: terms(v.genders),
            household_flags: terms(v.household_flags),
            key_categories: terms(v.key_categories),
            case_sources: terms(v.case_sources),
            statuses: terms(v.statuses),
            actions: terms(v.actions),
            satisfactions: terms(v.satisfactions),
            photo_stages: terms(v.photo_stages),
        }
    }
}

/// A new household.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NewHousehold {
    /// Grid code.
    pub grid: String,
    /// Address.
    pub address: String,
    /// 常住 / 流动 / 人户分离.
    pub residence: Option<String>,
    /// Flags.
    pub flags: Vec<String>,
}

impl From<NewHousehold> for app::NewHousehold {
    fn from(h: NewHousehold) -> Self {
        Self {
            grid: h.grid,
            address: h.address,
            residence: h.residence,
            flags: h.flags,
        }
    }
}

/// Changes to a household.
#[derive(Debug, Clone, uniffi::Record)]
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

impl From<HouseholdEdit> for app::HouseholdEdit {
    fn from(e: HouseholdEdit) -> Self {
        Self {
            address: e.address,
            residence: e.residence,
            add_flags: e.add_flags,
            remove_flags: e.remove_flags,
        }
    }
}

/// A household in a list.
#[derive(Debug, Clone, uniffi::Record)]
pub struct HouseholdSummary {
    /// Household id.
    pub id: String,
    /// Grid code.
    pub grid: String,
    /// Address.
    pub address: String,
    /// The register's household number (户号), or empty.
    pub number: String,
    /// Residence code.
    pub residence: String,
    /// Head's name.
    pub head_name: Option<String>,
    /// Members.
    pub member_count: i64,
    /// Visits.
    pub visit_count: i64,
    /// Fields in conflict.
    pub conflict_count: i64,
}

impl From<gridsync_core::projection::HouseholdRow> for HouseholdSummary {
    fn from(h: gridsync_core::projection::HouseholdRow) -> Self {
        Self {
            id: h.doc_id.to_string(),
            grid: h.grid,
            address: h.address,
            number: h.number,
            residence: h.residence,
            head_name: h.head_name,
            member_count: h.member_count,
            visit_count: h.visit_count,
            conflict_count: h.conflict_count,
        }
    }
}

/// A member of a household.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Member {
    /// Resident id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Relation code.
    pub relation: String,
    /// Relation label.
    pub relation_label: String,
    /// Gender code.
    pub gender: Option<String>,
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
    /// Status label.
    pub status: String,
}

impl From<app::MemberView> for Member {
    fn from(m: app::MemberView) -> Self {
        Self {
            id: m.id.to_string(),
            name: m.name,
            relation: m.relation,
            relation_label: m.relation_label,
            gender: m.gender,
            birth_date: m.birth_date,
            id_number: m.id_number,
            phones: m.phones,
            work: m.work,
            categories: m.categories,
            status: m.status,
        }
    }
}

/// A visit.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Visit {
    /// Visit id.
    pub id: String,
    /// When.
    pub at: i64,
    /// Who.
    pub worker: String,
    /// Why.
    pub purpose: String,
    /// What was found.
    pub findings: String,
    /// Photos.
    pub photos: u32,
}

/// A case in a list.
#[derive(Debug, Clone, uniffi::Record)]
pub struct CaseSummary {
    /// Case id.
    pub id: String,
    /// Grid code.
    pub grid: String,
    /// Title.
    pub title: String,
    /// Status code.
    pub status: String,
    /// 小类 code.
    pub subcategory: String,
    /// When reported.
    pub reported_at: i64,
    /// Address.
    pub address: String,
    /// Lead department.
    pub lead: Option<String>,
    /// Deadline.
    pub deadline: Option<i64>,
}

impl From<gridsync_core::projection::CaseRow> for CaseSummary {
    fn from(c: gridsync_core::projection::CaseRow) -> Self {
        Self {
            id: c.doc_id.to_string(),
            grid: c.grid,
            title: c.title,
            status: c.status,
            subcategory: c.subcategory,
            reported_at: c.reported_at,
            address: c.address,
            lead: c.lead,
            deadline: c.deadline,
        }
    }
}

/// A household's archive (一户一档).
#[derive(Debug, Clone, uniffi::Record)]
pub struct HouseholdView {
    /// Household id.
    pub id: String,
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
    pub members: Vec<Member>,
    /// Visits, newest first.
    pub visits: Vec<Visit>,
    /// Cases naming the household.
    pub past_requests: Vec<CaseSummary>,
    /// Fields in conflict.
    pub conflicts: Vec<Conflict>,
    /// Problems to fix.
    pub problems: Vec<Problem>,
}

impl From<app::HouseholdView> for HouseholdView {
    fn from(h: app::HouseholdView) -> Self {
        Self {
            id: h.id.to_string(),
            grid: h.grid,
            address: h.address,
            number: h.number,
            registered_address: h.registered_address,
            residence: h.residence,
            flags: h.flags,
            members: h.members.into_iter().map(Into::into).collect(),
            visits: h
                .visits
                .into_iter()
                .map(|v| Visit {
                    id: v.id.to_string(),
                    at: v.at,
                    worker: v.worker,
                    purpose: v.purpose,
                    findings: v.findings,
                    photos: u32::try_from(v.photos).unwrap_or(u32::MAX),
                })
                .collect(),
            past_requests: h.past_requests.into_iter().map(Into::into).collect(),
            conflicts: h.conflicts.into_iter().map(Into::into).collect(),
            problems: h.problems.into_iter().map(Into::into).collect(),
        }
    }
}

/// A person's details (gender and birth date come from a valid ID number when not given).
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct PersonFields {
    /// ID number.
    pub id_number: Option<String>,
    /// 男/女.
    pub gender: Option<String>,
    /// YYYY-MM-DD.
    pub birth_date: Option<String>,
    /// Phones.
    pub phones: Vec<String>,
    /// Work or study.
    pub work: Option<String>,
    /// Key-person categories.
    pub categories: Vec<String>,
}

impl From<PersonFields> for app::PersonFields {
    fn from(p: PersonFields) -> Self {
        Self {
            id_number: p.id_number,
            gender: p.gender,
            birth_date: p.birth_date,
            phones: p.phones,
            work: p.work,
            categories: p.categories,
        }
    }
}

/// A new member.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NewResident {
    /// Name.
    pub name: String,
    /// 与户主关系 (户主, 配偶, 子, 女, 父亲 ...).
    pub relation: String,
    /// Details.
    pub person: PersonFields,
}

impl From<NewResident> for app::NewResident {
    fn from(r: NewResident) -> Self {
        Self {
            name: r.name,
            relation: r.relation,
            person: r.person.into(),
        }
    }
}

/// Changes to a member.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ResidentEdit {
    /// New name.
    pub name: Option<String>,
    /// New relation.
    pub relation: Option<String>,
    /// New details.
    pub person: PersonFields,
    /// Moved out on.
    pub moved_out: Option<String>,
    /// Died on.
    pub deceased: Option<String>,
    /// 误录.
    pub entered_by_mistake: bool,
}

impl From<ResidentEdit> for app::ResidentEdit {
    fn from(e: ResidentEdit) -> Self {
        Self {
            name: e.name,
            relation: e.relation,
            person: e.person.into(),
            moved_out: e.moved_out,
            deceased: e.deceased,
            entered_by_mistake: e.entered_by_mistake,
        }
    }
}

/// A resident found by a search, with their household and family.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ResidentHit {
    /// Resident id.
    pub resident_id: String,
    /// Name.
    pub name: String,
    /// Relation label.
    pub relation: String,
    /// Birth date.
    pub birth_date: Option<String>,
    /// The household.
    pub household: HouseholdSummary,
    /// The family: names with relation labels.
    pub family: Vec<String>,
    /// Past requests of the household.
    pub past_requests: Vec<CaseSummary>,
}

/// One page of a search.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SearchPage {
    /// Hits.
    pub hits: Vec<ResidentHit>,
    /// Matches in all.
    pub total: u64,
    /// This page's offset.
    pub offset: u32,
    /// More pages follow.
    pub more: bool,
}

impl From<app::SearchPage> for SearchPage {
    fn from(p: app::SearchPage) -> Self {
        let label = app::vocab::relation_code_label;
        Self {
            hits: p
                .hits
                .into_iter()
                .map(|h| ResidentHit {
                    resident_id: h.resident.resident_id.to_string(),
                    name: h.resident.name,
                    relation: label(&h.resident.relation),
                    birth_date: h.resident.birth_date,
                    household: h.household.into(),
                    family: h
                        .family
                        .iter()
                        .map(|m| format!("{} {}", label(&m.relation), m.name))
                        .collect(),
                    past_requests: h.past_requests.into_iter().map(Into::into).collect(),
                })
                .collect(),
            total: p.total,
            offset: p.offset,
            more: p.more,
        }
    }
}

/// A visit to record.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NewVisit {
    /// Household id.
    pub household: String,
    /// Why.
    pub purpose: String,
    /// What was found.
    pub findings: String,
    /// Latitude.
    pub lat: Option<f64>,
    /// Longitude.
    pub lon: Option<f64>,
}

fn coords(lat: Option<f64>, lon: Option<f64>) -> Result<Option<(f64, f64)>, ApiError> {
    match (lat, lon) {
        (Some(a), Some(o)) => Ok(Some((a, o))),
        (None, None) => Ok(None),
        _ => Err(ApiError::Invalid(
            "gps: give both latitude and longitude, or neither".into(),
        )),
    }
}

impl NewVisit {
    pub(crate) fn into_app(self) -> Result<app::NewVisit, ApiError> {
        Ok(app::NewVisit {
            household: Some(doc_id("household", &self.household)?),
            purpose: self.purpose,
            findings: self.findings,
            gps: coords(self.lat, self.lon)?,
            worker: None,
        })
    }
}

/// A checkpoint of a patrol.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NewCheckpoint {
    /// What was checked.
    pub name: String,
    /// Whether it was in order.
    pub ok: bool,
    /// Remarks.
    pub note: String,
}

impl From<NewCheckpoint> for app::NewCheckpoint {
    fn from(c: NewCheckpoint) -> Self {
        Self {
            name: c.name,
            ok: c.ok,
            note: c.note,
            gps: None,
        }
    }
}

/// A patrol in a list.
#[derive(Debug, Clone, uniffi::Record)]
pub struct InspectionSummary {
    /// Patrol id.
    pub id: String,
    /// Grid code.
    pub grid: String,
    /// Who.
    pub worker: String,
    /// Started.
    pub started_at: i64,
    /// Ended.
    pub ended_at: Option<i64>,
    /// Track points.
    pub track_points: i64,
    /// Findings.
    pub findings: i64,
}

impl From<gridsync_core::projection::InspectionRow> for InspectionSummary {
    fn from(i: gridsync_core::projection::InspectionRow) -> Self {
        Self {
            id: i.doc_id.to_string(),
            grid: i.grid,
            worker: i.worker,
            started_at: i.started_at,
            ended_at: i.ended_at,
            track_points: i.track_points,
            findings: i.findings,
        }
    }
}

/// A problem to report.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NewCase {
    /// Grid code.
    pub grid: String,
    /// Title.
    pub title: String,
    /// Source (巡查发现, 12345 ...).
    pub source: Option<String>,
    /// 小类 code.
    pub subcategory: String,
    /// Address.
    pub address: String,
    /// Description.
    pub description: String,
    /// Urgent.
    pub urgent: bool,
    /// Latitude.
    pub lat: Option<f64>,
    /// Longitude.
    pub lon: Option<f64>,
    /// Resident reporting: name.
    pub party_name: Option<String>,
    /// Their phone.
    pub party_phone: Option<String>,
    /// Their household id.
    pub party_household: Option<String>,
}

impl NewCase {
    pub(crate) fn into_app(self) -> Result<app::NewCase, ApiError> {
        Ok(app::NewCase {
            grid: self.grid,
            title: self.title,
            source: self.source,
            subcategory: self.subcategory,
            address: self.address,
            description: self.description,
            urgent: self.urgent,
            gps: coords(self.lat, self.lon)?,
            party_name: self.party_name,
            party_phone: self.party_phone,
            party_household: self
                .party_household
                .as_deref()
                .map(|h| doc_id("party_household", h))
                .transpose()?,
        })
    }
}

/// A workflow action with its inputs.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ActionRequest {
    /// Action code or label.
    pub action: String,
    /// Reason, result or instruction.
    pub note: String,
    /// dispatch: lead department.
    pub lead: Option<String>,
    /// dispatch: co-departments.
    pub co: Option<Vec<String>>,
    /// follow_up: satisfaction.
    pub satisfaction: Option<String>,
    /// merge: the case duplicated.
    pub into: Option<String>,
    /// extension: working days.
    pub extra_days: Option<u32>,
}

impl ActionRequest {
    pub(crate) fn into_app(self) -> Result<app::ActionRequest, ApiError> {
        Ok(app::ActionRequest {
            action: self.action,
            note: self.note,
            lead: self.lead,
            co: self.co,
            satisfaction: self.satisfaction,
            into: self
                .into
                .as_deref()
                .map(|i| doc_id("into", i))
                .transpose()?,
            extra_days: self.extra_days,
        })
    }
}

/// An action allowed now.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ActionInfo {
    /// Code.
    pub code: String,
    /// Label.
    pub label: String,
    /// The note is required.
    pub needs_note: bool,
}

impl From<app::ActionInfo> for ActionInfo {
    fn from(a: app::ActionInfo) -> Self {
        Self {
            code: a.code,
            label: a.label,
            needs_note: a.needs_note,
        }
    }
}

/// One event of a case.
#[derive(Debug, Clone, uniffi::Record)]
pub struct CaseEvent {
    /// When.
    pub at: i64,
    /// Who.
    pub by: String,
    /// Department, for clerks.
    pub dept: Option<String>,
    /// Action code.
    pub kind: String,
    /// Action label.
    pub label: String,
    /// Note.
    pub note: String,
    /// Applied by the fold.
    pub applied: bool,
}

impl From<app::EventView> for CaseEvent {
    fn from(e: app::EventView) -> Self {
        Self {
            at: e.at,
            by: e.by,
            dept: e.dept,
            kind: e.kind,
            label: e.label,
            note: e.note,
            applied: e.applied,
        }
    }
}

/// A case as a readable record.
#[derive(Debug, Clone, uniffi::Record)]
pub struct CaseView {
    /// Case id.
    pub id: String,
    /// Grid code.
    pub grid: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Address.
    pub address: String,
    /// Source label.
    pub source: String,
    /// Urgent.
    pub urgent: bool,
    /// 小类 code.
    pub subcategory: String,
    /// 大类/小类 names.
    pub category_name: String,
    /// Reporter.
    pub reported_by: String,
    /// When reported.
    pub reported_at: i64,
    /// Status code.
    pub status: String,
    /// Status label.
    pub status_label: String,
    /// Lead department.
    pub lead: Option<Department>,
    /// Co-departments.
    pub co: Vec<Department>,
    /// Deadline.
    pub deadline: Option<i64>,
    /// Overdue (red).
    pub overdue: bool,
    /// Amber.
    pub amber: bool,
    /// Satisfaction label.
    pub satisfaction: Option<String>,
    /// Timeline, oldest first.
    pub timeline: Vec<CaseEvent>,
    /// 督办 notices.
    pub supervisions: Vec<CaseEvent>,
    /// Photos.
    pub photos: Vec<PhotoView>,
    /// Fields in conflict.
    pub conflicts: Vec<Conflict>,
    /// What this device may do now.
    pub allowed_actions: Vec<ActionInfo>,
}

impl From<app::CaseView> for CaseView {
    fn from(c: app::CaseView) -> Self {
        Self {
            id: c.id.to_string(),
            grid: c.grid,
            title: c.title,
            description: c.description,
            address: c.address,
            source: c.source,
            urgent: c.urgent,
            subcategory: c.subcategory,
            category_name: c.category_name,
            reported_by: c.reported_by,
            reported_at: c.reported_at,
            status: c.status,
            status_label: c.status_label,
            lead: c.lead.map(Into::into),
            co: c.co.into_iter().map(Into::into).collect(),
            deadline: c.deadline,
            overdue: c.overdue,
            amber: c.amber,
            satisfaction: c.satisfaction,
            timeline: c.timeline.into_iter().map(Into::into).collect(),
            supervisions: c.supervisions.into_iter().map(Into::into).collect(),
            photos: c.photos.into_iter().map(Into::into).collect(),
            conflicts: c.conflicts.into_iter().map(Into::into).collect(),
            allowed_actions: c.allowed_actions.into_iter().map(Into::into).collect(),
        }
    }
}

/// A photo of a record.
#[derive(Debug, Clone, uniffi::Record)]
pub struct PhotoView {
    /// Photo id.
    pub id: String,
    /// Entry it belongs to.
    pub entry: String,
    /// Stage code.
    pub stage: String,
    /// Stage label.
    pub stage_label: String,
    /// When taken.
    pub taken_at: i64,
    /// Full image's SHA-256.
    pub sha256: String,
    /// Thumbnail's SHA-256.
    pub thumb_sha256: Option<String>,
    /// Size in bytes.
    pub size: i64,
    /// The file is on this phone.
    pub on_this_phone: bool,
    /// The server confirmed it.
    pub uploaded: bool,
}

impl From<app::PhotoView> for PhotoView {
    fn from(p: app::PhotoView) -> Self {
        Self {
            id: p.id,
            entry: p.entry,
            stage: p.stage,
            stage_label: p.stage_label,
            taken_at: p.taken_at,
            sha256: p.sha256,
            thumb_sha256: p.thumb_sha256,
            size: p.size,
            on_this_phone: p.on_this_phone,
            uploaded: p.uploaded,
        }
    }
}

/// A photo to add: the camera file and where it belongs (exactly one of `case_id`,
/// `household_id` + `visit_id`, `inspection_id` [+ `checkpoint_id`]).
#[derive(Debug, Clone, uniffi::Record)]
pub struct NewPhoto {
    /// The camera file (JPEG, PNG or WebP).
    pub bytes: Vec<u8>,
    /// A case.
    pub case_id: Option<String>,
    /// A household (with `visit_id`).
    pub household_id: Option<String>,
    /// A visit of that household.
    pub visit_id: Option<String>,
    /// A patrol.
    pub inspection_id: Option<String>,
    /// A checkpoint of that patrol.
    pub checkpoint_id: Option<String>,
    /// Stage (处置前, 处置后 ...).
    pub stage: Option<String>,
    /// The phone's latitude (used when the photo has no GPS).
    pub lat: Option<f64>,
    /// The phone's longitude.
    pub lon: Option<f64>,
}

impl NewPhoto {
    pub(crate) fn into_app(self) -> Result<app::NewPhoto, ApiError> {
        let target = match (
            self.case_id.as_deref(),
            self.household_id.as_deref().zip(self.visit_id.as_deref()),
            self.inspection_id.as_deref(),
        ) {
            (Some(c), None, None) => PhotoTarget::Case(doc_id("case_id", c)?),
            (None, Some((h, v)), None) => PhotoTarget::Visit {
                household: doc_id("household_id", h)?,
                visit: record_id("visit_id", v)?,
            },
            (None, None, Some(i)) => PhotoTarget::Inspection {
                doc: doc_id("inspection_id", i)?,
                checkpoint: self
                    .checkpoint_id
                    .as_deref()
                    .map(|c| record_id("checkpoint_id", c))
                    .transpose()?,
            },
            _ => {
                return Err(ApiError::Invalid(
                    "target: name one case, one visit (household and visit) or one patrol".into(),
                ));
            }
        };
        Ok(app::NewPhoto {
            target,
            stage: self.stage,
            bytes: self.bytes,
            fix: coords(self.lat, self.lon)?,
            options: Default::default(),
        })
    }
}

/// How to sync.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SyncOptions {
    /// Offer refused documents now.
    pub retry_refused: bool,
    /// Metered link: thumbnails only.
    pub metered: bool,
    /// Upload photos.
    pub photos: bool,
}

impl From<SyncOptions> for app::SyncOptions {
    fn from(o: SyncOptions) -> Self {
        Self {
            server: None,
            retry_refused: o.retry_refused,
            metered: o.metered,
            photos: o.photos,
            ..Self::default()
        }
    }
}

/// Where a sync is.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SyncProgress {
    /// `documents` or `photos`.
    pub phase: String,
    /// Round trips so far.
    pub round_trips: u64,
    /// Documents acknowledged so far.
    pub acked: u64,
    /// Changes received so far.
    pub pulled_changes: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
}

impl From<&app::SyncProgress> for SyncProgress {
    fn from(p: &app::SyncProgress) -> Self {
        Self {
            phase: p.phase.clone(),
            round_trips: p.round_trips,
            acked: p.acked,
            pulled_changes: p.pulled_changes,
            bytes_sent: p.bytes_sent,
            bytes_received: p.bytes_received,
        }
    }
}

/// A document the server refused.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Refused {
    /// Document id.
    pub id: String,
    /// Reason.
    pub reason: String,
}

/// What a sync did.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SyncOutcome {
    /// Round trips.
    pub round_trips: u64,
    /// Documents acknowledged.
    pub acked: u64,
    /// Documents that received changes.
    pub pulled_docs: u64,
    /// Changes received.
    pub pulled_changes: u64,
    /// Documents refused.
    pub refused: Vec<Refused>,
    /// Photo files uploaded.
    pub photos_uploaded: u64,
    /// Photo files left for later.
    pub photos_deferred: u64,
    /// Photo files that failed, with why.
    pub photos_failed: Vec<Refused>,
}

impl From<app::SyncOutcome> for SyncOutcome {
    fn from(o: app::SyncOutcome) -> Self {
        let d = o.documents;
        let p = o.photos.unwrap_or_default();
        Self {
            round_trips: d.round_trips as u64,
            acked: d.acked as u64,
            pulled_docs: d.pulled_docs as u64,
            pulled_changes: d.pulled_changes as u64,
            refused: d
                .rejected
                .into_iter()
                .map(|(id, code, message)| Refused {
                    id,
                    reason: format!("{code}: {message}"),
                })
                .collect(),
            photos_uploaded: (p.completed + p.already_there) as u64,
            photos_deferred: p.deferred as u64,
            photos_failed: p
                .failed
                .into_iter()
                .map(|(id, reason)| Refused { id, reason })
                .collect(),
        }
    }
}

/// What is waiting on this phone.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SyncStatus {
    /// The server.
    pub server: Option<String>,
    /// Documents waiting to sync.
    pub unsynced_documents: i64,
    /// Documents refused, with reasons.
    pub refused: Vec<Refused>,
    /// Documents this version cannot read.
    pub quarantined: Vec<Refused>,
    /// Photo files waiting to upload.
    pub photo_files_waiting: u64,
    /// Photo bytes left.
    pub photo_bytes_left: u64,
}

impl From<app::SyncStatus> for SyncStatus {
    fn from(s: app::SyncStatus) -> Self {
        Self {
            server: s.server,
            unsynced_documents: s.unsynced_documents,
            refused: s
                .set_aside
                .into_iter()
                .map(|r| Refused {
                    id: r.doc.to_string(),
                    reason: r.reason,
                })
                .collect(),
            quarantined: s
                .quarantined
                .into_iter()
                .map(|q| Refused {
                    id: q.doc.to_string(),
                    reason: q.reason,
                })
                .collect(),
            photo_files_waiting: s.upload_queue.len() as u64,
            photo_bytes_left: s.upload_bytes_left,
        }
    }
}

/// A field with concurrent values.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Conflict {
    /// Field path.
    pub path: String,
    /// Values as JSON text.
    pub values: Vec<String>,
}

impl From<app::ConflictView> for Conflict {
    fn from(c: app::ConflictView) -> Self {
        Self {
            path: c.path,
            values: c.values.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A rule problem of a record.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Problem {
    /// Field path.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl From<app::ProblemView> for Problem {
    fn from(p: app::ProblemView) -> Self {
        Self {
            field: p.field,
            problem: p.problem,
        }
    }
}

/// A grid unit.
#[derive(Debug, Clone, uniffi::Record)]
pub struct GridUnit {
    /// Document id.
    pub id: String,
    /// Hierarchical code.
    pub code: String,
    /// Level (town, district, village, grid, micro_grid).
    pub level: String,
    /// Name.
    pub name: String,
}

impl From<gridsync_core::projection::GridRow> for GridUnit {
    fn from(g: gridsync_core::projection::GridRow) -> Self {
        Self {
            id: g.doc_id.to_string(),
            code: g.code,
            level: g.level,
            name: g.name,
        }
    }
}

/// A photo file waiting to upload.
#[derive(Debug, Clone, uniffi::Record)]
pub struct QueuedFile {
    /// SHA-256.
    pub sha256: String,
    /// `thumb` or `full`.
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Bytes the server holds.
    pub uploaded: u64,
    /// Its record has not been synced yet.
    pub waiting_for_sync: bool,
}

impl From<gridsync_core::store::QueuedFile> for QueuedFile {
    fn from(f: gridsync_core::store::QueuedFile) -> Self {
        Self {
            sha256: f.sha256,
            kind: f.kind.as_str().to_owned(),
            size: f.size,
            uploaded: f.uploaded,
            waiting_for_sync: f.waiting_for_sync,
        }
    }
}
