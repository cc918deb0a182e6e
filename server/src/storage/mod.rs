//! Server storage: documents as append-only changes plus compacted snapshots, the global change
//! sequence and per-scope feed behind device cursors, devices, and projections.
//!
//! **API boundary:** handlers talk to storage only through the [`Storage`] trait. The SQLite
//! implementation here uses portable SQL (numbered parameters, no `INSERT OR REPLACE`, no
//! SQLite-only functions), so a PostgreSQL implementation runs the same statements.
//!
//! **Invariant:** a merge commits its changes, the documents' new state and their projections in
//! one transaction before any acknowledgement leaves the server; SQLite runs with
//! `synchronous=FULL`, so "acked" means "on disk".

use std::collections::BTreeMap;
use std::future::Future;

use gridsync_core::Document;
use gridsync_core::clock::now_ms;
use gridsync_core::projection::{CaseRow, GridRow, HouseholdRow, ResidentRow};
use gridsync_proto::{DeviceId, DocAck, DocId, DocPull, DocPush, GridCode, GridLevel};

use crate::auth::{Device, Role};

pub mod console;
pub mod doc_cache;
mod photos;
mod postgres;
mod register;
mod sqlite;

pub use photos::{BlobRow, PhotoStorage, UploadRow};
pub use postgres::PgStorage;
pub use register::RegisterStorage;
pub use sqlite::SqliteStorage;

/// What one commit changed, as live sync needs it: the scopes of the documents it wrote (each
/// a grid code, standing for it and every unit above it) and the department feeds it wrote
/// (`dept:<code>:<town>`), or `None` for "anything" (a notice was lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice(pub Option<Vec<String>>);

impl Notice {
    /// A notice that concerns every device (sent when notices may have been lost).
    pub fn anything() -> Self {
        Self(None)
    }

    /// Whether a device reading `feeds` (see `Device::feed_scopes`) may have news in it.
    pub fn concerns(&self, feeds: &[String]) -> bool {
        let Some(scopes) = &self.0 else {
            return true;
        };
        scopes.iter().any(|s| {
            if s.starts_with("dept:") {
                feeds.contains(s)
            } else {
                scope_levels_of(s).iter().any(|level| feeds.contains(level))
            }
        })
    }

    /// The notice as text (for PostgreSQL's `NOTIFY`, whose payload must stay under 8,000
    /// bytes: a larger one is sent as "anything").
    pub fn encode(&self) -> String {
        match &self.0 {
            Some(scopes) if scopes.iter().map(|s| s.len() + 1).sum::<usize>() < 7_000 => {
                scopes.join(",")
            }
            _ => "*".into(),
        }
    }

    /// Reads [`Notice::encode`]'s text; anything unexpected is "anything".
    pub fn decode(text: &str) -> Self {
        if text == "*" {
            return Self::anything();
        }
        Self(Some(
            text.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ))
    }
}

/// Every feed level a document with scope `scope` (a grid code as text) is written to.
fn scope_levels_of(scope: &str) -> Vec<String> {
    GridCode::parse(scope).map_or_else(|_| vec![scope.to_owned()], |g| scope_levels(&g))
}

/// The process's notices of committed changes: every commit of this process, and on
/// PostgreSQL every other process's too (through `LISTEN`), reaches every subscriber.
#[derive(Debug, Clone)]
pub struct ChangeBus(tokio::sync::broadcast::Sender<std::sync::Arc<Notice>>);

impl Default for ChangeBus {
    fn default() -> Self {
        Self(tokio::sync::broadcast::channel(1024).0)
    }
}

impl ChangeBus {
    /// Tells every subscriber.
    pub fn send(&self, notice: Notice) {
        // No subscriber is not an error: nobody is waiting.
        let _ = self.0.send(std::sync::Arc::new(notice));
    }

    /// A new subscriber, which sees every notice sent from now on.
    pub fn subscribe(&self) -> ChangeWatch {
        ChangeWatch(self.0.subscribe())
    }
}

/// One subscriber of a [`ChangeBus`].
#[derive(Debug)]
pub struct ChangeWatch(tokio::sync::broadcast::Receiver<std::sync::Arc<Notice>>);

