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

use std::collections::{BTreeMap, BTreeSet};

use gridsync_core::projection::CaseRow;
use gridsync_proto::DocId;
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
    /// Cases carrying a time flagged as implausible (`gridsync_core::time_flags`). In the
    /// timed figures (按期结案率, handling times) a flagged handling or closing time is
    /// replaced by the moment the server received it, so a wrong clock can make a case look
    /// later, never earlier, than it was.
    pub flagged_time: usize,
    /// Cases with a questioned evidence photo (`gridsync_core::evidence`: taken before the
    /// report or dispatch, far from the place, or the same image as another case's).
    pub evidence_flagged: usize,
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

/// Figures for one group of cases at time `now`; `flagged` holds the cases with a flagged time,
/// `evidence` those with a questioned evidence photo.
pub fn figures(
    key: String,
    cases: &[&CaseRow],
    now: i64,
    flagged: &BTreeSet<DocId>,
    evidence: &BTreeSet<DocId>,
) -> Figures {
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
        flagged_time: cases.iter().filter(|c| flagged.contains(&c.doc_id)).count(),
        evidence_flagged: cases
            .iter()
            .filter(|c| evidence.contains(&c.doc_id))
            .count(),
    }
}

/// Flagged times per case: (the time, when the server received it).
pub type Flagged = BTreeMap<DocId, Vec<(i64, i64)>>;

/// A case row whose flagged handling and closing times are replaced by their receipt.
fn on_receipt(row: &CaseRow, flags: &[(i64, i64)]) -> CaseRow {
    let fix = |t: Option<i64>| {
        t.map(|t| {
            flags
                .iter()
                .find(|(at, _)| *at == t)
                .map_or(t, |(_, received)| (*received).max(t))
        })
    };
    let mut row = row.clone();
    row.handled_at = fix(row.handled_at);
    row.closed_at = fix(row.closed_at);
    row
}

/// Figures per group, plus the total; `flagged` holds the flagged times of cases, `evidence`
/// the cases with a questioned evidence photo.
pub fn indicators(
    rows: &[CaseRow],
    group_by: GroupBy,
    now: i64,
    flagged: &Flagged,
    evidence: &BTreeSet<DocId>,
) -> (Vec<Figures>, Figures) {
    let rows: Vec<CaseRow> = rows
        .iter()
        .map(|r| match flagged.get(&r.doc_id) {
            Some(flags) => on_receipt(r, flags),
            None => r.clone(),
        })
        .collect();
    let flagged: BTreeSet<DocId> = flagged.keys().copied().collect();
    let flagged = &flagged;
    let mut groups: BTreeMap<String, Vec<&CaseRow>> = BTreeMap::new();
    for r in &rows {
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
            .map(|(k, v)| figures(k, &v, now, flagged, evidence))
            .collect(),
        figures("total".into(), &all, now, flagged, evidence),
    )
}

