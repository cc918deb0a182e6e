//! Property: up to six devices (workers of two grids and a dispatcher) work through random
//! offline/online schedules against a real server, while some record work the server refuses
//! (outside their scope), stores get copied (a restored backup, a cloned phone: two replicas
//! with one actor), and the server takes in documents of a newer schema that phones read only
//! after they upgrade. After everyone upgrades and reconnects, every replica equals the
//! server's copy, nobody holds a document outside its scope, no edit is lost, and whatever
//! did not sync is set aside with its reason. `GRIDSYNC_SOAK_CASES=N` runs a longer soak.

use gridsync_core::records::{Case, CaseSource, Household, Residence, Urgency, Visit};
use gridsync_proto::{DocId, RecordId};
use gridsync_server::Storage;
use gridsync_server::auth::Role;
use proptest::prelude::*;

use crate::harness::{GRID_A, GRID_B, Phone, TOWN, TestServer, assert_converged, code};

#[derive(Debug, Clone)]
enum Step {
    NewHousehold {
        device: usize,
    },
    AddVisit {
        device: usize,
        pick: usize,
    },
    SetAddress {
        device: usize,
        pick: usize,
        value: u8,
    },
    NewCase {
        device: usize,
    },
    EditCase {
        device: usize,
        pick: usize,
        value: u8,
    },
    Sync {
        device: usize,
    },
    /// Records a household outside the device's scope (the server refuses it).
    Refused {
        device: usize,
    },
    /// Copies a device's store into a new replica (same device, same actor).
    Clone {
        device: usize,
    },
    /// The server takes in a case of the next schema (a rolling upgrade).
    FutureCase,
    /// A device upgrades to a build that reads the next schema.
    Upgrade {
        device: usize,
    },
    /// A device sends a hand-built change that breaks a rule (deletes a visit, writes an
    /// unknown field, blanks the address); the server refuses it.
    Hostile {
        device: usize,
        pick: usize,
        kind: u8,
    },
}

fn step(devices: usize) -> impl Strategy<Value = Step> {
    let d = 0..devices;
    prop_oneof![
        3 => d.clone().prop_map(|device| Step::NewHousehold { device }),
        3 => (d.clone(), any::<usize>()).prop_map(|(device, pick)| Step::AddVisit { device, pick }),
        3 => (d.clone(), any::<usize>(), 0u8..3).prop_map(|(device, pick, value)| Step::SetAddress {
            device,
            pick,
            value
        }),
        3 => d.clone().prop_map(|device| Step::NewCase { device }),
        3 => (d.clone(), any::<usize>(), 0u8..3).prop_map(|(device, pick, value)| Step::EditCase {
            device,
            pick,
            value
        }),
        3 => d.clone().prop_map(|device| Step::Sync { device }),
        3 => d.clone().prop_map(|device| Step::Sync { device }),
        1 => d.clone().prop_map(|device| Step::Refused { device }),
        1 => (0..devices + 2).prop_map(|device| Step::Clone { device }),
        1 => Just(Step::FutureCase),
        1 => (0..devices + 2).prop_map(|device| Step::Upgrade { device }),
        2 => (d.clone(), any::<usize>(), 0u8..3).prop_map(|(device, pick, kind)| Step::Hostile {
            device,
            pick,
            kind
        }),
    ]
}

fn grid_of(device: usize) -> &'static str {
    if device.is_multiple_of(2) {
        GRID_A
    } else {
        GRID_B
    }
}

