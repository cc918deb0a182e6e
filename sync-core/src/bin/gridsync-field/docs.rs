//! Commands on any record: `conflicts`, `resolve`, `problems`, `redact`, `export`, `import`,
//! `rebuild` and `seed`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use gridsync_core::app::{NewVisit, Replica};
use gridsync_proto::DocId;
use serde_json::json;

use super::{Out, lines};

#[derive(Subcommand)]
pub(crate) enum DocsCmd {
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
        grid: String,
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

pub(crate) async fn run(app: &Replica, out: &Out, cmd: DocsCmd) -> Result<()> {
    match cmd {
        DocsCmd::Conflicts { id } => {
            let conflicts = app.conflicts(id).await?;
            out.print(&conflicts, || {
                lines(&conflicts, "no conflicts", |c| {
                    format!(
                        "{}: {}",
                        c.path,
                        c.values
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" | ")
                    )
                })
            })
        }
        DocsCmd::Resolve { id, path, value } => {
            app.resolve(id, &path, &value).await?;
            out.print(&json!({"resolved": path}), || format!("{path} resolved"))
        }
        DocsCmd::Problems { id } => {
            let problems = app.problems(id).await?;
            out.print(&problems, || {
                lines(&problems, "no problems", |p| {
                    format!(
                        "{}: {}  (fix: resolve {id} --path {} --value JSON)",
                        p.field, p.problem, p.field
                    )
                })
            })
        }
        DocsCmd::Redact { id, target, reason } => {
            let rid = app.redact(id, &target, &reason).await?;
            out.print(&json!({"redaction": rid, "target": target}), || {
                format!("{target} redacted")
            })
        }
        DocsCmd::Export { id, out: file } => {
            let bytes = app.export_doc(id).await?;
            std::fs::write(&file, &bytes).with_context(|| format!("writing {}", file.display()))?;
            out.print(&json!({"id": id, "bytes": bytes.len()}), || {
                format!("{id}: {} bytes written to {}", bytes.len(), file.display())
            })
        }
        DocsCmd::Import { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let header = app.import_doc(&bytes).await?;
            out.print(&header, || {
                format!("merged {} {}", header.doc_type, header.id)
            })
        }
        DocsCmd::Rebuild => {
            let n = app.rebuild().await?;
            out.print(&json!({"documents": n}), || {
                format!("rebuilt projections of {n} documents")
            })
        }
        DocsCmd::Seed {
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
                for id in app.seed(&grid, start..end, residents, seed).await? {
                    // Printed only after the transaction committed: a line means "on disk".
                    out.print(&json!({"household": id}), || format!("household {id}"))?;
                    ids.push(id);
                }
            }
            for round in 0..visits {
                for id in &ids {
                    let vid = app
                        .add_visit(NewVisit {
                            household: Some(*id),
                            purpose: "日常走访".into(),
                            findings: format!("第 {} 次走访", round + 1),
                            gps: None,
                            worker: Some("周网格".into()),
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
