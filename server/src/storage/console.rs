//! The console's side of the storage (part of [`super::Storage`]): the people who sign in to
//! the dispatch console, their sessions, the audit log, the case inbox query and the
//! automatic-routing rules.
//!
//! **Invariant:** no password and no session token is stored, only an argon2id hash of the
//! password and the SHA-256 of the token (as for device tokens).

use std::future::Future;

use gridsync_core::projection::CaseRow;
use gridsync_proto::{DeviceId, GridCode};

use super::StorageError;

/// What a person does in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsoleRole {
    /// The dispatch centre (综治中心): classifies, dispatches, supervises, closes.
    Dispatcher,
    /// A department clerk, bound to one department: signs, returns, handles.
    Clerk,
    /// A leader: reads everything in their towns, supervises (督办), approves extensions.
    Leader,
    /// The person running the server: devices, intake keys, accounts; no case work.
    Operator,
}

impl ConsoleRole {
    /// Every role, for forms and parsing.
    pub const ALL: [ConsoleRole; 4] = [
        ConsoleRole::Dispatcher,
        ConsoleRole::Clerk,
        ConsoleRole::Leader,
        ConsoleRole::Operator,
    ];

    /// The stable name (stored, and on the CLI).
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleRole::Dispatcher => "dispatcher",
            ConsoleRole::Clerk => "clerk",
            ConsoleRole::Leader => "leader",
            ConsoleRole::Operator => "operator",
        }
    }

    /// The name shown in the console.
    pub fn label(self) -> &'static str {
        match self {
            ConsoleRole::Dispatcher => "调度员",
            ConsoleRole::Clerk => "部门办理人",
            ConsoleRole::Leader => "领导",
            ConsoleRole::Operator => "运维",
        }
    }

    /// The workflow role the person's actions are judged in (an operator does no case work).
    pub fn workflow_role(self) -> Option<crate::auth::Role> {
        match self {
            ConsoleRole::Dispatcher => Some(crate::auth::Role::Dispatcher),
            ConsoleRole::Clerk => Some(crate::auth::Role::Department),
            ConsoleRole::Leader => Some(crate::auth::Role::Leader),
            ConsoleRole::Operator => None,
        }
    }
}

impl std::str::FromStr for ConsoleRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown console role {s:?} (dispatcher, clerk, leader or operator)")
            })
    }
}

/// A console account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    /// The sign-in name.
    pub login: String,
    /// The person's name, recorded on every case event they write.
    pub name: String,
    /// What they do.
    pub role: ConsoleRole,
    /// A clerk's department.
    pub dept: Option<String>,
    /// The towns they work in.
    pub towns: Vec<GridCode>,
    /// The replica (device) the server writes their case actions as; none for operators.
    pub device_id: Option<DeviceId>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// A disabled account cannot sign in, and its sessions are gone.
    pub disabled: bool,
    /// Failed sign-ins since the last success (or the last lock).
    pub failures: i64,
    /// Until when (ms) sign-in is refused after repeated failures; 0 when not locked.
    pub locked_until: i64,
    /// When the account was made.
    pub created_at: i64,
}

/// A signed-in session as stored (keyed by the token's hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Whose session it is.
    pub login: String,
    /// The token every form of the session carries (CSRF).
    pub csrf: String,
    /// When it was made.
    pub created_at: i64,
    /// Last request.
    pub seen_at: i64,
    /// When it ends unless used again (idle expiry), never after the absolute limit.
    pub expires_at: i64,
}

/// One line of the audit log: a sign-in, a sign-out, or an action, with its outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// When (ms).
    pub at: i64,
    /// Who (the login as typed, for failed sign-ins).
    pub login: String,
    /// What: `sign_in`, `sign_out`, `case.dispatch`, `device.revoke`, ...
    pub action: String,
    /// On what (a case id, a device id, a login), or empty.
    pub target: String,
    /// `ok`, `refused` or `failed`.
    pub outcome: String,
    /// Details: the reason of a refusal, the departments of a dispatch, ...
    pub detail: String,
    /// The client's address.
    pub addr: String,
}

/// How a case stands against its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineFlag {
    /// Past its amber point (75 % of the time), not yet overdue.
    Amber,
    /// Overdue.
    Red,
}

/// What the inbox shows: the visibility of the person asking, then the filters they chose.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InboxQuery {
    /// The towns the person works in (cases outside them are never listed).
    pub towns: Vec<GridCode>,
    /// For a clerk: only the cases this department holds now.
    pub holder: Option<String>,
    /// Workflow status.
    pub status: Option<String>,
    /// Within this unit.
    pub within: Option<GridCode>,
    /// Lead or co-department.
    pub dept: Option<String>,
    /// 大类 code.
    pub category: Option<String>,
    /// Amber or red, as of `now`.
    pub flag: Option<DeadlineFlag>,
    /// Only cases with workflow events that did not apply or fields in conflict.
    pub conflicts: bool,
    /// Only cases with a flagged time.
    pub times: bool,
    /// The time amber/red are judged at (ms).
    pub now: i64,
    /// Rows skipped.
    pub offset: i64,
    /// Rows returned.
    pub limit: i64,
}

