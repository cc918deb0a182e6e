//! gridsync-ffi: the phone library. The app API ([`gridsync_core::app::Replica`]) exported
//! through uniffi to Kotlin (Android), Swift (iOS) and Python (tests).
//!
//! - Records cross as plain uniffi records (ids and times as text and milliseconds); the
//!   replica is one object, [`Phone`].
//! - Every async call runs on a small tokio runtime this library owns (two worker threads,
//!   sized for a phone), never on the caller's thread: the app awaits a join handle.
//! - Progress and "these records changed" reach the app through the [`PhoneListener`]
//!   foreign trait, called from the library's threads.
//! - Errors cross as one flat [`ApiError`] whose variant is the kind and whose message says
//!   what was wrong and where.

use std::sync::{Arc, OnceLock};

use gridsync_core::app::{self, AppError, Replica};
use gridsync_proto::{DocId, RecordId};

mod records;

pub use records::*;

uniffi::setup_scaffolding!();

/// Why a call failed; the message names the field and the problem. A failed call changed
/// nothing.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum ApiError {
    /// A value given is not acceptable (an ID number, a relation, a grid code ...).
    #[error("{0}")]
    Invalid(String),
    /// The record asked for is not on this phone.
    #[error("{0}")]
    NotFound(String),
    /// The rules refuse it (role, state, authorship).
    #[error("{0}")]
    NotAllowed(String),
    /// The phone is not set up or enrolled yet.
    #[error("{0}")]
    NotSetUp(String),
    /// The store is open elsewhere.
    #[error("{0}")]
    StoreInUse(String),
    /// The server could not be reached or refused.
    #[error("{0}")]
    Network(String),
    /// The local store failed.
    #[error("{0}")]
    Store(String),
    /// A defect in the library (a task panicked).
    #[error("{0}")]
    Internal(String),
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let m = e.to_string();
        match e {
            AppError::Invalid { .. } => ApiError::Invalid(m),
            AppError::NotFound(_) => ApiError::NotFound(m),
            AppError::NotAllowed(_) => ApiError::NotAllowed(m),
            AppError::NotSetUp(_) => ApiError::NotSetUp(m),
            AppError::StoreInUse(_) => ApiError::StoreInUse(m),
            AppError::Network(_) => ApiError::Network(m),
            _ => ApiError::Store(m),
        }
    }
}

/// The library's runtime: two worker threads, enough for sync, photo processing and store
/// work on a phone without competing with the app's own threads.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        gridsync_core::client::install_crypto_provider();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(4)
            .thread_name("gridsync")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("gridsync cannot start its runtime: {e}"))
    })
}

/// Runs `f` on the library's runtime and waits for it without blocking the caller's thread.
async fn on_runtime<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, AppError>> + Send + 'static,
{
    match runtime().spawn(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::Internal(format!("gridsync task failed: {e}"))),
    }
}

fn doc_id(field: &str, s: &str) -> Result<DocId, ApiError> {
    s.trim()
        .parse()
        .map_err(|_| ApiError::Invalid(format!("{field}: {s:?} is not a record id")))
}

fn record_id(field: &str, s: &str) -> Result<RecordId, ApiError> {
    s.trim()
        .parse()
        .map_err(|_| ApiError::Invalid(format!("{field}: {s:?} is not an entry id")))
}

/// Events from the library: implement this in the app and pass it to [`Phone::set_listener`].
#[uniffi::export(with_foreign)]
pub trait PhoneListener: Send + Sync {
    /// A sync round (or the photo upload) finished.
    fn on_progress(&self, progress: SyncProgress);
    /// These records changed on this phone (after a local write or a sync).
    fn on_changed(&self, ids: Vec<String>);
}

/// One event on its way to the app's listener.
enum Event {
    Progress(SyncProgress),
    Changed(Vec<String>),
}

