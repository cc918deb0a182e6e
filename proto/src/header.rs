//! The immutable header every document carries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{DeviceId, DocId, GridCode};

/// What aggregate a document holds; decides its schema and projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocType {
    /// A grid's reference record: code, name, level, roster.
    Grid,
    /// 一户一档: one household with its members and visit log.
    Household,
    /// One patrol (巡查) with its track, checkpoints and findings.
    Inspection,
    /// One problem or request (问题诉求) and its workflow event log.
    Case,
}

impl DocType {
    /// Every document type, in a fixed order.
    pub const ALL: [DocType; 4] = [
        DocType::Grid,
        DocType::Household,
        DocType::Inspection,
        DocType::Case,
    ];

    /// The stable lower-case name stored in documents and databases.
    pub fn as_str(self) -> &'static str {
        match self {
            DocType::Grid => "grid",
            DocType::Household => "household",
            DocType::Inspection => "inspection",
            DocType::Case => "case",
        }
    }
}

impl fmt::Display for DocType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A document type name that gridsync does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown document type {0:?} (expected grid, household, inspection or case)")]
pub struct UnknownDocType(pub String);

impl FromStr for DocType {
    type Err = UnknownDocType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DocType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownDocType(s.to_owned()))
    }
}

/// Written in a document's first change and never changed after: what it is, which grid's
/// scope it belongs to, and which device created it. Scope decides who may read and write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocHeader {
    /// The document's id (UUIDv7, made on the creating device).
    pub id: DocId,
    /// What the document holds.
    pub doc_type: DocType,
    /// The grid (or higher unit) whose members may see and edit it.
    pub scope: GridCode,
    /// The enrolled device that created it.
    pub creator: DeviceId,
    /// The schema version the creator wrote; readers accept every version up to their own.
    pub schema: u32,
}
