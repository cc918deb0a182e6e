//! The merge path of [`SqlStorage`]: the Automerge work of every push (load, apply, judge,
//! project, snapshot) runs first, outside the write lock and on the blocking pool, in parallel
//! with other devices' pushes; then one short transaction under the lock writes what it made.
//!
//! **Invariant:** what is committed was merged on the state it is committed over. Each
//! prepared push remembers the version (`docs.last_seq`) it was merged on; under the lock the
//! version is read again, and a document another push changed in between is merged again
//! there (rare: two devices pushing the same document at the same instant).

use automerge::Change;
use gridsync_core::Document;
use gridsync_core::clock::now_ms;
use gridsync_core::projection::{Projection, project, value_rows};
use gridsync_core::time_flags::{TimeFlag, events_before_their_cause, flag_arrivals};
use gridsync_proto::{AckStatus, DocAck, DocPull, DocPush, Hash};
use serde_bytes::ByteBuf;

use super::{
    CHAIN_START, MergeOutcome, Receipt, SNAPSHOT_AFTER, SqlStorage, StorageError, StoredBytes,
    chain_next, chain_tip, decode_doc, heads_to_bytes, load_bytes, scope_levels,
};
use super::{Conn, projection_sql};
use crate::auth::{Device, department_scope};
use crate::merge::{Merged, Rejection, merge_push};
use crate::metrics::Phase;
use crate::storage::doc_cache::CachedDoc;

/// The newest entry of the change log while a merge appends to it: the sequence counter (also
/// advanced by whole-document feed rows) and the newest change's chain hash.
pub(super) struct LogTip {
    pub(super) seq: i64,
    chain: [u8; 32],
    /// The scopes of the documents written and the department feeds written (a [`Notice`]).
    pub(super) touched: std::collections::BTreeSet<String>,
    /// Change rows not yet written (see [`LogTip::flush`]).
    changes: Vec<ChangeRow>,
    /// Feed rows not yet written: scope, sequence number, whole document.
    feed: Vec<(String, i64, Option<String>)>,
    /// New documents' `docs` rows not yet written.
    new_docs: Vec<NewDoc>,
    /// New documents' projection rows not yet written (document id, rows).
    new_rows: Vec<(String, Projection)>,
}

/// One `docs` row of a document created in this transaction.
struct NewDoc {
    id: String,
    doc_type: &'static str,
    scope: String,
    creator: String,
    snapshot: Vec<u8>,
    seq: i64,
    heads: Vec<u8>,
}

/// One `changes` row waiting to be written.
struct ChangeRow {
    seq: i64,
    doc: String,
    hash: Vec<u8>,
    device: String,
    bytes: Vec<u8>,
    chain: Vec<u8>,
    actor: String,
}

/// Rows per multi-row `INSERT` (8 parameters each for changes: far below both engines'
/// parameter limits).
const ROWS_PER_INSERT: usize = 400;

impl LogTip {
    /// Reads the chain tip; `seq` is the counter the caller has just locked.
    pub(super) async fn read(conn: &mut Conn, seq: i64) -> Result<Self, StorageError> {
        let chain = chain_tip(conn).await?.map_or(CHAIN_START, |(_, c)| c);
        Ok(Self {
            seq,
            chain,
            touched: std::collections::BTreeSet::new(),
            changes: Vec::new(),
            feed: Vec::new(),
            new_docs: Vec::new(),
            new_rows: Vec::new(),
        })
    }

