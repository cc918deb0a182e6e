//! The phone's durable local store: SQLite through sqlx.
//!
//! **Invariant:** every call that returns `Ok` after a write has its change committed to disk
//! (WAL with `synchronous=FULL`), together with the projections it affects, in one transaction:
//! a kill -9 right after loses nothing, and a kill -9 before leaves the previous state.
//!
//! A document is stored as its last compacted snapshot plus the change chunks written since.
//! A write appends one chunk; after [`COMPACT_AFTER`] chunks the next write replaces the
//! snapshot and deletes the chunks in the same transaction, so a crash never leaves a document
//! without the bytes that make it up.

mod photos;

pub use photos::{PhotoTarget, QueuedFile};

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use gridsync_proto::{DeviceId, DocHeader, DocId, DocType, GridCode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};
use tokio::sync::Mutex;

use crate::clock::now_ms;
use crate::document::{DocError, Document, FieldConflict};
use crate::projection::PROJECTION_VERSION;
use crate::projection::{CaseRow, GridRow, HouseholdRow, InspectionRow, ResidentRow, VisitRow};
use std::collections::BTreeMap;

use gridsync_proto::RecordId;

use crate::records::{Case, Record};
use crate::workflow::{Action, Actor, CaseState, Role, WorkflowError, act, derive};

/// The `meta` key of the sync cursor (the server's opaque position for this replica).
pub(crate) const CURSOR_KEY: &str = "sync_cursor";

/// How many change chunks a document may gather before the next write compacts it.
pub const COMPACT_AFTER: i64 = 32;

/// Everything that can go wrong in the local store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The schema migration failed.
    #[error("migrating the store schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A document could not be read, validated or written.
    #[error(transparent)]
    Doc(#[from] DocError),
    /// Projections could not be computed.
    #[error(transparent)]
    Projection(#[from] crate::projection::ProjectionError),
    /// A workflow action was refused.
    #[error(transparent)]
    Workflow(#[from] crate::workflow::WorkflowError),
    /// No document with this id in the store.
    #[error("no document {0} in this store")]
    NotFound(DocId),
    /// A photo could not be processed.
    #[error(transparent)]
    Photo(#[from] crate::photo::PhotoError),
    /// A photo's target (a visit or checkpoint) is not in its document.
    #[error("{0}")]
    NoSuchEntry(String),
    /// The phone's photo folder could not be read or written.
    #[error("photo folder {path}: {reason}")]
    Blob {
        /// The file or folder.
        path: String,
        /// What failed.
        reason: String,
    },
    /// A stored value is not what the schema says (the file was damaged or edited by hand).
    #[error("store is corrupt: {0}")]
    Corrupt(String),
}

/// A resident found by name, with what a grid worker needs at the door: the household (address,
/// residence status, flags), the family with their work, and the household's past requests.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ResidentHit {
    /// The resident.
    pub resident: ResidentRow,
    /// Their household.
    pub household: HouseholdRow,
    /// Everyone in the household (the resident included), head first.
    pub family: Vec<ResidentRow>,
    /// Cases that name the household or one of its members, newest first.
    pub past_requests: Vec<CaseRow>,
}

/// How a store is opened.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// The newest document schema this build reads ([`crate::document::SCHEMA_VERSION`]).
    /// Documents of a newer schema are quarantined when pulled, and applied once a build that
    /// reads them opens the store (a test stands for an upgraded build by raising it).
    pub newest_schema: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            newest_schema: crate::document::SCHEMA_VERSION,
        }
    }
}

/// A document the server refused, set aside so it never holds back the rest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SetAside {
    /// The document.
    pub doc: DocId,
    /// The server's code and message.
    pub reason: String,
    /// Refusals in a row.
    pub attempts: i64,
    /// When it is offered again (ms, phone clock).
    pub retry_at: Option<i64>,
}

/// A pulled document this build cannot read, kept as bytes until one can.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quarantined {
    /// The document.
    pub doc: DocId,
    /// Why it could not be read.
    pub reason: String,
    /// Changes kept for it.
    pub changes: i64,
    /// When it was first set aside (ms).
    pub since: i64,
}

