//! The `gridsync-server` command line: serve the sync API, migrate the store, enroll and revoke
//! devices. Lives in the library so the integration tests can run the very same entry point as
//! a separate process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gridsync_core::workflow::Reference;

use crate::auth::{
    Role, check_enrollment, new_enrollment_code, new_token, normalize_code, parse_scopes,
    secret_hash,
};
use crate::storage::doc_cache::DocCacheLimits;
use crate::{AppState, Config, PgStorage, SqliteStorage, Storage, app};
use anyhow::{Context, Result};

mod register;
mod user;
use clap::{Parser, Subcommand};
use gridsync_proto::DeviceId;

#[derive(Parser)]
#[command(
    name = "gridsync-server",
    version,
    about = "The gridsync central merge server"
)]
struct Cli {
    /// Where the server keeps its data (SQLite database; created on first use).
    #[arg(
        long,
        env = "GRIDSYNC_DATA_DIR",
        global = true,
        default_value = "gridsync-data"
    )]
    data_dir: PathBuf,
    /// The database: `postgres://...` for PostgreSQL (several server processes may share
    /// one); by default the SQLite file DATA_DIR/gridsync.db. Photos stay in DATA_DIR/photos
    /// unless --photos names an object store (processes on several machines need one).
    #[arg(long, env = "GRIDSYNC_DATABASE", global = true)]
    database: Option<String>,
    /// A reference file (departments, category table, calendar) replacing the built-in one.
    #[arg(long, env = "GRIDSYNC_REFERENCE", global = true)]
    reference: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the sync API.
    Serve {
        /// Address to listen on (port 0 picks a free one; the chosen address is printed).
        #[arg(long, env = "GRIDSYNC_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Requests handled at once; more are answered 503 with Retry-After.
        #[arg(long, default_value_t = 64)]
        max_in_flight: usize,
        /// Syncs that may wait for a free slot (their bodies unread) before more get 503.
        #[arg(long, default_value_t = 2048)]
        queue: usize,
        /// Seconds a sync waits in the queue before it gets 503.
        #[arg(long, default_value_t = 30)]
        queue_wait: u64,
        /// Longest a request may take, in seconds (phones on weak links upload slowly; they
        /// keep each request under 1 MiB of changes).
        #[arg(long, default_value_t = 180)]
        request_timeout: u64,
        /// Where photo files go: `s3://BUCKET` (endpoint and keys from the AWS_* variables,
        /// e.g. AWS_ENDPOINT=http://127.0.0.1:9000 AWS_ALLOW_HTTP=true for a local
        /// S3-compatible server); by default the folder DATA_DIR/photos.
        #[arg(long, env = "GRIDSYNC_PHOTOS")]
        photos: Option<String>,
        /// How far (metres) an evidence photo may be from its case's location before it is
        /// flagged.
        #[arg(long, default_value_t = gridsync_core::evidence::DEFAULT_RADIUS_M)]
        evidence_radius_m: f64,
        /// Memory (MiB, estimated) for decoded documents the merge reuses; 0 turns the cache
        /// off.
        #[arg(long, default_value_t = 256)]
        doc_cache_mb: usize,
        /// Mark the console's session cookie Secure (when the console is reached over HTTPS,
        /// e.g. through a TLS-terminating proxy).
        #[arg(long, env = "GRIDSYNC_CONSOLE_SECURE_COOKIE")]
        console_secure_cookie: bool,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Recompute every projection from the documents.
    RebuildProjections,
    /// After restoring the database from a backup: make every device pull its scopes again
    /// from the beginning (so none skips changes the backup lost).
    NewEpoch,
    /// Enroll, revoke and list devices.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Console accounts (dispatchers, department clerks, leaders, operators).
    #[command(subcommand)]
    User(user::UserCmd),
    /// Keys for intake systems (the 12345 hotline, residents' mini-programs).
    #[command(subcommand)]
    IntakeKey(IntakeKeyCmd),
    /// Bring a household register in (Excel or CSV).
    #[command(subcommand)]
    Import(register::ImportCmd),
    /// Write the case ledger, indicators or the household archive as XLSX or CSV.
    #[command(subcommand)]
    Export(register::ExportCmd),
}

