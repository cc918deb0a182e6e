//! Field validation shared by every record type. Each rule returns a [`ValidationError`] naming
//! the field (as a path inside the record) and what is wrong with it, so a form can point at it.

use std::fmt;

/// One invalid field: where it is and why it was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// The path of the field inside the record, e.g. `members.<id>.id_number`.
    pub field: String,
    /// What is wrong, in words a grid worker understands.
    pub problem: Problem,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A required field is missing or blank.
    Required,
    /// Text longer than the field allows.
    TooLong {
        /// The limit in characters.
        max: usize,
    },
    /// Not an 18-character resident ID number (17 digits and a check character).
    IdNumberFormat,
    /// The ID number's birth date part is not a real date.
    IdNumberBirthDate,
    /// The ID number's GB 11643 check character does not match.
    IdNumberChecksum {
        /// The check character the first 17 digits call for.
        expected: char,
    },
    /// The ID number disagrees with another field of the same person.
    IdNumberMismatch {
        /// Which field disagrees (`birth_date` or `gender`).
        with: &'static str,
    },
    /// Not a mainland mobile (11 digits starting 1[3-9]) or landline (0 + area code + number).
    PhoneFormat,
    /// A latitude outside -90..=90 or a longitude outside -180..=180, or not a number.
    GpsOutOfRange,
    /// A date that is not `YYYY-MM-DD` or does not exist.
    DateFormat,
    /// A value that is not one of the allowed ones.
    NotOneOf {
        /// The allowed values.
        allowed: &'static [&'static str],
    },
    /// A grid code that is not valid.
    GridCode(String),
    /// A field whose value contradicts another one (end before start, ...).
    Inconsistent(&'static str),
    /// Not a lower-case hex SHA-256 digest.
    Sha256Format,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Required => f.write_str("is required"),
            Problem::TooLong { max } => write!(f, "is longer than {max} characters"),
            Problem::IdNumberFormat => {
                f.write_str("must be 18 characters: 17 digits and a digit or X")
            }
            Problem::IdNumberBirthDate => f.write_str("contains a birth date that does not exist"),
            Problem::IdNumberChecksum { expected } => write!(
                f,
                "has a wrong check character (GB 11643 expects {expected:?}); a digit was probably mistyped"
            ),
            Problem::IdNumberMismatch { with } => write!(f, "does not match the person's {with}"),
            Problem::PhoneFormat => f.write_str(
                "must be a mobile number (11 digits starting 13-19) or a landline (0, area code, number)",
            ),
            Problem::GpsOutOfRange => f.write_str(
                "must be a latitude in -90..=90 and a longitude in -180..=180",
            ),
            Problem::DateFormat => f.write_str("must be a real date written YYYY-MM-DD"),
            Problem::NotOneOf { allowed } => write!(f, "must be one of {}", allowed.join(", ")),
            Problem::GridCode(reason) => write!(f, "is not a grid code: {reason}"),
            Problem::Inconsistent(what) => f.write_str(what),
            Problem::Sha256Format => f.write_str("must be 64 lower-case hex digits (SHA-256)"),
        }
    }
}

/// Collects the problems of one record so a form can show them all at once.
#[derive(Debug, Default)]
pub struct Checker {
    prefix: String,
    errors: Vec<ValidationError>,
}