/// The local store of one device.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    device: DeviceId,
    newest_schema: u32,
    // The actor this store writes with now: the device's own at first, a fresh one (bound to
    // the same device) after the store was found to have diverged from a copy of itself.
    actor: Arc<std::sync::RwLock<automerge::ActorId>>,
    // Serialises read-modify-write of documents inside this process; SQLite's own lock covers
    // other processes.
    write_lock: Arc<Mutex<()>>,
    // The folder holding this store's photo files (`<store file>.blobs`).
    blob_dir: std::path::PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date. A new
    /// store gets a fresh device id, which is also the actor id of every change it writes.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, StoreOptions::default()).await
    }

    /// Opens the store at `path` with explicit options.
    pub async fn open_with(path: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'device_id'")
                .fetch_optional(&pool)
                .await?;
        let device = match existing {
            Some(s) => DeviceId::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            None => {
                let d = DeviceId::new();
                sqlx::query("INSERT INTO meta (key, value) VALUES ('device_id', ?)")
                    .bind(d.to_string())
                    .execute(&pool)
                    .await?;
                d
            }
        };
        let actor: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'actor'")
                .fetch_optional(&pool)
                .await?;
        let actor = match actor {
            Some(hex_actor) => {
                let bytes = hex::decode(&hex_actor)
                    .map_err(|e| StoreError::Corrupt(format!("actor {hex_actor:?}: {e}")))?;
                let actor = automerge::ActorId::from(bytes.as_slice());
                if crate::document::device_of(&actor) != Some(device) {
                    return Err(StoreError::Corrupt(format!(
                        "actor {hex_actor} is not bound to device {device}"
                    )));
                }
                actor
            }
            None => crate::document::actor_for(device),
        };
        let store = Self {
            pool,
            device,
            newest_schema: opts.newest_schema,
            actor: Arc::new(std::sync::RwLock::new(actor)),
            write_lock: Arc::new(Mutex::new(())),
            blob_dir: photos::blob_dir_of(path),
        };
        store.check_identity(path).await?;
        // Projections are derived data: when their definition changed, recompute them.
        if store.meta("projection_version").await?.as_deref() != Some(PROJECTION_VERSION) {
            store.rebuild_projections().await?;
            store
                .set_meta("projection_version", PROJECTION_VERSION)
                .await?;
        }
        Ok(store)
    }

    /// The device this store writes as.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The actor this store's changes carry now (always bound to [`Store::device`]).
    pub fn actor_id(&self) -> automerge::ActorId {
        self.actor
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The newest document schema this store reads.
    pub fn newest_schema(&self) -> u32 {
        self.newest_schema
    }

    /// Notices that this store file is a copy (a restored backup, a cloned phone, a file
    /// copied by hand): its file identity differs from the one recorded at the last open. A
    /// copy must not write under the actor the original goes on writing under (their sequence
    /// numbers would collide, and the server would take the copy's pulls for the original's),
    /// so it takes a fresh actor and pulls everything again before it writes anything.
    async fn check_identity(&self, path: &Path) -> Result<(), StoreError> {
        let Some(identity) = file_identity(path) else {
            return Ok(());
        };
        let recorded = self.meta("file_identity").await?;
        if recorded.as_deref() == Some(identity.as_str()) {
            return Ok(());
        }
        let _guard = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        if recorded.is_some() {
            self.take_fresh_actor(&mut tx).await?;
            sqlx::query("UPDATE meta SET value = '' WHERE key = $1")
                .bind(CURSOR_KEY)
                .execute(&mut *tx)
                .await?;
            tracing::warn!(store = %path.display(), "this store is a copy: took a fresh actor");
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('file_identity', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(&identity)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Switches to a fresh actor bound to this device, durably, for every later write: the
    /// old one was also used by a copy of this store, so its sequence numbers are taken.
    pub(crate) async fn take_fresh_actor(
        &self,
        tx: &mut SqliteConnection,
    ) -> Result<automerge::ActorId, StoreError> {
        let actor = crate::document::fresh_actor(self.device);
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('actor', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(hex::encode(actor.to_bytes()))
        .execute(&mut *tx)
        .await?;
        *self
            .actor
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = actor.clone();
        Ok(actor)
    }

    /// The connection pool, for modules (sync) that keep their own tables in this store.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Reads a free-form setting (worker name, server URL, sync cursor).
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Writes a free-form setting durably.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Creates a document holding `record` in `scope`; returns its new id once it is on disk.
    pub async fn create<R: Record>(
        &self,
        scope: GridCode,
        record: &R,
    ) -> Result<DocId, StoreError> {
        let mut ids = self
            .create_many(scope, std::slice::from_ref(record))
            .await?;
        ids.pop()
            .ok_or_else(|| StoreError::Corrupt("create wrote no document".into()))
    }

    /// Creates many documents in one transaction (bulk import): all or none are written.
    pub async fn create_many<R: Record>(
        &self,
        scope: GridCode,
        records: &[R],
    ) -> Result<Vec<DocId>, StoreError> {
        let mut docs = Vec::with_capacity(records.len());
        let actor = self.actor_id();
        for r in records {
            docs.push(Document::create_as(
                DocId::new(),
                scope.clone(),
                self.device,
                actor.clone(),
                r,
            )?);
        }
        let _guard = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(docs.len());
        for mut doc in docs {
            insert_doc(&mut tx, &mut doc).await?;
            mark_dirty(&mut tx, doc.id()).await?;
            crate::projection::sqlite::store(&mut tx, &doc).await?;
            ids.push(doc.id());
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Loads a document with every change it has.
    pub async fn load(&self, id: DocId) -> Result<Document, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let (mut doc, _) = load_doc(&mut conn, id, self.newest_schema).await?;
        doc.automerge().set_actor(self.actor_id());
        Ok(doc)
    }

    /// Reads a document's typed record.
    pub async fn read<R: Record>(&self, id: DocId) -> Result<R, StoreError> {
        Ok(self.load(id).await?.read()?)
    }

    /// Edits a record (see [`Document::update`]); returns whether anything changed. The change
    /// and the projections it affects are on disk when this returns.
    pub async fn update<R: Record>(
        &self,
        id: DocId,
        edit: impl FnOnce(&mut R),
    ) -> Result<bool, StoreError> {
        self.modify(id, |doc| Ok(doc.update::<R>(edit)?.is_some()))
            .await
    }

    /// Settles a conflicting field by writing one value at `path`.
    pub async fn resolve<R: Record>(
        &self,
        id: DocId,
        path: &str,
        value: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.modify(id, |doc| Ok(doc.resolve::<R>(path, value)?.is_some()))
            .await
            .map(|_| ())
    }

    /// The rule problems of a stored record: bad values written by an older version or another
    /// device, or made by a merge. They never block edits of other fields; each is fixed by
    /// writing its field (`resolve`).
    pub async fn problems(
        &self,
        id: DocId,
    ) -> Result<Vec<crate::validate::ValidationError>, StoreError> {
        let doc = self.load(id).await?;
        crate::records::check_json(doc.header().doc_type, &doc.record_json())
            .map(|c| c.errors)
            .map_err(|e| StoreError::Corrupt(format!("document {id}: {e}")))
    }

    /// The fields of a document that hold concurrent values.
    pub async fn conflicts(&self, id: DocId) -> Result<Vec<FieldConflict>, StoreError> {
        Ok(self.load(id).await?.conflicts())
    }

    /// Merges changes from another replica (saved bytes: a snapshot or change chunks) into a
    /// document, creating it if this store does not have it yet. Returns the merged header.
    pub async fn merge_bytes(&self, bytes: &[u8]) -> Result<DocHeader, StoreError> {
        let incoming = Document::load_upto(bytes, self.newest_schema)?;
        let id = incoming.id();
        let _guard = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let existing = doc_exists(&mut tx, id).await?;
        let doc = if existing {
            let (mut doc, chunks) = load_doc(&mut tx, id, self.newest_schema).await?;
            let before = doc.heads();
            doc.load_incremental(bytes)?;
            if doc.heads() != before {
                let chunk = doc.save_after(&before);
                append_chunk(&mut tx, &mut doc, chunk, chunks).await?;
                crate::projection::sqlite::store(&mut tx, &doc).await?;
                mark_dirty(&mut tx, id).await?;
            }
            doc
        } else {
            let mut doc = incoming;
            insert_doc(&mut tx, &mut doc).await?;
            mark_dirty(&mut tx, id).await?;
            crate::projection::sqlite::store(&mut tx, &doc).await?;
            doc
        };
        tx.commit().await?;
        Ok(doc.header().clone())
    }

    /// Runs `f` on a loaded document and, when it made a change, stores the change and the
    /// projections in one transaction.
    pub async fn modify(
        &self,
        id: DocId,
        f: impl FnOnce(&mut Document) -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        let _guard = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let (mut doc, chunks) = load_doc(&mut tx, id, self.newest_schema).await?;
        doc.automerge().set_actor(self.actor_id());
        doc.set_role(self.role().await?);
        let before = doc.heads();
        if !f(&mut doc)? {
            return Ok(false);
        }
        let chunk = doc.save_after(&before);
        append_chunk(&mut tx, &mut doc, chunk, chunks).await?;
        crate::projection::sqlite::store(&mut tx, &doc).await?;
        mark_dirty(&mut tx, id).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Ids of all documents of one type, optionally inside one scope (prefix match on the
    /// hierarchical code).
    pub async fn doc_ids(
        &self,
        doc_type: DocType,
        within: Option<&GridCode>,
    ) -> Result<Vec<DocId>, StoreError> {
        let prefix = within
            .map(|g| format!("{g}%"))
            .unwrap_or_else(|| "%".into());
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT doc_id FROM docs WHERE doc_type = ? AND scope LIKE ? ORDER BY doc_id",
        )
        .bind(doc_type.as_str())
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|s| DocId::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    /// Grid units, optionally inside one unit.
    pub async fn grids(&self, within: Option<&GridCode>) -> Result<Vec<GridRow>, StoreError> {
        let prefix = within
            .map(|g| format!("{g}%"))
            .unwrap_or_else(|| "%".into());
        Ok(
            sqlx::query_as("SELECT * FROM p_grids WHERE code LIKE ? ORDER BY code")
                .bind(prefix)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Households, optionally of one grid (or anything under a unit), by address.
    pub async fn households(
        &self,
        within: Option<&GridCode>,
    ) -> Result<Vec<HouseholdRow>, StoreError> {
        let prefix = within
            .map(|g| format!("{g}%"))
            .unwrap_or_else(|| "%".into());
        Ok(
            sqlx::query_as("SELECT * FROM p_households WHERE grid LIKE ? ORDER BY grid, address")
                .bind(prefix)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Residents whose name contains `name` (or whose ID number equals it), with their
    /// households: exact name matches first.
    pub async fn search_residents(&self, name: &str) -> Result<Vec<ResidentHit>, StoreError> {
        Ok(self.search_residents_page(name, 0, 200).await?.0)
    }

    /// One page of [`Store::search_residents`]: `limit` hits from `offset`, and how many
    /// residents match in all.
    pub async fn search_residents_page(
        &self,
        name: &str,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<ResidentHit>, u64), StoreError> {
        let needle = name.trim();
        // LIKE's wildcards are not part of any name: a query of only wildcards finds nothing
        // (rather than everyone).
        let literal = needle.replace(['%', '_'], "");
        if literal.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let pattern = format!("%{literal}%");
        let (total,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM p_residents WHERE name LIKE ?1 OR id_number = ?2")
                .bind(&pattern)
                .bind(needle)
                .fetch_one(&self.pool)
                .await?;
        let residents: Vec<ResidentRow> = sqlx::query_as(
            "SELECT * FROM p_residents WHERE name LIKE ?1 OR id_number = ?2 \
             ORDER BY (name = ?2) DESC, name, household_id, resident_id LIMIT ?3 OFFSET ?4",
        )
        .bind(pattern)
        .bind(needle)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.pool)
        .await?;
        let total = u64::try_from(total).unwrap_or(0);
        // Households, families and past requests for all hits in three queries (not per hit):
        // the phone store is SQLite, so the id list travels as one JSON parameter.
        let mut household_ids: Vec<String> = residents
            .iter()
            .map(|r| r.household_id.to_string())
            .collect();
        household_ids.sort();
        household_ids.dedup();
        let ids = serde_json::to_string(&household_ids)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let households: Vec<HouseholdRow> = sqlx::query_as(
            "SELECT * FROM p_households WHERE doc_id IN (SELECT value FROM json_each(?))",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let members: Vec<ResidentRow> = sqlx::query_as(
            "SELECT * FROM p_residents WHERE household_id IN (SELECT value FROM json_each(?)) \
             ORDER BY household_id, relation = 'head' DESC, birth_date, name",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let links: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT household_id, case_id FROM p_case_links \
             WHERE household_id IN (SELECT value FROM json_each(?))",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let cases: Vec<CaseRow> = sqlx::query_as(
            "SELECT * FROM p_cases WHERE doc_id IN (SELECT case_id FROM p_case_links \
             WHERE household_id IN (SELECT value FROM json_each(?))) ORDER BY reported_at DESC, doc_id",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut hits = Vec::with_capacity(residents.len());
        for r in residents {
            let Some(household) = households
                .iter()
                .find(|h| h.doc_id == r.household_id)
                .cloned()
            else {
                return Err(StoreError::Corrupt(format!(
                    "resident {} has no household row",
                    r.resident_id
                )));
            };
            let family = members
                .iter()
                .filter(|m| m.household_id == r.household_id)
                .cloned()
                .collect();
            let hid = r.household_id.to_string();
            let past_requests = cases
                .iter()
                .filter(|c| {
                    links
                        .iter()
                        .any(|(h, case)| *h == hid && *case == c.doc_id.to_string())
                })
                .cloned()
                .collect();
            hits.push(ResidentHit {
                resident: r,
                household,
                family,
                past_requests,
            });
        }
        Ok((hits, total))
    }

    /// The members of one household.
    pub async fn residents_of(&self, household: DocId) -> Result<Vec<ResidentRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM p_residents WHERE household_id = ? ORDER BY relation = 'head' DESC, birth_date, name",
        )
        .bind(household.to_string())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The visit log of one household, newest first.
    pub async fn visits_of(&self, household: DocId) -> Result<Vec<VisitRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM p_visits WHERE household_id = ? ORDER BY at DESC")
                .bind(household.to_string())
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Cases, optionally with one status, newest first.
    pub async fn cases(&self, status: Option<&str>) -> Result<Vec<CaseRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM p_cases WHERE (?1 IS NULL OR status = ?1) ORDER BY reported_at DESC, doc_id",
        )
        .bind(status)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A household's past requests: cases that name it (or one of its members) as a party.
    pub async fn cases_of_household(&self, household: DocId) -> Result<Vec<CaseRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM p_cases WHERE doc_id IN \
             (SELECT case_id FROM p_case_links WHERE household_id = ?) \
             ORDER BY reported_at DESC, doc_id",
        )
        .bind(household.to_string())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Patrols, optionally inside one unit, newest first.
    pub async fn inspections(
        &self,
        within: Option<&GridCode>,
    ) -> Result<Vec<InspectionRow>, StoreError> {
        let prefix = within
            .map(|g| format!("{g}%"))
            .unwrap_or_else(|| "%".into());
        Ok(
            sqlx::query_as(
                "SELECT * FROM p_inspections WHERE grid LIKE ? ORDER BY started_at DESC",
            )
            .bind(prefix)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// Recomputes every projection from the documents, in one transaction.
    pub async fn rebuild_projections(&self) -> Result<usize, StoreError> {
        let _guard = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        crate::projection::sqlite::clear(&mut tx).await?;
        let ids: Vec<String> = sqlx::query_scalar("SELECT doc_id FROM docs ORDER BY doc_id")
            .fetch_all(&mut *tx)
            .await?;
        for id in &ids {
            let id = DocId::from_str(id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let (doc, _) = load_doc(&mut tx, id, self.newest_schema).await?;
            crate::projection::sqlite::store(&mut tx, &doc).await?;
        }
        tx.commit().await?;
        Ok(ids.len())
    }

    /// The lock every read-modify-write of documents holds (the sync engine takes it too).
    pub(crate) fn write_lock(&self) -> &Mutex<()> {
        &self.write_lock
    }

    /// Documents this device changed that the server has not acknowledged yet.
    pub async fn unsynced_count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM doc_sync WHERE dirty = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Documents the server refused, set aside with their reason and next retry.
    pub async fn set_aside(&self) -> Result<Vec<SetAside>, StoreError> {
        let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT doc_id, rejected, attempts, retry_at FROM doc_sync \
             WHERE rejected IS NOT NULL ORDER BY doc_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, reason, attempts, retry_at)| {
                Ok(SetAside {
                    doc: DocId::from_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    reason,
                    attempts,
                    retry_at,
                })
            })
            .collect()
    }

    /// Makes every set-aside document due now (a person asked to try again).
    pub async fn retry_set_aside(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE doc_sync SET retry_at = NULL WHERE rejected IS NOT NULL AND dirty = 1",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Pulled documents this build could not read.
    pub async fn quarantined(&self) -> Result<Vec<Quarantined>, StoreError> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT q.doc_id, q.reason, \
             (SELECT COUNT(*) FROM quarantine_changes c WHERE c.doc_id = q.doc_id), q.first_at \
             FROM quarantine q ORDER BY q.doc_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, reason, changes, since)| {
                Ok(Quarantined {
                    doc: DocId::from_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    reason,
                    changes,
                    since,
                })
            })
            .collect()
    }

    /// Local copies replaced by a rebase (a copy of this store had written under the same
    /// actor), newest first: `(document, when, why)`. Their bytes stay in the store.
    pub async fn superseded(&self) -> Result<Vec<(DocId, i64, String)>, StoreError> {
        let rows: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT doc_id, at, reason FROM superseded ORDER BY at DESC, doc_id")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(id, at, why)| {
                Ok((
                    DocId::from_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    at,
                    why,
                ))
            })
            .collect()
    }

    /// Who acts from this device: the worker's name and the role and department it enrolled
    /// with (a worker until enrolled).
    pub async fn actor(&self) -> Result<Actor, StoreError> {
        let name = self
            .meta("worker")
            .await?
            .unwrap_or_else(|| self.device.to_string());
        let role = self.role().await?;
        let dept = self.meta("department").await?.filter(|d| !d.is_empty());
        Ok(Actor { name, role, dept })
    }

    /// The role this device enrolled with (a worker until enrolled): what its edits are
    /// judged in.
    pub async fn role(&self) -> Result<Role, StoreError> {
        match self.meta("role").await? {
            Some(r) => Role::from_str(&r).map_err(StoreError::Corrupt),
            None => Ok(Role::Worker),
        }
    }

    /// Takes a workflow action on a case as `actor`: `plan` computes the event's data from the
    /// case and its derived state (deadlines, departments). Refused actions write nothing.
    pub async fn case_action(
        &self,
        id: DocId,
        actor: &Actor,
        action: Action,
        note: &str,
        at: i64,
        plan: impl FnOnce(&Case, &CaseState) -> Result<BTreeMap<String, String>, WorkflowError>,
    ) -> Result<RecordId, StoreError> {
        let mut event_id = None;
        self.modify(id, |doc| {
            let mut case: Case = doc.read()?;
            let state = derive(&case);
            let data = plan(&case, &state)?;
            let eid = act(&mut case, action, actor, at, note, data)?;
            let event = case.events[&eid].clone();
            event_id = Some(eid);
            Ok(doc
                .update::<Case>(|c| {
                    c.events.insert(eid, event);
                })?
                .is_some())
        })
        .await?;
        event_id.ok_or_else(|| StoreError::Corrupt("the action wrote no event".into()))
    }

    /// Closes the pool, flushing and checkpointing the WAL.
    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// The identity of the file at `path`: its inode, which a copy of the file does not share.
/// (Not the device number: on phones it can change across OS updates for the same file.) A
/// file moved to another file system also gets a new one; the cost of that false alarm is
/// one fresh actor and one full pull.
#[cfg(unix)]
fn file_identity(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(format!("ino:{}", m.ino()))
}

/// Elsewhere copies are caught by the server instead (`actor_diverged`).
#[cfg(not(unix))]
fn file_identity(_path: &Path) -> Option<String> {
    None
}

pub(crate) async fn doc_exists(
    conn: &mut sqlx::SqliteConnection,
    id: DocId,
) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM docs WHERE doc_id = ?")
            .bind(id.to_string())
            .fetch_one(&mut *conn)
            .await?
            > 0,
    )
}

pub(crate) async fn load_doc(
    conn: &mut sqlx::SqliteConnection,
    id: DocId,
    newest_schema: u32,
) -> Result<(Document, i64), StoreError> {
    let row = sqlx::query("SELECT snapshot, chunk_count FROM docs WHERE doc_id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound(id))?;
    let mut bytes: Vec<u8> = row.try_get("snapshot")?;
    let chunk_count: i64 = row.try_get("chunk_count")?;
    if chunk_count > 0 {
        let chunks: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT bytes FROM doc_chunks WHERE doc_id = ? ORDER BY seq")
                .bind(id.to_string())
                .fetch_all(&mut *conn)
                .await?;
        for c in chunks {
            bytes.extend_from_slice(&c);
        }
    }
    let doc = Document::load_upto(&bytes, newest_schema)?;
    if doc.id() != id {
        return Err(StoreError::Corrupt(format!(
            "row {id} holds document {}",
            doc.id()
        )));
    }
    Ok((doc, chunk_count))
}

pub(crate) async fn insert_doc(
    tx: &mut SqliteConnection,
    doc: &mut Document,
) -> Result<(), StoreError> {
    let h = doc.header().clone();
    let snapshot = doc.save();
    sqlx::query(
        "INSERT INTO docs (doc_id, doc_type, scope, creator, snapshot, chunk_count, updated_at) \
         VALUES (?, ?, ?, ?, ?, 0, ?)",
    )
    .bind(h.id.to_string())
    .bind(h.doc_type.as_str())
    .bind(h.scope.as_str())
    .bind(h.creator.to_string())
    .bind(snapshot)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(crate) async fn append_chunk(
    tx: &mut SqliteConnection,
    doc: &mut Document,
    chunk: Vec<u8>,
    chunk_count: i64,
) -> Result<(), StoreError> {
    let id = doc.id().to_string();
    if chunk_count + 1 > COMPACT_AFTER {
        // The new snapshot covers every chunk; both happen in this transaction, so there is
        // never a moment on disk where a change exists in neither.
        write_snapshot(tx, doc).await?;
    } else {
        sqlx::query("INSERT INTO doc_chunks (doc_id, seq, bytes) VALUES (?, ?, ?)")
            .bind(&id)
            .bind(chunk_count + 1)
            .bind(chunk)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE docs SET chunk_count = ?, updated_at = ? WHERE doc_id = ?")
            .bind(chunk_count + 1)
            .bind(now_ms())
            .bind(&id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Stores `doc` whole as its document's snapshot, dropping the chunks it covers (compaction,
/// or a rebase that replaces the local history).
pub(crate) async fn write_snapshot(
    tx: &mut SqliteConnection,
    doc: &mut Document,
) -> Result<(), StoreError> {
    let id = doc.id().to_string();
    sqlx::query("UPDATE docs SET snapshot = ?, chunk_count = 0, updated_at = ? WHERE doc_id = ?")
        .bind(doc.save())
        .bind(now_ms())
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM doc_chunks WHERE doc_id = ?")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Records that this device wrote a change the server has not acknowledged. A new edit of a
/// set-aside document is offered at the next sync (it may be the fix).
pub(crate) async fn mark_dirty(tx: &mut SqliteConnection, id: DocId) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO doc_sync (doc_id, dirty) VALUES ($1, 1) \
         ON CONFLICT (doc_id) DO UPDATE SET dirty = 1, retry_at = NULL",
    )
    .bind(id.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(())
}
