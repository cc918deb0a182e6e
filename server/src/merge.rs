//! Merging one device's push into one document: pure, no I/O. The storage layer loads the
//! current document, calls [`merge_push`], and writes what comes back in its transaction.
//!
//! **Invariant:** a push is taken whole or not at all. Every change newly accepted is authored
//! by the pushing device's actor, lies in its scope, leaves the header untouched and the record
//! readable, stays within the cost bounds ([`cost`]), and obeys the record rules
//! (`gridsync_core::rules`: the authorship table, judged on the record's JSON and on every
//! operation, and no rule failure left on a field it touched); otherwise nothing of that
//! document is stored.

use automerge::sync::{Message, State, SyncDoc};
use automerge::{AutoCommit, Change, ChangeHash, ReadDoc};
use gridsync_core::Document;
use gridsync_core::document::{DocError, device_of};
use gridsync_core::projection::project;
use gridsync_core::records::{Case, check_json};
use gridsync_core::rules;
use gridsync_core::time_flags::new_times;
use gridsync_proto::{DocHeader, DocPush, DocType, GridCode};
use serde_json::Value as Json;

use crate::auth::{Device, Role};

/// Why a push was refused (becomes `AckStatus::Rejected`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What was wrong, for people.
    pub message: String,
    /// With [`ACTOR_DIVERGED`]: the actor two copies of a store both wrote under, which no
    /// replica may write with any more.
    pub diverged_actor: Option<automerge::ActorId>,
}

/// The code for a push whose changes reuse sequence numbers the server already holds for the
/// same actor with other content: a copy of the device's store (restored or cloned) wrote
/// them. The phone takes a fresh actor, pulls again (receiving the other copy's changes) and
/// re-applies its edits.
pub const ACTOR_DIVERGED: &str = "actor_diverged";

fn reject(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
        diverged_actor: None,
    }
}

/// Bounds on what one push may cost the server, checked before the expensive work wherever
/// the push can be measured first (operation counts are known once change bytes are parsed,
/// before anything is applied). Each has its own rejection code.
pub mod cost {
    use std::time::Duration;

    /// Operations in one change (`too_many_ops`). An honest edit is a few dozen; a long
    /// patrol appends one point (4 operations) per change.
    pub const MAX_OPS_PER_CHANGE: usize = 20_000;
    /// Operations in a document after the push (`document_too_large`): the memory bound, as
    /// Automerge holds every operation in memory while merging. At this bound the largest
    /// allowed push peaks under 200 MB of server memory (BENCHMARKS.md). A household with 3
    /// residents and 24 visits is about 1,500 operations; a 30,000-point patrol about 120,000.
    pub const MAX_DOC_OPS: u64 = 150_000;
    /// Wall time one push may take (`push_too_slow`); checked between the phases of a merge.
    pub const PUSH_TIME_BUDGET: Duration = Duration::from_secs(10);
    /// Bytes of a document as stored plus the push's change bytes (`push_memory`), checked
    /// before the document is even loaded. Operation counts do not bound memory alone: one
    /// operation can carry a string of megabytes (put and overwritten in the same change, it
    /// leaves the record valid and the history heavier). The largest push the operation bound
    /// allows is about 2.2 MB of changes (`hostile_push_request_bytes` in BENCHMARKS.md).
    pub const MAX_PUSH_BYTES: usize = 8 * 1024 * 1024;
    /// Bytes of one string value an operation may put (`value_too_large`): the longest text
    /// field holds 5,000 characters; a larger value can only be ballast.
    pub const MAX_VALUE_BYTES: usize = 64 * 1024;