/// Every problem found in one record; empty means valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl Checker {
    /// A checker whose field paths are relative to the record's root.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with field paths prefixed by `prefix.` (for nested records).
    pub fn nested(&mut self, prefix: &str, f: impl FnOnce(&mut Checker)) {
        let full = self.path(prefix);
        let saved = std::mem::replace(&mut self.prefix, full);
        f(self);
        self.prefix = saved;
    }

    fn path(&self, field: &str) -> String {
        if self.prefix.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.prefix)
        }
    }

    /// Records a problem with `field`.
    pub fn fail(&mut self, field: &str, problem: Problem) {
        self.errors.push(ValidationError {
            field: self.path(field),
            problem,
        });
    }

    /// A required, non-blank text of at most `max` characters.
    pub fn required(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.fail(field, Problem::Required);
        } else {
            self.max_len(field, value, max);
        }
    }

    /// Optional text of at most `max` characters.
    pub fn max_len(&mut self, field: &str, value: &str, max: usize) {
        if value.chars().count() > max {
            self.fail(field, Problem::TooLong { max });
        }
    }

    /// A phone number (see [`check_phone`]).
    pub fn phone(&mut self, field: &str, value: &str) {
        if let Err(p) = check_phone(value) {
            self.fail(field, p);
        }
    }

    /// A GPS position.
    pub fn gps(&mut self, field: &str, lat: f64, lon: f64) {
        if let Err(p) = check_gps(lat, lon) {
            self.fail(field, p);
        }
    }

    /// A `YYYY-MM-DD` date.
    pub fn date(&mut self, field: &str, value: &str) {
        if parse_date(value).is_none() {
            self.fail(field, Problem::DateFormat);
        }
    }

    /// A value from a closed vocabulary.
    pub fn one_of(&mut self, field: &str, value: &str, allowed: &'static [&'static str]) {
        if !allowed.contains(&value) {
            self.fail(field, Problem::NotOneOf { allowed });
        }
    }

    /// A grid code.
    pub fn grid_code(&mut self, field: &str, value: &str) {
        if let Err(e) = gridsync_proto::GridCode::parse(value) {
            self.fail(field, Problem::GridCode(e.reason.to_owned()));
        }
    }

    /// A lower-case hex SHA-256 digest.
    pub fn sha256(&mut self, field: &str, value: &str) {
        if value.len() != 64
            || !value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            self.fail(field, Problem::Sha256Format);
        }
    }

    /// Ends the check: `Ok` when nothing was wrong.
    pub fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.errors))
        }
    }
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// The facts an 18-digit resident ID number (GB 11643-1999) encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdNumberFacts {
    /// Birth date as `YYYY-MM-DD`.
    pub birth_date: String,
    /// `male` when the sequence digit is odd, else `female`.
    pub gender: &'static str,
}

/// Checks an ID number's format, birth date and check character (a lower-case `x` is accepted).
pub fn check_id_number(value: &str) -> Result<IdNumberFacts, Problem> {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() != 18
        || !chars[..17].iter().all(char::is_ascii_digit)
        || !(chars[17].is_ascii_digit() || chars[17] == 'X' || chars[17] == 'x')
    {
        return Err(Problem::IdNumberFormat);
    }
    let birth = format!("{}-{}-{}", &value[6..10], &value[10..12], &value[12..14]);
    if parse_date(&birth).is_none() {
        return Err(Problem::IdNumberBirthDate);
    }
    let sum: u32 = chars[..17]
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
        .sum();
    let expected = ID_CHECK[(sum % 11) as usize];
    if chars[17].to_ascii_uppercase() != expected {
        return Err(Problem::IdNumberChecksum { expected });
    }
    let seq = chars[16].to_digit(10).unwrap_or(0);
    Ok(IdNumberFacts {
        birth_date: birth,
        gender: if seq % 2 == 1 { "male" } else { "female" },
    })
}

/// The check character GB 11643 gives the first 17 digits (for making test data and hints).
pub fn id_check_char(first17: &str) -> Option<char> {
    if first17.len() != 17 || !first17.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = first17
        .bytes()
        .zip(ID_WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    Some(ID_CHECK[(sum % 11) as usize])
}

/// Accepts a mainland mobile number (`1[3-9]` + 9 digits, optional `+86`/`86` prefix, spaces
/// and dashes ignored) or a landline (`0` + 2-3 digit area code + 7-8 digit number, optional
/// `-` extension of up to 6 digits).
pub fn check_phone(value: &str) -> Result<(), Problem> {
    let trimmed = value.trim();
    let (main, ext) = match trimmed.split_once(['#', '转']) {
        Some((m, e)) => (m, Some(e)),
        None => (trimmed, None),
    };
    let digits: String = main
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect();
    let digits = digits
        .strip_prefix("+86")
        .or_else(|| digits.strip_prefix("0086"))
        .unwrap_or(&digits);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::PhoneFormat);
    }
    if let Some(e) = ext
        && (e.is_empty() || e.len() > 6 || !e.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Problem::PhoneFormat);
    }
    let b = digits.as_bytes();
    let mobile = b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) && ext.is_none();
    let landline =
        b.first() == Some(&b'0') && (10..=12).contains(&b.len()) && b.get(1) != Some(&b'0');
    if mobile || landline {
        Ok(())
    } else {
        Err(Problem::PhoneFormat)
    }
}

