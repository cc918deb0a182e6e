//! `gridsync-field`: plays the phone from a terminal. Every command opens the local store,
//! does one thing durably and prints the result (`--json` for scripts).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::str::FromStr;

use gridsync_core::client::{RetryPolicy, SyncClient};
use gridsync_core::clock::now_ms;
use gridsync_core::records::{
    Case, CaseSource, Checkpoint, Finding, Gps, Grid, Household, Inspection, Party, Relation,
    Residence, Resident, ResidentStatus, RosterEntry, TrackPoint, Urgency, Visit,
};
use gridsync_core::upload::UploadOptions;
use gridsync_core::workflow::{
    Action, Reference, Role, Satisfaction, TimeLimit, WorkflowError, act, plan_dispatch,
    plan_extension, plan_resume,
};
use gridsync_core::{Store, sample};
use gridsync_proto::{DocId, DocType, GridCode, RecordId};
use serde::Serialize;
use serde_json::json;

mod photo;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set the worker's name on this phone and show the device id.
    Init {
        /// The person using this device.
        #[arg(long)]
        worker: String,
        /// The role, until enrollment sets it: worker, dispatcher, department or leader.
        #[arg(long)]
        role: Option<String>,
        /// The department, for a department clerk's device.
        #[arg(long)]
        department: Option<String>,
    },
    /// Show this phone's device id and worker.
    Whoami,
    /// Enroll this phone with a server using the code the operator gave you.
    Enroll {
        /// The server, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        server: String,
        /// The one-time code printed by `gridsync-server device enroll`.
        #[arg(long)]
        code: String,
    },
    /// Send this phone's work and receive everyone else's, in as few round trips as possible.
    Sync {
        /// The server (default: the one this phone enrolled with).
        #[arg(long)]
        server: Option<String>,
        /// Stop after this many rounds in a row that moved nothing (the rest follows next
        /// time); a backlog that keeps draining is never cut short.
        #[arg(long, default_value_t = 20)]
        max_rounds: usize,
        /// Offer documents the server refused now, instead of after their backoff.
        #[arg(long)]
        retry_refused: bool,
        /// On a metered link: upload photo thumbnails only (full images wait).
        #[arg(long)]
        metered: bool,
        /// Sync documents only; leave photos for later.
        #[arg(long)]
        no_photos: bool,
    },
    /// What is waiting to be synced, and what the server refused.
    Status,
    /// Grid units.
    #[command(subcommand)]
    Grid(GridCmd),
    /// Households (一户一档).
    #[command(subcommand)]
    Household(HouseholdCmd),
    /// Members of households.
    #[command(subcommand)]
    Resident(ResidentCmd),
    /// Household visits (走访入户).
    #[command(subcommand)]
    Visit(VisitCmd),
    /// Patrols (巡查).
    #[command(subcommand)]
    Inspection(InspectionCmd),
    /// Problems and requests (问题诉求).
    #[command(subcommand)]
    Case(CaseCmd),
    /// Photos of cases, visits and patrols: add, list, fetch.
    #[command(subcommand)]
    Photo(photo::PhotoCmd),
    /// List the fields of a document that hold concurrent values.
    Conflicts {
        /// The document.
        id: DocId,
    },
    /// Settle a conflicting field by choosing its value (JSON, e.g. '"务农"').
    Resolve {
        /// The document.
        id: DocId,
        /// The field path shown by `conflicts`.
        #[arg(long)]
        path: String,
        /// The chosen value, as JSON.
        #[arg(long)]
        value: String,
    },
    /// List the rule problems of a record (bad values from an older version or another
    /// device); they block only edits of the same fields. Fix each with `resolve`.
    Problems {
        /// The document.
        id: DocId,
    },
    /// Take an entry out of view (dispatchers and leaders): a visit entered on the wrong
    /// household, a wrong photo. The entry stays in the history.
    Redact {
        /// The document.
        id: DocId,
        /// The entry's path, e.g. `visits.<id>`.
        #[arg(long)]
        target: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Write a document's full history to a file (to carry to another phone).
    Export {
        /// The document.
        id: DocId,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Merge a document file exported by another phone.
    Import {
        /// The file written by `export`.
        file: PathBuf,
    },
    /// Recompute lists and search indexes from the documents.
    Rebuild,
    /// Fill the store with realistic sample households, one durable write at a time.
    Seed {
        /// The grid to put them in.
        #[arg(long)]
        grid: GridCode,
        /// How many households.
        #[arg(long, default_value_t = 10)]
        households: usize,
        /// Members per household.
        #[arg(long, default_value_t = 3)]
        residents: usize,
        /// Visits added to each household afterwards, each as its own write.
        #[arg(long, default_value_t = 0)]
        visits: usize,
        /// Households written per transaction.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Seed for the sample generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum GridCmd {
    /// Add a grid unit (its level follows from the code's length).
    Add {
        /// Hierarchical code.
        #[arg(long)]
        code: GridCode,
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// Put a worker on a grid's roster.
    Roster {
        /// The grid document.
        id: DocId,
        /// Worker id (e.g. staff number).
        #[arg(long)]
        worker_id: String,
        /// Worker's name.
        #[arg(long)]
        name: String,
        /// Phone.
        #[arg(long, default_value = "")]
        phone: String,
        /// grid_worker, part_time or leader.
        #[arg(long, default_value = "grid_worker")]
        duty: String,
    },
    /// List grid units.
    List {
        /// Only units under this code.
        #[arg(long)]
        within: Option<GridCode>,
    },
}

#[derive(Subcommand)]
enum HouseholdCmd {
    /// Register a household.
    Add {
        /// Its grid.
        #[arg(long)]
        grid: GridCode,
        /// Standard address.
        #[arg(long)]
        address: String,
        /// permanent (常住), floating (流动) or separated (人户分离).
        #[arg(long, default_value = "permanent", value_parser = parse_residence)]
        residence: Residence,
        /// Flags (empty_nest, living_alone, rental, low_income, ...); repeatable.
        #[arg(long = "flag")]
        flags: Vec<String>,
    },
    /// Change a household's address, residence status or flags.
    Edit {
        /// The household.
        id: DocId,
        /// New address.
        #[arg(long)]
        address: Option<String>,
        /// New residence status.
        #[arg(long, value_parser = parse_residence)]
        residence: Option<Residence>,
        /// Flags to add.
        #[arg(long = "add-flag")]
        add_flags: Vec<String>,
        /// Flags to remove.
        #[arg(long = "remove-flag")]
        remove_flags: Vec<String>,
    },
    /// List households.
    List {
        /// Only this grid (or anything under this unit).
        #[arg(long)]
        grid: Option<GridCode>,
    },
    /// Show a household: members, visits, past requests, conflicts.
    Show {
        /// The household.
        id: DocId,
    },
}

#[derive(Args)]
struct PersonArgs {
    /// 18-character ID number.
    #[arg(long)]
    id_number: Option<String>,
    /// male or female.
    #[arg(long)]
    gender: Option<String>,
    /// YYYY-MM-DD.
    #[arg(long)]
    birth_date: Option<String>,
    /// Phone; repeatable.
    #[arg(long = "phone")]
    phones: Vec<String>,
    /// Work or study.
    #[arg(long)]
    work: Option<String>,
    /// Key-person category; repeatable.
    #[arg(long = "category")]
    categories: Vec<String>,
}

#[derive(Subcommand)]
enum ResidentCmd {
    /// Add a member to a household.
    Add {
        /// The household.
        #[arg(long)]
        household: DocId,
        /// Full name.
        #[arg(long)]
        name: String,
        /// head, spouse, child, parent, grandchild, grandparent, sibling, child_in_law, tenant, other.
        #[arg(long, value_parser = parse_relation)]
        relation: Relation,
        #[command(flatten)]
        person: PersonArgs,
    },
    /// Change a member's details, or record a move-out or death.
    Edit {
        /// The household.
        #[arg(long)]
        household: DocId,
        /// The resident.
        #[arg(long)]
        resident: RecordId,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        person: PersonArgs,
        /// Moved out on this date (YYYY-MM-DD).
        #[arg(long)]
        moved_out: Option<String>,
        /// Died on this date (YYYY-MM-DD).
        #[arg(long)]
        deceased: Option<String>,
        /// Was never a member: entered by mistake (误录). Kept in the archive with this
        /// status; members are never deleted.
        #[arg(long)]
        entered_by_mistake: bool,
    },
    /// Find residents by (part of) their name or by ID number.
    Search {
        /// Name, part of a name, or ID number.
        name: String,
    },
}

#[derive(Subcommand)]
enum VisitCmd {
    /// Record a visit to a household.
    Add {
        /// The household.
        #[arg(long)]
        household: DocId,
        /// Why.
        #[arg(long)]
        purpose: String,
        /// What was found.
        #[arg(long, default_value = "")]
        findings: String,
        /// Latitude.
        #[arg(long, requires = "lon")]
        lat: Option<f64>,
        /// Longitude.
        #[arg(long, requires = "lat")]
        lon: Option<f64>,
        /// Who visited (default: this phone's worker).
        #[arg(long)]
        worker: Option<String>,
    },
}

#[derive(Subcommand)]
enum InspectionCmd {
    /// Start a patrol of a grid.
    Start {
        /// The grid.
        #[arg(long)]
        grid: GridCode,
    },
    /// Append a GPS point to the track.
    Track {
        /// The patrol.
        id: DocId,
        /// Latitude.
        #[arg(long, allow_hyphen_values = true)]
        lat: f64,
        /// Longitude.
        #[arg(long, allow_hyphen_values = true)]
        lon: f64,
    },
    /// Record a checkpoint.
    Checkpoint {
        /// The patrol.
        id: DocId,
        /// What was checked.
        #[arg(long)]
        name: String,
        /// Whether it was in order.
        #[arg(long)]
        ok: bool,
        /// Remarks.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Record a finding.
    Finding {
        /// The patrol.
        id: DocId,
        /// What was found.
        #[arg(long)]
        description: String,
    },
    /// End the patrol.
    Finish {
        /// The patrol.
        id: DocId,
    },
    /// List patrols.
    List {
        /// Only this grid (or under this unit).
        #[arg(long)]
        grid: Option<GridCode>,
    },
    /// Show one patrol.
    Show {
        /// The patrol.
        id: DocId,
    },
}

#[derive(Subcommand)]
enum CaseCmd {
    /// Report a problem.
    Report {
        /// The grid it is in.
        #[arg(long)]
        grid: GridCode,
        /// Short title.
        #[arg(long)]
        title: String,
        /// inspection, visit, resident, hotline12345 or assigned.
        #[arg(long, default_value = "inspection", value_parser = parse_source)]
        source: CaseSource,
        /// 小类 code (4 digits; the first two are the 大类).
        #[arg(long)]
        subcategory: String,
        /// Address.
        #[arg(long)]
        address: String,
        /// What is wrong.
        #[arg(long)]
        description: String,
        /// Mark as urgent.
        #[arg(long)]
        urgent: bool,
        /// Latitude.
        #[arg(long, requires = "lon")]
        lat: Option<f64>,
        /// Longitude.
        #[arg(long, requires = "lat")]
        lon: Option<f64>,
        /// Name of the resident reporting or involved.
        #[arg(long)]
        party: Option<String>,
        /// That person's phone.
        #[arg(long, requires = "party")]
        party_phone: Option<String>,
        /// That person's household (links the case to the archive).
        #[arg(long, requires = "party")]
        party_household: Option<DocId>,
    },
    /// Edit a case's title or description.
    Edit {
        /// The case.
        id: DocId,
        /// New title.
        #[arg(long)]
        title: Option<String>,
        /// New description (merged as text with concurrent edits).
        #[arg(long)]
        description: Option<String>,
    },
    /// Take a workflow action: report, self_handle, close_self, verify, register, reject,
    /// merge, dispatch, return, sign, request_extension, approve_extension, deny_extension,
    /// suspend, resume, handle, start_check, pass_check, fail_check, follow_up, archive, reopen,
    /// supervise.
    Act {
        /// The case.
        id: DocId,
        /// The action.
        action: String,
        /// Reason, result or instruction.
        #[arg(long, default_value = "")]
        note: String,
        /// dispatch: the lead department (default: the category's).
        #[arg(long)]
        lead: Option<String>,
        /// dispatch: co-departments, comma-separated (default: the category's).
        #[arg(long)]
        co: Option<String>,
        /// follow_up: satisfied (满意), basically_satisfied (基本满意) or dissatisfied (不满意).
        #[arg(long)]
        satisfaction: Option<String>,
        /// merge: the case this one duplicates.
        #[arg(long)]
        into: Option<DocId>,
        /// request_extension / approve_extension: working days asked for or granted.
        #[arg(long, default_value_t = 3)]
        extra_days: u32,
        /// A reference file replacing the built-in category table and calendar.
        #[arg(long)]
        reference: Option<PathBuf>,
    },
    /// List cases.
    List {
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one case.
    Show {
        /// The case.
        id: DocId,
    },
}

fn parse_enum<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(json!(s)).map_err(|e| e.to_string())
}

fn parse_residence(s: &str) -> Result<Residence, String> {
    match s {
        "常住" => Ok(Residence::Permanent),
        "流动" => Ok(Residence::Floating),
        "人户分离" => Ok(Residence::Separated),
        _ => parse_enum(s),
    }
}

fn parse_relation(s: &str) -> Result<Relation, String> {
    match s {
        "户主" => Ok(Relation::Head),
        "配偶" => Ok(Relation::Spouse),
        "子女" => Ok(Relation::Child),
        "父母" => Ok(Relation::Parent),
        _ => parse_enum(s),
    }
}

fn parse_source(s: &str) -> Result<CaseSource, String> {
    match s {
        "12345" => Ok(CaseSource::Hotline12345),
        _ => parse_enum(s),
    }
}

fn fmt_time(ms: i64) -> String {
    gridsync_core::clock::format_china(ms)
}

struct Out {
    json: bool,
}

impl Out {
    fn print<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) -> Result<()> {
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

async fn worker(store: &Store) -> Result<String> {
    store
        .meta("worker")
        .await?
        .context("no worker set on this phone: run `gridsync-field init --worker NAME` first")
}

fn apply_person(r: &mut Resident, p: PersonArgs) {
    if p.id_number.is_some() {
        r.id_number = p.id_number;
    }
    if p.gender.is_some() {
        r.gender = p.gender;
    }
    if p.birth_date.is_some() {
        r.birth_date = p.birth_date;
    }
    if !p.phones.is_empty() {
        r.phones = p.phones;
    }
    if let Some(w) = p.work {
        r.work = w;
    }
    r.categories.extend(p.categories);
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
            // Print the chain once: a cause whose text the message above already holds is
            // not repeated.
            let mut shown = format!("{e}");
            eprintln!("error: {shown}");
            for cause in e.chain().skip(1) {
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                    shown = text;
                }
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn open_and_run(cli: Cli) -> Result<()> {
    let store = Store::open(&cli.store)
        .await
        .with_context(|| format!("opening the store {}", cli.store.display()))?;
    let out = Out { json: cli.json };
    let result = run(&store, &out, cli.command).await;
    store.close().await;
    result
}

async fn run(store: &Store, out: &Out, command: Command) -> Result<()> {
    match command {
        Command::Init {
            worker,
            role,
            department,
        } => {
            if worker.trim().is_empty() {
                bail!("--worker: is required");
            }
            if let Some(r) = &role {
                Role::from_str(r)
                    .map_err(anyhow::Error::msg)
                    .context("--role")?;
                store.set_meta("role", r).await?;
            }
            if let Some(d) = &department {
                store.set_meta("department", d).await?;
            }
            store.set_meta("worker", worker.trim()).await?;
            let device = store.device();
            out.print(&json!({"device": device, "worker": worker}), || {
                format!("device {device}, worker {worker}")
            })
        }
        Command::Whoami => {
            let device = store.device();
            let w = store.meta("worker").await?;
            out.print(&json!({"device": device, "worker": w}), || {
                format!(
                    "device {device}, worker {}",
                    w.as_deref().unwrap_or("(not set)")
                )
            })
        }
        Command::Enroll { server, code } => {
            let client = SyncClient::new(&server, RetryPolicy::default())?;
            let resp = client.enroll(store, &code).await?;
            out.print(&json!({"device": resp.device, "name": resp.name, "role": resp.role, "scopes": resp.scopes}), || {
                format!("enrolled as {} ({}, {}), scopes {}", resp.name, resp.device, resp.role, resp.scopes.join(","))
            })
        }
        Command::Sync {
            server,
            max_rounds,
            retry_refused,
            metered,
            no_photos,
        } => {
            if retry_refused {
                store.retry_set_aside().await?;
            }
            let server = match server {
                Some(s) => s,
                None => SyncClient::enrolled_server(store)
                    .await?
                    .context("no server known: pass --server URL or enroll first")?,
            };
            let client = SyncClient::new(&server, RetryPolicy::default())?;
            let report = client.sync(store, max_rounds).await?;
            // Photos after the documents that reference them: the server takes a file only
            // once it holds a reference to it.
            let photos = if no_photos {
                None
            } else {
                let opts = UploadOptions {
                    metered,
                    ..UploadOptions::default()
                };
                Some(client.upload_photos(store, opts).await?)
            };
            let both = json!({"documents": &report, "photos": &photos});
            out.print(&both, || {
                let mut s = format!(
                    "synced in {} round trip(s): {} document(s) sent, {} change(s) received in {} document(s); {} bytes up, {} down",
                    report.round_trips,
                    report.acked,
                    report.pulled_changes,
                    report.pulled_docs,
                    report.bytes_sent,
                    report.bytes_received
                );
                for (doc, code, message) in &report.rejected {
                    s += &format!("\n⚠ {doc} refused: {code}: {message}");
                }
                for (doc, why) in &report.quarantined {
                    s += &format!("\n⚠ {doc} cannot be read by this version and is kept aside: {why}");
                }
                if report.unquarantined > 0 {
                    s += &format!(
                        "\n{} document(s) kept aside earlier are now read",
                        report.unquarantined
                    );
                }
                if let Some(p) = &photos {
                    s += &format!(
                        "\nphotos: {} file(s) uploaded ({} already on the server), {} bytes sent, {} left for later",
                        p.completed, p.already_there, p.bytes_sent, p.deferred
                    );
                    for (sha, why) in &p.failed {
                        s += &format!("\n⚠ photo file {sha} not uploaded: {why}");
                    }
                }
                s
            })
        }
        Command::Status => {
            let unsynced = store.unsynced_count().await?;
            let set_aside = store.set_aside().await?;
            let quarantined = store.quarantined().await?;
            let superseded = store.superseded().await?;
            let server = store.meta("server_url").await?;
            let uploads = store.upload_queue().await?;
            let bytes_left: u64 = uploads.iter().map(|f| f.left()).sum();
            out.print(
                &json!({
                    "upload_queue": uploads,
                    "upload_bytes_left": bytes_left,
                    "unsynced_documents": unsynced,
                    "rejected": set_aside.iter().map(|r| (r.doc, r.reason.clone())).collect::<Vec<_>>(),
                    "set_aside": set_aside,
                    "quarantined": quarantined,
                    "superseded": superseded,
                    "server": server,
                }),
                || {
                    let mut s = format!(
                        "{unsynced} document(s) waiting to sync; server {}",
                        server.as_deref().unwrap_or("(not enrolled)")
                    );
                    if !uploads.is_empty() {
                        let waiting = uploads.iter().filter(|f| f.waiting_for_sync).count();
                        s += &format!(
                            "\n{} photo file(s) to upload, {bytes_left} bytes left{}",
                            uploads.len(),
                            if waiting > 0 {
                                format!(" ({waiting} wait for their document's sync)")
                            } else {
                                String::new()
                            }
                        );
                        for f in &uploads {
                            s += &format!(
                                "\n  {} {} {}/{} bytes",
                                f.kind.as_str(),
                                f.sha256,
                                f.uploaded,
                                f.size
                            );
                        }
                    }
                    for r in &set_aside {
                        s += &format!(
                            "\n⚠ {} refused {} time(s): {}; offered again {}",
                            r.doc,
                            r.attempts,
                            r.reason,
                            r.retry_at.map_or("at the next sync".to_owned(), |at| format!(
                                "after {} (or now with `sync --retry-refused`)",
                                fmt_time(at)
                            ))
                        );
                    }
                    for (doc, at, why) in &superseded {
                        s += &format!(
                            "\n↺ {doc}: this phone's copy was rebased at {} ({why}); the old copy is kept",
                            fmt_time(*at)
                        );
                    }
                    for q in &quarantined {
                        s += &format!(
                            "\n⚠ {} cannot be read by this version ({} change(s) kept): {}; upgrade the app",
                            q.doc, q.changes, q.reason
                        );
                    }
                    s
                },
            )
        }
        Command::Grid(cmd) => grid_cmd(store, out, cmd).await,
        Command::Photo(cmd) => photo::run(store, out, cmd).await,
        Command::Household(cmd) => household_cmd(store, out, cmd).await,
        Command::Resident(cmd) => resident_cmd(store, out, cmd).await,
        Command::Visit(VisitCmd::Add {
            household,
            purpose,
            findings,
            lat,
            lon,
            worker: who,
        }) => {
            let who = match who {
                Some(w) => w,
                None => worker(store).await?,
            };
            let vid = RecordId::new();
            let visit = Visit {
                worker: who,
                at: now_ms(),
                gps: lat.zip(lon).map(|(lat, lon)| Gps::new(lat, lon)),
                purpose,
                findings,
                photos: Default::default(),
                cases: Vec::new(),
                author: None,
            };
            store
                .update::<Household>(household, |h| {
                    h.visits.insert(vid, visit);
                })
                .await?;
            out.print(&json!({"visit": vid, "household": household}), || {
                format!("visit {vid} recorded")
            })
        }
        Command::Inspection(cmd) => inspection_cmd(store, out, cmd).await,
        Command::Case(cmd) => case_cmd(store, out, cmd).await,
        Command::Conflicts { id } => {
            let conflicts = store.conflicts(id).await?;
            out.print(&conflicts, || {
                if conflicts.is_empty() {
                    "no conflicts".to_owned()
                } else {
                    conflicts
                        .iter()
                        .map(|c| {
                            let vals: Vec<String> =
                                c.values.iter().map(|v| v.to_string()).collect();
                            format!("{}: {}", c.path, vals.join(" | "))
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            })
        }
        Command::Resolve { id, path, value } => {
            let value: serde_json::Value = serde_json::from_str(&value).with_context(|| {
                format!("--value {value:?} is not JSON (quote text: '\"...\"')")
            })?;
            let doc = store.load(id).await?;
            match doc.header().doc_type {
                DocType::Household => store.resolve::<Household>(id, &path, value).await?,
                DocType::Case => store.resolve::<Case>(id, &path, value).await?,
                DocType::Inspection => store.resolve::<Inspection>(id, &path, value).await?,
                DocType::Grid => store.resolve::<Grid>(id, &path, value).await?,
            }
            out.print(&json!({"resolved": path}), || format!("{path} resolved"))
        }
        Command::Problems { id } => {
            let problems = store.problems(id).await?;
            let rows: Vec<_> = problems
                .iter()
                .map(|p| json!({"field": p.field, "problem": p.problem.to_string()}))
                .collect();
            out.print(&rows, || {
                if problems.is_empty() {
                    return "no problems".into();
                }
                problems
                    .iter()
                    .map(|p| format!("{p}  (fix: resolve {id} --path {} --value JSON)", p.field))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Redact { id, target, reason } => {
            let redaction = gridsync_core::records::Redaction {
                target: target.clone(),
                reason,
                at: gridsync_core::clock::now_ms(),
                author: None,
            };
            let rid = RecordId::new();
            let add = |r: &mut std::collections::BTreeMap<RecordId, _>| {
                r.insert(rid, redaction.clone());
            };
            match store.load(id).await?.header().doc_type {
                DocType::Household => {
                    store
                        .update::<Household>(id, |h| add(&mut h.redactions))
                        .await?
                }
                DocType::Case => store.update::<Case>(id, |c| add(&mut c.redactions)).await?,
                DocType::Inspection => {
                    store
                        .update::<Inspection>(id, |i| add(&mut i.redactions))
                        .await?
                }
                DocType::Grid => bail!("grid records have no entries to redact"),
            };
            out.print(&json!({"redaction": rid, "target": target}), || {
                format!("{target} redacted")
            })
        }
        Command::Export { id, out: file } => {
            let bytes = store.load(id).await?.save();
            std::fs::write(&file, &bytes).with_context(|| format!("writing {}", file.display()))?;
            out.print(&json!({"id": id, "bytes": bytes.len()}), || {
                format!("{id}: {} bytes written to {}", bytes.len(), file.display())
            })
        }
        Command::Import { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let header = store.merge_bytes(&bytes).await?;
            out.print(&header, || {
                format!("merged {} {}", header.doc_type, header.id)
            })
        }
        Command::Rebuild => {
            let n = store.rebuild_projections().await?;
            out.print(&json!({"documents": n}), || {
                format!("rebuilt projections of {n} documents")
            })
        }
        Command::Seed {
            grid,
            households,
            residents,
            visits,
            batch,
            seed,
        } => {
            let batch = batch.max(1);
            let mut ids = Vec::with_capacity(households);
            for start in (0..households).step_by(batch) {
                let end = (start + batch).min(households);
                let records: Vec<Household> = (start..end)
                    .map(|i| {
                        sample::household(
                            seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                            residents,
                            0,
                        )
                    })
                    .collect();
                for id in store.create_many(grid.clone(), &records).await? {
                    // Printed only after the transaction committed: a line means "on disk".
                    out.print(&json!({"household": id}), || format!("household {id}"))?;
                    ids.push(id);
                }
            }
            for round in 0..visits {
                for id in &ids {
                    let vid = RecordId::new();
                    store
                        .update::<Household>(*id, |h| {
                            h.visits.insert(
                                vid,
                                Visit {
                                    worker: "周网格".into(),
                                    at: now_ms(),
                                    gps: None,
                                    purpose: "日常走访".into(),
                                    findings: format!("第 {} 次走访", round + 1),
                                    photos: Default::default(),
                                    cases: Vec::new(),
                                    author: None,
                                },
                            );
                        })
                        .await?;
                    out.print(&json!({"household": id, "visit": vid}), || {
                        format!("visit {vid}")
                    })?;
                }
            }
            Ok(())
        }
    }
}

async fn grid_cmd(store: &Store, out: &Out, cmd: GridCmd) -> Result<()> {
    match cmd {
        GridCmd::Add { code, name } => {
            let id = store
                .create(
                    code.clone(),
                    &Grid {
                        code: code.to_string(),
                        name,
                        roster: Default::default(),
                        boundary: Vec::new(),
                    },
                )
                .await?;
            out.print(&json!({"id": id, "code": code}), || {
                format!("grid {code}: {id}")
            })
        }
        GridCmd::Roster {
            id,
            worker_id,
            name,
            phone,
            duty,
        } => {
            store
                .update::<Grid>(id, |g| {
                    g.roster
                        .insert(worker_id.clone(), RosterEntry { name, phone, duty });
                })
                .await?;
            out.print(&json!({"grid": id, "worker_id": worker_id}), || {
                format!("{worker_id} added to the roster")
            })
        }
        GridCmd::List { within } => {
            let rows = store.grids(within.as_ref()).await?;
            out.print(&rows, || {
                rows.iter()
                    .map(|g| {
                        format!(
                            "{}  {:<10} {}  ({} on roster)",
                            g.code, g.level, g.name, g.roster_size
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}

async fn household_cmd(store: &Store, out: &Out, cmd: HouseholdCmd) -> Result<()> {
    match cmd {
        HouseholdCmd::Add {
            grid,
            address,
            residence,
            flags,
        } => {
            let mut h = Household::new(address, residence);
            h.flags = flags.into_iter().collect();
            let id = store.create(grid, &h).await?;
            out.print(&json!({"id": id}), || format!("household {id}"))
        }
        HouseholdCmd::Edit {
            id,
            address,
            residence,
            add_flags,
            remove_flags,
        } => {
            let changed = store
                .update::<Household>(id, |h| {
                    if let Some(a) = address {
                        h.address = a;
                    }
                    if let Some(r) = residence {
                        h.residence = r;
                    }
                    h.flags.extend(add_flags);
                    for f in &remove_flags {
                        h.flags.remove(f);
                    }
                })
                .await?;
            out.print(&json!({"id": id, "changed": changed}), || {
                if changed {
                    "saved".into()
                } else {
                    "nothing changed".into()
                }
            })
        }
        HouseholdCmd::List { grid } => {
            let rows = store.households(grid.as_ref()).await?;
            out.print(&rows, || {
                rows.iter()
                    .map(|h| {
                        format!(
                            "{}  {}  户主 {}  {} 人  走访 {} 次{}",
                            h.doc_id,
                            h.address,
                            h.head_name.as_deref().unwrap_or("-"),
                            h.member_count,
                            h.visit_count,
                            if h.conflict_count > 0 {
                                "  ⚠ 有冲突"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        HouseholdCmd::Show { id } => {
            let doc = store.load(id).await?;
            let h: Household = doc.read()?;
            let conflicts = doc.conflicts();
            let cases = store.cases_of_household(id).await?;
            let problems = store.problems(id).await?;
            let value = json!({
                "header": doc.header(),
                "household": h,
                "past_requests": cases,
                "conflicts": conflicts,
                "problems": problems.iter().map(|p| json!({"field": p.field, "problem": p.problem.to_string()})).collect::<Vec<_>>(),
            });
            out.print(&value, || {
                let mut s = format!(
                    "{}  ({}, grid {})\n",
                    h.address,
                    h.residence.label(),
                    doc.header().scope
                );
                if !h.flags.is_empty() {
                    s += &format!(
                        "flags: {}\n",
                        h.flags.iter().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
                s += "members:\n";
                for (rid, m) in &h.members {
                    s += &format!(
                        "  {} {:?} {} {} {} {} {}\n",
                        rid,
                        m.relation,
                        m.name,
                        m.birth_date.as_deref().unwrap_or(""),
                        m.phones.join(","),
                        m.work,
                        match m.status {
                            ResidentStatus::Present => String::new(),
                            other => format!(
                                "[{} {}]",
                                other.label(),
                                m.status_date.as_deref().unwrap_or("")
                            ),
                        }
                    );
                }
                s += "visits:\n";
                let mut visits: Vec<_> = h.visible_visits().collect();
                visits.sort_by_key(|(_, v)| std::cmp::Reverse(v.at));
                for (_, v) in visits {
                    s += &format!(
                        "  {} {} {} {}\n",
                        fmt_time(v.at),
                        v.worker,
                        v.purpose,
                        v.findings
                    );
                }
                s += "past requests:\n";
                for c in &cases {
                    s += &format!("  {} {} [{}]\n", fmt_time(c.reported_at), c.title, c.status);
                }
                for c in &conflicts {
                    s += &format!("⚠ conflict at {}: {:?}\n", c.path, c.values);
                }
                for p in &problems {
                    s += &format!(
                        "⚠ to fix: {p} (`resolve {id} --path {} --value JSON`)\n",
                        p.field
                    );
                }
                s.trim_end().to_owned()
            })
        }
    }
}

async fn resident_cmd(store: &Store, out: &Out, cmd: ResidentCmd) -> Result<()> {
    match cmd {
        ResidentCmd::Add {
            household,
            name,
            relation,
            person,
        } => {
            let rid = RecordId::new();
            let mut r = Resident::new(name, relation);
            apply_person(&mut r, person);
            store
                .update::<Household>(household, |h| {
                    h.members.insert(rid, r);
                })
                .await?;
            out.print(&json!({"resident": rid, "household": household}), || {
                format!("resident {rid}")
            })
        }
        ResidentCmd::Edit {
            household,
            resident,
            name,
            person,
            moved_out,
            deceased,
            entered_by_mistake,
        } => {
            let mut found = false;
            store
                .update::<Household>(household, |h| {
                    if let Some(r) = h.members.get_mut(&resident) {
                        found = true;
                        if let Some(n) = name {
                            r.name = n;
                        }
                        apply_person(r, person);
                        if let Some(d) = moved_out {
                            r.status = ResidentStatus::MovedOut;
                            r.status_date = Some(d);
                        }
                        if let Some(d) = deceased {
                            r.status = ResidentStatus::Deceased;
                            r.status_date = Some(d);
                        }
                        if entered_by_mistake {
                            r.status = ResidentStatus::EnteredByMistake;
                            r.status_date = None;
                        }
                    }
                })
                .await?;
            if !found {
                bail!("household {household} has no member {resident}");
            }
            out.print(&json!({"resident": resident}), || "saved".into())
        }
        ResidentCmd::Search { name } => {
            let hits = store.search_residents(&name).await?;
            out.print(&hits, || {
                if hits.is_empty() {
                    return format!("no resident matches {name:?}");
                }
                let mut s = String::new();
                for h in &hits {
                    s += &format!(
                        "{} ({}, {}) {} {}\n  household {} at {} ({}, {}{})\n",
                        h.resident.name,
                        h.resident.relation,
                        h.resident.birth_date.as_deref().unwrap_or("?"),
                        h.resident.phones,
                        h.resident.work,
                        h.household.doc_id,
                        h.household.address,
                        h.household.residence,
                        h.household.member_count,
                        if h.household.flags.is_empty() {
                            String::new()
                        } else {
                            format!(", {}", h.household.flags)
                        }
                    );
                    for m in &h.family {
                        s += &format!(
                            "  · {} {} {} {} [{}]\n",
                            m.relation,
                            m.name,
                            m.birth_date.as_deref().unwrap_or(""),
                            m.work,
                            m.status
                        );
                    }
                    for c in &h.past_requests {
                        s += &format!(
                            "  ↳ {} {} [{}]\n",
                            fmt_time(c.reported_at),
                            c.title,
                            c.status
                        );
                    }
                }
                s.trim_end().to_owned()
            })
        }
    }
}

async fn inspection_cmd(store: &Store, out: &Out, cmd: InspectionCmd) -> Result<()> {
    match cmd {
        InspectionCmd::Start { grid } => {
            let i = Inspection {
                worker: worker(store).await?,
                started_at: now_ms(),
                ended_at: None,
                track: Vec::new(),
                checkpoints: Default::default(),
                findings: Default::default(),
                photos: Default::default(),
                redactions: Default::default(),
            };
            let id = store.create(grid, &i).await?;
            out.print(&json!({"id": id}), || format!("patrol {id} started"))
        }
        InspectionCmd::Track { id, lat, lon } => {
            store
                .update::<Inspection>(id, |i| {
                    i.track.push(TrackPoint {
                        at: now_ms(),
                        lat,
                        lon,
                    })
                })
                .await?;
            out.print(&json!({"id": id}), || "point added".into())
        }
        InspectionCmd::Checkpoint { id, name, ok, note } => {
            let cid = RecordId::new();
            store
                .update::<Inspection>(id, |i| {
                    i.checkpoints.insert(
                        cid,
                        Checkpoint {
                            name,
                            checked_at: Some(now_ms()),
                            ok: Some(ok),
                            gps: None,
                            note,
                        },
                    );
                })
                .await?;
            out.print(&json!({"checkpoint": cid}), || format!("checkpoint {cid}"))
        }
        InspectionCmd::Finding { id, description } => {
            let fid = RecordId::new();
            store
                .update::<Inspection>(id, |i| {
                    i.findings.insert(
                        fid,
                        Finding {
                            description,
                            at: now_ms(),
                            gps: None,
                            case: None,
                        },
                    );
                })
                .await?;
            out.print(&json!({"finding": fid}), || format!("finding {fid}"))
        }
        InspectionCmd::Finish { id } => {
            store
                .update::<Inspection>(id, |i| i.ended_at = Some(now_ms().max(i.started_at)))
                .await?;
            out.print(&json!({"id": id}), || "patrol finished".into())
        }
        InspectionCmd::List { grid } => {
            let rows = store.inspections(grid.as_ref()).await?;
            out.print(&rows, || {
                rows.iter()
                    .map(|i| {
                        format!(
                            "{}  {}  {}  {} → {}  {} points, {} findings",
                            i.doc_id,
                            i.grid,
                            i.worker,
                            fmt_time(i.started_at),
                            i.ended_at
                                .map(fmt_time)
                                .unwrap_or_else(|| "(under way)".into()),
                            i.track_points,
                            i.findings
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        InspectionCmd::Show { id } => {
            let doc = store.load(id).await?;
            let i: Inspection = doc.read()?;
            out.print(&json!({"header": doc.header(), "inspection": i}), || {
                serde_json::to_string_pretty(&i).unwrap_or_default()
            })
        }
    }
}

async fn case_cmd(store: &Store, out: &Out, cmd: CaseCmd) -> Result<()> {
    match cmd {
        CaseCmd::Report {
            grid,
            title,
            source,
            subcategory,
            address,
            description,
            urgent,
            lat,
            lon,
            party,
            party_phone,
            party_household,
        } => {
            let who = worker(store).await?;
            let now = now_ms();
            let mut c = Case {
                title,
                source,
                category: subcategory.chars().take(2).collect(),
                subcategory,
                location: lat.zip(lon).map(|(lat, lon)| Gps::new(lat, lon)),
                address,
                description,
                urgency: if urgent {
                    Urgency::Urgent
                } else {
                    Urgency::Normal
                },
                reported_by: who.clone(),
                reported_at: now,
                parties: Default::default(),
                photos: Default::default(),
                events: Default::default(),
                redactions: Default::default(),
            };
            if let Some(name) = party {
                c.parties.insert(
                    RecordId::new(),
                    Party {
                        name,
                        phone: party_phone.unwrap_or_default(),
                        household: party_household,
                        resident: None,
                        role: "reporter".into(),
                    },
                );
            }
            let actor = store.actor().await?;
            act(&mut c, Action::Report, &actor, now, "", BTreeMap::new())?;
            let id = store.create(grid, &c).await?;
            out.print(&json!({"id": id}), || format!("case {id} reported"))
        }
        CaseCmd::Edit {
            id,
            title,
            description,
        } => {
            let changed = store
                .update::<Case>(id, |c| {
                    if let Some(t) = title {
                        c.title = t;
                    }
                    if let Some(d) = description {
                        c.description = d;
                    }
                })
                .await?;
            out.print(&json!({"id": id, "changed": changed}), || {
                if changed {
                    "saved".into()
                } else {
                    "nothing changed".into()
                }
            })
        }
        CaseCmd::Act {
            id,
            action,
            note,
            lead,
            co,
            satisfaction,
            into,
            extra_days,
            reference,
        } => {
            let action = Action::from_str(&action).map_err(anyhow::Error::msg)?;
            let reference = match reference {
                Some(path) => Reference::from_json(
                    &std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?,
                )?,
                None => Reference::builtin(),
            };
            let actor = store.actor().await?;
            let now = now_ms();
            let co: Option<Vec<String>> = co.map(|c| {
                c.split(',')
                    .map(|d| d.trim().to_owned())
                    .filter(|d| !d.is_empty())
                    .collect()
            });
            let eid = store
                .case_action(id, &actor, action, &note, now, |case, state| {
                    let mut data = BTreeMap::new();
                    match action {
                        Action::Dispatch => {
                            return plan_dispatch(
                                case,
                                &reference,
                                now,
                                lead.as_deref(),
                                co.as_deref(),
                            );
                        }
                        Action::ApproveExtension => {
                            return Ok(plan_extension(
                                state,
                                &reference,
                                TimeLimit::WorkingDays(extra_days),
                            ));
                        }
                        Action::RequestExtension => {
                            data.insert("extra_days".into(), extra_days.to_string());
                        }
                        Action::Resume => return Ok(plan_resume(state, &reference, now)),
                        Action::FollowUp => {
                            if let Some(s) = &satisfaction {
                                let s: Satisfaction =
                                    s.parse().map_err(|e: String| WorkflowError::NotAllowed {
                                        action: "follow_up",
                                        reason: e,
                                    })?;
                                data.insert(
                                    "satisfaction".into(),
                                    serde_json::to_value(s)
                                        .ok()
                                        .and_then(|v| v.as_str().map(str::to_owned))
                                        .unwrap_or_default(),
                                );
                            }
                        }
                        Action::Merge => {
                            if let Some(i) = into {
                                data.insert("into".into(), i.to_string());
                            }
                        }
                        _ => {}
                    }
                    Ok(data)
                })
                .await?;
            out.print(&json!({"event": eid, "action": action}), || {
                format!("{} recorded ({eid})", action.as_str())
            })
        }
        CaseCmd::List { status } => {
            let rows = store.cases(status.as_deref()).await?;
            out.print(&rows, || {
                rows.iter()
                    .map(|c| {
                        format!(
                            "{}  {}  [{}] {}  {}{}",
                            c.doc_id,
                            fmt_time(c.reported_at),
                            c.status,
                            c.title,
                            c.address,
                            if c.conflict_count > 0 {
                                "  ⚠ 有冲突"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        CaseCmd::Show { id } => {
            let doc = store.load(id).await?;
            let c: Case = doc.read()?;
            let conflicts = doc.conflicts();
            let state = c.state();
            let flags = state.flags(now_ms());
            out.print(
                &json!({"header": doc.header(), "case": c, "state": state, "flags": flags, "conflicts": conflicts}),
                || {
                    let mut s = format!(
                        "{} [{}]  {:?} {:?}  {}\n{}\n",
                        c.title,
                        state.status.as_str(),
                        c.source,
                        c.urgency,
                        c.address,
                        c.description
                    );
                    let mut events: Vec<_> = c.events.values().collect();
                    events.sort_by_key(|e| e.at);
                    for e in events {
                        s += &format!("  {} {} {} {}\n", fmt_time(e.at), e.by, e.kind, e.note);
                    }
                    if let Some(lead) = &state.lead {
                        s += &format!("lead {lead}, co {}\n", state.co.join(","));
                    }
                    if let Some(d) = state.deadline {
                        s += &format!(
                            "deadline {}{}{}{}\n",
                            fmt_time(d),
                            if flags.overdue { "  🔴 overdue" } else if flags.amber { "  🟠 amber" } else { "" },
                            if flags.urged { "  催办" } else { "" },
                            if state.extensions > 0 { format!("  ({} extension(s))", state.extensions) } else { String::new() }
                        );
                    }
                    for sup in &state.supervisions {
                        s += &format!("督办 {} {}: {}\n", fmt_time(sup.at), sup.by, sup.note);
                    }
                    for x in &state.conflicts {
                        s += &format!("⚠ event {} ({}, by {}) not applied in {}: {}\n", x.event, x.kind, x.by, x.landed_in.as_str(), x.reason);
                    }
                    for f in &state.time_flags {
                        s += &format!("⚠ time {} at {}: stamped before an event its author had seen (a wrong clock)\n", f.path, fmt_time(f.at));
                    }
                    for x in &conflicts {
                        s += &format!("⚠ conflict at {}: {:?}\n", x.path, x.values);
                    }
                    s.trim_end().to_owned()
                },
            )
        }
    }
}
