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
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use automerge::ChangeHash;
use gridsync_core::Document;
use gridsync_core::clock::now_ms;
use gridsync_core::projection::{CaseRow, GridRow, HouseholdRow, PROJECTION_VERSION, ResidentRow};
use gridsync_proto::{DeviceId, DocAck, DocId, DocPull, DocPush, GridCode, GridLevel, Hash};
use serde_bytes::ByteBuf;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqliteConnection, SqlitePool};
use tokio::sync::Mutex;

use crate::auth::{Device, Role, check_enrollment, join_scopes};

mod commit;
mod photos;

pub use photos::{BlobRow, PhotoStorage, UploadRow};

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

/// One feed row chosen for a pull, before its bytes are read.
struct FeedRow {
    /// Its sequence number.
    seq: i64,
    /// The document it belongs to.
    doc: String,
    /// The whole document entered the scope here (send its changes up to `seq`), rather
    /// than one change.
    whole: bool,
    /// The bytes it sends.
    size: usize,
}

/// How many changes' bytes one query reads by sequence number.
const BYTES_BY_SEQ_BATCH: usize = 64;

/// `SELECT seq, bytes FROM changes WHERE seq IN ($1, ..., $64)`: portable, one statement for
/// every batch (unused placeholders are bound to -1).
fn bytes_by_seq_sql() -> &'static String {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let params: Vec<String> = (1..=BYTES_BY_SEQ_BATCH).map(|i| format!("${i}")).collect();
        format!(
            "SELECT seq, bytes FROM changes WHERE seq IN ({})",
            params.join(", ")
        )
    });
    &SQL
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

/// The newest change's sequence number and chain hash (`None`: no change yet).
async fn chain_tip(conn: &mut SqliteConnection) -> Result<Option<(i64, [u8; 32])>, StorageError> {
    let row: Option<(i64, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT seq, chain FROM changes ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|(seq, chain)| Ok((seq, chain_from_bytes(seq, chain)?)))
        .transpose()
}

/// Whether the change at the anchor's sequence number still has the anchor's chain hash.
async fn anchor_holds(conn: &mut SqliteConnection, anchor: &Anchor) -> Result<bool, StorageError> {
    let Ok(seq) = i64::try_from(anchor.seq) else {
        return Ok(false);
    };
    let chain: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT chain FROM changes WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(chain
        .flatten()
        .is_some_and(|c| c.get(..ANCHOR_BYTES) == Some(&anchor.chain[..])))
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
}