/// The console's side of the storage.
pub trait ConsoleStorage {
    /// Adds an account; `false` when the login is taken.
    fn add_console_user(
        &self,
        user: &ConsoleUser,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
    /// One account.
    fn console_user(
        &self,
        login: &str,
    ) -> impl Future<Output = Result<Option<ConsoleUser>, StorageError>> + Send;
    /// Every account, by login.
    fn console_users(&self) -> impl Future<Output = Result<Vec<ConsoleUser>, StorageError>> + Send;
    /// Sets a new password hash and clears a lock; `false` when there is no such account.
    fn set_console_password(
        &self,
        login: &str,
        password_hash: &str,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
    /// Disables (or enables) an account; disabling ends its sessions. `false` when there is
    /// no such account.
    fn set_console_disabled(
        &self,
        login: &str,
        disabled: bool,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
    /// Counts a failed sign-in at `now`; the `max`-th in a row locks the account until
    /// `now + lock_ms` (a failure after a lock ran out starts counting again). Returns the
    /// failures and the lock's end.
    fn console_sign_in_failed(
        &self,
        login: &str,
        now: i64,
        max: i64,
        lock_ms: i64,
    ) -> impl Future<Output = Result<Option<(i64, i64)>, StorageError>> + Send;
    /// A successful sign-in at `now`: the failures are forgotten, unless the account was
    /// locked meanwhile (a guess racing the one that locked it): then `false`, and it stays
    /// locked.
    fn console_sign_in_ok(
        &self,
        login: &str,
        now: i64,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
    /// Stores a new session.
    fn create_session(
        &self,
        token_hash: &str,
        session: &SessionRow,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// The session of a token's hash, if it exists (expired or not: the caller judges).
    fn session(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = Result<Option<SessionRow>, StorageError>> + Send;
    /// Records a request on a session: it is seen now and expires later.
    fn touch_session(
        &self,
        token_hash: &str,
        seen_at: i64,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// Ends a session.
    fn end_session(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// Appends to the audit log.
    fn audit(&self, entry: &AuditEntry) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// The newest audit entries (of one login, or all), newest first.
    fn audit_log(
        &self,
        login: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StorageError>> + Send;
    /// One page of the case inbox, newest report first, and how many cases match in all.
    fn inbox(
        &self,
        query: &InboxQuery,
    ) -> impl Future<Output = Result<(Vec<CaseRow>, i64), StorageError>> + Send;
    /// One grid unit (its name and boundary), by code.
    fn grid(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<Option<gridsync_core::projection::GridRow>, StorageError>> + Send;
    /// The departments holding a case now (lead and co-departments).
    fn case_holders(
        &self,
        doc: gridsync_proto::DocId,
    ) -> impl Future<Output = Result<Vec<String>, StorageError>> + Send;
    /// The cases linked to a household (its past requests) within `towns`, newest first.
    fn household_cases(
        &self,
        household: gridsync_proto::DocId,
        towns: &[GridCode],
    ) -> impl Future<Output = Result<Vec<CaseRow>, StorageError>> + Send;
    /// Residents whose name contains `name` (or whose ID number is `name`), within `towns`,
    /// at most `limit`.
    fn residents_in_towns(
        &self,
        name: &str,
        towns: &[GridCode],
        limit: i64,
    ) -> impl Future<Output = Result<Vec<gridsync_core::projection::ResidentRow>, StorageError>> + Send;
    /// Registered cases whose 小类 is marked for automatic dispatch in their town.
    fn cases_to_route(
        &self,
    ) -> impl Future<Output = Result<Vec<gridsync_proto::DocId>, StorageError>> + Send;
    /// Claims the automatic dispatch of `doc` after its registration `event`; `false` when
    /// another process (or task) already did.
    fn claim_routing(
        &self,
        doc: gridsync_proto::DocId,
        event: &str,
        at: i64,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
    /// The automatic-dispatch rules of `towns`: (town, 小类, set by, set at).
    fn auto_routes(
        &self,
        towns: &[GridCode],
    ) -> impl Future<Output = Result<Vec<AutoRoute>, StorageError>> + Send;
    /// Marks (or unmarks) a 小类 for automatic dispatch in `town`.
    fn set_auto_route(
        &self,
        town: &GridCode,
        subcategory: &str,
        on: bool,
        by: &str,
        at: i64,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
}

/// One automatic-dispatch rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoRoute {
    /// The town it applies in.
    pub town: String,
    /// The 小类 code.
    pub subcategory: String,
    /// Who set it.
    pub set_by: String,
    /// When (ms).
    pub set_at: i64,
}
