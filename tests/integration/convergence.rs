//! Three phones work offline on the same household, the same case and their own records, then
//! reconnect in every order: every replica and the server's projections end identical, with
//! every edit present.

use gridsync_core::records::{Case, Household, Relation, Residence, Resident, Urgency, Visit};
use gridsync_proto::{DocId, RecordId};
use gridsync_server::auth::Role;

use crate::harness::{GRID_A, Phone, TOWN, TestServer, assert_converged, code};

fn visit(worker: &str, findings: &str) -> Visit {
    Visit {
        findings: findings.into(),
        ..crate::harness::sample_visit(worker, 0)
    }
}

fn case(title: &str) -> Case {
    Case {
        title: title.into(),
        ..crate::harness::sample_case()
    }
}

async fn scenario(order: [usize; 3]) {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let b = Phone::enroll(&server, "吴网格", Role::Worker, &[GRID_A]).await;
    let d = Phone::enroll(&server, "调度员", Role::Dispatcher, &[TOWN]).await;
    let phones = [&a, &b, &d];

    // Shared starting point: a household and a case everyone has.
    let mut h = Household::new("城南社区 3 幢 2 单元 501 室", Residence::Permanent);
    let head = RecordId::new();
    h.members
        .insert(head, Resident::new("王建国", Relation::Head));
    let hid = a.store.create(code(GRID_A), &h).await.expect("household");
    let cid = a
        .store
        .create(code(GRID_A), &case("楼道灯损坏"))
        .await
        .expect("case");
    a.sync().await;
    b.sync().await;
    d.sync().await;

    // Offline work.
    let (va, vb) = (RecordId::new(), RecordId::new());
    a.store
        .update::<Household>(hid, |h| {
            h.visits.insert(va, visit("周网格", "A 的走访"));
            h.address = "城南社区 3 幢 2 单元 502 室".into();
        })
        .await
        .expect("a edits household");
    b.store
        .update::<Household>(hid, |h| {
            h.visits.insert(vb, visit("吴网格", "B 的走访"));
            h.members.get_mut(&head).expect("head").work = "退休".into();
            h.address = "城南社区 3 幢 2 单元 503 室".into();
        })
        .await
        .expect("b edits household");
    a.store
        .update::<Case>(cid, |c| c.description = "楼道灯不亮，老人夜间摔倒".into())
        .await
        .expect("a edits case");
    d.store
        .update::<Case>(cid, |c| {
            c.description = "紧急：楼道灯不亮".into();
            c.urgency = Urgency::Urgent;
        })
        .await
        .expect("dispatcher edits case");
    let own_a = a
        .store
        .create(code(GRID_A), &case("A 的新事件"))
        .await
        .expect("a case");
    let own_b = b
        .store
        .create(
            code(GRID_A),
            &Household::new("城南社区 5 幢 101 室", Residence::Floating),
        )
        .await
        .expect("b household");

    // Reconnect in the given order, then once more all round so everyone has everything.
    for i in order {
        phones[i].sync().await;
    }
    for p in phones {
        p.sync().await;
    }
    assert_converged(&server, &phones).await;

    let merged: Household = d.store.read(hid).await.expect("household");
    assert!(
        merged.visits.contains_key(&va) && merged.visits.contains_key(&vb),
        "both visits kept"
    );
    assert_eq!(merged.members[&head].work, "退休");
    let conflicts = d.store.conflicts(hid).await.expect("conflicts");
    assert_eq!(
        conflicts.len(),
        1,
        "the address was set twice concurrently: {conflicts:?}"
    );
    assert_eq!(conflicts[0].path, "address");
    let c: Case = b.store.read(cid).await.expect("case");
    assert_eq!(
        c.description, "紧急：楼道灯不亮，老人夜间摔倒",
        "text edits merged"
    );
    assert_eq!(c.urgency, Urgency::Urgent);
    for id in [own_a, own_b] {
        for p in phones {
            p.store
                .load(id)
                .await
                .expect("every new record reached everyone");
        }
    }
    let _: DocId = own_a;
}

#[tokio::test]
async fn three_devices_converge_in_every_reconnect_order() {
    for order in [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ] {
        scenario(order).await;
    }
}

#[tokio::test]
async fn steady_state_sync_takes_one_round_trip_and_noop_is_tiny() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let b = Phone::enroll(&server, "吴网格", Role::Worker, &[GRID_A]).await;
    for i in 0..5 {
        a.store
            .create(
                code(GRID_A),
                &Household::new(format!("{i} 号"), Residence::Permanent),
            )
            .await
            .expect("create");
    }
    let first = a.sync().await;
    assert_eq!(first.round_trips, 1);
    assert_eq!(first.acked, 5);
    let pulled = b.sync().await;
    assert_eq!(pulled.round_trips, 1);
    assert_eq!(pulled.pulled_docs, 5);
    let noop = b.sync().await;
    assert_eq!(noop.round_trips, 1);
    assert_eq!(noop.pulled_changes, 0);
    assert!(noop.bytes_sent + noop.bytes_received < 200, "{noop:?}");
    assert_converged(&server, &[&a, &b]).await;
}

#[tokio::test]
async fn server_projections_rebuild_identically_from_the_documents() {
    use gridsync_server::Storage;
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    for i in 0..5 {
        a.store
            .create(code(GRID_A), &gridsync_core::sample::household(i, 3, 2))
            .await
            .expect("household");
    }
    a.store
        .create(code(GRID_A), &case("楼道灯损坏"))
        .await
        .expect("case");
    a.sync().await;
    let before = (
        server.storage.households(None).await.expect("h"),
        server.storage.search_residents("王").await.expect("r"),
        server.storage.cases().await.expect("c"),
    );
    sqlx::query("DELETE FROM p_residents")
        .execute(server.storage.pool())
        .await
        .expect("wipe");
    sqlx::query("UPDATE p_cases SET status = 'garbage'")
        .execute(server.storage.pool())
        .await
        .expect("damage");
    assert_eq!(
        server.storage.rebuild_projections().await.expect("rebuild"),
        6
    );
    let after = (
        server.storage.households(None).await.expect("h"),
        server.storage.search_residents("王").await.expect("r"),
        server.storage.cases().await.expect("c"),
    );
    assert_eq!(before, after);
}
