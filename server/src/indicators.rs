//! Closed-loop indicators over the cases reported in a period, computed from the case
//! projection (pure: rows in, figures out). The definitions below are the API's; `docs/API.md`
//! repeats them for readers of the HTTP API.
//!
//! Populations (all among cases reported in `[from, to)`, drafts excluded):
//! - *accountable*: not rejected (不予立案), not merged as a duplicate, and not suspended (挂账)
//!   at query time — suspension takes a case out of the denominator;
//! - *closed*: status closed, followed_up or archived;
//! - *dispatched*: ever dispatched to a department (has a dispatch time).
//!
//! Figures (a rate is `null` when its denominator is empty):
//! - 结案率 `closure_rate` = closed / accountable;
//! - 按期结案率 `on_time_rate` = closed dispatched cases whose result came (handled, or closed
//!   when no result was recorded) by the deadline / closed dispatched cases;
//! - 返工率 `rework_rate` = dispatched cases sent back at least once (failed check or
//!   dissatisfied reopen) / dispatched;
//! - 延期率 `extension_rate` = dispatched cases with at least one approved extension / dispatched;
//! - 办结率 `handled_rate` = dispatched cases whose department reported a result (handled,
//!   checking or closed) / dispatched;
//! - 自办自结率 `self_closed_rate` = closed by the grid worker alone / closed;
//! - 满意率 `satisfaction_rate` = follow-ups answered 满意 or 基本满意 / follow-ups;
//! - `avg_handling_hours`, `p90_handling_hours`: reported → closed, in hours, over closed
//!   cases (p90 by nearest rank);
//! - `overdue`: dispatched, not yet handled, deadline passed at query time (not suspended);
//! - `supervised`: cases with at least one 督办 notice.

use std::collections::BTreeMap;

use gridsync_core::projection::CaseRow;
use serde::Serialize;

/// How to group the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// By grid code.
    Grid,
    /// By lead department (`(none)` before dispatch).
    Department,
    /// By 大类 code.
    Category,
}

/// The figures of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// The group's key (grid code, department code or 大类 code).
    pub key: String,
    /// Cases reported in the period.
    pub cases: usize,
    /// 结案率.
    pub closure_rate: Option<f64>,
    /// 按期结案率.
    pub on_time_rate: Option<f64>,
    /// 返工率.
    pub rework_rate: Option<f64>,
    /// 延期率.
    pub extension_rate: Option<f64>,
    /// 办结率.
    pub handled_rate: Option<f64>,
    /// 自办自结率.
    pub self_closed_rate: Option<f64>,
    /// 满意率.
    pub satisfaction_rate: Option<f64>,
    /// Average hours from report to close.
    pub avg_handling_hours: Option<f64>,
    /// 90th percentile hours from report to close.
    pub p90_handling_hours: Option<f64>,
    /// Overdue now.
    pub overdue: usize,
    /// Supervised (督办) at least once.
    pub supervised: usize,
}

fn rate(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| (num as f64 / den as f64 * 10_000.0).round() / 10_000.0)
}

fn is_closed(c: &CaseRow) -> bool {
    matches!(c.status.as_str(), "closed" | "followed_up" | "archived")
}

fn hours(ms: i64) -> f64 {
    (ms as f64 / 3_600_000.0 * 100.0).round() / 100.0
}

/// Figures for one group of cases at time `now`.
pub fn figures(key: String, cases: &[&CaseRow], now: i64) -> Figures {
    let accountable = cases
        .iter()
        .filter(|c| !matches!(c.status.as_str(), "rejected" | "merged" | "suspended"))
        .count();
    let closed: Vec<&&CaseRow> = cases.iter().filter(|c| is_closed(c)).collect();
    let dispatched: Vec<&&CaseRow> = cases.iter().filter(|c| c.dispatched_at.is_some()).collect();
    let closed_dispatched: Vec<&&&CaseRow> = closed
        .iter()
        .filter(|c| c.dispatched_at.is_some())
        .collect();
    let on_time = closed_dispatched
        .iter()
        .filter(|c| match (c.handled_at.or(c.closed_at), c.deadline) {
            (Some(done), Some(deadline)) => done <= deadline,
            _ => false,
        })
        .count();
    let handled = dispatched
        .iter()
        .filter(|c| c.handled_at.is_some() || is_closed(c) || c.status == "checking")
        .count();
    let followed: Vec<&&CaseRow> = cases.iter().filter(|c| c.satisfaction.is_some()).collect();
    let satisfied = followed
        .iter()
        .filter(|c| {
            matches!(
                c.satisfaction.as_deref(),
                Some("satisfied" | "basically_satisfied")
            )
        })
        .count();
    let mut durations: Vec<i64> = closed
        .iter()
        .filter_map(|c| c.closed_at.map(|t| (t - c.reported_at).max(0)))
        .collect();
    durations.sort_unstable();
    let avg = (!durations.is_empty())
        .then(|| hours(durations.iter().sum::<i64>() / durations.len() as i64));
    let p90 = (!durations.is_empty()).then(|| {
        let rank = (durations.len() * 9).div_ceil(10).max(1);
        hours(durations[rank - 1])
    });
    let overdue = dispatched
        .iter()
        .filter(|c| {
            matches!(c.status.as_str(), "dispatched" | "returned" | "in_progress")
                && c.deadline.is_some_and(|d| now > d)
        })
        .count();
    Figures {
        key,
        cases: cases.len(),
        closure_rate: rate(closed.len(), accountable),
        on_time_rate: rate(on_time, closed_dispatched.len()),
        rework_rate: rate(
            dispatched.iter().filter(|c| c.reworks > 0).count(),
            dispatched.len(),
        ),
        extension_rate: rate(
            dispatched.iter().filter(|c| c.extensions > 0).count(),
            dispatched.len(),
        ),
        handled_rate: rate(handled, dispatched.len()),
        self_closed_rate: rate(
            closed.iter().filter(|c| c.self_closed > 0).count(),
            closed.len(),
        ),
        satisfaction_rate: rate(satisfied, followed.len()),
        avg_handling_hours: avg,
        p90_handling_hours: p90,
        overdue,
        supervised: cases.iter().filter(|c| c.supervisions > 0).count(),
    }
}

/// Figures per group, plus the total.
pub fn indicators(rows: &[CaseRow], group_by: GroupBy, now: i64) -> (Vec<Figures>, Figures) {
    let mut groups: BTreeMap<String, Vec<&CaseRow>> = BTreeMap::new();
    for r in rows {
        let key = match group_by {
            GroupBy::Grid => r.grid.clone(),
            GroupBy::Department => r.lead.clone().unwrap_or_else(|| "(none)".into()),
            GroupBy::Category => r.category.clone(),
        };
        groups.entry(key).or_default().push(r);
    }
    let all: Vec<&CaseRow> = rows.iter().collect();
    (
        groups
            .into_iter()
            .map(|(k, v)| figures(k, &v, now))
            .collect(),
        figures("total".into(), &all, now),
    )
}
