//! The dispatch console over HTTP against a real server: who may see and do what, CSRF,
//! session expiry, lockout, the audit log, actions written through the merge path as the
//! signed-in person, and automatic routing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gridsync_core::Store;
use gridsync_core::client::SyncClient;
use gridsync_core::clock::now_ms;
use gridsync_core::records::{Case, CaseSource, Urgency};
use gridsync_core::workflow::{Action, Actor, Reference, Status, act};
use gridsync_proto::DocId;
use gridsync_server::auth::Role;
use gridsync_server::storage::console::{ConsoleRole, ConsoleStorage};
use gridsync_server::{Config, SqliteStorage, Storage};
use gridsync_tests::LocalServer;
use gridsync_tests::console::{ConsoleClient, TEST_PASSWORD, test_user};

use crate::harness::{GRID_A, TOWN, code, quick_retry};

struct Rig {
    server: LocalServer<SqliteStorage>,
    dir: tempfile::TempDir,
}

async fn rig(config: Config) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = LocalServer::start(&dir.path().join("server"), config)
        .await
        .expect("server");
    Rig { server, dir }
}

impl Rig {
    async fn phone(&self, name: &str, role: Role) -> (Store, SyncClient) {
        let scopes = if role == Role::Worker {
            [code(GRID_A)]
        } else {
            [code(TOWN)]
        };
        self.server
            .phone(
                &self
                    .dir
                    .path()
                    .join(format!("{}.db", rand::random::<u64>())),
                name,
                role,
                &scopes,
                quick_retry(),
            )
            .await
            .expect("phone")
    }

    async fn user(&self, login: &str, role: ConsoleRole, dept: Option<&str>) -> ConsoleClient {
        test_user(
            &self.server.storage,
            login,
            login,
            role,
            dept,
            &[code(TOWN)],
        )
        .await
        .expect("user");
        let mut c = ConsoleClient::new(&self.server.url).expect("client");
        let a = c.sign_in(login, TEST_PASSWORD).await.expect("sign in");
        assert_eq!(a.status, 303, "{login} signs in: {}", a.body);
        c
    }

    /// A case a grid worker reported on their phone and synced.
    async fn reported_case(&self) -> (DocId, Store, SyncClient) {
        let (worker, cw) = self.phone("周网格", Role::Worker).await;
        let actor = worker.actor().await.expect("actor");
        let now = now_ms();
        let mut c = Case {
            title: "楼道堆放杂物".into(),
            source: CaseSource::Inspection,
            category: "02".into(),
            subcategory: "0201".into(),
            location: None,
            address: "城南路 9 号".into(),
            description: "楼道堆放杂物，影响消防通道".into(),
            urgency: Urgency::Normal,
            reported_by: actor.name.clone(),
            reported_at: now,
            parties: Default::default(),
            photos: Default::default(),
            events: Default::default(),
            redactions: Default::default(),
        };
        act(&mut c, Action::Report, &actor, now, "", BTreeMap::new()).expect("report");
        let id = worker.create(code(GRID_A), &c).await.expect("case");
        cw.sync(&worker, 20).await.expect("sync");
        (id, worker, cw)
    }

    /// A reported case whose address the reporter and a dispatcher's phone wrote offline at
    /// once (both may change it), both synced: the case holds both values in conflict.
    async fn conflicted_address(&self) -> (DocId, (Store, SyncClient), (Store, SyncClient)) {
        let (id, a, ca) = self.reported_case().await;
        let (b, cb) = self.phone("调度手机", Role::Dispatcher).await;
        cb.sync(&b, 20).await.expect("sync");
        a.update::<Case>(id, |c| c.address = "城南路 9 号东门".into())
            .await
            .expect("edit a");
        b.update::<Case>(id, |c| c.address = "城南路 11 号".into())
            .await
            .expect("edit b");
        ca.sync(&a, 20).await.expect("sync");
        cb.sync(&b, 20).await.expect("sync");
        (id, (a, ca), (b, cb))
    }

    async fn status(&self, id: DocId) -> Status {
        let doc = self
            .server
            .storage
            .load(id)
            .await
            .expect("load")
            .expect("stored");
        doc.read::<Case>().expect("case").state().status
    }
}

