//! The store suite: what every server backend must do, run once on SQLite (a real file) and
//! once on PostgreSQL (a fresh database per test on the machine's server). Each case is one
//! generic function over `Storage`; `store_suite!` makes a test of it per backend.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gridsync_core::Store;
use gridsync_core::client::SyncClient;
use gridsync_core::clock::now_ms;
use gridsync_core::records::{Case, CaseSource, Household, Urgency, Visit};
use gridsync_core::workflow::{Action, Actor, Reference, Status, act, derive, plan_dispatch};
use gridsync_proto::{DocId, GridCode, RecordId};
use gridsync_server::auth::{Role, new_token, normalize_code, secret_hash};
use gridsync_server::storage::{BlobRow, Cursor, PullBudget, UploadRow};
use gridsync_server::{Config, PgStorage, SqliteStorage, Storage};
use gridsync_tests::LocalServer;
use gridsync_tests::pg::TestDatabase;

use crate::harness::{GRID_A, GRID_B, TOWN, code, quick_retry};

/// One backend under test: a server on it, its folder, and (PostgreSQL) its database.
pub struct Rig<S: Storage + Clone> {
    pub server: LocalServer<S>,
    pub dir: tempfile::TempDir,
    db: Option<TestDatabase>,
}

pub async fn sqlite_rig(config: Config) -> Rig<SqliteStorage> {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = LocalServer::start(dir.path(), config)
        .await
        .expect("sqlite server");
    Rig {
        server,
        dir,
        db: None,
    }
}

pub async fn pg_rig(config: Config) -> Rig<PgStorage> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDatabase::create().await.expect("a test database");
    let server = LocalServer::start_postgres(&db.url, dir.path(), config)
        .await
        .expect("postgres server");
    Rig {
        server,
        dir,
        db: Some(db),
    }
}

impl<S: Storage + Clone> Rig<S> {
    /// An enrolled phone (a department clerk's with `dept`).
    pub async fn phone(
        &self,
        name: &str,
        role: Role,
        scopes: &[&str],
        dept: Option<&str>,
    ) -> (Store, SyncClient) {
        let n = rand::random::<u64>();
        let store = Store::open(&self.dir.path().join(format!("phone-{n}.db")))
            .await
            .expect("store");
        store.set_meta("worker", name).await.expect("worker");
        let scopes: Vec<GridCode> = scopes.iter().map(|s| code(s)).collect();
        let code = self
            .server
            .enrollment_in(name, role, &scopes, dept)
            .await
            .expect("code");
        let client = SyncClient::new(&self.server.url, quick_retry()).expect("client");
        client.enroll(&store, &code).await.expect("enroll");
        (store, client)
    }

    /// A second store on the same database, as another server process would open it.
    pub async fn second_storage(&self) -> S
    where
        S: Reopen,
    {
        S::reopen(self).await
    }

    pub async fn finish(self) {
        let Rig { server, dir, db } = self;
        server.storage.close().await;
        drop(server);
        drop(dir);
        if let Some(db) = db {
            db.drop_now().await.expect("drop the test database");
        }
    }
}

/// Opening a backend's database again, as another process.
pub trait Reopen: Storage + Clone + Sized {
    fn reopen(rig: &Rig<Self>) -> impl std::future::Future<Output = Self> + Send;
}

impl Reopen for SqliteStorage {
    async fn reopen(rig: &Rig<Self>) -> Self {
        SqliteStorage::open(rig.dir.path())
            .await
            .expect("the same SQLite file again")
    }
}

impl Reopen for PgStorage {
    async fn reopen(rig: &Rig<Self>) -> Self {
        let url = &rig
            .db
            .as_ref()
            .expect("a PostgreSQL rig has its database")
            .url;
        PgStorage::connect(url)
            .await
            .expect("the same PostgreSQL database again")
    }
}

/// A test per backend for each suite case.
macro_rules! store_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let rig = super::sqlite_rig(gridsync_server::Config::default()).await;
                    super::$case(&rig).await;
                    rig.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let rig = super::pg_rig(gridsync_server::Config::default()).await;
                    super::$case(&rig).await;
                    rig.finish().await;
                }
            )*
        }
    };
}

store_suite!(
    offline_edits_merge_and_every_phone_converges,
    a_case_reaches_its_department_only_and_comes_back,
    a_code_enrolls_one_device_and_revocation_holds,
    a_long_feed_pages_without_losing_a_change,
    a_new_epoch_starts_every_cursor_over,
    photo_files_and_uploads_are_kept_once,
    register_import_writes_once_and_finds_again,
    projections_rebuild_to_the_same_rows,
    live_sync_wakes_for_its_scope_only,
    texts_sort_and_range_byte_wise,
    a_first_sync_gets_each_document_as_one_snapshot,
    a_hot_document_merges_from_the_cache_and_never_over_another_servers_write,
    console_accounts_sessions_audit_and_the_inbox,
);

