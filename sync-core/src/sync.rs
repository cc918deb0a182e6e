//! The phone's side of the batched sync protocol, as a state machine over the local store.
//!
//! [`SyncSession::build_request`] turns the store's state into one request (every document
//! with unacknowledged local changes, plus the cursor); [`SyncSession::apply_response`] turns
//! the server's answer into store writes (pulled changes, acknowledged heads, the new cursor),
//! in one transaction. No I/O besides the store: the transport (`crate::client`, a test, or a
//! simulator) moves the bytes.
//!
//! **Invariant:** a change stays "dirty" until an acknowledgement for heads that cover it is
//! stored; the cursor is stored in the same transaction as the changes it covers. A lost
//! response or a retried request is therefore harmless: the next request resends the same
//! changes (the server deduplicates by hash) from the same cursor.

use std::collections::HashMap;
use std::str::FromStr;

use automerge::sync::{Message, State, SyncDoc};
use automerge::{AutoCommit, Change, ChangeHash};
use gridsync_proto::{
    AckStatus, DeviceId, DocId, DocPush, Hash, PROTOCOL_VERSION, SyncRequest, SyncResponse, limits,
};
use serde_bytes::ByteBuf;
use sqlx::{Acquire, SqliteConnection};

use crate::clock::now_ms;
use crate::document::{DocError, Document, device_of};
use crate::store::{Store, StoreError, append_chunk, insert_doc, load_doc};

/// The refusal code for changes that reuse an actor's sequence numbers with other content
/// (the server's `merge::ACTOR_DIVERGED`).
pub const ACTOR_DIVERGED: &str = "actor_diverged";

/// Most documents one request pushes; the rest go in the next round.
pub const MAX_PUSH_DOCS: i64 = 500;

/// Most change bytes one request pushes (at least one change always goes): on a weak link a
/// request must finish well inside the server's timeout, or it would be retried forever.
pub const MAX_PUSH_BYTES: usize = 1024 * 1024;

/// Most changes of one document in one request (the wire limit is
/// [`limits::MAX_CHANGES_PER_DOC`]): a longer backlog, such as a day-long patrol's track
/// points, goes in causal-order slices over several requests.
pub const MAX_PUSH_CHANGES_PER_DOC: usize = 5_000;

/// First wait before a refused document is offered again; it doubles per refusal.
pub const RETRY_FIRST_MS: i64 = 60_000;

/// Longest wait before a refused document is offered again. A retry time further ahead than
/// this means the phone's clock went back: the document is due at once.
pub const RETRY_MAX_MS: i64 = 6 * 3_600_000;

/// Why a sync round failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A document could not be read or merged.
    #[error(transparent)]
    Doc(#[from] DocError),
    /// The server's answer does not make sense (bad change bytes, wrong version).
    #[error("bad response from the server: {0}")]
    BadResponse(String),
    /// Pulled changes reuse this store's actor and sequence numbers with other content: a
    /// copy of this store wrote them.
    #[error("document {0}: a copy of this store wrote other changes under the same actor")]
    Diverged(DocId),
}

impl From<sqlx::Error> for SyncError {
    fn from(e: sqlx::Error) -> Self {
        SyncError::Store(StoreError::Db(e))
    }
}

/// What one request pushed, needed to apply its response.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    // (document, heads pushed, whether it went as a sync-protocol message)
    pushed: Vec<(DocId, Vec<Hash>, bool)>,
    // Dirty documents were left for the next request (batch limits).
    truncated: bool,
    // Dirty documents found to hold nothing of this device's, and cleared.
    cleaned: usize,
}

impl Outbox {
    /// How many documents the request pushed.
    pub fn len(&self) -> usize {
        self.pushed.len()
    }

    /// Whether the request pushed nothing.
    pub fn is_empty(&self) -> bool {
        self.pushed.is_empty()
    }
}

/// What applying one response did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Documents whose pushed changes the server stored.
    pub acked: usize,
    /// Documents that received changes from the server.
    pub pulled_docs: usize,
    /// Changes received.
    pub pulled_changes: usize,
    /// The documents that received changes.
    pub pulled: Vec<DocId>,
    /// Documents the server refused, with code and message.
    pub rejected: Vec<(DocId, String, String)>,
    /// Pulled documents this build could not read, with the reason (kept, applied later).
    pub quarantined: Vec<(DocId, String)>,
    /// Another round is needed (more to pull, more to push, or a fallback sync under way).
    pub more: bool,
    /// Dirty documents the request found nothing to send for, and marked clean.
    pub cleaned: usize,
}

/// One sync session of a device: holds Automerge sync-protocol states for documents that fell
/// back to it, across the rounds of this session.
#[derive(Debug)]
pub struct SyncSession {
    store: Store,
    fallback: HashMap<DocId, State>,
    // Documents in fallback whose last message showed this side has more to say.
    fallback_more: std::collections::HashSet<DocId>,
    // Documents rebased on the server's state in the response being applied.
    rebased: std::collections::HashSet<DocId>,
    // The store switched to a fresh actor in the response being applied.
    took_fresh_actor: bool,
}