    /// Writes the queued change and feed rows, a few multi-row statements for a whole push
    /// instead of one statement per change and per feed level (the statements, not the
    /// engine, were most of a storm's time). Called before anything in the transaction
    /// reads the change log again, and before the counter is written.
    pub(super) async fn flush(&mut self, conn: &mut Conn) -> Result<(), StorageError> {
        for chunk in self.new_docs.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO docs (doc_id, doc_type, scope, creator, snapshot, snapshot_seq, heads, last_seq, pending) VALUES {}",
                value_rows(chunk.len(), 9)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for d in chunk {
                q = q
                    .bind(&d.id)
                    .bind(d.doc_type)
                    .bind(&d.scope)
                    .bind(&d.creator)
                    .bind(&d.snapshot)
                    .bind(d.seq)
                    .bind(&d.heads)
                    .bind(d.seq)
                    .bind(0_i64);
            }
            q.execute(&mut *conn).await?;
        }
        self.new_docs.clear();
        if !self.new_rows.is_empty() {
            projection_sql::insert_many(conn, std::mem::take(&mut self.new_rows))
                .await
                .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        }
        for chunk in self.changes.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO changes (seq, doc_id, hash, device, bytes, size, chain, actor) VALUES {}",
                value_rows(chunk.len(), 8)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(r.seq)
                    .bind(&r.doc)
                    .bind(&r.hash)
                    .bind(&r.device)
                    .bind(&r.bytes)
                    .bind(i64::try_from(r.bytes.len()).unwrap_or(i64::MAX))
                    .bind(&r.chain)
                    .bind(&r.actor);
            }
            q.execute(&mut *conn).await?;
        }
        self.changes.clear();
        for chunk in self.feed.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO scope_feed (scope, seq, full_doc) VALUES {}",
                value_rows(chunk.len(), 3)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (scope, seq, full) in chunk {
                q = q.bind(scope).bind(*seq).bind(full);
            }
            q.execute(&mut *conn).await?;
        }
        self.feed.clear();
        Ok(())
    }
}

/// A merged document with everything its commit writes already computed.
pub(super) struct Ready {
    pub(super) doc: Document,
    new_changes: Vec<Change>,
    created: bool,
    pending_before: i64,
    /// Length of the document's stored form once this commit is written.
    stored_len: usize,
    heads: Vec<automerge::ChangeHash>,
    /// A fresh snapshot, when the document is new or has gathered enough changes.
    snapshot: Option<Vec<u8>>,
    /// The projection rows; `None` when the push changed nothing (nothing is written then).
    rows: Option<Projection>,
    /// For a case: the departments holding it now (lead and co-departments).
    departments: Option<std::collections::BTreeSet<String>>,
    /// Entry times the push wrote, to be judged against the receipt.
    times: Vec<(String, i64)>,
    /// For a case: events stamped before an event their author had seen.
    cause_flags: Vec<TimeFlag>,
}

impl Ready {
    /// Does the Automerge work of a commit: heads, snapshot, projection rows, departments.
    pub(super) fn new(
        mut doc: Document,
        new_changes: Vec<Change>,
        created: bool,
        (pending_before, stored_len_before): (i64, usize),
        times: Vec<(String, i64)>,
        rows: Option<Projection>,
    ) -> Result<Self, StorageError> {
        let pending = pending_before + i64::try_from(new_changes.len()).unwrap_or(i64::MAX);
        let snapshot = (created || pending > SNAPSHOT_AFTER).then(|| doc.save());
        let stored_len = match &snapshot {
            Some(s) => s.len(),
            None => {
                stored_len_before
                    + new_changes
                        .iter()
                        .map(|c| c.raw_bytes().len())
                        .sum::<usize>()
            }
        };
        let changed = created || !new_changes.is_empty();
        let rows = match rows {
            Some(rows) => Some(rows),
            None if changed => {
                Some(project(&doc).map_err(|e| StorageError::Corrupt(e.to_string()))?)
            }
            None => None,
        };
        let (departments, cause_flags) = match &rows {
            Some(Projection::Case { .. }) => {
                let case: gridsync_core::records::Case = doc
                    .read()
                    .map_err(|e| StorageError::Corrupt(format!("case {}: {e}", doc.id())))?;
                let cause_flags = events_before_their_cause(&case);
                let state = case.state();
                let departments = match state.lead {
                    Some(lead) => std::iter::once(lead).chain(state.co).collect(),
                    None => Default::default(),
                };
                (Some(departments), cause_flags)
            }
            _ => (None, Vec::new()),
        };
        Ok(Self {
            heads: doc.heads(),
            doc,
            new_changes,
            created,
            pending_before,
            stored_len,
            snapshot,
            rows,
            departments,
            times,
            cause_flags,
        })
    }
}

