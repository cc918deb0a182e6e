//! The closed loop as a state machine derived from a case's event log.
//!
//! **Invariant:** the derived state is a pure function of the case document (and, for the
//! amber/red/催办 flags, of "now"): every replica computes the same status, deadline and
//! conflicts. Events are folded in causal order — each event lists the events its author had
//! seen (`after`) — with ties between concurrent events broken by (time, event id). An event
//! that is not allowed for its author's role in the state where it lands is kept and reported
//! as a conflict; nothing is dropped.
//!
//! Deadlines are computed by the acting device from the category table and working calendar
//! and stored in the event (`deadline`, `amber_at`), so replicas with different reference data
//! still derive the same state.
//!
//! | action | from | to | roles |
//! |---|---|---|---|
//! | report | draft | reported | worker, dispatcher, intake |
//! | self_handle | reported (not 12345/assigned) | self_handling | worker |
//! | close_self | self_handling (needs an after-photo) | closed | worker |
//! | verify | reported (resident, 12345) | verifying | worker, dispatcher |
//! | register | verifying; reported (inspection, visit, assigned) | registered | dispatcher |
//! | reject | verifying (reason) | rejected | dispatcher |
//! | merge | verifying (`into`) | merged | dispatcher |
//! | dispatch | registered, returned (`lead`, `deadline`) | dispatched | dispatcher |
//! | return | dispatched (reason, within the window) | returned | department (lead) |
//! | sign | dispatched | in_progress | department (lead) |
//! | request_extension | in_progress (none pending) | in_progress | department (lead) |
//! | approve_extension | in_progress (pending; `deadline`) | in_progress | dispatcher (first), leader |
//! | deny_extension | in_progress (pending) | in_progress | dispatcher, leader |
//! | suspend | in_progress (reason) | suspended | dispatcher, leader |
//! | resume | suspended (`deadline`) | in_progress | dispatcher, leader |
//! | handle | in_progress (result, after-photo) | handled | department (lead) |
//! | start_check | handled | checking | worker, dispatcher |
//! | pass_check | handled, checking | closed | worker, dispatcher |
//! | fail_check | handled, checking (reason) | in_progress, rework + 1 | worker, dispatcher |
//! | follow_up | closed (`satisfaction`) | followed_up | worker, dispatcher |
//! | archive | followed_up | archived | dispatcher |
//! | reopen | followed_up (dissatisfied) | in_progress or self_handling, rework + 1 | dispatcher |
//! | supervise | any open state | unchanged, a 督办 notice | leader |

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::str::FromStr;

use gridsync_proto::RecordId;
use serde::{Deserialize, Serialize};

use super::calendar::WorkCalendar;
use crate::records::{Case, CaseEvent, CaseSource, Millis, PhotoStage};

/// Who may act: the role an event's author was enrolled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A grid worker (网格员).
    Worker,
    /// The town centre's dispatcher (综治中心).
    Dispatcher,
    /// A department clerk, bound to one department.
    Department,
    /// A leader or supervisor.
    Leader,
    /// An intake system (12345, mini-programs) through the server.
    Intake,
}

/// Every role, for tables.
pub const ROLES: [Role; 5] = [
    Role::Worker,
    Role::Dispatcher,
    Role::Department,
    Role::Leader,
    Role::Intake,
];

impl Role {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Dispatcher => "dispatcher",
            Role::Department => "department",
            Role::Leader => "leader",
            Role::Intake => "intake",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ROLES
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}"))
    }
}

/// Where a case is in the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not reported yet.
    Draft,
    /// Reported, waiting for the dispatcher (or the worker's own handling).
    Reported,
    /// 自办自结: the grid worker is fixing it.
    SelfHandling,
    /// 核实: being verified on site.
    Verifying,
    /// 立案: accepted, waiting for dispatch.
    Registered,
    /// 不予立案.
    Rejected,
    /// Merged into another case as a duplicate.
    Merged,
    /// Sent to departments, waiting for the lead to sign.
    Dispatched,
    /// 回退: sent back by the department as wrongly dispatched.
    Returned,
    /// Signed for and being handled.
    InProgress,
    /// 挂账: on hold; the clock stops.
    Suspended,
    /// The department reported its result.
    Handled,
    /// 核查: being checked on site.
    Checking,
    /// 结案.
    Closed,
    /// 回访 done.
    FollowedUp,
    /// 归档.
    Archived,
}