/// Hands events to the app's listener on a thread of its own: a slow listener never stalls
/// the library's workers, and one that throws (which uniffi turns into a panic here) never
/// turns a committed write into an error. When the listener is replaced or the phone closed,
/// the events already queued are delivered and the thread ends before that call returns, so
/// no callback ever arrives after it (and none while the app's runtime is shutting down).
struct Forward {
    tx: std::sync::Mutex<Option<std::sync::mpsc::Sender<Event>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Forward {
    fn start(listener: Arc<dyn PhoneListener>) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Event>();
        let thread = std::thread::Builder::new()
            .name("gridsync-events".into())
            .spawn(move || {
                for event in rx {
                    let call = std::panic::AssertUnwindSafe(|| match event {
                        Event::Progress(p) => listener.on_progress(p),
                        Event::Changed(ids) => listener.on_changed(ids),
                    });
                    // The app's exception is the app's: the event is dropped, the work stands.
                    let _ = std::panic::catch_unwind(call);
                }
            })?;
        Ok(Self {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    fn send(&self, e: Event) {
        if let Ok(tx) = self.tx.lock()
            && let Some(tx) = tx.as_ref()
        {
            let _ = tx.send(e);
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        // A listener that replaces itself from inside a callback cannot wait for itself.
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }
}

impl app::Listener for Forward {
    fn progress(&self, p: &app::SyncProgress) {
        self.send(Event::Progress(p.into()));
    }
    fn changed(&self, docs: &[DocId]) {
        self.send(Event::Changed(
            docs.iter().map(ToString::to_string).collect(),
        ));
    }
}

/// One phone's replica: the store file, opened by one owner at a time.
#[derive(uniffi::Object)]
pub struct Phone {
    // `None` once closed; calls under way keep their own reference until they finish.
    replica: std::sync::RwLock<Option<Arc<Replica>>>,
}

impl Phone {
    fn r(&self) -> Result<Arc<Replica>, ApiError> {
        self.replica
            .read()
            .ok()
            .and_then(|r| r.clone())
            .ok_or_else(|| ApiError::NotSetUp("this Phone is closed; open the store again".into()))
    }
}

#[uniffi::export]
impl Phone {
    /// Opens (creating if needed) the store at `path`; a second open of the same store is
    /// refused (`StoreInUse`) until the first is closed. `reference` is an optional reference
    /// file replacing the built-in category table and calendar.
    #[uniffi::constructor]
    pub async fn open(path: String, reference: Option<String>) -> Result<Arc<Self>, ApiError> {
        let replica = on_runtime(async move {
            Replica::open(
                std::path::Path::new(&path),
                app::ReplicaOptions {
                    reference: reference.map(Into::into),
                    store: None,
                    // The app is told at once; it decides whether to try again.
                    wait: std::time::Duration::ZERO,
                },
            )
            .await
        })
        .await?;
        Ok(Arc::new(Self {
            replica: std::sync::RwLock::new(Some(Arc::new(replica))),
        }))
    }

    /// Closes the store: later calls are refused, the store's log is flushed and the store
    /// released for the next open once the calls under way have finished.
    pub async fn close(&self) -> Result<(), ApiError> {
        let taken = self.replica.write().ok().and_then(|mut r| r.take());
        if let Some(replica) = taken {
            on_runtime(async move {
                // The last owner closes it properly; otherwise the last call to finish drops it.
                if let Ok(r) = Arc::try_unwrap(replica) {
                    r.close().await;
                }
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Sets the listener for progress and change events (`None` removes it).
    pub fn set_listener(&self, listener: Option<Arc<dyn PhoneListener>>) -> Result<(), ApiError> {
        let forward = match listener {
            Some(l) => Some(Arc::new(
                Forward::start(l).map_err(|e| ApiError::Internal(format!("event thread: {e}")))?,
            ) as Arc<dyn app::Listener>),
            None => None,
        };
        self.r()?.set_listener(forward);
        Ok(())
    }

    /// Who this phone is.
    pub async fn identity(&self) -> Result<Identity, ApiError> {
        let r = self.r()?;
        on_runtime(async move { r.identity().await })
            .await
            .map(Into::into)
    }

    /// Sets the person using this phone (and, until enrollment, a role and department).
    pub async fn set_worker(
        &self,
        name: String,
        role: Option<String>,
        department: Option<String>,
    ) -> Result<Identity, ApiError> {
        let r = self.r()?;
        on_runtime(async move {
            r.set_worker(&name, role.as_deref(), department.as_deref())
                .await
        })
        .await
        .map(Into::into)
    }

    /// Enrolls with the one-time code the operator gave.
    pub async fn enroll(&self, server: String, code: String) -> Result<Enrollment, ApiError> {
        let r = self.r()?;
        on_runtime(async move { r.enroll(&server, &code).await })
            .await
            .map(Into::into)
    }

    /// The category table with departments and time limits.
    pub fn categories(&self) -> Result<Vec<Category>, ApiError> {
        Ok(self.r()?.categories().into_iter().map(Into::into).collect())
    }

    /// The departments.
    pub fn departments(&self) -> Result<Vec<Department>, ApiError> {
        Ok(self
            .r()?
            .departments()
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The vocabularies with Chinese labels.
    pub fn vocabularies(&self) -> Result<Vocabularies, ApiError> {
        Ok(self.r()?.vocabularies().into())
    }

    /// Registers a household; returns its id.
    pub async fn add_household(&self, h: NewHousehold) -> Result<String, ApiError> {
        let r = self.r()?;
        on_runtime(async move { r.add_household(h.into()).await })
            .await
            .map(|id| id.to_string())
    }

    /// Changes a household; returns whether anything changed.
    pub async fn edit_household(&self, id: String, e: HouseholdEdit) -> Result<bool, ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.edit_household(id, e.into()).await }).await
    }

    /// Households on this phone (in or under `grid`).
    pub async fn households(
        &self,
        grid: Option<String>,
    ) -> Result<Vec<HouseholdSummary>, ApiError> {
        let r = self.r()?;
        on_runtime(async move { r.households(grid.as_deref()).await })
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
    }

    /// A household's archive.
    pub async fn household(&self, id: String) -> Result<HouseholdView, ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.household(id).await })
            .await
            .map(Into::into)
    }

    /// Adds a member; returns the resident's id.
    pub async fn add_resident(
        &self,
        household: String,
        m: NewResident,
    ) -> Result<String, ApiError> {
        let (r, h) = (self.r()?, doc_id("household", &household)?);
        on_runtime(async move { r.add_resident(h, m.into()).await })
            .await
            .map(|id| id.to_string())
    }

    /// Changes a member, or records a move-out, death or mistaken entry.
    pub async fn edit_resident(
        &self,
        household: String,
        resident: String,
        e: ResidentEdit,
    ) -> Result<bool, ApiError> {
        let (r, h, m) = (
            self.r()?,
            doc_id("household", &household)?,
            record_id("resident", &resident)?,
        );
        on_runtime(async move { r.edit_resident(h, m, e.into()).await }).await
    }

    /// Residents by name or ID number, a page at a time.
    pub async fn search_residents(
        &self,
        query: String,
        offset: u32,
        limit: u32,
    ) -> Result<SearchPage, ApiError> {
        let r = self.r()?;
        on_runtime(async move {
            r.search_residents(&query, app::Page { offset, limit })
                .await
        })
        .await
        .map(Into::into)
    }

    /// Records a visit; returns its id.
    pub async fn add_visit(&self, v: NewVisit) -> Result<String, ApiError> {
        let r = self.r()?;
        let v = v.into_app()?;
        on_runtime(async move { r.add_visit(v).await })
            .await
            .map(|id| id.to_string())
    }

    /// Changes a visit this phone recorded; returns whether anything changed.
    pub async fn edit_visit(
        &self,
        household: String,
        visit: String,
        purpose: Option<String>,
        findings: Option<String>,
    ) -> Result<bool, ApiError> {
        let (r, h, v) = (
            self.r()?,
            doc_id("household", &household)?,
            record_id("visit", &visit)?,
        );
        on_runtime(async move { r.edit_visit(h, v, purpose, findings).await }).await
    }

    /// Grid units on this phone (under `within`), for pickers.
    pub async fn grids(&self, within: Option<String>) -> Result<Vec<GridUnit>, ApiError> {
        let r = self.r()?;
        on_runtime(async move { r.grids(within.as_deref()).await })
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
    }

    /// Starts a patrol; returns its id.
    pub async fn start_inspection(&self, grid: String) -> Result<String, ApiError> {
        let r = self.r()?;
        on_runtime(async move { r.start_inspection(&grid).await })
            .await
            .map(|id| id.to_string())
    }

    /// Appends a track point.
    pub async fn track(&self, id: String, lat: f64, lon: f64) -> Result<(), ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.track(id, lat, lon).await }).await
    }

    /// Records a checkpoint (its result always stated); returns its id.
    pub async fn add_checkpoint(&self, id: String, c: NewCheckpoint) -> Result<String, ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.add_checkpoint(id, c.into()).await })
            .await
            .map(|id| id.to_string())
    }

    /// Records a finding; returns its id.
    pub async fn add_finding(&self, id: String, description: String) -> Result<String, ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.add_finding(id, &description).await })
            .await
            .map(|id| id.to_string())
    }

    /// Ends a patrol.
    pub async fn finish_inspection(&self, id: String) -> Result<(), ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.finish_inspection(id).await }).await
    }

    /// Patrols on this phone.
    pub async fn inspections(
        &self,
        grid: Option<String>,
    ) -> Result<Vec<InspectionSummary>, ApiError> {
        let r = self.r()?;
        on_runtime(async move { r.inspections(grid.as_deref()).await })
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
    }

    /// Reports a problem; returns the case's id.
    pub async fn report_case(&self, c: NewCase) -> Result<String, ApiError> {
        let r = self.r()?;
        let c = c.into_app()?;
        on_runtime(async move { r.report_case(c).await })
            .await
            .map(|id| id.to_string())
    }

    /// Edits a case's title or description.
    pub async fn edit_case(
        &self,
        id: String,
        title: Option<String>,
        description: Option<String>,
    ) -> Result<bool, ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.edit_case(id, title, description).await }).await
    }

    /// Cases on this phone (an unknown status is refused).
    pub async fn cases(&self, status: Option<String>) -> Result<Vec<CaseSummary>, ApiError> {
        let r = self.r()?;
        on_runtime(async move { r.cases(app::CaseFilter { status }).await })
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
    }

    /// A case as a readable record.
    pub async fn case_view(&self, id: String) -> Result<CaseView, ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.case(id).await })
            .await
            .map(Into::into)
    }

    /// The actions this device may take on a case now.
    pub async fn allowed_actions(&self, id: String) -> Result<Vec<ActionInfo>, ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.allowed_actions(id).await })
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
    }

    /// Takes a workflow action; returns the event's id.
    pub async fn act(&self, id: String, req: ActionRequest) -> Result<String, ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        let req = req.into_app()?;
        on_runtime(async move { r.act(id, req).await })
            .await
            .map(|id| id.to_string())
    }

    /// Adds a photo (processed on the library's threads); returns the photo's id.
    pub async fn add_photo(&self, p: NewPhoto) -> Result<String, ApiError> {
        let r = self.r()?;
        let p = p.into_app()?;
        on_runtime(async move { r.add_photo(p).await })
            .await
            .map(|(id, _)| id.to_string())
    }

    /// A record's photos with their upload state.
    pub async fn photos(&self, id: String) -> Result<Vec<PhotoView>, ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.photos(id).await })
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
    }

    /// The photo files waiting to upload, thumbnails first.
    pub async fn upload_queue(&self) -> Result<Vec<QueuedFile>, ApiError> {
        let r = self.r()?;
        on_runtime(async move { r.upload_queue().await })
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
    }

    /// Downloads a photo file from the server (unless it is here, checking its hash);
    /// returns the path of the local file to show.
    pub async fn fetch_photo(&self, sha256: String) -> Result<String, ApiError> {
        let r = self.r()?;
        on_runtime(async move { r.fetch_photo(&sha256).await })
            .await
            .map(|p| p.display().to_string())
    }

    /// Takes an entry out of view (dispatchers and leaders); it stays in the history.
    pub async fn redact(
        &self,
        id: String,
        target: String,
        reason: String,
    ) -> Result<String, ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.redact(id, &target, &reason).await })
            .await
            .map(|id| id.to_string())
    }

    /// The case indicators from the server as JSON text (dispatcher and leader devices), for
    /// `from`..`to` (`YYYY-MM-DD`) grouped by `grid`, `department` or `category`.
    pub async fn indicators(
        &self,
        from: String,
        to: String,
        group_by: String,
    ) -> Result<String, ApiError> {
        let r = self.r()?;
        on_runtime(async move { r.indicators(&from, &to, &group_by).await })
            .await
            .map(|v| v.to_string())
    }

    /// Syncs now: documents, then photos; progress goes to the listener.
    pub async fn sync(&self, opts: SyncOptions) -> Result<SyncOutcome, ApiError> {
        let r = self.r()?;
        on_runtime(async move { r.sync(opts.into()).await })
            .await
            .map(Into::into)
    }

    /// What is waiting to sync or upload, and what the server refused.
    pub async fn status(&self) -> Result<SyncStatus, ApiError> {
        let r = self.r()?;
        on_runtime(async move { r.status().await })
            .await
            .map(Into::into)
    }

    /// Fields of a record with concurrent values.
    pub async fn conflicts(&self, id: String) -> Result<Vec<Conflict>, ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.conflicts(id).await })
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
    }

    /// Settles a conflicting field with the chosen value (JSON text).
    pub async fn resolve(
        &self,
        id: String,
        path: String,
        value_json: String,
    ) -> Result<(), ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.resolve(id, &path, &value_json).await }).await
    }

    /// A record's rule problems to fix.
    pub async fn problems(&self, id: String) -> Result<Vec<Problem>, ApiError> {
        let (r, id) = (self.r()?, doc_id("id", &id)?);
        on_runtime(async move { r.problems(id).await })
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
    }
}
