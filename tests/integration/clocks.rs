//! Wrong phone clocks: each sync carries the phone's clock; the server records the device's
//! skew and flags entry times no honest clock gives (in the future of their receipt, far in the
//! past, from a clock known to be off, or before an event their author had seen). Flags are
//! shown to the town centre, and the indicators count flagged cases (and time them by receipt:
//! `indicators`' unit tests).

use gridsync_core::clock::now_ms;
use gridsync_core::records::{Household, Residence};
use gridsync_core::sync::SyncSession;
use gridsync_core::workflow::Action;
use gridsync_proto::{AckStatus, DocId, RecordId};
use gridsync_server::Storage;
use gridsync_server::auth::Role;
use serde_json::Value;

use crate::harness::{GRID_A, Phone, TOWN, TestServer, code, sample_case, sample_visit};

const DAY: i64 = 86_400_000;

/// Syncs `phone` once as if its clock read `clock`, and returns the acks.
async fn sync_with_clock(server: &TestServer, phone: &Phone, clock: i64) -> Vec<AckStatus> {
    let (mut req, _) = SyncSession::new(phone.store.clone())
        .build_request()
        .await
        .expect("request");
    req.clock = clock;
    let resp = phone.post_sync(server, &req).await;
    resp.acks.into_iter().map(|a| a.status).collect()
}

async fn add_visit(phone: &Phone, household: DocId, at: i64) -> RecordId {
    let id = RecordId::new();
    phone
        .store
        .update::<Household>(household, |h| {
            let mut v = sample_visit("周网格", 1);
            v.at = at;
            h.visits.insert(id, v);
        })
        .await
        .expect("visit");
    id
}

/// GETs `path` as `phone`; returns the status and the JSON answer.
async fn get_json(server: &TestServer, phone: &Phone, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", server.url))
        .bearer_auth(phone.token().await)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn times_from_a_wrong_clock_are_flagged_and_the_skew_recorded() {
    let server = TestServer::start().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let d = Phone::enroll(&server, "调度员", Role::Dispatcher, &[TOWN]).await;
    let h = a
        .store
        .create(code(GRID_A), &Household::new("1 号", Residence::Permanent))
        .await
        .expect("household");
    a.sync().await;
    let now = now_ms();
    // A phone whose clock is three days behind records a visit by its own clock.
    let behind = add_visit(&a, h, now - 3 * DAY).await;
    let acks = sync_with_clock(&server, &a, now - 3 * DAY).await;
    assert!(
        acks.iter().all(|s| matches!(s, AckStatus::Stored { .. })),
        "flagged, never refused: {acks:?}"
    );
    // A visit stamped tomorrow, from a phone whose clock is right.
    let ahead = add_visit(&a, h, now + DAY).await;
    sync_with_clock(&server, &a, now_ms()).await;
    // A visit recorded an hour ago on a right clock is not flagged.
    let honest = add_visit(&a, h, now - 3_600_000).await;
    sync_with_clock(&server, &a, now_ms()).await;

    let flags = server.storage.flagged_times().await.expect("flags");
    let reason = |visit: RecordId| {
        flags
            .iter()
            .find(|f| f.path == format!("visits.{visit}.at"))
            .map(|f| (f.reason.as_str(), f.skew_ms))
    };
    let (why, skew) = reason(behind).expect("the visit from the slow clock is flagged");
    assert_eq!(why, "clock_off");
    let skew = skew.expect("skew kept");
    assert!((skew + 3 * DAY).abs() < 60_000, "skew {skew}");
    assert_eq!(reason(ahead).map(|r| r.0), Some("future"));
    assert_eq!(reason(honest), None);
    let device = server
        .storage
        .devices()
        .await
        .expect("devices")
        .into_iter()
        .find(|x| x.device == a.store.device().to_string())
        .expect("device");
    assert!(
        device.skew_ms.is_some_and(|s| s.abs() < 60_000),
        "the last sync's skew"
    );
    // The town centre sees them; a worker may not ask.
    let (status, shown) = get_json(&server, &d, "/v1/time-flags").await;
    assert_eq!(status, 200);
    assert_eq!(shown["flags"].as_array().map(Vec::len), Some(2), "{shown}");
    let (status, _) = get_json(&server, &a, "/v1/time-flags").await;
    assert_eq!(status, 403, "a worker may not ask");
    // The worker corrects the visit stamped tomorrow: judged again, its flag goes.
    a.store
        .update::<Household>(h, |hh| hh.visits.get_mut(&ahead).expect("visit").at = now)
        .await
        .expect("correct the time");
    sync_with_clock(&server, &a, now_ms()).await;
    let flags = server.storage.flagged_times().await.expect("flags");
    assert!(
        !flags.iter().any(|f| f.path == format!("visits.{ahead}.at")),
        "{flags:?}"
    );
    assert!(
        flags
            .iter()
            .any(|f| f.path == format!("visits.{behind}.at"))
    );
}

#[tokio::test]
async fn an_event_stamped_before_its_cause_is_flagged_on_the_phone_the_server_and_in_the_indicators()
 {
    let server = TestServer::start().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let d = Phone::enroll(&server, "调度员", Role::Dispatcher, &[TOWN]).await;
    let now = now_ms();
    let mut case = sample_case();
    case.reported_at = now;
    let id = a.store.create(code(GRID_A), &case).await.expect("case");
    let actor = a.store.actor().await.expect("actor");
    a.store
        .case_action(id, &actor, Action::Report, "", now, |_, _| {
            Ok(Default::default())
        })
        .await
        .expect("report");
    // The phone's clock jumps two days back before the worker takes the case on.
    a.store
        .case_action(id, &actor, Action::SelfHandle, "", now - 2 * DAY, |_, _| {
            Ok(Default::default())
        })
        .await
        .expect("self-handle");
    let state = a
        .store
        .read::<gridsync_core::records::Case>(id)
        .await
        .expect("case")
        .state();
    assert_eq!(state.time_flags.len(), 1, "the phone shows it: {state:?}");
    assert_eq!(state.time_flags[0].reason, "before_its_cause");
    a.sync().await;
    let flags = server.storage.flagged_times().await.expect("flags");
    assert!(
        flags
            .iter()
            .any(|f| f.doc_id == id.to_string() && f.reason == "before_its_cause"),
        "{flags:?}"
    );
    let (_, ind) = get_json(
        &server,
        &d,
        &format!("/v1/indicators?from={}&to={}", now - 10 * DAY, now + DAY),
    )
    .await;
    assert_eq!(ind["total"]["flagged_time"], 1, "{ind}");
}
