//! Shared helpers for gridsync's cross-crate integration tests and the `gridsync-bench` binary:
//! a real server on an ephemeral port and enrolled phones.

pub mod bench;
pub mod console;
pub mod pg;
pub mod proxy;
pub mod webdriver;

use std::path::Path;

use anyhow::{Context, Result};
use gridsync_core::Store;
use gridsync_core::client::{RetryPolicy, SyncClient};
use gridsync_proto::GridCode;
use gridsync_server::auth::{Role, new_enrollment_code, normalize_code, secret_hash};
use gridsync_server::{AppState, Config, PgStorage, SqliteStorage, Storage, app};

/// A server serving on 127.0.0.1 (ephemeral port) inside this process, on SQLite in a data
/// directory (the default) or on PostgreSQL.
pub struct LocalServer<S: Storage = SqliteStorage> {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The storage it serves (shared with the test, which may inspect it).
    pub storage: S,
    /// The handlers' state (storage and configuration), for calling server functions.
    pub state: AppState<S>,
    task: tokio::task::JoinHandle<()>,
    // Automatic routing, as `gridsync-server serve` runs it beside the router.
    routing: tokio::task::JoinHandle<()>,
}

impl LocalServer<PgStorage> {
    /// Serves the PostgreSQL database at `database` (photo files in `data_dir/photos`).
    pub async fn start_postgres(
        database: &str,
        data_dir: &Path,
        mut config: Config,
    ) -> Result<Self> {
        config.photos.store = gridsync_server::photos::open_store(None, data_dir)?;
        let storage = PgStorage::connect(database).await?;
        Self::serve(storage, config).await
    }
}

impl LocalServer<SqliteStorage> {
    /// Opens `data_dir` and serves it with `config`.
    pub async fn start(data_dir: &Path, config: Config) -> Result<Self> {
        Self::start_reading(data_dir, config, gridsync_core::document::SCHEMA_VERSION).await
    }

    /// Like [`LocalServer::start`], for a server that reads documents up to schema `newest`.
    /// Photo files go to the folder `data_dir/photos`, as `gridsync-server serve` puts them.
    pub async fn start_reading(data_dir: &Path, mut config: Config, newest: u32) -> Result<Self> {
        config.photos.store = gridsync_server::photos::open_store(None, data_dir)?;
        Self::start_configured(data_dir, config, newest).await
    }

    /// Like [`LocalServer::start`], with `config`'s photo store as it is (e.g. a bucket).
    pub async fn start_configured(data_dir: &Path, config: Config, newest: u32) -> Result<Self> {
        let storage = SqliteStorage::open(data_dir).await?.reading_schema(newest);
        Self::serve(storage, config).await
    }
}

impl<S: Storage + Clone> LocalServer<S> {
    /// Serves `storage` with `config`.
    pub async fn serve(storage: S, config: Config) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = AppState::new(storage.clone(), config);
        let router = app(state.clone());
        let routing = tokio::spawn(gridsync_server::routing::run(state.clone()));
        let task = tokio::spawn(async move {
            let _ = gridsync_server::serve(
                listener,
                router,
                gridsync_server::HEADER_READ_TIMEOUT,
                std::future::pending(),
            )
            .await;
        });
        Ok(Self {
            url,
            storage,
            state,
            task,
            routing,
        })
    }

    /// Makes a one-time enrollment code, as `gridsync-server device enroll` does.
    pub async fn enrollment(&self, name: &str, role: Role, scopes: &[GridCode]) -> Result<String> {
        self.enrollment_in(name, role, scopes, None).await
    }

    /// Like [`Self::enrollment`], for a department clerk's device.
    pub async fn enrollment_in(
        &self,
        name: &str,
        role: Role,
        scopes: &[GridCode],
        department: Option<&str>,
    ) -> Result<String> {
        self.enrollment_for(name, role, scopes, department, None)
            .await
    }

    /// An enrollment code only `device` may use (`device enroll --device ID`): how a revoked
    /// device enrolls again.
    pub async fn enrollment_for(
        &self,
        name: &str,
        role: Role,
        scopes: &[GridCode],
        department: Option<&str>,
        device: Option<gridsync_proto::DeviceId>,
    ) -> Result<String> {
        let code = new_enrollment_code();
        self.storage
            .create_enrollment(
                &secret_hash(&normalize_code(&code)),
                name,
                role,
                scopes,
                department,
                device,
                i64::MAX,
            )
            .await?;
        Ok(code)
    }

    /// Opens a phone store at `path` and enrolls it.
    pub async fn phone(
        &self,
        path: &Path,
        name: &str,
        role: Role,
        scopes: &[GridCode],
        retry: RetryPolicy,
    ) -> Result<(Store, SyncClient)> {
        let store = Store::open(path).await?;
        store.set_meta("worker", name).await?;
        let client = SyncClient::new(&self.url, retry)?;
        let code = self.enrollment(name, role, scopes).await?;
        client
            .enroll(&store, &code)
            .await
            .context("enrolling a phone")?;
        Ok((store, client))
    }
}

impl<S: Storage> Drop for LocalServer<S> {
    fn drop(&mut self) {
        self.task.abort();
        self.routing.abort();
    }
}

/// A new patrol document by `device` in `grid`, with `points` GPS fixes recorded one change
/// each (see [`append_track_points`]): a long patrol recorded offline.
pub fn long_patrol(
    device: gridsync_proto::DeviceId,
    grid: gridsync_proto::GridCode,
    points: usize,
) -> Result<gridsync_core::Document> {
    let patrol = gridsync_core::records::Inspection {
        worker: "周网格".into(),
        started_at: 1_760_000_000_000,
        ended_at: None,
        track: Vec::new(),
        checkpoints: Default::default(),
        findings: Default::default(),
        photos: Default::default(),
        redactions: Default::default(),
    };
    let mut doc =
        gridsync_core::Document::create(gridsync_proto::DocId::new(), grid, device, &patrol)?;
    append_track_points(&mut doc, points)?;
    Ok(doc)
}

/// Appends `n` GPS fixes to a patrol document, one Automerge change each, as `inspection
/// track` does on the phone (written straight through Automerge so that tens of thousands are
/// quick to make). The timestamps continue from 1,760,000,000,000 ms by one per point.
pub fn append_track_points(doc: &mut gridsync_core::Document, n: usize) -> Result<()> {
    append_track_batches(doc, n, 1)
}

/// Appends `n` GPS fixes in changes of `per_change` fixes each (4 operations per fix).
pub fn append_track_batches(
    doc: &mut gridsync_core::Document,
    n: usize,
    per_change: usize,
) -> Result<()> {
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ROOT, ReadDoc};
    let am = doc.automerge();
    let Some((automerge::Value::Object(ObjType::Map), record)) = am.get(ROOT, "record")? else {
        anyhow::bail!("the patrol has no record map");
    };
    let Some((automerge::Value::Object(ObjType::List), track)) = am.get(&record, "track")? else {
        anyhow::bail!("the patrol has no track list");
    };
    let start = am.length(&track);
    for i in 0..n {
        let p = am.insert_object(&track, start + i, ObjType::Map)?;
        am.put(&p, "at", 1_760_000_000_000 + (start + i) as i64)?;
        am.put(&p, "lat", 30.25 + (i as f64) * 1e-6)?;
        am.put(&p, "lon", 120.15)?;
        if (i + 1) % per_change.max(1) == 0 {
            am.commit();
        }
    }
    am.commit();
    Ok(())
}
