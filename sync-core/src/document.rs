//! One record as one Automerge document.
//!
//! Layout of every document: the root holds `header` (immutable: id, type, scope, creator,
//! schema) and `record` (the record's fields). Records are written by diffing the typed record
//! before and after an edit and touching only the fields that changed, so concurrent edits of
//! different fields merge cleanly, maps keyed by id merge entry by entry, lists that only grew
//! get appends, and fields listed in [`Record::TEXT_FIELDS`] are Automerge text that merges
//! character by character. Two replicas setting the same field concurrently leave a conflict
//! that [`Document::conflicts`] reports with every value, until a person resolves it.

use std::str::FromStr;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Change, ChangeHash, ObjId, ObjType, Prop, ROOT, ReadDoc};
use gridsync_proto::{DeviceId, DocHeader, DocId, DocType, GridCode};
use serde_json::{Map, Value as Json};

use crate::records::Record;
use crate::rules::{self, Violation};
use crate::validate::ValidationErrors;
use crate::workflow::Role;

/// The schema version this build writes; it reads every version up to this one.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything that can go wrong reading or writing a document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocError {
    /// Automerge refused the bytes or the operation.
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// The record failed validation; nothing was written.
    #[error("invalid {doc_type}: {source}")]
    Invalid {
        /// The type of the record.
        doc_type: DocType,
        /// Every field that is wrong.
        #[source]
        source: ValidationErrors,
    },
    /// A field in the document does not have the shape the schema expects.
    #[error("document {doc}: field `{path}` does not fit the {doc_type} schema: {reason}")]
    Schema {
        /// The document.
        doc: DocId,
        /// Its type.
        doc_type: DocType,
        /// The field path inside the record.
        path: String,
        /// What serde found wrong.
        reason: String,
    },
    /// The document has no readable header.
    #[error("document header is missing or malformed: {0}")]
    Header(String),
    /// The document is of another type than the caller asked for.
    #[error("document {id} is a {found}, not a {expected}")]
    WrongType {
        /// The document.
        id: DocId,
        /// What the caller asked for.
        expected: DocType,
        /// What it is.
        found: DocType,
    },
    /// Written by a newer gridsync than this one.
    #[error("document {id} uses schema {found}, newer than this build reads; upgrade the app")]
    FutureSchema {
        /// The document.
        id: DocId,
        /// The schema it declares.
        found: u32,
    },
    /// Incoming changes tried to alter the immutable header.
    #[error("changes to document {0} would alter its immutable header")]
    HeaderChanged(DocId),
    /// The authorship table does not let this device make the edit; nothing was written.
    #[error("not allowed: {0}")]
    NotAllowed(#[source] Violation),
    /// A conflict resolution named a field that does not exist.
    #[error("document {doc} has no field `{path}`")]
    NoSuchField {
        /// The document.
        doc: DocId,
        /// The path that was asked for.
        path: String,
    },
}

/// A field that two replicas set concurrently: every value is kept until a person picks one.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldConflict {
    /// Dot-separated path inside the record, e.g. `members.<id>.phones`.
    pub path: String,
    /// All concurrent values, in Automerge's deterministic order; the last is the one shown.
    pub values: Vec<Json>,
}

/// An Automerge document holding one record, with its parsed header.
#[derive(Debug, Clone)]
pub struct Document {
    header: DocHeader,
    doc: AutoCommit,
    /// The role edits are judged in (see `crate::rules`); a worker unless told otherwise.
    role: Role,
}

/// The actor id a device writes with first: its device id's 16 bytes, so every change is
/// attributable to the enrolled device that made it.
pub fn actor_for(device: DeviceId) -> ActorId {
    ActorId::from(device.as_bytes().as_slice())
}

/// A new actor bound to `device`: the device id's 16 bytes and 8 random ones. A store takes
/// one when a copy of it already used its actor (restored or cloned), so sequence numbers
/// never collide; every such actor still names the device.
pub fn fresh_actor(device: DeviceId) -> ActorId {
    let mut bytes = device.as_bytes().to_vec();
    bytes.extend_from_slice(&rand::random::<[u8; 8]>());
    ActorId::from(bytes.as_slice())
}

