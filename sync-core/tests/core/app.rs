//! The app API (`gridsync_core::app::Replica`) on one phone, offline: the checks it makes
//! before anything is written, and the events an app listens to.

use std::sync::{Arc, Mutex};

use gridsync_core::app::{
    ActionRequest, AppError, Listener, NewCase, NewHousehold, NewResident, PersonFields, Replica,
    ResidentEdit, SyncProgress,
};
use gridsync_proto::DocId;

const GRID: &str = "33010200101001002";

async fn open(dir: &tempfile::TempDir) -> Replica {
    let app = Replica::open(&dir.path().join("phone.db"), Default::default())
        .await
        .expect("open");
    app.set_worker("周网格", None, None).await.expect("worker");
    app
}

fn member(name: &str, relation: &str) -> NewResident {
    NewResident {
        name: name.into(),
        relation: relation.into(),
        person: PersonFields::default(),
    }
}

async fn act(app: &Replica, case: DocId, action: &str, note: &str) -> Result<(), AppError> {
    app.act(
        case,
        ActionRequest {
            action: action.into(),
            note: note.into(),
            ..ActionRequest::default()
        },
    )
    .await
    .map(|_| ())
}

#[tokio::test]
async fn a_household_has_one_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = open(&dir).await;
    let h = app
        .add_household(NewHousehold {
            grid: GRID.into(),
            address: "城南 1 号".into(),
            ..NewHousehold::default()
        })
        .await
        .expect("household");
    let head = app
        .add_resident(h, member("王建国", "户主"))
        .await
        .expect("head");
    let refused = app.add_resident(h, member("李芳", "户主")).await;
    assert!(
        matches!(&refused, Err(AppError::Invalid { field, problem }) if field == "relation" && problem.contains("王建国")),
        "{refused:?}"
    );
    let wife = app
        .add_resident(h, member("李芳", "妻子"))
        .await
        .expect("spouse");
    let refused = app
        .edit_resident(
            h,
            wife,
            ResidentEdit {
                relation: Some("户主".into()),
                ..ResidentEdit::default()
            },
        )
        .await;
    assert!(
        matches!(refused, Err(AppError::Invalid { .. })),
        "{refused:?}"
    );
    assert_eq!(app.household(h).await.expect("view").members.len(), 2);
    // When the head dies, the spouse becomes head.
    app.edit_resident(
        h,
        head,
        ResidentEdit {
            deceased: Some("2026-03-01".into()),
            ..ResidentEdit::default()
        },
    )
    .await
    .expect("deceased");
    app.edit_resident(
        h,
        wife,
        ResidentEdit {
            relation: Some("户主".into()),
            ..ResidentEdit::default()
        },
    )
    .await
    .expect("the new head");
}

#[tokio::test]
async fn an_approval_grants_the_days_the_department_asked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = open(&dir).await;
    let case = app
        .report_case(NewCase {
            grid: GRID.into(),
            title: "占道".into(),
            subcategory: "0201".into(),
            address: "城南路".into(),
            description: "纸箱".into(),
            ..NewCase::default()
        })
        .await
        .expect("report");
    // Merge is checked before anything is written.
    for (into, why) in [(case, "itself"), (DocId::new(), "no case")] {
        let refused = app
            .act(
                case,
                ActionRequest {
                    action: "merge".into(),
                    into: Some(into),
                    ..ActionRequest::default()
                },
            )
            .await;
        assert!(
            matches!(&refused, Err(AppError::Invalid { field, problem }) if field == "into" && problem.contains(why)),
            "{refused:?}"
        );
    }
    app.set_worker("调度员", Some("dispatcher"), None)
        .await
        .expect("dispatcher");
    act(&app, case, "register", "").await.expect("register");
    act(&app, case, "dispatch", "").await.expect("dispatch");
    app.set_worker("城管王", Some("department"), Some("D01"))
        .await
        .expect("clerk");
    // A value an action does not use is not judged.
    app.act(
        case,
        ActionRequest {
            action: "sign".into(),
            extra_days: Some(0),
            ..ActionRequest::default()
        },
    )
    .await
    .expect("sign");
    app.act(
        case,
        ActionRequest {
            action: "request_extension".into(),
            note: "需协调产权单位".into(),
            extra_days: Some(5),
            ..ActionRequest::default()
        },
    )
    .await
    .expect("request");
    app.set_worker("调度员", Some("dispatcher"), None)
        .await
        .expect("dispatcher");
    assert!(
        app.allowed_actions(case)
            .await
            .expect("actions")
            .iter()
            .any(|a| a.code == "approve_extension")
    );
    act(&app, case, "approve_extension", "")
        .await
        .expect("approve");
    let view = app.case(case).await.expect("case");
    let approval = view
        .case
        .events
        .values()
        .find(|e| e.kind == "approve_extension")
        .expect("approval event");
    assert_eq!(
        approval.data.get("extra_ms").map(String::as_str),
        Some((5 * 24 * 3_600_000_i64).to_string().as_str())
    );
    assert_eq!(view.extensions, 1);
}

#[derive(Default)]
struct Heard {
    changed: Mutex<Vec<DocId>>,
}

impl Listener for Heard {
    fn progress(&self, _: &SyncProgress) {}
    fn changed(&self, docs: &[DocId]) {
        if let Ok(mut c) = self.changed.lock() {
            c.extend_from_slice(docs);
        }
    }
}

#[tokio::test]
async fn a_local_write_tells_the_listener_and_a_refused_one_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = open(&dir).await;
    let heard = Arc::new(Heard::default());
    app.set_listener(Some(heard.clone()));
    let h = app
        .add_household(NewHousehold {
            grid: GRID.into(),
            address: "城南 2 号".into(),
            ..NewHousehold::default()
        })
        .await
        .expect("household");
    let bad = app
        .add_resident(
            h,
            NewResident {
                person: PersonFields {
                    id_number: Some("110105194912310021".into()),
                    ..PersonFields::default()
                },
                ..member("王小明", "子")
            },
        )
        .await;
    assert!(
        matches!(bad, Err(AppError::Invalid { ref field, .. }) if field == "id_number"),
        "{bad:?}"
    );
    assert_eq!(*heard.changed.lock().expect("lock"), vec![h]);
}