fn lead_of_0201() -> String {
    Reference::builtin()
        .category("0201")
        .expect("0201 in the built-in table")
        .lead
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_actions_go_through_the_merge_path_as_the_person() {
    let rig = rig(Config::default()).await;
    let (id, worker, cw) = rig.reported_case().await;
    let mut disp = rig.user("wang.disp", ConsoleRole::Dispatcher, None).await;
    let inbox = disp.get("/console/").await.expect("inbox");
    assert_eq!(inbox.status, 200);
    assert!(
        inbox.body.contains("楼道堆放杂物"),
        "the phone's case is in the inbox"
    );
    let page = format!("/console/cases/{id}");
    let act_url = format!("/console/cases/{id}/act");
    let a = disp
        .submit(&page, &act_url, &[("action", "register"), ("note", "")])
        .await
        .expect("register");
    assert_eq!(a.status, 303, "{}", a.body);
    let lead = lead_of_0201();
    let a = disp
        .submit(
            &page,
            &act_url,
            &[
                ("action", "dispatch"),
                ("lead", &lead),
                ("note", "请尽快处理"),
            ],
        )
        .await
        .expect("dispatch");
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(rig.status(id).await, Status::Dispatched);
    // The writes are the person's: their name on the event, their own replica on the changes.
    let user = rig
        .server
        .storage
        .console_user("wang.disp")
        .await
        .expect("user")
        .expect("exists");
    let device = user
        .device_id
        .expect("a dispatcher writes as a replica")
        .to_string();
    let writers: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT device FROM changes WHERE doc_id = $1")
            .bind(id.to_string())
            .fetch_all(rig.server.storage.pool())
            .await
            .expect("changes");
    assert!(writers.contains(&device), "{writers:?} has {device}");
    let case: Case = rig
        .server
        .storage
        .load(id)
        .await
        .expect("load")
        .expect("doc")
        .read()
        .expect("case");
    let dispatch = case
        .events
        .values()
        .find(|e| e.kind == "dispatch")
        .expect("dispatch event");
    assert_eq!(dispatch.by, "wang.disp");
    assert_eq!(dispatch.data.get("lead"), Some(&lead));
    assert!(
        dispatch.data.contains_key("deadline"),
        "the deadline was computed"
    );
    // The phone gets the dispatch back.
    cw.sync(&worker, 20).await.expect("sync");
    let on_phone: Case = worker.read(id).await.expect("case");
    assert_eq!(on_phone.state().status, Status::Dispatched);
    // What the workflow refuses, the console refuses, and nothing is written.
    let before = rig
        .server
        .storage
        .load(id)
        .await
        .expect("load")
        .expect("doc")
        .heads();
    let a = disp
        .submit(&page, &act_url, &[("action", "register")])
        .await
        .expect("register again");
    assert_eq!(a.status, 409, "{}", a.body);
    let after = rig
        .server
        .storage
        .load(id)
        .await
        .expect("load")
        .expect("doc")
        .heads();
    assert_eq!(before, after, "a refused action writes nothing");
    // Every sign-in and action is in the audit log.
    let log = rig
        .server
        .storage
        .audit_log(Some("wang.disp"), 50)
        .await
        .expect("audit");
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    for want in [
        ("sign_in", "ok"),
        ("case.register", "ok"),
        ("case.dispatch", "ok"),
        ("case.register", "refused"),
    ] {
        assert!(actions.contains(&want), "{want:?} in {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clerk_sees_only_the_cases_their_department_holds() {
    let rig = rig(Config::default()).await;
    let (id, _, _) = rig.reported_case().await;
    let lead = lead_of_0201();
    let other = if lead == "D05" { "D06" } else { "D05" };
    let mut disp = rig.user("disp", ConsoleRole::Dispatcher, None).await;
    let page = format!("/console/cases/{id}");
    let act_url = format!("/console/cases/{id}/act");
    let mut stranger = rig.user("stranger", ConsoleRole::Clerk, Some(other)).await;
    let mut clerk = rig.user("clerk", ConsoleRole::Clerk, Some(&lead)).await;
    // Before dispatch no department holds it.
    assert_eq!(clerk.get(&page).await.expect("get").status, 404);
    disp.submit(&page, &act_url, &[("action", "register")])
        .await
        .expect("register");
    let a = disp
        .submit(&page, &act_url, &[("action", "dispatch"), ("lead", &lead)])
        .await
        .expect("dispatch");
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(clerk.get(&page).await.expect("get").status, 200);
    assert!(
        clerk
            .get("/console/")
            .await
            .expect("inbox")
            .body
            .contains(&id.to_string())
    );
    // Another department: not by URL, not in its inbox, not by posting an action.
    assert_eq!(stranger.get(&page).await.expect("get").status, 404);
    let inbox = stranger.get("/console/").await.expect("inbox");
    assert!(
        !inbox.body.contains(&id.to_string()),
        "not in another department's inbox"
    );
    let csrf = inbox.csrf().expect("csrf");
    let a = stranger
        .post(&act_url, &[("_csrf", &csrf), ("action", "sign")])
        .await
        .expect("post");
    assert_eq!(a.status, 404, "{}", a.body);
    let photo = stranger
        .get(&format!("/console/cases/{id}/photos/{}", "0".repeat(64)))
        .await
        .expect("photo");
    assert_eq!(photo.status, 404);
    assert_eq!(rig.status(id).await, Status::Dispatched, "nothing happened");
    // The holding department signs; an operator does no case work; a clerk no admin.
    let a = clerk
        .submit(&page, &act_url, &[("action", "sign")])
        .await
        .expect("sign");
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(rig.status(id).await, Status::InProgress);
    let mut op = rig.user("op", ConsoleRole::Operator, None).await;
    assert_eq!(op.get(&page).await.expect("get").status, 403);
    assert_eq!(op.get("/console/").await.expect("get").status, 403);
    assert_eq!(
        clerk.get("/console/devices").await.expect("get").status,
        403
    );
    assert_eq!(
        clerk
            .get("/console/archive?q=张")
            .await
            .expect("get")
            .status,
        403
    );
    assert_eq!(op.get("/console/devices").await.expect("get").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_this_sessions_csrf_token_is_refused() {
    let rig = rig(Config::default()).await;
    let (id, _, _) = rig.reported_case().await;
    let mut disp = rig.user("disp", ConsoleRole::Dispatcher, None).await;
    let page = format!("/console/cases/{id}");
    let act_url = format!("/console/cases/{id}/act");
    let a = disp
        .post(&act_url, &[("action", "register")])
        .await
        .expect("post");
    assert_eq!(a.status, 403, "no token: {}", a.body);
    let a = disp
        .post(&act_url, &[("_csrf", "forged"), ("action", "register")])
        .await
        .expect("post");
    assert_eq!(a.status, 403, "a wrong token");
    // Another session's token does not do either.
    let mut other = rig.user("other", ConsoleRole::Dispatcher, None).await;
    let theirs = other.get(&page).await.expect("page").csrf().expect("csrf");
    let a = disp
        .post(&act_url, &[("_csrf", &theirs), ("action", "register")])
        .await
        .expect("post");
    assert_eq!(a.status, 403, "another session's token");
    assert_eq!(
        rig.status(id).await,
        Status::Reported,
        "nothing was written"
    );
    // Sign-out needs the token too (no logging people out from another site).
    let a = disp.post("/console/logout", &[]).await.expect("logout");
    assert_eq!(a.status, 403);
    assert_eq!(
        disp.get("/console/").await.expect("inbox").status,
        200,
        "still signed in"
    );
    let a = disp
        .submit("/console/", "/console/logout", &[])
        .await
        .expect("logout");
    assert_eq!(a.status, 303);
    let a = disp.get("/console/").await.expect("inbox");
    assert_eq!(
        (a.status.as_u16(), a.location.as_deref()),
        (303, Some("/console/login"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_refused() {
    let mut config = Config::default();
    config.console.idle = Duration::from_millis(1500);
    let rig = rig(config).await;
    let mut disp = rig.user("disp", ConsoleRole::Dispatcher, None).await;
    assert_eq!(disp.get("/console/").await.expect("inbox").status, 200);
    let cookie = disp.cookie().map(str::to_owned);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let a = disp.get("/console/").await.expect("inbox");
    assert_eq!(a.status, 303);
    assert_eq!(a.location.as_deref(), Some("/console/login?expired=1"));
    // The old cookie stays dead (the session is gone, not only expired in the browser).
    let mut replay = ConsoleClient::new(&rig.server.url).expect("client");
    replay.set_cookie(cookie);
    assert_eq!(replay.get("/console/").await.expect("inbox").status, 303);
    // A disabled account's sessions end at once.
    let mut clerk = rig.user("clerk", ConsoleRole::Clerk, Some("D05")).await;
    assert_eq!(clerk.get("/console/").await.expect("inbox").status, 200);
    assert!(
        rig.server
            .storage
            .set_console_disabled("clerk", true)
            .await
            .expect("disable")
    );
    assert_eq!(clerk.get("/console/").await.expect("inbox").status, 303);
    let a = clerk
        .sign_in("clerk", TEST_PASSWORD)
        .await
        .expect("sign in");
    assert_eq!(a.status, 401, "a disabled account cannot sign in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_the_account() {
    let rig = rig(Config::default()).await;
    test_user(
        &rig.server.storage,
        "li",
        "李调度",
        ConsoleRole::Dispatcher,
        None,
        &[code(TOWN)],
    )
    .await
    .expect("user");
    let mut c = ConsoleClient::new(&rig.server.url).expect("client");
    for _ in 0..4 {
        assert_eq!(
            c.sign_in("li", "wrong password").await.expect("try").status,
            401
        );
    }
    // The fifth failure locks it; then even the right password is refused (with the same
    // answer as a wrong one, so the lock does not tell which logins exist).
    assert_eq!(
        c.sign_in("li", "wrong password").await.expect("try").status,
        401
    );
    let a = c.sign_in("li", TEST_PASSWORD).await.expect("try");
    assert_eq!(a.status, 401, "locked: {}", a.body);
    assert!(c.cookie().is_none(), "no session while locked");
    let account = rig
        .server
        .storage
        .console_user("li")
        .await
        .expect("user")
        .expect("exists");
    assert!(account.locked_until > now_ms(), "locked");
    // An unknown login gets the same answer as a wrong password.
    assert_eq!(
        c.sign_in("nobody", "wrong password")
            .await
            .expect("try")
            .status,
        401
    );
    let log = rig
        .server
        .storage
        .audit_log(Some("li"), 20)
        .await
        .expect("audit");
    assert_eq!(
        log.iter()
            .filter(|e| e.action == "sign_in" && e.outcome == "refused")
            .count(),
        6
    );
    assert!(
        log.iter().any(|e| e.detail == "locked"),
        "the audit log says why"
    );
    assert!(
        log.iter().all(|e| !e.addr.is_empty()),
        "each attempt names its address"
    );
    // A login no account could have is never looked up nor kept as typed.
    let long = "x".repeat(10_000);
    assert_eq!(c.sign_in(&long, "p").await.expect("try").status, 401);
    let all = rig.server.storage.audit_log(None, 50).await.expect("audit");
    assert!(
        all.iter()
            .all(|e| e.login.len() <= 64 && e.target.len() <= 64)
    );
    // The operator's reset clears the lock.
    let hash = gridsync_server::console::session::hash_password("新的密码-2026-12").expect("hash");
    assert!(
        rig.server
            .storage
            .set_console_password("li", &hash)
            .await
            .expect("reset")
    );
    assert_eq!(
        c.sign_in("li", TEST_PASSWORD).await.expect("try").status,
        401,
        "the old password is gone"
    );
    assert_eq!(
        c.sign_in("li", "新的密码-2026-12")
            .await
            .expect("try")
            .status,
        303
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marked_category_is_dispatched_automatically_after_registration() {
    let rig = rig(Config::default()).await;
    let mut disp = rig.user("disp", ConsoleRole::Dispatcher, None).await;
    let a = disp
        .submit(
            "/console/routes",
            "/console/routes",
            &[("subcategory", "0201"), ("on", "1")],
        )
        .await
        .expect("mark");
    assert_eq!(a.status, 303, "{}", a.body);
    // Registered in the console: dispatched at once, the rule on the event.
    let (id, _, _) = rig.reported_case().await;
    let page = format!("/console/cases/{id}");
    disp.submit(&page, &format!("{page}/act"), &[("action", "register")])
        .await
        .expect("register");
    assert_eq!(rig.status(id).await, Status::Dispatched);
    let case: Case = rig
        .server
        .storage
        .load(id)
        .await
        .expect("load")
        .expect("doc")
        .read()
        .expect("case");
    let dispatch = case
        .events
        .values()
        .find(|e| e.kind == "dispatch")
        .expect("dispatched");
    assert_eq!(dispatch.by, gridsync_server::routing::ROUTER_NAME);
    assert!(
        dispatch
            .data
            .get("rule")
            .is_some_and(|r| r.contains("0201") || r.contains("自动")),
        "{:?}",
        dispatch.data
    );
    assert_eq!(dispatch.data.get("lead"), Some(&lead_of_0201()));
    assert!(
        disp.get(&page)
            .await
            .expect("page")
            .body
            .contains("自动流转"),
        "the rule shows on the case"
    );
    // Registered on a dispatcher's phone: the server routes it when the merge lands.
    let (id2, _, _) = rig.reported_case().await;
    let (dphone, cd) = rig.phone("调度手机", Role::Dispatcher).await;
    cd.sync(&dphone, 20).await.expect("sync");
    let actor: Actor = dphone.actor().await.expect("actor");
    dphone
        .case_action(id2, &actor, Action::Register, "", now_ms(), |_, _| {
            Ok(BTreeMap::new())
        })
        .await
        .expect("register");
    cd.sync(&dphone, 20).await.expect("sync");
    let started = Instant::now();
    while rig.status(id2).await != Status::Dispatched {
        assert!(started.elapsed() < Duration::from_secs(10), "not routed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An unmarked category waits for a dispatcher.
    disp.submit(
        "/console/routes",
        "/console/routes",
        &[("subcategory", "0201"), ("on", "0")],
    )
    .await
    .expect("unmark");
    let (id3, _, _) = rig.reported_case().await;
    let page3 = format!("/console/cases/{id3}");
    disp.submit(&page3, &format!("{page3}/act"), &[("action", "register")])
        .await
        .expect("register");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.status(id3).await, Status::Registered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_cannot_enroll_as_a_console_person() {
    let rig = rig(Config::default()).await;
    test_user(
        &rig.server.storage,
        "disp",
        "调度",
        ConsoleRole::Dispatcher,
        None,
        &[code(TOWN)],
    )
    .await
    .expect("user");
    let device = rig
        .server
        .storage
        .console_user("disp")
        .await
        .expect("user")
        .expect("exists")
        .device_id
        .expect("replica");
    let code = rig
        .server
        .enrollment("冒充", Role::Dispatcher, &[code(TOWN)])
        .await
        .expect("code");
    let refused = rig
        .server
        .storage
        .redeem_enrollment(
            &gridsync_server::auth::secret_hash(&gridsync_server::auth::normalize_code(&code)),
            device,
            "token-hash",
        )
        .await;
    assert!(
        refused.is_err(),
        "the console person's replica id is not a phone's to claim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_settles_a_field_two_phones_wrote_at_once() {
    let rig = rig(Config::default()).await;
    let (id, (a, ca), _dispatcher_phone) = rig.conflicted_address().await;
    let doc = rig
        .server
        .storage
        .load(id)
        .await
        .expect("load")
        .expect("doc");
    let conflict = doc
        .conflicts()
        .into_iter()
        .find(|c| c.path == "address")
        .expect("a conflict");
    let mut disp = rig.user("disp", ConsoleRole::Dispatcher, None).await;
    let page = format!("/console/cases/{id}");
    let shown = disp.get(&page).await.expect("page");
    assert!(shown.body.contains("待裁决的冲突") && shown.body.contains("城南路 11 号"));
    let pick = conflict
        .values
        .iter()
        .position(|v| v == "城南路 11 号")
        .expect("b's value is one of them")
        .to_string();
    let a2 = disp
        .submit(
            &page,
            &format!("{page}/resolve"),
            &[("path", "address"), ("choice", &pick)],
        )
        .await
        .expect("resolve");
    assert_eq!(a2.status, 303, "{}", a2.body);
    let doc = rig
        .server
        .storage
        .load(id)
        .await
        .expect("load")
        .expect("doc");
    assert!(
        doc.conflicts().iter().all(|c| c.path != "address"),
        "settled"
    );
    assert_eq!(doc.read::<Case>().expect("case").address, "城南路 11 号");
    // The phones get the settled value; the audit log says who chose it.
    ca.sync(&a, 20).await.expect("sync");
    assert_eq!(
        a.read::<Case>(id).await.expect("case").address,
        "城南路 11 号"
    );
    let log = rig
        .server
        .storage
        .audit_log(Some("disp"), 10)
        .await
        .expect("audit");
    assert!(
        log.iter()
            .any(|e| e.action == "case.resolve" && e.outcome == "ok")
    );
}

/// The same settlement from a dispatcher's phone: Automerge writes it as a delete of the
/// losing value, which the server judges as a change of the field (it keeps a value), not
/// as removing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_settled_on_a_phone_is_taken() {
    let rig = rig(Config::default()).await;
    let (id, (_a, _ca), (b, cb)) = rig.conflicted_address().await;
    cb.sync(&b, 20).await.expect("sync");
    assert_eq!(b.load(id).await.expect("doc").conflicts().len(), 1);
    for value in ["城南路 9 号东门", "城南路 11 号"] {
        // Whichever value is chosen (the one shown or the other).
        if b.load(id).await.expect("doc").conflicts().is_empty() {
            break;
        }
        b.resolve::<Case>(id, "address", serde_json::json!(value))
            .await
            .expect("resolve");
        let report = cb.sync(&b, 20).await.expect("sync");
        assert!(report.rejected.is_empty(), "{report:?}");
        let stored = rig
            .server
            .storage
            .load(id)
            .await
            .expect("load")
            .expect("doc");
        assert!(stored.conflicts().is_empty());
        assert_eq!(stored.read::<Case>().expect("case").address, value);
    }
}