/// The device an actor is bound to: the first 16 bytes of a 16- or 24-byte actor id.
pub fn device_of(actor: &ActorId) -> Option<DeviceId> {
    let raw = actor.to_bytes();
    if raw.len() != 16 && raw.len() != 24 {
        return None;
    }
    let bytes: [u8; 16] = raw[..16].try_into().ok()?;
    Some(DeviceId(uuid::Uuid::from_bytes(bytes)))
}

impl Document {
    /// Creates a document holding `record`, written by `device` (under its first actor), in one
    /// change.
    pub fn create<R: Record>(
        id: DocId,
        scope: GridCode,
        device: DeviceId,
        record: &R,
    ) -> Result<Self, DocError> {
        Self::create_as(id, scope, device, actor_for(device), record)
    }

    /// Creates a document as [`Document::create`] does, written under `actor` (which must be
    /// bound to `device`: the store's current actor).
    pub fn create_as<R: Record>(
        id: DocId,
        scope: GridCode,
        device: DeviceId,
        actor: ActorId,
        record: &R,
    ) -> Result<Self, DocError> {
        let header = DocHeader {
            id,
            doc_type: R::DOC_TYPE,
            scope,
            creator: device,
            schema: SCHEMA_VERSION,
        };
        let mut doc = AutoCommit::new().with_actor(actor);
        let h = doc.put_object(ROOT, "header", ObjType::Map)?;
        doc.put(&h, "id", header.id.to_string())?;
        doc.put(&h, "type", header.doc_type.as_str())?;
        doc.put(&h, "scope", header.scope.as_str())?;
        doc.put(&h, "creator", header.creator.to_string())?;
        doc.put(&h, "schema", i64::from(header.schema))?;
        let record_obj = doc.put_object(ROOT, "record", ObjType::Map)?;
        let mut this = Self {
            header,
            doc,
            role: Role::Worker,
        };
        // A new record is judged as an edit of an empty one: every field is touched, so every
        // rule applies, and its entries are stamped with their author.
        let empty = Json::Object(Map::new());
        let json = this.judged::<R>(&empty, &[], to_json_value(record)?)?;
        reconcile(
            &mut this.doc,
            &record_obj,
            &empty,
            &json,
            R::TEXT_FIELDS,
            &mut Vec::new(),
        )?;
        this.doc.commit();
        Ok(this)
    }

    /// Loads a document from saved bytes (a snapshot, optionally followed by change chunks).
    pub fn load(bytes: &[u8]) -> Result<Self, DocError> {
        Self::load_upto(bytes, SCHEMA_VERSION)
    }

    /// Loads a document whose schema is at most `newest_schema` (the newest this reader knows).
    pub fn load_upto(bytes: &[u8], newest_schema: u32) -> Result<Self, DocError> {
        let doc = AutoCommit::load(bytes)?;
        Self::from_automerge_upto(doc, newest_schema)
    }

    /// Wraps an Automerge document, reading and checking its header.
    pub fn from_automerge(doc: AutoCommit) -> Result<Self, DocError> {
        Self::from_automerge_upto(doc, SCHEMA_VERSION)
    }

    /// Wraps an Automerge document whose schema is at most `newest_schema`.
    pub fn from_automerge_upto(doc: AutoCommit, newest_schema: u32) -> Result<Self, DocError> {
        let header = read_header(&doc, newest_schema)?;
        Ok(Self {
            header,
            doc,
            role: Role::Worker,
        })
    }

    /// Sets the role later edits are judged in (the enrolled role of the writing device).
    pub fn set_role(&mut self, role: Role) {
        self.role = role;
    }

    /// The writing device as the authorship rules see it: the device the current actor is
    /// bound to, in the role set with [`Document::set_role`].
    pub fn writer(&self) -> rules::Writer {
        rules::Writer {
            device: device_of(self.doc.get_actor()).unwrap_or(self.header.creator),
            role: self.role,
            creator: self.header.creator,
        }
    }

