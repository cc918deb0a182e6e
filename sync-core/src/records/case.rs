//! The `case` document: one problem or request (问题诉求) with its parties, evidence photos by
//! stage and the append-only event log that the workflow is derived from.

use std::collections::BTreeMap;

use gridsync_proto::{DeviceId, DocType, RecordId};
use serde::{Deserialize, Serialize};

use super::Record;
use super::common::{Gps, Millis, PhotoRef, Redaction};
use crate::validate::{Checker, Problem, ValidationErrors};

/// Where a case came from (来源).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseSource {
    /// 巡查: found on a patrol.
    Inspection,
    /// 走访: raised during a household visit.
    Visit,
    /// 居民: reported by a resident (in person or through a mini-program).
    Resident,
    /// 12345: pushed from the hotline.
    Hotline12345,
    /// 交办: assigned by a higher level.
    Assigned,
}

/// How urgent a case is; urgent cases get a shorter time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// 一般.
    Normal,
    /// 紧急.
    Urgent,
}

/// A person or organisation involved in a case (当事人/诉求人).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Party {
    /// Name.
    pub name: String,
    /// Contact phone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phone: String,
    /// The household archive this party belongs to, when known (links past requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household: Option<gridsync_proto::DocId>,
    /// The resident record, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resident: Option<RecordId>,
    /// `reporter` (诉求人), `involved` (当事人) or `respondent` (被反映方).
    pub role: String,
}

/// One entry of the append-only workflow log. Entries are never edited or deleted; the
/// current state is a pure function of all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseEvent {
    /// What happened (`report`, `dispatch`, `handle`, `close`, ...).
    pub kind: String,
    /// When, by the author's clock.
    pub at: Millis,
    /// The person who acted.
    pub by: String,
    /// The role the author's device was enrolled with (`worker`, `dispatcher`, ...); the
    /// server checks it against the device that sent the event.
    #[serde(default)]
    pub role: String,
    /// The author's department, for department clerks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dept: Option<String>,
    /// The events the author had seen (the log's heads then): the causal order of the fold.
    #[serde(default)]
    pub after: Vec<RecordId>,
    /// Free-form remark (reason, result, instruction).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Event-specific values (department, deadline, satisfaction, ...).
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// The device that added it (stamped by the core; see `crate::rules`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<DeviceId>,
}

/// One case. Its grid is the document's scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// Short title for lists.
    pub title: String,
    /// Where it came from.
    pub source: CaseSource,
    /// 大类 code: two digits.
    pub category: String,
    /// 小类 code: four digits starting with the 大类 code.
    pub subcategory: String,
    /// Where the problem is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Gps>,
    /// Standard address of the problem.
    pub address: String,
    /// What is wrong, as mergeable text (two people may edit it at once).
    pub description: String,
    /// Normal or urgent.
    pub urgency: Urgency,
    /// Who reported it.
    pub reported_by: String,
    /// When it was reported.
    pub reported_at: Millis,
    /// People involved, keyed by id.
    #[serde(default)]
    pub parties: BTreeMap<RecordId, Party>,
    /// Evidence photos keyed by id; each carries its stage.
    #[serde(default)]
    pub photos: BTreeMap<RecordId, PhotoRef>,
    /// The workflow event log keyed by event id (UUIDv7, so ids sort by creation time).
    #[serde(default)]
    pub events: BTreeMap<RecordId, CaseEvent>,
    /// Entries taken out of view by a dispatcher or leader (photos, parties), keyed by id.
    #[serde(default)]
    pub redactions: BTreeMap<RecordId, Redaction>,
}

const PARTY_ROLES: &[&str] = &["reporter", "involved", "respondent"];

impl Case {
    /// The workflow state derived from the event log (see `crate::workflow`).
    pub fn state(&self) -> crate::workflow::CaseState {
        crate::workflow::derive(self)
    }
}

impl Record for Case {
    const DOC_TYPE: DocType = DocType::Case;
    const TEXT_FIELDS: &'static [&'static str] = &["description"];

    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        c.required("title", &self.title, 100);
        if self.category.len() != 2 || !self.category.bytes().all(|b| b.is_ascii_digit()) {
            c.fail(
                "category",
                Problem::Inconsistent("a 大类 code is two digits"),
            );
        }
        if self.subcategory.len() != 4
            || !self.subcategory.bytes().all(|b| b.is_ascii_digit())
            || !self.subcategory.starts_with(&self.category)
        {
            c.fail(
                "subcategory",
                Problem::Inconsistent("a 小类 code is four digits starting with its 大类 code"),
            );
        }
        if let Some(g) = &self.location {
            g.check(&mut c, "location");
        }
        c.required("address", &self.address, 200);
        c.required("description", &self.description, 5000);
        c.required("reported_by", &self.reported_by, 50);
        for (id, p) in &self.parties {
            c.nested(&format!("parties.{id}"), |c| {
                c.required("name", &p.name, 50);
                if !p.phone.is_empty() {
                    c.phone("phone", &p.phone);
                }
                c.one_of("role", &p.role, PARTY_ROLES);
            });
        }
        for (id, p) in &self.photos {
            c.nested(&format!("photos.{id}"), |c| p.check(c));
        }
        for (id, e) in &self.events {
            c.nested(&format!("events.{id}"), |c| {
                c.required("kind", &e.kind, 40);
                c.required("by", &e.by, 50);
                c.max_len("note", &e.note, 2000);
            });
        }
        for (id, r) in &self.redactions {
            c.nested(&format!("redactions.{id}"), |c| {
                r.check(c, &["photos", "parties"])
            });
        }
        c.finish()
    }
}