impl ChangeWatch {
    /// The next notice; a subscriber that fell behind gets "anything" (it may have missed
    /// one), and a closed bus never answers.
    pub async fn next(&mut self) -> std::sync::Arc<Notice> {
        match self.0.recv().await {
            Ok(n) => n,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                std::sync::Arc::new(Notice::anything())
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }

    /// Drops the notices already waiting (a subscriber that acts on "something changed"
    /// rather than on each notice).
    pub fn drain(&mut self) {
        while !matches!(
            self.0.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty
                | tokio::sync::broadcast::error::TryRecvError::Closed)
        ) {}
    }
}

/// How many changes after its snapshot a document may gather before it is re-snapshotted.
pub const SNAPSHOT_AFTER: i64 = 64;

/// A storage failure (the request fails with 500/503; nothing was acknowledged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database refused an operation.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Schema migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored data does not decode (damaged database).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A projection could not be written.
    #[error(transparent)]
    Projection(#[from] gridsync_core::projection::ProjectionError),
    /// The data directory cannot be created or opened (a path or permission mistake).
    #[error("data directory {0}")]
    DataDir(String),
}

/// Why an enrollment code could not be made or redeemed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// No such code, already used, or expired.
    #[error("the enrollment code is unknown, already used or expired")]
    InvalidCode,
    /// A device with this id is enrolled and active (a revoked one may enroll again).
    #[error("device {0} is already enrolled; revoke it first to enroll it again")]
    AlreadyEnrolled(DeviceId),
    /// A revoked device may enroll again only with a code made for it.
    #[error(
        "device {0} was revoked; it enrolls again only with a code made for it \
         (gridsync-server device enroll --device {0} ...)"
    )]
    NeedsCodeForDevice(DeviceId),
    /// The role, scopes and department do not fit together (see [`check_enrollment`]).
    #[error("enrollment: {0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<sqlx::Error> for EnrollError {
    fn from(e: sqlx::Error) -> Self {
        EnrollError::Storage(StorageError::Db(e))
    }
}

/// An intake system as its key authenticates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeSource {
    /// The system's name (the source recorded on its cases).
    pub name: String,
    /// The towns it may place cases in; `None` for a key made before keys had towns.
    pub towns: Option<Vec<GridCode>>,
}

/// A device as listed for the operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceInfo {
    /// Device id.
    pub device: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Comma-separated scopes.
    pub scopes: String,
    /// When it enrolled (ms).
    pub enrolled_at: i64,
    /// When it was revoked, if it is revoked now.
    pub revoked_at: Option<i64>,
    /// When it last enrolled again after a revocation, if it did.
    pub reenrolled_at: Option<i64>,
    /// Its clock minus the server's at its last sync with pushes (ms), when it said.
    pub skew_ms: Option<i64>,
    /// When it last synced with pushes (the server's clock, ms).
    pub last_push_at: Option<i64>,
}

/// An entry time flagged as implausible where it arrived.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct FlaggedTime {
    /// The document.
    pub doc_id: String,
    /// The document's grid (its scope).
    pub scope: String,
    /// The time field's path inside the record.
    pub path: String,
    /// The time it carries.
    pub at: i64,
    /// When the server received it.
    pub received_at: i64,
    /// The device that sent it.
    pub device: String,
    /// That device's clock minus the server's at the time, when it said.
    pub skew_ms: Option<i64>,
    /// `future`, `too_old`, `clock_off` or `before_its_cause`.
    pub reason: String,
}