/// Every status, for tables.
pub const STATUSES: [Status; 16] = [
    Status::Draft,
    Status::Reported,
    Status::SelfHandling,
    Status::Verifying,
    Status::Registered,
    Status::Rejected,
    Status::Merged,
    Status::Dispatched,
    Status::Returned,
    Status::InProgress,
    Status::Suspended,
    Status::Handled,
    Status::Checking,
    Status::Closed,
    Status::FollowedUp,
    Status::Archived,
];

impl Status {
    /// The stable name (as stored in projections).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Reported => "reported",
            Status::SelfHandling => "self_handling",
            Status::Verifying => "verifying",
            Status::Registered => "registered",
            Status::Rejected => "rejected",
            Status::Merged => "merged",
            Status::Dispatched => "dispatched",
            Status::Returned => "returned",
            Status::InProgress => "in_progress",
            Status::Suspended => "suspended",
            Status::Handled => "handled",
            Status::Checking => "checking",
            Status::Closed => "closed",
            Status::FollowedUp => "followed_up",
            Status::Archived => "archived",
        }
    }

    /// Whether the case is finished (closed or beyond, rejected or merged).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Status::Rejected
                | Status::Merged
                | Status::Closed
                | Status::FollowedUp
                | Status::Archived
        )
    }

    /// Whether the department's clock runs (dispatched until handled).
    pub fn clock_runs(self) -> bool {
        matches!(
            self,
            Status::Dispatched | Status::InProgress | Status::Returned
        )
    }
}

/// Something a person does to a case; stored as the event's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Report the case.
    Report,
    /// 自办自结: the worker takes it on.
    SelfHandle,
    /// The worker closes a self-handled case (needs an after-photo).
    CloseSelf,
    /// Start on-site verification.
    Verify,
    /// 立案.
    Register,
    /// 不予立案 (reason required).
    Reject,
    /// Merge into another case (`into`).
    Merge,
    /// Send to a lead department and co-departments with a deadline.
    Dispatch,
    /// 回退 (reason required, within the return window).
    Return,
    /// 签收.
    Sign,
    /// 申请延期.
    RequestExtension,
    /// Approve an extension (a second needs a leader).
    ApproveExtension,
    /// Refuse an extension.
    DenyExtension,
    /// 挂账 (reason required).
    Suspend,
    /// Resume a suspended case (new deadline).
    Resume,
    /// 办结: report the result (with an after-photo).
    Handle,
    /// Start the on-site check.
    StartCheck,
    /// The check passed: close.
    PassCheck,
    /// The check failed: back to the department.
    FailCheck,
    /// 回访 with satisfaction.
    FollowUp,
    /// 归档.
    Archive,
    /// Reopen after a dissatisfied follow-up.
    Reopen,
    /// 督办: a leader's supervision notice.
    Supervise,
}

/// Every action, for tables.
pub const ACTIONS: [Action; 23] = [
    Action::Report,
    Action::SelfHandle,
    Action::CloseSelf,
    Action::Verify,
    Action::Register,
    Action::Reject,
    Action::Merge,
    Action::Dispatch,
    Action::Return,
    Action::Sign,
    Action::RequestExtension,
    Action::ApproveExtension,
    Action::DenyExtension,
    Action::Suspend,
    Action::Resume,
    Action::Handle,
    Action::StartCheck,
    Action::PassCheck,
    Action::FailCheck,
    Action::FollowUp,
    Action::Archive,
    Action::Reopen,
    Action::Supervise,
];

impl Action {
    /// The stable name stored as the event kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Report => "report",
            Action::SelfHandle => "self_handle",
            Action::CloseSelf => "close_self",
            Action::Verify => "verify",
            Action::Register => "register",
            Action::Reject => "reject",
            Action::Merge => "merge",
            Action::Dispatch => "dispatch",
            Action::Return => "return",
            Action::Sign => "sign",
            Action::RequestExtension => "request_extension",
            Action::ApproveExtension => "approve_extension",
            Action::DenyExtension => "deny_extension",
            Action::Suspend => "suspend",
            Action::Resume => "resume",
            Action::Handle => "handle",
            Action::StartCheck => "start_check",
            Action::PassCheck => "pass_check",
            Action::FailCheck => "fail_check",
            Action::FollowUp => "follow_up",
            Action::Archive => "archive",
            Action::Reopen => "reopen",
            Action::Supervise => "supervise",
        }
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ACTIONS
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown action {s:?}"))
    }
}

