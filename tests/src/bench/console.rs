//! The console's inbox with many cases: `console_inbox_ms_10k_cases` is the median time for
//! a signed-in dispatcher's `GET /console/` (session check, inbox query with its count, the
//! page rendered) with 10,000 cases in the town, measured over HTTP on loopback against an
//! in-process server; `console_inbox_query_ms_10k_cases` is the storage query alone.

use std::time::Instant;

use anyhow::{Result, ensure};
use gridsync_core::Document;
use gridsync_core::clock::now_ms;
use gridsync_core::workflow::{Action, Actor, Role as WorkflowRole, act};
use gridsync_proto::{DeviceId, DocId, DocPush, GridCode};
use gridsync_server::auth::{Device, Role};
use gridsync_server::storage::Receipt;
use gridsync_server::storage::console::{ConsoleRole, ConsoleStorage, InboxQuery};
use gridsync_server::{Config, SqliteStorage, Storage};
use serde_bytes::ByteBuf;
use serde_json::{Map, Value, json};

use crate::LocalServer;
use crate::console::{ConsoleClient, TEST_PASSWORD, test_user};

const TOWN: &str = "330102001";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Stores `n` reported cases over 50 grids, through the merge path in batches.
async fn fill(storage: &SqliteStorage, n: usize) -> Result<()> {
    let grids: Vec<GridCode> = (1..=50)
        .map(|g| GridCode::parse(&format!("33010200101001{g:03}")))
        .collect::<Result<_, _>>()?;
    let devices: Vec<Device> = grids
        .iter()
        .map(|g| Device {
            id: DeviceId::new(),
            name: "网格员".into(),
            role: Role::Worker,
            scopes: vec![g.clone()],
            department: None,
        })
        .collect();
    let mut i = 0;
    while i < n {
        let d = &devices[(i / 200) % devices.len()];
        let mut pushes = Vec::new();
        for _ in 0..200.min(n - i) {
            let actor = Actor {
                name: "网格员".into(),
                role: WorkflowRole::Worker,
                dept: None,
            };
            let mut c = super::storm::case(i, &actor)?;
            let at = now_ms() - (i as i64) * 60_000;
            c.reported_at = at;
            c.events.clear();
            act(&mut c, Action::Report, &actor, at, "", Default::default())?;
            let mut doc = Document::create(DocId::new(), d.scopes[0].clone(), d.id, &c)?;
            pushes.push(DocPush {
                doc: doc.id(),
                header: Some(doc.header().clone()),
                heads: doc.heads().iter().map(|h| h.0).collect(),
                changes: doc
                    .changes_since(&[])
                    .iter()
                    .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                    .collect(),
                sync: None,
            });
            i += 1;
        }
        let merged = storage.merge(d, &pushes, Receipt::now(0)).await?;
        ensure!(
            merged
                .acks
                .iter()
                .all(|a| matches!(a.status, gridsync_proto::AckStatus::Stored { .. })),
            "a bench case was refused: {:?}",
            merged
                .acks
                .iter()
                .find(|a| !matches!(a.status, gridsync_proto::AckStatus::Stored { .. }))
        );
    }
    Ok(())
}

/// `console_inbox_*` metrics.
pub async fn console_scenario(quick: bool, out: &mut Map<String, Value>) -> Result<()> {
    let n = if quick { 500 } else { 10_000 };
    let dir = tempfile::tempdir()?;
    let storage = SqliteStorage::open(dir.path()).await?;
    fill(&storage, n).await?;
    let town = GridCode::parse(TOWN)?;
    test_user(
        &storage,
        "bench",
        "调度",
        ConsoleRole::Dispatcher,
        None,
        std::slice::from_ref(&town),
    )
    .await?;
    let server = LocalServer::serve(storage, Config::default()).await?;
    let mut client = ConsoleClient::new(&server.url)?;
    let signed = client.sign_in("bench", TEST_PASSWORD).await?;
    ensure!(signed.status == 303, "bench sign-in: {}", signed.status);
    let first = client.get("/console/").await?;
    ensure!(first.status == 200, "inbox: {}", first.status);
    ensure!(
        first.body.contains(&format!("共 {n} 件")),
        "the inbox does not count {n} cases"
    );
    let mut page_ms = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let a = client.get("/console/").await?;
        page_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        ensure!(a.status == 200, "inbox: {}", a.status);
    }
    let mut query_ms = Vec::new();
    let q = InboxQuery {
        towns: vec![town],
        now: now_ms(),
        limit: 50,
        ..Default::default()
    };
    for _ in 0..21 {
        let t = Instant::now();
        let (rows, total) = server.storage.inbox(&q).await?;
        query_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        ensure!(
            rows.len() == 50 && total == n as i64,
            "inbox query: {} of {total}",
            rows.len()
        );
    }
    // The same names in quick mode (500 cases): `console_inbox_cases` says how many.
    out.insert("console_inbox_cases".into(), json!(n));
    out.insert("console_inbox_ms_10k_cases".into(), json!(median(page_ms)));
    out.insert(
        "console_inbox_query_ms_10k_cases".into(),
        json!(median(query_ms)),
    );
    out.insert("console_inbox_page_bytes".into(), json!(first.body.len()));
    Ok(())
}
