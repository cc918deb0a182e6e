//! Property: up to six devices (workers of two grids and a dispatcher) work through random
//! offline/online schedules against a real server; after everyone reconnects, every replica
//! equals the server's copy, nobody holds a document outside its scope, and no edit is lost.
//! `GRIDSYNC_SOAK_CASES=N` runs a longer soak.

use gridsync_core::records::{Case, CaseSource, Household, Residence, Urgency, Visit};
use gridsync_proto::{DocId, RecordId};
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
}

fn step(devices: usize) -> impl Strategy<Value = Step> {
    let d = 0..devices;
    prop_oneof![
        d.clone().prop_map(|device| Step::NewHousehold { device }),
        (d.clone(), any::<usize>()).prop_map(|(device, pick)| Step::AddVisit { device, pick }),
        (d.clone(), any::<usize>(), 0u8..3).prop_map(|(device, pick, value)| Step::SetAddress {
            device,
            pick,
            value
        }),
        d.clone().prop_map(|device| Step::NewCase { device }),
        (d.clone(), any::<usize>(), 0u8..3).prop_map(|(device, pick, value)| Step::EditCase {
            device,
            pick,
            value
        }),
        d.clone().prop_map(|device| Step::Sync { device }),
        d.prop_map(|device| Step::Sync { device }),
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
    let server = TestServer::start().await;
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
    let mut created: Vec<DocId> = Vec::new();
    for s in steps {
        match s {
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
                    p.store
                        .update::<Case>(*cid, |c| c.description.push_str(&format!(" 补充{value}")))
                        .await
                        .expect("edit case");
                }
            }
            Step::Sync { device } => {
                phones[device].sync().await;
            }
        }
    }
    // Everyone reconnects; two rounds so every device sees everyone's last pushes.
    for _ in 0..2 {
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
    for (hid, vid) in &visits {
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