    /// Refuses a push whose document, as stored, and changes together exceed
    /// [`MAX_PUSH_BYTES`].
    pub fn check_memory(
        push: &gridsync_proto::DocPush,
        stored: usize,
    ) -> Result<(), super::Rejection> {
        let pushed: usize = push.changes.iter().map(|c| c.len()).sum::<usize>()
            + push.sync.as_ref().map_or(0, |s| s.len());
        if stored + pushed > MAX_PUSH_BYTES {
            return Err(super::reject(
                "push_memory",
                format!(
                    "document {} holds {stored} bytes and the push adds {pushed}: merging it would \
                     take more memory than one push may (at most {MAX_PUSH_BYTES} bytes in all)",
                    push.doc
                ),
            ));
        }
        Ok(())
    }
}

/// What merging one push produced.
#[derive(Debug)]
pub enum Merged {
    /// The merged document and the changes that were new to the server (to be stored).
    Stored {
        /// The document after the merge.
        doc: Box<Document>,
        /// Changes the server did not have, in application order.
        new_changes: Vec<Change>,
        /// Whether the document is new to the server.
        created: bool,
        /// The server's reply when the push was an Automerge sync message.
        sync_reply: Option<Vec<u8>>,
        /// The entry times the push wrote (paths and values), to be checked against the
        /// receipt (`gridsync_core::time_flags`).
        times: Vec<(String, i64)>,
        /// The projection rows of the merged document, when the push changed it.
        rows: Option<Box<gridsync_core::projection::Projection>>,
    },
    /// The changes need ones the server lacks: fall back to the sync protocol.
    NeedSync {
        /// The server's first sync message for the document, if it has one.
        sync_reply: Option<Vec<u8>>,
    },
}

/// Whether `device` may see and write documents in `scope`.
pub fn in_scope(device: &Device, scope: &GridCode) -> bool {
    device.scopes.iter().any(|s| s.contains(scope))
}

/// Whether `device` may write this document: inside its scopes, and for a department clerk
/// only a case currently dispatched to its department (`dept_member`).
pub fn may_write(device: &Device, header: &DocHeader, dept_member: bool) -> Result<(), Rejection> {
    if !in_scope(device, &header.scope) {
        return Err(reject(
            "out_of_scope",
            format!("grid {} is outside this device's scopes", header.scope),
        ));
    }
    if device.role == Role::Department && !(header.doc_type == DocType::Case && dept_member) {
        return Err(reject(
            "out_of_scope",
            "a department sees and writes only the cases currently dispatched to it",
        ));
    }
    Ok(())
}

/// A device may add workflow events only in its own role (and department). (That events are
/// never changed or removed is the authorship table's rule.)
fn check_event_roles(before: &Json, after: &Case, device: &Device) -> Result<(), Rejection> {
    let old = before.get("events");
    for (id, e) in &after.events {
        if old.is_some_and(|o| o.get(id.to_string()).is_some()) {
            continue;
        }
        if e.role != device.role.as_str() {
            return Err(reject(
                "role_mismatch",
                format!(
                    "event {id} claims role {:?}, but this device is enrolled as {}",
                    e.role, device.role
                ),
            ));
        }
        if device.role == Role::Department && e.dept != device.department {
            return Err(reject(
                "role_mismatch",
                format!(
                    "event {id} claims department {:?}, but this device belongs to {:?}",
                    e.dept, device.department
                ),
            ));
        }
    }
    Ok(())
}

