//! The closed loop through the real server: a 12345 intake case reaches the grid's worker, is
//! verified offline, dispatched, handled by the department (which sees it only while it is
//! dispatched there), checked, closed and followed up — and the indicators reflect it.

use std::collections::BTreeMap;

use gridsync_core::clock::now_ms;
use gridsync_core::records::{Case, Grid, PhotoRef, PhotoStage};
use gridsync_core::workflow::{Action, Reference, Status, derive, plan_dispatch};
use gridsync_proto::{DocId, ErrorBody};
use gridsync_server::Storage;
use gridsync_server::auth::Role;
use gridsync_server::http::IntakeAccepted;
use serde_json::{Value, json};

use crate::harness::{GRID_A, GRID_B, Phone, TOWN, TestServer, code};

/// The 12345 hotline's key for both towns of these tests, with their grids registered.
async fn intake_key(server: &TestServer) -> String {
    for g in [GRID_A, OTHER_TOWN_GRID] {
        server.register_grid(g).await;
    }
    server.intake_key("12345", &[TOWN, "330102002"]).await
}

/// A grid of the neighbouring town.
const OTHER_TOWN_GRID: &str = "33010200201001001";

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn post_intake(server: &TestServer, key: &str, body: &Value) -> (u16, Value) {
    let resp = http()
        .post(format!("{}/v1/intake/cases", server.url))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).expect("json"))
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn department(server: &TestServer, dept: &str) -> Phone {
    let name = format!("{dept} 办事员");
    Phone::enroll_in(server, &name, Role::Department, &[TOWN], Some(dept)).await
}

async fn act(p: &Phone, id: DocId, action: Action, note: &str, data: BTreeMap<String, String>) {
    let actor = p.store.actor().await.expect("actor");
    p.store
        .case_action(id, &actor, action, note, now_ms(), |_, _| Ok(data))
        .await
        .unwrap_or_else(|e| panic!("{action:?}: {e}"));
}

async fn after_photo(p: &Phone, id: DocId) {
    p.store
        .update::<Case>(id, |c| {
            c.photos.insert(
                gridsync_proto::RecordId::new(),
                PhotoRef::new(
                    "c".repeat(64),
                    PhotoStage::After,
                    now_ms(),
                    2048,
                    "image/jpeg",
                ),
            );
        })
        .await
        .expect("photo");
}

