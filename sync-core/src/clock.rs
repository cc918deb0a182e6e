//! The wall clock, in the one unit records use (milliseconds since the Unix epoch, UTC).

use crate::records::Millis;

/// Now, in milliseconds since the Unix epoch (0 if the system clock is before 1970).
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A moment as China time to the minute (`2026-12-01 09:30`), for people to read.
pub fn format_china(ms: Millis) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return ms.to_string();
    };
    let t = t.to_offset(time::macros::offset!(+8));
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    t.format(&f).unwrap_or_else(|_| ms.to_string())
}
