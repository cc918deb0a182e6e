//! The app API: everything a grid worker's app does, as one async, typed facade over the
//! store, the records, the workflow and the sync client. The phone app reaches it through
//! the bindings (`gridsync-ffi`), the terminal tool `gridsync-field` calls it directly, and
//! neither holds logic of its own: inputs are checked here (vocabularies in Chinese or as
//! codes, ID numbers, the category table), and every answer is a serializable record.
//!
//! - `mod.rs`: [`Replica`] (open, identity, set-up, enrollment, reference data, the generic
//!   document operations: conflicts, problems, redaction, export and import).
//! - `field.rs`: grids, households, residents, visits and patrols.
//! - `cases.rs`: cases and the workflow (the actions allowed now, acting).
//! - `sync.rs`: sync with progress, sync status, photos, indicators.
//! - `vocab.rs`: the vocabularies with their Chinese labels.
//! - `error.rs`: [`AppError`].

mod cases;
mod error;
mod field;
mod sync;
pub use crate::vocab;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use gridsync_proto::{DocHeader, DocId, DocType, RecordId};
use serde::Serialize;

pub use cases::{ActionInfo, ActionRequest, CaseFilter, CaseView, DeptRef, EventView, NewCase};
pub use error::AppError;
pub use field::{
    HouseholdEdit, HouseholdView, InspectionView, MemberView, NewCheckpoint, NewHousehold,
    NewResident, NewVisit, Page, PersonFields, ResidentEdit, SearchPage, VisitView,
};
pub use sync::{
    Enrollment, NewPhoto, PhotoView, SyncOptions, SyncOutcome, SyncProgress, SyncStatus,
};

use crate::document::FieldConflict;
use crate::records::{Case, Grid, Household, Inspection, Redaction};
use crate::store::{Store, StoreOptions};
use crate::workflow::{Reference, Role};

/// Events an app listens to: sync progress and "these records changed" (after a local write
/// or a sync that brought changes), so it can refresh what is on screen.
pub trait Listener: Send + Sync {
    /// A sync round finished.
    fn progress(&self, progress: &SyncProgress);
    /// These documents changed on this phone.
    fn changed(&self, docs: &[DocId]);
}

/// Who this phone is: the device, the person using it and what it enrolled as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The device id (made on the phone, kept for its life).
    pub device: DocIdString,
    /// The worker's name, once set.
    pub worker: Option<String>,
    /// The role it enrolled with (`worker` until enrolled).
    pub role: String,
    /// The department, for a clerk's device.
    pub department: Option<String>,
    /// The server it enrolled with.
    pub server: Option<String>,
    /// Whether it holds a device token.
    pub enrolled: bool,
}

/// A device id as text (the type the bindings carry).
pub type DocIdString = String;

/// A field with concurrent values, as the app shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictView {
    /// The field path (what `resolve` takes).
    pub path: String,
    /// The values, as JSON (what `resolve` takes, serialized).
    pub values: Vec<serde_json::Value>,
}

/// A rule problem of a stored record (a bad value from an older version or another device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProblemView {
    /// The field path.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

/// A 小类 of the category table with what dispatch uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryInfo {
    /// Four digits.
    pub code: String,
    /// 小类 name.
    pub name: String,
    /// 大类 code (the first two digits).
    pub major_code: String,
    /// 大类 name.
    pub major_name: String,
    /// Default lead department.
    pub lead: DeptRef,
    /// Default co-departments.
    pub co: Vec<DeptRef>,
    /// The time limit, in words (`3 个工作日`).
    pub limit: String,
    /// The urgent time limit, in words.
    pub urgent_limit: String,
}

/// How to open a replica.
#[derive(Debug, Clone, Default)]
pub struct ReplicaOptions {
    /// A reference file (category table, departments, calendar) replacing the built-in one.
    pub reference: Option<PathBuf>,
    /// Store options (the newest schema this build reads).
    pub store: Option<StoreOptions>,
    /// How long to wait for another owner to close the store before refusing (zero: refuse
    /// at once, as the app does; the terminal tool waits a little).
    pub wait: std::time::Duration,
}

/// One phone's replica: its store file, opened by one owner at a time.
pub struct Replica {
    store: Store,
    reference: Reference,
    listener: RwLock<Option<Arc<dyn Listener>>>,
    // One sync at a time: two sessions would push the same changes twice and race the cursor.
    pub(crate) sync_lock: tokio::sync::Mutex<()>,
    // Held while the replica is open: a second open of the same store is refused.
    _lock: std::fs::File,
    path: PathBuf,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("path", &self.path).finish()
    }
}