/// A device's position in the feed: the server's epoch, per granted scope the last sequence
/// number seen, and an anchor naming the history those positions belong to.
///
/// A cursor only means something against the history it was issued from. After a restore from
/// a backup the database has forgotten changes the device saw or had acknowledged, and the
/// sequence numbers they had are handed out again to other changes: a device whose position
/// lies in that range would skip them. `gridsync-server new-epoch` makes every cursor stale,
/// but only if the operator runs it; the anchor makes the server notice by itself.
///
/// The anchor is the newest change at the time the cursor was issued: its sequence number and
/// a prefix of its *chain hash*. Each change row stores `chain = SHA-256(previous chain ‖ seq ‖
/// change hash)`, so a chain value names every change up to it, in order, at its sequence
/// number. On the next pull the server looks up the change at the anchor's sequence number:
/// - the same chain value: this database holds exactly the history the device was served
///   and the acknowledgements it received (its own pushes merged before the pull are at or
///   below the anchor), so its positions are sound. Sequence numbers past the anchor and up to
///   its positions are whole-document rows of the anchor's own merge (committed with it), so
///   they are covered too;
/// - missing or different: the history the device saw is not this database's, however many
///   changes the server has written since — the device starts over exactly as after an epoch
///   change (`reset`: it offers all its own changes again and pulls its scopes from the start).
///
/// A chain rather than the change's own hash: a restored server can store the very change the
/// anchor names again, at the same sequence number, after other new changes filled the gap
/// below it; its hash would match, the chain does not. Eight bytes of the chain are enough
/// for a check that only has to tell two histories of one deployment apart.
///
/// Cursors issued before anchors existed decode without one and are not checked (beyond the
/// epoch and the newest sequence number); their next pull issues one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// The server epoch the positions belong to.
    pub epoch: u64,
    /// Last sequence number seen, per feed scope.
    pub seen: BTreeMap<String, u64>,
    /// The newest change when the cursor was issued (`None`: no change yet, or an old cursor).
    pub anchor: Option<Anchor>,
}

/// The change a cursor's history is checked against (see [`Cursor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Anchor {
    /// Its sequence number.
    pub seq: u64,
    /// The first bytes of its chain hash.
    pub chain: [u8; ANCHOR_BYTES],
}

/// How many bytes of a chain hash an anchor carries.
pub const ANCHOR_BYTES: usize = 8;

/// The cursor as servers before anchors wrote it.
#[derive(serde::Deserialize)]
struct CursorV1 {
    epoch: u64,
    seen: BTreeMap<String, u64>,
}

impl Cursor {
    /// Where this cursor stands in one feed (0 when it has not read it, or when it is
    /// `reset`).
    pub fn position(&self, scope: &str, reset: bool) -> u64 {
        match self.seen.get(scope) {
            Some(&p) if !reset => p,
            _ => 0,
        }
    }

    /// Decodes the opaque bytes a device sent back (empty = start of the feed).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        // Postcard is not self-describing: try the current layout, then the one without an
        // anchor; each must use every byte, so neither is mistaken for the other.
        if let Ok((c, [])) = postcard::take_from_bytes::<Self>(bytes) {
            return Ok(c);
        }
        match postcard::take_from_bytes::<CursorV1>(bytes) {
            Ok((old, [])) => Ok(Self {
                epoch: old.epoch,
                seen: old.seen,
                anchor: None,
            }),
            Ok(_) => Err("the cursor is not one this server issued: trailing bytes".into()),
            Err(e) => Err(format!("the cursor is not one this server issued: {e}")),
        }
    }

    /// Encodes for the device.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
}

fn first_bytes(chain: &[u8; 32]) -> [u8; ANCHOR_BYTES] {
    let mut out = [0; ANCHOR_BYTES];
    out.copy_from_slice(&chain[..ANCHOR_BYTES]);
    out
}

/// A change log's chain hash before its first change.
const CHAIN_START: [u8; 32] = [0; 32];

/// The chain hash of the change stored at `seq` after the one whose chain is `previous`.
fn chain_next(previous: &[u8; 32], seq: i64, change_hash: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(previous);
    h.update(seq.to_be_bytes());
    h.update(change_hash);
    h.finalize().into()
}

fn chain_from_bytes(seq: i64, bytes: Option<Vec<u8>>) -> Result<[u8; 32], StorageError> {
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| StorageError::Corrupt(format!("change {seq} has no chain hash")))
}

