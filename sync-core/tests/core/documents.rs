//! One record as one Automerge document: create, edit, validate, merge, conflicts.

use gridsync_core::document::{DocError, Document};
use gridsync_core::records::{Case, Household, Relation, Resident, ResidentStatus, Visit};
use gridsync_core::validate::Problem;
use gridsync_proto::DocId;

use crate::helpers::{case, device, grid, household, rid};

fn fork(doc: &mut Document, n: u128) -> Document {
    let mut copy = Document::load(&doc.save()).expect("reload");
    copy.set_device(device(n));
    copy
}

#[test]
fn create_and_read_back_every_field() {
    let h = household();
    let doc = Document::create(DocId::new(), grid(), device(1), &h).expect("valid household");
    assert_eq!(doc.header().scope, grid());
    assert_eq!(doc.header().creator, device(1));
    let back: Household = doc.read().expect("read");
    assert_eq!(back, h);
    assert!(doc.conflicts().is_empty());
}

#[test]
fn reading_as_the_wrong_type_is_a_typed_error() {
    let doc = Document::create(DocId::new(), grid(), device(1), &household()).expect("create");
    match doc.read::<Case>() {
        Err(DocError::WrongType {
            expected, found, ..
        }) => {
            assert_eq!(expected.as_str(), "case");
            assert_eq!(found.as_str(), "household");
        }
        other => panic!("expected WrongType, got {other:?}"),
    }
}

#[test]
fn invalid_input_names_the_field_and_changes_nothing() {
    let mut doc = Document::create(DocId::new(), grid(), device(1), &household()).expect("create");
    let heads = doc.heads();
    let err = doc
        .update::<Household>(|h| {
            let m = h.members.get_mut(&rid(1)).expect("head");
            m.id_number = Some("11010519491231003X".into());
            m.phones.push("12345".into());
        })
        .expect_err("bad id number and phone");
    let DocError::Invalid { source, .. } = err else {
        panic!("expected Invalid, got {err:?}");
    };
    let fields: Vec<_> = source.0.iter().map(|e| e.field.clone()).collect();
    assert_eq!(
        fields,
        [
            format!("members.{}.id_number", rid(1)),
            format!("members.{}.phones.1", rid(1))
        ]
    );
    assert_eq!(
        source.0[0].problem,
        Problem::IdNumberChecksum { expected: '8' }
    );
    assert_eq!(doc.heads(), heads, "nothing was written");
    assert_eq!(doc.read::<Household>().expect("read"), household());
}

#[test]
fn creating_an_invalid_record_fails() {
    let mut h = household();
    h.address = "  ".into();
    let err = Document::create(DocId::new(), grid(), device(1), &h).expect_err("blank address");
    assert!(err.to_string().contains("address: is required"), "{err}");
}

#[test]
fn concurrent_edits_of_different_fields_merge_cleanly() {
    let mut a = Document::create(DocId::new(), grid(), device(1), &household()).expect("create");
    let mut b = fork(&mut a, 2);
    a.update::<Household>(|h| h.address = "城南社区 3 幢 2 单元 502 室".into())
        .expect("edit address");
    b.update::<Household>(|h| {
        h.flags.insert("rental".into());
        h.members.get_mut(&rid(1)).expect("head").work = "退休".into();
    })
    .expect("edit flags and work");
    a.merge(&mut b).expect("merge");
    let h: Household = a.read().expect("read");
    assert_eq!(h.address, "城南社区 3 幢 2 单元 502 室");
    assert!(h.flags.contains("rental"));
    assert_eq!(h.members[&rid(1)].work, "退休");
    assert!(a.conflicts().is_empty(), "{:?}", a.conflicts());
}

