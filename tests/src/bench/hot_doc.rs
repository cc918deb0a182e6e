//! A hot document: one household with a long history that a phone pushes to again and again
//! (as a case is worked on all day). The server's time per push (read, Automerge work,
//! commit: from its `/metrics` phases, in-process) with the document cache and without.

use std::time::Duration;

use anyhow::{Result, ensure};
use gridsync_core::Store;
use gridsync_core::client::{RetryPolicy, SyncClient};
use gridsync_core::records::{Household, Visit};
use gridsync_proto::{GridCode, RecordId};
use gridsync_server::auth::Role;
use gridsync_server::metrics::Phase;
use gridsync_server::storage::doc_cache::DocCacheLimits;
use gridsync_server::{Config, SqliteStorage, Storage};
use serde_json::{Map, Value, json};

use crate::LocalServer;

fn visit(n: usize) -> Visit {
    Visit {
        worker: "网格员".into(),
        at: gridsync_core::clock::now_ms(),
        gps: None,
        purpose: "日常走访".into(),
        findings: format!("第 {n} 次走访，情况正常"),
        photos: Default::default(),
        cases: Vec::new(),
        author: None,
    }
}

/// Runs the scenario with the cache at `limits`: returns (server ms per push, cache hits).
async fn pushes(history: usize, pushes: usize, limits: DocCacheLimits) -> Result<(f64, u64)> {
    let dir = tempfile::tempdir()?;
    let storage = SqliteStorage::open(&dir.path().join("server"))
        .await?
        .with_doc_cache(limits);
    let server = LocalServer::serve(storage, Config::default()).await?;
    let grid = GridCode::parse("33010200101001001")?;
    let code = server
        .enrollment("周网格", Role::Worker, std::slice::from_ref(&grid))
        .await?;
    let store = Store::open(&dir.path().join("phone.db")).await?;
    let client = SyncClient::new(&server.url, RetryPolicy::default())?;
    client.enroll(&store, &code).await?;
    let id = store
        .create(grid, &gridsync_core::sample::household(1, 3, 0))
        .await?;
    for n in 0..history {
        store
            .update::<Household>(id, |h| {
                h.visits.insert(RecordId::new(), visit(n));
            })
            .await?;
    }
    client.sync(&store, 20).await?;
    let phases = server.storage.phases();
    let spent = || -> f64 {
        [Phase::Read, Phase::Merge, Phase::Commit]
            .iter()
            .map(|p| phases.seconds(*p))
            .sum()
    };
    let (before, hits) = (spent(), server.storage.doc_cache_stats().hits);
    for n in 0..pushes {
        store
            .update::<Household>(id, |h| {
                h.visits.insert(RecordId::new(), visit(history + n));
            })
            .await?;
        client.sync(&store, 20).await?;
    }
    let ms = (spent() - before) * 1000.0 / pushes as f64;
    let hits = server.storage.doc_cache_stats().hits - hits;
    let stored = server
        .storage
        .households(None)
        .await?
        .into_iter()
        .find(|h| h.doc_id == id)
        .map(|h| h.visit_count);
    ensure!(
        stored == Some((history + pushes) as i64),
        "the server holds {stored:?} visits, not {}",
        history + pushes
    );
    server.storage.close().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok((ms, hits))
}

/// `hot_doc_*` metrics: a household with `history` visits pushed to one visit at a time.
pub async fn hot_doc_scenario(quick: bool, out: &mut Map<String, Value>) -> Result<()> {
    let (history, n) = if quick { (60, 10) } else { (1_000, 100) };
    let (cached, hits) = pushes(history, n, DocCacheLimits::default()).await?;
    let (uncached, hits_off) = pushes(history, n, DocCacheLimits::OFF).await?;
    out.insert("hot_doc_history".into(), json!(history));
    out.insert("hot_doc_pushes".into(), json!(n));
    out.insert("hot_doc_push_ms_cached".into(), json!(cached));
    out.insert("hot_doc_push_ms_uncached".into(), json!(uncached));
    out.insert("hot_doc_cache_hits".into(), json!(hits));
    out.insert("hot_doc_cache_hits_uncached".into(), json!(hits_off));
    Ok(())
}