impl Default for PullBudget {
    fn default() -> Self {
        Self {
            max_bytes: 4 * 1024 * 1024,
            max_changes: 5_000,
            max_docs: 1_000,
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
pub trait Storage: PhotoStorage + Send + Sync + 'static {
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
    /// Households whose register number (户号) is one of `numbers`.
    fn households_numbered(
        &self,
        numbers: &[String],
    ) -> impl Future<Output = Result<Vec<HouseholdRow>, StorageError>> + Send;
    /// Residents whose ID number is one of `id_numbers`.
    fn residents_with_id(
        &self,
        id_numbers: &[String],
    ) -> impl Future<Output = Result<Vec<ResidentRow>, StorageError>> + Send;
    /// Residents of the households within a unit (or all), by household.
    fn residents_within(
        &self,
        within: Option<&GridCode>,
    ) -> impl Future<Output = Result<Vec<ResidentRow>, StorageError>> + Send;
    /// Records (or updates, by its actor) one register import run.
    fn record_import(
        &self,
        run: &ImportRun,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// The values the last imports set in these households.
    fn import_state(
        &self,
        docs: &[DocId],
    ) -> impl Future<Output = Result<Vec<ImportState>, StorageError>> + Send;
    /// Remembers values an import set (replacing earlier ones of the same field).
    fn save_import_state(
        &self,
        rows: &[ImportState],
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// Every register import run, newest first.
    fn imports(&self) -> impl Future<Output = Result<Vec<ImportRun>, StorageError>> + Send;
    /// Grid units with their boundaries (for placing a case by its location).
    fn grids(&self) -> impl Future<Output = Result<Vec<GridRow>, StorageError>> + Send;
    /// Cases reported in `[from, to)`.
    fn cases_reported_between(
        &self,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Vec<CaseRow>, StorageError>> + Send;
}

/// The embedded default: one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    pool: SqlitePool,
    // The newest document schema this server reads (see `reading_schema`).
    newest_schema: u32,
    // Merges are serialised in-process (SQLite has one writer anyway); the counter row update
    // at the start of each merge does the same across processes.
    write_lock: std::sync::Arc<Mutex<()>>,
    // The Automerge work of merges runs outside the write lock, on the blocking pool, at most
    // this many at once (one per core), so a costly push holds one core, not the server.
    merge_cpu: std::sync::Arc<tokio::sync::Semaphore>,
}

fn heads_to_bytes(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

fn heads_from_bytes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect()
}

/// The server's epoch (created on first use).
async fn read_epoch(conn: &mut SqliteConnection) -> Result<u64, StorageError> {
    let existing: Option<String> =
        sqlx::query_scalar("SELECT value FROM server_meta WHERE key = 'epoch'")
            .fetch_optional(&mut *conn)
            .await?;
    match existing {
        Some(v) => v
            .parse()
            .map_err(|_| StorageError::Corrupt(format!("server epoch {v:?}"))),
        None => Ok(0),
    }
}

/// Every level of a scope from the town down to itself (the feed rows a change gets).
fn scope_levels(scope: &GridCode) -> Vec<String> {
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

fn parse_device(row: &sqlx::sqlite::SqliteRow) -> Result<Device, StorageError> {
    let id: String = row.try_get("device_id")?;
    let role: String = row.try_get("role")?;
    let scopes: String = row.try_get("scopes")?;
    let role = Role::from_str(&role).map_err(StorageError::Corrupt)?;
    Ok(Device {
        id: DeviceId::from_str(&id).map_err(|e| StorageError::Corrupt(e.to_string()))?,
        name: row.try_get("name")?,
        department: row.try_get("department")?,
        role,
        scopes: scopes
            .split(',')
            .map(GridCode::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| StorageError::Corrupt(e.to_string()))?,
    })
}

/// A stored document's bytes (snapshot and the change chunks after it), how many changes it
/// has gathered since its snapshot, and its version (`last_seq`, moved by every merge of it).
struct StoredBytes {
    bytes: Vec<u8>,
    pending: i64,
    version: i64,
}

async fn load_bytes(
    conn: &mut SqliteConnection,
    id: DocId,
) -> Result<Option<StoredBytes>, StorageError> {
    let Some(row) =
        sqlx::query("SELECT snapshot, snapshot_seq, pending, last_seq FROM docs WHERE doc_id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?
    else {
        return Ok(None);
    };
    let mut bytes: Vec<u8> = row
        .try_get::<Option<Vec<u8>>, _>("snapshot")?
        .unwrap_or_default();
    let snapshot_seq: i64 = row.try_get("snapshot_seq")?;
    let pending: i64 = row.try_get("pending")?;
    if pending > 0 {
        let chunks: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT bytes FROM changes WHERE doc_id = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(id.to_string())
        .bind(snapshot_seq)
        .fetch_all(&mut *conn)
        .await?;
        for c in chunks {
            bytes.extend_from_slice(&c);
        }
    }
    Ok(Some(StoredBytes {
        bytes,
        pending,
        version: row.try_get("last_seq")?,
    }))
}

fn decode_doc(id: DocId, bytes: &[u8], newest_schema: u32) -> Result<Document, StorageError> {
    Document::load_upto(bytes, newest_schema)
        .map_err(|e| StorageError::Corrupt(format!("document {id}: {e}")))
}

async fn load_doc(
    conn: &mut SqliteConnection,
    id: DocId,
    newest_schema: u32,
) -> Result<Option<(Document, i64)>, StorageError> {
    match load_bytes(conn, id).await? {
        Some(stored) => Ok(Some((
            decode_doc(id, &stored.bytes, newest_schema)?,
            stored.pending,
        ))),
        None => Ok(None),
    }
}

impl SqliteStorage {
    /// Opens (creating if needed) `DIR/gridsync.db` and migrates it.
    pub async fn open(data_dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StorageError::DataDir(format!("{}: {e}", data_dir.display())))?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("gridsync.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let storage = Self {
            pool,
            newest_schema: gridsync_core::document::SCHEMA_VERSION,
            write_lock: std::sync::Arc::new(Mutex::new(())),
            merge_cpu: std::sync::Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            )),
        };
        storage.backfill_chain().await?;
        // Projections are derived data: when their definition changed, recompute them.
        let version: Option<String> =
            sqlx::query_scalar("SELECT value FROM server_meta WHERE key = 'projection_version'")
                .fetch_optional(&storage.pool)
                .await?;
        if version.as_deref() != Some(PROJECTION_VERSION) {
            storage.rebuild_projections().await?;
            sqlx::query(
                "INSERT INTO server_meta (key, value) VALUES ('projection_version', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(PROJECTION_VERSION)
            .execute(&storage.pool)
            .await?;
        }
        Ok(storage)
    }

    /// Starts a new epoch: every device's next sync pulls its scopes from the beginning. Run it
    /// after restoring the database from a backup, so devices that had seen changes the backup
    /// lost do not skip the ones now written in their place.
    pub async fn new_epoch(&self) -> Result<u64, StorageError> {
        let epoch = u64::from(rand::random::<u32>()) + 1;
        sqlx::query(
            "INSERT INTO server_meta (key, value) VALUES ('epoch', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(epoch.to_string())
        .execute(&self.pool)
        .await?;
        Ok(epoch)
    }

    /// Computes the chain hash (see [`Cursor`]) of changes stored before it existed, from the
    /// first one without it to the newest, so cursors issued from now on carry anchors.
    async fn backfill_chain(&self) -> Result<(), StorageError> {
        let _guard = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        // Take the write lock first, as merges do.
        sqlx::query("UPDATE seq_counter SET value = value WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let first: Option<i64> =
            sqlx::query_scalar("SELECT MIN(seq) FROM changes WHERE chain IS NULL")
                .fetch_one(&mut *tx)
                .await?;
        let Some(first) = first else {
            return Ok(());
        };
        let previous: Option<(i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT seq, chain FROM changes WHERE seq < $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(first)
        .fetch_optional(&mut *tx)
        .await?;
        let mut chain = match previous {
            Some((seq, c)) => chain_from_bytes(seq, c)?,
            None => CHAIN_START,
        };
        let mut after = first - 1;
        loop {
            let batch: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                "SELECT seq, hash FROM changes WHERE seq > $1 ORDER BY seq LIMIT 10000",
            )
            .bind(after)
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = batch.last().map(|r| r.0) else {
                break;
            };
            for (seq, hash) in batch {
                chain = chain_next(&chain, seq, &hash);
                sqlx::query("UPDATE changes SET chain = $1 WHERE seq = $2")
                    .bind(chain.to_vec())
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
            }
            after = last;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reads documents up to schema `newest` (default: this build's). A server that is one
    /// schema ahead of some phones stands for the first step of a rolling upgrade in tests.
    pub fn reading_schema(mut self, newest: u32) -> Self {
        self.newest_schema = newest;
        self
    }

    /// The pool (for tests and admin commands).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Storage for SqliteStorage {
    async fn merge(
        &self,
        device: &Device,
        pushes: &[DocPush],
        receipt: Receipt,
    ) -> Result<MergeOutcome, StorageError> {
        commit::merge(self, device, pushes, receipt).await
    }

    async fn flagged_times(&self) -> Result<Vec<FlaggedTime>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT f.doc_id, d.scope, f.path, f.at, f.received_at, f.device, f.skew_ms, f.reason \
             FROM time_flags f JOIN docs d ON d.doc_id = f.doc_id ORDER BY f.doc_id, f.path",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn pull(
        &self,
        device: &Device,
        replica: &automerge::ActorId,
        cursor: &Cursor,
        budget: PullBudget,
    ) -> Result<Pull, StorageError> {
        let mut tx = self.pool.begin().await?;
        let max: i64 = sqlx::query_scalar("SELECT value FROM seq_counter WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let max = u64::try_from(max).unwrap_or(0);
        let epoch = read_epoch(&mut tx).await?;
        // Positions from another epoch, beyond the newest change, or from a history this
        // database does not hold (a restored server; see `Cursor`) mean nothing here: start
        // that device over; the phone deduplicates what it already has.
        let foreign_history = match &cursor.anchor {
            Some(anchor) => !anchor_holds(&mut tx, anchor).await?,
            None => false,
        };
        let reset = foreign_history
            || (!cursor.seen.is_empty()
                && (cursor.epoch != epoch || cursor.seen.values().any(|&p| p > max)));
        let position = |scope: &str| -> u64 {
            match cursor.seen.get(scope) {
                Some(&p) if !reset => p,
                _ => 0,
            }
        };
        // The asking replica has its own changes; other actors of the same device (a copy of
        // its store) it may not.
        let me = replica.to_hex_string();
        let feeds = device.feed_scopes();
        // Rows are chosen over their sizes alone; bytes are read only for the rows kept.
        let mut rows: Vec<FeedRow> = Vec::new();
        let mut limit_hit: Option<i64> = None;
        let limit = i64::try_from(budget.max_changes).unwrap_or(i64::MAX);
        for scope in &feeds {
            let start = position(scope);
            if start >= max {
                continue;
            }
            // A whole-document row weighs what it sends: the document's changes up to the row.
            let found: Vec<(i64, Option<String>, Option<String>, i64)> = sqlx::query_as(
                "SELECT f.seq, f.full_doc, c.doc_id, \
                   CASE WHEN f.full_doc IS NULL THEN c.size ELSE \
                     (SELECT CAST(COALESCE(SUM(a.size), 0) AS BIGINT) FROM changes a \
                      WHERE a.doc_id = f.full_doc AND a.seq <= f.seq) END \
                 FROM scope_feed f LEFT JOIN changes c ON c.seq = f.seq \
                 WHERE f.scope = $1 AND f.seq > $2 AND (f.full_doc IS NOT NULL OR c.actor <> $3) \
                 ORDER BY f.seq LIMIT $4",
            )
            .bind(scope.as_str())
            .bind(i64::try_from(start).unwrap_or(i64::MAX))
            .bind(&me)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            if found.len() as i64 >= limit
                && let Some(last) = found.last()
            {
                limit_hit = Some(limit_hit.map_or(last.0, |l| l.min(last.0)));
            }
            rows.extend(
                found
                    .into_iter()
                    .filter_map(|(seq, full_doc, doc_id, size)| {
                        let size = usize::try_from(size).unwrap_or(0);
                        match (full_doc, doc_id) {
                            (Some(doc), _) => Some(FeedRow {
                                seq,
                                doc,
                                whole: true,
                                size,
                            }),
                            (None, Some(doc)) => Some(FeedRow {
                                seq,
                                doc,
                                whole: false,
                                size,
                            }),
                            (None, None) => None,
                        }
                    }),
            );
        }
        rows.sort_by_key(|r| r.seq);
        rows.dedup_by_key(|r| r.seq);
        let mut more = false;
        if let Some(cut) = limit_hit {
            rows.retain(|r| r.seq <= cut);
            more = true;
        }
        let mut total = 0usize;
        let mut keep = rows.len();
        let mut seen_docs = std::collections::BTreeSet::new();
        for (i, r) in rows.iter().enumerate() {
            let new_doc = !seen_docs.contains(&r.doc);
            // The first row always goes, so a change larger than the budget still moves the
            // cursor.
            if i > 0
                && (total + r.size > budget.max_bytes
                    || (new_doc && seen_docs.len() >= budget.max_docs))
            {
                keep = i;
                more = true;
                break;
            }
            seen_docs.insert(r.doc.clone());
            total += r.size;
        }
        rows.truncate(keep);
        let horizon = if more {
            rows.last().map_or(0, |r| u64::try_from(r.seq).unwrap_or(0))
        } else {
            max
        };
        let anchor = chain_tip(&mut tx).await?.map(|(seq, chain)| Anchor {
            seq: u64::try_from(seq).unwrap_or(0),
            chain: first_bytes(&chain),
        });
        let mut next = Cursor {
            epoch,
            seen: BTreeMap::new(),
            anchor,
        };
        for scope in &feeds {
            next.seen
                .insert(scope.clone(), position(scope).max(horizon));
        }
        let mut bytes_loaded = 0usize;
        let mut single: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        let wanted: Vec<i64> = rows.iter().filter(|r| !r.whole).map(|r| r.seq).collect();
        for chunk in wanted.chunks(BYTES_BY_SEQ_BATCH) {
            let mut query =
                sqlx::query_as::<_, (i64, Vec<u8>)>(AssertSqlSafe(bytes_by_seq_sql().as_str()));
            // Unused placeholders get -1, a sequence number no change has.
            for i in 0..BYTES_BY_SEQ_BATCH {
                query = query.bind(chunk.get(i).copied().unwrap_or(-1));
            }
            for (seq, bytes) in query.fetch_all(&mut *tx).await? {
                bytes_loaded += bytes.len();
                single.insert(seq, bytes);
            }
        }
        let mut docs: Vec<DocPull> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for r in rows {
            let changes: Vec<Vec<u8>> = if r.whole {
                let all: Vec<Vec<u8>> = sqlx::query_scalar(
                    "SELECT bytes FROM changes WHERE doc_id = $1 AND seq <= $2 ORDER BY seq",
                )
                .bind(&r.doc)
                .bind(r.seq)
                .fetch_all(&mut *tx)
                .await?;
                bytes_loaded += all.iter().map(Vec::len).sum::<usize>();
                all
            } else {
                vec![single.remove(&r.seq).ok_or_else(|| {
                    StorageError::Corrupt(format!("change {} vanished during a pull", r.seq))
                })?]
            };
            let i = match index.get(&r.doc) {
                Some(i) => *i,
                None => {
                    let id = DocId::from_str(&r.doc)
                        .map_err(|e| StorageError::Corrupt(e.to_string()))?;
                    docs.push(DocPull {
                        doc: id,
                        changes: Vec::new(),
                        heads: Vec::new(),
                        sync: None,
                    });
                    index.insert(r.doc.clone(), docs.len() - 1);
                    docs.len() - 1
                }
            };
            docs[i]
                .changes
                .extend(changes.into_iter().map(ByteBuf::from));
        }
        for d in &mut docs {
            let heads: Vec<u8> = sqlx::query_scalar("SELECT heads FROM docs WHERE doc_id = $1")
                .bind(d.doc.to_string())
                .fetch_one(&mut *tx)
                .await?;
            d.heads = heads_from_bytes(&heads);
        }
        tx.commit().await?;
        Ok(Pull {
            docs,
            cursor: next,
            more,
            reset,
            bytes_loaded,
        })
    }

    async fn actor_retired(&self, actor: &automerge::ActorId) -> Result<bool, StorageError> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM retired_actors WHERE actor = $1")
                .bind(actor.to_hex_string())
                .fetch_one(&self.pool)
                .await?
                > 0,
        )
    }

    async fn device_by_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<(Device, Option<i64>)>, StorageError> {
        let Some(row) = sqlx::query(
            "SELECT device_id, name, role, scopes, department, revoked_at FROM devices WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let revoked: Option<i64> = row.try_get("revoked_at")?;
        Ok(Some((parse_device(&row)?, revoked)))
    }

    async fn create_enrollment(
        &self,
        code_hash: &str,
        name: &str,
        role: Role,
        scopes: &[GridCode],
        department: Option<&str>,
        for_device: Option<DeviceId>,
        expires_at: i64,
    ) -> Result<(), EnrollError> {
        check_enrollment(role, scopes, department).map_err(EnrollError::Invalid)?;
        sqlx::query(
            "INSERT INTO enrollments (code_hash, name, role, scopes, department, created_at, expires_at, for_device) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(code_hash)
        .bind(name)
        .bind(role.as_str())
        .bind(join_scopes(scopes))
        .bind(department)
        .bind(now_ms())
        .bind(expires_at)
        .bind(for_device.map(|d| d.to_string()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn redeem_enrollment(
        &self,
        code_hash: &str,
        device: DeviceId,
        token_hash: &str,
    ) -> Result<Device, EnrollError> {
        let _guard = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let row = sqlx::query(
            "SELECT name, role, scopes, department, for_device FROM enrollments \
             WHERE code_hash = $1 AND used_by IS NULL AND expires_at > $2",
        )
        .bind(code_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(EnrollError::InvalidCode)?;
        let name: String = row.try_get("name")?;
        let role: String = row.try_get("role")?;
        let scopes: String = row.try_get("scopes")?;
        let department: Option<String> = row.try_get("department")?;
        let for_device: Option<String> = row.try_get("for_device")?;
        if for_device
            .as_deref()
            .is_some_and(|d| d != device.to_string().as_str())
        {
            // Someone else's code: indistinguishable from an unknown one.
            return Err(EnrollError::InvalidCode);
        }
        // A code made before enrollment checked its binding is checked now: fail closed.
        let parsed_role = Role::from_str(&role).map_err(EnrollError::Invalid)?;
        let parsed_scopes: Vec<GridCode> = scopes
            .split(',')
            .map(GridCode::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| EnrollError::Invalid(e.to_string()))?;
        check_enrollment(parsed_role, &parsed_scopes, department.as_deref())
            .map_err(EnrollError::Invalid)?;
        let existing: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at FROM devices WHERE device_id = $1")
                .bind(device.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let service: Option<String> =
            sqlx::query_scalar("SELECT key FROM server_meta WHERE key IN ($1, $2) AND value = $3")
                .bind(Service::ALL[0].meta_key())
                .bind(Service::ALL[1].meta_key())
                .bind(device.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if matches!(existing, Some(None)) || service.is_some() {
            return Err(EnrollError::AlreadyEnrolled(device));
        }
        if existing.is_some() && for_device.is_none() {
            return Err(EnrollError::NeedsCodeForDevice(device));
        }
        sqlx::query("UPDATE enrollments SET used_by = $1, used_at = $2 WHERE code_hash = $3")
            .bind(device.to_string())
            .bind(now)
            .bind(code_hash)
            .execute(&mut *tx)
            .await?;
        if existing.is_some() {
            // A revoked device enrolls again: same id (so its actor, its cursor and the
            // attribution of what it wrote stay), the new code's binding, a new token (the old
            // one stays dead), and the first enrollment time kept beside this one.
            sqlx::query(
                "UPDATE devices SET name = $1, role = $2, scopes = $3, department = $4, \
                 token_hash = $5, revoked_at = NULL, reenrolled_at = $6 WHERE device_id = $7",
            )
            .bind(&name)
            .bind(&role)
            .bind(&scopes)
            .bind(&department)
            .bind(token_hash)
            .bind(now)
            .bind(device.to_string())
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO devices (device_id, name, role, scopes, department, token_hash, enrolled_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(device.to_string())
            .bind(&name)
            .bind(&role)
            .bind(&scopes)
            .bind(&department)
            .bind(token_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let row = sqlx::query(
            "SELECT device_id, name, role, scopes, department FROM devices WHERE device_id = $1",
        )
        .bind(device.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let device = parse_device(&row)?;
        tx.commit().await?;
        Ok(device)
    }

    async fn revoke(&self, device: DeviceId) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE devices SET revoked_at = $1 WHERE device_id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(device.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn devices(&self) -> Result<Vec<DeviceInfo>, StorageError> {
        let rows = sqlx::query(
            "SELECT device_id, name, role, scopes, enrolled_at, revoked_at, reenrolled_at, skew_ms \
             FROM devices ORDER BY enrolled_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceInfo {
                    device: r.try_get("device_id")?,
                    name: r.try_get("name")?,
                    role: r.try_get("role")?,
                    scopes: r.try_get("scopes")?,
                    enrolled_at: r.try_get("enrolled_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                    reenrolled_at: r.try_get("reenrolled_at")?,
                    skew_ms: r.try_get("skew_ms")?,
                })
            })
            .collect()
    }

    async fn load(&self, id: DocId) -> Result<Option<Document>, StorageError> {
        let mut conn = self.pool.acquire().await?;
        Ok(load_doc(&mut conn, id, self.newest_schema)
            .await?
            .map(|(d, _)| d))
    }

    async fn households(
        &self,
        within: Option<&GridCode>,
    ) -> Result<Vec<HouseholdRow>, StorageError> {
        let (lo, hi) = prefix_range(within);
        Ok(sqlx::query_as(
            "SELECT * FROM p_households WHERE grid >= $1 AND grid < $2 ORDER BY grid, address, doc_id",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn search_residents(&self, name: &str) -> Result<Vec<ResidentRow>, StorageError> {
        let pattern = format!("%{}%", name.trim().replace(['%', '_'], ""));
        Ok(sqlx::query_as(
            "SELECT * FROM p_residents WHERE name LIKE $1 ORDER BY name, household_id, resident_id LIMIT 500",
        )
        .bind(pattern)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn cases(&self) -> Result<Vec<CaseRow>, StorageError> {
        Ok(
            sqlx::query_as("SELECT * FROM p_cases ORDER BY reported_at DESC, doc_id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn rebuild_projections(&self) -> Result<usize, StorageError> {
        let _guard = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        gridsync_core::projection::clear_sqlite(&mut tx).await?;
        let ids: Vec<String> = sqlx::query_scalar("SELECT doc_id FROM docs ORDER BY doc_id")
            .fetch_all(&mut *tx)
            .await?;
        for id in &ids {
            let id = DocId::from_str(id).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            if let Some((doc, _)) = load_doc(&mut tx, id, self.newest_schema).await? {
                gridsync_core::projection::store_sqlite(&mut tx, &doc).await?;
            }
        }
        tx.commit().await?;
        Ok(ids.len())
    }

    async fn create_intake_key(
        &self,
        key_hash: &str,
        name: &str,
        towns: &[GridCode],
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO intake_keys (key_hash, name, created_at, towns) VALUES ($1, $2, $3, $4)",
        )
        .bind(key_hash)
        .bind(name)
        .bind(now_ms())
        .bind(join_scopes(towns))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn intake_source(&self, key_hash: &str) -> Result<Option<IntakeSource>, StorageError> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT name, towns FROM intake_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(name, towns)| {
            let towns = towns
                .map(|t| {
                    t.split(',')
                        .filter(|c| !c.is_empty())
                        .map(GridCode::parse)
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
                .map_err(|e| StorageError::Corrupt(format!("intake key towns: {e}")))?;
            Ok(IntakeSource { name, towns })
        })
        .transpose()
    }

    async fn intake_order(
        &self,
        source: &str,
        order_no: &str,
    ) -> Result<Option<DocId>, StorageError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT doc_id FROM intake_orders WHERE source = $1 AND order_no = $2",
        )
        .bind(source)
        .bind(order_no)
        .fetch_optional(&self.pool)
        .await?;
        id.map(|i| DocId::from_str(&i).map_err(|e| StorageError::Corrupt(e.to_string())))
            .transpose()
    }

    async fn create_intake_case(
        &self,
        source: &str,
        order_no: &str,
        mut doc: Document,
    ) -> Result<(DocId, bool), StorageError> {
        let _guard = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let seq: i64 =
            sqlx::query_scalar("UPDATE seq_counter SET value = value WHERE id = 1 RETURNING value")
                .fetch_one(&mut *tx)
                .await?;
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT doc_id FROM intake_orders WHERE source = $1 AND order_no = $2",
        )
        .bind(source)
        .bind(order_no)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = existing {
            return Ok((
                DocId::from_str(&id).map_err(|e| StorageError::Corrupt(e.to_string()))?,
                false,
            ));
        }
        let device = Device {
            id: doc.header().creator,
            name: source.to_owned(),
            role: Role::Intake,
            scopes: vec![doc.header().scope.clone()],
            department: None,
        };
        let changes = doc.changes_since(&[]);
        let mut tip = commit::LogTip::read(&mut tx, seq).await?;
        let ready = commit::Ready::new(doc, changes, true, 0, Vec::new(), None)?;
        commit::store_merged(&mut tx, &device, &ready, &mut tip).await?;
        let doc = ready.doc;
        sqlx::query("INSERT INTO intake_orders (source, order_no, doc_id) VALUES ($1, $2, $3)")
            .bind(source)
            .bind(order_no)
            .bind(doc.id().to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE seq_counter SET value = $1 WHERE id = 1")
            .bind(tip.seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((doc.id(), true))
    }

    async fn service_device(&self, service: Service) -> Result<DeviceId, StorageError> {
        let key = service.meta_key();
        let existing: Option<String> =
            sqlx::query_scalar("SELECT value FROM server_meta WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        if let Some(id) = existing {
            return DeviceId::from_str(&id).map_err(|e| StorageError::Corrupt(e.to_string()));
        }
        let id = DeviceId::new();
        // Two racing first calls: the second insert is ignored and both read the winner.
        sqlx::query(
            "INSERT INTO server_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        let id: String = sqlx::query_scalar("SELECT value FROM server_meta WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        DeviceId::from_str(&id).map_err(|e| StorageError::Corrupt(e.to_string()))
    }

    async fn households_numbered(
        &self,
        numbers: &[String],
    ) -> Result<Vec<HouseholdRow>, StorageError> {
        let mut out = Vec::new();
        for chunk in numbers.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT * FROM p_households WHERE number IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for n in chunk {
                q = q.bind(n);
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    async fn residents_with_id(
        &self,
        id_numbers: &[String],
    ) -> Result<Vec<ResidentRow>, StorageError> {
        let mut out = Vec::new();
        for chunk in id_numbers.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT * FROM p_residents WHERE id_number IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for n in chunk {
                q = q.bind(n);
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    async fn residents_within(
        &self,
        within: Option<&GridCode>,
    ) -> Result<Vec<ResidentRow>, StorageError> {
        let (lo, hi) = prefix_range(within);
        Ok(sqlx::query_as(
            "SELECT * FROM p_residents WHERE grid >= $1 AND grid < $2 \
             ORDER BY grid, household_id, resident_id",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn record_import(&self, run: &ImportRun) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO imports (actor, device, file_name, file_sha256, operator, started_at, \
             rows_total, rows_bad, created, updated, unchanged) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (actor) DO UPDATE SET rows_total = excluded.rows_total, \
             rows_bad = excluded.rows_bad, created = excluded.created, \
             updated = excluded.updated, unchanged = excluded.unchanged",
        )
        .bind(&run.actor)
        .bind(run.device.to_string())
        .bind(&run.file_name)
        .bind(&run.file_sha256)
        .bind(&run.operator)
        .bind(run.started_at)
        .bind(run.rows_total)
        .bind(run.rows_bad)
        .bind(run.created)
        .bind(run.updated)
        .bind(run.unchanged)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn import_state(&self, docs: &[DocId]) -> Result<Vec<ImportState>, StorageError> {
        let mut out = Vec::new();
        for chunk in docs.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT * FROM import_state WHERE doc_id IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query_as(AssertSqlSafe(sql));
            for d in chunk {
                q = q.bind(d.to_string());
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    async fn save_import_state(&self, rows: &[ImportState]) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO import_state (doc_id, member, field, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (doc_id, member, field) DO UPDATE SET value = excluded.value",
            )
            .bind(r.doc_id.to_string())
            .bind(&r.member)
            .bind(&r.field)
            .bind(&r.value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn imports(&self) -> Result<Vec<ImportRun>, StorageError> {
        Ok(
            sqlx::query_as("SELECT * FROM imports ORDER BY started_at DESC, actor")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn grids(&self) -> Result<Vec<GridRow>, StorageError> {
        Ok(sqlx::query_as("SELECT * FROM p_grids ORDER BY code")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn cases_reported_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<CaseRow>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT * FROM p_cases WHERE reported_at >= $1 AND reported_at < $2 AND status <> 'draft' \
             ORDER BY reported_at, doc_id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Values bound per `IN (...)` list: well under SQLite's and PostgreSQL's parameter limits.
const IN_CHUNK: usize = 500;

/// `$1, $2, ... $n`.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A server-side writer that is not an enrolled device; its device id is made once and kept,
/// and no enrollment may claim it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Cases from intake systems (12345, mini-programs).
    Intake,
    /// Households and residents from a register import.
    Import,
}

impl Service {
    /// Every service, for the enrollment check.
    pub const ALL: [Service; 2] = [Service::Intake, Service::Import];

    fn meta_key(self) -> &'static str {
        match self {
            Service::Intake => "intake_device",
            Service::Import => "import_device",
        }
    }
}

/// The value one field had in the register when it was last imported.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ImportState {
    /// The household document.
    #[sqlx(try_from = "String")]
    pub doc_id: DocId,
    /// The member's id, or empty for the household's own fields.
    pub member: String,
    /// The record field (`address`, `phones`, ...).
    pub field: String,
    /// Its value as the register gave it.
    pub value: String,
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

/// A half-open text range covering every code under `within` (codes are digits, and `:`
/// sorts right after `9`), or everything.
fn prefix_range(within: Option<&GridCode>) -> (String, String) {
    match within {
        Some(g) => (g.to_string(), format!("{g}:")),
        None => (String::new(), "~".into()),
    }
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
