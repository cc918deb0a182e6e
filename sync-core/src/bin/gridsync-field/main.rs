//! `gridsync-field`: plays the phone from a terminal, as a thin shell over the app API
//! ([`gridsync_core::app::Replica`]): every command opens the replica, makes one API call (or a
//! few), and prints the answer — as text, or with `--json` as the API's records serialized.
//! The command groups live in their own files: `setup.rs` (init, enroll, sync, status,
//! reference data, indicators), `households.rs` (grids, households, residents, visits),
//! `inspection.rs`, `cases.rs`, `photo.rs` and `docs.rs` (conflicts, problems, redaction,
//! export/import, rebuild, seed).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use gridsync_core::app::{Replica, ReplicaOptions};
use serde::Serialize;

mod cases;
mod docs;
mod households;
mod inspection;
mod photo;
mod setup;

#[derive(Parser)]
#[command(
    name = "gridsync-field",
    version,
    about = "The grid worker's phone, in a terminal"
)]
struct Cli {
    /// The local store file (created on first use).
    #[arg(
        long,
        env = "GRIDSYNC_STORE",
        global = true,
        default_value = "gridsync-phone.db"
    )]
    store: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// A reference file replacing the built-in category table, departments and calendar.
    #[arg(long, global = true, env = "GRIDSYNC_REFERENCE")]
    reference: Option<PathBuf>,
    /// Seconds to wait for another command holding the store (a long sync) to finish.
    #[arg(long, global = true, default_value_t = 30)]
    wait: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Setup(setup::SetupCmd),
    /// Grid units.
    #[command(subcommand)]
    Grid(households::GridCmd),
    /// Households (一户一档).
    #[command(subcommand)]
    Household(households::HouseholdCmd),
    /// Members of households.
    #[command(subcommand)]
    Resident(households::ResidentCmd),
    /// Household visits (走访入户).
    #[command(subcommand)]
    Visit(households::VisitCmd),
    /// Patrols (巡查).
    #[command(subcommand)]
    Inspection(inspection::InspectionCmd),
    /// Problems and requests (问题诉求).
    #[command(subcommand)]
    Case(cases::CaseCmd),
    /// Photos of cases, visits and patrols: add, list, fetch.
    #[command(subcommand)]
    Photo(photo::PhotoCmd),
    #[command(flatten)]
    Docs(docs::DocsCmd),
}

/// Formats a time for people (China time).
pub(crate) fn fmt_time(ms: i64) -> String {
    gridsync_core::clock::format_china(ms)
}

/// Where a command's answer goes: text for people, JSON for scripts.
pub(crate) struct Out {
    json: bool,
}

impl Out {
    /// Prints `value` as JSON, or `text()` for people.
    pub(crate) fn print<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> Result<()> {
        let line = if self.json {
            serde_json::to_string(value)?
        } else {
            text()
        };
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
            // The reader went away (`| head`): the command's work is done; nothing to say.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
            other => Ok(other?),
        }
    }
}

/// Standard output was closed by its reader; the command ends quietly and successfully.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
struct StdoutClosed;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(open_and_run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<StdoutClosed>() => std::process::ExitCode::SUCCESS,
        Err(e) => {
            report(&e, json);
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints an error on stderr: its message and causes once each, and with `--json` also one
/// JSON line `{"error":{"kind","message"}}` for scripts.
fn report(e: &anyhow::Error, json: bool) {
    let mut shown = format!("{e}");
    eprintln!("error: {shown}");
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !shown.contains(&text) {
            eprintln!("  caused by: {text}");
            shown = text;
        }
    }
    if json {
        let kind = e
            .downcast_ref::<gridsync_core::app::AppError>()
            .map_or("usage", |a| a.kind());
        let body = serde_json::json!({"error": {"kind": kind, "message": e.to_string()}});
        eprintln!("{body}");
    }
}

async fn open_and_run(cli: Cli) -> Result<()> {
    let opts = ReplicaOptions {
        reference: cli.reference.clone(),
        store: None,
        wait: std::time::Duration::from_secs(cli.wait),
    };
    let app = Replica::open(&cli.store, opts).await?;
    let out = Out { json: cli.json };
    let result = match cli.command {
        Command::Setup(cmd) => setup::run(&app, &out, cmd).await,
        Command::Grid(cmd) => households::grid(&app, &out, cmd).await,
        Command::Household(cmd) => households::household(&app, &out, cmd).await,
        Command::Resident(cmd) => households::resident(&app, &out, cmd).await,
        Command::Visit(cmd) => households::visit(&app, &out, cmd).await,
        Command::Inspection(cmd) => inspection::run(&app, &out, cmd).await,
        Command::Case(cmd) => cases::run(&app, &out, cmd).await,
        Command::Photo(cmd) => photo::run(&app, &out, cmd).await,
        Command::Docs(cmd) => docs::run(&app, &out, cmd).await,
    };
    app.close().await;
    result
}

/// The text lines of a list, or `empty` when there are none.
pub(crate) fn lines<T>(items: &[T], empty: &str, line: impl Fn(&T) -> String) -> String {
    if items.is_empty() {
        return empty.to_owned();
    }
    items.iter().map(line).collect::<Vec<_>>().join("\n")
}
