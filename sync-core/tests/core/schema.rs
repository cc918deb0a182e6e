//! The stored shape of every document type (snapshots) and old formats that must stay readable.

use gridsync_core::Document;
use gridsync_core::records::{
    CaseEvent, Checkpoint, Gps, Grid, Household, Inspection, PhotoRef, PhotoStage, RosterEntry,
    TrackPoint, Visit,
};
use gridsync_proto::DocId;

use crate::helpers::{case, device, grid, household, rid};

fn doc_id(n: u128) -> DocId {
    DocId(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_a000_0000_0000_0000 | n,
    ))
}

fn full_household() -> Household {
    let mut h = household();
    h.flags.insert("rental".into());
    h.visits.insert(
        rid(20),
        Visit {
            worker: "周网格".into(),
            at: 1_760_000_000_000,
            gps: Some(Gps {
                lat: 30.25,
                lon: 120.16,
                acc: Some(8.0),
            }),
            purpose: "日常走访".into(),
            findings: "老人血压偏高".into(),
            photos: [(
                rid(30),
                PhotoRef::new(
                    "a".repeat(64),
                    PhotoStage::Record,
                    1_760_000_000_000,
                    123_456,
                    "image/jpeg",
                ),
            )]
            .into(),
            cases: vec![doc_id(9)],
            author: None,
        },
    );
    h
}

/// Each document type's stored JSON (header + record). A diff here is a format change: bump
/// `SCHEMA_VERSION` and keep old documents readable.
#[test]
fn document_schema_snapshots() {
    let grid_rec = Grid {
        code: grid().to_string(),
        name: "城南社区第二网格".into(),
        roster: [(
            "W001".to_owned(),
            RosterEntry {
                name: "周网格".into(),
                phone: "13812345678".into(),
                duty: "grid_worker".into(),
            },
        )]
        .into(),
        boundary: vec![
            [30.25, 120.16],
            [30.25, 120.17],
            [30.26, 120.17],
            [30.26, 120.16],
        ],
    };
    let inspection = Inspection {
        worker: "周网格".into(),
        started_at: 1_760_000_000_000,
        ended_at: Some(1_760_000_360_000),
        track: vec![TrackPoint {
            at: 1_760_000_000_000,
            lat: 30.25,
            lon: 120.16,
        }],
        checkpoints: [(
            rid(40),
            Checkpoint {
                name: "消防通道".into(),
                checked_at: Some(1_760_000_100_000),
                ok: Some(false),
                gps: None,
                note: "堆放杂物".into(),
            },
        )]
        .into(),
        findings: Default::default(),
        photos: Default::default(),
        redactions: Default::default(),
    };
    let mut c = case();
    c.events.insert(
        rid(50),
        CaseEvent {
            kind: "report".into(),
            at: 1_760_000_000_000,
            by: "周网格".into(),
            role: "worker".into(),
            dept: None,
            after: vec![],
            note: String::new(),
            data: Default::default(),
            author: None,
        },
    );
    let docs = [
        (
            "grid",
            Document::create(doc_id(1), grid(), device(1), &grid_rec).expect("grid"),
        ),
        (
            "household",
            Document::create(doc_id(2), grid(), device(1), &full_household()).expect("household"),
        ),
        (
            "inspection",
            Document::create(doc_id(3), grid(), device(1), &inspection).expect("inspection"),
        ),
        (
            "case",
            Document::create(doc_id(4), grid(), device(1), &c).expect("case"),
        ),
    ];
    for (name, doc) in docs {
        let value = serde_json::json!({ "header": doc.header(), "record": doc.record_json() });
        insta::assert_json_snapshot!(format!("schema_{name}"), value);
    }
}

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/household_v1.automerge"
);

/// A household saved by schema version 1 must load and read the same forever.
#[test]
fn reads_the_v1_household_fixture() {
    if std::env::var_os("GRIDSYNC_WRITE_FIXTURES").is_some() {
        let mut doc =
            Document::create(doc_id(2), grid(), device(1), &full_household()).expect("create");
        std::fs::write(FIXTURE, doc.save()).expect("write fixture");
    }
    let bytes = std::fs::read(FIXTURE).expect("the committed v1 fixture");
    let doc = Document::load(&bytes).expect("v1 loads");
    assert_eq!(doc.header().schema, 1);
    assert_eq!(doc.header().id, doc_id(2));
    assert_eq!(doc.header().creator, device(1));
    let h: Household = doc.read().expect("v1 reads as a household");
    assert_eq!(h, full_household());
}
