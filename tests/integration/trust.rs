//! Trust between devices: a device of the same grid sends hand-built Automerge changes (not
//! through the core's edit API) that break the authorship table or a record rule. Each is
//! refused with its code, nothing of it is stored, and honest phones keep recording visits on
//! the same household afterwards.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};
use gridsync_core::Document;
use gridsync_core::records::{
    Case, Household, Inspection, Relation, Residence, Resident, ResidentStatus, TrackPoint,
};
use gridsync_core::sync::SyncSession;
use gridsync_proto::{AckStatus, DocId, DocPush, RecordId};
use gridsync_server::Storage;
use gridsync_server::auth::Role;
use serde_bytes::ByteBuf;

use crate::harness::{GRID_A, Phone, TestServer, code, sample_case, sample_visit};

/// Object id of the map at `path` (dot-separated) inside the record.
pub(crate) fn obj_at(am: &AutoCommit, path: &str) -> ObjId {
    let mut obj = match am.get(ROOT, "record").expect("get") {
        Some((_, id)) => id,
        None => panic!("no record"),
    };
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        obj = match am.get(&obj, seg).expect("get") {
            Some((automerge::Value::Object(_), id)) => id,
            other => panic!("{path}: {seg} is {other:?}"),
        };
    }
    obj
}

/// Pushes one hand-built change to `doc` from `phone`: `mutate` writes raw operations on the
/// phone's copy (which it must hold), then the change goes up in a request of its own.
/// Returns the server's answer for the document.
pub(crate) async fn hostile_push(
    server: &TestServer,
    phone: &Phone,
    doc: DocId,
    mutate: impl FnOnce(&mut AutoCommit),
) -> AckStatus {
    let mut d: Document = phone
        .store
        .load(doc)
        .await
        .expect("the phone holds the document");
    let am = d.automerge();
    let before = am.get_heads();
    mutate(am);
    am.commit();
    let changes: Vec<ByteBuf> = am
        .get_changes(&before)
        .into_iter()
        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
        .collect();
    assert!(!changes.is_empty(), "the mutation wrote nothing");
    let heads = am.get_heads().into_iter().map(|h| h.0).collect();
    let (mut req, _) = SyncSession::new(phone.store.clone())
        .build_request()
        .await
        .expect("request");
    req.docs = vec![DocPush {
        doc,
        header: None,
        heads,
        changes,
        sync: None,
    }];
    phone
        .post_sync(server, &req)
        .await
        .acks
        .into_iter()
        .find(|a| a.doc == doc)
        .expect("an ack for the document")
        .status
}

/// Asserts the push was refused with `code` (its message naming `path`) and stored nothing.
async fn assert_refused(
    server: &TestServer,
    phone: &Phone,
    doc: DocId,
    code: &str,
    path: &str,
    mutate: impl FnOnce(&mut AutoCommit),
) {
    let before = server
        .storage
        .load(doc)
        .await
        .expect("load")
        .expect("doc")
        .heads();
    let changes = server.change_count().await;
    match hostile_push(server, phone, doc, mutate).await {
        AckStatus::Rejected { code: c, message } => {
            assert_eq!(c, code, "{path}: {message}");
            assert!(message.contains(path), "{code}: {message:?} names {path}");
        }
        other => panic!("{path}: expected {code}, got {other:?}"),
    }
    let after = server
        .storage
        .load(doc)
        .await
        .expect("load")
        .expect("doc")
        .heads();
    assert_eq!(before, after, "{path}: nothing stored");
    assert_eq!(
        changes,
        server.change_count().await,
        "{path}: no change row"
    );
}

fn person(name: &str, relation: Relation) -> Resident {
    let mut r = Resident::new(name, relation);
    r.phones = vec!["13812345678".into()];
    r
}

struct Grid {
    server: TestServer,
    a: Phone,
    b: Phone,
    household: DocId,
    member: RecordId,
    visit: RecordId,
}

/// Worker A records a household with a head and one visit; worker B of the same grid holds it.
async fn grid() -> Grid {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let b = Phone::enroll(&server, "吴网格", Role::Worker, &[GRID_A]).await;
    let member = RecordId::new();
    let visit = RecordId::new();
    let mut h = Household::new("城南社区 1 幢", Residence::Permanent);
    h.members.insert(member, person("王建国", Relation::Head));
    h.visits.insert(visit, sample_visit("周网格", 1));
    let household = a.store.create(code(GRID_A), &h).await.expect("household");
    a.sync().await;
    b.sync().await;
    Grid {
        server,
        a,
        b,
        household,
        member,
        visit,
    }
}