/// The record rules at the merge boundary, on the stored record before the push (`before`,
/// empty for a new document) and the merged one: no unknown field written, the authorship
/// table, no problem left on a field the push touched (or made new), and the rules of
/// particular records (event roles, grid records). The phone's core judges in the same order.
fn judge_push(before: &Json, doc: &Document, device: &Device) -> Result<Json, Rejection> {
    let header = doc.header();
    let after = doc.record_json();
    let checked = check_json(header.doc_type, &after)
        .map_err(|e| reject("bad_document", format!("document {}: {e}", header.id)))?;
    if let Some(path) = rules::unknown_fields(before, &after, &checked.typed) {
        return Err(reject(
            "unknown_field",
            format!("{path}: a {} record has no such field", header.doc_type),
        ));
    }
    let writer = rules::Writer {
        device: device.id,
        role: device.role,
        creator: header.creator,
    };
    rules::check_authorship(header.doc_type, &writer, before, &after)
        .map_err(|v| reject(v.code, v.to_string()))?;
    let before_errors = check_json(header.doc_type, before)
        .map(|c| c.errors)
        .unwrap_or_default();
    let blocking = rules::blocking_errors(before, &after, &before_errors, checked.errors);
    if !blocking.is_empty() {
        let all: Vec<String> = blocking.iter().map(ToString::to_string).collect();
        return Err(reject("invalid_record", all.join("; ")));
    }
    match header.doc_type {
        DocType::Case => {
            let case: Case = doc.read().map_err(doc_error)?;
            check_event_roles(before, &case, device)?;
        }
        DocType::Grid => {
            // Grid records place intake cases and define the hierarchy: only the town centre
            // writes them, and a grid's code is its document's scope.
            if !matches!(device.role, Role::Dispatcher | Role::Leader) {
                return Err(reject(
                    "role_mismatch",
                    "only dispatchers and leaders maintain grid records",
                ));
            }
            let grid: gridsync_core::records::Grid = doc.read().map_err(doc_error)?;
            if grid.code != header.scope.as_str() {
                return Err(reject(
                    "header_mismatch",
                    format!(
                        "grid record {} must live in its own scope, not {}",
                        grid.code, header.scope
                    ),
                ));
            }
        }
        _ => {}
    }
    Ok(after)
}

/// Judges every operation of the new changes by where it writes, so that writes the record's
/// JSON does not show are judged too: a value put to lose a conflict (it would be offered at
/// the next resolution and surface if the winner went), a map replaced by an identical copy
/// (offline edits into the old one would vanish), keys beside `header` and `record`.
fn check_ops(
    doc: &mut Document,
    device: &Device,
    new_changes: &[Change],
    (before, after): (&Json, &Json),
    created: bool,
) -> Result<(), Rejection> {
    use automerge::legacy::{Key, OpType};
    let writer = rules::Writer {
        device: device.id,
        role: device.role,
        creator: doc.header().creator,
    };
    let doc_type = doc.header().doc_type;
    let am = doc.automerge();
    // Where each object lives: its map keys from the root, and whether it lies in a list
    // (lists and text are compared whole, as the record's leaves).
    let mut places: std::collections::HashMap<String, Option<(Vec<String>, bool)>> =
        Default::default();
    let mut touches = Vec::new();
    // Objects the push itself makes: what is written inside them is part of the operation that
    // made them, which is judged where it puts the object (so a patrol's new fixes cost one
    // judgement each, not one per field).
    let mut made: std::collections::HashSet<String> = Default::default();
    for change in new_changes {
        let expanded = change.decode();
        for (i, op) in expanded.operations.into_iter().enumerate() {
            if matches!(op.action, OpType::Make(_)) {
                let counter = u64::from(expanded.start_op) + i as u64;
                made.insert(format!("{counter}@{}", expanded.actor_id));
            }
            if let OpType::Put(automerge::ScalarValue::Str(s)) = &op.action
                && s.len() > cost::MAX_VALUE_BYTES
            {
                return Err(reject(
                    "value_too_large",
                    format!(
                        "an operation puts a string of {} bytes; at most {} are taken in one value",
                        s.len(),
                        cost::MAX_VALUE_BYTES
                    ),
                ));
            }
            let obj = op.obj.to_string();
            if made.contains(&obj) {
                continue;
            }
            let place = places
                .entry(obj.clone())
                .or_insert_with(|| object_place(am, &obj))
                .clone();
            let Some((mut path, in_list)) = place else {
                return Err(reject(
                    "bad_change",
                    format!("an operation writes into object {obj}, which the document lacks"),
                ));
            };
            if let (Key::Map(k), false) = (&op.key, in_list) {
                path.push(k.to_string());
            }
            match path.first().map(String::as_str) {
                Some("record") if path.len() > 1 => {}
                Some("record" | "header") if created => continue,
                _ => {
                    return Err(reject(
                        "not_allowed",
                        format!(
                            "{}: only fields inside the record change once a document exists",
                            if path.is_empty() {
                                "(root)".to_owned()
                            } else {
                                path.join(".")
                            }
                        ),
                    ));
                }
            }
            path.remove(0);
            let map_key = matches!(op.key, Key::Map(_)) && !in_list;
            touches.push(rules::Touch::of_op(
                path,
                matches!(op.action, OpType::Delete),
                map_key,
                (before, after),
            ));
        }
    }
    rules::check_touches(doc_type, &writer, touches, before, after)
        .map_err(|v| reject(v.code, v.to_string()))
}