#[tokio::test]
async fn a_12345_case_goes_round_the_whole_loop_and_the_indicators_show_it() {
    let server = TestServer::start().await;
    let key = intake_key(&server).await;
    let worker = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let other_grid = Phone::enroll(&server, "吴网格", Role::Worker, &[GRID_B]).await;
    let dispatcher = Phone::enroll(&server, "调度员", Role::Dispatcher, &[TOWN]).await;
    let leader = Phone::enroll(&server, "领导", Role::Leader, &[TOWN]).await;
    let d01 = department(&server, "D01").await;
    let d05 = department(&server, "D05").await;

    // The grid's boundary lets intake place a case by its location.
    let grid_doc = Grid {
        code: GRID_A.into(),
        name: "城南社区第二网格".into(),
        roster: Default::default(),
        boundary: vec![
            [30.25, 120.16],
            [30.25, 120.17],
            [30.26, 120.17],
            [30.26, 120.16],
        ],
    };
    dispatcher
        .store
        .create(code(GRID_A), &grid_doc)
        .await
        .expect("grid");
    dispatcher.sync().await;

    let body = json!({
        "order_no": "12345-20261123-0001",
        "title": "楼道灯不亮",
        "subcategory": "0102",
        "description": "3 幢 2 单元楼道灯坏了一周",
        "address": "城南社区 3 幢 2 单元",
        "location": {"lat": 30.255, "lon": 120.165},
        "reporter": {"name": "李秀英", "phone": "13812345678"}
    });
    let (status, v) = post_intake(&server, &key, &body).await;
    assert_eq!(status, 201, "{v}");
    let accepted: IntakeAccepted = serde_json::from_value(v).expect("accepted");
    assert_eq!(accepted.grid, GRID_A, "placed by the boundary");
    let (status, v) = post_intake(&server, &key, &body).await;
    assert_eq!(status, 200, "the same order number again: {v}");
    assert_eq!(v["case"], json!(accepted.case));
    assert_eq!(v["created"], json!(false));
    let id = accepted.case;

    // The grid's worker gets it; the other grid's worker and the departments do not.
    worker.sync().await;
    other_grid.sync().await;
    d01.sync().await;
    let c: Case = worker
        .store
        .read(id)
        .await
        .expect("the worker has the case");
    assert_eq!(derive(&c).status, Status::Reported);
    assert!(other_grid.store.load(id).await.is_err());
    assert!(d01.store.load(id).await.is_err(), "not dispatched yet");

    // Verified offline on site, synced later.
    act(
        &worker,
        id,
        Action::Verify,
        "已到现场核实，情况属实",
        BTreeMap::new(),
    )
    .await;
    worker.sync().await;
    dispatcher.sync().await;
    act(&dispatcher, id, Action::Register, "", BTreeMap::new()).await;
    let c: Case = dispatcher.store.read(id).await.expect("case");
    let plan = plan_dispatch(&c, &Reference::builtin(), now_ms(), None, None).expect("plan");
    assert_eq!(plan["lead"], "D01");
    act(&dispatcher, id, Action::Dispatch, "", plan).await;
    dispatcher.sync().await;

    // The lead department receives the whole case once dispatched; D05 does not.
    d01.sync().await;
    d05.sync().await;
    let c: Case = d01.store.read(id).await.expect("dispatched to D01");
    assert_eq!(derive(&c).status, Status::Dispatched);
    assert!(d05.store.load(id).await.is_err());
    act(&d01, id, Action::Sign, "", BTreeMap::new()).await;
    after_photo(&d01, id).await;
    act(
        &d01,
        id,
        Action::Handle,
        "已更换灯泡并检修线路",
        BTreeMap::new(),
    )
    .await;
    let report = d01.sync().await;
    assert!(report.rejected.is_empty(), "{report:?}");

    // A leader supervises; the worker checks on site and closes; a follow-up call.
    leader.sync().await;
    act(
        &leader,
        id,
        Action::Supervise,
        "请尽快核查销号",
        BTreeMap::new(),
    )
    .await;
    leader.sync().await;
    worker.sync().await;
    act(
        &worker,
        id,
        Action::PassCheck,
        "现场核查灯已亮",
        BTreeMap::new(),
    )
    .await;
    let mut sat = BTreeMap::new();
    sat.insert("satisfaction".to_owned(), "satisfied".to_owned());
    act(&worker, id, Action::FollowUp, "电话回访", sat).await;
    worker.sync().await;
    for p in [&dispatcher, &leader, &d01] {
        p.sync().await;
    }
    let states: Vec<_> = [&worker, &dispatcher, &leader, &d01]
        .iter()
        .map(|p| async { derive(&p.store.read::<Case>(id).await.expect("case")) })
        .collect::<Vec<_>>();
    let mut derived = Vec::new();
    for s in states {
        derived.push(s.await);
    }
    assert!(
        derived.windows(2).all(|w| w[0] == w[1]),
        "every replica derives the same state"
    );
    assert_eq!(derived[0].status, Status::FollowedUp);
    assert_eq!(derived[0].supervisions.len(), 1);
    assert!(
        derived[0].conflicts.is_empty(),
        "{:?}",
        derived[0].conflicts
    );

    // Indicators for today, for the leader.
    let token = leader
        .store
        .meta("device_token")
        .await
        .expect("meta")
        .expect("token");
    let day_ms = 86_400_000;
    let bytes = http()
        .get(format!(
            "{}/v1/indicators?from={}&to={}&group_by=department",
            server.url,
            now_ms() - day_ms,
            now_ms() + day_ms
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("body");
    let resp: Value = serde_json::from_slice(&bytes).expect("json");
    let total = &resp["total"];
    assert_eq!(total["cases"], json!(1), "{resp}");
    assert_eq!(total["closure_rate"], json!(1.0));
    assert_eq!(total["on_time_rate"], json!(1.0));
    assert_eq!(total["handled_rate"], json!(1.0));
    assert_eq!(total["rework_rate"], json!(0.0));
    assert_eq!(total["satisfaction_rate"], json!(1.0));
    assert_eq!(total["self_closed_rate"], json!(0.0));
    assert_eq!(total["supervised"], json!(1));
    assert_eq!(resp["groups"][0]["key"], json!("D01"));
    // A worker's token may not read indicators.
    let token = worker
        .store
        .meta("device_token")
        .await
        .expect("meta")
        .expect("token");
    let resp = http()
        .get(format!(
            "{}/v1/indicators?from=2026-01-01&to=2027-01-01",
            server.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 403);
}

#[tokio::test]
async fn a_department_loses_a_returned_case_but_keeps_what_it_wrote() {
    let server = TestServer::start().await;
    let key = intake_key(&server).await;
    let dispatcher = Phone::enroll(&server, "调度员", Role::Dispatcher, &[TOWN]).await;
    let worker = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let d01 = department(&server, "D01").await;
    let d05 = department(&server, "D05").await;
    let (status, v) = post_intake(
        &server,
        &key,
        &json!({"order_no": "A-1", "source": "resident", "title": "噪声", "subcategory": "0102",
                "description": "夜间施工", "address": "5 幢", "grid": GRID_A}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id: DocId = serde_json::from_value(v["case"].clone()).expect("id");
    worker.sync().await;
    act(&worker, id, Action::Verify, "属实", BTreeMap::new()).await;
    worker.sync().await;
    dispatcher.sync().await;
    act(&dispatcher, id, Action::Register, "", BTreeMap::new()).await;
    let c: Case = dispatcher.store.read(id).await.expect("case");
    let plan = plan_dispatch(&c, &Reference::builtin(), now_ms(), None, Some(&[])).expect("plan");
    act(&dispatcher, id, Action::Dispatch, "", plan).await;
    dispatcher.sync().await;
    d01.sync().await;
    act(
        &d01,
        id,
        Action::Return,
        "不属于我局职责，应由派出所处理",
        BTreeMap::new(),
    )
    .await;
    d01.sync().await;
    dispatcher.sync().await;
    let c: Case = dispatcher.store.read(id).await.expect("case");
    assert_eq!(derive(&c).status, Status::Returned);
    let plan =
        plan_dispatch(&c, &Reference::builtin(), now_ms(), Some("D05"), Some(&[])).expect("plan");
    act(&dispatcher, id, Action::Dispatch, "改派派出所", plan).await;
    dispatcher.sync().await;
    // D05 now has it; D01 no longer receives its changes, and cannot write to it.
    d05.sync().await;
    let c: Case = d05.store.read(id).await.expect("D05 has it");
    assert_eq!(derive(&c).lead.as_deref(), Some("D05"));
    d01.sync().await;
    let stale: Case = d01.store.read(id).await.expect("D01 keeps its local copy");
    assert_eq!(
        derive(&stale).status,
        Status::Returned,
        "D01 stopped receiving the case"
    );
    crate::harness::add_case_photo(&d01, id, 1).await;
    let report = d01.sync().await;
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert_eq!(report.rejected[0].1, "out_of_scope");
    // What D01 wrote before losing access is kept on the server.
    let doc = server.storage.load(id).await.expect("load").expect("case");
    let c: Case = doc.read().expect("read");
    assert!(
        c.events
            .values()
            .any(|e| e.kind == "return" && e.dept.as_deref() == Some("D01"))
    );
}

#[tokio::test]
async fn role_claims_are_checked_and_bad_intake_gets_typed_errors() {
    let server = TestServer::start().await;
    let key = intake_key(&server).await;
    let worker = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let (status, v) = post_intake(
        &server,
        &key,
        &json!({"order_no": "B-1", "title": "路面坑洞", "subcategory": "0101",
                "description": "直径半米", "address": "城南路", "grid": GRID_A}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id: DocId = serde_json::from_value(v["case"].clone()).expect("id");
    worker.sync().await;
    // A worker's phone claiming to be the dispatcher: the server refuses the change.
    let forged = gridsync_core::workflow::Actor {
        name: "冒充".into(),
        role: Role::Dispatcher,
        dept: None,
    };
    let c: Case = worker.store.read(id).await.expect("case");
    assert_eq!(derive(&c).status, Status::Reported);
    worker
        .store
        .case_action(id, &forged, Action::Verify, "", now_ms(), |_, _| {
            Ok(BTreeMap::new())
        })
        .await
        .expect("locally valid: a dispatcher may verify");
    let report = worker.sync().await;
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert_eq!(report.rejected[0].1, "role_mismatch");

    // Bad intake input: each gets a typed 4xx naming the field, and creates nothing.
    let before = server.doc_ids().await.len();
    for (body, code_, field) in [
        (
            json!({"order_no": "C-1", "title": "x", "subcategory": "7777", "description": "d", "address": "a", "grid": GRID_A}),
            "invalid_case",
            "subcategory",
        ),
        (
            json!({"order_no": "C-2", "title": "x", "subcategory": "0101", "description": "d", "address": "a"}),
            "invalid_case",
            "grid",
        ),
        (
            json!({"order_no": "C-3", "title": "x", "subcategory": "0101", "description": "d", "address": "a", "location": {"lat": 1.0, "lon": 1.0}}),
            "no_grid",
            "no grid",
        ),
        (
            json!({"order_no": "C-4", "title": " ", "subcategory": "0101", "description": "d", "address": "a", "grid": GRID_A}),
            "invalid_case",
            "title",
        ),
        (
            json!({"order_no": "C-5", "title": "x", "subcategory": "0101", "description": "d", "address": "a", "grid": TOWN}),
            "invalid_case",
            "grid",
        ),
        (
            json!({"order_no": "C-6", "title": "x", "subcategory": "0101", "description": "d", "address": "a", "grid": GRID_A, "extra": 1}),
            "malformed_request",
            "extra",
        ),
        (
            // A well-formed code no grid record exists for.
            json!({"order_no": "C-7", "title": "x", "subcategory": "0101", "description": "d", "address": "a", "grid": "33010200101001099"}),
            "invalid_case",
            "no grid 33010200101001099 is registered",
        ),
        (
            json!({"order_no": "C-8", "title": "路灯\u{7}坏了", "subcategory": "0101", "description": "d", "address": "a", "grid": GRID_A}),
            "invalid_case",
            "title: control character U+0007",
        ),
        (
            json!({"order_no": "C-9", "title": "x", "subcategory": "0101", "description": "第一行\n第二行", "address": "a\u{1b}[2J", "grid": GRID_A}),
            "invalid_case",
            "address: control character U+001B",
        ),
    ] {
        let (status, v) = post_intake(&server, &key, &body).await;
        let e: ErrorBody = serde_json::from_value(v.clone()).expect("typed error");
        assert_eq!((status, e.error.code.as_str()), (400, code_), "{v}");
        assert!(e.error.message.contains(field), "{v}");
    }
    let (status, _) = post_intake(&server, "wrong-key", &json!({})).await;
    assert_eq!(status, 401);
    // A key for one town cannot place cases in another (registered) town's grid.
    let town_a_only = server.intake_key("居民小程序", &[TOWN]).await;
    let (status, v) = post_intake(
        &server,
        &town_a_only,
        &json!({"order_no": "C-10", "title": "x", "subcategory": "0101", "description": "d",
                "address": "a", "grid": OTHER_TOWN_GRID}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("outside the towns this intake key serves")),
        "{v}"
    );
    assert_eq!(server.doc_ids().await.len(), before, "nothing was created");
}

#[tokio::test]
async fn a_department_clerk_sees_only_its_own_towns_cases() {
    let server = TestServer::start().await;
    let key = intake_key(&server).await;
    let other_town_grid = OTHER_TOWN_GRID;
    let dispatcher_b = Phone::enroll(&server, "乙镇调度", Role::Dispatcher, &["330102002"]).await;
    let worker_b = Phone::enroll(&server, "乙镇网格员", Role::Worker, &[other_town_grid]).await;
    let d01_town_a = department(&server, "D01").await;
    let (status, v) = post_intake(
        &server,
        &key,
        &json!({"order_no": "T-1", "title": "路灯", "subcategory": "0102",
                "description": "不亮", "address": "乙镇", "grid": other_town_grid}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id: DocId = serde_json::from_value(v["case"].clone()).expect("id");
    worker_b.sync().await;
    act(&worker_b, id, Action::Verify, "属实", BTreeMap::new()).await;
    worker_b.sync().await;
    dispatcher_b.sync().await;
    act(&dispatcher_b, id, Action::Register, "", BTreeMap::new()).await;
    let c: Case = dispatcher_b.store.read(id).await.expect("case");
    let plan = plan_dispatch(&c, &Reference::builtin(), now_ms(), None, None).expect("plan");
    assert_eq!(plan["lead"], "D01");
    act(&dispatcher_b, id, Action::Dispatch, "", plan).await;
    dispatcher_b.sync().await;
    d01_town_a.sync().await;
    assert!(
        d01_town_a.store.load(id).await.is_err(),
        "D01's clerk for town A must not receive town B's case"
    );
}
