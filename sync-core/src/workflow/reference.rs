//! Reference data for the workflow: departments, the category table (大类/小类 with default
//! lead and co-departments and time limits) and the working calendar. A default ships inside
//! the binary; an operator replaces it with a JSON file of the same shape.
//!
//! The default calendar lists 2026's public holidays and make-up workdays as this project
//! understood the State Council notice; a county must load each year's official notice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::calendar::WorkCalendar;
use crate::validate::parse_date;

const DEFAULT: &str = include_str!("default_reference.json");
const HOUR_MS: i64 = 3_600_000;

/// A time limit: in working hours or working days (one working day = 24 working hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeLimit {
    /// Hours of working time.
    WorkingHours(u32),
    /// Working days.
    WorkingDays(u32),
}

impl TimeLimit {
    /// The limit as milliseconds of working time.
    pub fn working_ms(self) -> i64 {
        match self {
            TimeLimit::WorkingHours(h) => i64::from(h) * HOUR_MS,
            TimeLimit::WorkingDays(d) => i64::from(d) * 24 * HOUR_MS,
        }
    }
}

/// A department cases are dispatched to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    /// Stable code (`D01`).
    pub code: String,
    /// Display name.
    pub name: String,
}

/// One 小类 of the category table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// Four digits; the first two are the 大类.
    pub code: String,
    /// 小类 name.
    pub name: String,
    /// 大类 name.
    pub major_name: String,
    /// Default lead department.
    pub lead: String,
    /// Default co-departments.
    #[serde(default)]
    pub co: Vec<String>,
    /// Normal time limit.
    pub limit: TimeLimit,
    /// Time limit for urgent cases (defaults to the normal one).
    #[serde(default)]
    pub urgent_limit: Option<TimeLimit>,
}

/// The whole reference file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// Departments.
    pub departments: Vec<Department>,
    /// Categories.
    pub categories: Vec<Category>,
    /// Public holidays, `YYYY-MM-DD`.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Make-up workdays, `YYYY-MM-DD`.
    #[serde(default)]
    pub workdays: Vec<String>,
    /// How long after dispatch a department may still return a wrongly sent case.
    #[serde(default = "default_return_window")]
    pub return_window_hours: u32,
}

fn default_return_window() -> u32 {
    24
}

/// A reference file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reference data: {at}: {problem}")]
pub struct ReferenceError {
    /// Which entry (`categories[3].lead`, `holidays[0]`, ...).
    pub at: String,
    /// What is wrong.
    pub problem: String,
}

impl Reference {
    /// The table that ships with gridsync.
    pub fn builtin() -> Self {
        // The embedded file is checked by a unit test; failing here is a build defect.
        Self::from_json(DEFAULT)
            .unwrap_or_else(|e| panic!("embedded reference data is invalid: {e}"))
    }

    /// Parses and checks a reference file.
    pub fn from_json(text: &str) -> Result<Self, ReferenceError> {
        let r: Reference = serde_json::from_str(text).map_err(|e| ReferenceError {
            at: format!("line {} column {}", e.line(), e.column()),
            problem: e.to_string(),
        })?;
        r.check()?;
        Ok(r)
    }

    fn check(&self) -> Result<(), ReferenceError> {
        let err = |at: String, problem: &str| ReferenceError {
            at,
            problem: problem.to_owned(),
        };
        let mut depts = BTreeMap::new();
        for (i, d) in self.departments.iter().enumerate() {
            if d.code.trim().is_empty() || d.name.trim().is_empty() {
                return Err(err(
                    format!("departments[{i}]"),
                    "code and name are required",
                ));
            }
            if depts.insert(d.code.as_str(), i).is_some() {
                return Err(err(
                    format!("departments[{i}].code"),
                    "duplicate department code",
                ));
            }
        }
        let mut codes = BTreeMap::new();
        for (i, c) in self.categories.iter().enumerate() {
            if c.code.len() != 4 || !c.code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(
                    format!("categories[{i}].code"),
                    "a 小类 code is four digits",
                ));
            }
            if codes.insert(c.code.as_str(), i).is_some() {
                return Err(err(
                    format!("categories[{i}].code"),
                    "duplicate category code",
                ));
            }
            let named = std::iter::once(("lead", &c.lead)).chain(c.co.iter().map(|d| ("co", d)));
            for (field, d) in named {
                if !depts.contains_key(d.as_str()) {
                    return Err(err(
                        format!("categories[{i}].{field}"),
                        "names an unknown department",
                    ));
                }
            }
            if c.limit.working_ms() == 0 || c.urgent_limit.is_some_and(|u| u.working_ms() == 0) {
                return Err(err(
                    format!("categories[{i}].limit"),
                    "a time limit must be positive",
                ));
            }
        }
        for (name, list) in [("holidays", &self.holidays), ("workdays", &self.workdays)] {
            for (i, d) in list.iter().enumerate() {
                if parse_date(d).is_none() {
                    return Err(err(format!("{name}[{i}]"), "not a YYYY-MM-DD date"));
                }
            }
        }
        Ok(())
    }

    /// The working calendar.
    pub fn calendar(&self) -> WorkCalendar {
        WorkCalendar {
            holidays: self.holidays.iter().filter_map(|d| parse_date(d)).collect(),
            workdays: self.workdays.iter().filter_map(|d| parse_date(d)).collect(),
        }
    }

    /// The category with this 小类 code.
    pub fn category(&self, code: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.code == code)
    }

    /// Whether a department code exists.
    pub fn has_department(&self, code: &str) -> bool {
        self.departments.iter().any(|d| d.code == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_is_valid() {
        let r = Reference::builtin();
        assert_eq!(r.departments.len(), 20);
        assert!(r.category("0102").is_some());
        assert!(!r.calendar().holidays.is_empty());
    }

    #[test]
    fn bad_files_say_where() {
        let mut r = Reference::builtin();
        r.categories[2].lead = "D99".into();
        let e = Reference::from_json(&serde_json::to_string(&r).expect("json")).expect_err("lead");
        assert_eq!(e.at, "categories[2].lead");
        let e = Reference::from_json("{\"departments\": 3}").expect_err("bad shape");
        assert!(e.at.starts_with("line 1"), "{e}");
        let mut r = Reference::builtin();
        r.holidays.push("2026-02-30".into());
        let e = Reference::from_json(&serde_json::to_string(&r).expect("json")).expect_err("date");
        assert!(e.at.starts_with("holidays["), "{e}");
    }
}
