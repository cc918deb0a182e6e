//! Unusual states the batched path cannot handle alone: a server restored from an older backup
//! (the phone's acknowledged heads are unknown to it) falls back to Automerge's sync protocol;
//! a large backlog is paged so no response is huge.

use gridsync_core::client::RetryPolicy;
use gridsync_core::records::{Household, Residence};
use gridsync_proto::RecordId;
use gridsync_server::auth::Role;
use gridsync_server::storage::PullBudget;
use gridsync_server::{Config, Storage};
use gridsync_tests::LocalServer;

use crate::harness::{GRID_A, code, copy_dir, quick_retry, sample_visit};

fn visit(n: usize) -> gridsync_core::records::Visit {
    sample_visit("周网格", n)
}

/// A worker's phone on grid A, its store at `DIR/<file>.db`.
async fn grid_a_phone(
    server: &LocalServer,
    dir: &std::path::Path,
    file: &str,
    name: &str,
    retry: RetryPolicy,
) -> (gridsync_core::Store, gridsync_core::client::SyncClient) {
    server
        .phone(
            &dir.join(format!("{file}.db")),
            name,
            Role::Worker,
            &[code(GRID_A)],
            retry,
        )
        .await
        .expect("phone")
}

/// Stops a server the way an operator does before a backup or a restore.
async fn stop(server: LocalServer) {
    server.storage.close().await;
    drop(server);
}

fn client_for(server: &LocalServer) -> gridsync_core::client::SyncClient {
    gridsync_core::client::SyncClient::new(&server.url, quick_retry()).expect("client")
}

#[tokio::test]
async fn a_server_restored_from_backup_is_repaired_by_the_sync_protocol() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let backup = dir.path().join("backup");
    let server = LocalServer::start(&data, Config::default())
        .await
        .expect("server");
    let (a, client) = grid_a_phone(&server, dir.path(), "a", "周网格", quick_retry()).await;
    let hid = a
        .create(code(GRID_A), &Household::new("1 号", Residence::Permanent))
        .await
        .expect("create");
    client.sync(&a, 10).await.expect("first sync");
    // The operator's nightly backup (taken with the server stopped).
    stop(server).await;
    copy_dir(&data, &backup);
    let server = LocalServer::start(&data, Config::default())
        .await
        .expect("restart");
    let client = client_for(&server);
    let v1 = RecordId::new();
    a.update::<Household>(hid, |h| {
        h.visits.insert(v1, visit(1));
    })
    .await
    .expect("edit 1");
    client.sync(&a, 10).await.expect("second sync");
    // Disaster: the server is restored from the backup, losing the second sync.
    stop(server).await;
    std::fs::remove_dir_all(&data).expect("wipe");
    copy_dir(&backup, &data);
    let server = LocalServer::start(&data, Config::default())
        .await
        .expect("restored");
    let client = client_for(&server);
    let v2 = RecordId::new();
    a.update::<Household>(hid, |h| {
        h.visits.insert(v2, visit(2));
    })
    .await
    .expect("edit 2");
    // The phone pushes only what it thinks is new; the server lacks its dependencies, asks for
    // the sync protocol, and the two converge.
    let report = client.sync(&a, 20).await.expect("recovering sync");
    assert!(
        report.round_trips >= 2,
        "the fallback took extra rounds: {report:?}"
    );
    let doc = server
        .storage
        .load(hid)
        .await
        .expect("load")
        .expect("on the server");
    let h: Household = doc.read().expect("read");
    assert!(
        h.visits.contains_key(&v1),
        "the change lost with the backup came back from the phone"
    );
    assert!(h.visits.contains_key(&v2));
    assert_eq!(a.unsynced_count().await.expect("count"), 0);
    let again = client.sync(&a, 5).await.expect("steady state");
    assert_eq!(again.round_trips, 1, "back to one round trip: {again:?}");
}

#[tokio::test]
async fn a_large_backlog_is_paged_and_still_converges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        pull_budget: PullBudget {
            max_bytes: 4 * 1024,
            max_changes: 7,
            max_docs: 5,
            ..PullBudget::default()
        },
        ..Config::default()
    };
    let server = LocalServer::start(&dir.path().join("server"), config)
        .await
        .expect("server");
    let retry = RetryPolicy {
        attempts: 2,
        ..quick_retry()
    };
    let (a, ca) = grid_a_phone(&server, dir.path(), "a", "周网格", retry).await;
    let (b, cb) = grid_a_phone(&server, dir.path(), "b", "吴网格", retry).await;
    let records: Vec<Household> = (0..23)
        .map(|i| gridsync_core::sample::household(i, 3, 2))
        .collect();
    let ids = a.create_many(code(GRID_A), &records).await.expect("import");
    for id in &ids[..4] {
        a.update::<Household>(*id, |h| h.address.push_str(" 已核实"))
            .await
            .expect("edit");
    }
    ca.sync(&a, 10).await.expect("push");
    let report = cb.sync(&b, 50).await.expect("paged pull");
    assert!(
        report.round_trips >= 5,
        "23 documents at 5 per page: {report:?}"
    );
    assert_eq!(report.pulled_changes, 27);
    for id in &ids {
        let mine = b.load(*id).await.expect("b has it").record_json();
        let theirs = a.load(*id).await.expect("a").record_json();
        assert_eq!(mine, theirs);
    }
    assert_eq!(cb.sync(&b, 5).await.expect("noop").round_trips, 1);
}

