//! `inspection`: patrols (巡查) with their track, checkpoints and findings.

use anyhow::Result;
use clap::Subcommand;
use gridsync_core::app::{AppError, NewCheckpoint, Replica};
use gridsync_proto::DocId;
use serde_json::json;

use super::{Out, fmt_time, lines};

#[derive(Subcommand)]
pub(crate) enum InspectionCmd {
    /// Start a patrol of a grid.
    Start {
        /// The grid.
        #[arg(long)]
        grid: String,
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
    /// Record a checkpoint and its result: `--ok` (in order) or `--not-ok` (not in order);
    /// one of the two is required.
    Checkpoint {
        /// The patrol.
        id: DocId,
        /// What was checked.
        #[arg(long)]
        name: String,
        /// It was in order.
        #[arg(long, conflicts_with = "not_ok")]
        ok: bool,
        /// It was not in order.
        #[arg(long)]
        not_ok: bool,
        /// Remarks.
        #[arg(long, default_value = "")]
        note: String,
        /// Latitude.
        #[arg(long, requires = "lon", allow_hyphen_values = true)]
        lat: Option<f64>,
        /// Longitude.
        #[arg(long, requires = "lat", allow_hyphen_values = true)]
        lon: Option<f64>,
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
        grid: Option<String>,
    },
    /// Show one patrol.
    Show {
        /// The patrol.
        id: DocId,
    },
}

pub(crate) async fn run(app: &Replica, out: &Out, cmd: InspectionCmd) -> Result<()> {
    match cmd {
        InspectionCmd::Start { grid } => {
            let id = app.start_inspection(&grid).await?;
            out.print(&json!({"id": id}), || format!("patrol {id} started"))
        }
        InspectionCmd::Track { id, lat, lon } => {
            app.track(id, lat, lon).await?;
            out.print(&json!({"id": id}), || "point added".into())
        }
        InspectionCmd::Checkpoint {
            id,
            name,
            ok,
            not_ok,
            note,
            lat,
            lon,
        } => {
            if !ok && !not_ok {
                return Err(AppError::invalid(
                    "ok",
                    "say the checkpoint's result: --ok (in order) or --not-ok (not in order)",
                )
                .into());
            }
            let cid = app
                .add_checkpoint(
                    id,
                    NewCheckpoint {
                        name,
                        ok,
                        note,
                        gps: lat.zip(lon),
                    },
                )
                .await?;
            out.print(&json!({"checkpoint": cid, "ok": ok}), || {
                format!(
                    "checkpoint {cid} ({})",
                    if ok { "in order" } else { "not in order" }
                )
            })
        }
        InspectionCmd::Finding { id, description } => {
            let fid = app.add_finding(id, &description).await?;
            out.print(&json!({"finding": fid}), || format!("finding {fid}"))
        }
        InspectionCmd::Finish { id } => {
            app.finish_inspection(id).await?;
            out.print(&json!({"id": id}), || "patrol finished".into())
        }
        InspectionCmd::List { grid } => {
            let rows = app.inspections(grid.as_deref()).await?;
            out.print(&rows, || {
                lines(&rows, "no patrols", |i| {
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
            })
        }
        InspectionCmd::Show { id } => {
            let v = app.inspection(id).await?;
            out.print(&v, || {
                let i = &v.inspection;
                let mut s = format!(
                    "patrol of grid {} by {}: {} → {}, {} track points\n",
                    v.grid,
                    i.worker,
                    fmt_time(i.started_at),
                    i.ended_at
                        .map(fmt_time)
                        .unwrap_or_else(|| "(under way)".into()),
                    i.track.len()
                );
                for (cid, c) in &i.checkpoints {
                    s += &format!(
                        "  ✓ {cid} {} {} {}\n",
                        c.name,
                        match c.ok {
                            Some(true) => "正常",
                            Some(false) => "异常",
                            None => "未检查",
                        },
                        c.note
                    );
                }
                for (fid, f) in &i.findings {
                    s += &format!("  ! {fid} {} {}\n", fmt_time(f.at), f.description);
                }
                s.trim_end().to_owned()
            })
        }
    }
}