/// What the first phase made of one push.
enum Outcome {
    /// The server's copy does not load (a newer schema during a rolling upgrade, damage).
    Unreadable(String),
    Rejected(Rejection),
    NeedSync(Option<Vec<u8>>),
    Stored {
        ready: Box<Ready>,
        sync_reply: Option<Vec<u8>>,
    },
}

/// One push merged outside the lock, with the document version it was merged on.
struct Prepared {
    version: Option<i64>,
    outcome: Outcome,
}

/// Whether the department-bound device is a member of the case now.
async fn dept_member(
    conn: &mut Conn,
    device: &Device,
    push: &DocPush,
) -> Result<bool, StorageError> {
    // A clerk's device without a department is a member of nothing, so `may_write` refuses
    // all its writes.
    Ok(match device.writes_for_department() {
        Some(dept) => {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM case_departments WHERE doc_id = $1 AND dept = $2",
            )
            .bind(push.doc.to_string())
            .bind(dept)
            .fetch_one(&mut *conn)
            .await?
                > 0
        }
        None => false,
    })
}

/// What a merge reads of one document: its stored state and version, and the device's
/// membership.
struct Inputs {
    stored: Stored,
    member: bool,
}

/// A document's stored state as a merge starts from it.
enum Stored {
    /// Not stored yet.
    Absent,
    /// Read from the database, still to be decoded.
    Bytes(StoredBytes),
    /// Taken from the document cache at the version stored now.
    Cached(Box<CachedDoc>, i64),
}

impl Stored {
    fn version(&self) -> Option<i64> {
        match self {
            Stored::Absent => None,
            Stored::Bytes(b) => Some(b.version),
            Stored::Cached(_, v) => Some(*v),
        }
    }
}

/// Reads what the merge of `push` needs: the document from the cache when it holds the
/// version stored now, from the database otherwise; and the device's membership.
async fn read_inputs(
    storage: &SqlStorage,
    conn: &mut Conn,
    device: &Device,
    push: &DocPush,
) -> Result<Inputs, StorageError> {
    let member = dept_member(conn, device, push).await?;
    if let Some(held) = storage.cache.version_of(push.doc) {
        let now = version_now(conn, push).await?;
        if now == Some(held)
            && let Some(cached) = storage.cache.take(push.doc, held)
        {
            return Ok(Inputs {
                stored: Stored::Cached(Box::new(cached), held),
                member,
            });
        }
    }
    let stored = match load_bytes(conn, push.doc).await? {
        Some(bytes) => {
            storage.cache.missed();
            Stored::Bytes(bytes)
        }
        None => Stored::Absent,
    };
    Ok(Inputs { stored, member })
}

/// Runs the Automerge work of one push on the blocking pool (no connection is held).
async fn prepare(
    storage: &SqlStorage,
    inputs: Inputs,
    device: &Device,
    push: &DocPush,
) -> Result<Prepared, StorageError> {
    let Inputs { stored, member } = inputs;
    let version = stored.version();
    let newest_schema = storage.newest_schema;
    let permit = storage
        .merge_cpu
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| StorageError::Corrupt(format!("merge pool closed: {e}")))?;
    let (device, push) = (device.clone(), push.clone());
    let phases = storage.phases.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let _timer = phases.time(Phase::Merge);
        merge_one(&device, &push, stored, member, newest_schema)
    })
    .await
    .map_err(|e| StorageError::Corrupt(format!("merge task failed: {e}")))??;
    Ok(Prepared { version, outcome })
}

