//! Several `gridsync-server` processes on one PostgreSQL database: phones syncing through
//! different processes converge with nothing lost, a process SIGKILLed in the middle of a
//! storm loses nothing it acknowledged while the other carries on, and a phone waiting on
//! one process hears of work merged by another.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gridsync_core::Store;
use gridsync_core::client::{RetryPolicy, SyncClient};
use gridsync_core::records::{Household, Residence};
use gridsync_proto::{DocId, GridCode};
use gridsync_server::auth::{Role, new_enrollment_code, normalize_code, secret_hash};
use gridsync_server::{PgStorage, Storage};
use gridsync_tests::pg::TestDatabase;

use crate::harness::{GRID_A, code};

/// A server process on the test database.
struct Process {
    child: Child,
    url: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(database: &str, data: &std::path::Path) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync-test-server"))
        .arg("--data-dir")
        .arg(data)
        .args(["--database", database])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("server prints its address");
    let url = line.trim().rsplit(' ').next().expect("address").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    Process { child, url }
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(100),
        timeout: Duration::from_secs(20),
    }
}

/// The database, its storage (for enrollment and inspection), two processes and a folder.
struct Cluster {
    db: Option<TestDatabase>,
    storage: PgStorage,
    a: Process,
    b: Process,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let db = TestDatabase::create().await.expect("test database");
        // Migrated here first, so the two processes start on a ready schema.
        let storage = PgStorage::connect(&db.url).await.expect("storage");
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("server");
        let a = spawn(&db.url, &data);
        let b = spawn(&db.url, &data);
        Self {
            db: Some(db),
            storage,
            a,
            b,
            dir,
        }
    }

    /// A phone enrolled (through `url`) as a worker of `grid`.
    async fn phone(&self, url: &str, n: usize, grid: &GridCode) -> Store {
        let c = new_enrollment_code();
        self.storage
            .create_enrollment(
                &secret_hash(&normalize_code(&c)),
                &format!("网格员{n}"),
                Role::Worker,
                std::slice::from_ref(grid),
                None,
                None,
                i64::MAX,
            )
            .await
            .expect("enrollment");
        let store = Store::open(&self.dir.path().join(format!("phone{n}.db")))
            .await
            .expect("store");
        SyncClient::new(url, retry())
            .expect("client")
            .enroll(&store, &c)
            .await
            .expect("enroll");
        store
    }

    async fn finish(mut self) {
        self.storage.close().await;
        if let Some(db) = self.db.take() {
            drop(self.a);
            drop(self.b);
            db.drop_now().await.expect("drop the test database");
        }
    }
}