/// After every refusal, both honest phones still record visits on the household.
async fn honest_work_goes_on(g: &Grid) {
    let before = g
        .server
        .storage
        .load(g.household)
        .await
        .expect("load")
        .expect("doc");
    let visits = before.read::<Household>().expect("read").visits.len();
    for (n, p) in [&g.a, &g.b].into_iter().enumerate() {
        p.sync().await;
        p.store
            .update::<Household>(g.household, |h| {
                h.visits
                    .insert(RecordId::new(), sample_visit("网格员", 100 + n));
            })
            .await
            .expect("an honest visit");
        let report = p.sync().await;
        assert!(report.rejected.is_empty(), "{report:?}");
    }
    let after = g
        .server
        .storage
        .load(g.household)
        .await
        .expect("load")
        .expect("doc");
    assert_eq!(
        after.read::<Household>().expect("read").visits.len(),
        visits + 2
    );
}

#[tokio::test]
async fn another_workers_visits_and_the_households_members_are_guarded() {
    let g = grid().await;
    let (s, b, h) = (&g.server, &g.b, g.household);
    let visit = g.visit.to_string();
    let member = g.member.to_string();
    // B deletes A's visit, rewrites it, takes it over.
    assert_refused(s, b, h, "not_allowed", &format!("visits.{visit}"), |am| {
        let v = obj_at(am, "visits");
        am.delete(&v, visit.as_str()).expect("delete");
    })
    .await;
    assert_refused(
        s,
        b,
        h,
        "not_author",
        &format!("visits.{visit}.findings"),
        |am| {
            let v = obj_at(am, &format!("visits.{visit}"));
            am.put(&v, "findings", "改写").expect("put");
        },
    )
    .await;
    assert_refused(
        s,
        b,
        h,
        "author_changed",
        &format!("visits.{visit}.author"),
        |am| {
            let v = obj_at(am, &format!("visits.{visit}"));
            am.put(&v, "author", b.store.device().to_string())
                .expect("put");
        },
    )
    .await;
    // B writes a visit under A's device.
    let a_device = g.a.store.device().to_string();
    assert_refused(s, b, h, "not_author", "visits.", |am| {
        let v = obj_at(am, "visits");
        let n = am
            .put_object(&v, RecordId::new().to_string(), ObjType::Map)
            .expect("visit");
        am.put(&n, "worker", "周网格").expect("put");
        am.put(&n, "at", 1_760_000_000_000i64).expect("put");
        am.put(&n, "purpose", "走访").expect("put");
        am.put(&n, "author", a_device.as_str()).expect("put");
        am.put_object(&n, "photos", ObjType::Map).expect("photos");
        am.put_object(&n, "cases", ObjType::List).expect("cases");
    })
    .await;
    // A member is never deleted, only given a leaving status.
    assert_refused(s, b, h, "not_allowed", &format!("members.{member}"), |am| {
        let m = obj_at(am, "members");
        am.delete(&m, member.as_str()).expect("delete");
    })
    .await;
    // Only the town centre redacts.
    assert_refused(s, b, h, "not_allowed", "redactions", |am| {
        let r = am
            .put_object(obj_at(am, ""), "redactions", ObjType::Map)
            .expect("map");
        let n = am
            .put_object(&r, RecordId::new().to_string(), ObjType::Map)
            .expect("entry");
        am.put(&n, "target", format!("visits.{visit}"))
            .expect("put");
        am.put(&n, "reason", "删").expect("put");
        am.put(&n, "at", 1i64).expect("put");
    })
    .await;
    honest_work_goes_on(&g).await;
}