use crate::store::CURSOR_KEY;

fn heads_bytes(heads: &[Hash]) -> Vec<u8> {
    heads.iter().flatten().copied().collect()
}

fn heads_from(bytes: &[u8]) -> Vec<ChangeHash> {
    bytes
        .chunks_exact(32)
        .filter_map(|c| ChangeHash::try_from(c).ok())
        .collect()
}

fn to_hashes(heads: &[ChangeHash]) -> Vec<Hash> {
    heads.iter().map(|h| h.0).collect()
}

fn from_hashes(heads: &[Hash]) -> Vec<ChangeHash> {
    heads.iter().map(|h| ChangeHash(*h)).collect()
}

/// Changes this device wrote (under any of its actors) that are not covered by `synced`, in
/// causal order.
fn own_unsynced(doc: &mut Document, synced: &[ChangeHash], me: DeviceId) -> Vec<Change> {
    doc.changes_since(synced)
        .into_iter()
        .filter(|c| device_of(c.actor_id()) == Some(me))
        .collect()
}

/// The set-aside reason for something larger than any request may carry.
fn too_large(size: usize) -> String {
    format!(
        "too_large: {size} bytes in one change or sync message exceed the limit of {} bytes; \
         the record must be made smaller",
        limits::MAX_CHANGE_BYTES
    )
}

/// How many of `changes` (a causal-order backlog) fit in `room` bytes and the per-document
/// change limit: `Some(0)` when not even the first fits (unless `first` says this is the
/// request's first document, which always carries one change), `None` when the next change
/// exceeds what any request may carry.
fn take_slice(changes: &[Change], room: usize, first: bool) -> Option<usize> {
    let mut size = 0usize;
    for (i, c) in changes.iter().enumerate() {
        let n = c.raw_bytes().len();
        if n > limits::MAX_CHANGE_BYTES {
            return if i == 0 { None } else { Some(i) };
        }
        if i == MAX_PUSH_CHANGES_PER_DOC || (size + n > room && !(i == 0 && first)) {
            return Some(i);
        }
        size += n;
    }
    Some(changes.len())
}

/// The heads of the history made of `synced` and a causal-order prefix of later changes:
/// every prefix change no other prefix change depends on, and every synced head no prefix
/// change depends on. (A synced head that is only an indirect ancestor may stay: heads stand
/// for "everything up to here", so an extra ancestor says nothing false.)
fn slice_heads(synced: &[ChangeHash], sent: &[Change]) -> Vec<Hash> {
    let deps: std::collections::HashSet<ChangeHash> =
        sent.iter().flat_map(|c| c.deps().iter().copied()).collect();
    synced
        .iter()
        .copied()
        .chain(sent.iter().map(Change::hash))
        .filter(|h| !deps.contains(h))
        .map(|h| h.0)
        .collect()
}

/// Whether `bytes` is an Automerge document chunk (a saved document) rather than a change:
/// the chunk type after the magic bytes and checksum is 0.
fn is_document_chunk(bytes: &[u8]) -> bool {
    bytes.len() > 8 && bytes[..4] == [0x85, 0x6f, 0x4a, 0x83] && bytes[8] == 0
}

/// A pull's byte strings as changes: each a change, or (protocol 4, a first sync) a saved
/// document, which stands for every change it holds. So a snapshot goes down the same path as
/// changes (actor collisions, rebases, quarantine): one way in for everything pulled.
fn pulled_changes(blobs: &[serde_bytes::ByteBuf]) -> Result<Vec<Change>, String> {
    let mut out = Vec::with_capacity(blobs.len());
    for b in blobs {
        if is_document_chunk(b) {
            let doc = automerge::Automerge::load(b).map_err(|e| format!("snapshot: {e}"))?;
            out.extend(doc.get_changes(&[]));
        } else {
            out.push(Change::from_bytes(b.to_vec()).map_err(|e| e.to_string())?);
        }
    }
    Ok(out)
}

/// The actor of ours under which `pulled` holds a change that this document holds with other
/// content at the same sequence number (a copy of this store wrote it), if any.
fn colliding_actor(
    doc: &mut Document,
    pulled: &[Change],
    me: DeviceId,
) -> Option<automerge::ActorId> {
    let foreign: Vec<&Change> = pulled
        .iter()
        .filter(|c| device_of(c.actor_id()) == Some(me))
        .filter(|c| doc.automerge().get_change_by_hash(&c.hash()).is_none())
        .collect();
    if foreign.is_empty() {
        return None;
    }
    let held: std::collections::HashSet<(automerge::ActorId, u64)> = doc
        .changes_since(&[])
        .iter()
        .filter(|c| device_of(c.actor_id()) == Some(me))
        .map(|c| (c.actor_id().clone(), c.seq()))
        .collect();
    foreign
        .iter()
        .find(|c| held.contains(&(c.actor_id().clone(), c.seq())))
        .map(|c| c.actor_id().clone())
}