/// The map keys from the document root to the object `obj` (Automerge's `counter@actor`
/// form), and whether the path passes through a list or text.
fn object_place(am: &AutoCommit, obj: &str) -> Option<(Vec<String>, bool)> {
    let id = am.import_obj(obj).ok()?;
    let mut path = Vec::new();
    let mut in_list = false;
    if id != automerge::ROOT {
        for (_, prop) in am.parents(&id).ok()?.path() {
            match prop {
                automerge::Prop::Map(k) => path.push(k),
                automerge::Prop::Seq(_) => {
                    in_list = true;
                    break;
                }
            }
        }
        if !in_list {
            in_list = matches!(
                am.object_type(&id),
                Ok(automerge::ObjType::List | automerge::ObjType::Text)
            );
        }
    }
    Some((path, in_list))
}

fn empty_record() -> Json {
    Json::Object(serde_json::Map::new())
}

fn check_new_changes(device: &Device, changes: &[Change]) -> Result<(), Rejection> {
    for c in changes {
        // A device may hold several actors over its life, all bound to it by their first 16
        // bytes.
        if device_of(c.actor_id()) != Some(device.id) {
            return Err(reject(
                "actor_mismatch",
                format!(
                    "change {} was written by actor {}, not by this device ({})",
                    c.hash(),
                    c.actor_id(),
                    device.id
                ),
            ));
        }
    }
    Ok(())
}

fn check_header(
    device: &Device,
    header: &DocHeader,
    claimed: Option<&DocHeader>,
    dept_member: bool,
) -> Result<(), Rejection> {
    if let Some(claimed) = claimed
        && claimed != header
    {
        return Err(reject(
            "header_mismatch",
            "the header sent does not match the document's own header",
        ));
    }
    may_write(device, header, dept_member)
}

fn decode_changes(push: &DocPush) -> Result<Vec<Change>, Rejection> {
    let mut seen = std::collections::BTreeSet::new();
    let changes: Vec<Change> = push
        .changes
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            // A compressed chunk could inflate far past the request's size limit while being
            // parsed; phones send changes uncompressed (the request is small already).
            if bytes.get(8) == Some(&COMPRESSED_CHANGE_CHUNK) {
                return Err(reject(
                    "bad_change",
                    format!(
                        "change #{i} of document {} is compressed; send it raw",
                        push.doc
                    ),
                ));
            }
            let change = Change::from_bytes(bytes.to_vec()).map_err(|e| {
                reject(
                    "bad_change",
                    format!(
                        "change #{i} of document {} is not an Automerge change: {e}",
                        push.doc
                    ),
                )
            })?;
            if change.len() > cost::MAX_OPS_PER_CHANGE {
                return Err(reject(
                    "too_many_ops",
                    format!(
                        "change #{i} of document {} has {} operations; at most {} are taken in \
                         one change",
                        push.doc,
                        change.len(),
                        cost::MAX_OPS_PER_CHANGE
                    ),
                ));
            }
            Ok(change)
        })
        .collect::<Result<_, _>>()?;
    // The same change twice in one push is harmless; store it once.
    Ok(changes
        .into_iter()
        .filter(|c| seen.insert(c.hash()))
        .collect())
}

/// The chunk type byte (after 4 magic and 4 checksum bytes) of a DEFLATE-compressed change.
const COMPRESSED_CHANGE_CHUNK: u8 = 2;