/// Figures per group and the total for the cases reported in `[from, to)` whose grid
/// `covers` accepts, with their flagged times and questioned evidence: what `GET
/// /v1/indicators` answers and the indicator export writes.
pub async fn for_scope<S: crate::Storage>(
    state: &crate::AppState<S>,
    from: i64,
    to: i64,
    group_by: GroupBy,
    covers: &(dyn Fn(&str) -> bool + Sync),
) -> Result<(Vec<Figures>, Figures), crate::storage::StorageError> {
    let rows: Vec<CaseRow> = state
        .storage
        .cases_reported_between(from, to)
        .await?
        .into_iter()
        .filter(|c| covers(&c.grid))
        .collect();
    let mut flagged = Flagged::new();
    for f in state.storage.flagged_times().await? {
        if let Ok(id) = f.doc_id.parse() {
            flagged.entry(id).or_default().push((f.at, f.received_at));
        }
    }
    // Flags of cases outside `rows` do not count anyway: indicators only look up their own.
    let evidence: BTreeSet<DocId> = crate::photos::evidence_flags(state, None)
        .await?
        .into_iter()
        .map(|f| f.case)
        .collect();
    Ok(indicators(
        &rows,
        group_by,
        gridsync_core::clock::now_ms(),
        &flagged,
        &evidence,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const NOV1: i64 = 1_793_462_400_000; // 2026-11-01 00:00 CST
    const NOW: i64 = NOV1 + 30 * 24 * H;

    struct C {
        grid: &'static str,
        status: &'static str,
        lead: Option<&'static str>,
        reported: i64,
        dispatched: bool,
        deadline: Option<i64>,
        handled: Option<i64>,
        closed: Option<i64>,
        self_closed: bool,
        reworks: i64,
        extensions: i64,
        satisfaction: Option<&'static str>,
        supervisions: i64,
    }

    fn row(c: C) -> CaseRow {
        CaseRow {
            doc_id: DocId::new(),
            grid: c.grid.into(),
            title: "t".into(),
            status: c.status.into(),
            source: "inspection".into(),
            category: "01".into(),
            subcategory: "0102".into(),
            urgency: "normal".into(),
            reported_at: c.reported,
            address: "a".into(),
            lead: c.lead.map(Into::into),
            co: String::new(),
            dispatched_at: c.dispatched.then_some(c.reported + H),
            deadline: c.deadline,
            amber_at: None,
            handled_at: c.handled,
            closed_at: c.closed,
            self_closed: i64::from(c.self_closed),
            reworks: c.reworks,
            extensions: c.extensions,
            ever_suspended: i64::from(c.status == "suspended"),
            satisfaction: c.satisfaction.map(Into::into),
            supervisions: c.supervisions,
            event_conflicts: 0,
            conflict_count: 0,
            lat: None,
            lon: None,
        }
    }

    fn base(grid: &'static str, status: &'static str, day: i64) -> C {
        C {
            grid,
            status,
            lead: None,
            reported: NOV1 + day * 24 * H,
            dispatched: false,
            deadline: None,
            handled: None,
            closed: None,
            self_closed: false,
            reworks: 0,
            extensions: 0,
            satisfaction: None,
            supervisions: 0,
        }
    }

    /// A month of ten cases; every expected figure is worked out by hand below.
    fn month() -> Vec<CaseRow> {
        let (a, b) = ("33010200101001002", "33010200101001003");
        let r = |d: i64| NOV1 + d * 24 * H;
        vec![
            // 1: D01, handled in 20 h (deadline 72 h), closed after 24 h, satisfied.
            row(C {
                lead: Some("D01"),
                dispatched: true,
                deadline: Some(r(1) + 72 * H),
                handled: Some(r(1) + 20 * H),
                closed: Some(r(1) + 24 * H),
                satisfaction: Some("satisfied"),
                ..base(a, "followed_up", 1)
            }),
            // 2: D01, handled after its deadline, reworked once, extended once, supervised,
            //    closed after 100 h, basically satisfied.
            row(C {
                lead: Some("D01"),
                dispatched: true,
                deadline: Some(r(2) + 48 * H),
                handled: Some(r(2) + 90 * H),
                closed: Some(r(2) + 100 * H),
                reworks: 1,
                extensions: 1,
                satisfaction: Some("basically_satisfied"),
                supervisions: 1,
                ..base(a, "followed_up", 2)
            }),
            // 3: closed by the worker alone after 2 h, satisfied.
            row(C {
                closed: Some(r(3) + 2 * H),
                self_closed: true,
                satisfaction: Some("satisfied"),
                ..base(a, "followed_up", 3)
            }),
            // 4: closed by the worker alone after 5 h, dissatisfied.
            row(C {
                closed: Some(r(4) + 5 * H),
                self_closed: true,
                satisfaction: Some("dissatisfied"),
                ..base(b, "followed_up", 4)
            }),
            // 5: D05, in progress, deadline passed: overdue.
            row(C {
                lead: Some("D05"),
                dispatched: true,
                deadline: Some(r(5) + 24 * H),
                ..base(b, "in_progress", 5)
            }),
            // 6: D05, in progress, deadline ahead, supervised.
            row(C {
                lead: Some("D05"),
                dispatched: true,
                deadline: Some(NOW + 48 * H),
                supervisions: 1,
                ..base(b, "in_progress", 28)
            }),
            // 7: D01, suspended (out of the denominator).
            row(C {
                lead: Some("D01"),
                dispatched: true,
                deadline: Some(r(7) + 72 * H),
                ..base(a, "suspended", 7)
            }),
            // 8: rejected (不予立案).
            row(base(b, "rejected", 8)),
            // 9: reported, not dispatched yet.
            row(base(b, "reported", 9)),
            // 10: D01, handled in 30 h of 72, closed after 48 h, satisfied, archived.
            row(C {
                lead: Some("D01"),
                dispatched: true,
                deadline: Some(r(10) + 72 * H),
                handled: Some(r(10) + 30 * H),
                closed: Some(r(10) + 48 * H),
                satisfaction: Some("satisfied"),
                ..base(a, "archived", 10)
            }),
        ]
    }

    #[test]
    fn a_flagged_time_counts_as_when_the_server_received_it() {
        let rows = month();
        // Case 1 (handled within its deadline, closed after 24 h) was handled and closed by a
        // clock set back: the server received both 200 h after the report.
        let (handled, closed) = (
            rows[0].handled_at.expect("h"),
            rows[0].closed_at.expect("c"),
        );
        let received = rows[0].reported_at + 200 * H;
        let flagged = Flagged::from([(
            rows[0].doc_id,
            vec![(handled, received), (closed, received)],
        )]);
        let (_, total) = indicators(&rows, GroupBy::Department, NOW, &flagged, &BTreeSet::new());
        assert_eq!(total.flagged_time, 1);
        // closed dispatched = 1,2,10; on time now only 10 (1 counts as received: late).
        assert_eq!(total.on_time_rate, Some(0.3333));
        // durations 200, 100, 2, 5, 48 h.
        assert_eq!(total.avg_handling_hours, Some(71.0));
        // What does not rest on phone times is unchanged.
        assert_eq!(total.closure_rate, Some(0.625));
    }

    #[test]
    fn a_month_computed_by_hand() {
        let (groups, total) = indicators(
            &month(),
            GroupBy::Department,
            NOW,
            &Flagged::new(),
            &BTreeSet::new(),
        );
        // accountable = 10 - suspended(7) - rejected(8) = 8; closed = 1,2,3,4,10 = 5.
        assert_eq!(total.cases, 10);
        assert_eq!(total.closure_rate, Some(0.625));
        // closed dispatched = 1,2,10; on time = 1,10.
        assert_eq!(total.on_time_rate, Some(0.6667));
        // dispatched = 1,2,5,6,7,10 = 6; reworked = 2; extended = 2; handled = 1,2,10.
        assert_eq!(total.rework_rate, Some(0.1667));
        assert_eq!(total.extension_rate, Some(0.1667));
        assert_eq!(total.handled_rate, Some(0.5));
        // self-closed 3,4 of 5 closed.
        assert_eq!(total.self_closed_rate, Some(0.4));
        // follow-ups 1,2,3,4,10: satisfied or basically 1,2,3,10.
        assert_eq!(total.satisfaction_rate, Some(0.8));
        // durations 24, 100, 2, 5, 48 h: mean 35.8, p90 (rank 5 of 5) 100.
        assert_eq!(total.avg_handling_hours, Some(35.8));
        assert_eq!(total.p90_handling_hours, Some(100.0));
        assert_eq!(total.overdue, 1);
        assert_eq!(total.supervised, 2);

        let keys: Vec<&str> = groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["(none)", "D01", "D05"]);
        let d01 = &groups[1];
        // D01: cases 1,2,7,10; accountable 1,2,10; all three closed.
        assert_eq!(d01.cases, 4);
        assert_eq!(d01.closure_rate, Some(1.0));
        assert_eq!(d01.on_time_rate, Some(0.6667));
        assert_eq!(d01.rework_rate, Some(0.25));
        assert_eq!(d01.handled_rate, Some(0.75));
        assert_eq!(d01.self_closed_rate, Some(0.0));
        assert_eq!(d01.satisfaction_rate, Some(1.0));
        // durations 24, 100, 48: mean 57.33, p90 rank 3 of 3 = 100.
        assert_eq!(d01.avg_handling_hours, Some(57.33));
        assert_eq!(d01.p90_handling_hours, Some(100.0));
        let d05 = &groups[2];
        assert_eq!(
            (d05.overdue, d05.supervised, d05.closure_rate),
            (1, 1, Some(0.0))
        );
        let none = &groups[0];
        // 3,4,8,9: accountable 3,4,9; closed 3,4.
        assert_eq!(none.closure_rate, Some(0.6667));
        assert_eq!(none.on_time_rate, None, "nothing dispatched");
    }

    #[test]
    fn grouping_by_grid_and_category() {
        let (groups, _) = indicators(
            &month(),
            GroupBy::Grid,
            NOW,
            &Flagged::new(),
            &BTreeSet::new(),
        );
        let counts: Vec<(String, usize)> =
            groups.iter().map(|g| (g.key.clone(), g.cases)).collect();
        assert_eq!(
            counts,
            [
                ("33010200101001002".into(), 5),
                ("33010200101001003".into(), 5)
            ]
        );
        let (groups, total) = indicators(
            &month(),
            GroupBy::Category,
            NOW,
            &Flagged::new(),
            &BTreeSet::new(),
        );
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].cases, total.cases);
    }
}