#[derive(Subcommand)]
enum IntakeKeyCmd {
    /// Print a new key for an intake system (shown once; only its hash is kept).
    Create {
        /// The system's name, recorded as the source of its cases (e.g. 12345).
        #[arg(long)]
        name: String,
        /// Comma-separated town codes (9 digits) it may place cases in.
        #[arg(long)]
        towns: String,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Print a one-time code a phone exchanges for its device token.
    Enroll {
        /// Who or what the device is (e.g. 「周网格 手机」).
        #[arg(long)]
        name: String,
        /// worker (its grids), dispatcher or leader (a whole town), or department (the cases
        /// dispatched to its department).
        #[arg(long)]
        role: Role,
        /// Comma-separated grid codes (a worker's grids, or the town code of a dispatcher,
        /// leader or department clerk).
        #[arg(long)]
        grids: String,
        /// The department a clerk's device belongs to (`D01`, ...), for `--role department`.
        #[arg(long)]
        department: Option<String>,
        /// Only this device may use the code: how a revoked device (a phone found again)
        /// enrolls again under its own id and delivers its unsynced work.
        #[arg(long)]
        device: Option<DeviceId>,
        /// Days before an unused code expires.
        #[arg(long, default_value_t = 7)]
        valid_days: i64,
    },
    /// Revoke a device (a lost phone): its token stops working at once.
    Revoke {
        /// The device id.
        #[arg(long)]
        device: DeviceId,
    },
    /// List enrolled devices.
    List {
        /// Print one JSON array (for scripts) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Parses the process arguments and runs the command; a failure is printed as its message
/// and causes (never a stack trace: an operator's mistake is not a crash) and exits 1.
pub fn main() -> std::process::ExitCode {
    match run_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    let reference = match &cli.reference {
        Some(path) => Reference::from_json(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )?,
        None => Reference::builtin(),
    };
    let cache = match &cli.command {
        Command::Serve { doc_cache_mb, .. } => doc_cache_limits(*doc_cache_mb),
        _ => DocCacheLimits::OFF,
    };
    match cli.database.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let storage = PgStorage::connect(url)
                .await
                .with_context(|| format!("connecting to {}", redact_url(url)))?
                .with_doc_cache(cache);
            run_on(cli, reference, storage).await
        }
        Some(other) => anyhow::bail!(
            "--database: {other:?} is not a postgres:// URL (leave it out for SQLite in --data-dir)"
        ),
        None => {
            let storage = SqliteStorage::open(&cli.data_dir)
                .await
                .with_context(|| format!("opening the data directory {}", cli.data_dir.display()))?
                .with_doc_cache(cache);
            run_on(cli, reference, storage).await
        }
    }
}

/// The document cache for `--doc-cache-mb` (about 16 documents per MiB at most).
fn doc_cache_limits(mb: usize) -> DocCacheLimits {
    if mb == 0 {
        return DocCacheLimits::OFF;
    }
    DocCacheLimits {
        max_docs: mb.saturating_mul(16).max(64),
        max_bytes: mb.saturating_mul(1 << 20),
    }
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn run_on<S: Storage>(cli: Cli, reference: Reference, storage: S) -> Result<()> {
    match cli.command {
        Command::Serve {
            listen,
            max_in_flight,
            queue,
            queue_wait,
            request_timeout,
            photos,
            evidence_radius_m,
            doc_cache_mb: _,
            console_secure_cookie,
        } => {
            anyhow::ensure!(
                evidence_radius_m.is_finite() && evidence_radius_m > 0.0,
                "--evidence-radius-m: must be a positive number of metres"
            );
            let config = Config {
                max_in_flight,
                queue,
                queue_wait: Duration::from_secs(queue_wait),
                request_timeout: Duration::from_secs(request_timeout),
                reference: std::sync::Arc::new(reference),
                photos: crate::photos::PhotoConfig {
                    store: crate::photos::open_store(photos.as_deref(), &cli.data_dir)?,
                    evidence: gridsync_core::evidence::EvidenceRules {
                        radius_m: evidence_radius_m,
                        ..Default::default()
                    },
                },
                console: crate::console::ConsoleConfig {
                    secure_cookie: console_secure_cookie,
                    ..Default::default()
                },
                ..Config::default()
            };
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let addr = listener.local_addr()?;
            println!("gridsync-server listening on http://{addr}");
            tracing::info!(%addr, data_dir = %cli.data_dir.display(), "serving");
            let state = AppState::new(storage, config);
            tokio::spawn(crate::routing::run(state.clone()));
            let sweeper = state.clone();
            tokio::spawn(async move {
                // Unfinished uploads expire (tus expiration): a phone that gave up, or a
                // device that was revoked mid-upload, leaves nothing behind for good.
                let mut tick = tokio::time::interval(Duration::from_secs(600));
                loop {
                    tick.tick().await;
                    match crate::photos::expire_uploads(&sweeper).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(n, "expired unfinished uploads"),
                        Err(e) => tracing::warn!(error = %e, "expiring uploads failed"),
                    }
                }
            });
            crate::http::serve(
                listener,
                app(state),
                crate::http::HEADER_READ_TIMEOUT,
                shutdown(),
            )
            .await
            .context("serving")?;
            Ok(())
        }
        Command::Migrate => {
            match &cli.database {
                Some(url) => println!("schema is up to date in {}", redact_url(url)),
                None => println!("schema is up to date in {}", cli.data_dir.display()),
            }
            Ok(())
        }
        Command::NewEpoch => {
            let epoch = storage.new_epoch().await?;
            println!("new epoch {epoch}: every device re-reads its scopes on its next sync");
            Ok(())
        }
        Command::RebuildProjections => {
            let n = storage.rebuild_projections().await?;
            println!("rebuilt projections of {n} documents");
            Ok(())
        }
        Command::Device(DeviceCmd::Enroll {
            name,
            role,
            grids,
            department,
            device,
            valid_days,
        }) => {
            let scopes = parse_scopes(role, &grids)
                .map_err(anyhow::Error::msg)
                .context("--grids")?;
            anyhow::ensure!(!name.trim().is_empty(), "--name: is required");
            check_enrollment(role, &scopes, department.as_deref())
                .map_err(anyhow::Error::msg)
                .context("--role, --grids and --department")?;
            if let Some(d) = &department
                && !reference.has_department(d)
            {
                anyhow::bail!("--department: {d} is not in the reference table")
            }
            let code = new_enrollment_code();
            let expires = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64
                + valid_days.max(1) * 86_400_000;
            storage
                .create_enrollment(
                    &secret_hash(&normalize_code(&code)),
                    name.trim(),
                    role,
                    &scopes,
                    department.as_deref(),
                    device,
                    expires,
                )
                .await?;
            println!("{code}");
            eprintln!(
                "enrollment code for {name} ({role}, {}); valid {valid_days} days, usable once",
                grids
            );
            Ok(())
        }
        Command::IntakeKey(IntakeKeyCmd::Create { name, towns }) => {
            anyhow::ensure!(!name.trim().is_empty(), "--name: is required");
            let towns = parse_scopes(Role::Dispatcher, &towns).map_err(|_| {
                anyhow::anyhow!("--towns: give 9-digit town codes, comma-separated")
            })?;
            let key = new_token();
            storage
                .create_intake_key(&secret_hash(&key), name.trim(), &towns)
                .await?;
            println!("{key}");
            eprintln!(
                "intake key for {name}: send it as `Authorization: Bearer <key>` to POST /v1/intake/cases"
            );
            Ok(())
        }
        Command::Import(cmd) => register::import(&storage, cmd).await,
        Command::User(cmd) => user::run(&storage, &reference, cmd).await,
        Command::Export(cmd) => {
            let state = AppState::new(
                storage,
                Config {
                    reference: std::sync::Arc::new(reference),
                    ..Config::default()
                },
            );
            register::export(&state, cmd).await
        }
        Command::Device(DeviceCmd::Revoke { device }) => {
            if storage.revoke(device).await? {
                println!("device {device} revoked");
                Ok(())
            } else {
                anyhow::bail!("no active device {device}")
            }
        }
        Command::Device(DeviceCmd::List { json }) => {
            let devices = storage.devices().await?;
            if json {
                println!("{}", serde_json::to_string(&devices)?);
                return Ok(());
            }
            for d in devices {
                // A clock more than the tolerance off is shown: its entries' times are flagged.
                let skew = match d.skew_ms {
                    Some(ms) if ms.abs() > gridsync_core::time_flags::TOLERANCE_MS => {
                        format!("  [clock {:+.1} h]", ms as f64 / 3_600_000.0)
                    }
                    _ => String::new(),
                };
                println!(
                    "{}  {:<10} {:<20} {}{}{skew}",
                    d.device,
                    d.role,
                    d.name,
                    d.scopes,
                    if d.revoked_at.is_some() {
                        "  [revoked]"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