/// 回访 satisfaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Satisfaction {
    /// 满意.
    Satisfied,
    /// 基本满意.
    BasicallySatisfied,
    /// 不满意.
    Dissatisfied,
}

impl FromStr for Satisfaction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "satisfied" | "满意" => Ok(Satisfaction::Satisfied),
            "basically_satisfied" | "基本满意" => Ok(Satisfaction::BasicallySatisfied),
            "dissatisfied" | "不满意" => Ok(Satisfaction::Dissatisfied),
            other => Err(format!("unknown satisfaction {other:?}")),
        }
    }
}

/// An event that could not be applied where it landed; kept for a person to resolve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventConflict {
    /// The event.
    pub event: RecordId,
    /// Its kind.
    pub kind: String,
    /// Who wrote it.
    pub by: String,
    /// The state it landed in.
    pub landed_in: Status,
    /// Why it was not applied.
    pub reason: String,
}

/// A leader's supervision notice (督办).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Supervision {
    /// The event.
    pub event: RecordId,
    /// When.
    pub at: Millis,
    /// Who.
    pub by: String,
    /// The instruction.
    pub note: String,
}

/// Everything derived from the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseState {
    /// Current status.
    pub status: Status,
    /// Lead department, once dispatched.
    pub lead: Option<String>,
    /// Co-departments.
    pub co: Vec<String>,
    /// When reported.
    pub reported_at: Option<Millis>,
    /// When (last) dispatched.
    pub dispatched_at: Option<Millis>,
    /// Current deadline.
    pub deadline: Option<Millis>,
    /// When the amber flag starts (75 % of the working time used).
    pub amber_at: Option<Millis>,
    /// Until when the lead department may return the case.
    pub return_until: Option<Millis>,
    /// Approved extensions.
    pub extensions: u32,
    /// An extension request waiting for a decision.
    pub extension_pending: bool,
    /// Times the result was sent back (failed check or reopen).
    pub reworks: u32,
    /// Since when the case is suspended.
    pub suspended_since: Option<Millis>,
    /// Whether it was ever suspended.
    pub ever_suspended: bool,
    /// Whether the grid worker closed it alone (自办自结).
    pub self_closed: bool,
    /// When the department reported its result.
    pub handled_at: Option<Millis>,
    /// When it was (last) closed.
    pub closed_at: Option<Millis>,
    /// 回访 result.
    pub satisfaction: Option<Satisfaction>,
    /// The case this one was merged into.
    pub merged_into: Option<String>,
    /// 督办 notices.
    pub supervisions: Vec<Supervision>,
    /// Events applied, in fold order.
    pub applied: Vec<RecordId>,
    /// Events that did not apply.
    pub conflicts: Vec<EventConflict>,
    /// Event times no honest clock gives: stamped before an event their author had seen
    /// (`crate::time_flags`). Shown with the case; the server adds what only it can judge.
    pub time_flags: Vec<crate::time_flags::TimeFlag>,
}

/// Time-dependent supervision flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct DeadlineFlags {
    /// Past the deadline and not handled (red).
    pub overdue: bool,
    /// 25 % or less of the working time left (amber).
    pub amber: bool,
    /// 催办: raised from the day after the deadline.
    pub urged: bool,
}

impl CaseState {
    fn new() -> Self {
        Self {
            status: Status::Draft,
            lead: None,
            co: Vec::new(),
            reported_at: None,
            dispatched_at: None,
            deadline: None,
            amber_at: None,
            return_until: None,
            extensions: 0,
            extension_pending: false,
            reworks: 0,
            suspended_since: None,
            ever_suspended: false,
            self_closed: false,
            handled_at: None,
            closed_at: None,
            satisfaction: None,
            merged_into: None,
            supervisions: Vec::new(),
            applied: Vec::new(),
            conflicts: Vec::new(),
            time_flags: Vec::new(),
        }
    }

    /// Amber, red and 催办 at `now`. Only a running clock raises them.
    pub fn flags(&self, now: Millis) -> DeadlineFlags {
        let Some(deadline) = self.deadline else {
            return DeadlineFlags::default();
        };
        if !self.status.clock_runs() {
            return DeadlineFlags::default();
        }
        let overdue = now > deadline;
        DeadlineFlags {
            overdue,
            amber: !overdue && self.amber_at.is_some_and(|a| now >= a),
            urged: now >= WorkCalendar::next_day_start(deadline),
        }
    }

