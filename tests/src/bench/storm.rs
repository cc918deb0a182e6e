//! The morning reconnect storm (issue: the county on PostgreSQL and a fast storm): N phones,
//! each back from a day offline with 20 new households (3 residents, then 2 visits each: 60
//! changes), two phones per grid, all sending their sync at once to one `gridsync-server`
//! process. Every phone's request is built (from a real phone store) before the clock starts,
//! so the figures are the server's: wall time until every phone has all 20 documents
//! acknowledged, per-phone latency, 503 answers, and the server process's CPU per change.
//! Also a new phone's first sync of a grid holding 500 households, 2,000 cases and 1,000
//! patrols.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use gridsync_core::Store;
use gridsync_core::client::{RetryPolicy, SyncClient};
use gridsync_core::records::{Case, CaseSource, Household, Inspection, Urgency, Visit};
use gridsync_core::sync::SyncSession;
use gridsync_core::workflow::{Action, Actor, Role as WorkflowRole, act};
use gridsync_proto::{AckStatus, CONTENT_TYPE, GridCode, RecordId, SyncResponse};
use gridsync_server::auth::{Role, new_enrollment_code, normalize_code, secret_hash};
use gridsync_server::{SqliteStorage, Storage};
use serde_json::{Map, Value, json};

/// The test build of the server CLI beside this binary.
pub(super) fn server_bin() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(|d| d.join("gridsync-test-server"))
        .filter(|p| p.exists())
        .context(
            "gridsync-test-server is not beside gridsync-bench: build both with \
             `cargo build --release -p gridsync-tests`",
        )
}

/// A `gridsync-server` process.
pub(super) struct ServerProcess {
    child: Child,
    pub(super) url: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    pub(super) fn start(data: &Path) -> Result<Self> {
        Self::start_on(data, None)
    }

    /// A server process on `database` (`postgres://...`), or on SQLite in `data`.
    pub(super) fn start_on(data: &Path, database: Option<&str>) -> Result<Self> {
        let mut command = Command::new(server_bin()?);
        command.arg("--data-dir").arg(data);
        if let Some(url) = database {
            command.args(["--database", url]);
        }
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the server")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        ensure!(url.starts_with("http://"), "server said {line:?}");
        Ok(Self { child, url })
    }