    /// Judges an edit from `before` (typed record JSON, whose problems are `before_errors`)
    /// to `after`: stamps new entries with their author, refuses it when it breaks the
    /// authorship table or leaves a problem on a field it touched (or a new one), and
    /// returns the JSON to write.
    fn judged<R: Record>(
        &self,
        before: &Json,
        before_errors: &[crate::validate::ValidationError],
        mut after: Json,
    ) -> Result<Json, DocError> {
        let writer = self.writer();
        rules::stamp_authors(R::DOC_TYPE, writer.device, before, &mut after);
        if *before == after {
            return Ok(after);
        }
        rules::check_authorship(R::DOC_TYPE, &writer, before, &after)
            .map_err(DocError::NotAllowed)?;
        let next: R = self.decode(after.clone())?;
        let after_errors = next.validate().err().map(|e| e.0).unwrap_or_default();
        let blocking = rules::blocking_errors(before, &after, before_errors, after_errors);
        if !blocking.is_empty() {
            return Err(DocError::Invalid {
                doc_type: R::DOC_TYPE,
                source: ValidationErrors(blocking),
            });
        }
        Ok(after)
    }

    /// The immutable header.
    pub fn header(&self) -> &DocHeader {
        &self.header
    }

    /// The document id.
    pub fn id(&self) -> DocId {
        self.header.id
    }

    /// Makes later edits attributable to `device`.
    pub fn set_device(&mut self, device: DeviceId) {
        self.doc.set_actor(actor_for(device));
    }