/// Records a refusal: the reason, one more attempt, and a retry time with exponential backoff.
async fn refuse(conn: &mut SqliteConnection, id: DocId, reason: &str) -> Result<(), SyncError> {
    let attempts: i64 = sqlx::query_scalar(
        "UPDATE doc_sync SET rejected = $1, attempts = attempts + 1 WHERE doc_id = $2 \
         RETURNING attempts",
    )
    .bind(reason)
    .bind(id.to_string())
    .fetch_one(&mut *conn)
    .await?;
    let shift = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let wait = RETRY_FIRST_MS
        .saturating_mul(1i64 << shift)
        .min(RETRY_MAX_MS);
    sqlx::query("UPDATE doc_sync SET retry_at = $1 WHERE doc_id = $2")
        .bind(now_ms().saturating_add(wait))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn has_all(doc: &mut Document, heads: &[ChangeHash]) -> bool {
    heads
        .iter()
        .all(|h| doc.automerge().get_change_by_hash(h).is_some())
}

/// Failures of this phone itself (its database), as opposed to a document it cannot read:
/// those fail the round (nothing is written; the next sync tries again).
fn is_local_failure(e: &SyncError) -> bool {
    matches!(
        e,
        SyncError::Store(StoreError::Db(_) | StoreError::Migrate(_))
    )
}

async fn is_quarantined(conn: &mut SqliteConnection, id: DocId) -> Result<bool, SyncError> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM quarantine WHERE doc_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *conn)
            .await?
            > 0,
    )
}