async fn sync(url: &str, store: &Store) {
    SyncClient::new(url, retry())
        .expect("client")
        .sync(store, 50)
        .await
        .expect("sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_database_merge_everything_and_phones_converge() {
    let cluster = Cluster::start().await;
    let grid = code(GRID_A);
    let mut phones = Vec::new();
    for i in 0..6 {
        let url = if i % 2 == 0 {
            &cluster.a.url
        } else {
            &cluster.b.url
        };
        phones.push((url.clone(), cluster.phone(url, i, &grid).await));
    }
    let shared = phones[0]
        .1
        .create(
            grid.clone(),
            &Household::new("共享楼栋", Residence::Permanent),
        )
        .await
        .expect("shared");
    sync(&phones[0].0, &phones[0].1).await;
    for (url, store) in &phones {
        sync(url, store).await;
    }
    // Every phone at once, half through each process: a visit to the shared household and
    // a household of its own per round.
    let mut tasks = Vec::new();
    for (i, (url, store)) in phones.iter().cloned().enumerate() {
        let grid = grid.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..4 {
                store
                    .update::<Household>(shared, |h| {
                        h.visits.insert(
                            gridsync_proto::RecordId::new(),
                            crate::harness::sample_visit("网格员", i * 10 + round),
                        );
                    })
                    .await
                    .expect("visit");
                store
                    .create(
                        grid.clone(),
                        &Household::new(format!("{i} 号楼 {round} 室"), Residence::Permanent),
                    )
                    .await
                    .expect("household");
                sync(&url, &store).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("phone task");
    }
    for _ in 0..2 {
        for (url, store) in &phones {
            sync(url, store).await;
        }
    }
    let on_server = cluster
        .storage
        .load(shared)
        .await
        .expect("load")
        .expect("stored");
    let want = on_server.record_json();
    assert_eq!(
        want["visits"].as_object().map(|v| v.len()),
        Some(24),
        "every visit through either process is kept"
    );
    let rows = cluster.storage.households(Some(&grid)).await.expect("rows");
    assert_eq!(rows.len(), 1 + 24, "every household through either process");
    for (i, (_, store)) in phones.iter().enumerate() {
        let got = store.load(shared).await.expect("phone has it");
        assert_eq!(got.record_json(), want, "phone {i} converged");
        let mine = store.households(Some(&grid)).await.expect("rows");
        assert_eq!(mine.len(), rows.len(), "phone {i} holds every household");
    }
    // No sequence number was handed out twice and the log has no hole a pull could skip.
    let (count, max): (i64, i64) = sqlx::query_as("SELECT COUNT(*), MAX(seq) FROM changes")
        .fetch_one(cluster.storage.pool())
        .await
        .expect("counts");
    let counter: i64 = sqlx::query_scalar("SELECT value FROM seq_counter WHERE id = 1")
        .fetch_one(cluster.storage.pool())
        .await
        .expect("counter");
    assert!(
        max <= counter && count <= counter,
        "{count} {max} {counter}"
    );
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_storm_loses_nothing_and_the_other_carries_on() {
    let mut cluster = Cluster::start().await;
    let grid = code(GRID_A);
    let mut phones = Vec::new();
    let mut all: Vec<DocId> = Vec::new();
    for i in 0..10 {
        let store = cluster.phone(&cluster.a.url, i, &grid).await;
        let households: Vec<Household> = (0..15)
            .map(|h| gridsync_core::sample::household((i * 100 + h) as u64, 3, 2))
            .collect();
        all.extend(
            store
                .create_many(grid.clone(), &households)
                .await
                .expect("households"),
        );
        phones.push(store);
    }
    // Every phone syncs through A; A is killed while they do; each phone then goes to B.
    let (a_url, b_url) = (cluster.a.url.clone(), cluster.b.url.clone());
    let mut tasks = Vec::new();
    for store in &phones {
        let store = store.clone();
        let (a_url, b_url) = (a_url.clone(), b_url.clone());
        tasks.push(tokio::spawn(async move {
            let through_a = SyncClient::new(&a_url, retry())
                .expect("client")
                .sync(&store, 50)
                .await;
            if through_a.is_err() {
                sync(&b_url, &store).await;
            }
        }));
    }
    // Killed once the storm has started committing (a few documents are in).
    for _ in 0..400 {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM docs")
            .fetch_one(cluster.storage.pool())
            .await
            .expect("count");
        if n > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.a.child.kill().expect("SIGKILL A");
    cluster.a.child.wait().expect("reap A");
    for t in tasks {
        t.await.expect("phone task");
    }
    // Everything is on the server, once, and every phone has everyone's work.
    for id in &all {
        assert!(
            cluster.storage.load(*id).await.expect("load").is_some(),
            "{id} was lost"
        );
    }
    for store in &phones {
        sync(&b_url, store).await;
    }
    for (i, store) in phones.iter().enumerate() {
        let rows = store.households(Some(&grid)).await.expect("rows");
        assert_eq!(rows.len(), all.len(), "phone {i}");
        let report = SyncClient::new(&b_url, retry())
            .expect("client")
            .sync(store, 5)
            .await
            .expect("sync");
        assert_eq!(report.acked, 0, "phone {i} had nothing left unacknowledged");
    }
    let stored = cluster.storage.households(Some(&grid)).await.expect("rows");
    assert_eq!(stored.len(), all.len(), "nothing stored twice");
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_waiting_on_one_process_hears_of_work_merged_by_the_other() {
    let cluster = Cluster::start().await;
    let grid = code(GRID_A);
    let listener = cluster.phone(&cluster.a.url, 0, &grid).await;
    let colleague = cluster.phone(&cluster.b.url, 1, &grid).await;
    sync(&cluster.a.url, &listener).await;
    let waiting = {
        let (store, url) = (listener.clone(), cluster.a.url.clone());
        tokio::spawn(async move {
            SyncClient::new(&url, retry())
                .expect("client")
                .wait_for_news(&store, Duration::from_secs(30))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = colleague
        .create(
            grid.clone(),
            &Household::new("新登记户", Residence::Permanent),
        )
        .await
        .expect("household");
    sync(&cluster.b.url, &colleague).await;
    assert!(
        waiting.await.expect("join").expect("live"),
        "woken by the other process's merge"
    );
    sync(&cluster.a.url, &listener).await;
    assert!(listener.load(id).await.is_ok(), "and the sync brought it");
    cluster.finish().await;
}