#[test]
fn concurrent_additions_to_maps_keep_both() {
    let mut a = Document::create(DocId::new(), grid(), device(1), &household()).expect("create");
    let mut b = fork(&mut a, 2);
    let visit = |who: &str| Visit {
        worker: who.into(),
        at: 1_760_000_000_000,
        gps: None,
        purpose: "日常走访".into(),
        findings: String::new(),
        photos: Default::default(),
        cases: vec![],
        author: None,
    };
    a.update::<Household>(|h| {
        h.visits.insert(rid(10), visit("周网格"));
        h.members
            .insert(rid(2), Resident::new("李秀英", Relation::Spouse));
        h.flags.insert("rental".into());
    })
    .expect("a adds");
    b.update::<Household>(|h| {
        h.visits.insert(rid(11), visit("吴网格"));
        h.members
            .insert(rid(3), Resident::new("王磊", Relation::Child));
        h.flags.insert("empty_nest".into());
    })
    .expect("b adds");
    a.merge(&mut b).expect("merge");
    b.merge(&mut a).expect("merge back");
    let ha: Household = a.read().expect("read a");
    let hb: Household = b.read().expect("read b");
    assert_eq!(ha, hb);
    assert_eq!(ha.visits.len(), 2);
    assert_eq!(ha.members.len(), 3);
    assert_eq!(ha.flags.len(), 2);
    assert!(a.conflicts().is_empty());
}

#[test]
fn concurrent_sets_of_one_field_surface_both_values_until_resolved() {
    let mut a = Document::create(DocId::new(), grid(), device(1), &household()).expect("create");
    let mut b = fork(&mut a, 2);
    a.update::<Household>(|h| h.members.get_mut(&rid(1)).expect("head").work = "个体经营".into())
        .expect("a");
    b.update::<Household>(|h| h.members.get_mut(&rid(1)).expect("head").work = "务农".into())
        .expect("b");
    a.merge(&mut b).expect("merge");
    b.merge(&mut a).expect("merge back");
    let conflicts = a.conflicts();
    assert_eq!(
        conflicts,
        b.conflicts(),
        "both replicas show the same conflict"
    );
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].path, format!("members.{}.work", rid(1)));
    let mut values: Vec<String> = conflicts[0]
        .values
        .iter()
        .map(|v| v.as_str().expect("text").to_owned())
        .collect();
    values.sort();
    assert_eq!(values, ["个体经营", "务农"]);
    // Editing another field does not silently pick a winner.
    a.update::<Household>(|h| h.address = "新地址 1 号".into())
        .expect("other edit");
    assert_eq!(a.conflicts().len(), 1);
    // A person resolves it.
    a.resolve::<Household>(&conflicts[0].path, serde_json::json!("务农"))
        .expect("resolve");
    assert!(a.conflicts().is_empty());
    assert_eq!(
        a.read::<Household>().expect("read").members[&rid(1)].work,
        "务农"
    );
    b.merge(&mut a).expect("merge resolution");
    assert!(b.conflicts().is_empty());
}

#[test]
fn resolving_with_an_invalid_value_is_refused() {
    let mut a = Document::create(DocId::new(), grid(), device(1), &household()).expect("create");
    let path = format!("members.{}.phones.0", rid(1));
    let err = a
        .resolve::<Household>(&path, serde_json::json!("not a phone"))
        .expect_err("invalid");
    assert!(matches!(err, DocError::Invalid { .. }), "{err:?}");
    assert_eq!(a.read::<Household>().expect("read"), household());
    let err = a
        .resolve::<Household>("members.nope.name", serde_json::json!("x"))
        .expect_err("no field");
    assert!(matches!(err, DocError::NoSuchField { .. }), "{err:?}");
}

#[test]
fn concurrent_description_edits_merge_as_text() {
    let mut a = Document::create(DocId::new(), grid(), device(1), &case()).expect("create");
    // The reporter and the town centre's dispatcher both edit the description.
    let mut b = fork(&mut a, 2);
    b.set_role(gridsync_core::workflow::Role::Dispatcher);
    a.update::<Case>(|c| c.description = "紧急：3 幢 2 单元楼道灯不亮".into())
        .expect("a");
    b.update::<Case>(|c| c.description = "3 幢 2 单元楼道灯不亮，老人夜间摔倒".into())
        .expect("b");
    a.merge(&mut b).expect("merge");
    let merged = a.read::<Case>().expect("read").description;
    assert_eq!(merged, "紧急：3 幢 2 单元楼道灯不亮，老人夜间摔倒");
    assert!(a.conflicts().is_empty());
}

