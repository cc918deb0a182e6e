//! Devices, roles, enrollment codes and bearer tokens.
//!
//! **Invariant:** the server never stores a token or an enrollment code, only their SHA-256;
//! a stolen database does not let anyone sync as a device.

use gridsync_proto::{DeviceId, GridCode, GridLevel};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What a device may do: the workflow's roles (intake is the server's own, never enrolled).
pub use gridsync_core::workflow::Role;

/// An enrolled, authenticated device as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its id, which is also the Automerge actor of its changes.
    pub id: DeviceId,
    /// Display name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The units it may see and write: a document is in scope when one of these contains its
    /// scope. For a department clerk, the towns it serves (and then only the cases currently
    /// dispatched to its department).
    pub scopes: Vec<GridCode>,
    /// The department a clerk's device is bound to.
    pub department: Option<String>,
}

impl Device {
    /// The keys of the feed this device pulls from: its grid codes, or its department in each
    /// town it serves (department codes are county-wide; the town keeps other towns' cases out).
    ///
    /// Fails closed: a department clerk's device without a department, or a scope of it that
    /// is not a whole town (enrollment refuses both; a row written before it did may hold
    /// them), gets no feed for it rather than its grid codes or the whole town's cases.
    pub fn feed_scopes(&self) -> Vec<String> {
        match (self.role, &self.department) {
            (Role::Department, Some(d)) => self
                .scopes
                .iter()
                .filter(|s| s.level() == GridLevel::Town)
                .map(|town| department_scope(d, town))
                .collect(),
            (Role::Department, None) => Vec::new(),
            _ => self.scopes.iter().map(ToString::to_string).collect(),
        }
    }

    /// The department whose dispatched cases this device may write: only a department
    /// clerk's device bound to one (any other device, or a clerk's without a department, none).
    pub fn writes_for_department(&self) -> Option<&str> {
        match (self.role, &self.department) {
            (Role::Department, Some(d)) => Some(d),
            _ => None,
        }
    }
}

/// The feed key of a department's cases in one town.
pub fn department_scope(dept: &str, town: &GridCode) -> String {
    format!("dept:{dept}:{town}")
}

/// Parses a comma-separated list of grid codes and checks it fits the role.
pub fn parse_scopes(role: Role, s: &str) -> Result<Vec<GridCode>, String> {
    let scopes: Vec<GridCode> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| GridCode::parse(p).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    check_scopes(role, &scopes)?;
    Ok(scopes)
}

/// Checks scopes fit the role: at least one, and whole towns for the roles that work
/// town-wide (a dispatcher's centre, a department clerk's towns).
pub fn check_scopes(role: Role, scopes: &[GridCode]) -> Result<(), String> {
    if scopes.is_empty() {
        return Err("at least one grid code is needed".into());
    }
    let whole_towns = scopes.iter().all(|s| s.level() == GridLevel::Town);
    match role {
        Role::Dispatcher if !whole_towns => {
            Err("a dispatcher's scope is a whole town: give the 9-digit town code".into())
        }
        Role::Department if !whole_towns => Err(
            "a department clerk's scopes are the whole towns it serves: give 9-digit town codes"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// Checks what an enrollment binds a device to, before a code is made and again when it is
/// redeemed: an enrollable role, scopes that fit it, and a department exactly when the role
/// is a department clerk's.
pub fn check_enrollment(
    role: Role,
    scopes: &[GridCode],
    department: Option<&str>,
) -> Result<(), String> {
    if role == Role::Intake {
        return Err("intake is the server's own role; no device is enrolled as it".into());
    }
    check_scopes(role, scopes)?;
    match (role, department.map(str::trim)) {
        (Role::Department, None | Some("")) => {
            Err("a department clerk's device needs its department".into())
        }
        (Role::Department, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err("a department is only for a department clerk's device".into()),
    }
}

/// Joins scopes for storage.
pub fn join_scopes(scopes: &[GridCode]) -> String {
    scopes
        .iter()
        .map(GridCode::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// Lower-case hex SHA-256 of a secret, as stored.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.trim().as_bytes()))
}

/// A fresh bearer token: 32 random bytes, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

// Crockford base32 without I, L, O, U: easy to read aloud and type on a phone.
const CODE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A fresh one-time enrollment code like `K7QX-M2PA-9DTR` (60 bits of entropy).
pub fn new_enrollment_code() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| CODE_ALPHABET[usize::from(*b) % CODE_ALPHABET.len()] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// Normalises what a person typed (case, spaces, dashes) before hashing a code.
pub fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_typeable_and_normalise() {
        let code = new_enrollment_code();
        assert_eq!(code.len(), 14);
        assert_eq!(
            normalize_code(&code.to_lowercase().replace('-', " ")),
            normalize_code(&code)
        );
        assert_ne!(new_enrollment_code(), code);
    }

    #[test]
    fn scopes_fit_roles() {
        assert!(parse_scopes(Role::Worker, "33010200101001002,33010200101001003").is_ok());
        assert!(parse_scopes(Role::Dispatcher, "330102001").is_ok());
        assert!(parse_scopes(Role::Dispatcher, "33010200101001002").is_err());
        assert!(parse_scopes(Role::Worker, "").is_err());
        assert!(parse_scopes(Role::Worker, "12").is_err());
        assert!(parse_scopes(Role::Department, "330102001,330102002").is_ok());
        assert!(parse_scopes(Role::Department, "33010200101").is_err());
    }

    fn device(role: Role, scopes: &[&str], department: Option<&str>) -> Device {
        Device {
            id: DeviceId::new(),
            name: "d".into(),
            role,
            scopes: scopes
                .iter()
                .map(|s| GridCode::parse(s).expect("grid code"))
                .collect(),
            department: department.map(str::to_owned),
        }
    }

    #[test]
    fn enrollment_binds_departments_only_to_clerks_of_whole_towns() {
        let town = [GridCode::parse("330102001").expect("town")];
        let grid = [GridCode::parse("33010200101001002").expect("grid")];
        assert!(check_enrollment(Role::Department, &town, Some("D01")).is_ok());
        assert!(check_enrollment(Role::Department, &town, None).is_err());
        assert!(check_enrollment(Role::Department, &town, Some(" ")).is_err());
        assert!(check_enrollment(Role::Department, &grid, Some("D01")).is_err());
        assert!(check_enrollment(Role::Worker, &grid, Some("D01")).is_err());
        assert!(check_enrollment(Role::Worker, &grid, None).is_ok());
        assert!(check_enrollment(Role::Dispatcher, &grid, None).is_err());
        assert!(check_enrollment(Role::Intake, &town, None).is_err());
    }

    #[test]
    fn a_clerk_without_a_department_or_a_town_gets_no_feed() {
        let bound = device(Role::Department, &["330102001"], Some("D01"));
        assert_eq!(bound.feed_scopes(), ["dept:D01:330102001"]);
        assert_eq!(bound.writes_for_department(), Some("D01"));
        let unbound = device(Role::Department, &["330102001"], None);
        assert!(unbound.feed_scopes().is_empty(), "not the town's feed");
        assert_eq!(unbound.writes_for_department(), None);
        let below_town = device(Role::Department, &["33010200101", "330102002"], Some("D01"));
        assert_eq!(
            below_town.feed_scopes(),
            ["dept:D01:330102002"],
            "a district scope does not widen to its whole town"
        );
        let worker = device(Role::Worker, &["33010200101001002"], Some("D01"));
        assert_eq!(worker.feed_scopes(), ["33010200101001002"]);
        assert_eq!(worker.writes_for_department(), None);
    }
}