/// The Automerge work of one push (blocking).
fn merge_one(
    device: &Device,
    push: &DocPush,
    stored: Stored,
    member: bool,
    newest_schema: u32,
) -> Result<Outcome, StorageError> {
    let stored_len = match &stored {
        Stored::Absent => 0,
        Stored::Bytes(s) => s.bytes.len(),
        Stored::Cached(c, _) => c.stored_len,
    };
    if let Err(rejection) = crate::merge::cost::check_memory(push, stored_len) {
        return Ok(Outcome::Rejected(rejection));
    }
    let (existing, pending) = match stored {
        Stored::Bytes(s) => match decode_doc(push.doc, &s.bytes, newest_schema) {
            Ok(doc) => (Some(doc), s.pending),
            Err(StorageError::Corrupt(why)) => return Ok(Outcome::Unreadable(why)),
            Err(e) => return Err(e),
        },
        Stored::Cached(c, _) => {
            let c = *c;
            (Some(c.doc), c.pending)
        }
        Stored::Absent => (None, 0),
    };
    Ok(match merge_push(existing, device, push, member) {
        Err(rejection) => Outcome::Rejected(rejection),
        Ok(Merged::NeedSync { sync_reply }) => Outcome::NeedSync(sync_reply),
        Ok(Merged::Stored {
            doc,
            new_changes,
            created,
            sync_reply,
            times,
            rows,
        }) => Outcome::Stored {
            ready: Box::new(Ready::new(
                *doc,
                new_changes,
                created,
                (pending, stored_len),
                times,
                rows.map(|r| *r),
            )?),
            sync_reply,
        },
    })
}

/// The stored version (`docs.last_seq`, `None`: not stored) of every document pushed, each
/// document once.
async fn versions_now(
    conn: &mut Conn,
    pushes: &[DocPush],
) -> Result<std::collections::HashMap<gridsync_proto::DocId, Option<i64>>, StorageError> {
    let mut out: std::collections::HashMap<_, Option<i64>> =
        pushes.iter().map(|p| (p.doc, None)).collect();
    let ids: Vec<String> = out.keys().map(ToString::to_string).collect();
    for chunk in ids.chunks(super::IN_CHUNK) {
        let sql = format!(
            "SELECT doc_id, last_seq FROM docs WHERE doc_id IN ({})",
            super::placeholders(chunk.len())
        );
        let mut q = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id);
        }
        for (id, seq) in q.fetch_all(&mut *conn).await? {
            if let Ok(id) = id.parse() {
                out.insert(id, Some(seq));
            }
        }
    }
    Ok(out)
}