/// A worker device of grid A that enrolled nowhere: a reader for pulls straight from storage.
fn grid_a_reader() -> gridsync_server::auth::Device {
    gridsync_server::auth::Device {
        id: gridsync_proto::DeviceId::new(),
        name: "reader".into(),
        role: Role::Worker,
        scopes: vec![code(GRID_A)],
        department: None,
    }
}

fn visit(text: &str) -> Visit {
    Visit {
        worker: "网格员".into(),
        at: now_ms(),
        gps: None,
        purpose: "日常走访".into(),
        findings: text.into(),
        photos: Default::default(),
        cases: Vec::new(),
        author: None,
    }
}

async fn offline_edits_merge_and_every_phone_converges<S: Storage + Clone>(rig: &Rig<S>) {
    let (a1, c1) = rig.phone("周网格", Role::Worker, &[GRID_A], None).await;
    let (a2, c2) = rig.phone("吴网格", Role::Worker, &[GRID_A], None).await;
    let (b, cb) = rig.phone("郑网格", Role::Worker, &[GRID_B], None).await;
    let (town, ct) = rig.phone("调度", Role::Dispatcher, &[TOWN], None).await;
    let id = a1
        .create(code(GRID_A), &gridsync_core::sample::household(7, 3, 0))
        .await
        .expect("household");
    c1.sync(&a1, 20).await.expect("sync");
    c2.sync(&a2, 20).await.expect("sync");
    // Both edit offline: each adds a visit, both change the address.
    a1.update::<Household>(id, |h| {
        h.visits.insert(RecordId::new(), visit("一"));
        h.address = "城南路 1 号".into();
    })
    .await
    .expect("edit 1");
    a2.update::<Household>(id, |h| {
        h.visits.insert(RecordId::new(), visit("二"));
        h.address = "城南路 2 号".into();
    })
    .await
    .expect("edit 2");
    for _ in 0..2 {
        c1.sync(&a1, 20).await.expect("sync");
        c2.sync(&a2, 20).await.expect("sync");
    }
    cb.sync(&b, 20).await.expect("sync");
    ct.sync(&town, 20).await.expect("sync");
    let on_server = rig
        .server
        .storage
        .load(id)
        .await
        .expect("load")
        .expect("stored");
    let want = on_server.record_json();
    for (who, store) in [("a1", &a1), ("a2", &a2), ("town", &town)] {
        let got = store
            .load(id)
            .await
            .unwrap_or_else(|e| panic!("{who}: {e}"));
        assert_eq!(got.record_json(), want, "{who} converged");
        assert_eq!(got.conflicts().len(), on_server.conflicts().len(), "{who}");
    }
    assert_eq!(
        want["visits"].as_object().map(|v| v.len()),
        Some(2),
        "both visits kept"
    );
    assert_eq!(
        on_server.conflicts().len(),
        1,
        "the address conflict stays visible"
    );
    assert!(
        b.load(id).await.is_err(),
        "another grid's worker does not get it"
    );
    let rows = rig
        .server
        .storage
        .households(Some(&code(GRID_A)))
        .await
        .expect("projection");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].visit_count, 2);
    assert_eq!(rows[0].conflict_count, 1);
    assert!(
        rig.server
            .storage
            .households(Some(&code(GRID_B)))
            .await
            .expect("projection")
            .is_empty()
    );
}

async fn case_act(store: &Store, id: DocId, action: Action, data: BTreeMap<String, String>) {
    let actor = store.actor().await.expect("actor");
    store
        .case_action(id, &actor, action, "", now_ms(), |_, _| Ok(data))
        .await
        .unwrap_or_else(|e| panic!("{action:?}: {e}"));
}

fn reported_case(actor: &Actor) -> Case {
    let now = now_ms();
    let mut c = Case {
        title: "门口堆放纸箱".into(),
        source: CaseSource::Inspection,
        category: "02".into(),
        subcategory: "0201".into(),
        location: None,
        address: "城南路 9 号".into(),
        description: "门口堆放纸箱，影响通行".into(),
        urgency: Urgency::Normal,
        reported_by: actor.name.clone(),
        reported_at: now,
        parties: Default::default(),
        photos: Default::default(),
        events: Default::default(),
        redactions: Default::default(),
    };
    act(&mut c, Action::Report, actor, now, "", Default::default()).expect("report");
    c
}

