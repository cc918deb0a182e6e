//! The `household` document (一户一档): address, residence status, flags, members and the
//! household's visit log (走访入户). Members and visits are maps keyed by id so that two workers
//! adding a member or a visit offline both keep theirs.

use std::collections::{BTreeMap, BTreeSet};

use gridsync_proto::{DeviceId, DocId, DocType, RecordId};
use serde::{Deserialize, Serialize};

use super::Record;
use super::common::{Gps, Millis, PhotoRef, Redaction, set_as_map};
use crate::validate::{Checker, Problem, ValidationErrors, check_id_number};

/// Residence status of a household (居住状态).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Residence {
    /// 常住: registered and living here.
    Permanent,
    /// 流动: living here without local registration.
    Floating,
    /// 人户分离: registered here but living elsewhere (or the reverse).
    Separated,
}

impl Residence {
    /// The Chinese label shown to grid workers.
    pub fn label(self) -> &'static str {
        match self {
            Residence::Permanent => "常住",
            Residence::Floating => "流动",
            Residence::Separated => "人户分离",
        }
    }
}

/// Flags a household may carry (户标签); other values are refused so dashboards can count them.
pub const HOUSEHOLD_FLAGS: &[&str] = &[
    "empty_nest",    // 空巢
    "living_alone",  // 独居
    "rental",        // 出租屋
    "low_income",    // 低保
    "disabled",      // 残疾
    "veteran",       // 退役军人
    "left_behind",   // 留守
    "poverty_watch", // 防返贫监测
];

/// Relation of a member to the head of household (与户主关系).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// 户主.
    Head,
    /// 配偶.
    Spouse,
    /// 子女.
    Child,
    /// 父母.
    Parent,
    /// 孙子女.
    Grandchild,
    /// 祖父母.
    Grandparent,
    /// 兄弟姐妹.
    Sibling,
    /// 儿媳/女婿.
    ChildInLaw,
    /// 租客 or other non-family occupant.
    Tenant,
    /// 其他.
    Other,
}

/// Whether a member still lives in the household. A member is never deleted from the archive:
/// leaving is one of these statuses, so the history of who lived here stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidentStatus {
    /// Lives here.
    Present,
    /// 迁出: moved out (date in `status_date`).
    MovedOut,
    /// 死亡: deceased (date in `status_date`).
    Deceased,
    /// 误录: entered by mistake (never a member); kept so the history says who entered it.
    EnteredByMistake,
}

impl ResidentStatus {
    /// The Chinese label shown to grid workers.
    pub fn label(self) -> &'static str {
        match self {
            ResidentStatus::Present => "在住",
            ResidentStatus::MovedOut => "迁出",
            ResidentStatus::Deceased => "死亡",
            ResidentStatus::EnteredByMistake => "误录",
        }
    }
}

/// Key-person categories (重点人群) a resident may be in.
pub const KEY_CATEGORIES: &[&str] = &[
    "elderly_alone",        // 独居老人
    "disabled",             // 残疾人
    "minor_left_behind",    // 留守儿童
    "mental_health",        // 严重精神障碍
    "community_correction", // 社区矫正
    "released",             // 刑满释放
    "drug_rehab",           // 戒毒康复
    "petitioner",           // 重点信访
    "low_income",           // 低保
];

/// One member of a household (a resident of the grid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resident {
    /// Full name; what people search by.
    pub name: String,
    /// 18-character resident ID number (GB 11643), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
    /// `male` or `female`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// Relation to the head of household.
    pub relation: Relation,
    /// Contact phones.
    #[serde(default)]
    pub phones: Vec<String>,
    /// Work or study place and role (工作/学习单位).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub work: String,
    /// Key-person categories, from [`KEY_CATEGORIES`].
    #[serde(default, with = "set_as_map")]
    pub categories: BTreeSet<String>,
    /// Present, moved out or deceased.
    pub status: ResidentStatus,
    /// When the person moved out or died (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_date: Option<String>,
}

impl Resident {
    /// A present member with only a name and relation filled in.
    pub fn new(name: impl Into<String>, relation: Relation) -> Self {
        Self {
            name: name.into(),
            id_number: None,
            gender: None,
            birth_date: None,
            relation,
            phones: Vec::new(),
            work: String::new(),
            categories: BTreeSet::new(),
            status: ResidentStatus::Present,
            status_date: None,
        }
    }

