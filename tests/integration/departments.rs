//! A case leaving departments: the departments it leaves learn it (their phones see it returned
//! or re-dispatched) and receive nothing written after it left, however late they pull; a
//! clerk's device row without a department reads and writes nothing.

use std::collections::BTreeMap;

use gridsync_core::clock::now_ms;
use gridsync_core::records::Case;
use gridsync_core::workflow::{Action, Reference, Status, derive, plan_dispatch};
use gridsync_proto::DocId;
use gridsync_server::auth::Role;
use serde_json::json;

use crate::harness::{GRID_A, Phone, TOWN, TestServer, code};

/// A case reported through intake (so its source lets a worker verify it), placed in grid A.
async fn intake_case(server: &TestServer, order_no: &str) -> DocId {
    let key = server
        .intake_key(&format!("12345-{order_no}"), &[crate::harness::TOWN])
        .await;
    server.register_grid(GRID_A).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body = json!({"order_no": order_no, "title": "楼道灯不亮", "subcategory": "0102",
                      "description": "3 幢楼道灯坏了", "address": "3 幢", "grid": GRID_A});
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/intake/cases", server.url))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 201);
    let v: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json");
    serde_json::from_value(v["case"].clone()).expect("case id")
}

/// A department clerk's phone serving the town.
pub(crate) async fn clerk(server: &TestServer, dept: &str, n: usize) -> Phone {
    let name = format!("{dept} 办事员 {n}");
    Phone::enroll_in(server, &name, Role::Department, &[TOWN], Some(dept)).await
}

async fn act(p: &Phone, id: DocId, action: Action, data: BTreeMap<String, String>) {
    let actor = p.store.actor().await.expect("actor");
    let note = if action == Action::Return {
        "不属于我局职责"
    } else {
        ""
    };
    p.store
        .case_action(id, &actor, action, note, now_ms(), |_, _| Ok(data))
        .await
        .unwrap_or_else(|e| panic!("{action:?}: {e}"));
}

/// Reported, verified by the worker, registered and dispatched with the category's defaults
/// (lead D01, co-department D16).
pub(crate) async fn dispatched_case(
    server: &TestServer,
    worker: &Phone,
    dispatcher: &Phone,
) -> DocId {
    let id = intake_case(server, "R-1").await;
    worker.sync().await;
    act(worker, id, Action::Verify, BTreeMap::new()).await;
    worker.sync().await;
    dispatcher.sync().await;
    act(dispatcher, id, Action::Register, BTreeMap::new()).await;
    let c: Case = dispatcher.store.read(id).await.expect("case");
    let plan = plan_dispatch(&c, &Reference::builtin(), now_ms(), None, None).expect("plan");
    assert_eq!((plan["lead"].as_str(), plan["co"].as_str()), ("D01", "D16"));
    act(dispatcher, id, Action::Dispatch, plan).await;
    dispatcher.sync().await;
    id
}