async fn a_case_reaches_its_department_only_and_comes_back<S: Storage + Clone>(rig: &Rig<S>) {
    let (worker, cw) = rig.phone("周网格", Role::Worker, &[GRID_A], None).await;
    let (disp, cd) = rig.phone("调度", Role::Dispatcher, &[TOWN], None).await;
    let actor = worker.actor().await.expect("actor");
    let id = worker
        .create(code(GRID_A), &reported_case(&actor))
        .await
        .expect("case");
    cw.sync(&worker, 20).await.expect("sync");
    cd.sync(&disp, 20).await.expect("sync");
    case_act(&disp, id, Action::Register, BTreeMap::new()).await;
    let c: Case = disp.read(id).await.expect("case");
    let plan = plan_dispatch(&c, &Reference::builtin(), now_ms(), None, None).expect("plan");
    let lead = plan["lead"].clone();
    case_act(&disp, id, Action::Dispatch, plan).await;
    cd.sync(&disp, 20).await.expect("sync");
    let other = if lead == "D05" { "D06" } else { "D05" };
    let (clerk, cc) = rig
        .phone("办事员", Role::Department, &[TOWN], Some(&lead))
        .await;
    let (stranger, cs) = rig
        .phone("别的部门", Role::Department, &[TOWN], Some(other))
        .await;
    cc.sync(&clerk, 20).await.expect("sync");
    cs.sync(&stranger, 20).await.expect("sync");
    // A department is never sent a snapshot (it may read only what it was sent the case
    // for), even when it asks for them.
    let token = clerk
        .meta("device_token")
        .await
        .expect("meta")
        .expect("token");
    let (clerk_device, _) = rig
        .server
        .storage
        .device_by_token(&secret_hash(&token))
        .await
        .expect("lookup")
        .expect("known");
    let pull = rig
        .server
        .storage
        .pull(
            &clerk_device,
            &automerge::ActorId::random(),
            &Cursor::default(),
            PullBudget {
                snapshots: true,
                ..PullBudget::default()
            },
        )
        .await
        .expect("pull");
    assert!(
        pull.docs
            .iter()
            .flat_map(|d| &d.changes)
            .all(|c| c.get(8) != Some(&0)),
        "changes only"
    );
    let c: Case = clerk.read(id).await.expect("the lead department has it");
    assert_eq!(derive(&c).status, Status::Dispatched);
    assert!(stranger.load(id).await.is_err(), "{other} does not");
    case_act(&clerk, id, Action::Sign, BTreeMap::new()).await;
    cc.sync(&clerk, 20).await.expect("sync");
    cw.sync(&worker, 20).await.expect("sync");
    let c: Case = worker.read(id).await.expect("case");
    assert_eq!(
        derive(&c).status,
        Status::InProgress,
        "the worker sees it signed"
    );
    let rows = rig.server.storage.cases().await.expect("cases");
    let row = rows.iter().find(|r| r.doc_id == id).expect("projected");
    assert_eq!(row.lead.as_deref(), Some(lead.as_str()));
}