async fn run(devices: usize, steps: Vec<Step>) {
    let server = TestServer::start_upgraded().await;
    let mut phones = Vec::new();
    for i in 0..devices {
        // The last device of a group of 3+ is a dispatcher who sees the whole town.
        let phone = if devices >= 3 && i == devices - 1 {
            Phone::enroll(&server, "调度", Role::Dispatcher, &[TOWN]).await
        } else {
            Phone::enroll(&server, &format!("网格员{i}"), Role::Worker, &[grid_of(i)]).await
        };
        phones.push(phone);
    }
    let mut visits: Vec<(DocId, RecordId)> = Vec::new();
    let mut photos: std::collections::BTreeMap<DocId, usize> = Default::default();
    let mut created: Vec<DocId> = Vec::new();
    let mut refused: Vec<(usize, DocId)> = Vec::new();
    let mut orders = 0;
    for s in steps {
        // Steps name devices by number; copies made on the way take numbers after the rest.
        let s = match s {
            Step::Clone { device } => Step::Clone {
                device: device % phones.len(),
            },
            Step::Upgrade { device } => Step::Upgrade {
                device: device % phones.len(),
            },
            other => other,
        };
        match s {
            Step::Refused { device } => {
                let elsewhere = if phones[device].scopes[0].as_str() == TOWN {
                    "33010200201001002"
                } else if grid_of(device) == GRID_A {
                    GRID_B
                } else {
                    GRID_A
                };
                let id = phones[device]
                    .store
                    .create(
                        code(elsewhere),
                        &Household::new("别处", Residence::Permanent),
                    )
                    .await
                    .expect("create elsewhere");
                refused.push((device, id));
            }
            Step::Clone { device } => {
                let copy = phones[device].copy(&server).await;
                phones.push(copy);
            }
            Step::FutureCase => {
                orders += 1;
                let intake = server
                    .storage
                    .service_device(gridsync_server::Service::Intake)
                    .await
                    .expect("intake");
                let doc = crate::liveness::future_case(intake, &code(GRID_A));
                let (id, _) = server
                    .storage
                    .create_intake_case("hotline12345", &format!("F-{orders}"), doc)
                    .await
                    .expect("future case");
                created.push(id);
            }
            Step::Upgrade { device } => {
                phones[device].upgrade().await;
            }
            Step::NewHousehold { device } => {
                let scope = if phones[device].scopes[0].as_str() == TOWN {
                    GRID_A
                } else {
                    grid_of(device)
                };
                let id = phones[device]
                    .store
                    .create(
                        code(scope),
                        &Household::new(format!("{device} 号楼"), Residence::Permanent),
                    )
                    .await
                    .expect("create household");
                created.push(id);
            }
            Step::AddVisit { device, pick } => {
                let p = &phones[device];
                let ids = p
                    .store
                    .doc_ids(gridsync_proto::DocType::Household, None)
                    .await
                    .expect("ids");
                if ids.is_empty() {
                    continue;
                }
                let hid = ids[pick % ids.len()];
                let vid = RecordId::new();
                p.store
                    .update::<Household>(hid, |h| {
                        h.visits.insert(
                            vid,
                            Visit {
                                worker: format!("网格员{device}"),
                                at: 1,
                                gps: None,
                                purpose: "日常走访".into(),
                                findings: String::new(),
                                photos: Default::default(),
                                cases: vec![],
                                author: None,
                            },
                        );
                    })
                    .await
                    .expect("visit");
                visits.push((hid, vid));
            }
            Step::SetAddress {
                device,
                pick,
                value,
            } => {
                let p = &phones[device];
                let ids = p
                    .store
                    .doc_ids(gridsync_proto::DocType::Household, None)
                    .await
                    .expect("ids");
                if let Some(hid) = ids.get(pick % ids.len().max(1)) {
                    p.store
                        .update::<Household>(*hid, |h| h.address = format!("地址 {value}"))
                        .await
                        .expect("address");
                }
            }
            Step::NewCase { device } => {
                let scope = if phones[device].scopes[0].as_str() == TOWN {
                    GRID_B
                } else {
                    grid_of(device)
                };
                let id = phones[device]
                    .store
                    .create(
                        code(scope),
                        &Case {
                            title: format!("事件 {device}"),
                            source: CaseSource::Inspection,
                            category: "01".into(),
                            subcategory: "0101".into(),
                            location: None,
                            address: "某处".into(),
                            description: "描述".into(),
                            urgency: Urgency::Normal,
                            reported_by: format!("网格员{device}"),
                            reported_at: 1,
                            parties: Default::default(),
                            photos: Default::default(),
                            events: Default::default(),
                            redactions: Default::default(),
                        },
                    )
                    .await
                    .expect("case");
                created.push(id);
            }
            Step::EditCase {
                device,
                pick,
                value,
            } => {
                let p = &phones[device];
                let ids = p
                    .store
                    .doc_ids(gridsync_proto::DocType::Case, None)
                    .await
                    .expect("ids");
                if let Some(cid) = ids.get(pick % ids.len().max(1)) {
                    // Anyone who may write a case adds photos; its report is its reporter's.
                    crate::harness::add_case_photo(p, *cid, value).await;
                    *photos.entry(*cid).or_default() += 1;
                }
            }
            Step::Sync { device } => {
                phones[device].sync().await;
            }
            Step::Hostile { device, pick, kind } => {
                let p = &phones[device];
                let ids = p
                    .store
                    .doc_ids(gridsync_proto::DocType::Household, None)
                    .await
                    .expect("ids");
                let Some(hid) = ids.get(pick % ids.len().max(1)).copied() else {
                    continue;
                };
                if server.record(hid).await.is_none() {
                    continue; // not on the server yet: nothing to attack
                }
                // Synced first, so the change depends only on what the server holds.
                p.sync().await;
                let before = server
                    .storage
                    .load(hid)
                    .await
                    .expect("load")
                    .map(|mut d| d.heads());
                let held: Household = p.store.read(hid).await.expect("read");
                let victim = held.visits.keys().next().map(ToString::to_string);
                let status = crate::trust::hostile_push(&server, p, hid, |am| {
                    use automerge::transaction::Transactable;
                    let rec = crate::trust::obj_at(am, "");
                    match (kind, &victim) {
                        (0, Some(v)) => {
                            let visits = crate::trust::obj_at(am, "visits");
                            am.delete(&visits, v.as_str()).expect("delete");
                        }
                        (1, _) => am.put(&rec, "hidden", "x").expect("put"),
                        _ => am.put(&rec, "address", "").expect("put"),
                    }
                })
                .await;
                // Refused, or (when the phone still holds work of its own the server lacks) sent
                // to the sync protocol: either way nothing of it is stored.
                assert!(
                    matches!(
                        status,
                        gridsync_proto::AckStatus::Rejected { .. }
                            | gridsync_proto::AckStatus::NeedSync
                    ),
                    "a hostile change was taken: {status:?}"
                );
                let after = server
                    .storage
                    .load(hid)
                    .await
                    .expect("load")
                    .map(|mut d| d.heads());
                assert_eq!(before, after, "a hostile change was stored");
            }
        }
    }
    // Everyone upgrades and reconnects; three rounds so every device sees everyone's last
    // pushes (a copy that finds its actor taken needs one more).
    for p in &mut phones {
        p.upgrade().await;
    }
    for _ in 0..3 {
        for p in &phones {
            p.sync().await;
        }
    }
    let refs: Vec<&Phone> = phones.iter().collect();
    assert_converged(&server, &refs).await;
    for id in &created {
        assert!(
            server.record(*id).await.is_some(),
            "created document {id} lost"
        );
    }
    for (device, id) in &refused {
        assert!(
            server.record(*id).await.is_none(),
            "refused {id} was stored"
        );
        let aside = phones[*device].store.set_aside().await.expect("set aside");
        assert!(
            aside
                .iter()
                .any(|r| r.doc == *id && r.reason.starts_with("out_of_scope")),
            "refused {id} is not kept and shown on its phone: {aside:?}"
        );
    }
    for (cid, n) in &photos {
        let (json, _) = server.record(*cid).await.expect("case");
        let stored = json["photos"].as_object().map_or(0, |m| m.len());
        assert!(stored >= *n, "case {cid}: {stored} photos of {n}");
    }
    // A visit to a refused household stays with it on the phone.
    for (hid, vid) in visits
        .iter()
        .filter(|(h, _)| !refused.iter().any(|(_, r)| r == h))
    {
        let (json, _) = server.record(*hid).await.expect("household");
        assert!(
            json["visits"].get(vid.to_string()).is_some(),
            "visit {vid} lost"
        );
    }
}

fn cases() -> u32 {
    std::env::var("GRIDSYNC_SOAK_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_offline_schedules_converge(
        (devices, steps) in (1usize..=6).prop_flat_map(|n| (Just(n), proptest::collection::vec(step(n), 1..30)))
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(run(devices, steps));
    }
}
