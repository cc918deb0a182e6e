//! The benchmark scenarios behind `gridsync-bench`. Each adds named metrics to one JSON
//! object; `quick` shrinks every scenario so CI can check that it runs and that its results
//! are right, without timing anything.

mod console;
mod hot_doc;
mod photo;
mod register;
mod storm;

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use gridsync_core::Store;
use gridsync_core::records::Household;
use gridsync_core::sample;
use gridsync_proto::GridCode;
use serde_json::{Map, Value, json};

/// Sizes for one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Households in the store scenarios.
    pub households: usize,
    /// Residents per household.
    pub residents: usize,
    /// Visits per household.
    pub visits: usize,
}

impl Sizes {
    /// The sizes the targets are stated for, or small ones for CI.
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                households: 50,
                residents: 3,
                visits: 24,
            }
        } else {
            Self {
                households: 500,
                residents: 3,
                visits: 24,
            }
        }
    }
}

fn ms(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

fn grid() -> GridCode {
    GridCode::parse("33010200101001002").unwrap_or_else(|_| unreachable!("constant is valid"))
}

/// Store scenarios: bulk import, cold open and list, one household's size, and the baseline of
/// listing by loading every document instead of reading the projection.
pub async fn store_scenarios(sizes: Sizes, out: &mut Map<String, Value>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("phone.db");
    let households: Vec<Household> = (0..sizes.households as u64)
        .map(|i| sample::household(i, sizes.residents, sizes.visits))
        .collect();
    let n = sizes.households;

    let store = Store::open(&path).await?;
    let start = Instant::now();
    let ids = store.create_many(grid(), &households).await?;
    out.insert(format!("bulk_import_{n}_households_ms"), json!(ms(start)));
    ensure!(ids.len() == n, "imported {} of {n}", ids.len());
    let mut one = store.load(ids[0]).await?;
    out.insert("household_doc_bytes".into(), json!(one.save().len()));
    store.close().await;

    let start = Instant::now();
    let store = Store::open(&path).await?;
    let rows = store.households(Some(&grid())).await?;
    out.insert(
        format!("store_open_and_list_{n}_households_ms"),
        json!(ms(start)),
    );
    ensure!(rows.len() == n, "listed {} of {n}", rows.len());
    ensure!(
        rows.iter().all(|r| r.visit_count == sizes.visits as i64),
        "every household lists its visits"
    );

    // Baseline: the same list built by loading and reading every document.
    let start = Instant::now();
    let mut read = 0;
    for id in store
        .doc_ids(gridsync_proto::DocType::Household, None)
        .await?
    {
        let h: Household = store.read(id).await?;
        read += usize::from(!h.address.is_empty());
    }
    out.insert(
        format!("baseline_list_{n}_by_loading_docs_ms"),
        json!(ms(start)),
    );
    ensure!(read == n, "baseline read {read} of {n}");

    let start = Instant::now();
    let hits = store.search_residents("王").await?;
    out.insert("search_resident_by_name_ms".into(), json!(ms(start)));
    ensure!(!hits.is_empty(), "a common surname finds residents");
    store.close().await;
    Ok(())
}

/// The scenario names `run` accepts in `only`.
pub const SCENARIOS: &[&str] = &[
    "hostile", "store", "sync", "backlog", "photo", "storm", "hot_doc", "console", "register",
];

/// Runs every scenario (or only the one named `only`) and returns the one JSON object of
/// metrics.
pub async fn run(quick: bool, only: Option<&str>) -> Result<Value> {
    let mut out = Map::new();
    out.insert("quick".into(), json!(quick));
    let on = |name: &str| only.is_none_or(|o| o == name);
    // First, while the process is fresh: its peak memory is then the server's work, not heap
    // kept from earlier scenarios.
    if on("hostile") {
        hostile_push_scenario(quick, &mut out)
            .await
            .context("hostile push scenario")?;
    }
    if on("store") {
        import_breakdown(Sizes::new(quick), &mut out)?;
        store_scenarios(Sizes::new(quick), &mut out)
            .await
            .context("store scenarios")?;
    }
    if on("sync") {
        sync_scenarios(quick, &mut out)
            .await
            .context("sync scenarios")?;
    }
    if on("backlog") {
        backlog_scenario(quick, &mut out)
            .await
            .context("backlog scenario")?;
    }
    if on("photo") {
        photo::photo_scenario(quick, &mut out)
            .await
            .context("photo scenario")?;
    }
    if on("storm") {
        storm::storm_scenario(quick, &mut out)
            .await
            .context("storm scenario")?;
    }
    if on("hot_doc") {
        hot_doc::hot_doc_scenario(quick, &mut out)
            .await
            .context("hot document scenario")?;
    }
    if on("console") {
        console::console_scenario(quick, &mut out)
            .await
            .context("console scenario")?;
    }
    if on("register") {
        register::register_scenario(quick, &mut out)
            .await
            .context("register scenario")?;
    }
    Ok(Value::Object(out))
}

/// Splits bulk import into its parts (build documents, save them, project them) so a missed
/// target says where the time goes.
pub fn import_breakdown(sizes: Sizes, out: &mut Map<String, Value>) -> Result<()> {
    use gridsync_core::Document;
    use gridsync_core::projection::project;
    let households: Vec<Household> = (0..sizes.households as u64)
        .map(|i| sample::household(i, sizes.residents, sizes.visits))
        .collect();
    let device = gridsync_proto::DeviceId::new();
    let start = Instant::now();
    let mut docs = Vec::with_capacity(households.len());
    for h in &households {
        docs.push(Document::create(
            gridsync_proto::DocId::new(),
            grid(),
            device,
            h,
        )?);
    }
    out.insert("import_part_build_docs_ms".into(), json!(ms(start)));
    let start = Instant::now();
    let mut bytes = 0;
    for d in &mut docs {
        bytes += d.save().len();
    }
    out.insert("import_part_save_docs_ms".into(), json!(ms(start)));
    let start = Instant::now();
    for d in &docs {
        project(d)?;
    }
    out.insert("import_part_project_docs_ms".into(), json!(ms(start)));
    ensure!(bytes > 0, "saved something");
    Ok(())
}

/// Automerge's sync protocol for one document between a device and the server, the way
/// automerge-repo runs it (one exchange per document, states persisted between connections).
/// Returns (round trips, message bytes). Framing is not counted, which favours the baseline.
fn perdoc_exchange(
    dev: &mut automerge::AutoCommit,
    srv: &mut automerge::AutoCommit,
) -> Result<(usize, usize)> {
    use automerge::sync::{Message, State, SyncDoc};
    let shared = |d: &mut automerge::AutoCommit| State {
        shared_heads: d.get_heads(),
        ..State::default()
    };
    // A reconnect: each side knows what it shared before (a fresh session otherwise).
    let (mut ds, mut ss) = (shared(srv), shared(srv));
    ds.shared_heads
        .retain(|h| dev.get_change_by_hash(h).is_some());
    let (mut trips, mut bytes) = (0, 0);
    for _ in 0..50 {
        let mut any = false;
        if let Some(m) = dev.sync().generate_sync_message(&mut ds) {
            let enc = m.encode();
            bytes += enc.len();
            srv.sync()
                .receive_sync_message(&mut ss, Message::decode(&enc)?)?;
            any = true;
        }
        if let Some(m) = srv.sync().generate_sync_message(&mut ss) {
            let enc = m.encode();
            bytes += enc.len();
            dev.sync()
                .receive_sync_message(&mut ds, Message::decode(&enc)?)?;
            any = true;
        }
        if !any {
            break;
        }
        trips += 1;
    }
    ensure!(
        dev.get_heads()
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            == srv.get_heads().iter().collect(),
        "per-document sync converged"
    );
    Ok((trips, bytes))
}

/// The per-document baseline over `ids`, on copies of the phone's and the server's documents:
/// (round trips in all, message bytes, sequential rounds of the slowest document).
async fn perdoc_baseline(
    phone: &gridsync_core::Store,
    server: &crate::LocalServer,
    ids: &[gridsync_proto::DocId],
) -> Result<(usize, usize, usize)> {
    use gridsync_server::Storage;
    let (mut trips, mut bytes, mut rounds) = (0, 0, 0);
    for id in ids {
        let mut dev = phone.load(*id).await?.automerge().clone();
        let mut srv = server
            .storage
            .load(*id)
            .await?
            .context("server doc")?
            .automerge()
            .clone();
        let (t, b) = perdoc_exchange(&mut dev, &mut srv)?;
        trips += t;
        bytes += b;
        rounds = usize::max(rounds, t);
    }
    Ok((trips, bytes, rounds))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Sync scenarios: a no-op sync with many documents in scope, a day of work both ways, and
/// the per-document Automerge sync baseline on the same workloads, measured in the same run.
pub async fn sync_scenarios(quick: bool, out: &mut Map<String, Value>) -> Result<()> {
    use gridsync_core::records::Visit;
    use gridsync_core::sync::SyncSession;

    let n_docs: usize = if quick { 200 } else { 10_000 };
    let dir = tempfile::tempdir()?;
    let (server, (a, client_a), (b, client_b)) = server_and_two_workers(dir.path()).await?;

    // --- No-op sync with n_docs in scope.
    let households: Vec<Household> = (0..n_docs as u64)
        .map(|i| sample::household(i, 1, 0))
        .collect();
    let mut ids = Vec::new();
    for chunk in households.chunks(1000) {
        ids.extend(a.create_many(grid(), chunk).await?);
    }
    let start = Instant::now();
    let first = client_a.sync(&a, 10_000).await?;
    out.insert(format!("initial_push_{n_docs}_docs_ms"), json!(ms(start)));
    ensure!(first.acked == n_docs, "pushed {} of {n_docs}", first.acked);
    let start = Instant::now();
    let pulled = client_b.sync(&b, 10_000).await?;
    out.insert(
        format!("new_phone_first_sync_{n_docs}_docs_ms"),
        json!(ms(start)),
    );
    out.insert(
        "new_phone_first_sync_round_trips".into(),
        json!(pulled.round_trips),
    );
    ensure!(
        pulled.pulled_docs == n_docs,
        "new phone pulled {} of {n_docs}",
        pulled.pulled_docs
    );
    let noop = client_a.sync(&a, 10).await?;
    ensure!(
        noop.round_trips == 1 && noop.pulled_changes == 0,
        "a no-op is one empty round trip: {noop:?}"
    );
    out.insert("noop_docs_in_scope".into(), json!(n_docs));
    out.insert("noop_sync_round_trips".into(), json!(noop.round_trips));
    out.insert("noop_sync_request_bytes".into(), json!(noop.bytes_sent));
    out.insert(
        "noop_sync_response_bytes".into(),
        json!(noop.bytes_received),
    );
    // Server time: the raw no-op request over loopback HTTP, median of 21.
    let (req, _) = SyncSession::new(a.clone()).build_request().await?;
    let body = req.encode();
    let token = a.meta("device_token").await?.context("token")?;
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    for _ in 0..21 {
        let start = Instant::now();
        let resp = http
            .post(format!("{}/v1/sync", server.url))
            .bearer_auth(&token)
            .header("content-type", gridsync_proto::CONTENT_TYPE)
            .body(body.clone())
            .send()
            .await?;
        ensure!(
            resp.status().is_success(),
            "no-op request failed: {}",
            resp.status()
        );
        let _ = resp.bytes().await?;
        times.push(ms(start));
    }
    out.insert("noop_sync_ms".into(), json!(median(times)));
    let mut times = Vec::new();
    for _ in 0..21 {
        let start = Instant::now();
        client_a.sync(&a, 10).await?;
        times.push(ms(start));
    }
    out.insert("noop_sync_client_total_ms".into(), json!(median(times)));

    // Baseline: one Automerge sync exchange per document on reconnect.
    let (trips, bytes, _) = perdoc_baseline(&a, &server, &ids).await?;
    out.insert("perdoc_noop_sync_round_trips".into(), json!(trips));
    out.insert("perdoc_noop_sync_bytes".into(), json!(bytes));

    // --- A day of work: 40 changes over 20 documents from each side.
    let day_docs = &ids[..20];
    let visit = |who: &str, n: usize| Visit {
        worker: who.into(),
        at: 1_760_000_000_000 + n as i64,
        gps: Some(gridsync_core::records::Gps::new(30.25, 120.16)),
        purpose: "日常走访".into(),
        findings: format!("第 {n} 次走访，情况正常"),
        photos: Default::default(),
        cases: Vec::new(),
        author: None,
    };
    for (n, id) in day_docs.iter().enumerate() {
        b.update::<Household>(*id, |h| {
            h.visits
                .insert(gridsync_proto::RecordId::new(), visit("吴网格", n));
        })
        .await?;
        b.update::<Household>(*id, |h| {
            h.flags.insert("low_income".into());
        })
        .await?;
    }
    client_b.sync(&b, 10).await?;
    // Heads before A's day: everything after them crosses the wire in A's sync.
    let mut before = Vec::new();
    for id in day_docs {
        before.push(a.load(*id).await?.heads());
    }
    for (n, id) in day_docs.iter().enumerate() {
        a.update::<Household>(*id, |h| {
            h.visits
                .insert(gridsync_proto::RecordId::new(), visit("周网格", n));
        })
        .await?;
        a.update::<Household>(*id, |h| h.address.push_str(" (已核实)"))
            .await?;
    }
    // Baseline first, on copies of the same state.
    let (trips, bytes, rounds) = perdoc_baseline(&a, &server, day_docs).await?;
    out.insert("perdoc_sync_round_trips".into(), json!(trips));
    out.insert("perdoc_sync_latency_rounds".into(), json!(rounds));
    out.insert("perdoc_sync_wire_bytes".into(), json!(bytes));
    let day = client_a.sync(&a, 10).await?;
    let (mut raw, mut changes) = (0usize, 0usize);
    for (id, heads) in day_docs.iter().zip(&before) {
        // A's 40 own changes and B's 40, as raw Automerge change bytes.
        for c in a.load(*id).await?.changes_since(heads) {
            raw += c.raw_bytes().len();
            changes += 1;
        }
    }
    ensure!(changes == 80, "the day moved 80 changes, found {changes}");
    ensure!(
        day.pulled_changes == 40,
        "A received B's 40 changes: {day:?}"
    );
    ensure!(day.acked == 20, "A's 20 documents acknowledged: {day:?}");
    out.insert("day_sync_changes".into(), json!(changes));
    out.insert("day_sync_round_trips".into(), json!(day.round_trips));
    out.insert(
        "day_sync_wire_bytes".into(),
        json!(day.bytes_sent + day.bytes_received),
    );
    out.insert("day_sync_raw_change_bytes".into(), json!(raw));
    Ok(())
}

/// A phone's store and its client.
type BenchPhone = (Store, gridsync_core::client::SyncClient);

/// A server on loopback with its data under `dir`, and two workers' phones of one grid.
async fn server_and_two_workers(
    dir: &std::path::Path,
) -> Result<(crate::LocalServer, BenchPhone, BenchPhone)> {
    let server =
        crate::LocalServer::start(&dir.join("server"), gridsync_server::Config::default()).await?;
    let retry = gridsync_core::client::RetryPolicy::default();
    let a = server
        .phone(
            &dir.join("a.db"),
            "周网格",
            gridsync_server::auth::Role::Worker,
            &[grid()],
            retry,
        )
        .await?;
    let b = server
        .phone(
            &dir.join("b.db"),
            "吴网格",
            gridsync_server::auth::Role::Worker,
            &[grid()],
            retry,
        )
        .await?;
    Ok((server, a, b))
}

/// A long patrol recorded offline, one change per GPS fix (30,000; 6,000 in quick mode, still
/// more than one request's slice): how long its sync takes in slices and how many round trips,
/// and another phone's pull of it. Checks every point arrived.
pub async fn backlog_scenario(quick: bool, out: &mut Map<String, Value>) -> Result<()> {
    use gridsync_core::records::Inspection;

    let points: usize = if quick { 6_000 } else { 30_000 };
    let dir = tempfile::tempdir()?;
    let (_server, (a, client_a), (b, client_b)) = server_and_two_workers(dir.path()).await?;
    let start = Instant::now();
    let mut doc = crate::long_patrol(a.device(), grid(), points)?;
    out.insert("backlog_record_ms".into(), json!(ms(start)));
    a.merge_bytes(&doc.save()).await?;
    let start = Instant::now();
    let up = client_a.sync(&a, 20).await?;
    out.insert("backlog_changes".into(), json!(points + 1));
    out.insert("backlog_sync_ms".into(), json!(ms(start)));
    out.insert("backlog_sync_round_trips".into(), json!(up.round_trips));
    out.insert("backlog_sync_bytes_up".into(), json!(up.bytes_sent));
    let start = Instant::now();
    let down = client_b.sync(&b, 20).await?;
    out.insert("backlog_pull_ms".into(), json!(ms(start)));
    out.insert("backlog_pull_round_trips".into(), json!(down.round_trips));
    let copy: Inspection = b.read(doc.id()).await?;
    ensure!(
        copy.track.len() == points && a.unsynced_count().await? == 0,
        "the patrol did not arrive whole: {} of {points} points",
        copy.track.len()
    );
    Ok(())
}

/// The process's peak resident memory since the last reset, in MiB (Linux `VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    proc_status_mb("VmHWM:")
}

/// One memory line of `/proc/self/status`, in MiB.
fn proc_status_mb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

/// The largest push the cost bounds allow (a patrol in changes of 20,000 operations, 5,000
/// fixes each, as many as fit under the document bound: 7, 140,000 operations; 2 in quick
/// mode), sent as one request of
/// prebuilt change bytes (the bench process then holds only those bytes, so its peak memory is
/// the server's plus those 2 MB), and meanwhile a worker of another grid syncing one
/// visit at a time: how long the big push takes, the small syncs' worst latency during it (and
/// alone, before it, as the baseline), and the peak memory during it.
pub async fn hostile_push_scenario(quick: bool, out: &mut Map<String, Value>) -> Result<()> {
    use gridsync_core::records::{Inspection, Residence};
    use gridsync_server::Storage;

    // As many changes at the per-change bound as fit under the document bound.
    let changes: usize = if quick {
        2
    } else {
        (gridsync_server::merge::cost::MAX_DOC_OPS as usize - 100)
            / gridsync_server::merge::cost::MAX_OPS_PER_CHANGE
    };
    let per_change = gridsync_server::merge::cost::MAX_OPS_PER_CHANGE / 4;
    let dir = tempfile::tempdir()?;
    let (server, (a, client_a), _) = server_and_two_workers(dir.path()).await?;
    let other_grid = GridCode::parse("33010200101001003")?;
    let (c, client_c) = server
        .phone(
            &dir.path().join("c.db"),
            "郑网格",
            gridsync_server::auth::Role::Worker,
            std::slice::from_ref(&other_grid),
            gridsync_core::client::RetryPolicy::default(),
        )
        .await?;
    let household = c
        .create(
            other_grid.clone(),
            &Household::new("9 号", Residence::Permanent),
        )
        .await?;
    client_c.sync(&c, 20).await?;
    let visit = |n: i64| {
        let c = &c;
        async move {
            c.update::<Household>(household, |h| {
                h.visits.insert(
                    gridsync_proto::RecordId::new(),
                    gridsync_core::records::Visit {
                        worker: "郑网格".into(),
                        at: 1_760_000_000_000 + n,
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
        }
    };
    let mut alone = Vec::new();
    for n in 0..5 {
        visit(n).await?;
        let start = Instant::now();
        client_c.sync(&c, 20).await?;
        alone.push(ms(start));
    }
    let request = {
        let mut doc = crate::long_patrol(a.device(), grid(), 0)?;
        crate::append_track_batches(&mut doc, changes * per_change, per_change)?;
        let heads = doc.heads().into_iter().map(|h| h.0).collect();
        gridsync_proto::SyncRequest {
            version: gridsync_proto::PROTOCOL_VERSION,
            device: a.device(),
            cursor: Default::default(),
            docs: vec![gridsync_proto::DocPush {
                doc: doc.id(),
                header: Some(doc.header().clone()),
                heads,
                changes: doc
                    .changes_since(&[])
                    .iter()
                    .map(|c| serde_bytes::ByteBuf::from(c.raw_bytes().to_vec()))
                    .collect(),
                sync: None,
            }],
            actor: serde_bytes::ByteBuf::from(a.actor_id().to_bytes().to_vec()),
            clock: gridsync_core::clock::now_ms(),
        }
    };
    let doc_id = request.docs[0].doc;
    let body = request.encode();
    drop(request);
    out.insert("hostile_push_request_bytes".into(), json!(body.len()));
    let token = a.meta("device_token").await?.context("enrolled")?;
    let url = format!("{}/v1/sync", server.url);
    drop(client_a);
    // Peak memory from here on (writing 5 to clear_refs resets VmHWM on Linux).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    out.insert(
        "rss_mb_before_hostile_push".into(),
        json!(proc_status_mb("VmRSS:")),
    );
    let start = Instant::now();
    let big = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(url)
            .header("content-type", gridsync_proto::CONTENT_TYPE)
            .bearer_auth(token)
            .body(body)
            .send()
            .await;
        let report = match resp {
            Ok(r) => r.bytes().await.map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        (report, ms(start))
    });
    let mut during = Vec::new();
    let mut n = 100;
    while !big.is_finished() {
        n += 1;
        visit(n).await?;
        let t = Instant::now();
        client_c.sync(&c, 20).await?;
        during.push(ms(t));
    }
    let (report, big_ms) = big.await?;
    let resp = gridsync_proto::SyncResponse::decode(&report?)?;
    ensure!(
        resp.acks.len() == 1
            && matches!(
                resp.acks[0].status,
                gridsync_proto::AckStatus::Stored { .. }
            ),
        "the largest allowed push was refused: {:?}",
        resp.acks
    );
    let stored: Inspection = server
        .storage
        .load(doc_id)
        .await?
        .context("the patrol is stored")?
        .read()?;
    ensure!(
        stored.track.len() == changes * per_change,
        "{} of {} points stored",
        stored.track.len(),
        changes * per_change
    );
    let worst = during.iter().copied().fold(0.0, f64::max);
    out.insert("hostile_push_ops".into(), json!(changes * per_change * 4));
    out.insert("hostile_push_largest_allowed_ms".into(), json!(big_ms));
    out.insert("small_push_ms_alone".into(), json!(median(alone)));
    out.insert("small_push_ms_during_hostile_push".into(), json!(worst));
    out.insert(
        "small_pushes_during_hostile_push".into(),
        json!(during.len()),
    );
    out.insert(
        "server_rss_peak_mb_hostile_push".into(),
        json!(peak_rss_mb()),
    );
    Ok(())
}
