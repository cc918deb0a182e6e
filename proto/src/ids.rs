//! Identifiers made on the device (UUIDv7), never by the server.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An identifier that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {input:?} is not a UUID: {reason}")]
pub struct IdError {
    /// Which kind of id was being parsed (`document id`, `device id`, ...).
    pub kind: &'static str,
    /// The text that failed to parse.
    pub input: String,
    /// Why it failed.
    pub reason: String,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh time-ordered (UUIDv7) id, made on this device.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The 16 raw bytes, as stored and sent on the wire.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim()).map(Self).map_err(|e| IdError {
                    kind: $kind,
                    input: s.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
    };
}

uuid_id!(
    /// Names one Automerge document (a household, a case, an inspection, a grid).
    DocId,
    "document id"
);
uuid_id!(
    /// Names one enrolled device (a phone, a dispatcher's workstation).
    DeviceId,
    "device id"
);
uuid_id!(
    /// Names a record inside a document (a resident, a visit, a case event, a photo).
    RecordId,
    "record id"
);