#[tokio::test]
async fn rules_are_judged_on_the_fields_a_push_touches() {
    let g = grid().await;
    let (s, b, h) = (&g.server, &g.b, g.household);
    let member = g.member.to_string();
    let m = format!("members.{member}");
    assert_refused(s, b, h, "invalid_record", "address", |am| {
        am.put(obj_at(am, ""), "address", "").expect("put");
    })
    .await;
    assert_refused(s, b, h, "invalid_record", &format!("{m}.id_number"), |am| {
        am.put(obj_at(am, &m), "id_number", "123").expect("put");
    })
    .await;
    assert_refused(
        s,
        b,
        h,
        "invalid_record",
        &format!("{m}.birth_date"),
        |am| {
            am.put(obj_at(am, &m), "birth_date", "2099-99-99")
                .expect("put");
        },
    )
    .await;
    assert_refused(s, b, h, "invalid_record", &format!("{m}.phones.0"), |am| {
        let phones = obj_at(am, &format!("{m}.phones"));
        am.put(&phones, 0, "abc").expect("put");
    })
    .await;
    assert_refused(s, b, h, "invalid_record", ".name", |am| {
        let members = obj_at(am, "members");
        let n = am
            .put_object(&members, RecordId::new().to_string(), ObjType::Map)
            .expect("m");
        am.put(&n, "name", "").expect("put");
        am.put(&n, "relation", "head").expect("put");
        am.put(&n, "status", "present").expect("put");
        am.put_object(&n, "phones", ObjType::List).expect("phones");
        am.put_object(&n, "categories", ObjType::Map)
            .expect("categories");
    })
    .await;
    assert_refused(s, b, h, "unknown_field", "secret", |am| {
        am.put(obj_at(am, ""), "secret", "x").expect("put");
    })
    .await;
    assert_refused(s, b, h, "unknown_field", &format!("{m}.nickname"), |am| {
        am.put(obj_at(am, &m), "nickname", "x").expect("put");
    })
    .await;
    // Setting a gender that contradicts the ID number is refused, though the error is reported
    // on the ID number: the push made it.
    let first17 = "33010219800101001";
    let id_number = format!(
        "{first17}{}",
        gridsync_core::validate::id_check_char(first17).expect("17 digits")
    );
    g.a.store
        .update::<Household>(h, |hh| {
            hh.members.get_mut(&g.member).expect("m").id_number = Some(id_number.clone());
        })
        .await
        .expect("a valid ID number");
    g.a.sync().await;
    b.sync().await;
    assert_refused(s, b, h, "invalid_record", &format!("{m}.id_number"), |am| {
        am.put(obj_at(am, &m), "gender", "female").expect("put");
    })
    .await;
    honest_work_goes_on(&g).await;
}

#[tokio::test]
async fn a_cases_report_events_and_photos_are_their_authors() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let b = Phone::enroll(&server, "吴网格", Role::Worker, &[GRID_A]).await;
    let d = Phone::enroll(&server, "调度员", Role::Dispatcher, &[crate::harness::TOWN]).await;
    let mut c = sample_case();
    c.photos.insert(
        RecordId::new(),
        crate::harness::sample_photo(gridsync_core::records::PhotoStage::Before, 1),
    );
    let id = a.store.create(code(GRID_A), &c).await.expect("case");
    a.store
        .case_action(
            id,
            &a.store.actor().await.expect("actor"),
            gridsync_core::workflow::Action::Report,
            "",
            1_760_000_000_000,
            |_, _| Ok(Default::default()),
        )
        .await
        .expect("report");
    a.sync().await;
    b.sync().await;
    d.sync().await;
    let case: Case = server
        .storage
        .load(id)
        .await
        .expect("l")
        .expect("c")
        .read()
        .expect("r");
    let photo = case.photos.keys().next().expect("photo").to_string();
    for (field, value) in [
        ("title", "改写"),
        ("category", "02"),
        ("urgency", "urgent"),
        ("description", "改写"),
    ] {
        assert_refused(&server, &b, id, "not_allowed", field, |am| {
            am.put(obj_at(am, ""), field, value).expect("put");
        })
        .await;
    }
    assert_refused(&server, &a, id, "not_allowed", "source", |am| {
        am.put(obj_at(am, ""), "source", "hotline12345")
            .expect("put");
    })
    .await;
    assert_refused(
        &server,
        &b,
        id,
        "not_allowed",
        &format!("photos.{photo}"),
        |am| {
            am.delete(obj_at(am, "photos"), photo.as_str())
                .expect("delete");
        },
    )
    .await;
    let event = case
        .events
        .keys()
        .next()
        .expect("the report event")
        .to_string();
    assert_refused(
        &server,
        &a,
        id,
        "not_allowed",
        &format!("events.{event}"),
        |am| {
            am.put(obj_at(am, &format!("events.{event}")), "at", 1i64)
                .expect("put");
        },
    )
    .await;
    // The town centre classifies: its edit of the category is taken.
    d.store
        .update::<Case>(id, |c| {
            c.category = "02".into();
            c.subcategory = "0201".into();
        })
        .await
        .expect("the dispatcher reclassifies");
    let report = d.sync().await;
    assert!(report.rejected.is_empty(), "{report:?}");
    // And B's own photo is B's: stamped with B's device.
    crate::harness::add_case_photo(&b, id, 7).await;
    assert!(b.sync().await.rejected.is_empty());
    let case: Case = server
        .storage
        .load(id)
        .await
        .expect("l")
        .expect("c")
        .read()
        .expect("r");
    assert!(
        case.photos
            .values()
            .any(|p| p.author == Some(b.store.device())),
        "stamped by the core"
    );
}