impl Replica {
    /// Opens (creating if needed) the store at `path`. The store is locked for as long as the
    /// replica is open: a second open, from this process or another, is refused with
    /// [`AppError::StoreInUse`] instead of two owners writing one file.
    pub async fn open(path: &Path, opts: ReplicaOptions) -> Result<Self, AppError> {
        let reference = match &opts.reference {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    AppError::invalid("reference", format!("reading {}: {e}", file.display()))
                })?;
                Reference::from_json(&text)
                    .map_err(|e| AppError::invalid("reference", e.to_string()))?
            }
            None => Reference::builtin(),
        };
        let lock = lock_store(path, opts.wait).await?;
        let store = match opts.store {
            Some(o) => Store::open_with(path, o).await?,
            None => Store::open(path).await?,
        };
        Ok(Self {
            store,
            reference,
            listener: RwLock::new(None),
            sync_lock: tokio::sync::Mutex::new(()),
            _lock: lock,
            path: path.to_owned(),
        })
    }

    /// The store underneath (for tests and tools that need more than the app does).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The reference data in use.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Closes the store (flushing its log) and releases the lock.
    pub async fn close(self) {
        self.store.close().await;
    }

    /// Sets (or clears) the listener for progress and change events.
    pub fn set_listener(&self, listener: Option<Arc<dyn Listener>>) {
        if let Ok(mut l) = self.listener.write() {
            *l = listener;
        }
    }

    pub(crate) fn listener(&self) -> Option<Arc<dyn Listener>> {
        self.listener.read().ok().and_then(|l| l.clone())
    }

    pub(crate) fn changed(&self, docs: &[DocId]) {
        if let Some(l) = self.listener()
            && !docs.is_empty()
        {
            l.changed(docs);
        }
    }

    /// Who this phone is.
    pub async fn identity(&self) -> Result<Identity, AppError> {
        let s = &self.store;
        Ok(Identity {
            device: s.device().to_string(),
            worker: s.meta("worker").await?,
            role: s.role().await?.as_str().to_owned(),
            department: s.meta("department").await?.filter(|d| !d.is_empty()),
            server: s.meta("server_url").await?,
            enrolled: s.meta(crate::client::TOKEN_KEY).await?.is_some(),
        })
    }

    /// Sets the name of the person using this phone (and, until enrollment sets them, a role
    /// and department).
    pub async fn set_worker(
        &self,
        name: &str,
        role: Option<&str>,
        department: Option<&str>,
    ) -> Result<Identity, AppError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(AppError::invalid("worker", "a name is required"));
        }
        let enrolled = self.store.meta(crate::client::TOKEN_KEY).await?.is_some();
        if enrolled && (role.is_some() || department.is_some()) {
            return Err(AppError::NotAllowed(
                "this phone is enrolled: its role and department come from its enrollment".into(),
            ));
        }
        let role = role
            .map(|r| {
                r.parse::<Role>()
                    .map_err(|e: String| AppError::invalid("role", e))
            })
            .transpose()?;
        if let Some(d) = department
            && !self.reference.has_department(d)
        {
            return Err(self.unknown_department("department", d));
        }
        let will_be = match role {
            Some(r) => r,
            None => self.store.role().await?,
        };
        if will_be != Role::Department && department.is_some() {
            return Err(AppError::invalid(
                "department",
                "only a department clerk's device has a department",
            ));
        }
        if let Some(r) = role {
            self.store.set_meta("role", r.as_str()).await?;
            if r != Role::Department {
                // A device that stops being a clerk's no longer acts for a department.
                self.store.set_meta("department", "").await?;
            }
        }
        if let Some(d) = department {
            self.store.set_meta("department", d).await?;
        }
        self.store.set_meta("worker", name).await?;
        self.identity().await
    }

    /// The worker's name, or the error that says how to set it.
    pub(crate) async fn worker(&self) -> Result<String, AppError> {
        self.store
            .meta("worker")
            .await?
            .ok_or_else(|| AppError::NotSetUp(error::NOT_INITIALISED.into()))
    }

    /// The 小类 table with departments' names and time limits in words.
    pub fn categories(&self) -> Vec<CategoryInfo> {
        self.reference
            .categories
            .iter()
            .map(|c| CategoryInfo {
                code: c.code.clone(),
                name: c.name.clone(),
                major_code: c.code.chars().take(2).collect(),
                major_name: c.major_name.clone(),
                lead: self.dept_ref(&c.lead),
                co: c.co.iter().map(|d| self.dept_ref(d)).collect(),
                limit: limit_words(c.limit),
                urgent_limit: limit_words(c.urgent_limit.unwrap_or(c.limit)),
            })
            .collect()
    }

    /// The departments cases are dispatched to.
    pub fn departments(&self) -> Vec<DeptRef> {
        self.reference
            .departments
            .iter()
            .map(|d| DeptRef {
                code: d.code.clone(),
                name: d.name.clone(),
            })
            .collect()
    }

    /// Every vocabulary, with Chinese labels.
    pub fn vocabularies(&self) -> vocab::Vocabularies {
        vocab::vocabularies()
    }

    pub(crate) fn dept_ref(&self, code: &str) -> DeptRef {
        DeptRef {
            code: code.to_owned(),
            name: self
                .reference
                .departments
                .iter()
                .find(|d| d.code == code)
                .map_or_else(String::new, |d| d.name.clone()),
        }
    }

    pub(crate) fn unknown_department(&self, field: &str, code: &str) -> AppError {
        let known: Vec<String> = self
            .reference
            .departments
            .iter()
            .map(|d| format!("{} {}", d.code, d.name))
            .collect();
        AppError::invalid(
            field,
            format!("unknown department {code:?}; known: {}", known.join(", ")),
        )
    }

    /// The type of a stored document (a typed "not found" when it is not here).
    pub async fn doc_type(&self, id: DocId) -> Result<DocType, AppError> {
        Ok(self.store.load(id).await?.header().doc_type)
    }

    /// The fields of a document holding concurrent values.
    pub async fn conflicts(&self, id: DocId) -> Result<Vec<ConflictView>, AppError> {
        Ok(conflict_views(&self.store.conflicts(id).await?))
    }

    /// Settles a conflicting field with the chosen value (JSON).
    pub async fn resolve(&self, id: DocId, path: &str, value_json: &str) -> Result<(), AppError> {
        let value: serde_json::Value = serde_json::from_str(value_json).map_err(|e| {
            AppError::invalid(
                "value",
                format!("{value_json:?} is not JSON ({e}); quote text: '\"...\"'"),
            )
        })?;
        match self.doc_type(id).await? {
            DocType::Household => self.store.resolve::<Household>(id, path, value).await?,
            DocType::Case => self.store.resolve::<Case>(id, path, value).await?,
            DocType::Inspection => self.store.resolve::<Inspection>(id, path, value).await?,
            DocType::Grid => self.store.resolve::<Grid>(id, path, value).await?,
        }
        self.changed(&[id]);
        Ok(())
    }

    /// The rule problems of a record (they block only edits of the same fields).
    pub async fn problems(&self, id: DocId) -> Result<Vec<ProblemView>, AppError> {
        Ok(self
            .store
            .problems(id)
            .await?
            .iter()
            .map(|p| ProblemView {
                field: p.field.clone(),
                problem: p.problem.to_string(),
            })
            .collect())
    }

    /// Takes an entry out of view (dispatchers and leaders); it stays in the history.
    pub async fn redact(
        &self,
        id: DocId,
        target: &str,
        reason: &str,
    ) -> Result<RecordId, AppError> {
        if reason.trim().is_empty() {
            return Err(AppError::invalid("reason", "a redaction needs a reason"));
        }
        let redaction = Redaction {
            target: target.to_owned(),
            reason: reason.to_owned(),
            at: crate::clock::now_ms(),
            author: None,
        };
        let rid = RecordId::new();
        let add = |r: &mut std::collections::BTreeMap<RecordId, Redaction>| {
            r.insert(rid, redaction.clone());
        };
        match self.doc_type(id).await? {
            DocType::Household => {
                self.store
                    .update::<Household>(id, |h| add(&mut h.redactions))
                    .await?
            }
            DocType::Case => {
                self.store
                    .update::<Case>(id, |c| add(&mut c.redactions))
                    .await?
            }
            DocType::Inspection => {
                self.store
                    .update::<Inspection>(id, |i| add(&mut i.redactions))
                    .await?
            }
            DocType::Grid => {
                return Err(AppError::invalid(
                    "target",
                    "grid records have no entries to redact",
                ));
            }
        };
        self.changed(&[id]);
        Ok(rid)
    }

    /// A document's full history as bytes (to carry to another phone).
    pub async fn export_doc(&self, id: DocId) -> Result<Vec<u8>, AppError> {
        Ok(self.store.load(id).await?.save())
    }

    /// Merges a document exported by another phone.
    pub async fn import_doc(&self, bytes: &[u8]) -> Result<DocHeader, AppError> {
        let header = self.store.merge_bytes(bytes).await?;
        self.changed(&[header.id]);
        Ok(header)
    }

    /// Recomputes lists and search indexes from the documents; returns how many.
    pub async fn rebuild(&self) -> Result<usize, AppError> {
        Ok(self.store.rebuild_projections().await?)
    }
}