#[test]
fn a_moved_out_member_keeps_the_record_with_a_date() {
    let mut a = Document::create(DocId::new(), grid(), device(1), &household()).expect("create");
    let err = a
        .update::<Household>(|h| {
            h.members.get_mut(&rid(1)).expect("head").status = ResidentStatus::MovedOut
        })
        .expect_err("date required");
    assert!(
        err.to_string().contains("status_date: is required"),
        "{err}"
    );
    a.update::<Household>(|h| {
        let m = h.members.get_mut(&rid(1)).expect("head");
        m.status = ResidentStatus::MovedOut;
        m.status_date = Some("2026-10-01".into());
    })
    .expect("moved out");
    assert_eq!(a.read::<Household>().expect("read").members.len(), 1);
}

#[test]
fn header_cannot_be_changed_by_incoming_changes() {
    use automerge::transaction::Transactable;
    let mut a = Document::create(DocId::new(), grid(), device(1), &household()).expect("create");
    let mut evil = fork(&mut a, 2);
    let heads = a.heads();
    let am = evil.automerge();
    let (_, h) = automerge::ReadDoc::get(am, automerge::ROOT, "header")
        .expect("get")
        .expect("header");
    am.put(&h, "scope", "33010200101001009").expect("put");
    am.commit();
    let changes = evil.changes_since(&heads);
    let err = a.apply_changes(changes).expect_err("header change refused");
    assert!(matches!(err, DocError::HeaderChanged(_)), "{err:?}");
    assert_eq!(a.heads(), heads, "document unchanged");
    assert_eq!(a.header().scope, grid());
}

#[test]
fn list_appends_from_two_replicas_keep_both() {
    use gridsync_core::records::{Inspection, TrackPoint};
    let insp = Inspection {
        worker: "周网格".into(),
        started_at: 1,
        ended_at: None,
        track: vec![TrackPoint {
            at: 1,
            lat: 30.0,
            lon: 120.0,
        }],
        checkpoints: Default::default(),
        findings: Default::default(),
        photos: Default::default(),
        redactions: Default::default(),
    };
    let mut a = Document::create(DocId::new(), grid(), device(1), &insp).expect("create");
    // A patrol is its worker's alone: the second replica is a copy of the same phone's store,
    // writing under a fresh actor of the same device.
    let mut b = Document::load(&a.save()).expect("reload");
    b.automerge()
        .set_actor(gridsync_core::document::fresh_actor(device(1)));
    a.update::<Inspection>(|i| {
        i.track.push(TrackPoint {
            at: 2,
            lat: 30.1,
            lon: 120.1,
        })
    })
    .expect("a");
    b.update::<Inspection>(|i| {
        i.track.push(TrackPoint {
            at: 3,
            lat: 30.2,
            lon: 120.2,
        })
    })
    .expect("b");
    a.merge(&mut b).expect("merge");
    let track = a.read::<Inspection>().expect("read").track;
    assert_eq!(track.len(), 3);
    assert!(a.conflicts().is_empty());
}

#[test]
fn removing_one_list_item_keeps_a_concurrent_edit_of_another() {
    let mut h = household();
    h.members.get_mut(&rid(1)).expect("head").phones =
        vec!["13812345678".into(), "13912345678".into()];
    let mut a = Document::create(DocId::new(), grid(), device(1), &h).expect("create");
    let mut b = fork(&mut a, 2);
    a.update::<Household>(|h| {
        h.members.get_mut(&rid(1)).expect("head").phones.remove(0);
    })
    .expect("a removes the first phone");
    b.update::<Household>(|h| {
        h.members.get_mut(&rid(1)).expect("head").phones[1] = "13712345678".into();
    })
    .expect("b edits the second");
    a.merge(&mut b).expect("merge");
    let phones = a.read::<Household>().expect("read").members[&rid(1)]
        .phones
        .clone();
    assert!(
        phones.contains(&"13712345678".to_owned()),
        "b's edit survived: {phones:?}"
    );
    assert!(
        !phones.contains(&"13812345678".to_owned()),
        "a's removal survived: {phones:?}"
    );
}
