//! A server restored from a backup without `gridsync-server new-epoch`: once it has written
//! past the phones' old cursor positions, only the cursor's anchor (the chain hash of the newest
//! change it was issued against) tells it those positions belong to a lost history.

use std::str::FromStr;

use gridsync_core::Store;
use gridsync_core::client::SyncClient;
use gridsync_core::records::{Household, Residence};
use gridsync_proto::{DeviceId, DocId, RecordId};
use gridsync_server::auth::{Device, Role};
use gridsync_server::storage::{Cursor, PullBudget};
use gridsync_server::{Config, Storage};
use gridsync_tests::LocalServer;

use crate::harness::{GRID_A, code, copy_dir, quick_retry, sample_visit};

async fn phone(server: &LocalServer, dir: &std::path::Path, name: &str) -> (Store, SyncClient) {
    server
        .phone(
            &dir.join(format!("{name}.db")),
            name,
            Role::Worker,
            &[code(GRID_A)],
            quick_retry(),
        )
        .await
        .expect("phone")
}

/// Stops a server the way an operator does before a backup or a restore.
async fn stop(server: LocalServer) {
    server.storage.close().await;
    drop(server);
}

async fn newest_seq(server: &LocalServer) -> i64 {
    sqlx::query_scalar("SELECT value FROM seq_counter WHERE id = 1")
        .fetch_one(server.storage.pool())
        .await
        .expect("counter")
}

/// Every phone (all grid-A workers) holds exactly the server's documents with identical
/// contents, and has nothing left to send.
async fn assert_converged(server: &LocalServer, phones: &[&Store]) {
    let ids: Vec<String> = sqlx::query_scalar("SELECT doc_id FROM docs ORDER BY doc_id")
        .fetch_all(server.storage.pool())
        .await
        .expect("docs");
    for (i, p) in phones.iter().enumerate() {
        for id in &ids {
            let id = DocId::from_str(id).expect("id");
            let theirs = server
                .storage
                .load(id)
                .await
                .expect("load")
                .expect("doc")
                .record_json();
            let mine = p
                .load(id)
                .await
                .unwrap_or_else(|e| panic!("phone {i} lacks {id}: {e}"));
            assert_eq!(mine.record_json(), theirs, "phone {i} differs on {id}");
        }
        let held = p.households(None).await.expect("households").len();
        assert_eq!(held, ids.len(), "phone {i} holds what the server holds");
        assert_eq!(p.unsynced_count().await.expect("unsynced"), 0, "phone {i}");
    }
}

#[tokio::test]
async fn a_restore_without_new_epoch_is_caught_after_the_server_writes_past_old_cursors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let backup = dir.path().join("backup");
    let server = LocalServer::start(&data, Config::default())
        .await
        .expect("server");
    let (a, _) = phone(&server, dir.path(), "周网格").await;
    let (b, _) = phone(&server, dir.path(), "吴网格").await;
    let client = |s: &LocalServer| SyncClient::new(&s.url, quick_retry()).expect("client");
    let h1 = a
        .create(code(GRID_A), &Household::new("1 号", Residence::Permanent))
        .await
        .expect("h1");
    client(&server).sync(&a, 10).await.expect("a");
    client(&server).sync(&b, 10).await.expect("b");
    stop(server).await;
    copy_dir(&data, &backup);

    // After the backup: A records a household and two visits, acknowledged; B receives them.
    let server = LocalServer::start(&data, Config::default())
        .await
        .expect("restart");
    let h2 = a
        .create(code(GRID_A), &Household::new("2 号", Residence::Floating))
        .await
        .expect("h2");
    let (v1, v2) = (RecordId::new(), RecordId::new());
    a.update::<Household>(h1, |h| {
        h.visits.insert(v1, sample_visit("周网格", 1));
    })
    .await
    .expect("v1");
    a.update::<Household>(h2, |h| {
        h.visits.insert(v2, sample_visit("周网格", 2));
    })
    .await
    .expect("v2");
    client(&server).sync(&a, 10).await.expect("a");
    client(&server).sync(&b, 10).await.expect("b");
    assert!(b.load(h2).await.is_ok());
    let seen_before_disaster = newest_seq(&server).await;

    // Disaster: the database file is restored from the backup and nobody runs new-epoch.
    stop(server).await;
    std::fs::remove_dir_all(&data).expect("wipe");
    copy_dir(&backup, &data);
    let server = LocalServer::start(&data, Config::default())
        .await
        .expect("restored");
    // A phone enrolled after the restore writes more than was lost, so the server's sequence
    // numbers pass the positions A and B hold before either of them syncs.
    let (c, _) = phone(&server, dir.path(), "郑网格").await;
    let fresh: Vec<Household> = (0..6)
        .map(|i| Household::new(format!("{} 号", 10 + i), Residence::Permanent))
        .collect();
    c.create_many(code(GRID_A), &fresh).await.expect("import");
    client(&server).sync(&c, 10).await.expect("c");
    assert!(
        newest_seq(&server).await > seen_before_disaster,
        "the restored server wrote past the old cursors"
    );

    for p in [&b, &a, &b, &c] {
        let report = client(&server).sync(p, 20).await.expect("sync");
        assert!(report.rejected.is_empty(), "{report:?}");
    }
    let h: Household = server
        .storage
        .load(h1)
        .await
        .expect("load")
        .expect("h1")
        .read()
        .expect("read");
    assert!(h.visits.contains_key(&v1), "A offered its lost visit again");
    let h: Household = server
        .storage
        .load(h2)
        .await
        .expect("load")
        .expect("A offered its lost household again")
        .read()
        .expect("read");
    assert!(h.visits.contains_key(&v2));
    assert_converged(&server, &[&a, &b, &c]).await;
}

