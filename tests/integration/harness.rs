//! A real server on an ephemeral port with a real SQLite file, and phones with real stores
//! that enroll and sync over HTTP.

use std::str::FromStr;
use std::time::Duration;

use gridsync_core::Store;
use gridsync_core::client::{RetryPolicy, SyncClient, SyncReport};
use gridsync_proto::{DocId, GridCode};
use gridsync_server::auth::Role;
use gridsync_server::{Config, SqliteStorage, Storage};
use gridsync_tests::LocalServer;
use serde_json::Value;

pub const TOWN: &str = "330102001";
pub const GRID_A: &str = "33010200101001002";
pub const GRID_B: &str = "33010200101001003";

pub fn code(s: &str) -> GridCode {
    GridCode::parse(s).expect("valid grid code")
}

pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        timeout: Duration::from_secs(30),
    }
}

/// The server under test, serving on 127.0.0.1 with its data in a temp dir.
pub struct TestServer {
    inner: LocalServer,
    pub url: String,
    pub storage: SqliteStorage,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_reading(gridsync_core::document::SCHEMA_VERSION).await
    }

    /// The server's data directory (its database, and its photo files under `photos/`).
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// A server already upgraded to read the next schema (the first step of a rolling
    /// upgrade, before the phones).
    pub async fn start_upgraded() -> Self {
        Self::start_reading(gridsync_core::document::SCHEMA_VERSION + 1).await
    }

    /// A server whose photo files go to `photos` (e.g. an S3 bucket) instead of its folder.
    pub async fn start_with_photos(photos: std::sync::Arc<dyn object_store::ObjectStore>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.photos.store = photos;
        let inner = LocalServer::start_configured(
            dir.path(),
            config,
            gridsync_core::document::SCHEMA_VERSION,
        )
        .await
        .expect("server");
        Self::around(inner, dir)
    }

    async fn start_reading(newest: u32) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = LocalServer::start_reading(dir.path(), Config::default(), newest)
            .await
            .expect("server");
        Self::around(inner, dir)
    }

    fn around(inner: LocalServer, dir: tempfile::TempDir) -> Self {
        Self {
            url: inner.url.clone(),
            storage: inner.storage.clone(),
            inner,
            _dir: dir,
        }
    }

    /// Creates an enrollment code, as `gridsync-server device enroll` does.
    pub async fn enrollment(&self, name: &str, role: Role, scopes: &[&str]) -> String {
        let scopes: Vec<GridCode> = scopes.iter().map(|s| code(s)).collect();
        self.inner
            .enrollment(name, role, &scopes)
            .await
            .expect("enrollment")
    }

    /// An enrollment code only `device` may use (how a revoked device enrolls again).
    pub async fn enrollment_for(
        &self,
        name: &str,
        role: Role,
        scopes: &[&str],
        device: Option<gridsync_proto::DeviceId>,
    ) -> String {
        let scopes: Vec<GridCode> = scopes.iter().map(|s| code(s)).collect();
        self.inner
            .enrollment_for(name, role, &scopes, None, device)
            .await
            .expect("enrollment")
    }

    /// An enrollment code for a department clerk's device.
    pub async fn enrollment_in(
        &self,
        name: &str,
        role: Role,
        scopes: &[&str],
        dept: Option<&str>,
    ) -> String {
        let scopes: Vec<GridCode> = scopes.iter().map(|s| code(s)).collect();
        self.inner
            .enrollment_in(name, role, &scopes, dept)
            .await
            .expect("enrollment")
    }

    /// Makes sure a grid record for `grid` exists (the town centre registers grids: intake
    /// places cases only in registered ones), writing it through a dispatcher's phone.
    pub async fn register_grid(&self, grid: &str) {
        let known = self.storage.grids().await.expect("grids");
        if known.iter().any(|g| g.code == grid) {
            return;
        }
        let town = code(grid).town();
        let d = Phone::enroll(self, "网格登记", Role::Dispatcher, &[town.as_str()]).await;
        d.store
            .create(
                code(grid),
                &gridsync_core::records::Grid {
                    code: grid.into(),
                    name: format!("网格 {grid}"),
                    roster: Default::default(),
                    boundary: Vec::new(),
                },
            )
            .await
            .expect("grid record");
        let report = d.sync().await;
        assert!(report.rejected.is_empty(), "{report:?}");
    }

    /// An intake key for a system named `name`, placing cases in `towns`.
    pub async fn intake_key(&self, name: &str, towns: &[&str]) -> String {
        let key = gridsync_server::auth::new_token();
        let towns: Vec<GridCode> = towns.iter().map(|t| code(t)).collect();
        self.storage
            .create_intake_key(&gridsync_server::auth::secret_hash(&key), name, &towns)
            .await
            .expect("intake key");
        key
    }

    /// Every document on the server with its scope.
    pub async fn doc_ids(&self) -> Vec<(DocId, GridCode)> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT doc_id, scope FROM docs ORDER BY doc_id")
                .fetch_all(self.storage.pool())
                .await
                .expect("docs");
        rows.into_iter()
            .map(|(d, s)| (DocId::from_str(&d).expect("id"), code(&s)))
            .collect()
    }

    /// The global change count (to show a request changed nothing).
    pub async fn change_count(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM changes")
            .fetch_one(self.storage.pool())
            .await
            .expect("count")
    }

    pub async fn record(&self, id: DocId) -> Option<(Value, usize)> {
        let doc = self.storage.load(id).await.expect("load")?;
        Some((doc.record_json(), doc.conflicts().len()))
    }
}

