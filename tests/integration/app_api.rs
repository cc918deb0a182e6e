//! The app API (`gridsync_core::app::Replica`, what the phone app and `gridsync-field` call)
//! against a real server: indicators for dispatcher and leader devices, refused for workers,
//! and the devices the operator then lists.

use gridsync_core::app::{ActionRequest, AppError, NewCase, Replica, SyncOptions};
use gridsync_server::auth::Role;

use crate::harness::{GRID_A, TOWN, TestServer};

async fn phone(
    server: &TestServer,
    dir: &std::path::Path,
    name: &str,
    role: Role,
    scope: &str,
) -> Replica {
    let app = Replica::open(&dir.join(format!("{name}.db")), Default::default())
        .await
        .expect("open");
    app.set_worker(name, None, None).await.expect("worker");
    let code = server.enrollment(name, role, &[scope]).await;
    app.enroll(&server.url, &code).await.expect("enroll");
    app
}

#[tokio::test]
async fn indicators_reach_a_dispatchers_terminal_and_not_a_workers() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = phone(&server, dir.path(), "周网格", Role::Worker, GRID_A).await;
    let dispatcher = phone(&server, dir.path(), "调度中心", Role::Dispatcher, TOWN).await;
    let case = worker
        .report_case(NewCase {
            grid: GRID_A.into(),
            title: "楼道灯损坏".into(),
            subcategory: "0102".into(),
            address: "3 幢".into(),
            description: "楼道灯不亮".into(),
            ..NewCase::default()
        })
        .await
        .expect("report");
    worker.sync(SyncOptions::default()).await.expect("sync");
    dispatcher.sync(SyncOptions::default()).await.expect("sync");
    dispatcher
        .act(
            case,
            ActionRequest {
                action: "立案".into(),
                ..ActionRequest::default()
            },
        )
        .await
        .expect("register");
    dispatcher.sync(SyncOptions::default()).await.expect("sync");

    // A period around now, whatever the machine's date.
    let (day, next) = ("2000-01-01", "2100-01-01".to_owned());
    let figures = dispatcher
        .indicators(day, &next, "grid")
        .await
        .expect("indicators");
    assert_eq!(figures["total"]["cases"], 1, "{figures}");
    assert_eq!(figures["groups"][0]["key"], GRID_A, "{figures}");
    // A worker's device is refused before anything is sent, with the reason.
    let refused = worker.indicators(day, &next, "grid").await;
    assert!(
        matches!(&refused, Err(AppError::NotAllowed(m)) if m.contains("dispatcher and leader")),
        "{refused:?}"
    );
    // A bad date names the field.
    let bad = dispatcher.indicators("2026-13-01", &next, "grid").await;
    assert!(
        matches!(&bad, Err(AppError::Invalid { field, .. }) if field == "from"),
        "{bad:?}"
    );

    // The operator lists both devices, for scripts as JSON.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gridsync-test-server"))
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["device", "list", "--json"])
        .output()
        .expect("run gridsync-server");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut names: Vec<(String, String)> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or_default().to_owned(),
                d["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("周网格".to_owned(), "worker".to_owned()),
            ("调度中心".to_owned(), "dispatcher".to_owned())
        ]
    );
}