async fn version_now(conn: &mut Conn, push: &DocPush) -> Result<Option<i64>, StorageError> {
    Ok(
        sqlx::query_scalar("SELECT last_seq FROM docs WHERE doc_id = $1")
            .bind(push.doc.to_string())
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Merges a device's pushes: each prepared outside the lock, all committed in one transaction.
pub(super) async fn merge(
    storage: &SqlStorage,
    device: &Device,
    pushes: &[DocPush],
    receipt: Receipt,
) -> Result<MergeOutcome, StorageError> {
    let mut outcome = MergeOutcome::default();
    if pushes.is_empty() {
        return Ok(outcome);
    }
    // Read everything first, in one short read transaction (bytes, versions and memberships
    // agree), and give the connection back before the Automerge work.
    let mut inputs = Vec::with_capacity(pushes.len());
    {
        let _timer = storage.phases.time(Phase::Read);
        let mut read = storage.pool.begin().await?;
        for push in pushes {
            inputs.push(read_inputs(storage, &mut read, device, push).await?);
        }
        read.rollback().await?;
    }
    let mut prepared = Vec::with_capacity(pushes.len());
    for (push, input) in pushes.iter().zip(inputs) {
        prepared.push(prepare(storage, input, device, push).await?);
    }
    let waiting = std::time::Instant::now();
    let _guard = storage.write_lock.lock().await;
    let mut tx = storage.pool.begin().await?;
    // Writing the counter first takes the write lock before anything is read.
    let seq: i64 =
        sqlx::query_scalar("UPDATE seq_counter SET value = value WHERE id = 1 RETURNING value")
            .fetch_one(&mut *tx)
            .await?;
    storage.phases.record(Phase::LockWait, waiting.elapsed());
    let _commit_timer = storage.phases.time(Phase::Commit);
    // Documents as committed, for the cache once the transaction is durable.
    let mut committed: Vec<(gridsync_proto::DocId, i64, Box<Ready>)> = Vec::new();
    let start_seq = seq;
    let mut tip = LogTip::read(&mut tx, seq).await?;
    if let Some(skew) = receipt.skew() {
        sqlx::query("UPDATE devices SET skew_ms = $1, skew_at = $2 WHERE device_id = $3")
            .bind(skew)
            .bind(receipt.received_at)
            .bind(device.id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    // Every pushed document's version in one read (the lock is held: only this transaction
    // changes them from here on, and a document it already wrote is read again after a flush).
    let mut versions = versions_now(&mut tx, pushes).await?;
    for (push, mut p) in pushes.iter().zip(prepared) {
        let now = match versions.remove(&push.doc) {
            Some(v) => v,
            None => {
                tip.flush(&mut tx).await?;
                version_now(&mut tx, push).await?
            }
        };
        if now != p.version {
            // What this transaction queued must be in the log before the document is read.
            tip.flush(&mut tx).await?;
            // Another push changed this document since it was prepared: merge again on what
            // is stored now (under the lock, so nothing can move it again).
            let input = read_inputs(storage, &mut tx, device, push).await?;
            p = prepare(storage, input, device, push).await?;
        }
        let status = match p.outcome {
            Outcome::Unreadable(why) => {
                // One stored document this build cannot read refuses pushes to it, not the
                // request: the device sets it aside and the rest of its work goes on.
                tracing::error!(doc = %push.doc, %why, "stored document unreadable");
                AckStatus::Rejected {
                    code: "unreadable_on_server".into(),
                    message: format!(
                        "the server cannot read its copy of document {}; it is kept and will \
                         be merged once the server is upgraded or repaired",
                        push.doc
                    ),
                }
            }
            Outcome::Rejected(rejection) => {
                tracing::info!(doc = %push.doc, device = %device.id, code = rejection.code, "push rejected");
                if let Some(actor) = &rejection.diverged_actor {
                    sqlx::query(
                        "INSERT INTO retired_actors (actor, device, retired_at) \
                         VALUES ($1, $2, $3) ON CONFLICT (actor) DO NOTHING",
                    )
                    .bind(actor.to_hex_string())
                    .bind(device.id.to_string())
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                }
                AckStatus::Rejected {
                    code: rejection.code.to_owned(),
                    message: rejection.message,
                }
            }
            Outcome::NeedSync(sync_reply) => {
                outcome.sync_replies.push(DocPull {
                    doc: push.doc,
                    changes: Vec::new(),
                    heads: Vec::new(),
                    sync: sync_reply.map(ByteBuf::from),
                });
                AckStatus::NeedSync
            }
            Outcome::Stored { ready, sync_reply } => {
                storage.phases.merged(ready.new_changes.len());
                let version = if ready.created || !ready.new_changes.is_empty() {
                    let version = store_merged(&mut tx, device, &ready, &mut tip).await?;
                    store_time_flags(&mut tx, device, &ready, receipt).await?;
                    Some(version)
                } else {
                    p.version
                };
                let heads: Vec<Hash> = ready.heads.iter().map(|h| h.0).collect();
                if let Some(version) = version {
                    committed.push((push.doc, version, ready));
                }
                if let Some(reply) = sync_reply {
                    outcome.sync_replies.push(DocPull {
                        doc: push.doc,
                        changes: Vec::new(),
                        heads: heads.clone(),
                        sync: Some(ByteBuf::from(reply)),
                    });
                }
                let mut pushed = push.heads.clone();
                pushed.sort();
                let mut sorted = heads.clone();
                sorted.sort();
                AckStatus::Stored {
                    heads: (sorted != pushed).then_some(heads),
                }
            }
        };
        outcome.acks.push(DocAck {
            doc: push.doc,
            status,
        });
    }
    tip.flush(&mut tx).await?;
    if tip.seq != start_seq {
        sqlx::query("UPDATE seq_counter SET value = $1 WHERE id = 1")
            .bind(tip.seq)
            .execute(&mut *tx)
            .await?;
    }
    storage.announce(&mut tx, &tip.touched).await?;
    tx.commit().await?;
    storage.announced(tip.touched);
    for (id, version, ready) in committed {
        let Ready {
            doc,
            pending_before,
            new_changes,
            snapshot,
            stored_len,
            ..
        } = *ready;
        let pending = match snapshot {
            Some(_) => 0,
            None => pending_before + i64::try_from(new_changes.len()).unwrap_or(i64::MAX),
        };
        storage.cache.put(
            id,
            version,
            CachedDoc {
                doc,
                pending,
                stored_len,
            },
        );
    }
    Ok(outcome)
}

/// Writes a prepared merge: change rows and feed rows, the document's state, departments and
/// projections. Only SQL: every Automerge step was done in [`Ready::new`]. Returns the
/// document's version (`docs.last_seq`) as written.
pub(super) async fn store_merged(
    tx: &mut Conn,
    device: &Device,
    ready: &Ready,
    tip: &mut LogTip,
) -> Result<i64, StorageError> {
    let Ready {
        doc,
        new_changes,
        created,
        pending_before,
        heads,
        snapshot,
        rows,
        departments,
        ..
    } = ready;
    let (created, pending_before) = (*created, *pending_before);
    let LogTip {
        seq,
        chain,
        touched,
        changes: queued,
        feed,
        new_docs,
        new_rows,
    } = tip;
    let id = doc.id().to_string();
    let scope = doc.header().scope.clone();
    let levels = scope_levels(&scope);
    touched.insert(scope.to_string());
    for c in new_changes {
        *seq += 1;
        *chain = chain_next(chain, *seq, &c.hash().0);
        queued.push(ChangeRow {
            seq: *seq,
            doc: id.clone(),
            hash: c.hash().0.to_vec(),
            device: device.id.to_string(),
            bytes: c.raw_bytes().to_vec(),
            chain: chain.to_vec(),
            actor: c.actor_id().to_hex_string(),
        });
        for level in &levels {
            feed.push((level.clone(), *seq, None));
        }
    }
    let version = *seq;
    let heads = heads_to_bytes(heads);
    let pending = pending_before + i64::try_from(new_changes.len()).unwrap_or(i64::MAX);
    if created {
        // Written with the push's other new documents in one statement (`LogTip::flush`).
        let h = doc.header();
        new_docs.push(NewDoc {
            id: id.clone(),
            doc_type: h.doc_type.as_str(),
            scope: h.scope.to_string(),
            creator: h.creator.to_string(),
            snapshot: snapshot.clone().unwrap_or_default(),
            seq: *seq,
            heads,
        });
    } else if let Some(snapshot) = snapshot {
        // The snapshot covers every change up to `seq`; the change rows stay (they are the
        // history and the feed), only loading gets cheaper.
        sqlx::query(
            "UPDATE docs SET snapshot = $1, snapshot_seq = $2, heads = $3, last_seq = $2, pending = 0 \
             WHERE doc_id = $4",
        )
        .bind(snapshot)
        .bind(*seq)
        .bind(heads)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query("UPDATE docs SET heads = $1, last_seq = $2, pending = $3 WHERE doc_id = $4")
            .bind(heads)
            .bind(*seq)
            .bind(pending)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(departments) = departments {
        update_departments(tx, doc, departments, new_changes.len(), seq, touched, feed).await?;
    }
    if let Some(rows) = rows {
        if created {
            new_rows.push((id.clone(), rows.clone()));
        } else {
            projection_sql::store_rows(tx, doc.header(), rows.clone()).await?;
        }
    }
    Ok(version)
}

/// Keeps a case's department membership and the departments' feeds current: departments that
/// stay get the new changes, departments that join get the whole document at a fresh sequence
/// number, departments that leave get the changes of this merge (the ones that took the case
/// away from them, so their phones see it returned or re-dispatched) and nothing after.
async fn update_departments(
    tx: &mut Conn,
    doc: &Document,
    now: &std::collections::BTreeSet<String>,
    new_changes: usize,
    seq: &mut i64,
    touched: &mut std::collections::BTreeSet<String>,
    feed: &mut Vec<(String, i64, Option<String>)>,
) -> Result<(), StorageError> {
    let id = doc.id().to_string();
    let town = doc.header().scope.town();
    let before: std::collections::BTreeSet<String> =
        sqlx::query_scalar("SELECT dept FROM case_departments WHERE doc_id = $1")
            .bind(&id)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let n = i64::try_from(new_changes).unwrap_or(0);
    // This merge's changes, before joining departments take fresh sequence numbers.
    let merged = (*seq - n + 1)..=*seq;
    for dept in now.union(&before) {
        touched.insert(department_scope(dept, &town));
    }
    for dept in now.intersection(&before).chain(before.difference(now)) {
        let scope = department_scope(dept, &town);
        for s in merged.clone() {
            feed.push((scope.clone(), s, None));
        }
    }
    for dept in now.difference(&before) {
        *seq += 1;
        feed.push((department_scope(dept, &town), *seq, Some(id.clone())));
        sqlx::query("INSERT INTO case_departments (doc_id, dept) VALUES ($1, $2)")
            .bind(&id)
            .bind(dept)
            .execute(&mut *tx)
            .await?;
    }
    for dept in before.difference(now) {
        sqlx::query("DELETE FROM case_departments WHERE doc_id = $1 AND dept = $2")
            .bind(&id)
            .bind(dept)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Records the flags of the times a merge wrote. A time written again is judged again: its
/// flag is replaced, or dropped when the new time is plausible. An event found before its
/// cause keeps the first receipt and device it was found with (a later merge by another
/// device does not move the blame).
async fn store_time_flags(
    tx: &mut Conn,
    device: &Device,
    ready: &Ready,
    receipt: Receipt,
) -> Result<(), StorageError> {
    let id = ready.doc.id().to_string();
    let arrivals = flag_arrivals(&ready.times, receipt.received_at, receipt.phone_clock);
    // A new document has no flags yet; otherwise one read says which written paths had one.
    let flagged: Vec<String> = if ready.created {
        Vec::new()
    } else {
        sqlx::query_scalar("SELECT path FROM time_flags WHERE doc_id = $1")
            .bind(&id)
            .fetch_all(&mut *tx)
            .await?
    };
    for (path, _) in &ready.times {
        if flagged.contains(path) && !arrivals.iter().any(|f| &f.path == path) {
            sqlx::query("DELETE FROM time_flags WHERE doc_id = $1 AND path = $2")
                .bind(&id)
                .bind(path)
                .execute(&mut *tx)
                .await?;
        }
    }
    let upsert = "INSERT INTO time_flags (doc_id, path, at, received_at, device, skew_ms, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (doc_id, path) DO UPDATE SET at = excluded.at, \
         received_at = excluded.received_at, device = excluded.device, \
         skew_ms = excluded.skew_ms, reason = excluded.reason";
    let keep_first = "INSERT INTO time_flags (doc_id, path, at, received_at, device, skew_ms, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (doc_id, path) DO NOTHING";
    let flags = arrivals
        .iter()
        .map(|f| (f, upsert))
        .chain(ready.cause_flags.iter().map(|f| (f, keep_first)));
    for (flag, sql) in flags {
        sqlx::query(sql)
            .bind(&id)
            .bind(&flag.path)
            .bind(flag.at)
            .bind(receipt.received_at)
            .bind(device.id.to_string())
            .bind(receipt.skew())
            .bind(flag.reason)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