async fn a_code_enrolls_one_device_and_revocation_holds<S: Storage + Clone>(rig: &Rig<S>) {
    let storage = &rig.server.storage;
    let enrollment_code = gridsync_server::auth::new_enrollment_code();
    let hash = secret_hash(&normalize_code(&enrollment_code));
    storage
        .create_enrollment(
            &hash,
            "周网格",
            Role::Worker,
            &[code(GRID_A)],
            None,
            None,
            i64::MAX,
        )
        .await
        .expect("code");
    // Two devices redeem the one code at the same instant: exactly one gets it.
    let (d1, d2) = (
        gridsync_proto::DeviceId::new(),
        gridsync_proto::DeviceId::new(),
    );
    let (t1, t2) = (new_token(), new_token());
    let (h1, h2) = (secret_hash(&t1), secret_hash(&t2));
    let (r1, r2) = tokio::join!(
        storage.redeem_enrollment(&hash, d1, &h1),
        storage.redeem_enrollment(&hash, d2, &h2),
    );
    assert_eq!(
        [r1.is_ok(), r2.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{r1:?} {r2:?}"
    );
    let (winner, token) = if r1.is_ok() { (d1, t1) } else { (d2, t2) };
    let (device, revoked) = storage
        .device_by_token(&secret_hash(&token))
        .await
        .expect("lookup")
        .expect("known");
    assert_eq!((device.id, revoked), (winner, None));
    assert!(storage.revoke(winner).await.expect("revoke"));
    assert!(
        !storage.revoke(winner).await.expect("revoke again"),
        "already revoked"
    );
    let (_, revoked) = storage
        .device_by_token(&secret_hash(&token))
        .await
        .expect("lookup")
        .expect("known");
    assert!(revoked.is_some(), "a revoked token stays revoked");
}

async fn a_long_feed_pages_without_losing_a_change<S: Storage + Clone>(rig: &Rig<S>) {
    let (a, ca) = rig.phone("周网格", Role::Worker, &[GRID_A], None).await;
    let households: Vec<Household> = (0..120)
        .map(|i| gridsync_core::sample::household(i, 2, 1))
        .collect();
    let ids = a
        .create_many(code(GRID_A), &households)
        .await
        .expect("households");
    ca.sync(&a, 50).await.expect("sync");
    // A reader pulls the grid in pages of at most 7 documents.
    let reader = grid_a_reader();
    let actor = automerge::ActorId::random();
    let budget = PullBudget {
        max_docs: 7,
        ..PullBudget::default()
    };
    let mut cursor = Cursor::default();
    let mut got = std::collections::BTreeSet::new();
    let mut pages = 0;
    loop {
        let pull = rig
            .server
            .storage
            .pull(&reader, &actor, &cursor, budget)
            .await
            .expect("pull");
        pages += 1;
        assert!(
            pull.docs.len() <= 7,
            "a page holds {} documents",
            pull.docs.len()
        );
        got.extend(pull.docs.iter().map(|d| d.doc));
        cursor = pull.cursor;
        if !pull.more {
            break;
        }
        assert!(pages < 100, "the pull never ends");
    }
    assert!(pages >= 120 / 7, "{pages} pages");
    let want: std::collections::BTreeSet<DocId> = ids.into_iter().collect();
    assert_eq!(got, want, "every document arrived");
    let again = rig
        .server
        .storage
        .pull(&reader, &actor, &cursor, budget)
        .await
        .expect("pull");
    assert!(again.docs.is_empty() && !again.more, "nothing twice");
    assert!(
        !rig.server
            .storage
            .has_news(&reader, Some(&actor), &cursor)
            .await
            .expect("news"),
        "nothing new past the end"
    );
}

async fn a_new_epoch_starts_every_cursor_over<S: Storage + Clone>(rig: &Rig<S>) {
    let (a, ca) = rig.phone("周网格", Role::Worker, &[GRID_A], None).await;
    a.create(code(GRID_A), &gridsync_core::sample::household(1, 2, 0))
        .await
        .expect("household");
    ca.sync(&a, 20).await.expect("sync");
    let reader = grid_a_reader();
    let actor = automerge::ActorId::random();
    let storage = &rig.server.storage;
    let first = storage
        .pull(&reader, &actor, &Cursor::default(), PullBudget::default())
        .await
        .expect("pull");
    assert_eq!(first.docs.len(), 1);
    assert!(
        !storage
            .has_news(&reader, Some(&actor), &first.cursor)
            .await
            .expect("news")
    );
    storage.new_epoch().await.expect("epoch");
    assert!(
        storage
            .has_news(&reader, Some(&actor), &first.cursor)
            .await
            .expect("news"),
        "a cursor of the old epoch must sync again"
    );
    let again = storage
        .pull(&reader, &actor, &first.cursor, PullBudget::default())
        .await
        .expect("pull");
    assert!(again.reset, "started over");
    assert_eq!(again.docs.len(), 1, "and got everything again");
}

async fn photo_files_and_uploads_are_kept_once<S: Storage + Clone>(rig: &Rig<S>) {
    let storage = &rig.server.storage;
    let device = gridsync_proto::DeviceId::new();
    let sha = "ab".repeat(32);
    let up = storage
        .create_upload(&UploadRow {
            sha256: sha.clone(),
            device,
            length: 1000,
            offset: 0,
            created_at: 5,
        })
        .await
        .expect("upload");
    assert_eq!(up.offset, 0);
    assert!(
        storage
            .advance_upload(&sha, device, 0, 400)
            .await
            .expect("advance")
    );
    assert!(
        !storage
            .advance_upload(&sha, device, 0, 800)
            .await
            .expect("stale"),
        "a chunk for an offset the server is past does not move it"
    );
    let again = storage
        .create_upload(&UploadRow {
            sha256: sha.clone(),
            device,
            length: 1000,
            offset: 0,
            created_at: 9,
        })
        .await
        .expect("upload again");
    assert_eq!(
        again.offset, 400,
        "a second create finds the upload under way"
    );
    assert_eq!(storage.uploads_before(6).await.expect("old").len(), 1);
    let blob = BlobRow {
        sha256: sha.clone(),
        size: 1000,
        mime: "image/jpeg".into(),
        phash: Some(u64::MAX - 1),
        stored_at: 10,
        device,
    };
    assert!(storage.insert_blob(&blob).await.expect("blob"));
    assert!(
        !storage.insert_blob(&blob).await.expect("blob"),
        "never twice"
    );
    assert_eq!(storage.blob(&sha).await.expect("read"), Some(blob));
    assert!(
        storage
            .upload(&sha, device)
            .await
            .expect("upload")
            .is_none(),
        "done"
    );
    assert_eq!(
        storage.phashes().await.expect("phashes").get(&sha),
        Some(&(u64::MAX - 1))
    );
}

async fn register_import_writes_once_and_finds_again<S: Storage + Clone>(rig: &Rig<S>) {
    use gridsync_server::register::import::{ImportOptions, import_households};
    let csv = format!(
        "网格编码,户号,姓名,与户主关系,公民身份号码,现住址\n\
         {GRID_A},H001,李秀英,户主,330102195001010022,城南路 1 号\n\
         {GRID_A},H001,王建国,配偶,330102194901010015,城南路 1 号\n\
         {GRID_A},H002,赵四,户主,,城南路 2 号\n"
    );
    let opts = ImportOptions {
        file_name: "户籍.csv".into(),
        mapping: Default::default(),
        default_grid: None,
        dry_run: false,
        operator: "管理员".into(),
    };
    // The register places households in grids the town centre has registered.
    let (d, cd) = rig.phone("调度", Role::Dispatcher, &[TOWN], None).await;
    d.create(
        code(GRID_A),
        &gridsync_core::records::Grid {
            code: GRID_A.into(),
            name: "城南一网格".into(),
            roster: Default::default(),
            boundary: Vec::new(),
        },
    )
    .await
    .expect("grid");
    cd.sync(&d, 20).await.expect("sync");
    let storage = &rig.server.storage;
    let first = import_households(storage, csv.as_bytes(), &opts, &|_, _| {})
        .await
        .expect("import");
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!((first.households_created, first.households_updated), (2, 0));
    let second = import_households(storage, csv.as_bytes(), &opts, &|_, _| {})
        .await
        .expect("import again");
    assert_eq!(
        (
            second.households_created,
            second.households_updated,
            second.households_unchanged
        ),
        (0, 0, 2)
    );
    let found = storage
        .households_numbered(&["H001".into(), "H002".into(), "H404".into()])
        .await
        .expect("by number");
    assert_eq!(found.len(), 2);
    let by_id = storage
        .residents_with_id(&["330102194901010015".into()])
        .await
        .expect("by id");
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].name, "王建国");
    // A run that wrote nothing leaves no entry in the import log.
    assert_eq!(storage.imports().await.expect("log").len(), 1);
    let search = storage.search_residents("秀英").await.expect("search");
    assert_eq!(search.len(), 1);
}