    /// Whether the handling finished by the deadline (for closed cases with a deadline).
    pub fn on_time(&self) -> Option<bool> {
        let done = self.handled_at.or(self.closed_at)?;
        Some(done <= self.deadline?)
    }
}

/// The event's fields a transition needs.
fn data<'a>(e: &'a CaseEvent, key: &str) -> Option<&'a str> {
    e.data
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn data_ms(e: &CaseEvent, key: &str) -> Option<Millis> {
    data(e, key).and_then(|v| v.parse().ok())
}

fn has_after_photo(case: &Case) -> bool {
    case.photos.values().any(|p| p.stage == PhotoStage::After)
}

/// The roles allowed to take `action` in `state` (before the case-specific preconditions).
pub fn allowed_roles(action: Action, state: &CaseState) -> &'static [Role] {
    use Role::*;
    match action {
        Action::Report => &[Worker, Dispatcher, Intake],
        Action::SelfHandle | Action::CloseSelf => &[Worker],
        Action::Verify
        | Action::StartCheck
        | Action::PassCheck
        | Action::FailCheck
        | Action::FollowUp => &[Worker, Dispatcher],
        Action::Register
        | Action::Reject
        | Action::Merge
        | Action::Dispatch
        | Action::Archive
        | Action::Reopen => &[Dispatcher],
        Action::Return | Action::Sign | Action::RequestExtension | Action::Handle => &[Department],
        Action::ApproveExtension if state.extensions == 0 => &[Dispatcher, Leader],
        Action::ApproveExtension => &[Leader],
        Action::DenyExtension | Action::Suspend | Action::Resume => &[Dispatcher, Leader],
        Action::Supervise => &[Leader],
    }
}

/// The statuses `action` may start from, and the status it leads to (`None`: unchanged).
pub fn transition(action: Action, from: Status) -> Option<Option<Status>> {
    use Status::*;
    let to = match (action, from) {
        (Action::Report, Draft) => Some(Reported),
        (Action::SelfHandle, Reported) => Some(SelfHandling),
        (Action::CloseSelf, SelfHandling) => Some(Closed),
        (Action::Verify, Reported) => Some(Verifying),
        (Action::Register, Reported | Verifying) => Some(Registered),
        (Action::Reject, Verifying) => Some(Rejected),
        (Action::Merge, Verifying) => Some(Merged),
        (Action::Dispatch, Registered | Returned) => Some(Dispatched),
        (Action::Return, Dispatched) => Some(Returned),
        (Action::Sign, Dispatched) => Some(InProgress),
        (
            Action::RequestExtension | Action::ApproveExtension | Action::DenyExtension,
            InProgress,
        ) => None,
        (Action::Suspend, InProgress) => Some(Suspended),
        (Action::Resume, Suspended) => Some(InProgress),
        (Action::Handle, InProgress) => Some(Handled),
        (Action::StartCheck, Handled) => Some(Checking),
        (Action::PassCheck, Handled | Checking) => Some(Closed),
        (Action::FailCheck, Handled | Checking) => Some(InProgress),
        (Action::FollowUp, Closed) => Some(FollowedUp),
        (Action::Archive, FollowedUp) => Some(Archived),
        (Action::Reopen, FollowedUp) => Some(InProgress),
        (Action::Supervise, s) if !s.is_finished() && s != Draft => None,
        _ => return None,
    };
    Some(to)
}

