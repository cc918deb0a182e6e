//! Hierarchical grid codes: town → district → village/community → grid → micro-grid.
//!
//! A code is all digits and its length gives its level: a 9-digit town code (6-digit county
//! division code from GB/T 2260 plus a 3-digit town number, as in GB/T 10114), then 2 digits for
//! the district (片区), 3 for the village or community, 3 for the grid, 3 for the micro-grid.
//! A unit's code is a prefix of all codes below it, so "is X inside Y" is a prefix test and a
//! scope covers everything under it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The five levels of the grid hierarchy, from the town down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GridLevel {
    /// 乡镇/街道: 9 digits.
    Town,
    /// 片区: 11 digits.
    District,
    /// 村/社区: 14 digits.
    Village,
    /// 网格: 17 digits.
    Grid,
    /// 微网格: 20 digits.
    MicroGrid,
}

impl GridLevel {
    const LENGTHS: [(usize, GridLevel); 5] = [
        (9, GridLevel::Town),
        (11, GridLevel::District),
        (14, GridLevel::Village),
        (17, GridLevel::Grid),
        (20, GridLevel::MicroGrid),
    ];

    /// How many digits a code of this level has.
    pub fn code_len(self) -> usize {
        Self::LENGTHS
            .iter()
            .find(|(_, l)| *l == self)
            .map(|(n, _)| *n)
            .unwrap_or(0)
    }

    /// The stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            GridLevel::Town => "town",
            GridLevel::District => "district",
            GridLevel::Village => "village",
            GridLevel::Grid => "grid",
            GridLevel::MicroGrid => "micro_grid",
        }
    }
}

/// A string that is not a valid grid code, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("grid code {input:?} is invalid: {reason}")]
pub struct GridCodeError {
    /// The rejected text.
    pub input: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

/// A validated grid code; see the module docs for the format.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GridCode(String);

impl GridCode {
    /// Parses and validates a code.
    pub fn parse(s: &str) -> Result<Self, GridCodeError> {
        let err = |reason| GridCodeError {
            input: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("it must contain only digits 0-9"));
        }
        if !GridLevel::LENGTHS.iter().any(|(n, _)| *n == s.len()) {
            return Err(err(
                "it must have 9 (town), 11 (district), 14 (village), 17 (grid) or 20 (micro-grid) digits",
            ));
        }
        if s[..6].ends_with("0000") {
            return Err(err(
                "its first 6 digits must be a county-level division code",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The level this code names.
    pub fn level(&self) -> GridLevel {
        GridLevel::LENGTHS
            .iter()
            .find(|(n, _)| *n == self.0.len())
            .map(|(_, l)| *l)
            .unwrap_or(GridLevel::Town)
    }

    /// The unit directly above, or `None` for a town.
    pub fn parent(&self) -> Option<GridCode> {
        let idx = GridLevel::LENGTHS
            .iter()
            .position(|(n, _)| *n == self.0.len())?;
        let (len, _) = GridLevel::LENGTHS.get(idx.checked_sub(1)?)?;
        Some(GridCode(self.0[..*len].to_owned()))
    }

    /// Whether `other` is this unit or lies inside it.
    pub fn contains(&self, other: &GridCode) -> bool {
        other.0.starts_with(&self.0)
    }

    /// The town this unit belongs to.
    pub fn town(&self) -> GridCode {
        GridCode(self.0[..9].to_owned())
    }
}

impl fmt::Display for GridCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for GridCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GridCode({})", self.0)
    }
}

impl FromStr for GridCode {
    type Err = GridCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for GridCode {
    type Error = GridCodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<GridCode> for String {
    fn from(c: GridCode) -> String {
        c.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parents_and_containment() {
        let grid = GridCode::parse("33010200101001002").expect("valid grid code");
        assert_eq!(grid.level(), GridLevel::Grid);
        let village = grid.parent().expect("grid has a village");
        assert_eq!(village.as_str(), "33010200101001");
        assert_eq!(village.level(), GridLevel::Village);
        let town = grid.town();
        assert_eq!(town.as_str(), "330102001");
        assert!(town.contains(&grid));
        assert!(village.contains(&grid));
        assert!(!grid.contains(&village));
        assert_eq!(town.parent(), None);
        let micro = GridCode::parse("33010200101001002007").expect("valid micro-grid");
        assert_eq!(micro.parent(), Some(grid.clone()));
        assert!(grid.contains(&micro));
    }

    #[test]
    fn rejects_bad_codes_with_reason() {
        for (input, reason) in [
            ("", "it is empty"),
            ("33010200a", "it must contain only digits 0-9"),
            ("3301020011", "it must have 9"),
            ("330000001", "county-level"),
        ] {
            let err = GridCode::parse(input).expect_err(input);
            assert!(err.reason.contains(reason), "{input}: {}", err.reason);
            assert_eq!(err.input, input);
        }
    }

    #[test]
    fn serde_validates() {
        let ok: GridCode = serde_json::from_str("\"330102001\"").expect("valid");
        assert_eq!(ok.as_str(), "330102001");
        assert!(serde_json::from_str::<GridCode>("\"12\"").is_err());
    }
}
