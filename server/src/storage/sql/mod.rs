//! The SQL backends' shared body: every statement of the [`Storage`] trait, written once in
//! portable SQL (numbered parameters, `ON CONFLICT`, `RETURNING`, no engine-only functions)
//! and compiled once per backend. The including module (`storage::sqlite` or
//! `storage::postgres`) names the database `Db`, its projection writer `projection_sql`, and
//! the few places the engines differ in `dialect`.

use std::collections::BTreeMap;
use std::str::FromStr;

use automerge::ChangeHash;
use gridsync_core::Document;
use gridsync_core::clock::now_ms;
use gridsync_core::projection::{CaseRow, GridRow, HouseholdRow, PROJECTION_VERSION, ResidentRow};
use gridsync_proto::{DeviceId, DocId, DocPull, GridCode, Hash};
use serde_bytes::ByteBuf;
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::Mutex;

use super::{Db, dialect, projection_sql};
use crate::auth::{Device, Role, check_enrollment, join_scopes};
use crate::storage::*;

mod commit;
mod console;
mod photos;
mod register;

/// A connection of this backend.
pub(crate) type Conn = <Db as sqlx::Database>::Connection;
/// A result row of this backend.
pub(crate) type DbRow = <Db as sqlx::Database>::Row;
/// This backend's connection pool.
pub(crate) type Pool = sqlx::Pool<Db>;

/// One feed row chosen for a pull, before its bytes are read.
pub(super) struct FeedRow {
    /// Its sequence number.
    seq: i64,
    /// The document it belongs to.
    doc: String,
    /// The whole document entered the scope here (send its changes up to `seq`), rather
    /// than one change.
    whole: bool,
    /// The bytes it sends.
    size: usize,
    /// It came from a grid feed the device reads from the start, and the device reads
    /// snapshots: its document may go as one compacted snapshot instead of its history.
    snapshot: bool,
}

/// How many changes' bytes one query reads by sequence number.
pub(super) const BYTES_BY_SEQ_BATCH: usize = 64;

/// `SELECT seq, bytes FROM changes WHERE seq IN ($1, ..., $64)`: portable, one statement for
/// every batch (unused placeholders are bound to -1).
pub(super) fn bytes_by_seq_sql() -> &'static String {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let params: Vec<String> = (1..=BYTES_BY_SEQ_BATCH).map(|i| format!("${i}")).collect();
        format!(
            "SELECT seq, bytes FROM changes WHERE seq IN ({})",
            params.join(", ")
        )
    });
    &SQL
}

/// The newest change's sequence number and chain hash (`None`: no change yet).
pub(super) async fn chain_tip(conn: &mut Conn) -> Result<Option<(i64, [u8; 32])>, StorageError> {
    let row: Option<(i64, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT seq, chain FROM changes ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|(seq, chain)| Ok((seq, chain_from_bytes(seq, chain)?)))
        .transpose()
}