/// Checks one event against the state it lands in; `Ok` carries the action.
fn check(state: &CaseState, case: &Case, e: &CaseEvent) -> Result<Action, String> {
    let action = Action::from_str(&e.kind)?;
    let role = Role::from_str(&e.role).map_err(|_| format!("unknown author role {:?}", e.role))?;
    if transition(action, state.status).is_none() {
        return Err(format!(
            "{} is not possible while the case is {}",
            action.as_str(),
            state.status.as_str()
        ));
    }
    if !allowed_roles(action, state).contains(&role) {
        return Err(format!("a {role} may not {} here", action.as_str()));
    }
    if role == Role::Department && e.dept.as_deref() != state.lead.as_deref() {
        return Err(format!(
            "only the lead department ({}) may {}",
            state.lead.as_deref().unwrap_or("none"),
            action.as_str()
        ));
    }
    if needs_note(action) && e.note.trim().is_empty() {
        return Err(format!(
            "{} needs a reason or result in the note",
            action.as_str()
        ));
    }
    match action {
        Action::SelfHandle
            if matches!(case.source, CaseSource::Hotline12345 | CaseSource::Assigned) =>
        {
            Err("12345 and assigned cases go through the dispatcher".into())
        }
        Action::Verify
            if !matches!(case.source, CaseSource::Resident | CaseSource::Hotline12345) =>
        {
            Err("only resident and 12345 cases are verified".into())
        }
        Action::Register
            if state.status == Status::Reported
                && matches!(case.source, CaseSource::Resident | CaseSource::Hotline12345) =>
        {
            Err("resident and 12345 cases must be verified before they are registered".into())
        }
        Action::CloseSelf | Action::Handle if !has_after_photo(case) => {
            Err("closing needs an after-photo (处置后照片)".into())
        }
        Action::Merge if data(e, "into").is_none() => {
            Err("merge needs the case it duplicates (`into`)".into())
        }
        Action::Dispatch if data(e, "lead").is_none() || data_ms(e, "deadline").is_none() => {
            Err("dispatch needs a lead department and a deadline".into())
        }
        Action::Return if state.return_until.is_some_and(|until| e.at > until) => {
            Err("the return window has passed".into())
        }
        Action::RequestExtension if state.extension_pending => {
            Err("an extension request is already waiting".into())
        }
        Action::ApproveExtension | Action::DenyExtension if !state.extension_pending => {
            Err("no extension request is waiting".into())
        }
        Action::ApproveExtension | Action::Resume if data_ms(e, "deadline").is_none() => {
            Err(format!("{} needs the new deadline", action.as_str()))
        }
        Action::FollowUp
            if data(e, "satisfaction")
                .and_then(|s| Satisfaction::from_str(s).ok())
                .is_none() =>
        {
            Err(
                "follow-up needs a satisfaction: satisfied, basically_satisfied or dissatisfied"
                    .into(),
            )
        }
        Action::Reopen if state.satisfaction != Some(Satisfaction::Dissatisfied) => {
            Err("only a dissatisfied follow-up reopens a case".into())
        }
        _ => Ok(action),
    }
}

