//! The console end to end in headless Chromium (through chromedriver): a dispatcher signs in
//! and dispatches a case a phone reported, the department sees it, signs it, uploads the
//! after-photo and reports it handled, the phone gets it back and closes it after the
//! on-site check, and the dashboard's indicator moves. Screenshots of the inbox, the case
//! detail and the dashboard (and the wall screen at 1920×1080) are saved under
//! `target/console-screenshots/`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gridsync_core::clock::now_ms;
use gridsync_core::records::{Case, CaseSource, PhotoStage, Urgency};
use gridsync_core::workflow::{Action, Reference, Status, act};
use gridsync_server::Storage;
use gridsync_server::auth::Role;
use gridsync_server::storage::console::ConsoleRole;
use gridsync_tests::LocalServer;
use gridsync_tests::console::{TEST_PASSWORD, test_user};
use gridsync_tests::webdriver::Browser;

use crate::harness::{GRID_A, TOWN, code, quick_retry};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

/// A camera-like JPEG to upload.
fn photo_file(dir: &std::path::Path) -> PathBuf {
    let img = image::RgbImage::from_fn(1200, 900, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let path = dir.join("after.jpg");
    img.save(&path).expect("jpeg");
    path
}

async fn sign_in(b: &Browser, base: &str, login: &str) {
    b.goto(&format!("{base}/console/login"))
        .await
        .expect("login page");
    b.fill("input[name=login]", login).await.expect("login");
    b.fill("input[name=password]", TEST_PASSWORD)
        .await
        .expect("password");
    b.click("form button[type=submit]").await.expect("submit");
    let started = Instant::now();
    while !b.url().await.expect("url").ends_with("/console/") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{login} did not get in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sign_out(b: &Browser) {
    b.click("form.logout button").await.expect("sign out");
    let started = Instant::now();
    while !b.url().await.expect("url").contains("/console/login") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not signed out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks the button of the action form `action` and waits for the page saying it was done.
async fn act_in_browser(b: &Browser, action: &str) {
    b.click(&format!(
        "form[data-action=\"{action}\"] button[type=submit]"
    ))
    .await
    .unwrap_or_else(|e| panic!("{action}: {e}"));
    let started = Instant::now();
    while !b
        .url()
        .await
        .expect("url")
        .contains(&format!("done={action}"))
    {
        let src = b.source().await.unwrap_or_default();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{action} not done: {}",
            &src[..src.len().min(2000)]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_goes_round_the_loop_through_the_console_in_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = LocalServer::start(&dir.path().join("server"), Default::default())
        .await
        .expect("server");
    let base = server.url.clone();
    let lead = Reference::builtin()
        .category("0201")
        .expect("0201")
        .lead
        .clone();
    test_user(
        &server.storage,
        "wang",
        "王调度",
        ConsoleRole::Dispatcher,
        None,
        &[code(TOWN)],
    )
    .await
    .expect("dispatcher");
    test_user(
        &server.storage,
        "li",
        "李办事员",
        ConsoleRole::Clerk,
        Some(&lead),
        &[code(TOWN)],
    )
    .await
    .expect("clerk");
    // The town's dispatcher has drawn the grid (its boundary places the case on the map).
    let (dphone, cd) = server
        .phone(
            &dir.path().join("dispatcher.db"),
            "调度手机",
            Role::Dispatcher,
            &[code(TOWN)],
            quick_retry(),
        )
        .await
        .expect("phone");
    let grid = gridsync_core::records::Grid {
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
    dphone.create(code(GRID_A), &grid).await.expect("grid");
    cd.sync(&dphone, 20).await.expect("sync");
    // The grid worker reports a case on the phone.
    let (worker, cw) = server
        .phone(
            &dir.path().join("worker.db"),
            "周网格",
            Role::Worker,
            &[code(GRID_A)],
            quick_retry(),
        )
        .await
        .expect("phone");
    let actor = worker.actor().await.expect("actor");
    let now = now_ms();
    let mut c = Case {
        title: "楼道堆放杂物".into(),
        source: CaseSource::Inspection,
        category: "02".into(),
        subcategory: "0201".into(),
        location: Some(gridsync_core::records::Gps {
            lat: 30.2551,
            lon: 120.1649,
            acc: Some(8.0),
        }),
        address: "城南路 9 号 2 单元".into(),
        description: "楼道堆放杂物，堵塞消防通道".into(),
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

    let b = Browser::start(1366, 768).await.expect("headless chromium");
    // The dispatcher: inbox, case, register, dispatch.
    sign_in(&b, &base, "wang").await;
    let link = format!("a[href=\"/console/cases/{id}\"]");
    b.find(&link)
        .await
        .expect("the phone's case is in the inbox");
    b.screenshot(&shots().join("inbox.png"))
        .await
        .expect("screenshot");
    b.goto(&format!("{base}/console/dashboard?by=department"))
        .await
        .expect("dashboard");
    let closure_before = b.text("[data-kpi=closure]").await.expect("kpi");
    let cases_before = b.text("[data-kpi=cases]").await.expect("kpi");
    b.goto(&format!("{base}/console/")).await.expect("inbox");
    b.click(&link).await.expect("open the case");
    act_in_browser(&b, "register").await;
    act_in_browser(&b, "dispatch").await;
    assert!(b.source().await.expect("page").contains("已派遣"));
    // The map: the grid's boundary and the case's place inside it.
    assert_eq!(b.count("svg.map polygon").await.expect("map"), 1);
    assert_eq!(b.count("svg.map circle").await.expect("map"), 1);
    b.screenshot(&shots().join("case_detail.png"))
        .await
        .expect("screenshot");
    sign_out(&b).await;

    // The department: sees it, signs, uploads the after-photo, reports it handled.
    sign_in(&b, &base, "li").await;
    b.find(&link)
        .await
        .expect("the case is in the department's inbox");
    b.click(&link).await.expect("open");
    act_in_browser(&b, "sign").await;
    let photo = photo_file(dir.path());
    b.fill("form.upload input[type=file]", &photo.to_string_lossy())
        .await
        .expect("choose the photo");
    b.click("form.upload button[type=submit]")
        .await
        .expect("upload");
    let started = Instant::now();
    while !b.url().await.expect("url").contains("done=photo") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "photo not uploaded: {}",
            b.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        b.count(".photos img").await.expect("thumbnails") >= 1,
        "the thumbnail shows"
    );
    b.fill(
        "form[data-action=\"handle\"] textarea[name=note]",
        "已清理楼道杂物，通道畅通",
    )
    .await
    .expect("note");
    act_in_browser(&b, "handle").await;
    sign_out(&b).await;

    // The phone gets it back with the department's result and photo, and closes it after
    // the on-site check.
    cw.sync(&worker, 20).await.expect("sync");
    let on_phone: Case = worker.read(id).await.expect("case");
    assert_eq!(on_phone.state().status, Status::Handled);
    let handled = on_phone
        .events
        .values()
        .find(|e| e.kind == "handle")
        .expect("handle event");
    assert_eq!(handled.by, "李办事员");
    assert!(
        on_phone
            .photos
            .values()
            .any(|p| p.stage == PhotoStage::After)
    );
    for action in [Action::StartCheck, Action::PassCheck] {
        worker
            .case_action(
                id,
                &actor,
                action,
                "现场核查，已整改",
                now_ms(),
                |_, _| Ok(BTreeMap::new()),
            )
            .await
            .unwrap_or_else(|e| panic!("{action:?}: {e}"));
    }
    cw.sync(&worker, 20).await.expect("sync");
    let doc = server
        .storage
        .load(id)
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(
        doc.read::<Case>().expect("case").state().status,
        Status::Closed
    );

    // The dispatcher sees it closed and the indicator moved.
    sign_in(&b, &base, "wang").await;
    b.goto(&format!("{base}/console/cases/{id}"))
        .await
        .expect("case");
    assert!(b.source().await.expect("page").contains("已结案"));
    b.goto(&format!("{base}/console/dashboard?by=department"))
        .await
        .expect("dashboard");
    let closure_after = b.text("[data-kpi=closure]").await.expect("kpi");
    assert_eq!(b.text("[data-kpi=cases]").await.expect("kpi"), cases_before);
    assert_ne!(closure_after, closure_before, "the closure rate moved");
    assert_eq!(closure_after, "100.0%");
    b.screenshot(&shots().join("dashboard.png"))
        .await
        .expect("screenshot");
    drop(b);
    // The wall screen at 1920×1080 refreshes itself.
    let wall = Browser::start(1920, 1080).await.expect("chromium");
    sign_in(&wall, &base, "wang").await;
    wall.goto(&format!("{base}/console/dashboard?wall=1&by=department"))
        .await
        .expect("wall");
    let src = wall.source().await.expect("page");
    assert!(
        src.contains("http-equiv=\"refresh\""),
        "the wall screen refreshes itself"
    );
    wall.screenshot(&shots().join("wall.png"))
        .await
        .expect("screenshot");
    // Every page fits the width of a 1366 screen: nothing scrolls sideways.
    let narrow = Browser::start(1366, 768).await.expect("chromium");
    sign_in(&narrow, &base, "wang").await;
    for page in [
        "/console/",
        &format!("/console/cases/{id}"),
        "/console/dashboard",
        "/console/routes",
        "/console/archive?q=周",
    ] {
        narrow.goto(&format!("{base}{page}")).await.expect("page");
        let wide = narrow
            .script("return document.documentElement.scrollWidth > window.innerWidth + 1;")
            .await
            .expect("script");
        assert_eq!(
            wide,
            serde_json::Value::Bool(false),
            "{page} scrolls sideways at 1366"
        );
    }
}