/// Keeps pulled changes of a document this build cannot read, each once (a pull from the
/// start brings them again), with the latest reason when there is one.
async fn add_to_quarantine(
    conn: &mut SqliteConnection,
    id: DocId,
    changes: &[ByteBuf],
    reason: Option<&str>,
    reader: &str,
) -> Result<(), SyncError> {
    sqlx::query(
        "INSERT INTO quarantine (doc_id, reason, reader, first_at, last_at) \
         VALUES ($1, COALESCE($2, 'unreadable'), $3, $4, $4) \
         ON CONFLICT (doc_id) DO UPDATE SET last_at = excluded.last_at, \
         reason = COALESCE($2, quarantine.reason), \
         reader = CASE WHEN $2 IS NULL THEN quarantine.reader ELSE excluded.reader END",
    )
    .bind(id.to_string())
    .bind(reason)
    .bind(reader)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    for c in changes {
        sqlx::query(
            "INSERT INTO quarantine_changes (doc_id, n, bytes) \
             SELECT $1, (SELECT COALESCE(MAX(n), 0) + 1 FROM quarantine_changes WHERE doc_id = $1), $2 \
             WHERE NOT EXISTS (SELECT 1 FROM quarantine_changes WHERE doc_id = $1 AND bytes = $2)",
        )
        .bind(id.to_string())
        .bind(c.as_ref())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl SyncSession {
    /// A session over the device's store.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            fallback: HashMap::new(),
            fallback_more: Default::default(),
            rebased: Default::default(),
            took_fresh_actor: false,
        }
    }

    /// The store this session syncs.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Builds the next request: the unacknowledged changes of dirty documents (or a sync
    /// message, for documents in fallback), and the stored cursor.
    ///
    /// Any backlog drains in slices: at most [`MAX_PUSH_DOCS`] documents, about
    /// [`MAX_PUSH_BYTES`] of changes and [`MAX_PUSH_CHANGES_PER_DOC`] changes of one document
    /// (a causal-order prefix, with the heads of that prefix) go in one request. Documents the
    /// server refused are set aside until their retry time and come after all other work, so
    /// they never hold it back.
    pub async fn build_request(&mut self) -> Result<(SyncRequest, Outbox), SyncError> {
        let cursor = self
            .store
            .meta(CURSOR_KEY)
            .await?
            .map(|h| hex::decode(h).map_err(|e| StoreError::Corrupt(format!("sync cursor: {e}"))))
            .transpose()?
            .unwrap_or_default();
        let now = now_ms();
        let dirty: Vec<(String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT doc_id, synced_heads, need_sync FROM doc_sync WHERE dirty = 1 \
             AND (retry_at IS NULL OR retry_at <= $1 OR retry_at > $2) \
             ORDER BY rejected IS NOT NULL, doc_id LIMIT $3",
        )
        .bind(now)
        .bind(now.saturating_add(RETRY_MAX_MS))
        .bind(MAX_PUSH_DOCS)
        .fetch_all(self.store.pool())
        .await?;
        let device = self.store.device();
        let mut docs = Vec::with_capacity(dirty.len());
        let mut outbox = Outbox::default();
        let mut bytes = 0usize;
        let full_batch = dirty.len() as i64 >= MAX_PUSH_DOCS;
        for (id, synced, need_sync) in dirty {
            if bytes >= MAX_PUSH_BYTES {
                outbox.truncated = true;
                break;
            }
            let id = DocId::from_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut doc = self.store.load(id).await?;
            let synced = heads_from(&synced);
            let heads = to_hashes(&doc.heads());
            if need_sync != 0 {
                let header = doc.header().clone();
                let state = self.fallback.entry(id).or_default();
                // The server keeps no sync state between requests and stores only changes it
                // can apply, so "already sent" means nothing from one round to the next: offer
                // everything its last message did not show it has.
                state.sent_hashes.clear();
                state.in_flight = false;
                if let Some(msg) = doc.automerge().sync().generate_sync_message(state) {
                    let msg = msg.encode();
                    if msg.len() > limits::MAX_CHANGE_BYTES {
                        // A message no request may carry would be refused whole, on every
                        // sync: set this document aside instead of stopping the rest.
                        self.set_aside_locally(id, &too_large(msg.len())).await?;
                        continue;
                    }
                    if bytes > 0 && bytes + msg.len() > MAX_PUSH_BYTES {
                        outbox.truncated = true;
                        break;
                    }
                    bytes += msg.len();
                    docs.push(DocPush {
                        doc: id,
                        header: Some(header),
                        heads: heads.clone(),
                        changes: Vec::new(),
                        sync: Some(ByteBuf::from(msg)),
                    });
                    outbox.pushed.push((id, heads, true));
                }
                continue;
            }
            let changes = own_unsynced(&mut doc, &synced, device);
            if changes.is_empty() {
                // Nothing of ours is missing on the server (e.g. only pulled changes): clean,
                // unless a local edit landed since we looked (checked again under the lock).
                self.clear_if_clean(id, device).await?;
                outbox.cleaned += 1;
                continue;
            }
            let slice = take_slice(&changes, MAX_PUSH_BYTES - bytes, bytes == 0);
            let Some(take) = slice else {
                // Its next change is larger than any request may carry: it can never be
                // sent, so it is set aside with the reason instead of blocking every sync.
                let size = changes
                    .iter()
                    .map(|c| c.raw_bytes().len())
                    .find(|n| *n > limits::MAX_CHANGE_BYTES)
                    .unwrap_or(0);
                self.set_aside_locally(id, &too_large(size)).await?;
                continue;
            };
            if take == 0 {
                // No room left in this request; the next one starts with it.
                outbox.truncated = true;
                break;
            }
            let sent = &changes[..take];
            let pushed_heads = if take == changes.len() {
                heads
            } else {
                outbox.truncated = true;
                slice_heads(&synced, sent)
            };
            bytes += sent.iter().map(|c| c.raw_bytes().len()).sum::<usize>();
            docs.push(DocPush {
                doc: id,
                header: synced.is_empty().then(|| doc.header().clone()),
                heads: pushed_heads.clone(),
                changes: sent
                    .iter()
                    .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                    .collect(),
                sync: None,
            });
            outbox.pushed.push((id, pushed_heads, false));
        }
        // A full page of dirty documents means more may be waiting behind it.
        outbox.truncated |= full_batch;
        Ok((
            SyncRequest {
                version: PROTOCOL_VERSION,
                device,
                cursor: ByteBuf::from(cursor),
                docs,
                actor: ByteBuf::from(self.store.actor_id().to_bytes().to_vec()),
                clock: crate::clock::now_ms(),
            },
            outbox,
        ))
    }

    /// Sets a document aside without asking the server (it could never accept it as is).
    async fn set_aside_locally(&self, id: DocId, reason: &str) -> Result<(), SyncError> {
        let mut conn = self.store.pool().acquire().await?;
        refuse(&mut conn, id, reason).await
    }

    /// Documents eligible for the next request (dirty and not set aside).
    async fn due_count(&self) -> Result<i64, SyncError> {
        let now = now_ms();
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM doc_sync WHERE dirty = 1 \
             AND (retry_at IS NULL OR retry_at <= $1 OR retry_at > $2)",
        )
        .bind(now)
        .bind(now.saturating_add(RETRY_MAX_MS))
        .fetch_one(self.store.pool())
        .await?)
    }

    /// Applies the server's answer to `outbox`'s request in one store transaction.
    ///
    /// A pulled document this build cannot read (bad bytes, a newer schema, a value it does
    /// not know) is quarantined: its changes are kept as bytes, it is shown, and it is applied
    /// once a build can read it. The rest of the pull is applied and the cursor moves on.
    pub async fn apply_response(
        &mut self,
        outbox: &Outbox,
        resp: SyncResponse,
    ) -> Result<RoundReport, SyncError> {
        if resp.version != PROTOCOL_VERSION {
            return Err(SyncError::BadResponse(format!(
                "protocol version {} (expected {PROTOCOL_VERSION})",
                resp.version
            )));
        }
        let device = self.store.device();
        let mut report = RoundReport {
            more: resp.more,
            cleaned: outbox.cleaned,
            ..RoundReport::default()
        };
        if resp.docs.is_empty() && resp.acks.is_empty() && !resp.reset {
            // A no-op round: write nothing unless the cursor moved (saves an fsync per poll).
            let stored = self.store.meta(CURSOR_KEY).await?;
            if stored.as_deref() == Some(hex::encode(&resp.cursor).as_str()) {
                if !report.more && outbox.truncated {
                    report.more = self.due_count().await? > 0;
                }
                return Ok(report);
            }
        }
        let store = self.store.clone();
        let _guard = store.write_lock().lock().await;
        let mut tx = store.pool().begin().await?;
        for pull in &resp.docs {
            if !pull.changes.is_empty() {
                report.pulled_docs += 1;
                report.pulled.push(pull.doc);
            }
            if is_quarantined(&mut tx, pull.doc).await? {
                // Keep what arrives with the rest, and try again: the new changes may be what
                // makes it readable.
                add_to_quarantine(&mut tx, pull.doc, &pull.changes, None, &self.reader()).await?;
                self.fallback.remove(&pull.doc);
                Box::pin(self.retry_one(&mut tx, pull.doc)).await?;
                continue;
            }
            let mut sp = (&mut tx).begin().await?;
            let applied = Box::pin(self.apply_pull(&mut sp, pull, device)).await;
            // A snapshot counts as the changes it holds; a document not applied, as what came.
            report.pulled_changes += match &applied {
                Ok(n) => *n,
                Err(_) => pull.changes.len(),
            };
            match applied {
                Ok(_) => sp.commit().await?,
                Err(e) if is_local_failure(&e) => return Err(e),
                Err(SyncError::Diverged(id)) => {
                    // Seen inside a sync-protocol exchange: handled like the server's
                    // `actor_diverged` (set aside, fresh actor, pull from the start, rebase).
                    sp.rollback().await?;
                    self.fallback.remove(&id);
                    self.diverged(
                        &mut tx,
                        id,
                        "actor_diverged: a copy of this store wrote \
                        other changes under the same actor",
                    )
                    .await?;
                    report.more = true;
                }
                Err(e) => {
                    sp.rollback().await?;
                    tracing::warn!(doc = %pull.doc, error = %e, "pulled document quarantined");
                    self.fallback.remove(&pull.doc);
                    let why = e.to_string();
                    add_to_quarantine(&mut tx, pull.doc, &pull.changes, Some(&why), &self.reader())
                        .await?;
                    report.quarantined.push((pull.doc, why));
                }
            }
            if self.fallback_more.remove(&pull.doc) {
                report.more = true;
            }
        }
        for ack in &resp.acks {
            let Some((_, pushed, via_sync)) = outbox.pushed.iter().find(|(d, _, _)| *d == ack.doc)
            else {
                return Err(SyncError::BadResponse(format!(
                    "acknowledgement for {} which was not pushed",
                    ack.doc
                )));
            };
            match &ack.status {
                AckStatus::Stored { heads } => {
                    let (mut doc, _) =
                        load_doc(&mut tx, ack.doc, self.store.newest_schema()).await?;
                    report.acked += 1;
                    let server = from_hashes(heads.as_deref().unwrap_or(pushed));
                    // For a batched push, "stored" covers everything pushed. For a sync-protocol
                    // message it only means "processed": trust nothing but heads we can see.
                    let synced = if has_all(&mut doc, &server) {
                        Some(server)
                    } else if *via_sync {
                        None
                    } else {
                        Some(from_hashes(pushed))
                    };
                    sqlx::query(
                        "UPDATE doc_sync SET rejected = NULL, attempts = 0, retry_at = NULL \
                         WHERE doc_id = $1",
                    )
                    .bind(ack.doc.to_string())
                    .execute(&mut *tx)
                    .await?;
                    if let Some(synced) = synced {
                        self.set_synced(&mut tx, &mut doc, &synced, device).await?;
                    }
                }
                AckStatus::NeedSync => {
                    sqlx::query("UPDATE doc_sync SET need_sync = 1 WHERE doc_id = $1")
                        .bind(ack.doc.to_string())
                        .execute(&mut *tx)
                        .await?;
                    report.more = true;
                }
                AckStatus::Rejected { code, message } if code == ACTOR_DIVERGED => {
                    if !self.rebased.contains(&ack.doc) {
                        self.diverged(&mut tx, ack.doc, &format!("{code}: {message}"))
                            .await?;
                    }
                    report.more = true;
                }
                AckStatus::Rejected { code, message } => {
                    // Kept locally, shown, still dirty, and set aside: the cause may pass (a
                    // scope is extended, another phone syncs the changes these depend on), so
                    // it is offered again after a backoff, never before other work.
                    refuse(&mut tx, ack.doc, &format!("{code}: {message}")).await?;
                    report
                        .rejected
                        .push((ack.doc, code.clone(), message.clone()));
                }
            }
        }
        if resp.reset {
            // The server may have lost what it acknowledged: offer every change of ours again
            // (it keeps what it already has, by hash).
            sqlx::query(
                "UPDATE doc_sync SET synced_heads = x'', dirty = 1, need_sync = 0, retry_at = NULL",
            )
            .execute(&mut *tx)
            .await?;
            self.fallback.clear();
            report.more = true;
        }
        // After taking a fresh actor, pull everything again: changes a copy of this store wrote
        // under the old actor were left out of earlier pulls as "ours", and they are not.
        // A rebased document has the re-applied edits to push.
        report.more |= !self.rebased.is_empty();
        let cursor = if self.took_fresh_actor {
            report.more = true;
            Vec::new()
        } else {
            resp.cursor.to_vec()
        };
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(CURSOR_KEY)
        .bind(hex::encode(&cursor))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.rebased.clear();
        self.took_fresh_actor = false;
        drop(_guard);
        if !report.more && outbox.truncated {
            report.more = self.due_count().await? > 0;
        }
        Ok(report)
    }

    /// A copy of this store wrote other changes under its actor into `id`: set the document
    /// aside, continue under a fresh actor and pull again from the start. The copy's changes
    /// (left out of earlier pulls as this replica's own) then arrive, and the document is
    /// rebased on them (which makes it due again).
    async fn diverged(
        &mut self,
        tx: &mut SqliteConnection,
        id: DocId,
        reason: &str,
    ) -> Result<(), SyncError> {
        refuse(tx, id, reason).await?;
        sqlx::query("UPDATE doc_sync SET need_sync = 0 WHERE doc_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if !self.took_fresh_actor {
            self.store.take_fresh_actor(tx).await?;
            self.took_fresh_actor = true;
        }
        Ok(())
    }

    /// Applies one pulled document: its changes, a sync-protocol message, the server's heads.
    /// Returns how many changes the pull held (a snapshot counts as the changes in it).
    async fn apply_pull(
        &mut self,
        tx: &mut SqliteConnection,
        pull: &gridsync_proto::DocPull,
        device: DeviceId,
    ) -> Result<usize, SyncError> {
        let changes = pulled_changes(&pull.changes)
            .map_err(|e| SyncError::BadResponse(format!("document {}: {e}", pull.doc)))?;
        let count = changes.len();
        let message = pull
            .sync
            .as_ref()
            .map(|m| Message::decode(m))
            .transpose()
            .map_err(|e| SyncError::BadResponse(format!("sync message for {}: {e}", pull.doc)))?;
        let Some(mut doc) = Box::pin(self.merge_pull(tx, pull.doc, changes, message)).await? else {
            return Ok(count);
        };
        let server_heads = from_hashes(&pull.heads);
        if !server_heads.is_empty() && has_all(&mut doc, &server_heads) {
            self.set_synced(tx, &mut doc, &server_heads, device).await?;
        }
        if pull.sync.is_some() {
            // Still in fallback if this side has more to say. Peek on a copy: generating
            // marks changes as sent, which may only happen when a message really goes out.
            let mut probe = self.fallback.entry(pull.doc).or_default().clone();
            if doc
                .automerge()
                .sync()
                .generate_sync_message(&mut probe)
                .is_some()
            {
                self.fallback_more.insert(pull.doc);
            } else {
                sqlx::query("UPDATE doc_sync SET need_sync = 0 WHERE doc_id = $1")
                    .bind(pull.doc.to_string())
                    .execute(&mut *tx)
                    .await?;
                self.fallback.remove(&pull.doc);
            }
        }
        Ok(count)
    }

    /// Stops writing under the current actor (the server saw a copy of this store use it too):
    /// takes a fresh actor bound to this device and starts the pull over, so what the copy
    /// wrote under the old actor, left out of earlier pulls as this replica's own, arrives.
    pub async fn retire_actor(&mut self) -> Result<(), SyncError> {
        let store = self.store.clone();
        let _guard = store.write_lock().lock().await;
        let mut tx = store.pool().begin().await?;
        store.take_fresh_actor(&mut tx).await?;
        sqlx::query("UPDATE meta SET value = '' WHERE key = $1")
            .bind(CURSOR_KEY)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::warn!(actor = %store.actor_id(), "took a fresh actor: a copy of this store used the old one");
        Ok(())
    }

    /// Who reads documents here: the build and the newest schema it reads. A quarantined
    /// document is tried again when a different reader opens the store (an upgrade).
    fn reader(&self) -> String {
        format!(
            "{}/schema{}",
            env!("CARGO_PKG_VERSION"),
            self.store.newest_schema()
        )
    }

    /// Tries quarantined documents again: all of them with `force`, otherwise those
    /// quarantined by another reader (this build is newer, or older). Returns how many were
    /// applied now.
    pub async fn retry_quarantine(&mut self, force: bool) -> Result<usize, SyncError> {
        let reader = self.reader();
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT doc_id FROM quarantine WHERE $1 OR reader <> $2 ORDER BY doc_id",
        )
        .bind(force)
        .bind(&reader)
        .fetch_all(self.store.pool())
        .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let store = self.store.clone();
        let _guard = store.write_lock().lock().await;
        let mut tx = store.pool().begin().await?;
        let mut applied = 0;
        for id in ids {
            let id = DocId::from_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if self.retry_one(&mut tx, id).await? {
                applied += 1;
            }
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// Applies one quarantined document's kept changes; on success it leaves quarantine, on
    /// failure the reason and reader are brought up to date.
    async fn retry_one(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        id: DocId,
    ) -> Result<bool, SyncError> {
        let kept: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT bytes FROM quarantine_changes WHERE doc_id = $1 ORDER BY n")
                .bind(id.to_string())
                .fetch_all(&mut **tx)
                .await?;
        let pull = gridsync_proto::DocPull {
            doc: id,
            changes: kept.into_iter().map(ByteBuf::from).collect(),
            heads: Vec::new(),
            sync: None,
        };
        let device = self.store.device();
        let mut sp = (&mut *tx).begin().await?;
        match Box::pin(self.apply_pull(&mut sp, &pull, device)).await {
            Ok(_) => {
                sp.commit().await?;
                sqlx::query("DELETE FROM quarantine_changes WHERE doc_id = $1")
                    .bind(id.to_string())
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM quarantine WHERE doc_id = $1")
                    .bind(id.to_string())
                    .execute(&mut **tx)
                    .await?;
                tracing::info!(doc = %id, "quarantined document applied");
                Ok(true)
            }
            Err(e) if is_local_failure(&e) => Err(e),
            Err(e) => {
                sp.rollback().await?;
                sqlx::query("UPDATE quarantine SET reason = $1, reader = $2 WHERE doc_id = $3")
                    .bind(e.to_string())
                    .bind(self.reader())
                    .bind(id.to_string())
                    .execute(&mut **tx)
                    .await?;
                Ok(false)
            }
        }
    }

    async fn clear_if_clean(&self, id: DocId, me: DeviceId) -> Result<(), SyncError> {
        let _guard = self.store.write_lock().lock().await;
        let mut tx = self.store.pool().begin().await?;
        let synced: Vec<u8> =
            sqlx::query_scalar("SELECT synced_heads FROM doc_sync WHERE doc_id = $1")
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await?;
        let (mut doc, _) = load_doc(&mut tx, id, self.store.newest_schema()).await?;
        if own_unsynced(&mut doc, &heads_from(&synced), me).is_empty() {
            sqlx::query("UPDATE doc_sync SET dirty = 0 WHERE doc_id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_synced(
        &self,
        tx: &mut SqliteConnection,
        doc: &mut Document,
        synced: &[ChangeHash],
        me: DeviceId,
    ) -> Result<(), SyncError> {
        let dirty = !own_unsynced(doc, synced, me).is_empty();
        sqlx::query(
            "INSERT INTO doc_sync (doc_id, synced_heads, dirty) VALUES ($1, $2, $3) \
             ON CONFLICT (doc_id) DO UPDATE SET synced_heads = excluded.synced_heads, dirty = excluded.dirty",
        )
        .bind(doc.id().to_string())
        .bind(heads_bytes(&to_hashes(synced)))
        .bind(i64::from(dirty))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Rebuilds a local document whose unsynced changes collide with `pulled` ones (a copy of
    /// this store wrote other changes under the same actor and sequence numbers; Automerge
    /// cannot hold both): the document becomes everything except those unsynced changes plus
    /// what was pulled, and the edits they made are re-applied on top as one change by a fresh
    /// actor bound to this device. The copy as it was is kept in `superseded`, so nothing
    /// recorded is lost even where the re-applied edit overrides a field.
    async fn rebase(
        &mut self,
        tx: &mut SqliteConnection,
        mut local: Document,
        pulled: Vec<Change>,
        collided: automerge::ActorId,
    ) -> Result<Document, SyncError> {
        let id = local.id();
        let device = self.store.device();
        let synced: Vec<u8> =
            sqlx::query_scalar("SELECT synced_heads FROM doc_sync WHERE doc_id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or_default();
        let unsynced: std::collections::HashSet<ChangeHash> =
            own_unsynced(&mut local, &heads_from(&synced), device)
                .iter()
                .map(Change::hash)
                .collect();
        let kept: Vec<Change> = local
            .changes_since(&[])
            .into_iter()
            .filter(|c| !unsynced.contains(&c.hash()))
            .collect();
        let mut base_am = AutoCommit::new();
        base_am.apply_changes(kept).map_err(DocError::from)?;
        let base = Document::from_automerge_upto(base_am, self.store.newest_schema())?;
        let mine = local.record_json();
        if self.store.actor_id() == collided {
            self.store.take_fresh_actor(tx).await?;
            self.took_fresh_actor = true;
        }
        // The server's state: what this copy shares with the server, and what was pulled.
        let mut server_doc = base.clone();
        server_doc.apply_changes(pulled.clone())?;
        let server_state = server_doc.heads();
        // The copy's edits, written again under the fresh actor on the state they were made
        // on, then merged with the pulled changes: they stay concurrent with what the other
        // copy wrote, so Automerge merges them as it would any two phones' work (text merges,
        // a field both set shows as a conflict for a person to settle). If the result would
        // not read as a record, the server's state is kept (the old copy stays in
        // `superseded` for a person to look at).
        let mut attempt = base;
        attempt.automerge().set_actor(self.store.actor_id());
        let reapplied = match attempt.write_record_json(&mine) {
            Ok(Some(_)) => {
                attempt.apply_changes(pulled)?;
                crate::projection::project(&attempt).is_ok()
            }
            Ok(None) | Err(_) => false,
        };
        let mut merged = if reapplied { attempt } else { server_doc };
        tracing::warn!(doc = %id, reapplied, "diverged copy rebased on the server's state");
        sqlx::query("INSERT INTO superseded (doc_id, at, reason, bytes) VALUES ($1, $2, $3, $4)")
            .bind(id.to_string())
            .bind(now_ms())
            .bind(format!(
                "a copy of this store wrote other changes as actor {collided}"
            ))
            .bind(local.save())
            .execute(&mut *tx)
            .await?;
        crate::store::write_snapshot(tx, &mut merged).await?;
        crate::projection::sqlite::store(tx, &merged)
            .await
            .map_err(StoreError::from)?;
        sqlx::query(
            "UPDATE doc_sync SET synced_heads = $1, dirty = $2, need_sync = 0, rejected = NULL, \
             attempts = 0, retry_at = NULL WHERE doc_id = $3",
        )
        .bind(heads_bytes(&to_hashes(&server_state)))
        .bind(i64::from(reapplied))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if !merged.automerge().get_missing_deps(&[]).is_empty() {
            // Pulled changes whose dependencies this phone lacks: fetch them by the protocol.
            sqlx::query("UPDATE doc_sync SET need_sync = 1, dirty = 1 WHERE doc_id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        self.rebased.insert(id);
        Ok(merged)
    }

    /// Applies pulled changes (and a sync message) to a local document, creating it if new.
    async fn merge_pull(
        &mut self,
        tx: &mut SqliteConnection,
        id: DocId,
        changes: Vec<Change>,
        message: Option<Message>,
    ) -> Result<Option<Document>, SyncError> {
        let existing = crate::store::doc_exists(tx, id).await?;
        if existing {
            let (mut doc, chunks) = load_doc(tx, id, self.store.newest_schema()).await?;
            doc.automerge().set_actor(self.store.actor_id());
            if let Some(actor) = colliding_actor(&mut doc, &changes, self.store.device()) {
                return Box::pin(self.rebase(tx, doc, changes, actor))
                    .await
                    .map(Some);
            }
            let before = doc.heads();
            if !changes.is_empty() {
                doc.apply_changes(changes)?;
            }
            if let Some(msg) = message {
                let state = self.fallback.entry(id).or_default();
                let mut am = doc.automerge().clone();
                am.sync()
                    .receive_sync_message(state, msg)
                    .map_err(|e| match e {
                        automerge::AutomergeError::DuplicateSeqNumber(..) => {
                            SyncError::Diverged(id)
                        }
                        e => SyncError::BadResponse(e.to_string()),
                    })?;
                let added = am.get_changes(&doc.heads());
                if !added.is_empty() {
                    doc.apply_changes(added)?;
                }
            }
            if doc.heads() != before {
                let chunk = doc.save_after(&before);
                append_chunk(tx, &mut doc, chunk, chunks).await?;
                crate::projection::sqlite::store(tx, &doc)
                    .await
                    .map_err(StoreError::from)?;
            }
            if !doc.automerge().get_missing_deps(&[]).is_empty() {
                // Changes whose dependencies this phone lacks are only queued in memory: ask
                // for the rest through the sync protocol rather than silently dropping them.
                sqlx::query("UPDATE doc_sync SET need_sync = 1, dirty = 1 WHERE doc_id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            return Ok(Some(doc));
        }
        let mut am = AutoCommit::new().with_actor(self.store.actor_id());
        if !changes.is_empty() {
            am.apply_changes(changes)
                .map_err(|e| SyncError::BadResponse(format!("document {id}: {e}")))?;
        }
        if let Some(msg) = message {
            let state = self.fallback.entry(id).or_default();
            am.sync()
                .receive_sync_message(state, msg)
                .map_err(|e| SyncError::BadResponse(e.to_string()))?;
        }
        if am.get_heads().is_empty() {
            return Ok(None);
        }
        let mut doc = Document::from_automerge_upto(am, self.store.newest_schema())?;
        if doc.id() != id {
            return Err(SyncError::BadResponse(format!(
                "changes for {id} build document {}",
                doc.id()
            )));
        }
        insert_doc(tx, &mut doc).await?;
        crate::projection::sqlite::store(tx, &doc)
            .await
            .map_err(StoreError::from)?;
        sqlx::query("INSERT INTO doc_sync (doc_id, dirty) VALUES ($1, 0)")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(Some(doc))
    }
}
