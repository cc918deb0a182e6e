//! Validation of each record type: the field path and the problem, for every rule a form
//! relies on.

use gridsync_core::records::{
    Checkpoint, Gps, Grid, Inspection, Party, PhotoRef, PhotoStage, Record, RosterEntry, TrackPoint,
};
use gridsync_core::validate::Problem;

use crate::helpers::{case, household, rid};

fn problems<R: Record>(r: &R) -> Vec<(String, Problem)> {
    match r.validate() {
        Ok(()) => Vec::new(),
        Err(e) => e.0.into_iter().map(|e| (e.field, e.problem)).collect(),
    }
}

#[test]
fn grid_code_name_roster() {
    let mut g = Grid {
        code: "33010200101001002".into(),
        name: "第二网格".into(),
        roster: Default::default(),
        boundary: vec![],
    };
    assert!(problems(&g).is_empty());
    g.code = "3301020010100100".into();
    g.name = String::new();
    g.roster.insert(
        "W1".into(),
        RosterEntry {
            name: "周".into(),
            phone: "123".into(),
            duty: "boss".into(),
        },
    );
    let p = problems(&g);
    let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["code", "name", "roster.W1.phone", "roster.W1.duty"]
    );
    assert!(matches!(p[0].1, Problem::GridCode(_)));
}

#[test]
fn household_flags_and_members() {
    let mut h = household();
    h.flags.insert("vip".into());
    let m = h.members.get_mut(&rid(1)).expect("head");
    m.birth_date = Some("1950-01-01".into());
    m.gender = Some("male".into());
    m.categories.insert("unknown".into());
    let p = problems(&h);
    let head = rid(1);
    assert_eq!(
        p,
        vec![
            (
                "flags.vip".to_owned(),
                Problem::NotOneOf {
                    allowed: gridsync_core::records::HOUSEHOLD_FLAGS
                }
            ),
            (
                format!("members.{head}.id_number"),
                Problem::IdNumberMismatch { with: "birth_date" }
            ),
            (
                format!("members.{head}.id_number"),
                Problem::IdNumberMismatch { with: "gender" }
            ),
            (
                format!("members.{head}.categories.unknown"),
                Problem::NotOneOf {
                    allowed: gridsync_core::records::KEY_CATEGORIES
                }
            ),
        ]
    );
}

#[test]
fn inspection_times_track_and_checkpoints() {
    let mut i = Inspection {
        worker: "周网格".into(),
        started_at: 100,
        ended_at: Some(50),
        track: vec![TrackPoint {
            at: 1,
            lat: 91.0,
            lon: 0.0,
        }],
        checkpoints: [(
            rid(1),
            Checkpoint {
                name: " ".into(),
                checked_at: None,
                ok: None,
                gps: Some(Gps::new(0.0, 200.0)),
                note: String::new(),
            },
        )]
        .into(),
        findings: Default::default(),
        photos: Default::default(),
        redactions: Default::default(),
    };
    let fields: Vec<String> = problems(&i).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "ended_at".to_owned(),
            "track.0".into(),
            format!("checkpoints.{}.name", rid(1)),
            format!("checkpoints.{}.gps", rid(1))
        ]
    );
    i.ended_at = Some(200);
    i.track[0].lat = 30.0;
    i.checkpoints.clear();
    assert!(problems(&i).is_empty());
}

#[test]
fn case_codes_parties_and_photos() {
    let mut c = case();
    assert!(problems(&c).is_empty());
    c.subcategory = "0201".into();
    c.parties.insert(
        rid(2),
        Party {
            name: "李".into(),
            phone: "0571-87654".into(),
            household: None,
            resident: None,
            role: "witness".into(),
        },
    );
    c.photos.insert(
        rid(3),
        PhotoRef {
            gps: Some(Gps {
                lat: 1.0,
                lon: 1.0,
                acc: Some(-1.0),
            }),
            ..PhotoRef::new("ABC", PhotoStage::Before, 1, 0, "image/heic")
        },
    );
    let fields: Vec<String> = problems(&c).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "subcategory".to_owned(),
            format!("parties.{}.phone", rid(2)),
            format!("parties.{}.role", rid(2)),
            format!("photos.{}.sha256", rid(3)),
            format!("photos.{}.mime", rid(3)),
            format!("photos.{}.size", rid(3)),
            format!("photos.{}.gps.acc", rid(3)),
        ]
    );
}