#[tokio::test]
async fn after_a_restore_and_a_new_epoch_every_phone_gets_everything_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let backup = dir.path().join("backup");
    let server = LocalServer::start(&data, Config::default())
        .await
        .expect("server");
    let (a, ca) = grid_a_phone(&server, dir.path(), "a", "周网格", quick_retry()).await;
    let (b, cb) = grid_a_phone(&server, dir.path(), "b", "吴网格", quick_retry()).await;
    let h1 = a
        .create(code(GRID_A), &Household::new("1 号", Residence::Permanent))
        .await
        .expect("h1");
    ca.sync(&a, 10).await.expect("a");
    cb.sync(&b, 10).await.expect("b");
    stop(server).await;
    copy_dir(&data, &backup);

    // After the backup: A adds a household and a visit; both phones see it acknowledged.
    let server = LocalServer::start(&data, Config::default())
        .await
        .expect("restart");
    let ca = client_for(&server);
    let cb = client_for(&server);
    let h2 = a
        .create(code(GRID_A), &Household::new("2 号", Residence::Floating))
        .await
        .expect("h2");
    let v1 = RecordId::new();
    a.update::<Household>(h1, |h| {
        h.visits.insert(v1, visit(1));
    })
    .await
    .expect("visit");
    ca.sync(&a, 10).await.expect("a");
    cb.sync(&b, 10).await.expect("b sees h2");
    assert!(b.load(h2).await.is_ok());

    // Disaster and restore; the operator starts a new epoch.
    stop(server).await;
    std::fs::remove_dir_all(&data).expect("wipe");
    copy_dir(&backup, &data);
    let server = LocalServer::start(&data, Config::default())
        .await
        .expect("restored");
    server.storage.new_epoch().await.expect("new epoch");
    let ca = client_for(&server);
    let cb = client_for(&server);
    // B writes first, taking sequence numbers the lost changes once had.
    let h3 = b
        .create(code(GRID_A), &Household::new("3 号", Residence::Permanent))
        .await
        .expect("h3");
    cb.sync(&b, 20).await.expect("b after restore");
    ca.sync(&a, 20).await.expect("a after restore");
    cb.sync(&b, 20).await.expect("b again");
    ca.sync(&a, 20).await.expect("a again");
    for id in [h1, h2, h3] {
        let on_server = server
            .storage
            .load(id)
            .await
            .expect("load")
            .unwrap_or_else(|| panic!("{id} missing on the server"))
            .record_json();
        for phone in [&a, &b] {
            assert_eq!(
                phone.load(id).await.expect("phone has it").record_json(),
                on_server
            );
        }
    }
    let h: Household = a.read(h1).await.expect("h1");
    assert!(
        h.visits.contains_key(&v1),
        "the visit lost with the backup is back"
    );
    assert_eq!(a.unsynced_count().await.expect("a"), 0);
    assert_eq!(b.unsynced_count().await.expect("b"), 0);
}

#[tokio::test]
async fn a_big_push_goes_in_bounded_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = LocalServer::start(&dir.path().join("server"), Config::default())
        .await
        .expect("server");
    let (a, ca) = grid_a_phone(&server, dir.path(), "a", "周网格", quick_retry()).await;
    let records: Vec<Household> = (0..400)
        .map(|i| gridsync_core::sample::household(i, 3, 24))
        .collect();
    a.create_many(code(GRID_A), &records).await.expect("import");
    let report = ca.sync(&a, 50).await.expect("push");
    assert_eq!(report.acked, 400);
    assert!(
        report.round_trips >= 2,
        "more than 1 MiB of changes went in several requests: {report:?}"
    );
    let per_request = report.bytes_sent / report.round_trips;
    assert!(
        per_request < gridsync_core::sync::MAX_PUSH_BYTES + 64 * 1024,
        "each request stays near the cap: {report:?}"
    );
    assert_eq!(a.unsynced_count().await.expect("count"), 0);
}
