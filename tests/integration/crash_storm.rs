//! The server process is SIGKILLed at random moments of a sync storm and restarted on the same
//! data: no change it acknowledged is lost, and every phone converges afterwards. A phone that
//! dies mid-sync (its response lost, its store dropped without closing) syncs fine later.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridsync_core::Store;
use gridsync_core::client::{RetryPolicy, SyncClient};
use gridsync_core::records::{Household, Residence, Visit};
use gridsync_core::sync::SyncSession;
use gridsync_proto::{DocId, RecordId};
use gridsync_server::auth::{Role, new_enrollment_code, normalize_code, secret_hash};
use gridsync_server::{SqliteStorage, Storage};
use rand::Rng;

use crate::harness::{GRID_A, Phone, TestServer, assert_converged, code};

struct ServerProcess {
    child: Child,
    url: String,
}

fn spawn_server(data: &std::path::Path) -> ServerProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync-test-server"))
        .arg("--data-dir")
        .arg(data)
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
    ServerProcess { child, url }
}

fn visit(n: usize) -> Visit {
    crate::harness::sample_visit("网格员", n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sigkilled_during_a_sync_storm_loses_nothing_it_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    // Enroll phones straight in the database before the first start.
    let storage = SqliteStorage::open(&data).await.expect("storage");
    let mut codes = Vec::new();
    for i in 0..4 {
        let c = new_enrollment_code();
        storage
            .create_enrollment(
                &secret_hash(&normalize_code(&c)),
                &format!("网格员{i}"),
                Role::Worker,
                &[code(GRID_A)],
                None,
                None,
                i64::MAX,
            )
            .await
            .expect("enrollment");
        codes.push(c);
    }
    storage.close().await;

    let server = spawn_server(&data);
    let url = Arc::new(Mutex::new(server.url.clone()));
    let retry = RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(10),
        cap: Duration::from_millis(50),
        timeout: Duration::from_secs(10),
    };
    let mut stores = Vec::new();
    for (i, c) in codes.iter().enumerate() {
        let store = Store::open(&dir.path().join(format!("phone{i}.db")))
            .await
            .expect("store");
        SyncClient::new(&server.url, retry)
            .expect("client")
            .enroll(&store, c)
            .await
            .expect("enroll");
        stores.push(store);
    }
    let shared = stores[0]
        .create(
            code(GRID_A),
            &Household::new("共享楼栋", Residence::Permanent),
        )
        .await
        .expect("shared");
    SyncClient::new(&server.url, retry)
        .expect("client")
        .sync(&stores[0], 20)
        .await
        .expect("seed");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeSet<(DocId, RecordId)>>> = Arc::default();
    let mut tasks = Vec::new();
    for (i, store) in stores.iter().cloned().enumerate() {
        let (url, stop, acked) = (url.clone(), stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let client = SyncClient::new(&url.lock().expect("url").clone(), retry).expect("client");
            let _ = client.sync(&store, 20).await;
            let own = store
                .create(
                    code(GRID_A),
                    &Household::new(format!("{i} 号楼"), Residence::Permanent),
                )
                .await
                .expect("own");
            let mut written = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                for hid in [own, shared] {
                    let vid = RecordId::new();
                    if store.read::<Household>(hid).await.is_ok() {
                        store
                            .update::<Household>(hid, |h| {
                                h.visits.insert(vid, visit(n));
                            })
                            .await
                            .expect("write");
                        written.push((hid, vid));
                    }
                }
                let before = written.clone();
                let client =
                    SyncClient::new(&url.lock().expect("url").clone(), retry).expect("client");
                if client.sync(&store, 20).await.is_ok()
                    && store.unsynced_count().await.expect("count") == 0
                {
                    acked.lock().expect("acked").extend(before);
                }
            }
            written
        }));
    }

    let mut server = server;
    let mut rng = rand::rng();
    let started = Instant::now();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(30..250))).await;
        server.child.kill().expect("SIGKILL");
        let _ = server.child.wait();
        server = spawn_server(&data);
        *url.lock().expect("url") = server.url.clone();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = Vec::new();
    for t in tasks {
        written.extend(t.await.expect("task"));
    }
    assert!(started.elapsed() < Duration::from_secs(120));
    let acked = acked.lock().expect("acked").clone();
    assert!(!acked.is_empty(), "some syncs succeeded between kills");

    // Kill once more, then look at what survived on disk.
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
    let storage = SqliteStorage::open(&data)
        .await
        .expect("reopen after SIGKILL");
    for (hid, vid) in &acked {
        let doc = storage
            .load(*hid)
            .await
            .expect("load")
            .expect("acknowledged household on disk");
        let h: Household = doc.read().expect("read");
        assert!(h.visits.contains_key(vid), "acknowledged visit {vid} lost");
    }
    storage.close().await;

    // Everyone reconnects to a fresh process and converges, with every write present.
    let server = spawn_server(&data);
    for _ in 0..2 {
        for s in &stores {
            SyncClient::new(&server.url, retry)
                .expect("client")
                .sync(s, 50)
                .await
                .expect("final sync");
        }
    }
    let mut server = server;
    let storage = SqliteStorage::open(&data).await.expect("storage");
    for (hid, vid) in &written {
        let server_doc = storage.load(*hid).await.expect("load").expect("household");
        let server_json = server_doc.record_json();
        assert!(
            server_json["visits"].get(vid.to_string()).is_some(),
            "write {vid} lost"
        );
        for s in &stores {
            if let Ok(doc) = s.load(*hid).await {
                assert_eq!(doc.record_json(), server_json);
            }
        }
    }
    let _ = server.child.kill();
    let _ = server.child.wait();
}

