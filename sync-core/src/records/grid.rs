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
    /// The unit's boundary as a closed polygon of `[lat, lon]` points (empty when unknown);
    /// intake places a reported location in the grid whose boundary holds it.
    #[serde(default)]
    pub boundary: Vec<[f64; 2]>,
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

    /// Whether the point lies inside the boundary (ray casting; false without a boundary).
    pub fn contains_point(&self, lat: f64, lon: f64) -> bool {
        polygon_contains(&self.boundary, lat, lon)
    }
}

/// Ray casting over a polygon of `[lat, lon]` points (grids are small enough for a plane).
pub fn polygon_contains(polygon: &[[f64; 2]], lat: f64, lon: f64) -> bool {
    if polygon.len() < 3 {
        return false;
    }
    let mut inside = false;
    let mut j = polygon.len() - 1;
    for i in 0..polygon.len() {
        let [yi, xi] = polygon[i];
        let [yj, xj] = polygon[j];
        if (yi > lat) != (yj > lat) && lon < (xj - xi) * (lat - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

impl Record for Grid {
    const DOC_TYPE: DocType = DocType::Grid;

    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        c.grid_code("code", &self.code);
        c.required("name", &self.name, 100);
        if !self.boundary.is_empty() && self.boundary.len() < 3 {
            c.fail(
                "boundary",
                Problem::Inconsistent("a boundary needs at least three points"),
            );
        }
        for (i, [lat, lon]) in self.boundary.iter().enumerate() {
            c.gps(&format!("boundary.{i}"), *lat, *lon);
        }
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