fn ops_in(changes: &[Change]) -> u64 {
    changes.iter().map(|c| c.len() as u64).sum()
}

/// Refuses a push that would take the document past [`cost::MAX_DOC_OPS`].
fn check_doc_ops(
    doc_id: gridsync_proto::DocId,
    current: u64,
    adding: u64,
) -> Result<(), Rejection> {
    if current + adding > cost::MAX_DOC_OPS {
        return Err(reject(
            "document_too_large",
            format!(
                "document {doc_id} would hold {} operations (it has {current}); a document holds \
                 at most {}: split what grows without bound (one inspection per patrol)",
                current + adding,
                cost::MAX_DOC_OPS
            ),
        ));
    }
    Ok(())
}

/// Refuses a push that has used up [`cost::PUSH_TIME_BUDGET`] (checked between phases).
fn check_time(
    doc_id: gridsync_proto::DocId,
    started: std::time::Instant,
    phase: &str,
) -> Result<(), Rejection> {
    if started.elapsed() > cost::PUSH_TIME_BUDGET {
        return Err(reject(
            "push_too_slow",
            format!(
                "merging document {doc_id} took longer than {} s ({phase}); send smaller changes",
                cost::PUSH_TIME_BUDGET.as_secs()
            ),
        ));
    }
    Ok(())
}

fn doc_error(e: DocError) -> Rejection {
    match e {
        DocError::Automerge(automerge::AutomergeError::DuplicateSeqNumber(seq, ref actor)) => {
            Rejection {
                diverged_actor: Some(actor.clone()),
                ..reject(
                    ACTOR_DIVERGED,
                    format!(
                        "change {seq} of actor {actor} is already stored with other content: \
                         this store was copied or restored; it must take a fresh actor"
                    ),
                )
            }
        }
        DocError::HeaderChanged(_) => reject("header_changed", e.to_string()),
        DocError::Header(_) | DocError::FutureSchema { .. } => reject("bad_header", e.to_string()),
        other => reject("bad_document", other.to_string()),
    }
}

/// Merges a push into `existing` (or creates the document). Returns the rejection to send
/// back when the push is refused.
pub fn merge_push(
    existing: Option<Document>,
    device: &Device,
    push: &DocPush,
    dept_member: bool,
) -> Result<Merged, Rejection> {
    // Automerge 0.12 can panic on some malformed change bytes (found by the fuzz test below,
    // e.g. an out-of-range actor index). Untrusted bytes enter here, so a panic is turned into
    // this document's rejection instead of failing the whole request.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        merge_push_checked(existing, device, push, dept_member)
    }))
    .unwrap_or_else(|_| {
        Err(reject(
            "bad_change",
            format!(
                "the changes for document {} are malformed and could not be applied",
                push.doc
            ),
        ))
    })
}