#[tokio::test]
async fn a_patrol_is_its_workers_alone() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let b = Phone::enroll(&server, "吴网格", Role::Worker, &[GRID_A]).await;
    let patrol = Inspection {
        worker: "周网格".into(),
        started_at: 1_760_000_000_000,
        ended_at: None,
        track: vec![TrackPoint {
            at: 1_760_000_000_000,
            lat: 30.0,
            lon: 120.0,
        }],
        checkpoints: Default::default(),
        findings: Default::default(),
        photos: Default::default(),
        redactions: Default::default(),
    };
    let id = a.store.create(code(GRID_A), &patrol).await.expect("patrol");
    a.sync().await;
    b.sync().await;
    assert_refused(&server, &b, id, "not_allowed", "ended_at", |am| {
        am.put(obj_at(am, ""), "ended_at", 1_760_000_360_000i64)
            .expect("put");
    })
    .await;
    assert_refused(&server, &b, id, "not_allowed", "track", |am| {
        let t = obj_at(am, "track");
        am.delete(&t, 0).expect("delete");
    })
    .await;
    // The phone's core refuses the same edit before writing it.
    let err = b
        .store
        .update::<Inspection>(id, |p| p.ended_at = Some(1_760_000_360_000))
        .await
        .expect_err("not B's patrol");
    assert!(err.to_string().contains("ended_at"), "{err}");
}

#[tokio::test]
async fn a_redaction_by_the_centre_hides_a_visit_and_keeps_it() {
    let g = grid().await;
    let d = Phone::enroll(
        &g.server,
        "调度员",
        Role::Dispatcher,
        &[crate::harness::TOWN],
    )
    .await;
    d.sync().await;
    d.store
        .update::<Household>(g.household, |h| {
            h.redactions.insert(
                RecordId::new(),
                gridsync_core::records::Redaction {
                    target: format!("visits.{}", g.visit),
                    reason: "录错了户".into(),
                    at: 1_760_000_000_000,
                    author: None,
                },
            );
        })
        .await
        .expect("redact");
    assert!(d.sync().await.rejected.is_empty());
    g.a.sync().await;
    let h: Household = g.a.store.read(g.household).await.expect("read");
    assert!(h.visits.contains_key(&g.visit), "kept in the record");
    assert_eq!(h.visible_visits().count(), 0, "out of view");
    assert!(
        g.a.store
            .visits_of(g.household)
            .await
            .expect("visits")
            .is_empty(),
        "lists leave it out"
    );
    // A member leaves by a status, never by deletion.
    g.a.store
        .update::<Household>(g.household, |h| {
            h.members.get_mut(&g.member).expect("m").status = ResidentStatus::EnteredByMistake;
        })
        .await
        .expect("entered by mistake");
    assert!(g.a.sync().await.rejected.is_empty());
}

#[tokio::test]
async fn a_poisoned_record_from_before_does_not_block_honest_work() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    // Written before these rules, straight into the server's store: an empty address, an
    // ID number "123", a phone "abc", a birth date 2099-99-99, a second head with no name
    // and an unknown field.
    let mut am = AutoCommit::new();
    let id = DocId::new();
    let header = am.put_object(ROOT, "header", ObjType::Map).expect("h");
    am.put(&header, "id", id.to_string()).expect("id");
    am.put(&header, "type", "household").expect("type");
    am.put(&header, "scope", GRID_A).expect("scope");
    am.put(&header, "creator", a.store.device().to_string())
        .expect("creator");
    am.put(&header, "schema", 1i64).expect("schema");
    let rec = am.put_object(ROOT, "record", ObjType::Map).expect("record");
    am.put(&rec, "address", "").expect("address");
    am.put(&rec, "residence", "permanent").expect("residence");
    am.put(&rec, "legacy_note", "x").expect("unknown");
    am.put_object(&rec, "flags", ObjType::Map).expect("flags");
    am.put_object(&rec, "visits", ObjType::Map).expect("visits");
    let members = am
        .put_object(&rec, "members", ObjType::Map)
        .expect("members");
    for (name, id_number) in [("王建国", "123"), ("", "")] {
        let m = am
            .put_object(&members, RecordId::new().to_string(), ObjType::Map)
            .expect("m");
        am.put(&m, "name", name).expect("name");
        am.put(&m, "relation", "head").expect("relation");
        am.put(&m, "status", "present").expect("status");
        am.put(&m, "birth_date", "2099-99-99").expect("birth");
        if !id_number.is_empty() {
            am.put(&m, "id_number", id_number).expect("id");
        }
        let phones = am.put_object(&m, "phones", ObjType::List).expect("phones");
        am.insert(&phones, 0, ScalarValue::Str("abc".into()))
            .expect("phone");
        am.put_object(&m, "categories", ObjType::Map)
            .expect("categories");
    }
    am.commit();
    let doc = Document::from_automerge(am).expect("a readable (if invalid) household");
    server
        .storage
        .create_intake_case("legacy", "poisoned", doc)
        .await
        .expect("stored as it was");
    a.sync().await;
    let problems = a.store.problems(id).await.expect("problems");
    assert!(
        problems.len() >= 5,
        "listed as problems to fix: {problems:?}"
    );
    // Honest work on the household goes on: a visit, and a fix of one bad field.
    a.store
        .update::<Household>(id, |h| {
            h.visits.insert(RecordId::new(), sample_visit("周网格", 1));
        })
        .await
        .expect("a visit despite the bad fields");
    a.store
        .resolve::<Household>(id, "address", serde_json::json!("城南社区 9 幢"))
        .await
        .expect("fix the address");
    let report = a.sync().await;
    assert!(report.rejected.is_empty(), "{report:?}");
    let stored: Household = server
        .storage
        .load(id)
        .await
        .expect("l")
        .expect("h")
        .read()
        .expect("r");
    assert_eq!(stored.visits.len(), 1);
    assert_eq!(stored.address, "城南社区 9 幢");
    assert_eq!(
        a.store.problems(id).await.expect("problems").len(),
        problems.len() - 1
    );
}