    /// The underlying Automerge document (for sync and storage).
    pub fn automerge(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    /// The current heads.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The whole document, compacted.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// The changes made since `heads`, as one incremental chunk.
    pub fn save_after(&mut self, heads: &[ChangeHash]) -> Vec<u8> {
        self.doc.save_after(heads)
    }

    /// The changes made since `heads`.
    pub fn changes_since(&mut self, heads: &[ChangeHash]) -> Vec<Change> {
        self.doc.get_changes(heads)
    }

    /// The record as JSON, exactly as stored (unknown fields from newer schemas included).
    pub fn record_json(&self) -> Json {
        self.walk_record(&mut Vec::new())
    }

    /// Hydrates the record in one pass, noting the paths of fields that hold conflicts.
    fn walk_record(&self, conflict_paths: &mut Vec<Vec<Prop>>) -> Json {
        let Ok(record) = self.record_obj() else {
            return Json::Null;
        };
        match self.doc.hydrate(&record, None) {
            Ok(value) => hydrate_to_json(&value, &mut Vec::new(), conflict_paths),
            Err(_) => Json::Null,
        }
    }

    /// The typed record.
    pub fn read<R: Record>(&self) -> Result<R, DocError> {
        self.expect_type(R::DOC_TYPE)?;
        self.decode(self.record_json())
    }

    fn decode<R: Record>(&self, json: Json) -> Result<R, DocError> {
        serde_path_to_error::deserialize(json).map_err(|e| DocError::Schema {
            doc: self.header.id,
            doc_type: self.header.doc_type,
            path: e.path().to_string(),
            reason: e.inner().to_string(),
        })
    }

    fn expect_type(&self, expected: DocType) -> Result<(), DocError> {
        if self.header.doc_type == expected {
            Ok(())
        } else {
            Err(DocError::WrongType {
                id: self.header.id,
                expected,
                found: self.header.doc_type,
            })
        }
    }

    /// Edits the record: `edit` changes a copy, the edit is judged (`crate::rules`: the
    /// authorship table, and no problem left on a field it touched), and only fields that
    /// differ are written, as one change. Returns the new change's hash, or `None` when the edit
    /// changed nothing. A refused edit writes nothing; a problem already in the record on a
    /// field the edit left alone does not refuse it.
    pub fn update<R: Record>(
        &mut self,
        edit: impl FnOnce(&mut R),
    ) -> Result<Option<ChangeHash>, DocError> {
        self.expect_type(R::DOC_TYPE)?;
        let current: R = self.decode(self.record_json())?;
        let before_errors = current.validate().err().map(|e| e.0).unwrap_or_default();
        // Diff typed-before against typed-after, never the raw document: fields this build
        // does not know (written by a newer schema) are then left alone rather than deleted.
        let before = to_json_value(&current)?;
        let mut next = current;
        edit(&mut next);
        let after = self.judged::<R>(&before, &before_errors, to_json_value(&next)?)?;
        if before == after {
            return Ok(None);
        }
        let record = self.record_obj()?;
        let mut path = Vec::new();
        let result = reconcile(
            &mut self.doc,
            &record,
            &before,
            &after,
            R::TEXT_FIELDS,
            &mut path,
        );
        if let Err(e) = result {
            self.doc.rollback();
            return Err(e);
        }
        Ok(self.doc.commit())
    }

    /// Writes the record so that it reads as `target` (record JSON of this document type),
    /// touching only what differs, as one change by the current actor. Used to re-apply a
    /// diverged copy's edits under a fresh actor. Returns the change, or `None` when nothing
    /// differs.
    pub fn write_record_json(&mut self, target: &Json) -> Result<Option<ChangeHash>, DocError> {
        let current = self.record_json();
        if *target == current {
            return Ok(None);
        }
        let record = self.record_obj()?;
        let fields = crate::records::text_fields(self.header.doc_type);
        let result = reconcile(
            &mut self.doc,
            &record,
            &current,
            target,
            fields,
            &mut Vec::new(),
        );
        if let Err(e) = result {
            self.doc.rollback();
            return Err(e);
        }
        Ok(self.doc.commit())
    }

    fn record_obj(&self) -> Result<ObjId, DocError> {
        match self.doc.get(ROOT, "record")? {
            Some((automerge::Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Err(DocError::Schema {
                doc: self.header.id,
                doc_type: self.header.doc_type,
                path: "record".into(),
                reason: "missing".into(),
            }),
        }
    }

    /// The typed record and its conflicts, from one pass over the document.
    pub fn read_with_conflicts<R: Record>(&self) -> Result<(R, Vec<FieldConflict>), DocError> {
        self.expect_type(R::DOC_TYPE)?;
        let mut paths = Vec::new();
        let record = self.decode(self.walk_record(&mut paths))?;
        Ok((record, self.conflicts_at(paths)))
    }

    /// Every field of the record that currently holds concurrent values.
    pub fn conflicts(&self) -> Vec<FieldConflict> {
        let mut paths = Vec::new();
        self.walk_record(&mut paths);
        self.conflicts_at(paths)
    }

    fn conflicts_at(&self, paths: Vec<Vec<Prop>>) -> Vec<FieldConflict> {
        if paths.is_empty() {
            return Vec::new();
        }
        let Ok(record) = self.record_obj() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        'paths: for path in paths {
            let Some((last, parents)) = path.split_last() else {
                continue;
            };
            let mut obj = record.clone();
            for prop in parents {
                match self.doc.get(&obj, prop.clone()) {
                    Ok(Some((automerge::Value::Object(_), id))) => obj = id,
                    _ => continue 'paths,
                }
            }
            let Ok(values) = self.doc.get_all(&obj, last.clone()) else {
                continue;
            };
            out.push(FieldConflict {
                path: path
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("."),
                values: values
                    .iter()
                    .map(|(v, id)| match v {
                        automerge::Value::Object(_) => self
                            .doc
                            .hydrate(id, None)
                            .map(|h| hydrate_to_json(&h, &mut Vec::new(), &mut Vec::new()))
                            .unwrap_or(Json::Null),
                        automerge::Value::Scalar(s) => scalar_to_json(s),
                    })
                    .collect(),
            });
        }
        out
    }

    /// Settles a conflict (or fixes any field) by writing `value` at `path`, superseding every
    /// concurrent value. The edit is judged like [`Document::update`]: the field written must
    /// be valid afterwards, or nothing is written.
    pub fn resolve<R: Record>(
        &mut self,
        path: &str,
        value: Json,
    ) -> Result<Option<ChangeHash>, DocError> {
        self.expect_type(R::DOC_TYPE)?;
        let no_field = || DocError::NoSuchField {
            doc: self.header.id,
            path: path.to_owned(),
        };
        let segments: Vec<&str> = path.split('.').collect();
        let current: R = self.decode(self.record_json())?;
        let before_errors = current.validate().err().map(|e| e.0).unwrap_or_default();
        let before = to_json_value(&current)?;
        let mut after = before.clone();
        let slot = segments
            .iter()
            .try_fold(&mut after, |node, seg| match node {
                Json::Object(m) => m.get_mut(*seg),
                Json::Array(l) => seg.parse::<usize>().ok().and_then(|i| l.get_mut(i)),
                _ => None,
            })
            .ok_or_else(no_field)?;
        *slot = value.clone();
        self.judged::<R>(&before, &before_errors, after)?;
        let (last, parents) = segments.split_last().ok_or_else(no_field)?;
        let mut obj = self.record_obj()?;
        let mut obj_type = ObjType::Map;
        for seg in parents {
            let prop = prop_for(obj_type, seg).ok_or_else(no_field)?;
            match self.doc.get(&obj, prop)? {
                Some((automerge::Value::Object(t), id)) => {
                    obj = id;
                    obj_type = t;
                }
                _ => return Err(no_field()),
            }
        }
        let prop = prop_for(obj_type, last).ok_or_else(no_field)?;
        if self.doc.get(&obj, prop.clone())?.is_none() {
            return Err(no_field());
        }
        let mut walked: Vec<String> = segments.iter().map(|s| (*s).to_owned()).collect();
        walked.pop();
        let result = put_value(
            &mut self.doc,
            &obj,
            prop,
            &value,
            R::TEXT_FIELDS,
            &mut walked,
        )
        .and_then(|()| self.decode::<R>(self.record_json()).map(|_| ()));
        if let Err(e) = result {
            self.doc.rollback();
            return Err(e);
        }
        Ok(self.doc.commit())
    }

    /// Applies changes from another replica. Changes that would alter the header are refused
    /// and leave the document as it was.
    pub fn apply_changes(&mut self, changes: Vec<Change>) -> Result<(), DocError> {
        let before = self.doc.get_heads();
        self.doc.apply_changes(changes)?;
        self.check_header_after(&before)
    }

    /// Merges another replica of the same document into this one (header checked likewise).
    pub fn merge(&mut self, other: &mut Document) -> Result<(), DocError> {
        let before = self.doc.get_heads();
        self.doc.merge(&mut other.doc)?;
        self.check_header_after(&before)
    }

    /// Applies saved bytes (a snapshot or change chunks) from another replica.
    pub fn load_incremental(&mut self, bytes: &[u8]) -> Result<(), DocError> {
        let before = self.doc.get_heads();
        self.doc.load_incremental(bytes)?;
        self.check_header_after(&before)
    }

    fn check_header_after(&mut self, before: &[ChangeHash]) -> Result<(), DocError> {
        let intact = read_header(&self.doc, u32::MAX).is_ok_and(|h| h == self.header)
            && header_has_no_conflicts(&self.doc);
        if intact {
            return Ok(());
        }
        // Roll back to the state before the bad changes: a fork at the old heads is exactly the
        // document without them.
        let restored = self.doc.fork_at(before)?;
        let actor = self.doc.get_actor().clone();
        self.doc = restored.with_actor(actor);
        Err(DocError::HeaderChanged(self.header.id))
    }
}

fn header_has_no_conflicts(doc: &AutoCommit) -> bool {
    let Ok(Some((_, h))) = doc.get(ROOT, "header") else {
        return false;
    };
    doc.get_all(ROOT, "header")
        .map(|v| v.len() == 1)
        .unwrap_or(false)
        && doc
            .keys(&h)
            .all(|k| doc.get_all(&h, k).map(|v| v.len() == 1).unwrap_or(false))
}

fn read_header(doc: &AutoCommit, newest_schema: u32) -> Result<DocHeader, DocError> {
    let h = match doc.get(ROOT, "header")? {
        Some((automerge::Value::Object(ObjType::Map), id)) => id,
        _ => return Err(DocError::Header("no `header` map at the root".into())),
    };
    let text = |key: &str| -> Result<String, DocError> {
        match doc.get(&h, key)? {
            Some((automerge::Value::Scalar(s), _)) => match s.as_ref() {
                automerge::ScalarValue::Str(s) => Ok(s.to_string()),
                _ => Err(DocError::Header(format!("`{key}` is not text"))),
            },
            _ => Err(DocError::Header(format!("`{key}` is missing"))),
        }
    };
    let id = DocId::from_str(&text("id")?).map_err(|e| DocError::Header(e.to_string()))?;
    let doc_type =
        DocType::from_str(&text("type")?).map_err(|e| DocError::Header(e.to_string()))?;
    let scope = GridCode::parse(&text("scope")?).map_err(|e| DocError::Header(e.to_string()))?;
    let creator =
        DeviceId::from_str(&text("creator")?).map_err(|e| DocError::Header(e.to_string()))?;
    let schema = match doc.get(&h, "schema")? {
        Some((automerge::Value::Scalar(s), _)) => match s.as_ref() {
            automerge::ScalarValue::Int(n) => u32::try_from(*n).ok(),
            automerge::ScalarValue::Uint(n) => u32::try_from(*n).ok(),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| DocError::Header("`schema` is not a version number".into()))?;
    if schema > newest_schema {
        return Err(DocError::FutureSchema { id, found: schema });
    }
    Ok(DocHeader {
        id,
        doc_type,
        scope,
        creator,
        schema,
    })
}

fn to_json_value<R: serde::Serialize>(record: &R) -> Result<Json, DocError> {
    serde_json::to_value(record)
        .map_err(|e| DocError::Header(format!("record not serialisable: {e}")))
}

fn prop_for(obj_type: ObjType, seg: &str) -> Option<Prop> {
    match obj_type {
        ObjType::Map | ObjType::Table => Some(Prop::from(seg)),
        ObjType::List | ObjType::Text => seg.parse::<usize>().ok().map(Prop::from),
    }
}

fn is_text_path(path: &[String], patterns: &[&str]) -> bool {
    patterns.iter().any(|p| {
        let segs: Vec<&str> = p.split('.').collect();
        segs.len() == path.len() && segs.iter().zip(path).all(|(s, q)| *s == "*" || s == q)
    })
}

fn scalar_to_json(s: &automerge::ScalarValue) -> Json {
    use automerge::ScalarValue as S;
    match s {
        S::Str(s) => Json::String(s.to_string()),
        S::Int(n) | S::Timestamp(n) => Json::from(*n),
        S::Uint(n) => Json::from(*n),
        S::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        S::Counter(c) => Json::from(i64::from(c)),
        S::Boolean(b) => Json::Bool(*b),
        S::Null | S::Bytes(_) | S::Unknown { .. } => Json::Null,
    }
}

fn hydrate_to_json(
    v: &automerge::hydrate::Value,
    path: &mut Vec<Prop>,
    conflicts: &mut Vec<Vec<Prop>>,
) -> Json {
    use automerge::hydrate::Value as H;
    match v {
        H::Scalar(s) => scalar_to_json(s),
        H::Text(t) => Json::String(t.to_string()),
        H::Map(m) => {
            // Sorted keys: the JSON (and the conflict list) must not depend on hash order.
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                let mv = &m[k];
                path.push(Prop::from(k.as_str()));
                if mv.conflict {
                    conflicts.push(path.clone());
                }
                out.insert(k.clone(), hydrate_to_json(&mv.value, path, conflicts));
                path.pop();
            }
            Json::Object(out)
        }
        H::List(l) => Json::Array(
            l.iter()
                .enumerate()
                .map(|(i, lv)| {
                    path.push(Prop::from(i));
                    if lv.conflict {
                        conflicts.push(path.clone());
                    }
                    let j = hydrate_to_json(&lv.value, path, conflicts);
                    path.pop();
                    j
                })
                .collect(),
        ),
    }
}

fn json_scalar(v: &Json) -> automerge::ScalarValue {
    use automerge::ScalarValue as S;
    match v {
        Json::Bool(b) => S::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => S::Int(i),
            (None, Some(u), _) => S::Uint(u),
            (_, _, Some(f)) => S::F64(f),
            _ => S::Null,
        },
        Json::String(s) => S::Str(s.as_str().into()),
        Json::Null | Json::Array(_) | Json::Object(_) => S::Null,
    }
}

/// Builds the Automerge value for a JSON value, with text where the schema wants text.
fn json_to_hydrate(
    v: &Json,
    path: &mut Vec<String>,
    text_fields: &[&str],
) -> automerge::hydrate::Value {
    use automerge::hydrate::Value as H;
    match v {
        Json::Object(map) => {
            let mut m = std::collections::HashMap::with_capacity(map.len());
            for (k, cv) in map {
                path.push(k.clone());
                m.insert(k.clone(), json_to_hydrate(cv, path, text_fields));
                path.pop();
            }
            H::Map(m.into())
        }
        Json::Array(items) => {
            let mut l = Vec::with_capacity(items.len());
            for (i, cv) in items.iter().enumerate() {
                path.push(i.to_string());
                l.push(json_to_hydrate(cv, path, text_fields));
                path.pop();
            }
            H::List(l.into())
        }
        Json::String(s) if is_text_path(path, text_fields) => {
            H::text(automerge::TextEncoding::UnicodeCodePoint, s)
        }
        other => H::Scalar(json_scalar(other)),
    }
}

fn put_scalar<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    prop: Prop,
    v: &Json,
) -> Result<(), DocError> {
    tx.put(obj, prop, json_scalar(v))?;
    Ok(())
}