fn merge_push_checked(
    existing: Option<Document>,
    device: &Device,
    push: &DocPush,
    dept_member: bool,
) -> Result<Merged, Rejection> {
    if let Some(msg) = &push.sync {
        return merge_sync_message(existing, device, push, msg, dept_member);
    }
    let started = std::time::Instant::now();
    let changes = decode_changes(push)?;
    let created = existing.is_none();
    let mut doc = match existing {
        Some(doc) => {
            check_header(device, doc.header(), push.header.as_ref(), dept_member)?;
            doc
        }
        None => {
            // Build the document from the pushed changes alone; its header must be among them.
            check_doc_ops(push.doc, 0, ops_in(&changes))?;
            let mut am = AutoCommit::new();
            am.apply_changes(changes.clone())
                .map_err(|e| reject("bad_change", e.to_string()))?;
            if !am.get_missing_deps(&[]).is_empty() {
                return Ok(Merged::NeedSync { sync_reply: None });
            }
            let mut doc = Document::from_automerge(am).map_err(doc_error)?;
            if doc.id() != push.doc {
                return Err(reject(
                    "header_mismatch",
                    format!("the changes build document {}, not {}", doc.id(), push.doc),
                ));
            }
            check_header(device, doc.header(), push.header.as_ref(), dept_member)?;
            if doc.header().creator != device.id {
                return Err(reject(
                    "actor_mismatch",
                    "a document can only be created by the device named as its creator",
                ));
            }
            check_new_changes(device, &changes)?;
            check_time(push.doc, started, "applying")?;
            let rows = project(&doc).map_err(doc_error)?;
            let before = empty_record();
            let after = judge_push(&before, &doc, device)?;
            check_ops(&mut doc, device, &changes, (&before, &after), true)?;
            check_time(push.doc, started, "checking")?;
            return Ok(Merged::Stored {
                times: new_times(doc.header().doc_type, &before, &after),
                rows: Some(Box::new(rows)),
                doc: Box::new(doc),
                new_changes: changes,
                created: true,
                sync_reply: None,
            });
        }
    };
    let new_changes: Vec<Change> = changes
        .into_iter()
        .filter(|c| doc.automerge().get_change_by_hash(&c.hash()).is_none())
        .collect();
    check_new_changes(device, &new_changes)?;
    let mut times = Vec::new();
    let mut rows = None;
    if !new_changes.is_empty() {
        check_doc_ops(
            push.doc,
            doc.automerge().stats().num_ops,
            ops_in(&new_changes),
        )?;
        let before = doc.record_json();
        doc.apply_changes(new_changes.clone()).map_err(doc_error)?;
        if !doc.automerge().get_missing_deps(&[]).is_empty() {
            // Changes that depend on unknown ones are queued by Automerge, not applied; the
            // device must run the sync protocol so the server learns what it lacks.
            let mut state = State::new();
            let reply = doc.automerge().sync().generate_sync_message(&mut state);
            return Ok(Merged::NeedSync {
                sync_reply: reply.map(Message::encode),
            });
        }
        check_time(push.doc, started, "applying")?;
        rows = Some(Box::new(project(&doc).map_err(doc_error)?));
        let after = judge_push(&before, &doc, device)?;
        check_ops(&mut doc, device, &new_changes, (&before, &after), false)?;
        check_time(push.doc, started, "checking")?;
        times = new_times(doc.header().doc_type, &before, &after);
    }
    Ok(Merged::Stored {
        doc: Box::new(doc),
        new_changes,
        created,
        sync_reply: None,
        times,
        rows,
    })
}