/// Whether the change at the anchor's sequence number still has the anchor's chain hash.
pub(super) async fn anchor_holds(conn: &mut Conn, anchor: &Anchor) -> Result<bool, StorageError> {
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

/// A server store on one SQL database (see the including module for which).
#[derive(Debug, Clone)]
pub struct SqlStorage {
    pub(super) pool: Pool,
    // The newest document schema this server reads (see `reading_schema`).
    pub(super) newest_schema: u32,
    // Merges are serialised in-process (SQLite has one writer anyway); the counter row update
    // at the start of each merge does the same across processes.
    pub(super) write_lock: std::sync::Arc<Mutex<()>>,
    // Notices of committed changes, for live sync.
    pub(super) bus: ChangeBus,
    // The Automerge work of merges runs outside the write lock, on the blocking pool, at most
    // this many at once (one per core), so a costly push holds one core, not the server.
    pub(super) merge_cpu: std::sync::Arc<tokio::sync::Semaphore>,
    // Decoded documents the merge path reuses (see `doc_cache`).
    pub(super) cache: std::sync::Arc<crate::storage::doc_cache::DocCache>,
    // Where sync requests spend their time (`/metrics`).
    pub(super) phases: std::sync::Arc<crate::metrics::Phases>,
}

pub(super) fn heads_to_bytes(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

pub(super) fn heads_from_bytes(bytes: &[u8]) -> Vec<Hash> {
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
pub(super) async fn read_epoch(conn: &mut Conn) -> Result<u64, StorageError> {
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

pub(super) fn parse_device(row: &DbRow) -> Result<Device, StorageError> {
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
pub(super) struct StoredBytes {
    pub(super) bytes: Vec<u8>,
    pub(super) pending: i64,
    pub(super) version: i64,
}

pub(super) async fn load_bytes(
    conn: &mut Conn,
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

pub(super) fn decode_doc(
    id: DocId,
    bytes: &[u8],
    newest_schema: u32,
) -> Result<Document, StorageError> {
    Document::load_upto(bytes, newest_schema)
        .map_err(|e| StorageError::Corrupt(format!("document {id}: {e}")))
}

pub(super) async fn load_doc(
    conn: &mut Conn,
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

impl SqlStorage {
    /// The same store with a document cache of other limits (`DocCacheLimits::OFF` for none).
    pub fn with_doc_cache(mut self, limits: crate::storage::doc_cache::DocCacheLimits) -> Self {
        self.cache = std::sync::Arc::new(crate::storage::doc_cache::DocCache::new(limits));
        self
    }

    /// Wraps a migrated pool: fills in what older versions left out and brings the
    /// projections up to this build's definition.
    pub(super) async fn init(pool: Pool, bus: ChangeBus) -> Result<Self, StorageError> {
        let storage = Self {
            pool,
            bus,
            newest_schema: gridsync_core::document::SCHEMA_VERSION,
            write_lock: std::sync::Arc::new(Mutex::new(())),
            merge_cpu: std::sync::Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            )),
            cache: std::sync::Arc::new(
                crate::storage::doc_cache::DocCache::new(Default::default()),
            ),
            phases: Default::default(),
        };
        storage.backfill_chain().await?;
        // Projections are derived data: when their definition changed, recompute them.
        let version: Option<String> =
            sqlx::query_scalar("SELECT value FROM server_meta WHERE key = 'projection_version'")
                .fetch_optional(&storage.pool)
                .await?;
        // Rebuilt when older than this build's (or absent), never when newer: during a rolling
        // upgrade of several processes on one database, an old process restarting must not
        // turn the new projections back.
        let stored: Option<u32> = version.as_deref().and_then(|v| v.parse().ok());
        let ours: u32 = PROJECTION_VERSION.parse().unwrap_or(0);
        if stored.is_none_or(|v| v < ours) {
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
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// A document as its stored snapshot followed by the changes stored after it, or `None` when
/// it has no snapshot or the snapshot is larger than one wire blob may be (then it goes
/// change by change).
async fn snapshot_parts(conn: &mut Conn, doc: &str) -> Result<Option<Vec<Vec<u8>>>, StorageError> {
    let Some((snapshot, snapshot_seq)) = sqlx::query_as::<_, (Option<Vec<u8>>, i64)>(
        "SELECT snapshot, snapshot_seq FROM docs WHERE doc_id = $1",
    )
    .bind(doc)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let Some(snapshot) =
        snapshot.filter(|s| !s.is_empty() && s.len() <= gridsync_proto::limits::MAX_CHANGE_BYTES)
    else {
        return Ok(None);
    };
    let after: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT bytes FROM changes WHERE doc_id = $1 AND seq > $2 ORDER BY seq")
            .bind(doc)
            .bind(snapshot_seq)
            .fetch_all(&mut *conn)
            .await?;
    let mut parts = Vec::with_capacity(after.len() + 1);
    parts.push(snapshot);
    parts.extend(after);
    Ok(Some(parts))
}

/// What a device's cursor means against this database now.
struct CursorHere {
    /// The newest sequence number handed out.
    max: u64,
    /// This server's epoch.
    epoch: u64,
    /// The cursor means nothing here (another epoch, positions beyond the newest change, or
    /// a history this database does not hold: a restored server, see `Cursor`): start that
    /// device over; the phone deduplicates what it already has.
    reset: bool,
}

impl CursorHere {
    async fn read(conn: &mut Conn, cursor: &Cursor) -> Result<Self, StorageError> {
        let max: i64 = sqlx::query_scalar("SELECT value FROM seq_counter WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
        let max = u64::try_from(max).unwrap_or(0);
        let epoch = read_epoch(conn).await?;
        let foreign_history = match &cursor.anchor {
            Some(anchor) => !anchor_holds(conn, anchor).await?,
            None => false,
        };
        let reset = foreign_history
            || (!cursor.seen.is_empty()
                && (cursor.epoch != epoch || cursor.seen.values().any(|&p| p > max)));
        Ok(Self { max, epoch, reset })
    }
}

/// The feed rows after a position that a replica has not written itself: a whole-document
/// row, or a change by another actor (`$3`; other actors of the same device, a copy of its
/// store, it may not have).
const FEED_AFTER: &str = "FROM scope_feed f LEFT JOIN changes c ON c.seq = f.seq \
     WHERE f.scope = $1 AND f.seq > $2 AND (f.full_doc IS NOT NULL OR c.actor <> $3)";

impl SqlStorage {
    /// Announces what a write transaction changed: on PostgreSQL inside it (`NOTIFY` is
    /// delivered to every process, this one included, when it commits, and never if it
    /// does not); call [`SqlStorage::announced`] after the commit.
    pub(super) async fn announce(
        &self,
        conn: &mut Conn,
        touched: &std::collections::BTreeSet<String>,
    ) -> Result<(), StorageError> {
        if !touched.is_empty() {
            dialect::announce(conn, &touched_notice(touched)).await?;
        }
        Ok(())
    }

    /// After the commit: where notices do not travel through the database (SQLite, one
    /// process), tells this process's waiters.
    pub(super) fn announced(&self, touched: std::collections::BTreeSet<String>) {
        if dialect::NOTICES_LOCAL && !touched.is_empty() {
            self.bus.send(touched_notice(&touched));
        }
    }
}

fn touched_notice(touched: &std::collections::BTreeSet<String>) -> Notice {
    Notice(Some(touched.iter().cloned().collect()))
}

impl Storage for SqlStorage {
    async fn close(&self) {
        self.pool.close().await;
    }

    async fn new_epoch(&self) -> Result<u64, StorageError> {
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

    fn watch(&self) -> ChangeWatch {
        self.bus.subscribe()
    }

    fn phases(&self) -> &crate::metrics::Phases {
        &self.phases
    }

    fn doc_cache_stats(&self) -> crate::storage::doc_cache::DocCacheStats {
        self.cache.stats()
    }

    async fn has_news(
        &self,
        device: &Device,
        replica: Option<&automerge::ActorId>,
        cursor: &Cursor,
    ) -> Result<bool, StorageError> {
        let mut conn = self.pool.acquire().await?;
        let here = CursorHere::read(&mut conn, cursor).await?;
        if here.reset {
            return Ok(true);
        }
        let me = replica
            .map(automerge::ActorId::to_hex_string)
            .unwrap_or_default();
        for scope in device.feed_scopes() {
            let start = cursor.position(&scope, false);
            if start >= here.max {
                continue;
            }
            let found: Option<i64> =
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT f.seq {FEED_AFTER} LIMIT 1")))
                    .bind(&scope)
                    .bind(i64::try_from(start).unwrap_or(i64::MAX))
                    .bind(&me)
                    .fetch_optional(&mut *conn)
                    .await?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

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
        dialect::snapshot_reads(&mut tx).await?;
        let CursorHere { max, epoch, reset } = CursorHere::read(&mut tx, cursor).await?;
        let position = |scope: &str| cursor.position(scope, reset);
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
            // Department feeds never: a department may read only what was written while it
            // held the case, and a snapshot is the whole document.
            let snapshot = budget.snapshots && start == 0 && !scope.starts_with("dept:");
            // A whole-document row weighs what it sends: the document's changes up to the row.
            let found: Vec<(i64, Option<String>, Option<String>, i64)> =
                sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT f.seq, f.full_doc, c.doc_id, \
                   CASE WHEN f.full_doc IS NULL THEN c.size ELSE \
                     (SELECT CAST(COALESCE(SUM(a.size), 0) AS BIGINT) FROM changes a \
                      WHERE a.doc_id = f.full_doc AND a.seq <= f.seq) END \
                 {FEED_AFTER} ORDER BY f.seq LIMIT $4"
                )))
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
                                snapshot: false,
                            }),
                            (None, Some(doc)) => Some(FeedRow {
                                seq,
                                doc,
                                whole: false,
                                size,
                                snapshot,
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
        // A first read of a grid: each document as its stored snapshot and the changes after
        // it (everything up to now, so later rows of it re-send changes the phone already
        // has, which it ignores), instead of change by change.
        // Snapshots weigh what they send, on top of the rows' budget: once they have taken
        // `max_bytes`, the page's other documents go change by change (within the budget
        // already), so a response stays under twice the budget, far below the message limit.
        let mut snapshots: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        let mut snapshot_bytes = 0usize;
        for r in rows.iter().filter(|r| r.snapshot) {
            if snapshots.contains_key(&r.doc) {
                continue;
            }
            if snapshot_bytes >= budget.max_bytes {
                break;
            }
            if let Some(parts) = snapshot_parts(&mut tx, &r.doc).await? {
                let size = parts.iter().map(Vec::len).sum::<usize>();
                if snapshot_bytes > 0 && snapshot_bytes + size > budget.max_bytes {
                    break;
                }
                snapshot_bytes += size;
                bytes_loaded += size;
                snapshots.insert(r.doc.clone(), parts);
            }
        }
        let mut single: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        let wanted: Vec<i64> = rows
            .iter()
            .filter(|r| !(r.whole || (r.snapshot && snapshots.contains_key(&r.doc))))
            .map(|r| r.seq)
            .collect();
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
        let mut snapshotted = std::collections::BTreeSet::new();
        for r in rows {
            let snapshot = if r.snapshot {
                snapshots.remove(&r.doc)
            } else {
                None
            };
            let changes: Vec<Vec<u8>> = if let Some(parts) = snapshot {
                // Sent once, with the document's first row; nothing for its later rows.
                snapshotted.insert(r.doc.clone());
                parts
            } else if r.snapshot && snapshotted.contains(&r.doc) {
                Vec::new()
            } else if r.whole {
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
        // The server's own writers (services, console people) are never a phone's to claim.
        let keys = Service::ALL.map(Service::meta_key);
        let sql = format!(
            "SELECT key FROM server_meta WHERE key IN ({}) AND value = ${} \
             UNION ALL SELECT login FROM console_users WHERE device_id = ${}",
            placeholders(keys.len()),
            keys.len() + 1,
            keys.len() + 1
        );
        let mut reserved = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
        for key in keys {
            reserved = reserved.bind(key);
        }
        let service: Option<String> = reserved
            .bind(device.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if matches!(existing, Some(None)) || service.is_some() {
            return Err(EnrollError::AlreadyEnrolled(device));
        }
        if existing.is_some() && for_device.is_none() {
            return Err(EnrollError::NeedsCodeForDevice(device));
        }
        // Conditional, so two servers redeeming one code at once cannot both succeed.
        let taken = sqlx::query(
            "UPDATE enrollments SET used_by = $1, used_at = $2 WHERE code_hash = $3 AND used_by IS NULL",
        )
        .bind(device.to_string())
        .bind(now)
        .bind(code_hash)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() != 1 {
            return Err(EnrollError::InvalidCode);
        }
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
            "SELECT device_id, name, role, scopes, enrolled_at, revoked_at, reenrolled_at, skew_ms, \
             skew_at FROM devices ORDER BY enrolled_at",
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
                    last_push_at: r.try_get("skew_at")?,
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
        // Wildcards and PostgreSQL's LIKE escape character are taken out: a name is matched as
        // text on both backends.
        let pattern = format!("%{}%", name.trim().replace(['%', '_', '\\'], ""));
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
        // Take the write lock as merges do, so no other process writes projections meanwhile.
        sqlx::query("UPDATE seq_counter SET value = value WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        projection_sql::clear(&mut tx).await?;
        let ids: Vec<String> = sqlx::query_scalar("SELECT doc_id FROM docs ORDER BY doc_id")
            .fetch_all(&mut *tx)
            .await?;
        for id in &ids {
            let id = DocId::from_str(id).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            if let Some((doc, _)) = load_doc(&mut tx, id, self.newest_schema).await? {
                projection_sql::store(&mut tx, &doc).await?;
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
        let ready = commit::Ready::new(doc, changes, true, (0, 0), Vec::new(), None)?;
        commit::store_merged(&mut tx, &device, &ready, &mut tip).await?;
        tip.flush(&mut tx).await?;
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
        self.announce(&mut tx, &tip.touched).await?;
        tx.commit().await?;
        self.announced(tip.touched);
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
pub(super) const IN_CHUNK: usize = 500;

/// `$1, $2, ... $n`.
pub(super) fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A half-open text range covering every code under `within` (codes are digits, and `:`
/// sorts right after `9`), or everything.
pub(super) fn prefix_range(within: Option<&GridCode>) -> (String, String) {
    match within {
        Some(g) => (g.to_string(), format!("{g}:")),
        None => (String::new(), "~".into()),
    }
}
