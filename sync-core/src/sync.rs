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
    AckStatus, DocId, DocPush, Hash, PROTOCOL_VERSION, SyncRequest, SyncResponse,
};
use serde_bytes::ByteBuf;
use sqlx::SqliteConnection;

use crate::document::{DocError, Document, actor_for};
use crate::store::{Store, StoreError, append_chunk, insert_doc, load_doc};

/// Most documents one request pushes; the rest go in the next round.
pub const MAX_PUSH_DOCS: i64 = 500;

/// Most change bytes one request pushes (at least one document always goes): on a weak link a
/// request must finish well inside the server's timeout, or it would be retried forever.
pub const MAX_PUSH_BYTES: usize = 1024 * 1024;

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
    /// Documents the server refused, with code and message.
    pub rejected: Vec<(DocId, String, String)>,
    /// Another round is needed (more to pull, more to push, or a fallback sync under way).
    pub more: bool,
}

/// One sync session of a device: holds Automerge sync-protocol states for documents that fell
/// back to it, across the rounds of this session.
#[derive(Debug)]
pub struct SyncSession {
    store: Store,
    fallback: HashMap<DocId, State>,
}

const CURSOR_KEY: &str = "sync_cursor";

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

/// Changes this device wrote that are not covered by `synced`.
fn own_unsynced(doc: &mut Document, synced: &[ChangeHash], me: &automerge::ActorId) -> Vec<Change> {
    doc.changes_since(synced)
        .into_iter()
        .filter(|c| c.actor_id() == me)
        .collect()
}

fn has_all(doc: &mut Document, heads: &[ChangeHash]) -> bool {
    heads
        .iter()
        .all(|h| doc.automerge().get_change_by_hash(h).is_some())
}

