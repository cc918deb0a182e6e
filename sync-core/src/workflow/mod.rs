//! The case workflow (the closed loop): the state machine derived from a case's event log,
//! the working calendar, the category table, and the operations devices use to act on a case.

mod calendar;
mod case_workflow;
mod reference;

pub use calendar::WorkCalendar;
pub use case_workflow::{
    ACTIONS, Action, CaseState, DeadlineFlags, EventConflict, ROLES, Role, STATUSES, Satisfaction,
    Status, Supervision, allowed_roles, available_actions, derive, fold_order, log_heads,
    needs_note, transition,
};
pub use reference::{Category, Department, Reference, ReferenceError, TimeLimit};

use std::collections::BTreeMap;

use gridsync_proto::RecordId;

use crate::records::{Case, CaseEvent, Millis, Urgency};

/// Who is acting: the person, and the role and department their device was enrolled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Name recorded on the event.
    pub name: String,
    /// Enrolled role.
    pub role: Role,
    /// Department, for department clerks.
    pub dept: Option<String>,
}

/// Why an action was refused before anything was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// The action is not allowed now (wrong state, role or a missing precondition).
    #[error("{action} refused: {reason}")]
    NotAllowed {
        /// The action.
        action: &'static str,
        /// Why.
        reason: String,
    },
    /// The category is not in the reference table.
    #[error("category {0} is not in the category table")]
    UnknownCategory(String),
    /// A department code is not in the reference table.
    #[error("department {0} is not in the reference table")]
    UnknownDepartment(String),
}

/// Builds the event for `action` by `actor` at `at`, following the log's current heads.
pub fn new_event(
    case: &Case,
    action: Action,
    actor: &Actor,
    at: Millis,
    note: &str,
    data: BTreeMap<String, String>,
) -> (RecordId, CaseEvent) {
    (
        RecordId::new(),
        CaseEvent {
            kind: action.as_str().to_owned(),
            at,
            by: actor.name.clone(),
            role: actor.role.as_str().to_owned(),
            dept: actor.dept.clone(),
            after: log_heads(case),
            note: note.to_owned(),
            data,
            author: None,
        },
    )
}

/// Adds the event to the case if the case's own fold accepts it; refuses it otherwise.
pub fn act(
    case: &mut Case,
    action: Action,
    actor: &Actor,
    at: Millis,
    note: &str,
    data: BTreeMap<String, String>,
) -> Result<RecordId, WorkflowError> {
    let (id, event) = new_event(case, action, actor, at, note, data);
    case.events.insert(id, event);
    let state = derive(case);
    if let Some(c) = state.conflicts.iter().find(|c| c.event == id) {
        case.events.remove(&id);
        return Err(WorkflowError::NotAllowed {
            action: action.as_str(),
            reason: c.reason.clone(),
        });
    }
    Ok(id)
}

fn limit_for(case: &Case, reference: &Reference) -> Result<TimeLimit, WorkflowError> {
    let cat = reference
        .category(&case.subcategory)
        .ok_or_else(|| WorkflowError::UnknownCategory(case.subcategory.clone()))?;
    Ok(match case.urgency {
        Urgency::Urgent => cat.urgent_limit.unwrap_or(cat.limit),
        Urgency::Normal => cat.limit,
    })
}

/// The data of a `dispatch` event: lead and co-departments (the category's defaults unless
/// given), the deadline from the time limit on the working calendar, the amber point (75 % of
/// the working time) and the end of the return window.
pub fn plan_dispatch(
    case: &Case,
    reference: &Reference,
    now: Millis,
    lead: Option<&str>,
    co: Option<&[String]>,
) -> Result<BTreeMap<String, String>, WorkflowError> {
    let cat = reference
        .category(&case.subcategory)
        .ok_or_else(|| WorkflowError::UnknownCategory(case.subcategory.clone()))?;
    let lead = lead.unwrap_or(&cat.lead).to_owned();
    let co: Vec<String> = co.map(<[String]>::to_vec).unwrap_or_else(|| cat.co.clone());
    for d in std::iter::once(&lead).chain(&co) {
        if !reference.has_department(d) {
            return Err(WorkflowError::UnknownDepartment(d.clone()));
        }
    }
    let limit = limit_for(case, reference)?.working_ms();
    let calendar = reference.calendar();
    let mut data = BTreeMap::new();
    data.insert("lead".into(), lead);
    data.insert("co".into(), co.join(","));
    data.insert("limit_ms".into(), limit.to_string());
    data.insert(
        "deadline".into(),
        calendar.add_working_time(now, limit).to_string(),
    );
    data.insert(
        "amber_at".into(),
        calendar.add_working_time(now, limit * 3 / 4).to_string(),
    );
    let window = i64::from(reference.return_window_hours) * 3_600_000;
    data.insert(
        "return_until".into(),
        calendar.add_working_time(now, window).to_string(),
    );
    Ok(data)
}

/// The data of an `approve_extension` event granting `extra` working time beyond the current
/// deadline.
pub fn plan_extension(
    state: &CaseState,
    reference: &Reference,
    extra: TimeLimit,
) -> BTreeMap<String, String> {
    let calendar = reference.calendar();
    let base = state.deadline.unwrap_or(0);
    let deadline = calendar.add_working_time(base, extra.working_ms());
    let mut data = BTreeMap::new();
    data.insert("deadline".into(), deadline.to_string());
    data.insert(
        "amber_at".into(),
        calendar
            .add_working_time(base, extra.working_ms() * 3 / 4)
            .to_string(),
    );
    data.insert("extra_ms".into(), extra.working_ms().to_string());
    data
}

/// The data of a `resume` event at `now`: the deadline moves by the working time the case spent
/// suspended, so the clock really stopped.
pub fn plan_resume(
    state: &CaseState,
    reference: &Reference,
    now: Millis,
) -> BTreeMap<String, String> {
    let calendar = reference.calendar();
    let paused = state
        .suspended_since
        .map_or(0, |since| calendar.working_time_between(since, now));
    let mut data = BTreeMap::new();
    if let Some(d) = state.deadline {
        data.insert(
            "deadline".into(),
            calendar.add_working_time(d, paused).to_string(),
        );
    }
    if let Some(a) = state.amber_at {
        data.insert(
            "amber_at".into(),
            calendar.add_working_time(a, paused).to_string(),
        );
    }
    data.insert("paused_ms".into(), paused.to_string());
    data
}