    fn check(&self, c: &mut Checker) {
        c.required("name", &self.name, 50);
        if let Some(g) = &self.gender {
            c.one_of("gender", g, &["male", "female"]);
        }
        if let Some(b) = &self.birth_date {
            c.date("birth_date", b);
        }
        if let Some(id) = &self.id_number {
            match check_id_number(id) {
                Err(p) => c.fail("id_number", p),
                Ok(facts) => {
                    if self
                        .birth_date
                        .as_ref()
                        .is_some_and(|b| *b != facts.birth_date)
                    {
                        c.fail(
                            "id_number",
                            Problem::IdNumberMismatch { with: "birth_date" },
                        );
                    }
                    if self.gender.as_deref().is_some_and(|g| g != facts.gender) {
                        c.fail("id_number", Problem::IdNumberMismatch { with: "gender" });
                    }
                }
            }
        }
        for (i, p) in self.phones.iter().enumerate() {
            c.phone(&format!("phones.{i}"), p);
        }
        c.max_len("work", &self.work, 200);
        for cat in &self.categories {
            if !KEY_CATEGORIES.contains(&cat.as_str()) {
                c.fail(
                    &format!("categories.{cat}"),
                    Problem::NotOneOf {
                        allowed: KEY_CATEGORIES,
                    },
                );
            }
        }
        match (self.status, &self.status_date) {
            (ResidentStatus::Present, Some(_)) => c.fail(
                "status_date",
                Problem::Inconsistent("a present member has no move-out or death date"),
            ),
            (ResidentStatus::MovedOut | ResidentStatus::Deceased, None) => {
                c.fail("status_date", Problem::Required)
            }
            (ResidentStatus::EnteredByMistake, None) => {}
            (_, Some(d)) => c.date("status_date", d),
            _ => {}
        }
    }
}

/// One household visit (走访入户).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Visit {
    /// The grid worker who visited.
    pub worker: String,
    /// When, ms since the epoch.
    pub at: Millis,
    /// Where the phone was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<Gps>,
    /// Why (routine, key-person follow-up, policy notice, ...).
    pub purpose: String,
    /// What was found.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub findings: String,
    /// Photos taken during the visit.
    #[serde(default)]
    pub photos: BTreeMap<RecordId, PhotoRef>,
    /// Cases this visit created.
    #[serde(default)]
    pub cases: Vec<DocId>,
    /// The device that recorded it (stamped by the core; see `crate::rules`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<DeviceId>,
}

impl Visit {
    fn check(&self, c: &mut Checker) {
        c.required("worker", &self.worker, 50);
        c.required("purpose", &self.purpose, 100);
        c.max_len("findings", &self.findings, 2000);
        if let Some(g) = &self.gps {
            g.check(c, "gps");
        }
        for (id, p) in &self.photos {
            c.nested(&format!("photos.{id}"), |c| p.check(c));
        }
    }
}

/// 一户一档: one household's archive. Its grid is the document's scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Household {
    /// Standard address (标准地址), e.g. 「城南社区 3 幢 2 单元 501 室」.
    pub address: String,
    /// The household number in the register (户号), when the town keeps one: what a
    /// re-import of the register matches on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub number: String,
    /// The registered (hukou) address (户籍地址), when it is not the address lived at.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registered_address: String,
    /// Residence status.
    pub residence: Residence,
    /// Flags from [`HOUSEHOLD_FLAGS`].
    #[serde(default, with = "set_as_map")]
    pub flags: BTreeSet<String>,
    /// Members keyed by resident id.
    #[serde(default)]
    pub members: BTreeMap<RecordId, Resident>,
    /// Visit log keyed by visit id.
    #[serde(default)]
    pub visits: BTreeMap<RecordId, Visit>,
    /// Entries taken out of view by a dispatcher or leader, keyed by redaction id.
    #[serde(default)]
    pub redactions: BTreeMap<RecordId, Redaction>,
}

impl Household {
    /// An empty household at an address.
    pub fn new(address: impl Into<String>, residence: Residence) -> Self {
        Self {
            address: address.into(),
            number: String::new(),
            registered_address: String::new(),
            residence,
            flags: BTreeSet::new(),
            members: BTreeMap::new(),
            visits: BTreeMap::new(),
            redactions: BTreeMap::new(),
        }
    }

    /// The member recorded as head of household, if any (a head who left or was entered by
    /// mistake is not the head).
    pub fn head(&self) -> Option<(&RecordId, &Resident)> {
        self.members
            .iter()
            .find(|(_, m)| m.relation == Relation::Head && m.status == ResidentStatus::Present)
    }

    /// The visits not redacted, in id (time) order.
    pub fn visible_visits(&self) -> impl Iterator<Item = (&RecordId, &Visit)> {
        let hidden = super::common::redacted(self.redactions.values(), "visits");
        self.visits
            .iter()
            .filter(move |(id, _)| !hidden.contains(&id.to_string()))
    }
}

impl Record for Household {
    const DOC_TYPE: DocType = DocType::Household;

    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        c.required("address", &self.address, 200);
        c.max_len("number", &self.number, 40);
        c.max_len("registered_address", &self.registered_address, 200);
        for f in &self.flags {
            if !HOUSEHOLD_FLAGS.contains(&f.as_str()) {
                c.fail(
                    &format!("flags.{f}"),
                    Problem::NotOneOf {
                        allowed: HOUSEHOLD_FLAGS,
                    },
                );
            }
        }
        for (id, m) in &self.members {
            c.nested(&format!("members.{id}"), |c| m.check(c));
        }
        for (id, v) in &self.visits {
            c.nested(&format!("visits.{id}"), |c| v.check(c));
        }
        for (id, r) in &self.redactions {
            c.nested(&format!("redactions.{id}"), |c| {
                r.check(c, &["visits", "members"])
            });
        }
        c.finish()
    }
}
