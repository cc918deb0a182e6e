//! Times a phone's clock cannot have given honestly. Phone clocks are wrong in the field (set by
//! hand, reset by a flat battery), and deadlines, on-time rates and handling times are computed
//! from the times entries carry, so the times of new entries are checked where they arrive.
//!
//! The rule (also in docs/API.md): an entry's time is **flagged**, never changed or refused,
//! - `future`: when it is later than the moment the server received it, by more than
//!   [`TOLERANCE_MS`];
//! - `too_old`: when it is earlier than that moment by more than [`MAX_AGE_MS`] (a phone
//!   syncs far more often than that; older times come from a clock set back);
//! - `clock_off`: when the phone's own clock, sent with the sync, was off from the server's by
//!   more than [`TOLERANCE_MS`] (the skew is kept with the flag, so a reader can correct it);
//! - `before_its_cause`: a workflow event stamped earlier than an event its author had
//!   already seen (its `after` list), by more than [`TOLERANCE_MS`]. This one needs no server:
//!   any replica derives it from the document alone.
//!
//! Flags are pure functions of the record JSON before and after a push and of the receipt
//! (server time, the phone's clock); the server stores them beside the document.

use gridsync_proto::DocType;
use serde_json::Value as Json;

use crate::records::{Case, Millis};

/// How far a clock may be off before its times are flagged (5 minutes).
pub const TOLERANCE_MS: i64 = 5 * 60 * 1000;
/// How old a new entry's time may be when it arrives before it is flagged (30 days).
pub const MAX_AGE_MS: i64 = 30 * 24 * 3600 * 1000;

/// The time fields of entries, per document type: (entry pattern, field). An empty pattern is
/// the record itself.
fn timed(doc_type: DocType) -> &'static [(&'static str, &'static str)] {
    match doc_type {
        DocType::Household => &[("visits.*", "at"), ("redactions.*", "at")],
        DocType::Case => &[
            ("", "reported_at"),
            ("events.*", "at"),
            ("redactions.*", "at"),
        ],
        DocType::Inspection => &[
            ("", "started_at"),
            ("", "ended_at"),
            ("checkpoints.*", "checked_at"),
            ("findings.*", "at"),
            ("redactions.*", "at"),
        ],
        DocType::Grid => &[],
    }
}

/// One flagged time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimeFlag {
    /// The time field's path inside the record, e.g. `events.<id>.at`.
    pub path: String,
    /// The time it carries (ms since the epoch).
    pub at: Millis,
    /// `future`, `too_old`, `clock_off` or `before_its_cause`.
    pub reason: &'static str,
}

/// Every entry of `json` matching `pattern` (dot-separated, `*` for any key), with its path.
fn entries<'a>(json: &'a Json, pattern: &str) -> Vec<(String, &'a Json)> {
    let mut found = vec![(String::new(), json)];
    for seg in pattern.split('.').filter(|s| !s.is_empty()) {
        found = found
            .into_iter()
            .flat_map(|(path, v)| {
                let join = |k: &str| {
                    if path.is_empty() {
                        k.to_owned()
                    } else {
                        format!("{path}.{k}")
                    }
                };
                match (seg, v) {
                    ("*", Json::Object(m)) => m.iter().map(|(k, c)| (join(k), c)).collect(),
                    (key, Json::Object(m)) => {
                        m.get(key).map(|c| vec![(join(key), c)]).unwrap_or_default()
                    }
                    _ => Vec::new(),
                }
            })
            .collect();
    }
    found
}

/// The times an edit wrote: every time field in `after` that `before` does not hold with the
/// same value, with its path.
pub fn new_times(doc_type: DocType, before: &Json, after: &Json) -> Vec<(String, Millis)> {
    let mut out = Vec::new();
    for (pattern, field) in timed(doc_type) {
        for (path, entry) in entries(after, pattern) {
            let Some(at) = entry.get(*field).and_then(Json::as_i64) else {
                continue;
            };
            let full = if path.is_empty() {
                (*field).to_owned()
            } else {
                format!("{path}.{field}")
            };
            let old = full
                .split('.')
                .try_fold(before, |v, seg| v.get(seg))
                .and_then(Json::as_i64);
            if old != Some(at) {
                out.push((full, at));
            }
        }
    }
    out
}

/// Flags for times written by a push received at `received_at` (server clock) from a phone
/// whose clock read `phone_clock` when it sent it (0: unknown, an older phone).
pub fn flag_arrivals(
    times: &[(String, Millis)],
    received_at: Millis,
    phone_clock: Millis,
) -> Vec<TimeFlag> {
    let clock_off = phone_clock != 0 && (phone_clock - received_at).abs() > TOLERANCE_MS;
    let mut out = Vec::new();
    for (path, at) in times {
        let reason = if *at > received_at + TOLERANCE_MS {
            "future"
        } else if *at < received_at - MAX_AGE_MS {
            "too_old"
        } else if clock_off {
            "clock_off"
        } else {
            continue;
        };
        out.push(TimeFlag {
            path: path.clone(),
            at: *at,
            reason,
        });
    }
    out
}

/// Workflow events stamped earlier than an event their author had already seen.
pub fn events_before_their_cause(case: &Case) -> Vec<TimeFlag> {
    case.events
        .iter()
        .filter_map(|(id, e)| {
            let seen = e
                .after
                .iter()
                .filter_map(|p| case.events.get(p))
                .map(|p| p.at)
                .max()?;
            (e.at < seen - TOLERANCE_MS).then(|| TimeFlag {
                path: format!("events.{id}.at"),
                at: e.at,
                reason: "before_its_cause",
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_times_the_edit_wrote_are_new() {
        let before = json!({"reported_at": 5, "events": {"e1": {"at": 10}}});
        let after = json!({"reported_at": 5, "events": {"e1": {"at": 10}, "e2": {"at": 20}}});
        assert_eq!(
            new_times(DocType::Case, &before, &after),
            vec![("events.e2.at".to_owned(), 20)]
        );
        let fresh = new_times(DocType::Case, &json!({}), &after);
        assert_eq!(fresh.len(), 3, "{fresh:?}");
    }

    #[test]
    fn arrivals_are_flagged_by_the_receipt() {
        let now = 1_760_000_000_000;
        let times = vec![
            ("a".to_owned(), now + TOLERANCE_MS + 1),
            ("b".to_owned(), now - MAX_AGE_MS - 1),
            ("c".to_owned(), now - 3_600_000),
        ];
        let reasons: Vec<_> = flag_arrivals(&times, now, 0)
            .iter()
            .map(|f| f.reason)
            .collect();
        assert_eq!(reasons, ["future", "too_old"], "an hour ago is plausible");
        let off = flag_arrivals(&times, now, now - 3 * 24 * 3_600_000);
        assert_eq!(off.len(), 3, "a clock three days behind flags all it sent");
        assert_eq!(off[2].reason, "clock_off");
    }
}
