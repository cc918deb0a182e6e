//! The grid-work records, one Rust type per Automerge document type plus the nested records
//! they hold. Records are plain serde data; `crate::document` maps them onto Automerge, keyed
//! by id (never by list position), and `validate` checks them before any write.
//!
//! Maps and lists are always serialised, even when empty, so that every container exists from
//! a document's first change: two phones adding the first visit offline then write into the
//! same map instead of racing to create it (which Automerge would resolve by keeping only one).

mod case;
mod common;
mod grid;
mod household;
mod inspection;

pub use case::{Case, CaseEvent, CaseSource, Party, Urgency};
pub use common::{
    EvidenceSource, Gps, Millis, PhotoFile, PhotoRef, PhotoStage, Redaction, redacted, set_as_map,
};
pub use grid::{Grid, RosterEntry, polygon_contains};
pub use household::{
    HOUSEHOLD_FLAGS, Household, KEY_CATEGORIES, Relation, Residence, Resident, ResidentStatus,
    Visit,
};
pub use inspection::{Checkpoint, Finding, Inspection, TrackPoint};

use gridsync_proto::DocType;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::validate::{ValidationError, ValidationErrors};

/// A record that is stored as one Automerge document.
pub trait Record: Serialize + DeserializeOwned + Clone {
    /// The header type of documents holding this record.
    const DOC_TYPE: DocType;
    /// Field paths (dot-separated, `*` for any map key) stored as mergeable Automerge text, so
    /// two people editing them at once both keep their words.
    const TEXT_FIELDS: &'static [&'static str] = &[];
    /// Checks every field; an invalid record is never written.
    fn validate(&self) -> Result<(), ValidationErrors>;
}

/// The text fields of a document type's record (see [`Record::TEXT_FIELDS`]), for code that
/// handles documents of any type.
pub fn text_fields(doc_type: DocType) -> &'static [&'static str] {
    match doc_type {
        DocType::Grid => Grid::TEXT_FIELDS,
        DocType::Household => Household::TEXT_FIELDS,
        DocType::Inspection => Inspection::TEXT_FIELDS,
        DocType::Case => Case::TEXT_FIELDS,
    }
}

/// A record read from its JSON as its type's schema sees it.
#[derive(Debug, Clone)]
pub struct CheckedJson {
    /// The typed record written back as JSON: fields the schema does not know are gone.
    pub typed: serde_json::Value,
    /// Every validation problem of the record (empty when valid).
    pub errors: Vec<ValidationError>,
}

/// Why record JSON does not fit its type's schema: the field path and what serde found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{path}` does not fit the schema: {reason}")]
pub struct SchemaMismatch {
    /// The field path.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Reads record JSON of `doc_type` into its typed record and validates it, for code that
/// handles documents of any type (the server's merge, the phone's list of problems).
pub fn check_json(
    doc_type: DocType,
    json: &serde_json::Value,
) -> Result<CheckedJson, SchemaMismatch> {
    fn typed<R: Record>(json: &serde_json::Value) -> Result<CheckedJson, SchemaMismatch> {
        let record: R = serde_path_to_error::deserialize(json).map_err(|e| SchemaMismatch {
            path: e.path().to_string(),
            reason: e.inner().to_string(),
        })?;
        let typed = serde_json::to_value(&record).map_err(|e| SchemaMismatch {
            path: String::new(),
            reason: e.to_string(),
        })?;
        Ok(CheckedJson {
            typed,
            errors: record.validate().err().map(|e| e.0).unwrap_or_default(),
        })
    }
    match doc_type {
        DocType::Grid => typed::<Grid>(json),
        DocType::Household => typed::<Household>(json),
        DocType::Inspection => typed::<Inspection>(json),
        DocType::Case => typed::<Case>(json),
    }
}