/// Writes `v` at `obj[prop]`, replacing whatever is there. Objects are created in one batch
/// (far cheaper than one operation at a time).
fn put_value<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    prop: Prop,
    v: &Json,
    text_fields: &[&str],
    path: &mut Vec<String>,
) -> Result<(), DocError> {
    path.push(prop.to_string());
    let is_object = matches!(v, Json::Object(_) | Json::Array(_))
        || (v.is_string() && is_text_path(path, text_fields));
    let result = if is_object {
        let value = json_to_hydrate(v, path, text_fields);
        tx.batch_create_object(obj, prop, &value, false)
            .map(|_| ())
            .map_err(DocError::from)
    } else {
        put_scalar(tx, obj, prop, v)
    };
    path.pop();
    result
}

fn insert_value<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    index: usize,
    v: &Json,
    text_fields: &[&str],
    path: &mut Vec<String>,
) -> Result<(), DocError> {
    if matches!(v, Json::Object(_) | Json::Array(_)) {
        path.push(index.to_string());
        let value = json_to_hydrate(v, path, text_fields);
        path.pop();
        tx.batch_create_object(list, index, &value, true)?;
    } else {
        tx.insert(list, index, json_scalar(v))?;
    }
    Ok(())
}

/// Applies the difference between `old` and `new` (both typed-record JSON) to `obj`.
fn reconcile<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    old: &Json,
    new: &Json,
    text_fields: &[&str],
    path: &mut Vec<String>,
) -> Result<(), DocError> {
    let (Json::Object(old), Json::Object(new)) = (old, new) else {
        return Ok(());
    };
    for (k, nv) in new {
        let ov = old.get(k);
        if ov == Some(nv) {
            continue;
        }
        let existing = tx.get(obj, k.as_str())?;
        path.push(k.clone());
        let r = match (ov, nv, existing) {
            (
                Some(ov @ Json::Object(_)),
                Json::Object(_),
                Some((automerge::Value::Object(ObjType::Map), child)),
            ) => reconcile(tx, &child, ov, nv, text_fields, path),
            (
                Some(Json::Array(ol)),
                Json::Array(nl),
                Some((automerge::Value::Object(ObjType::List), child)),
            ) => reconcile_list(tx, &child, ol, nl, text_fields, path),
            (_, Json::String(s), Some((automerge::Value::Object(ObjType::Text), child))) => {
                tx.update_text(&child, s).map_err(DocError::from)
            }
            _ => {
                path.pop();
                let r = put_value(tx, obj, Prop::from(k.as_str()), nv, text_fields, path);
                path.push(k.clone());
                r
            }
        };
        path.pop();
        r?;
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            tx.delete(obj, k.as_str())?;
        }
    }
    Ok(())
}

fn reconcile_list<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    old: &[Json],
    new: &[Json],
    text_fields: &[&str],
    path: &mut Vec<String>,
) -> Result<(), DocError> {
    // Splice, never overwrite by position: keep the common prefix and suffix, delete what was
    // removed and insert what was added in between. A concurrent edit of another element then
    // survives (an in-place overwrite would land it on a slot this replica deleted).
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let max_suffix = old.len().min(new.len()) - prefix;
    let suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    for i in (prefix..old.len() - suffix).rev() {
        tx.delete(list, i)?;
    }
    for (offset, nv) in new[prefix..new.len() - suffix].iter().enumerate() {
        insert_value(tx, list, prefix + offset, nv, text_fields, path)?;
    }
    Ok(())
}