/// A phone: its own store file, enrolled with the server.
pub struct Phone {
    pub store: Store,
    pub client: SyncClient,
    pub scopes: Vec<GridCode>,
    pub _dir: tempfile::TempDir,
}

impl Phone {
    /// The device's bearer token.
    pub async fn token(&self) -> String {
        self.store
            .meta("device_token")
            .await
            .expect("meta")
            .expect("enrolled")
    }

    /// Posts a hand-built sync request as this device and decodes the answer (it must be 200).
    pub async fn post_sync(
        &self,
        server: &TestServer,
        req: &gridsync_proto::SyncRequest,
    ) -> gridsync_proto::SyncResponse {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/sync", server.url))
            .header("content-type", gridsync_proto::CONTENT_TYPE)
            .bearer_auth(self.token().await)
            .body(req.encode())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), 200);
        gridsync_proto::SyncResponse::decode(&resp.bytes().await.expect("body")).expect("response")
    }

    pub async fn enroll(server: &TestServer, name: &str, role: Role, scopes: &[&str]) -> Self {
        Self::enroll_in(server, name, role, scopes, None).await
    }

    /// A phone enrolled with a department binding (a clerk's, with `Role::Department`).
    pub async fn enroll_in(
        server: &TestServer,
        name: &str,
        role: Role,
        scopes: &[&str],
        dept: Option<&str>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("phone.db"))
            .await
            .expect("store");
        store.set_meta("worker", name).await.expect("worker");
        let client = SyncClient::new(&server.url, quick_retry()).expect("client");
        let code = server.enrollment_in(name, role, scopes, dept).await;
        client.enroll(&store, &code).await.expect("enroll");
        Self {
            store,
            client,
            scopes: scopes.iter().map(|s| code_of(s)).collect(),
            _dir: dir,
        }
    }

    pub async fn sync(&self) -> SyncReport {
        self.client.sync(&self.store, 50).await.expect("sync")
    }

    /// A second copy of this phone's store, as a restored backup or a cloned phone holds it:
    /// the same device, token and actor, and from now on its own history.
    pub async fn copy(&self, server: &TestServer) -> Self {
        self.copy_as(server, false).await
    }

    /// A copy that also looks like the original file from inside (`same_identity`), as a
    /// file-system snapshot restored in place would: only the server can tell the two apart.
    pub async fn copy_as(&self, server: &TestServer, same_identity: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("phone.db");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "VACUUM INTO '{}'",
            path.display()
        )))
        .execute(self.store.pool())
        .await
        .expect("copy the store");
        if same_identity {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(&path).expect("copy's metadata");
            let copy = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("open the copy raw");
            sqlx::query("UPDATE meta SET value = $1 WHERE key = 'file_identity'")
                .bind(format!("ino:{}", m.ino()))
                .execute(&copy)
                .await
                .expect("disguise the copy");
            copy.close().await;
        }
        let store = Store::open(&path).await.expect("open the copy");
        assert_eq!(store.device(), self.store.device());
        Self {
            store,
            client: SyncClient::new(&server.url, quick_retry()).expect("client"),
            scopes: self.scopes.clone(),
            _dir: dir,
        }
    }

    /// Reopens this phone's store as a build that reads one schema newer would.
    pub async fn upgrade(&mut self) {
        let path = self._dir.path().join("phone.db");
        self.store = Store::open_with(
            &path,
            gridsync_core::StoreOptions {
                newest_schema: gridsync_core::document::SCHEMA_VERSION + 1,
            },
        )
        .await
        .expect("reopen upgraded");
    }

    pub fn sees(&self, scope: &GridCode) -> bool {
        self.scopes.iter().any(|s| s.contains(scope))
    }
}

fn code_of(s: &str) -> GridCode {
    code(s)
}