fn merge_sync_message(
    existing: Option<Document>,
    device: &Device,
    push: &DocPush,
    msg: &[u8],
    dept_member: bool,
) -> Result<Merged, Rejection> {
    let message = Message::decode(msg)
        .map_err(|e| reject("bad_sync_message", format!("document {}: {e}", push.doc)))?;
    // As for pushed changes: a compressed change could inflate far past the request's size
    // limit as it is received. (Operation counts are checked right after receiving.)
    if message
        .changes
        .iter()
        .any(|c| c.get(8) == Some(&COMPRESSED_CHANGE_CHUNK))
    {
        return Err(reject(
            "bad_sync_message",
            format!(
                "the sync message for document {} carries a compressed change",
                push.doc
            ),
        ));
    }
    let created = existing.is_none();
    let mut am = match &existing {
        Some(doc) => {
            check_header(device, doc.header(), push.header.as_ref(), dept_member)?;
            let mut copy = doc.clone();
            copy.automerge().clone()
        }
        None => AutoCommit::new(),
    };
    let before: Vec<ChangeHash> = am.get_heads();
    // The server keeps no per-peer state between requests: every message is answered from a
    // fresh state, which the protocol tolerates (it re-announces heads and filters again).
    let mut state = State::new();
    am.sync()
        .receive_sync_message(&mut state, message)
        .map_err(|e| match e {
            e @ automerge::AutomergeError::DuplicateSeqNumber(..) => doc_error(DocError::from(e)),
            e => reject("bad_sync_message", e.to_string()),
        })?;
    let new_changes: Vec<Change> = am.get_changes(&before);
    check_new_changes(device, &new_changes)?;
    // A sync message's changes are parsed only as it is received; its bounds are checked
    // right after, before anything is projected, judged or stored.
    if let Some(c) = new_changes
        .iter()
        .find(|c| c.len() > cost::MAX_OPS_PER_CHANGE)
    {
        return Err(reject(
            "too_many_ops",
            format!("change {} has {} operations", c.hash(), c.len()),
        ));
    }
    check_doc_ops(push.doc, am.stats().num_ops, 0)?;
    let reply = am
        .sync()
        .generate_sync_message(&mut state)
        .map(Message::encode);
    let before = existing
        .as_ref()
        .map_or_else(empty_record, Document::record_json);
    let mut doc = match existing {
        Some(mut doc) => {
            // Apply through the document so the header check runs on what the message added.
            doc.apply_changes(new_changes.clone()).map_err(doc_error)?;
            doc
        }
        None => {
            if am.get_heads().is_empty() {
                // Nothing on either side yet: a first sync message carries no changes.
                return Ok(Merged::NeedSync { sync_reply: reply });
            }
            let doc = Document::from_automerge(am).map_err(doc_error)?;
            if doc.id() != push.doc {
                return Err(reject(
                    "header_mismatch",
                    "the sync message is for another document",
                ));
            }
            check_header(device, doc.header(), push.header.as_ref(), dept_member)?;
            if doc.header().creator != device.id {
                return Err(reject(
                    "actor_mismatch",
                    "a document can only be created by the device named as its creator",
                ));
            }
            doc
        }
    };
    let mut times = Vec::new();
    let mut rows = None;
    if !new_changes.is_empty() {
        rows = Some(Box::new(project(&doc).map_err(doc_error)?));
        let after = judge_push(&before, &doc, device)?;
        check_ops(&mut doc, device, &new_changes, (&before, &after), created)?;
        times = new_times(doc.header().doc_type, &before, &after);
    }
    Ok(Merged::Stored {
        doc: Box::new(doc),
        new_changes,
        created,
        sync_reply: reply,
        times,
        rows,
    })
}

#[cfg(test)]
mod fuzz {
    //! Hostile pushes: random or mutated change bytes give a typed rejection, never a panic and
    //! never a stored document.
    use super::*;
    use gridsync_core::records::{Household, Residence};
    use gridsync_proto::{DeviceId, DocId};
    use proptest::prelude::*;
    use serde_bytes::ByteBuf;

    fn device() -> Device {
        Device {
            id: DeviceId(uuid::Uuid::from_u128(7)),
            name: "w".into(),
            role: Role::Worker,
            scopes: vec![GridCode::parse("33010200101001002").expect("grid")],
            department: None,
        }
    }

    fn valid_change() -> (DocId, Vec<u8>) {
        let d = device();
        let mut doc = Document::create(
            DocId::new(),
            d.scopes[0].clone(),
            d.id,
            &Household::new("1 号", Residence::Permanent),
        )
        .expect("doc");
        let id = doc.id();
        let bytes = doc.changes_since(&[])[0].raw_bytes().to_vec();
        (id, bytes)
    }

    #[test]
    fn a_push_over_its_time_budget_is_refused_and_a_compressed_change_is_never_parsed() {
        let id = DocId::new();
        let long_ago = std::time::Instant::now()
            .checked_sub(cost::PUSH_TIME_BUDGET + std::time::Duration::from_secs(1))
            .expect("the machine has been up longer than the budget");
        assert_eq!(
            check_time(id, long_ago, "applying").map_err(|r| r.code),
            Err("push_too_slow")
        );
        assert!(check_time(id, std::time::Instant::now(), "applying").is_ok());
        // A change large enough that Automerge compresses it, sent compressed.
        let d = device();
        let mut h = Household::new("1 号", Residence::Permanent);
        h.address = "城南社区".repeat(40);
        let mut doc = Document::create(id, d.scopes[0].clone(), d.id, &h).expect("doc");
        let mut change = doc.changes_since(&[]).remove(0);
        let compressed = change.bytes().to_vec();
        assert_eq!(
            compressed.get(8),
            Some(&COMPRESSED_CHANGE_CHUNK),
            "compressed"
        );
        let push = DocPush {
            doc: id,
            header: None,
            heads: vec![],
            changes: vec![ByteBuf::from(compressed)],
            sync: None,
        };
        let err = merge_push(None, &d, &push, false).expect_err("refused");
        assert_eq!(err.code, "bad_change");
        assert!(err.message.contains("compressed"), "{}", err.message);
    }

