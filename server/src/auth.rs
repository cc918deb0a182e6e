//! Devices, roles, enrollment codes and bearer tokens.
//!
//! **Invariant:** the server never stores a token or an enrollment code, only their SHA-256;
//! a stolen database does not let anyone sync as a device.

use gridsync_proto::{DeviceId, GridCode};
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
    pub fn feed_scopes(&self) -> Vec<String> {
        match (&self.department, self.role) {
            (Some(d), Role::Department) => self
                .scopes
                .iter()
                .map(|town| department_scope(d, &town.town()))
                .collect(),
            _ => self.scopes.iter().map(ToString::to_string).collect(),
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
    if scopes.is_empty() {
        return Err("at least one grid code is needed".into());
    }
    if role == Role::Dispatcher
        && scopes
            .iter()
            .any(|s| s.level() != gridsync_proto::GridLevel::Town)
    {
        return Err("a dispatcher's scope is a whole town: give the 9-digit town code".into());
    }
    Ok(scopes)
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
    }
}