    /// The process's user + system CPU so far, from `/proc` (Linux), in milliseconds.
    fn cpu_ms(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some(ticks * 1000.0 / clock_ticks_per_second())
    }
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn grid(n: usize) -> GridCode {
    // 999 grids in one village; a storm of more phones shares them.
    GridCode::parse(&format!("33010200101001{:03}", n % 999 + 1))
        .unwrap_or_else(|e| panic!("grid code: {e}"))
}

/// One-time enrollment codes for workers of `grids`, one each.
async fn enrollments(data: &Path, grids: &[GridCode]) -> Result<Vec<String>> {
    enroll_codes(data, &workers(grids)).await
}

fn workers(grids: &[GridCode]) -> Vec<(Role, GridCode)> {
    grids.iter().map(|g| (Role::Worker, g.clone())).collect()
}

/// One-time enrollment codes, one per (role, scope), written into the server's data directory
/// before it starts.
pub(super) async fn enroll_codes(data: &Path, devices: &[(Role, GridCode)]) -> Result<Vec<String>> {
    enroll_codes_in(SqliteStorage::open(data).await?, devices).await
}

/// One-time enrollment codes written into `storage` (which is closed afterwards).
async fn enroll_codes_in<S: Storage>(
    storage: S,
    devices: &[(Role, GridCode)],
) -> Result<Vec<String>> {
    let mut codes = Vec::with_capacity(devices.len());
    for (i, (role, scope)) in devices.iter().enumerate() {
        let c = new_enrollment_code();
        storage
            .create_enrollment(
                &secret_hash(&normalize_code(&c)),
                &format!("{role}{i}"),
                *role,
                std::slice::from_ref(scope),
                None,
                None,
                i64::MAX,
            )
            .await?;
        codes.push(c);
    }
    storage.close().await;
    Ok(codes)
}

/// One phone's prepared sync: its token and the request body.
struct Prepared {
    token: String,
    body: Vec<u8>,
    docs: usize,
}

async fn prepare(dir: &Path, url: &str, code: &str, g: GridCode, i: usize) -> Result<Prepared> {
    let store = Store::open(&dir.join(format!("phone{i}.db"))).await?;
    let client = SyncClient::new(url, RetryPolicy::default())?;
    client.enroll(&store, code).await?;
    for h in 0..20u64 {
        let id = store
            .create(
                g.clone(),
                &gridsync_core::sample::household(i as u64 * 100 + h, 3, 0),
            )
            .await?;
        for v in 0..2 {
            store
                .update::<Household>(id, |hh| {
                    hh.visits.insert(
                        RecordId::new(),
                        Visit {
                            worker: "网格员".into(),
                            at: gridsync_core::clock::now_ms(),
                            gps: None,
                            purpose: "日常走访".into(),
                            findings: format!("第 {} 次", v + 1),
                            photos: Default::default(),
                            cases: Vec::new(),
                            author: None,
                        },
                    );
                })
                .await?;
        }
    }
    let token = store
        .meta("device_token")
        .await?
        .context("enrolled phone has a token")?;
    let (req, _outbox) = SyncSession::new(store.clone()).build_request().await?;
    let docs = req.docs.len();
    let body = req.encode();
    store.close().await;
    Ok(Prepared { token, body, docs })
}

/// Sends one phone's request until it is answered (503 and 429 wait `Retry-After`, or 1 s,
/// with jitter); returns the milliseconds it took and checks every document was stored.
async fn send(
    http: reqwest::Client,
    url: String,
    p: Arc<Prepared>,
    busy: Arc<AtomicU64>,
    start: Instant,
) -> Result<f64> {
    for _ in 0..200 {
        let resp = http
            .post(format!("{url}/v1/sync"))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .bearer_auth(&p.token)
            .body(p.body.clone())
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let status = resp.status().as_u16();
        if status == 503 || status == 429 {
            busy.fetch_add(1, Ordering::Relaxed);
            let wait: f64 = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1.0);
            let jitter = rand::random::<f64>() * 0.5;
            tokio::time::sleep(Duration::from_secs_f64(wait * (0.75 + jitter))).await;
            continue;
        }
        let bytes = resp.bytes().await?;
        ensure!(
            status == 200,
            "sync answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        let answer = SyncResponse::decode(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let stored = answer
            .acks
            .iter()
            .filter(|a| matches!(a.status, AckStatus::Stored { .. }))
            .count();
        ensure!(stored == p.docs, "{stored} of {} documents stored", p.docs);
        return Ok(start.elapsed().as_secs_f64() * 1000.0);
    }
    bail!("a phone gave up after 200 tries")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Where a storm runs: one process on SQLite, or `processes` processes on one PostgreSQL
/// database (the phones spread over them evenly).
#[derive(Debug, Clone, Copy)]
pub enum StormTarget {
    /// One server process on SQLite.
    Sqlite,
    /// Server processes on one fresh PostgreSQL database.
    Postgres {
        /// How many.
        processes: usize,
    },
}

impl StormTarget {
    /// The suffix of this target's metric names.
    fn suffix(self) -> String {
        match self {
            Self::Sqlite => String::new(),
            Self::Postgres { processes: 1 } => "_postgres".into(),
            Self::Postgres { processes } => format!("_postgres_{processes}proc"),
        }
    }
}

/// The storm with `phones` phones against fresh servers on `target`.
pub async fn storm(phones: usize, target: StormTarget, out: &mut Map<String, Value>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("server");
    let grids: Vec<GridCode> = (0..phones).map(|i| grid(i / 2)).collect();
    let (codes, servers, db) = match target {
        StormTarget::Sqlite => (
            enrollments(&data, &grids).await?,
            vec![ServerProcess::start(&data)?],
            None,
        ),
        StormTarget::Postgres { processes } => {
            let db = crate::pg::TestDatabase::create().await?;
            let storage = gridsync_server::PgStorage::connect(&db.url).await?;
            let codes = enroll_codes_in(storage, &workers(&grids)).await?;
            let servers = (0..processes.max(1))
                .map(|_| ServerProcess::start_on(&data, Some(&db.url)))
                .collect::<Result<Vec<_>>>()?;
            (codes, servers, Some(db))
        }
    };
    let phones_dir = dir.path().join("phones");
    std::fs::create_dir_all(&phones_dir)?;
    // Prepared before the clock, 16 at a time (each phone's store syncs every write to disk).
    use futures_util::stream::{StreamExt, TryStreamExt};
    let prepared: Vec<Arc<Prepared>> =
        futures_util::stream::iter(codes.iter().zip(&grids).enumerate())
            .map(|(i, (code, g))| {
                let (dir, url) = (phones_dir.clone(), servers[i % servers.len()].url.clone());
                async move { prepare(&dir, &url, code, g.clone(), i).await.map(Arc::new) }
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
    let changes: usize = phones * 60;
    gridsync_core::client::install_crypto_provider();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(phones)
        .timeout(Duration::from_secs(600))
        .build()?;
    let busy = Arc::new(AtomicU64::new(0));
    let cpu = |servers: &[ServerProcess]| -> Option<f64> {
        servers
            .iter()
            .map(ServerProcess::cpu_ms)
            .sum::<Option<f64>>()
    };
    let cpu_before = cpu(&servers);
    let phases_before = phase_seconds(&http, &servers).await?;
    let start = Instant::now();
    let tasks: Vec<_> = prepared
        .iter()
        .enumerate()
        .map(|(i, p)| {
            tokio::spawn(send(
                http.clone(),
                servers[i % servers.len()].url.clone(),
                p.clone(),
                busy.clone(),
                start,
            ))
        })
        .collect();
    let mut latencies = Vec::with_capacity(phones);
    for t in tasks {
        latencies.push(t.await??);
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu(&servers).zip(cpu_before).map(|(a, b)| a - b);
    let phases = phase_seconds(&http, &servers).await?;
    latencies.sort_by(f64::total_cmp);
    let k = |name: &str| format!("{name}{}", target.suffix());
    // Where the server's time went: each phase's time summed over requests (so phases that
    // wait, like the lock, can add up to more than the wall time), per change stored.
    for (label, after) in &phases {
        let before = phases_before.get(label).copied().unwrap_or(0.0);
        out.insert(
            k(&format!("storm_phase_{label}_ms_per_change")),
            json!((after - before) * 1000.0 / changes as f64),
        );
    }
    out.insert(k("storm_devices"), json!(phones));
    out.insert(k("storm_changes"), json!(changes));
    out.insert(k("storm_seconds"), json!(seconds));
    out.insert(k("storm_changes_per_s"), json!(changes as f64 / seconds));
    out.insert(k("storm_p50_ms"), json!(percentile(&latencies, 0.5)));
    out.insert(k("storm_p99_ms"), json!(percentile(&latencies, 0.99)));
    out.insert(k("storm_503"), json!(busy.load(Ordering::Relaxed)));
    out.insert(
        k("storm_server_cpu_ms_per_change"),
        json!(cpu.map(|c| c / changes as f64)),
    );
    drop(servers);
    if let Some(db) = db {
        db.drop_now().await?;
    }
    Ok(())
}

/// Each phase's seconds so far, summed over `servers` (their `/metrics`).
async fn phase_seconds(
    http: &reqwest::Client,
    servers: &[ServerProcess],
) -> Result<std::collections::BTreeMap<&'static str, f64>> {
    use gridsync_server::metrics::{Phase, sample};
    let mut sums = std::collections::BTreeMap::new();
    for server in servers {
        let text = http
            .get(format!("{}/metrics", server.url))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        for phase in Phase::ALL {
            let v = sample(&text, "gridsync_phase_seconds_total", Some(phase.label()))
                .with_context(|| format!("/metrics has no {} phase", phase.label()))?;
            *sums.entry(phase.label()).or_insert(0.0) += v;
        }
    }
    Ok(sums)
}

pub(super) fn case(n: usize, actor: &Actor) -> Result<Case> {
    let now = gridsync_core::clock::now_ms();
    let mut c = Case {
        title: format!("问题 {n}"),
        source: CaseSource::Inspection,
        category: "02".into(),
        subcategory: "0201".into(),
        location: None,
        address: format!("城南路 {n} 号"),
        description: "门口堆放纸箱".into(),
        urgency: Urgency::Normal,
        reported_by: actor.name.clone(),
        reported_at: now,
        parties: Default::default(),
        photos: Default::default(),
        events: Default::default(),
        redactions: Default::default(),
    };
    act(&mut c, Action::Report, actor, now, "", Default::default())?;
    Ok(c)
}

fn patrol(n: usize) -> Inspection {
    let t = gridsync_core::clock::now_ms() - n as i64 * 60_000;
    Inspection {
        worker: "网格员".into(),
        started_at: t,
        ended_at: Some(t + 30 * 60_000),
        track: Vec::new(),
        checkpoints: Default::default(),
        findings: Default::default(),
        photos: Default::default(),
        redactions: Default::default(),
    }
}

/// A new phone's first sync of a grid that holds `households` households, `cases` cases and
/// `patrols` patrols (pushed by another phone first).
pub async fn first_sync(
    households: usize,
    cases: usize,
    patrols: usize,
    out: &mut Map<String, Value>,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("server");
    let g = grid(0);
    let codes = enrollments(&data, &[g.clone(), g.clone()]).await?;
    let server = ServerProcess::start(&data)?;
    let client = SyncClient::new(&server.url, RetryPolicy::default())?;
    let seeder = Store::open(&dir.path().join("seeder.db")).await?;
    client.enroll(&seeder, &codes[0]).await?;
    let actor = Actor {
        name: "网格员".into(),
        role: WorkflowRole::Worker,
        dept: None,
    };
    let hs: Vec<Household> = (0..households as u64)
        .map(|i| gridsync_core::sample::household(i, 3, 2))
        .collect();
    for chunk in hs.chunks(500) {
        seeder.create_many(g.clone(), chunk).await?;
    }
    let cs: Vec<Case> = (0..cases).map(|i| case(i, &actor)).collect::<Result<_>>()?;
    for chunk in cs.chunks(500) {
        seeder.create_many(g.clone(), chunk).await?;
    }
    let ps: Vec<Inspection> = (0..patrols).map(patrol).collect();
    for chunk in ps.chunks(500) {
        seeder.create_many(g.clone(), chunk).await?;
    }
    let pushed = client.sync(&seeder, 10_000).await?;
    let total = households + cases + patrols;
    ensure!(pushed.acked == total, "seeded {} of {total}", pushed.acked);
    seeder.close().await;

    let phone = Store::open(&dir.path().join("new.db")).await?;
    client.enroll(&phone, &codes[1]).await?;
    let start = Instant::now();
    let got = client.sync(&phone, 10_000).await?;
    let seconds = start.elapsed().as_secs_f64();
    ensure!(
        got.pulled_docs == total,
        "the new phone got {} of {total}",
        got.pulled_docs
    );
    out.insert("first_sync_docs".into(), json!(total));
    out.insert("first_sync_seconds".into(), json!(seconds));
    out.insert("first_sync_bytes".into(), json!(got.bytes_received));
    out.insert("first_sync_round_trips".into(), json!(got.round_trips));
    phone.close().await;
    Ok(())
}

/// The storm scenario: `--quick` is 20 phones and a small grid (results checked, not times).
pub async fn storm_scenario(quick: bool, out: &mut Map<String, Value>) -> Result<()> {
    let phones = match std::env::var("GRIDSYNC_STORM_PHONES") {
        Ok(n) => n.parse().context("GRIDSYNC_STORM_PHONES")?,
        Err(_) if quick => 20,
        Err(_) => 1_000,
    };
    let targets = [
        StormTarget::Sqlite,
        StormTarget::Postgres { processes: 1 },
        StormTarget::Postgres { processes: 2 },
    ];
    for target in targets {
        storm(phones, target, out)
            .await
            .with_context(|| format!("storm on {target:?}"))?;
    }
    if quick {
        first_sync(50, 200, 100, out).await.context("first sync")
    } else {
        first_sync(500, 2_000, 1_000, out)
            .await
            .context("first sync")
    }
}