#[tokio::test]
async fn departments_a_case_leaves_see_it_leave_and_nothing_written_after() {
    let server = TestServer::start().await;
    let worker = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let dispatcher = Phone::enroll(&server, "调度员", Role::Dispatcher, &[TOWN]).await;
    let d01 = clerk(&server, "D01", 1).await;
    let d01_second = clerk(&server, "D01", 2).await;
    let d16_late = clerk(&server, "D16", 1).await;
    let d05 = clerk(&server, "D05", 1).await;
    let id = dispatched_case(&server, &worker, &dispatcher).await;
    d01.sync().await;
    d01_second.sync().await;
    let c: Case = d01_second.store.read(id).await.expect("dispatched to D01");
    assert_eq!(derive(&c).status, Status::Dispatched);

    // The lead returns it (D01 and D16 both leave); the centre re-dispatches it to D05 and
    // then edits it further.
    act(&d01, id, Action::Return, BTreeMap::new()).await;
    d01.sync().await;
    dispatcher.sync().await;
    let c: Case = dispatcher.store.read(id).await.expect("case");
    assert_eq!(derive(&c).status, Status::Returned);
    let plan =
        plan_dispatch(&c, &Reference::builtin(), now_ms(), Some("D05"), Some(&[])).expect("plan");
    act(&dispatcher, id, Action::Dispatch, plan).await;
    dispatcher
        .store
        .update::<Case>(id, |c| c.description.push_str("（改派后补充）"))
        .await
        .expect("edit after the re-dispatch");
    dispatcher.sync().await;
    worker.sync().await;
    crate::harness::add_case_photo(&worker, id, 2).await;
    worker.sync().await;

    // The lead's other phone learns the case left: returned, no longer D01's.
    d01_second.sync().await;
    let c: Case = d01_second.store.read(id).await.expect("kept locally");
    let state = derive(&c);
    assert_eq!(state.status, Status::Returned, "not dispatched forever");
    assert_eq!(state.lead, None);
    assert!(!c.description.contains("改派后补充"));

    // The co-department pulls only now: it gets the case as it was when it joined plus the
    // return that took it away, and nothing written after.
    d16_late.sync().await;
    let c: Case = d16_late
        .store
        .read(id)
        .await
        .expect("D16 received the case");
    let state = derive(&c);
    assert_eq!(state.status, Status::Returned);
    assert!(state.lead.is_none() && state.co.is_empty(), "{state:?}");
    assert!(
        !c.description.contains("改派后补充"),
        "the dispatcher's later edit stayed out of D16's feed"
    );
    assert!(!c.address.contains("2 单元"), "so did the worker's");
    assert!(
        !c.events
            .values()
            .any(|e| e.data.get("lead").map(String::as_str) == Some("D05")),
        "the re-dispatch is not D16's business"
    );
    let actor = d16_late.store.actor().await.expect("actor");
    assert!(
        d16_late
            .store
            .case_action(id, &actor, Action::Sign, "", now_ms(), |_, _| Ok(
                BTreeMap::new()
            ))
            .await
            .is_err(),
        "D16's phone no longer offers to sign a case that left it"
    );

    // The department it went to has all of it.
    d05.sync().await;
    let c: Case = d05.store.read(id).await.expect("D05 has it");
    assert_eq!(derive(&c).lead.as_deref(), Some("D05"));
    assert!(c.description.contains("改派后补充"));
    assert!(
        c.photos
            .values()
            .any(|p| p.author == Some(worker.store.device())),
        "the worker's photo from after the re-dispatch"
    );
}

#[tokio::test]
async fn a_clerk_row_without_a_department_reads_and_writes_nothing() {
    let server = TestServer::start().await;
    let worker = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let dispatcher = Phone::enroll(&server, "调度员", Role::Dispatcher, &[TOWN]).await;
    let d01 = clerk(&server, "D01", 1).await;
    let id = dispatched_case(&server, &worker, &dispatcher).await;
    d01.sync().await;
    assert!(d01.store.load(id).await.is_ok());
    // A device row as an older server could have written it: a clerk with no department.
    sqlx::query("UPDATE devices SET department = NULL WHERE device_id = $1")
        .bind(d01.store.device().to_string())
        .execute(server.storage.pool())
        .await
        .expect("legacy row");
    let household = worker
        .store
        .create(
            code(GRID_A),
            &gridsync_core::records::Household::new(
                "5 号",
                gridsync_core::records::Residence::Permanent,
            ),
        )
        .await
        .expect("household");
    worker.sync().await;
    crate::harness::add_case_photo(&d01, id, 1).await;
    let report = d01.sync().await;
    assert_eq!(report.pulled_changes, 0, "not the town's feed: {report:?}");
    assert!(
        d01.store.load(household).await.is_err(),
        "the town's households stay out"
    );
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert_eq!(report.rejected[0].1, "out_of_scope");
}