/// Every level of a scope from the town down to itself (the feed rows a change gets).
pub(crate) fn scope_levels(scope: &GridCode) -> Vec<String> {
    let s = scope.as_str();
    [
        GridLevel::Town,
        GridLevel::District,
        GridLevel::Village,
        GridLevel::Grid,
        GridLevel::MicroGrid,
    ]
    .iter()
    .map(|l| l.code_len())
    .filter(|n| *n <= s.len())
    .map(|n| s[..n].to_owned())
    .collect()
}

/// Caps on one pull.
#[derive(Debug, Clone, Copy)]
pub struct PullBudget {
    /// Most change bytes in one response (at least one change is always sent).
    pub max_bytes: usize,
    /// Most changes in one response.
    pub max_changes: usize,
    /// Most documents in one response.
    pub max_docs: usize,
    /// The asker reads compacted snapshots (protocol 4): on its first read of a grid feed,
    /// each document goes as one snapshot rather than its whole change history.
    pub snapshots: bool,
}

impl Default for PullBudget {
    fn default() -> Self {
        Self {
            max_bytes: 4 * 1024 * 1024,
            max_changes: 5_000,
            max_docs: 1_000,
            snapshots: false,
        }
    }
}

/// What a pull returns.
#[derive(Debug, Clone, Default)]
pub struct Pull {
    /// Changes grouped by document.
    pub docs: Vec<DocPull>,
    /// The cursor to hand back.
    pub cursor: Cursor,
    /// Whether more is waiting.
    pub more: bool,
    /// The device's cursor came from another epoch or from beyond the newest change: the
    /// server may have lost changes the device saw acknowledged.
    pub reset: bool,
    /// Change bytes read from the database for this pull: the changes sent, no more (rows are
    /// chosen over their stored sizes first).
    pub bytes_loaded: usize,
}

/// What a merge returns.
#[derive(Debug, Clone, Default)]
pub struct MergeOutcome {
    /// One acknowledgement per push, in order.
    pub acks: Vec<DocAck>,
    /// Sync-protocol replies for documents that fell back to it.
    pub sync_replies: Vec<DocPull>,
}

/// When and how a sync arrived: the server's clock on receipt and the phone's clock as it sent
/// the request (0 when an older phone did not say). Entry times are judged against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The server's clock (ms since the epoch).
    pub received_at: i64,
    /// The phone's clock (ms since the epoch), or 0.
    pub phone_clock: i64,
}

impl Receipt {
    /// A receipt now, for a request whose phone clock read `phone_clock`.
    pub fn now(phone_clock: i64) -> Self {
        Self {
            received_at: now_ms(),
            phone_clock,
        }
    }

    /// The phone's clock minus the server's, when the phone sent its clock.
    pub fn skew(&self) -> Option<i64> {
        (self.phone_clock != 0).then(|| self.phone_clock - self.received_at)
    }
}