impl SyncSession {
    /// A session over the device's store.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            fallback: HashMap::new(),
        }
    }

    /// The store this session syncs.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Builds the next request: every dirty document's unacknowledged changes (or a sync
    /// message, for documents in fallback), and the stored cursor.
    pub async fn build_request(&mut self) -> Result<(SyncRequest, Outbox), SyncError> {
        let cursor = self
            .store
            .meta(CURSOR_KEY)
            .await?
            .map(|h| hex::decode(h).map_err(|e| StoreError::Corrupt(format!("sync cursor: {e}"))))
            .transpose()?
            .unwrap_or_default();
        let dirty: Vec<(String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT doc_id, synced_heads, need_sync FROM doc_sync WHERE dirty = 1 ORDER BY doc_id LIMIT $1",
        )
        .bind(MAX_PUSH_DOCS)
        .fetch_all(self.store.pool())
        .await?;
        let me = actor_for(self.store.device());
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
                    docs.push(DocPush {
                        doc: id,
                        header: Some(header),
                        heads: heads.clone(),
                        changes: Vec::new(),
                        sync: Some(ByteBuf::from(msg.encode())),
                    });
                    outbox.pushed.push((id, heads, true));
                }
                continue;
            }
            let changes = own_unsynced(&mut doc, &synced, &me);
            if changes.is_empty() {
                // Nothing of ours is missing on the server (e.g. only pulled changes): clean,
                // unless a local edit landed since we looked (checked again under the lock).
                self.clear_if_clean(id, &me).await?;
                continue;
            }
            bytes += changes.iter().map(|c| c.raw_bytes().len()).sum::<usize>();
            docs.push(DocPush {
                doc: id,
                header: synced.is_empty().then(|| doc.header().clone()),
                heads: heads.clone(),
                changes: changes
                    .iter()
                    .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                    .collect(),
                sync: None,
            });
            outbox.pushed.push((id, heads, false));
        }
        // A full page of dirty documents means more may be waiting behind it.
        outbox.truncated |= full_batch;
        Ok((
            SyncRequest {
                version: PROTOCOL_VERSION,
                device: self.store.device(),
                cursor: ByteBuf::from(cursor),
                docs,
            },
            outbox,
        ))
    }

    /// Applies the server's answer to `outbox`'s request in one store transaction.
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
        let me = actor_for(self.store.device());
        let mut report = RoundReport {
            more: resp.more,
            ..RoundReport::default()
        };
        if resp.docs.is_empty() && resp.acks.is_empty() && !resp.reset {
            // A no-op round: write nothing unless the cursor moved (saves an fsync per poll).
            let stored = self.store.meta(CURSOR_KEY).await?;
            if stored.as_deref() == Some(hex::encode(&resp.cursor).as_str()) {
                return Ok(report);
            }
        }
        let store = self.store.clone();
        let _guard = store.write_lock().lock().await;
        let mut tx = store.pool().begin().await?;
        for pull in &resp.docs {
            let changes = pull
                .changes
                .iter()
                .map(|b| Change::from_bytes(b.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SyncError::BadResponse(format!("document {}: {e}", pull.doc)))?;
            report.pulled_changes += changes.len();
            if !changes.is_empty() {
                report.pulled_docs += 1;
            }
            let message = pull
                .sync
                .as_ref()
                .map(|m| Message::decode(m))
                .transpose()
                .map_err(|e| {
                    SyncError::BadResponse(format!("sync message for {}: {e}", pull.doc))
                })?;
            let Some(mut doc) = self.merge_pull(&mut tx, pull.doc, changes, message).await? else {
                continue;
            };
            let server_heads = from_hashes(&pull.heads);
            if !server_heads.is_empty() && has_all(&mut doc, &server_heads) {
                self.set_synced(&mut tx, &mut doc, &server_heads, &me)
                    .await?;
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
                    report.more = true;
                } else {
                    sqlx::query("UPDATE doc_sync SET need_sync = 0 WHERE doc_id = $1")
                        .bind(pull.doc.to_string())
                        .execute(&mut *tx)
                        .await?;
                    self.fallback.remove(&pull.doc);
                }
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
            let (mut doc, _) = load_doc(&mut tx, ack.doc).await?;
            match &ack.status {
                AckStatus::Stored { heads } => {
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
                    sqlx::query("UPDATE doc_sync SET rejected = NULL WHERE doc_id = $1")
                        .bind(ack.doc.to_string())
                        .execute(&mut *tx)
                        .await?;
                    if let Some(synced) = synced {
                        self.set_synced(&mut tx, &mut doc, &synced, &me).await?;
                    }
                }
                AckStatus::NeedSync => {
                    sqlx::query("UPDATE doc_sync SET need_sync = 1 WHERE doc_id = $1")
                        .bind(ack.doc.to_string())
                        .execute(&mut *tx)
                        .await?;
                    report.more = true;
                }
                AckStatus::Rejected { code, message } => {
                    // Kept locally and shown, and still dirty: the cause may pass (a scope is
                    // extended, another phone syncs the changes these depend on), and nothing
                    // recorded may be lost. It is offered again on every sync.
                    sqlx::query("UPDATE doc_sync SET rejected = $1 WHERE doc_id = $2")
                        .bind(format!("{code}: {message}"))
                        .bind(ack.doc.to_string())
                        .execute(&mut *tx)
                        .await?;
                    report
                        .rejected
                        .push((ack.doc, code.clone(), message.clone()));
                }
            }
        }
        if resp.reset {
            // The server may have lost what it acknowledged: offer every change of ours again
            // (it keeps what it already has, by hash).
            sqlx::query("UPDATE doc_sync SET synced_heads = x'', dirty = 1, need_sync = 0")
                .execute(&mut *tx)
                .await?;
            self.fallback.clear();
            report.more = true;
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(CURSOR_KEY)
        .bind(hex::encode(&resp.cursor))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        drop(_guard);
        if !report.more && outbox.truncated {
            report.more = self.store.unsynced_count().await? > 0;
        }
        Ok(report)
    }

    async fn clear_if_clean(&self, id: DocId, me: &automerge::ActorId) -> Result<(), SyncError> {
        let _guard = self.store.write_lock().lock().await;
        let mut tx = self.store.pool().begin().await?;
        let synced: Vec<u8> =
            sqlx::query_scalar("SELECT synced_heads FROM doc_sync WHERE doc_id = $1")
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await?;
        let (mut doc, _) = load_doc(&mut tx, id).await?;
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
        me: &automerge::ActorId,
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
            let (mut doc, chunks) = load_doc(tx, id).await?;
            doc.set_device(self.store.device());
            let before = doc.heads();
            if !changes.is_empty() {
                doc.apply_changes(changes)?;
            }
            if let Some(msg) = message {
                let state = self.fallback.entry(id).or_default();
                let mut am = doc.automerge().clone();
                am.sync()
                    .receive_sync_message(state, msg)
                    .map_err(|e| SyncError::BadResponse(e.to_string()))?;
                let added = am.get_changes(&doc.heads());
                if !added.is_empty() {
                    doc.apply_changes(added)?;
                }
            }
            if doc.heads() != before {
                let chunk = doc.save_after(&before);
                append_chunk(tx, &mut doc, chunk, chunks).await?;
                crate::projection::store_sqlite(tx, &doc)
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
        let mut am = AutoCommit::new().with_actor(actor_for(self.store.device()));
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
        let mut doc = Document::from_automerge(am)?;
        if doc.id() != id {
            return Err(SyncError::BadResponse(format!(
                "changes for {id} build document {}",
                doc.id()
            )));
        }
        insert_doc(tx, &mut doc).await?;
        crate::projection::store_sqlite(tx, &doc)
            .await
            .map_err(StoreError::from)?;
        sqlx::query("INSERT INTO doc_sync (doc_id, dirty) VALUES ($1, 0)")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(Some(doc))
    }
}