/// Accepts a finite latitude in -90..=90 and longitude in -180..=180.
pub fn check_gps(lat: f64, lon: f64) -> Result<(), Problem> {
    if lat.is_finite()
        && lon.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon)
    {
        Ok(())
    } else {
        Err(Problem::GpsOutOfRange)
    }
}

/// Parses `YYYY-MM-DD` into a real calendar date.
pub fn parse_date(value: &str) -> Option<time::Date> {
    let b = value.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year: i32 = value[0..4].parse().ok()?;
    let month: u8 = value[5..7].parse().ok()?;
    let day: u8 = value[8..10].parse().ok()?;
    let month = time::Month::try_from(month).ok()?;
    time::Date::from_calendar_date(year, month, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_id(first17: &str) -> String {
        format!("{first17}{}", id_check_char(first17).expect("17 digits"))
    }

    #[test]
    fn id_number_accepts_a_correct_check_character() {
        // 11010519491231002X is the worked example in GB 11643-1999.
        let facts = check_id_number("11010519491231002X").expect("the standard's example");
        assert_eq!(facts.birth_date, "1949-12-31");
        assert_eq!(facts.gender, "female");
        assert!(
            check_id_number("11010519491231002x").is_ok(),
            "lower-case x"
        );
        let id = valid_id("33010219800101001");
        assert_eq!(check_id_number(&id).expect("computed").gender, "male");
    }

    #[test]
    fn id_number_rejects_each_kind_of_mistake() {
        assert_eq!(
            check_id_number("1101051949123100"),
            Err(Problem::IdNumberFormat)
        );
        assert_eq!(
            check_id_number("11010519491231002Y"),
            Err(Problem::IdNumberFormat)
        );
        assert_eq!(
            check_id_number("1101051949123A002X"),
            Err(Problem::IdNumberFormat)
        );
        assert_eq!(
            check_id_number("110105194913310021"),
            Err(Problem::IdNumberBirthDate)
        );
        assert_eq!(
            check_id_number("110105194902300021"),
            Err(Problem::IdNumberBirthDate)
        );
        // One mistyped digit changes the check character.
        assert_eq!(
            check_id_number("11010519491231003X"),
            Err(Problem::IdNumberChecksum { expected: '8' })
        );
    }

    #[test]
    fn phones() {
        for ok in [
            "13812345678",
            "+86 138-1234-5678",
            "0571-87654321",
            "010-12345678",
            "0571-87654321#123",
            "19912345678",
        ] {
            assert_eq!(check_phone(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "12812345678",
            "1381234567",
            "138123456789",
            "0012345678",
            "abc",
            "0571-8765432x",
            "13812345678#1",
        ] {
            assert_eq!(check_phone(bad), Err(Problem::PhoneFormat), "{bad}");
        }
    }

    #[test]
    fn gps_ranges() {
        assert!(check_gps(30.27, 120.15).is_ok());
        assert!(check_gps(-90.0, 180.0).is_ok());
        for (lat, lon) in [
            (90.1, 0.0),
            (0.0, -180.5),
            (f64::NAN, 0.0),
            (0.0, f64::INFINITY),
        ] {
            assert_eq!(
                check_gps(lat, lon),
                Err(Problem::GpsOutOfRange),
                "{lat},{lon}"
            );
        }
    }

    #[test]
    fn dates() {
        assert!(parse_date("2024-02-29").is_some());
        assert!(parse_date("2023-02-29").is_none());
        assert!(parse_date("2023-2-28").is_none());
        assert!(parse_date("20230228").is_none());
    }

    #[test]
    fn checker_reports_every_field_with_its_path() {
        let mut c = Checker::new();
        c.required("name", " ", 10);
        c.nested("members.r1", |c| {
            c.phone("phones.0", "123");
            c.max_len("work", "abcdef", 3);
        });
        let errs = c.finish().expect_err("three problems").0;
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "members.r1.phones.0", "members.r1.work"]);
        assert_eq!(errs[2].problem, Problem::TooLong { max: 3 });
        assert!(errs[0].to_string().contains("name: is required"));
    }
}
