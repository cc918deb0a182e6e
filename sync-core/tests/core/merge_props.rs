//! Property: replicas that edit a household offline and exchange changes in any order end
//! identical — same record, same conflicts, same projections — and no addition is lost.

use std::collections::BTreeSet;

use gridsync_core::Document;
use gridsync_core::projection::project;
use gridsync_core::records::{Household, Relation, Resident, Visit};
use gridsync_proto::{DocId, RecordId};
use proptest::prelude::*;

use crate::helpers::{device, grid, household, rid};

#[derive(Debug, Clone)]
enum Op {
    AddVisit {
        replica: usize,
    },
    AddMember {
        replica: usize,
    },
    SetAddress {
        replica: usize,
        value: u8,
    },
    SetHeadWork {
        replica: usize,
        value: u8,
    },
    ToggleFlag {
        replica: usize,
        flag: u8,
    },
    /// Replica `to` receives everything `from` has, through save/load.
    Exchange {
        from: usize,
        to: usize,
    },
}

const REPLICAS: usize = 3;
const FLAGS: [&str; 3] = ["rental", "empty_nest", "low_income"];

fn op() -> impl Strategy<Value = Op> {
    let r = 0..REPLICAS;
    prop_oneof![
        r.clone().prop_map(|replica| Op::AddVisit { replica }),
        r.clone().prop_map(|replica| Op::AddMember { replica }),
        (r.clone(), 0u8..4).prop_map(|(replica, value)| Op::SetAddress { replica, value }),
        (r.clone(), 0u8..4).prop_map(|(replica, value)| Op::SetHeadWork { replica, value }),
        (r.clone(), 0u8..3).prop_map(|(replica, flag)| Op::ToggleFlag { replica, flag }),
        (r.clone(), r).prop_map(|(from, to)| Op::Exchange { from, to }),
    ]
}

fn exchange(replicas: &mut [Document], from: usize, to: usize) {
    if from == to {
        return;
    }
    // Through the bytes a phone would store or send, not in-memory merge.
    let bytes = replicas[from].save();
    replicas[to].load_incremental(&bytes).expect("merge");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_and_keep_every_addition(ops in proptest::collection::vec(op(), 1..40)) {
        let origin = Document::create(DocId::new(), grid(), device(1), &household()).expect("create");
        let bytes = origin.clone().save();
        let mut replicas: Vec<Document> = (0..REPLICAS)
            .map(|i| {
                let mut d = Document::load(&bytes).expect("load");
                d.set_device(device(10 + i as u128));
                d
            })
            .collect();
        let mut added_visits = BTreeSet::new();
        let mut added_members = BTreeSet::new();
        let mut n = 0u128;
        for op in ops {
            n += 1;
            match op {
                Op::AddVisit { replica } => {
                    let id = RecordId::new();
                    added_visits.insert(id);
                    replicas[replica].update::<Household>(|h| {
                        h.visits.insert(id, Visit {
                            worker: format!("w{replica}"),
                            at: n as i64,
                            gps: None,
                            purpose: "日常走访".into(),
                            findings: String::new(),
                            photos: Default::default(),
                            cases: vec![],
                            author: None,
                        });
                    }).expect("add visit");
                }
                Op::AddMember { replica } => {
                    let id = rid(1000 + n);
                    added_members.insert(id);
                    replicas[replica].update::<Household>(|h| {
                        h.members.insert(id, Resident::new(format!("成员{n}"), Relation::Child));
                    }).expect("add member");
                }
                Op::SetAddress { replica, value } => {
                    replicas[replica].update::<Household>(|h| h.address = format!("地址 {value}")).expect("address");
                }
                Op::SetHeadWork { replica, value } => {
                    replicas[replica].update::<Household>(|h| {
                        h.members.get_mut(&rid(1)).expect("head").work = format!("工作 {value}");
                    }).expect("work");
                }
                Op::ToggleFlag { replica, flag } => {
                    replicas[replica].update::<Household>(|h| {
                        let f = FLAGS[flag as usize].to_owned();
                        if !h.flags.remove(&f) {
                            h.flags.insert(f);
                        }
                    }).expect("flag");
                }
                Op::Exchange { from, to } => exchange(&mut replicas, from, to),
            }
        }
        // Everyone reconnects: a full round of exchanges in a ring, twice.
        for _ in 0..2 {
            for i in 0..REPLICAS {
                exchange(&mut replicas, i, (i + 1) % REPLICAS);
            }
        }
        let first = replicas[0].record_json();
        let conflicts = replicas[0].conflicts();
        let projection = project(&replicas[0]).expect("project");
        let mut heads0 = replicas[0].heads();
        heads0.sort();
        for r in &mut replicas[1..] {
            let mut heads = r.heads();
            heads.sort();
            prop_assert_eq!(&heads, &heads0);
            prop_assert_eq!(&r.record_json(), &first);
            prop_assert_eq!(&r.conflicts(), &conflicts);
            prop_assert_eq!(&project(r).expect("project"), &projection);
        }
        let h: Household = replicas[0].read().expect("read");
        for v in &added_visits {
            prop_assert!(h.visits.contains_key(v), "visit {} lost", v);
        }
        for m in &added_members {
            prop_assert!(h.members.contains_key(m), "member {} lost", m);
        }
    }
}
