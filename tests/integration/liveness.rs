//! No phone ever stops syncing: a backlog larger than any request drains in slices, refused
//! documents are set aside instead of starving newer work, and a pulled document this build
//! cannot read is quarantined while the rest of the pull goes on.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue};
use gridsync_core::records::{Household, Inspection, Residence};
use gridsync_core::{Document, Store, StoreOptions};
use gridsync_proto::{DocId, DocType, GridCode};
use gridsync_server::Storage;
use gridsync_server::auth::Role;
use serde_json::Value;

use crate::harness::{GRID_A, GRID_B, Phone, TestServer, code, sample_case, sample_visit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_patrol_recorded_offline_syncs_completely() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let b = Phone::enroll(&server, "吴网格", Role::Worker, &[GRID_A]).await;
    let mut doc =
        gridsync_tests::long_patrol(a.store.device(), code(GRID_A), POINTS).expect("patrol");
    a.store
        .merge_bytes(&doc.save())
        .await
        .expect("store patrol");
    let id = doc.id();
    assert_eq!(doc.changes_since(&[]).len(), POINTS + 1);

    // One sync drains it in slices, each inside the wire limits.
    let report = a.sync().await;
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert!(
        report.round_trips > POINTS / gridsync_core::sync::MAX_PUSH_CHANGES_PER_DOC,
        "{POINTS} changes went in {} round trips: they cannot have been sliced",
        report.round_trips
    );
    assert_eq!(a.store.unsynced_count().await.expect("unsynced"), 0);
    let on_server = server
        .storage
        .load(id)
        .await
        .expect("load")
        .expect("patrol");
    let track_len = on_server.record_json()["track"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert_eq!(track_len, POINTS);
    // And another phone receives all of it, in pages.
    b.sync().await;
    let copy: Inspection = b.store.read(id).await.expect("b has the patrol");
    assert_eq!(copy.track.len(), POINTS);
    assert_eq!(
        copy.track[POINTS - 1].at,
        1_760_000_000_000 + POINTS as i64 - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_refused_documents_do_not_hold_back_one_new_visit() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    // 600 households recorded in a grid this phone is not enrolled for (its scope was moved):
    // all older than the work that follows, so they sort first.
    let stray: Vec<Household> = (0..600)
        .map(|i| Household::new(format!("{i} 号"), Residence::Permanent))
        .collect();
    a.store
        .create_many(code(GRID_B), &stray)
        .await
        .expect("stray households");
    let first = a.sync().await;
    assert_eq!(first.rejected.len(), 600);
    assert!(first.rejected.iter().all(|(_, c, _)| c == "out_of_scope"));

    // New work after that: a household of its own grid and a visit to it.
    let h = a
        .store
        .create(
            code(GRID_A),
            &Household::new("城南 1 幢", Residence::Permanent),
        )
        .await
        .expect("household");
    let v = gridsync_proto::RecordId::new();
    a.store
        .update::<Household>(h, |x| {
            x.visits.insert(v, sample_visit("周网格", 1));
        })
        .await
        .expect("visit");
    let second = a.sync().await;
    assert!(
        second.rejected.is_empty(),
        "set-aside documents were offered again before their retry time"
    );
    let (json, _) = server
        .record(h)
        .await
        .expect("the new household reached the server");
    assert!(json["visits"].get(v.to_string()).is_some(), "{json}");

    // The refused ones are kept, shown with their reason and a retry time, and still dirty.
    let aside = a.store.set_aside().await.expect("set aside");
    assert_eq!(aside.len(), 600);
    assert!(
        aside.iter().all(|r| r.reason.starts_with("out_of_scope")
            && r.attempts == 1
            && r.retry_at.is_some())
    );
    assert_eq!(a.store.unsynced_count().await.expect("unsynced"), 600);
    // A person can ask for them to be tried again now; the server refuses again, backoff grows.
    a.store.retry_set_aside().await.expect("retry");
    let third = a.sync().await;
    assert_eq!(third.rejected.len(), 600);
    let aside = a.store.set_aside().await.expect("set aside");
    assert!(aside.iter().all(|r| r.attempts == 2));
    // Editing one of them offers it at the next sync (the edit may be the fix).
    let one = aside[0].doc;
    a.store
        .update::<Household>(one, |x| x.address = "改过的地址".into())
        .await
        .expect("edit");
    let fourth = a.sync().await;
    assert_eq!(
        fourth
            .rejected
            .iter()
            .map(|(d, _, _)| d.clone())
            .collect::<Vec<_>>(),
        vec![one.to_string()]
    );
}

/// Writes JSON into an Automerge map (scalars, maps and lists), for building a document as a
/// newer build would.
fn put_json(am: &mut AutoCommit, obj: &automerge::ObjId, key: &str, v: &Value) {
    match v {
        Value::Object(m) => {
            let child = am.put_object(obj, key, ObjType::Map).expect("map");
            for (k, x) in m {
                put_json(am, &child, k, x);
            }
        }
        Value::Array(items) => {
            let child = am.put_object(obj, key, ObjType::List).expect("list");
            for (i, x) in items.iter().enumerate() {
                match x {
                    Value::Object(_) | Value::Array(_) => {
                        panic!("nested containers in lists are not needed here")
                    }
                    _ => am.insert(&child, i, scalar(x)).expect("item"),
                }
            }
        }
        other => am.put(obj, key, scalar(other)).expect("scalar"),
    }
}

fn scalar(v: &Value) -> ScalarValue {
    match v {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::Number(n) if n.is_i64() => ScalarValue::Int(n.as_i64().unwrap_or(0)),
        Value::Number(n) => ScalarValue::F64(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => ScalarValue::Str(s.as_str().into()),
        other => panic!("not a scalar: {other}"),
    }
}

/// A case document written by a build one schema ahead of this one.
pub(crate) fn future_case(creator: gridsync_proto::DeviceId, scope: &GridCode) -> Document {
    let current =
        Document::create(DocId::new(), scope.clone(), creator, &sample_case()).expect("case");
    let mut am = AutoCommit::new().with_actor(gridsync_core::document::actor_for(creator));
    let h = am.put_object(ROOT, "header", ObjType::Map).expect("header");
    am.put(&h, "id", current.id().to_string()).expect("id");
    am.put(&h, "type", DocType::Case.as_str()).expect("type");
    am.put(&h, "scope", scope.as_str()).expect("scope");
    am.put(&h, "creator", creator.to_string()).expect("creator");
    am.put(
        &h,
        "schema",
        i64::from(gridsync_core::document::SCHEMA_VERSION) + 1,
    )
    .expect("schema");
    put_json(&mut am, &ROOT, "record", &current.record_json());
    am.commit();
    Document::from_automerge_upto(am, gridsync_core::document::SCHEMA_VERSION + 1)
        .expect("a newer build reads it")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_from_a_newer_schema_does_not_stop_the_pull_and_is_read_after_upgrade() {
    let server = TestServer::start_upgraded().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old-phone.db");
    let old = Store::open(&path).await.expect("store");
    let client = gridsync_core::client::SyncClient::new(&server.url, crate::harness::quick_retry())
        .expect("client");
    let enroll_code = server.enrollment("周网格", Role::Worker, &[GRID_A]).await;
    client.enroll(&old, &enroll_code).await.expect("enroll");
    let b = Phone::enroll(&server, "吴网格", Role::Worker, &[GRID_A]).await;

    // Before and after the newer document, ordinary work by another phone.
    let h1 = b
        .store
        .create(code(GRID_A), &Household::new("1 号", Residence::Permanent))
        .await
        .expect("h1");
    b.sync().await;
    // During a rolling upgrade the server (already upgraded) stores a case of the next schema.
    let intake = server
        .storage
        .service_device(gridsync_server::Service::Intake)
        .await
        .expect("intake device");
    let newer = future_case(intake, &code(GRID_A));
    let case_id = newer.id();
    server
        .storage
        .create_intake_case("hotline12345", "F-1", newer)
        .await
        .expect("store newer case");
    let h2 = b
        .store
        .create(code(GRID_A), &Household::new("2 号", Residence::Permanent))
        .await
        .expect("h2");
    b.sync().await;

    let report = client.sync(&old, 20).await.expect("the pull goes on");
    assert_eq!(
        report
            .quarantined
            .iter()
            .map(|(d, _)| d.clone())
            .collect::<Vec<_>>(),
        vec![case_id.to_string()]
    );
    assert!(
        report.quarantined[0].1.contains("newer"),
        "{:?}",
        report.quarantined
    );
    old.read::<Household>(h1).await.expect("h1 arrived");
    old.read::<Household>(h2).await.expect("h2 arrived");
    assert!(
        old.load(case_id).await.is_err(),
        "an unreadable case must not be stored"
    );
    let kept = old.quarantined().await.expect("quarantined");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].doc, case_id);
    assert!(kept[0].changes >= 1);
    // Later syncs keep working and do not fail on it.
    let again = client.sync(&old, 20).await.expect("next sync");
    assert!(again.quarantined.is_empty());
    old.close().await;

    // The phone upgrades: the same store, opened by a build that reads the next schema.
    let upgraded = Store::open_with(
        &path,
        StoreOptions {
            newest_schema: gridsync_core::document::SCHEMA_VERSION + 1,
        },
    )
    .await
    .expect("upgraded store");
    let report = client
        .sync(&upgraded, 20)
        .await
        .expect("sync after upgrade");
    assert_eq!(report.unquarantined, 1);
    assert!(upgraded.quarantined().await.expect("q").is_empty());
    let case = upgraded.load(case_id).await.expect("the case is read now");
    assert_eq!(
        case.header().schema,
        gridsync_core::document::SCHEMA_VERSION + 1
    );
    let cases = upgraded.cases(None).await.expect("cases");
    assert!(
        cases.iter().any(|c| c.doc_id == case_id),
        "projected after the upgrade"
    );
}

/// Track points of the long patrol: more than the wire's 10,000 changes per document that a
/// whole backlog in one request used to exceed (answered 413 on every sync, for good). 30,000
/// passes too, but making them costs ~100 s in a debug build (each list insert in Automerge
/// costs more the longer the list), so the suite uses 12,000.
const POINTS: usize = 12_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_of_one_store_both_edited_offline_end_with_every_edit_on_the_server() {
    for same_identity in [false, true] {
        two_copies(same_identity).await;
    }
}

/// One store copied, both copies edited offline, both synced. `same_identity`: the copy cannot
/// tell it is one (a snapshot restored in place), so the server's `actor_diverged` catches it;
/// otherwise the copy notices at open and takes a fresh actor before it writes.
async fn two_copies(same_identity: bool) {
    let (server, a, b, households) = phone_and_copy(same_identity, 2).await;
    let (shared, only_a) = (households[0], households[1]);
    assert_eq!(
        b.store.actor_id() == a.store.actor_id(),
        same_identity,
        "a copy that can tell takes a fresh actor at once"
    );

    // Both copies work offline, on the same household and on others.
    let (va, vb) = (
        gridsync_proto::RecordId::new(),
        gridsync_proto::RecordId::new(),
    );
    a.store
        .update::<Household>(shared, |h| {
            h.visits.insert(va, sample_visit("周网格", 1));
            h.address = "城南 1 幢 101".into();
        })
        .await
        .expect("a edits");
    a.store
        .update::<Household>(only_a, |h| h.address = "城南 2 幢 202".into())
        .await
        .expect("a edits another");
    b.store
        .update::<Household>(shared, |h| {
            h.visits.insert(vb, sample_visit("周网格", 2));
            h.residence = Residence::Floating;
        })
        .await
        .expect("b edits");
    let only_b = b
        .store
        .create(code(GRID_A), &Household::new("3 号", Residence::Permanent))
        .await
        .expect("b creates");

    a.sync().await;
    // The second copy's changes reuse the actor's sequence numbers: refused as diverged, the
    // copy rebases on the server's state under a fresh actor, and everything goes up.
    let report = b.sync().await;
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_ne!(b.store.actor_id(), a.store.actor_id());
    assert_eq!(
        gridsync_core::document::device_of(&b.store.actor_id()),
        Some(a.store.device()),
        "the fresh actor is bound to the same device"
    );
    a.sync().await;

    let (json, _) = server.record(shared).await.expect("shared household");
    assert!(
        json["visits"].get(va.to_string()).is_some(),
        "a's visit: {json}"
    );
    assert!(
        json["visits"].get(vb.to_string()).is_some(),
        "b's visit: {json}"
    );
    assert_eq!(json["address"], "城南 1 幢 101");
    assert_eq!(
        json["residence"],
        serde_json::to_value(Residence::Floating).expect("json")
    );
    server
        .record(only_b)
        .await
        .expect("b's new household reached the server");
    // The copy is not left stale on what the other copy wrote under the old actor.
    let seen: Household = b.store.read(only_a).await.expect("only_a on b");
    assert_eq!(seen.address, "城南 2 幢 202");
    crate::harness::assert_converged(&server, &[&a, &b]).await;
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM superseded WHERE doc_id = $1")
        .bind(shared.to_string())
        .fetch_one(b.store.pool())
        .await
        .expect("superseded");
    // What the copy held before the rebase is kept (only the disguised copy needed one).
    assert_eq!(kept, i64::from(same_identity));
    // And both copies keep syncing afterwards.
    b.store
        .update::<Household>(shared, |h| h.address = "城南 1 幢 102".into())
        .await
        .expect("b edits again");
    b.sync().await;
    a.sync().await;
    let on_a: Household = a.store.read(shared).await.expect("shared on a");
    assert_eq!(on_a.address, "城南 1 幢 102");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_document_the_server_cannot_read_refuses_only_itself() {
    // The server is not upgraded yet, but holds a newer case (written by an upgraded process
    // of a mixed fleet); an upgraded phone edits it along with other work.
    let server = TestServer::start().await;
    let mut a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    a.upgrade().await;
    let intake = server
        .storage
        .service_device(gridsync_server::Service::Intake)
        .await
        .expect("intake device");
    let newer = future_case(intake, &code(GRID_A));
    let case_id = newer.id();
    server
        .storage
        .create_intake_case("hotline12345", "F-1", newer)
        .await
        .expect("store newer case");
    a.sync().await;
    crate::harness::add_case_photo(&a, case_id, 1).await;
    let h = a
        .store
        .create(code(GRID_A), &Household::new("1 号", Residence::Permanent))
        .await
        .expect("household");
    let report = a.sync().await;
    assert_eq!(
        report
            .rejected
            .iter()
            .map(|(d, c, _)| (d.clone(), c.clone()))
            .collect::<Vec<_>>(),
        vec![(case_id.to_string(), "unreadable_on_server".to_owned())]
    );
    server
        .record(h)
        .await
        .expect("the rest of the push was stored");
}

/// A server, a worker's phone with `n` synced households, and a copy of its store (that
/// cannot tell it is one with `same_identity`: then only the server can catch it).
async fn phone_and_copy(same_identity: bool, n: usize) -> (TestServer, Phone, Phone, Vec<DocId>) {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let mut households = Vec::new();
    for i in 1..=n {
        households.push(
            a.store
                .create(
                    code(GRID_A),
                    &Household::new(format!("{i} 号"), Residence::Permanent),
                )
                .await
                .expect("household"),
        );
    }
    a.sync().await;
    let b = a.copy_as(&server, same_identity).await;
    (server, a, b, households)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_caught_while_its_document_is_in_fallback_still_delivers_its_edit() {
    let (server, a, b, households) = phone_and_copy(true, 1).await;
    let h = households[0];
    let (va, vb) = (
        gridsync_proto::RecordId::new(),
        gridsync_proto::RecordId::new(),
    );
    a.store
        .update::<Household>(h, |x| {
            x.visits.insert(va, sample_visit("周网格", 1));
        })
        .await
        .expect("a visits");
    b.store
        .update::<Household>(h, |x| {
            x.visits.insert(vb, sample_visit("周网格", 2));
        })
        .await
        .expect("b visits");
    a.sync().await;
    // The copy's document is in the sync-protocol fallback (as after a pull that lacked a
    // dependency): its changes go up inside a sync message, not as a batch.
    sqlx::query("UPDATE doc_sync SET need_sync = 1 WHERE doc_id = $1")
        .bind(h.to_string())
        .execute(b.store.pool())
        .await
        .expect("fallback");
    b.sync().await;
    a.sync().await;
    let (json, _) = server.record(h).await.expect("household");
    assert!(json["visits"].get(va.to_string()).is_some(), "{json}");
    assert!(json["visits"].get(vb.to_string()).is_some(), "{json}");
    crate::harness::assert_converged(&server, &[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_phone_is_not_shut_out_when_its_actor_is_retired() {
    let (server, a, b, households) = phone_and_copy(true, 1).await;
    let h = households[0];
    for (p, n) in [(&a, 1), (&b, 2)] {
        p.store
            .update::<Household>(h, |x| {
                x.visits
                    .insert(gridsync_proto::RecordId::new(), sample_visit("周网格", n));
            })
            .await
            .expect("visit");
    }
    // Both copies speak protocol 1 (an old app): no actor in the request.
    let token = a
        .store
        .meta("device_token")
        .await
        .expect("meta")
        .expect("token");
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for p in [&a, &b, &a] {
        let (req, _) = gridsync_core::sync::SyncSession::new(p.store.clone())
            .build_request()
            .await
            .expect("request");
        let mut v1 = gridsync_proto::SyncRequest {
            version: 1,
            actor: serde_bytes::ByteBuf::new(),
            clock: 0,
            ..req
        }
        .encode();
        assert_eq!(
            (v1.pop(), v1.pop()),
            (Some(0), Some(0)),
            "an empty actor and a zero clock are one zero byte each at the end"
        );
        let resp = http
            .post(format!("{}/v1/sync", server.url))
            .bearer_auth(&token)
            .header("content-type", gridsync_proto::CONTENT_TYPE)
            .body(v1)
            .send()
            .await
            .expect("send");
        statuses.push(resp.status().as_u16());
        if resp.status().is_success() {
            let body = resp.bytes().await.expect("body");
            let decoded = gridsync_proto::SyncResponse::decode(&body).expect("response");
            assert_eq!(decoded.version, 1, "answered in the version asked in");
        }
    }
    // The copy's push retired the actor; a version 1 phone still syncs (it cannot take a fresh
    // actor, so it is not told to).
    assert_eq!(statuses, vec![200, 200, 200]);
    let retired: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM retired_actors")
        .fetch_one(server.storage.pool())
        .await
        .expect("retired");
    assert_eq!(retired, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_larger_than_any_request_is_set_aside_and_the_rest_syncs() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    // A household whose one change is over the wire's 4 MiB change limit (written straight
    // through Automerge, as a buggy or old app might), then ordinary work.
    let mut doc = Document::create(
        DocId::new(),
        code(GRID_A),
        a.store.device(),
        &Household::new("1 号", Residence::Permanent),
    )
    .expect("doc");
    {
        let am = doc.automerge();
        let Some((automerge::Value::Object(ObjType::Map), record)) =
            am.get(ROOT, "record").expect("record")
        else {
            panic!("no record map")
        };
        // Random letters: even compressed (as a sync message is) over the limit.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let noise: String = (0..8 * 1024 * 1024)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                char::from(b'a' + ((x >> 33) % 26) as u8)
            })
            .collect();
        am.put(&record, "address", noise).expect("huge address");
        am.commit();
    }
    let big = doc.id();
    a.store.merge_bytes(&doc.save()).await.expect("store it");
    let small = a
        .store
        .create(code(GRID_A), &Household::new("2 号", Residence::Permanent))
        .await
        .expect("household");
    for fallback in [false, true] {
        if fallback {
            // The same document in the sync-protocol fallback: its message is as large.
            sqlx::query("UPDATE doc_sync SET need_sync = 1, retry_at = NULL WHERE doc_id = $1")
                .bind(big.to_string())
                .execute(a.store.pool())
                .await
                .expect("fallback");
        }
        a.sync().await;
        let aside = a.store.set_aside().await.expect("set aside");
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(aside[0].doc, big);
        assert!(
            aside[0].reason.starts_with("too_large"),
            "{}",
            aside[0].reason
        );
        server
            .record(small)
            .await
            .expect("the rest reached the server");
        // What could be sent was: the household's creation, not the oversized edit.
        let (json, _) = server.record(big).await.expect("created on the server");
        assert_eq!(json["address"], "1 号");
    }
}