fn apply(state: &mut CaseState, id: RecordId, e: &CaseEvent, action: Action) {
    if let Some(Some(to)) = transition(action, state.status) {
        state.status = to;
    }
    match action {
        Action::Report => state.reported_at = Some(e.at),
        Action::CloseSelf => {
            state.self_closed = true;
            state.closed_at = Some(e.at);
        }
        Action::Merge => state.merged_into = data(e, "into").map(str::to_owned),
        Action::Dispatch => {
            state.lead = data(e, "lead").map(str::to_owned);
            state.co = data(e, "co")
                .map(|c| {
                    c.split(',')
                        .map(|d| d.trim().to_owned())
                        .filter(|d| !d.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            state.dispatched_at = Some(e.at);
            state.deadline = data_ms(e, "deadline");
            state.amber_at = data_ms(e, "amber_at");
            state.return_until = data_ms(e, "return_until");
        }
        Action::Return => {
            state.lead = None;
            state.co.clear();
        }
        Action::RequestExtension => state.extension_pending = true,
        Action::ApproveExtension => {
            state.extension_pending = false;
            state.extensions += 1;
            state.deadline = data_ms(e, "deadline");
            state.amber_at = data_ms(e, "amber_at");
        }
        Action::DenyExtension => state.extension_pending = false,
        Action::Suspend => {
            state.suspended_since = Some(e.at);
            state.ever_suspended = true;
        }
        Action::Resume => {
            state.suspended_since = None;
            state.deadline = data_ms(e, "deadline");
            state.amber_at = data_ms(e, "amber_at");
        }
        Action::Handle => state.handled_at = Some(e.at),
        Action::PassCheck => state.closed_at = Some(e.at),
        Action::FailCheck => {
            state.reworks += 1;
            state.handled_at = None;
        }
        Action::FollowUp => {
            state.satisfaction = data(e, "satisfaction").and_then(|s| s.parse().ok())
        }
        Action::Reopen => {
            state.reworks += 1;
            state.closed_at = None;
            state.handled_at = None;
            if state.self_closed {
                state.status = Status::SelfHandling;
                state.self_closed = false;
            }
        }
        Action::Supervise => state.supervisions.push(Supervision {
            event: id,
            at: e.at,
            by: e.by.clone(),
            note: e.note.clone(),
        }),
        _ => {}
    }
}

/// The events in fold order: causal (`after`) first, then (time, id) among concurrent ones.
pub fn fold_order(case: &Case) -> Vec<RecordId> {
    let ids: BTreeSet<RecordId> = case.events.keys().copied().collect();
    let mut waiting: BTreeMap<RecordId, usize> = BTreeMap::new();
    let mut followers: BTreeMap<RecordId, Vec<RecordId>> = BTreeMap::new();
    for (id, e) in &case.events {
        let deps: BTreeSet<&RecordId> = e
            .after
            .iter()
            .filter(|d| ids.contains(d) && *d != id)
            .collect();
        waiting.insert(*id, deps.len());
        for d in deps {
            followers.entry(*d).or_default().push(*id);
        }
    }
    let mut ready: BinaryHeap<Reverse<(Millis, RecordId)>> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| Reverse((case.events[id].at, *id)))
        .collect();
    let mut order = Vec::with_capacity(ids.len());
    while let Some(Reverse((_, id))) = ready.pop() {
        order.push(id);
        for f in followers.get(&id).into_iter().flatten() {
            if let Some(n) = waiting.get_mut(f) {
                *n -= 1;
                if *n == 0 {
                    ready.push(Reverse((case.events[f].at, *f)));
                }
            }
        }
    }
    // A cycle can only come from a hand-crafted document; fold what is left by time and id so
    // nothing disappears.
    if order.len() < ids.len() {
        let done: BTreeSet<RecordId> = order.iter().copied().collect();
        let mut rest: Vec<RecordId> = ids.into_iter().filter(|i| !done.contains(i)).collect();
        rest.sort_by_key(|i| (case.events[i].at, *i));
        order.extend(rest);
    }
    order
}

/// Derives the case's state from its event log.
pub fn derive(case: &Case) -> CaseState {
    let mut state = CaseState::new();
    for id in fold_order(case) {
        let e = &case.events[&id];
        match check(&state, case, e) {
            Ok(action) => {
                apply(&mut state, id, e, action);
                state.applied.push(id);
            }
            Err(reason) => state.conflicts.push(EventConflict {
                event: id,
                kind: e.kind.clone(),
                by: e.by.clone(),
                landed_in: state.status,
                reason,
            }),
        }
    }
    state.time_flags = crate::time_flags::events_before_their_cause(case);
    state
}

/// The events no other event lists in `after`: what a new event follows.
pub fn log_heads(case: &Case) -> Vec<RecordId> {
    let referenced: BTreeSet<&RecordId> =
        case.events.values().flat_map(|e| e.after.iter()).collect();
    case.events
        .keys()
        .filter(|id| !referenced.contains(id))
        .copied()
        .collect()
}

/// The actions a device with `role` (and `dept`, for a clerk) may take on `case` now: the
/// same check an event gets when it lands, run on a prospective event whose inputs (note,
/// department, deadline, satisfaction, the case merged into) are taken as given. So what the
/// app offers is exactly what the fold would apply, apart from the values the person enters.
pub fn available_actions(
    case: &Case,
    state: &CaseState,
    role: Role,
    dept: Option<&str>,
    now: Millis,
) -> Vec<Action> {
    let given: BTreeMap<String, String> = [
        ("into", "-"),
        ("lead", "-"),
        ("deadline", "1"),
        ("satisfaction", "satisfied"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    ACTIONS
        .into_iter()
        .filter(|action| {
            let e = CaseEvent {
                kind: action.as_str().into(),
                at: now,
                by: String::new(),
                role: role.as_str().into(),
                dept: dept.map(str::to_owned),
                after: Vec::new(),
                note: "-".into(),
                data: given.clone(),
                author: None,
            };
            check(state, case, &e).is_ok()
        })
        .collect()
}

/// Whether `action` needs a reason or result in its note.
pub fn needs_note(action: Action) -> bool {
    matches!(
        action,
        Action::Reject | Action::Return | Action::Suspend | Action::FailCheck | Action::Handle
    )
}