/// The storage the server runs on.
pub trait Storage:
    PhotoStorage + RegisterStorage + console::ConsoleStorage + Send + Sync + 'static
{
    /// Merges a device's pushes in one transaction and acknowledges each; entry times they
    /// write are flagged against the `receipt` and the device's skew is recorded.
    fn merge(
        &self,
        device: &Device,
        pushes: &[DocPush],
        receipt: Receipt,
    ) -> impl Future<Output = Result<MergeOutcome, StorageError>> + Send;
    /// The cases that carry a flagged time, with their flags (`gridsync_core::time_flags`).
    fn flagged_times(&self) -> impl Future<Output = Result<Vec<FlaggedTime>, StorageError>> + Send;
    /// Starts a new epoch: every device's next sync pulls its scopes from the beginning. Run
    /// it after restoring the database from a backup, so devices that had seen changes the
    /// backup lost do not skip the ones now written in their place.
    fn new_epoch(&self) -> impl Future<Output = Result<u64, StorageError>> + Send;
    /// Closes the database connections (the process or test is done with the store).
    fn close(&self) -> impl Future<Output = ()> + Send;
    /// Notices of committed changes, for live sync.
    fn watch(&self) -> ChangeWatch;
    /// Where sync requests spend their time (shared with the HTTP layer).
    fn phases(&self) -> &crate::metrics::Phases;
    /// The document cache's counters now.
    fn doc_cache_stats(&self) -> doc_cache::DocCacheStats;
    /// Whether `device` has anything to pull past `cursor` (changes by other actors than
    /// `replica` in its feeds, or a cursor this server would start over).
    fn has_news(
        &self,
        device: &Device,
        replica: Option<&automerge::ActorId>,
        cursor: &Cursor,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
    /// Reads the changes in the device's scopes after its cursor (not its own).
    fn pull(
        &self,
        device: &Device,
        replica: &automerge::ActorId,
        cursor: &Cursor,
        budget: PullBudget,
    ) -> impl Future<Output = Result<Pull, StorageError>> + Send;
    /// Whether an actor was retired (two copies of a store wrote under it).
    fn actor_retired(
        &self,
        actor: &automerge::ActorId,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
    /// Looks up the device a bearer token belongs to (`None`: unknown). Revoked devices are
    /// returned with their revocation time.
    fn device_by_token(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = Result<Option<(Device, Option<i64>)>, StorageError>> + Send;
    /// Records a one-time enrollment code, optionally only for one device (needed to enroll
    /// a revoked device again); refuses a binding [`check_enrollment`] refuses.
    #[allow(clippy::too_many_arguments)]
    fn create_enrollment(
        &self,
        code_hash: &str,
        name: &str,
        role: Role,
        scopes: &[GridCode],
        department: Option<&str>,
        for_device: Option<DeviceId>,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), EnrollError>> + Send;
    /// Redeems a code: binds the device id and stores the token's hash. A revoked device
    /// enrolls again under the same id with the new code's binding; an active one is refused.
    fn redeem_enrollment(
        &self,
        code_hash: &str,
        device: DeviceId,
        token_hash: &str,
    ) -> impl Future<Output = Result<Device, EnrollError>> + Send;
    /// Revokes a device; returns whether it existed and was active.
    fn revoke(&self, device: DeviceId) -> impl Future<Output = Result<bool, StorageError>> + Send;
    /// Every enrolled device.
    fn devices(&self) -> impl Future<Output = Result<Vec<DeviceInfo>, StorageError>> + Send;
    /// The current state of one document.
    fn load(
        &self,
        id: DocId,
    ) -> impl Future<Output = Result<Option<Document>, StorageError>> + Send;
    /// Households of the case projection, optionally within a unit.
    fn households(
        &self,
        within: Option<&GridCode>,
    ) -> impl Future<Output = Result<Vec<HouseholdRow>, StorageError>> + Send;
    /// Residents whose name contains `name`.
    fn search_residents(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<ResidentRow>, StorageError>> + Send;
    /// Cases, newest first.
    fn cases(&self) -> impl Future<Output = Result<Vec<CaseRow>, StorageError>> + Send;
    /// Recomputes every projection from the documents.
    fn rebuild_projections(&self) -> impl Future<Output = Result<usize, StorageError>> + Send;
    /// Records an intake key (its hash) for a named intake system serving `towns`.
    fn create_intake_key(
        &self,
        key_hash: &str,
        name: &str,
        towns: &[GridCode],
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// The intake system a key belongs to, if the key is valid.
    fn intake_source(
        &self,
        key_hash: &str,
    ) -> impl Future<Output = Result<Option<IntakeSource>, StorageError>> + Send;
    /// The case already created for `(source, order_no)`, if any.
    fn intake_order(
        &self,
        source: &str,
        order_no: &str,
    ) -> impl Future<Output = Result<Option<DocId>, StorageError>> + Send;
    /// Stores a case created by intake, once per `(source, order_no)`: returns the case id and
    /// whether it was created now (false: an earlier call with the same order number won).
    fn create_intake_case(
        &self,
        source: &str,
        order_no: &str,
        doc: Document,
    ) -> impl Future<Output = Result<(DocId, bool), StorageError>> + Send;
    /// The device the server writes as for `service` (made on first use, then kept).
    fn service_device(
        &self,
        service: Service,
    ) -> impl Future<Output = Result<DeviceId, StorageError>> + Send;
    /// Grid units with their boundaries (for placing a case by its location).
    fn grids(&self) -> impl Future<Output = Result<Vec<GridRow>, StorageError>> + Send;
    /// Cases reported in `[from, to)`.
    fn cases_reported_between(
        &self,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Vec<CaseRow>, StorageError>> + Send;
}

/// A server-side writer that is not an enrolled device; its device id is made once and kept,
/// and no enrollment may claim it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Cases from intake systems (12345, mini-programs).
    Intake,
    /// Households and residents from a register import.
    Import,
    /// Automatic dispatch (自动流转) of registered cases in marked categories.
    Routing,
}

impl Service {
    /// Every service, for the enrollment check.
    pub const ALL: [Service; 3] = [Service::Intake, Service::Import, Service::Routing];

    fn meta_key(self) -> &'static str {
        match self {
            Service::Intake => "intake_device",
            Service::Import => "import_device",
            Service::Routing => "routing_device",
        }
    }
}

/// What the register said about one household (member empty) or member when it was last
/// imported.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ImportState {
    /// The household document.
    #[sqlx(try_from = "String")]
    pub doc_id: DocId,
    /// The member's id, or empty for the household's own fields.
    pub member: String,
    /// A JSON object: record field (`address`, `phones`, ...) → its value as the register gave it.
    pub fields: String,
    /// For a household without 户号: its grid and head's name (`grid|name`).
    pub key: Option<String>,
}

/// One register import run: every change it wrote carries its `actor`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ImportRun {
    /// The Automerge actor (hex) the run wrote with: the import device's id + 8 random bytes.
    pub actor: String,
    /// The import device.
    #[sqlx(try_from = "String")]
    pub device: DeviceId,
    /// The file's name as given.
    pub file_name: String,
    /// SHA-256 of the file's bytes.
    pub file_sha256: String,
    /// Who ran it (`--by`, or the operating-system user).
    pub operator: String,
    /// When it started (ms since the epoch).
    pub started_at: i64,
    /// Data rows read (blank lines not counted).
    pub rows_total: i64,
    /// Rows refused.
    pub rows_bad: i64,
    /// Households created.
    pub created: i64,
    /// Households changed.
    pub updated: i64,
    /// Households in the file that needed no change.
    pub unchanged: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_levels_cover_every_ancestor() {
        let g = GridCode::parse("33010200101001002").expect("grid");
        assert_eq!(
            scope_levels(&g),
            [
                "330102001",
                "33010200101",
                "33010200101001",
                "33010200101001002"
            ]
        );
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let mut c = Cursor::default();
        c.seen.insert("330102001".into(), 42);
        assert_eq!(Cursor::decode(&c.encode()), Ok(c.clone()));
        c.anchor = Some(Anchor {
            seq: 7,
            chain: [1, 2, 3, 4, 5, 6, 7, 8],
        });
        assert_eq!(Cursor::decode(&c.encode()), Ok(c.clone()));
        assert_eq!(Cursor::decode(&[]), Ok(Cursor::default()));
        assert!(Cursor::decode(&[0xff, 0xff, 0xff]).is_err());
        let mut trailing = c.encode();
        trailing.push(0);
        assert!(Cursor::decode(&trailing).is_err());
    }

    #[test]
    fn cursors_from_before_anchors_still_decode() {
        // What the server wrote before anchors: epoch 5, {"330102001": 42}.
        let old = [
            5, 1, 9, b'3', b'3', b'0', b'1', b'0', b'2', b'0', b'0', b'1', 42,
        ];
        let c = Cursor::decode(&old).expect("old cursor");
        assert_eq!(c.epoch, 5);
        assert_eq!(c.seen.get("330102001"), Some(&42));
        assert_eq!(c.anchor, None);
    }

    #[test]
    fn a_chain_names_the_whole_history_not_one_change() {
        let (x, y, z) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let a = chain_next(&chain_next(&CHAIN_START, 1, &x), 2, &z);
        let b = chain_next(&chain_next(&CHAIN_START, 1, &y), 2, &z);
        assert_ne!(
            a, b,
            "the same change at the same seq after a different one"
        );
        assert_ne!(
            chain_next(&CHAIN_START, 1, &x),
            chain_next(&CHAIN_START, 2, &x)
        );
    }
}
