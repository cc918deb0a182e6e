//! The wall clock, in the one unit records use (milliseconds since the Unix epoch, UTC).

use crate::records::Millis;

/// Now, in milliseconds since the Unix epoch (0 if the system clock is before 1970).
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