    #[test]
    fn a_push_past_the_byte_bound_is_refused_before_the_document_is_loaded() {
        let push = DocPush {
            doc: DocId::new(),
            header: None,
            heads: vec![],
            changes: vec![ByteBuf::from(vec![0u8; 1024 * 1024])],
            sync: None,
        };
        assert!(cost::check_memory(&push, 1024).is_ok());
        let err = cost::check_memory(&push, cost::MAX_PUSH_BYTES - 1024)
            .expect_err("stored and pushed bytes together pass the bound");
        assert_eq!(err.code, "push_memory");
    }

    #[test]
    fn a_push_past_the_document_bound_is_refused_before_it_is_applied() {
        use automerge::transaction::Transactable;
        use automerge::{ObjType, ROOT};
        let d = device();
        let mut doc = Document::create(
            DocId::new(),
            d.scopes[0].clone(),
            d.id,
            &gridsync_core::records::Inspection {
                worker: "周网格".into(),
                started_at: 1,
                ended_at: None,
                track: vec![],
                checkpoints: Default::default(),
                findings: Default::default(),
                photos: Default::default(),
                redactions: Default::default(),
            },
        )
        .expect("patrol");
        let stored = doc.clone();
        let base = doc.heads();
        let am = doc.automerge();
        let Ok(Some((_, record))) = am.get(ROOT, "record") else {
            panic!("record")
        };
        // Changes under the per-change bound (one operation per character) that together
        // pass the document's.
        let text = am
            .put_object(&record, "notes", ObjType::Text)
            .expect("text");
        am.commit();
        let chunk = "巡".repeat(cost::MAX_OPS_PER_CHANGE - 10);
        for i in 0..=(cost::MAX_DOC_OPS as usize / cost::MAX_OPS_PER_CHANGE) {
            am.splice_text(&text, i * chunk.chars().count(), 0, &chunk)
                .expect("splice");
            am.commit();
        }
        let push = DocPush {
            doc: doc.id(),
            header: None,
            heads: vec![],
            changes: doc
                .changes_since(&base)
                .iter()
                .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                .collect(),
            sync: None,
        };
        let err = merge_push(Some(stored), &d, &push, false).expect_err("too large");
        assert_eq!(err.code, "document_too_large", "{}", err.message);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn mutated_changes_are_rejected_or_stored_whole(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            truncate in any::<prop::sample::Index>(),
            cut in any::<bool>(),
        ) {
            let (id, mut bytes) = valid_change();
            for (i, b) in flips {
                let at = i.index(bytes.len());
                bytes[at] = b;
            }
            if cut {
                bytes.truncate(truncate.index(bytes.len()));
            }
            let push = DocPush { doc: id, header: None, heads: vec![], changes: vec![ByteBuf::from(bytes)], sync: None };
            match merge_push(None, &device(), &push, false) {
                Ok(Merged::Stored { doc, .. }) => prop_assert_eq!(doc.id(), id),
                Ok(Merged::NeedSync { .. }) | Err(_) => {}
            }
        }

        #[test]
        fn random_sync_messages_are_rejected(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let push = DocPush { doc: DocId::new(), header: None, heads: vec![], changes: vec![], sync: Some(ByteBuf::from(bytes)) };
            let _ = merge_push(None, &device(), &push, false);
        }
    }
}