#[tokio::test]
async fn costly_pushes_are_refused_and_store_nothing() {
    use gridsync_server::merge::cost;
    let g = grid().await;
    let (s, b, h) = (&g.server, &g.b, g.household);
    let m = format!("members.{}", g.member);
    // One change with more operations than any honest edit (one per character of a text).
    assert_refused(s, b, h, "too_many_ops", "operations", |am| {
        let work = am
            .put_object(obj_at(am, &m), "work", ObjType::Text)
            .expect("text");
        am.splice_text(&work, 0, 0, &"工".repeat(cost::MAX_OPS_PER_CHANGE + 5_000))
            .expect("splice");
    })
    .await;
    // A value of megabytes, put and overwritten in one change: the record stays valid, the
    // history would carry the ballast.
    assert_refused(s, b, h, "value_too_large", "string", |am| {
        let rec = obj_at(am, "");
        am.put(&rec, "address", "垃".repeat(1024 * 1024))
            .expect("put");
        am.put(&rec, "address", "城南社区 1 幢").expect("put back");
    })
    .await;
    // (The document-size bound is checked in `merge`'s unit tests: reaching it takes
    // 150,000 operations, too slow to build in a debug test binary.)
    honest_work_goes_on(&g).await;
}

#[tokio::test]
async fn writes_the_record_does_not_show_are_judged_too() {
    let g = grid().await;
    let (s, b, h) = (&g.server, &g.b, g.household);
    let visit = g.visit.to_string();
    // A edits its visit three times; B, still holding the older copy, writes the same field:
    // B's value loses the conflict (lower counter), so the record's JSON does not change, but
    // the value would be kept and offered at the next resolution.
    for n in 0..3 {
        g.a.store
            .update::<Household>(h, |hh| {
                hh.visits.get_mut(&g.visit).expect("visit").findings = format!("第 {n} 稿");
            })
            .await
            .expect("A edits its visit");
    }
    g.a.sync().await;
    assert_refused(
        s,
        b,
        h,
        "not_author",
        &format!("visits.{visit}.findings"),
        |am| {
            let v = obj_at(am, &format!("visits.{visit}"));
            am.put(&v, "findings", "藏起来的改写").expect("put");
        },
    )
    .await;
    // A members map replaced by an identical copy: nothing visible changes, but offline
    // edits into the old map would vanish.
    assert_refused(s, b, h, "not_allowed", "members", |am| {
        let rec = obj_at(am, "");
        let members = am.put_object(&rec, "members", ObjType::Map).expect("map");
        let m = am
            .put_object(&members, g.member.to_string(), ObjType::Map)
            .expect("member");
        am.put(&m, "name", "王建国").expect("put");
        am.put(&m, "relation", "head").expect("put");
        am.put(&m, "status", "present").expect("put");
        let phones = am.put_object(&m, "phones", ObjType::List).expect("phones");
        am.insert(&phones, 0, "13812345678").expect("phone");
        am.put_object(&m, "categories", ObjType::Map)
            .expect("categories");
    })
    .await;
    // Keys beside the record are not the device's to write.
    assert_refused(s, b, h, "not_allowed", "sidecar", |am| {
        am.put(ROOT, "sidecar", "x").expect("put");
    })
    .await;
    honest_work_goes_on(&g).await;
}