/// Asserts every phone holds exactly the server's documents of its scopes, with identical
/// contents and conflicts, and that the phone's projections agree with the server's.
pub async fn assert_converged(server: &TestServer, phones: &[&Phone]) {
    let docs = server.doc_ids().await;
    for (id, scope) in &docs {
        let (server_json, server_conflicts) = server.record(*id).await.expect("server doc");
        for (i, p) in phones.iter().enumerate() {
            let local = p.store.load(*id).await;
            if p.sees(scope) {
                let doc = local.unwrap_or_else(|e| panic!("phone {i} lacks {id}: {e}"));
                assert_eq!(doc.record_json(), server_json, "phone {i} differs on {id}");
                assert_eq!(
                    doc.conflicts().len(),
                    server_conflicts,
                    "phone {i} conflicts on {id}"
                );
            } else {
                assert!(
                    local.is_err(),
                    "phone {i} holds {id} outside its scope {scope}"
                );
            }
        }
    }
    for (i, p) in phones.iter().enumerate() {
        // Documents outside the phone's scope are work the server refused (set aside, checked
        // below); the rest must match the server's.
        let mut mine: Vec<_> = p
            .store
            .households(None)
            .await
            .expect("phone households")
            .into_iter()
            .filter(|h| p.sees(&code(&h.grid)))
            .collect();
        let mut theirs: Vec<_> = server
            .storage
            .households(None)
            .await
            .expect("server households")
            .into_iter()
            .filter(|h| p.sees(&code(&h.grid)))
            .collect();
        mine.sort_by_key(|h| h.doc_id);
        theirs.sort_by_key(|h| h.doc_id);
        assert_eq!(
            mine, theirs,
            "phone {i} household projection differs from the server's"
        );
        let mut mine: Vec<_> = p
            .store
            .cases(None)
            .await
            .expect("phone cases")
            .into_iter()
            .filter(|c| p.sees(&code(&c.grid)))
            .collect();
        let mut theirs: Vec<_> = server
            .storage
            .cases()
            .await
            .expect("server cases")
            .into_iter()
            .filter(|c| p.sees(&code(&c.grid)))
            .collect();
        mine.sort_by_key(|c| c.doc_id);
        theirs.sort_by_key(|c| c.doc_id);
        assert_eq!(
            mine, theirs,
            "phone {i} case projection differs from the server's"
        );
        // Whatever is not synced is set aside with the server's reason, and shown.
        let aside = p.store.set_aside().await.expect("set aside");
        assert_eq!(
            p.store.unsynced_count().await.expect("unsynced"),
            aside.len() as i64,
            "phone {i} has unsynced work that was not refused: set aside {aside:?}"
        );
    }
}

/// A case as a grid worker reports it.
pub fn sample_case() -> gridsync_core::records::Case {
    gridsync_core::records::Case {
        title: "楼道灯损坏".into(),
        source: gridsync_core::records::CaseSource::Inspection,
        category: "01".into(),
        subcategory: "0102".into(),
        location: None,
        address: "城南社区 3 幢".into(),
        description: "楼道灯不亮".into(),
        urgency: gridsync_core::records::Urgency::Normal,
        reported_by: "周网格".into(),
        reported_at: 1_760_000_000_000,
        parties: Default::default(),
        photos: Default::default(),
        events: Default::default(),
        redactions: Default::default(),
    }
}

/// A household visit by `worker`; `n` makes it distinct.
pub fn sample_visit(worker: &str, n: usize) -> gridsync_core::records::Visit {
    gridsync_core::records::Visit {
        worker: worker.into(),
        at: 1_760_000_000_000 + n as i64,
        gps: None,
        purpose: "日常走访".into(),
        findings: format!("第 {n} 次"),
        photos: Default::default(),
        cases: vec![],
        author: None,
    }
}

/// An evidence photo reference at `stage`; `n` makes it distinct.
pub fn sample_photo(
    stage: gridsync_core::records::PhotoStage,
    n: u8,
) -> gridsync_core::records::PhotoRef {
    gridsync_core::records::PhotoRef::new(
        format!("{n:02x}").repeat(32),
        stage,
        1_760_000_000_000 + i64::from(n),
        1000 + u64::from(n),
        "image/jpeg",
    )
}

/// Adds a photo to a case on `phone` (what any device that may write the case may add).
pub async fn add_case_photo(phone: &Phone, case: gridsync_proto::DocId, n: u8) {
    phone
        .store
        .update::<gridsync_core::records::Case>(case, |c| {
            c.photos.insert(
                gridsync_proto::RecordId::new(),
                sample_photo(gridsync_core::records::PhotoStage::During, n),
            );
        })
        .await
        .expect("add a photo");
}

/// Copies a directory tree, as a backup of a server's data directory is taken.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}
