//! The `grid` reference document: one unit of the town → micro-grid hierarchy and its roster.

use std::collections::BTreeMap;

use gridsync_proto::{DocType, GridCode};
use serde::{Deserialize, Serialize};

use super::Record;
use crate::validate::{Checker, Problem, ValidationErrors};

/// One unit of the grid hierarchy (the document's scope is its own code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// The unit's hierarchical code; its length gives the level, its prefix the parent.
    pub code: String,
    /// Display name, e.g. 「城南社区第三网格」.
    pub name: String,
    /// Who works this unit, keyed by worker id.
    #[serde(default)]
    pub roster: BTreeMap<String, RosterEntry>,
}

/// A person on a grid's roster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RosterEntry {
    /// Full name.
    pub name: String,
    /// Contact phone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phone: String,
    /// `grid_worker` (专职网格员), `part_time` (兼职网格员) or `leader` (网格长).
    pub duty: String,
}

const DUTIES: &[&str] = &["grid_worker", "part_time", "leader"];

impl Grid {
    /// The parsed code (valid once [`Record::validate`] passed).
    pub fn grid_code(&self) -> Option<GridCode> {
        GridCode::parse(&self.code).ok()
    }
}

impl Record for Grid {
    const DOC_TYPE: DocType = DocType::Grid;

    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        c.grid_code("code", &self.code);
        c.required("name", &self.name, 100);
        for (id, p) in &self.roster {
            c.nested(&format!("roster.{id}"), |c| {
                if id.trim().is_empty() {
                    c.fail("", Problem::Required);
                }
                c.required("name", &p.name, 50);
                if !p.phone.is_empty() {
                    c.phone("phone", &p.phone);
                }
                c.one_of("duty", &p.duty, DUTIES);
            });
        }
        c.finish()
    }
}