pub(crate) fn conflict_views(conflicts: &[FieldConflict]) -> Vec<ConflictView> {
    conflicts
        .iter()
        .map(|c| ConflictView {
            path: c.path.clone(),
            values: c.values.clone(),
        })
        .collect()
}

fn limit_words(limit: crate::workflow::TimeLimit) -> String {
    match limit {
        crate::workflow::TimeLimit::WorkingHours(h) => format!("{h} 个工作小时"),
        crate::workflow::TimeLimit::WorkingDays(d) => format!("{d} 个工作日"),
    }
}

/// Locks the store file itself (`flock`, which SQLite's own `fcntl` locks do not touch), so
/// a symlink or hard link to the same file is the same lock; the kernel releases it when the
/// process ends, however it ends.
async fn lock_store(path: &Path, wait: std::time::Duration) -> Result<std::fs::File, AppError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| AppError::invalid("store", format!("creating {}: {e}", dir.display())))?;
    }
    // An empty file is an empty SQLite database: creating it here changes nothing.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| AppError::invalid("store", format!("{}: {e}", path.display())))?;
    let until = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < until => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AppError::StoreInUse(format!(
                    "the store {} is open elsewhere (another app screen, process or command); close it first",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(AppError::invalid(
                    "store",
                    format!("locking {}: {e}", path.display()),
                ));
            }
        }
    }
}
