//! The `inspection` document: one patrol (巡查). Each patrol is its own document so that the
//! unbounded history of patrols never makes one document grow without limit.

use std::collections::BTreeMap;

use gridsync_proto::{DocId, DocType, RecordId};
use serde::{Deserialize, Serialize};

use super::Record;
use super::common::{Gps, Millis, PhotoRef, Redaction};
use crate::validate::{Checker, Problem, ValidationErrors};

/// One point of the patrol's GPS track.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrackPoint {
    /// When the fix was taken.
    pub at: Millis,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

/// A place the patrol must look at (a rental building, a fire exit, a riverside).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// What the checkpoint is.
    pub name: String,
    /// When it was checked; `None` while still to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<Millis>,
    /// Whether everything was in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// Where it was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<Gps>,
    /// Remarks.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// Something found on the patrol; it may become a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What was found.
    pub description: String,
    /// When.
    pub at: Millis,
    /// Where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<Gps>,
    /// The case opened for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<DocId>,
}

/// One patrol of a grid by one worker. Its grid is the document's scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inspection {
    /// The worker on patrol.
    pub worker: String,
    /// When the patrol started.
    pub started_at: Millis,
    /// When it ended; `None` while under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Millis>,
    /// The GPS track, appended as the worker walks.
    #[serde(default)]
    pub track: Vec<TrackPoint>,
    /// Checkpoints keyed by id.
    #[serde(default)]
    pub checkpoints: BTreeMap<RecordId, Checkpoint>,
    /// Findings keyed by id.
    #[serde(default)]
    pub findings: BTreeMap<RecordId, Finding>,
    /// Photos keyed by id.
    #[serde(default)]
    pub photos: BTreeMap<RecordId, PhotoRef>,
    /// Entries taken out of view by a dispatcher or leader, keyed by redaction id.
    #[serde(default)]
    pub redactions: BTreeMap<RecordId, Redaction>,
}

impl Record for Inspection {
    const DOC_TYPE: DocType = DocType::Inspection;

    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        c.required("worker", &self.worker, 50);
        if let Some(end) = self.ended_at
            && end < self.started_at
        {
            c.fail(
                "ended_at",
                Problem::Inconsistent("a patrol cannot end before it starts"),
            );
        }
        for (i, p) in self.track.iter().enumerate() {
            c.gps(&format!("track.{i}"), p.lat, p.lon);
        }
        for (id, cp) in &self.checkpoints {
            c.nested(&format!("checkpoints.{id}"), |c| {
                c.required("name", &cp.name, 100);
                c.max_len("note", &cp.note, 1000);
                if let Some(g) = &cp.gps {
                    g.check(c, "gps");
                }
            });
        }
        for (id, f) in &self.findings {
            c.nested(&format!("findings.{id}"), |c| {
                c.required("description", &f.description, 2000);
                if let Some(g) = &f.gps {
                    g.check(c, "gps");
                }
            });
        }
        for (id, p) in &self.photos {
            c.nested(&format!("photos.{id}"), |c| {
                p.check(c);
                if let Some(cp) = p.checkpoint
                    && !self.checkpoints.contains_key(&cp)
                {
                    c.fail(
                        "checkpoint",
                        Problem::Inconsistent("the photo names a checkpoint this patrol lacks"),
                    );
                }
            });
        }
        for (id, r) in &self.redactions {
            c.nested(&format!("redactions.{id}"), |c| {
                r.check(c, &["checkpoints", "findings", "photos"]);
            });
        }
        c.finish()
    }
}