#[tokio::test]
async fn a_phone_killed_mid_sync_syncs_fine_afterwards() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("phone.db");
    let other = Phone::enroll(&server, "吴网格", Role::Worker, &[GRID_A]).await;
    let store = Store::open(&path).await.expect("store");
    let client = SyncClient::new(&server.url, crate::harness::quick_retry()).expect("client");
    let c = server.enrollment("周网格", Role::Worker, &[GRID_A]).await;
    client.enroll(&store, &c).await.expect("enroll");
    let id = store
        .create(code(GRID_A), &Household::new("1 号", Residence::Permanent))
        .await
        .expect("create");
    other
        .store
        .create(code(GRID_A), &Household::new("2 号", Residence::Permanent))
        .await
        .expect("other");
    other.sync().await;

    // The request reaches the server and is stored, but the phone dies before the answer.
    let (req, _) = SyncSession::new(store.clone())
        .build_request()
        .await
        .expect("request");
    let token = store
        .meta("device_token")
        .await
        .expect("meta")
        .expect("token");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/sync", server.url))
        .bearer_auth(&token)
        .header("content-type", gridsync_proto::CONTENT_TYPE)
        .body(req.encode())
        .send()
        .await
        .expect("send");
    assert!(resp.status().is_success());
    drop(resp);
    let stored = server.change_count().await;
    drop(store); // no close: as if the process died

    let store = Store::open(&path).await.expect("reopen");
    assert_eq!(
        store.unsynced_count().await.expect("count"),
        1,
        "the push was never acknowledged locally"
    );
    let report = client.sync(&store, 10).await.expect("sync after the crash");
    assert_eq!(report.round_trips, 1);
    assert_eq!(
        server.change_count().await,
        stored,
        "the resent changes were deduplicated"
    );
    assert!(store.load(id).await.is_ok());
    assert_eq!(
        store.households(None).await.expect("list").len(),
        2,
        "the other phone's work arrived"
    );
    other.sync().await;
    let me = Phone {
        store,
        client,
        scopes: vec![code(GRID_A)],
        _dir: dir,
    };
    assert_converged(&server, &[&me, &other]).await;
}