async fn projections_rebuild_to_the_same_rows<S: Storage + Clone>(rig: &Rig<S>) {
    let (a, ca) = rig.phone("周网格", Role::Worker, &[GRID_A], None).await;
    let households: Vec<Household> = (0..15)
        .map(|i| gridsync_core::sample::household(i, 3, 2))
        .collect();
    a.create_many(code(GRID_A), &households)
        .await
        .expect("households");
    let actor = a.actor().await.expect("actor");
    a.create(code(GRID_A), &reported_case(&actor))
        .await
        .expect("case");
    ca.sync(&a, 20).await.expect("sync");
    let storage = &rig.server.storage;
    let before = (
        storage.households(None).await.expect("h"),
        storage.cases().await.expect("c"),
        storage.residents_within(None).await.expect("r"),
    );
    assert_eq!(before.0.len(), 15);
    assert_eq!(storage.rebuild_projections().await.expect("rebuild"), 16);
    let after = (
        storage.households(None).await.expect("h"),
        storage.cases().await.expect("c"),
        storage.residents_within(None).await.expect("r"),
    );
    assert_eq!(before, after);
}

async fn live_sync_wakes_for_its_scope_only<S: Storage + Clone>(rig: &Rig<S>) {
    let (a, ca) = rig.phone("周网格", Role::Worker, &[GRID_A], None).await;
    let (a2, ca2) = rig.phone("吴网格", Role::Worker, &[GRID_A], None).await;
    let (b, cb) = rig.phone("郑网格", Role::Worker, &[GRID_B], None).await;
    ca.sync(&a, 20).await.expect("sync");
    // Nothing new: the wait runs out.
    assert!(
        !ca.wait_for_news(&a, Duration::from_secs(1))
            .await
            .expect("live")
    );
    // Another grid's work does not wake it; its own work does not either.
    let waiting = {
        let (a, ca) = (a.clone(), ca.clone());
        tokio::spawn(async move { ca.wait_for_news(&a, Duration::from_secs(3)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.create(code(GRID_B), &gridsync_core::sample::household(2, 1, 0))
        .await
        .expect("b");
    cb.sync(&b, 20).await.expect("sync");
    a.create(code(GRID_A), &gridsync_core::sample::household(3, 1, 0))
        .await
        .expect("own");
    ca.sync(&a, 20).await.expect("sync");
    assert!(
        !waiting.await.expect("join").expect("live"),
        "woken for nothing"
    );
    // A colleague's work in its grid wakes it at once.
    let waiting = {
        let (a, ca) = (a.clone(), ca.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            (ca.wait_for_news(&a, Duration::from_secs(30)).await, started)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    a2.create(code(GRID_A), &gridsync_core::sample::household(4, 1, 0))
        .await
        .expect("a2");
    let committed = Instant::now();
    ca2.sync(&a2, 20).await.expect("sync");
    let (news, _) = waiting.await.expect("join");
    assert!(news.expect("live"), "woken");
    assert!(
        committed.elapsed() < Duration::from_secs(10),
        "well before its 30 s wait"
    );
    let pulled = ca.sync(&a, 20).await.expect("sync");
    assert_eq!(pulled.pulled_docs, 1);
}

async fn texts_sort_and_range_byte_wise<S: Storage + Clone>(rig: &Rig<S>) {
    // Grid ranges and orderings are byte-wise on every backend: a unit's range ends at
    // "code:", which a language collation would sort among the digits.
    let (d, cd) = rig.phone("调度", Role::Dispatcher, &[TOWN], None).await;
    let grids = [
        "33010200101001002",
        "33010200101001003",
        "33010200101002001",
    ];
    for (i, g) in grids.iter().enumerate() {
        d.create(code(g), &gridsync_core::sample::household(i as u64, 1, 0))
            .await
            .expect("household");
    }
    cd.sync(&d, 20).await.expect("sync");
    let storage = &rig.server.storage;
    let village = storage
        .households(Some(&code("33010200101")))
        .await
        .expect("district");
    assert_eq!(village.len(), 3);
    let community = storage
        .households(Some(&code("33010200101001")))
        .await
        .expect("village");
    assert_eq!(community.len(), 2);
    let order: Vec<&str> = village.iter().map(|h| h.grid.as_str()).collect();
    assert_eq!(order, grids.to_vec());
}

async fn a_first_sync_gets_each_document_as_one_snapshot<S: Storage + Clone>(rig: &Rig<S>) {
    let (a, ca) = rig.phone("周网格", Role::Worker, &[GRID_A], None).await;
    let id = a
        .create(code(GRID_A), &gridsync_core::sample::household(5, 3, 0))
        .await
        .expect("household");
    for n in 0..100 {
        a.update::<Household>(id, |h| {
            h.visits
                .insert(RecordId::new(), visit(&format!("第 {n} 次")));
        })
        .await
        .expect("visit");
    }
    ca.sync(&a, 20).await.expect("sync");
    let reader = grid_a_reader();
    let actor = automerge::ActorId::random();
    let storage = &rig.server.storage;
    let history = storage
        .pull(&reader, &actor, &Cursor::default(), PullBudget::default())
        .await
        .expect("pull");
    assert_eq!(
        history.docs[0].changes.len(),
        101,
        "an old phone gets every change"
    );
    let snapshot = storage
        .pull(
            &reader,
            &actor,
            &Cursor::default(),
            PullBudget {
                snapshots: true,
                ..PullBudget::default()
            },
        )
        .await
        .expect("pull");
    let blobs = &snapshot.docs[0].changes;
    assert_eq!(blobs.len(), 1, "one compacted snapshot");
    assert_eq!(blobs[0][8], 0, "an Automerge document chunk");
    let sent = |p: &gridsync_server::storage::Pull| -> usize {
        p.docs[0].changes.iter().map(|c| c.len()).sum()
    };
    assert!(sent(&snapshot) < sent(&history), "smaller than the history");
    // Past the start, changes again: the cursor of the snapshot pull reads nothing new.
    assert!(
        !storage
            .has_news(&reader, Some(&actor), &snapshot.cursor)
            .await
            .expect("news")
    );
    // A new phone syncing for real gets the same document.
    let (b, cb) = rig.phone("吴网格", Role::Worker, &[GRID_A], None).await;
    let report = cb.sync(&b, 20).await.expect("sync");
    assert_eq!(report.pulled_docs, 1);
    let mut mine = b.load(id).await.expect("the new phone has it");
    let mut theirs = storage.load(id).await.expect("load").expect("stored");
    assert_eq!(mine.record_json(), theirs.record_json());
    assert_eq!(
        mine.heads(),
        theirs.heads(),
        "the same history, not a copy of the state"
    );
    assert!(report.bytes_received < sent(&history), "{report:?}");
}

/// The merge path keeps hot documents decoded; a write by another process on the same
/// database makes the cached copy stale, and the next merge must start from what is stored.
async fn a_hot_document_merges_from_the_cache_and_never_over_another_servers_write<S: Reopen>(
    rig: &Rig<S>,
) {
    let (a, ca) = rig.phone("周网格", Role::Worker, &[GRID_A], None).await;
    let (b, _) = rig.phone("吴网格", Role::Worker, &[GRID_A], None).await;
    let id = a
        .create(code(GRID_A), &gridsync_core::sample::household(3, 2, 0))
        .await
        .expect("household");
    ca.sync(&a, 20).await.expect("sync");
    let hits = rig.server.storage.doc_cache_stats().hits;
    a.update::<Household>(id, |h| {
        h.visits.insert(RecordId::new(), visit("一"));
    })
    .await
    .expect("edit");
    ca.sync(&a, 20).await.expect("sync");
    assert_eq!(
        rig.server.storage.doc_cache_stats().hits,
        hits + 1,
        "the second push to a document merges on the cached copy"
    );
    // Another process on the same database takes phone b's edit; this server's cached copy
    // is now one version behind.
    let other = LocalServer::serve(rig.second_storage().await, Config::default())
        .await
        .expect("second server");
    let cb = SyncClient::new(&other.url, quick_retry()).expect("client");
    cb.sync(&b, 20).await.expect("sync b");
    b.update::<Household>(id, |h| {
        h.visits.insert(RecordId::new(), visit("二"));
        h.address = "城南路 9 号".into();
    })
    .await
    .expect("edit b");
    cb.sync(&b, 20).await.expect("sync b");
    let misses = rig.server.storage.doc_cache_stats().misses;
    a.update::<Household>(id, |h| {
        h.visits.insert(RecordId::new(), visit("三"));
    })
    .await
    .expect("edit a");
    ca.sync(&a, 20).await.expect("sync a");
    assert_eq!(
        rig.server.storage.doc_cache_stats().misses,
        misses + 1,
        "a stale cached copy is read again from the database"
    );
    cb.sync(&b, 20).await.expect("sync b");
    let stored = rig
        .server
        .storage
        .load(id)
        .await
        .expect("load")
        .expect("stored");
    let want = stored.record_json();
    assert_eq!(
        want["visits"].as_object().map(|v| v.len()),
        Some(3),
        "{want}"
    );
    assert_eq!(want["address"], "城南路 9 号");
    for (who, store) in [("a", &a), ("b", &b)] {
        assert_eq!(
            store.load(id).await.expect(who).record_json(),
            want,
            "{who}"
        );
    }
    let rows = rig
        .server
        .storage
        .households(Some(&code(GRID_A)))
        .await
        .expect("projection");
    assert_eq!(
        rows[0].visit_count, 3,
        "the projection was computed on every edit"
    );
    other.storage.close().await;
}

/// The console's storage on each backend: accounts, the lockout count, sessions, the audit
/// log, the inbox query with its filters and its clerk bound, routing rules and claims.
async fn console_accounts_sessions_audit_and_the_inbox<S: Storage + Clone>(rig: &Rig<S>) {
    use gridsync_server::storage::console::{
        AuditEntry, ConsoleRole, DeadlineFlag, InboxQuery, SessionRow,
    };
    let storage = &rig.server.storage;
    gridsync_tests::console::test_user(
        storage,
        "wang",
        "王调度",
        ConsoleRole::Dispatcher,
        None,
        &[code(TOWN)],
    )
    .await
    .expect("user");
    assert!(
        gridsync_tests::console::test_user(
            storage,
            "wang",
            "again",
            ConsoleRole::Leader,
            None,
            &[code(TOWN)]
        )
        .await
        .is_err(),
        "a login is taken once"
    );
    let u = storage
        .console_user("wang")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (u.role, u.towns.clone(), u.failures),
        (ConsoleRole::Dispatcher, vec![code(TOWN)], 0)
    );
    // Five failures lock; a failure after the lock ran out starts counting again.
    let now = now_ms();
    let mut last = (0, 0);
    for _ in 0..5 {
        last = storage
            .console_sign_in_failed("wang", now, 5, 60_000)
            .await
            .expect("count")
            .expect("row");
    }
    assert_eq!(last, (5, now + 60_000));
    assert!(
        !storage
            .console_sign_in_ok("wang", now + 1)
            .await
            .expect("ok"),
        "locked"
    );
    let later = now + 120_000;
    assert_eq!(
        storage
            .console_sign_in_failed("wang", later, 5, 60_000)
            .await
            .expect("count"),
        Some((1, 0))
    );
    assert!(storage.console_sign_in_ok("wang", later).await.expect("ok"));
    assert_eq!(
        storage
            .console_sign_in_failed("nobody", now, 5, 1)
            .await
            .expect("count"),
        None
    );
    // Sessions; a new password ends them.
    let session = SessionRow {
        login: "wang".into(),
        csrf: "c".into(),
        created_at: now,
        seen_at: now,
        expires_at: now + 1_000,
    };
    storage
        .create_session("h1", &session)
        .await
        .expect("session");
    storage
        .touch_session("h1", now + 10, now + 5_000)
        .await
        .expect("touch");
    assert_eq!(
        storage
            .session("h1")
            .await
            .expect("read")
            .map(|s| s.expires_at),
        Some(now + 5_000)
    );
    assert!(
        storage
            .set_console_password("wang", "$argon2id$x")
            .await
            .expect("reset")
    );
    assert!(storage.session("h1").await.expect("read").is_none());
    // The audit log, newest first.
    for (i, action) in ["sign_in", "case.dispatch"].iter().enumerate() {
        storage
            .audit(&AuditEntry {
                at: now + i as i64,
                login: "wang".into(),
                action: (*action).into(),
                target: "t".into(),
                outcome: "ok".into(),
                detail: "审计".into(),
                addr: "127.0.0.1".into(),
            })
            .await
            .expect("audit");
    }
    let log = storage.audit_log(Some("wang"), 10).await.expect("log");
    assert_eq!(
        log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["case.dispatch", "sign_in"]
    );
    // The inbox: a reported case and a dispatched one, in the town, paged and filtered.
    let (worker, cw) = rig.phone("周网格", Role::Worker, &[GRID_A], None).await;
    let (disp, cd) = rig.phone("调度", Role::Dispatcher, &[TOWN], None).await;
    let actor = worker.actor().await.expect("actor");
    let first = worker
        .create(code(GRID_A), &reported_case(&actor))
        .await
        .expect("case");
    let second = worker
        .create(code(GRID_A), &reported_case(&actor))
        .await
        .expect("case");
    cw.sync(&worker, 20).await.expect("sync");
    cd.sync(&disp, 20).await.expect("sync");
    case_act(&disp, second, Action::Register, BTreeMap::new()).await;
    let c: Case = disp.read(second).await.expect("case");
    let mut plan =
        plan_dispatch(&c, &Reference::builtin(), now_ms(), None, Some(&[])).expect("plan");
    let lead = plan["lead"].clone();
    // Already past its amber point and its deadline: red.
    plan.insert("deadline".into(), (now_ms() - 1_000).to_string());
    plan.insert("amber_at".into(), (now_ms() - 2_000).to_string());
    case_act(&disp, second, Action::Dispatch, plan).await;
    cd.sync(&disp, 20).await.expect("sync");
    let q = |f: &dyn Fn(&mut InboxQuery)| {
        let mut q = InboxQuery {
            towns: vec![code(TOWN)],
            now: now_ms(),
            limit: 50,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let ids = |rows: Vec<gridsync_core::projection::CaseRow>| {
        rows.into_iter().map(|r| r.doc_id).collect::<Vec<_>>()
    };
    let (rows, total) = storage.inbox(&q(&|_| {})).await.expect("inbox");
    assert_eq!(total, 2);
    assert_eq!(rows.len(), 2);
    let (rows, total) = storage.inbox(&q(&|q| q.limit = 1)).await.expect("inbox");
    assert_eq!((rows.len(), total), (1, 2), "paged, counted whole");
    let (rows, _) = storage
        .inbox(&q(&|q| q.flag = Some(DeadlineFlag::Red)))
        .await
        .expect("inbox");
    assert_eq!(ids(rows), [second]);
    let (rows, _) = storage
        .inbox(&q(&|q| q.status = Some("reported".into())))
        .await
        .expect("inbox");
    assert_eq!(ids(rows), [first]);
    let (rows, _) = storage
        .inbox(&q(&|q| q.holder = Some(lead.clone())))
        .await
        .expect("inbox");
    assert_eq!(
        ids(rows),
        [second],
        "a clerk's inbox: the cases the department holds"
    );
    let (rows, _) = storage
        .inbox(&q(&|q| q.holder = Some("D99".into())))
        .await
        .expect("inbox");
    assert!(rows.is_empty());
    let (rows, total) = storage
        .inbox(&q(&|q| q.towns = vec![]))
        .await
        .expect("inbox");
    assert_eq!((rows.len(), total), (0, 0), "no towns, nothing");
    let (rows, _) = storage
        .inbox(&q(&|q| q.within = Some(code(GRID_B))))
        .await
        .expect("inbox");
    assert!(rows.is_empty());
    assert_eq!(storage.case_holders(second).await.expect("holders"), [lead]);
    // Routing rules per town, and one claim per registration.
    storage
        .set_auto_route(&code(TOWN), "0201", true, "王调度", now)
        .await
        .expect("rule");
    let rules = storage.auto_routes(&[code(TOWN)]).await.expect("rules");
    assert_eq!(rules.len(), 1);
    assert!(
        storage
            .auto_routes(&[code("330102002")])
            .await
            .expect("rules")
            .is_empty()
    );
    assert!(
        storage
            .claim_routing(first, "e1", now)
            .await
            .expect("claim")
    );
    assert!(
        !storage
            .claim_routing(first, "e1", now)
            .await
            .expect("claim"),
        "once"
    );
    storage
        .set_auto_route(&code(TOWN), "0201", false, "王调度", now)
        .await
        .expect("rule");
    assert!(
        storage
            .auto_routes(&[code(TOWN)])
            .await
            .expect("rules")
            .is_empty()
    );
}
