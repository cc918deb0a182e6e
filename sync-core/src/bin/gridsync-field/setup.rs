//! Setting the phone up and syncing it: `init`, `whoami`, `enroll`, `sync`, `status`, the
//! reference data (`categories`, `departments`, `vocab`) and `indicators`.

use anyhow::Result;
use clap::Subcommand;
use gridsync_core::app::{Replica, SyncOptions};

use super::{Out, fmt_time, lines};

#[derive(Subcommand)]
pub(crate) enum SetupCmd {
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
    /// Show this phone's device id, worker, role and server.
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
    /// The category table (大类/小类) with lead departments and time limits.
    Categories,
    /// The departments cases are dispatched to.
    Departments,
    /// The vocabularies (relations, flags, statuses, actions ...) with their Chinese labels.
    Vocab,
    /// The case indicators from the server (dispatcher and leader devices).
    Indicators {
        /// First day, YYYY-MM-DD (China time).
        #[arg(long)]
        from: String,
        /// Day after the last, YYYY-MM-DD.
        #[arg(long)]
        to: String,
        /// grid, department or category.
        #[arg(long, default_value = "grid")]
        group_by: String,
    },
}

pub(crate) async fn run(app: &Replica, out: &Out, cmd: SetupCmd) -> Result<()> {
    match cmd {
        SetupCmd::Init {
            worker,
            role,
            department,
        } => {
            let me = app
                .set_worker(&worker, role.as_deref(), department.as_deref())
                .await?;
            out.print(&me, || {
                format!("device {}, worker {}", me.device, worker.trim())
            })
        }
        SetupCmd::Whoami => {
            let me = app.identity().await?;
            out.print(&me, || {
                format!(
                    "device {}, worker {}, {}{}; server {}",
                    me.device,
                    me.worker.as_deref().unwrap_or("(not set)"),
                    me.role,
                    me.department
                        .as_deref()
                        .map(|d| format!(" of {d}"))
                        .unwrap_or_default(),
                    me.server.as_deref().unwrap_or("(not enrolled)")
                )
            })
        }
        SetupCmd::Enroll { server, code } => {
            let resp = app.enroll(&server, &code).await?;
            out.print(&resp, || {
                format!(
                    "enrolled as {} ({}, {}), scopes {}",
                    resp.name,
                    resp.device,
                    resp.role,
                    resp.scopes.join(",")
                )
            })
        }
        SetupCmd::Sync {
            server,
            max_rounds,
            retry_refused,
            metered,
            no_photos,
        } => {
            let outcome = app
                .sync(SyncOptions {
                    server,
                    retry_refused,
                    metered,
                    photos: !no_photos,
                    max_idle_rounds: max_rounds,
                })
                .await?;
            out.print(&outcome, || {
                let report = &outcome.documents;
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
                    s += &format!(
                        "\n⚠ {doc} cannot be read by this version and is kept aside: {why}"
                    );
                }
                if report.unquarantined > 0 {
                    s += &format!(
                        "\n{} document(s) kept aside earlier are now read",
                        report.unquarantined
                    );
                }
                if let Some(p) = &outcome.photos {
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
        SetupCmd::Status => {
            let st = app.status().await?;
            out.print(&st, || {
                let mut s = format!(
                    "{} document(s) waiting to sync; server {}",
                    st.unsynced_documents,
                    st.server.as_deref().unwrap_or("(not enrolled)")
                );
                if !st.upload_queue.is_empty() {
                    let waiting = st.upload_queue.iter().filter(|f| f.waiting_for_sync).count();
                    s += &format!(
                        "\n{} photo file(s) to upload, {} bytes left{}",
                        st.upload_queue.len(),
                        st.upload_bytes_left,
                        if waiting > 0 {
                            format!(" ({waiting} wait for their document's sync)")
                        } else {
                            String::new()
                        }
                    );
                    for f in &st.upload_queue {
                        s += &format!(
                            "\n  {} {} {}/{} bytes",
                            f.kind.as_str(),
                            f.sha256,
                            f.uploaded,
                            f.size
                        );
                    }
                }
                for r in &st.set_aside {
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
                for (doc, at, why) in &st.superseded {
                    s += &format!(
                        "\n↺ {doc}: this phone's copy was rebased at {} ({why}); the old copy is kept",
                        fmt_time(*at)
                    );
                }
                for q in &st.quarantined {
                    s += &format!(
                        "\n⚠ {} cannot be read by this version ({} change(s) kept): {}; upgrade the app",
                        q.doc, q.changes, q.reason
                    );
                }
                s
            })
        }
        SetupCmd::Categories => {
            let cats = app.categories();
            out.print(&cats, || {
                lines(&cats, "no categories", |c| {
                    format!(
                        "{}  {}/{}  主办 {} {}{}  时限 {} (紧急 {})",
                        c.code,
                        c.major_name,
                        c.name,
                        c.lead.code,
                        c.lead.name,
                        if c.co.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "  协办 {}",
                                c.co.iter()
                                    .map(|d| format!("{} {}", d.code, d.name))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        },
                        c.limit,
                        c.urgent_limit
                    )
                })
            })
        }
        SetupCmd::Departments => {
            let depts = app.departments();
            out.print(&depts, || {
                lines(&depts, "no departments", |d| {
                    format!("{}  {}", d.code, d.name)
                })
            })
        }
        SetupCmd::Vocab => {
            let v = app.vocabularies();
            out.print(&v, || {
                let show = |name: &str, terms: &[gridsync_core::app::vocab::Term]| {
                    format!(
                        "{name}: {}",
                        terms
                            .iter()
                            .map(|t| format!("{} ({})", t.label, t.code))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                [
                    show("relation", &v.relations),
                    show("residence", &v.residences),
                    show("gender", &v.genders),
                    show("household flag", &v.household_flags),
                    show("key category", &v.key_categories),
                    show("case source", &v.case_sources),
                    show("status", &v.statuses),
                    show("action", &v.actions),
                    show("satisfaction", &v.satisfactions),
                    show("photo stage", &v.photo_stages),
                ]
                .join("\n")
            })
        }
        SetupCmd::Indicators { from, to, group_by } => {
            let value = app.indicators(&from, &to, &group_by).await?;
            out.print(&value, || indicator_table(&value))
        }
    }
}

/// The indicator groups as a table (one line per group, then the total).
fn indicator_table(v: &serde_json::Value) -> String {
    let row = |name: &str, g: &serde_json::Value| {
        let pct = |k: &str| {
            g[k].as_f64()
                .map_or_else(|| "-".to_owned(), |x| format!("{:.1}%", x * 100.0))
        };
        format!(
            "{name:<20} 案件 {:>4}  结案率 {:>6}  按期结案率 {:>6}  满意率 {:>6}  超期 {}  督办 {}",
            g["cases"].as_u64().unwrap_or(0),
            pct("closure_rate"),
            pct("on_time_rate"),
            pct("satisfaction_rate"),
            g["overdue"].as_u64().unwrap_or(0),
            g["supervised"].as_u64().unwrap_or(0),
        )
    };
    let mut out = Vec::new();
    if let Some(groups) = v["groups"].as_array() {
        for g in groups {
            out.push(row(g["key"].as_str().unwrap_or("?"), g));
        }
    }
    out.push(row("合计", &v["total"]));
    out.join("\n")
}