#[tokio::test]
async fn chain_hashes_missing_from_older_rows_are_filled_in_identically_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let server = LocalServer::start(&data, Config::default())
        .await
        .expect("server");
    let (a, client) = phone(&server, dir.path(), "周网格").await;
    let records: Vec<Household> = (0..5)
        .map(|i| Household::new(format!("{i} 号"), Residence::Permanent))
        .collect();
    a.create_many(code(GRID_A), &records).await.expect("import");
    client.sync(&a, 10).await.expect("sync");
    let chains = |s: &LocalServer| {
        let pool = s.storage.pool().clone();
        async move {
            sqlx::query_as::<_, (i64, Option<Vec<u8>>)>(
                "SELECT seq, chain FROM changes ORDER BY seq",
            )
            .fetch_all(&pool)
            .await
            .expect("chains")
        }
    };
    let before = chains(&server).await;
    assert!(before.iter().all(|(_, c)| c.is_some()));
    let reader = Device {
        id: DeviceId::new(),
        name: "吴网格".into(),
        role: Role::Worker,
        scopes: vec![code(GRID_A)],
        department: None,
    };
    let issued = server
        .storage
        .pull(
            &reader,
            &gridsync_core::document::actor_for(reader.id),
            &Cursor::default(),
            PullBudget::default(),
        )
        .await
        .expect("pull")
        .cursor;
    assert!(issued.anchor.is_some());
    // As a database written before chain hashes existed (from the second change on).
    sqlx::query("UPDATE changes SET chain = NULL WHERE seq >= 2")
        .execute(server.storage.pool())
        .await
        .expect("forget chains");
    stop(server).await;
    let server = LocalServer::start(&data, Config::default())
        .await
        .expect("reopen");
    assert_eq!(
        chains(&server).await,
        before,
        "the same history, the same chain"
    );
    let again = server
        .storage
        .pull(
            &reader,
            &gridsync_core::document::actor_for(reader.id),
            &issued,
            PullBudget::default(),
        )
        .await
        .expect("pull");
    assert!(!again.reset, "the cursor's anchor still holds");
    assert!(again.docs.is_empty());
    // And a cursor from before anchors existed is served, not refused or reset.
    let old = Cursor {
        anchor: None,
        ..issued
    };
    let again = server
        .storage
        .pull(
            &reader,
            &gridsync_core::document::actor_for(reader.id),
            &old,
            PullBudget::default(),
        )
        .await
        .expect("pull");
    assert!(!again.reset && again.docs.is_empty());
    assert!(again.cursor.anchor.is_some(), "and gets an anchor");
    let client = SyncClient::new(&server.url, quick_retry()).expect("client");
    client.sync(&a, 10).await.expect("sync");
}
