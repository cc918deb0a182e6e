//! `gridsync-server import` and `export`: the register in, the ledger, indicators and archive
//! out. Parsing and printing only; the work is `crate::register`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use gridsync_proto::GridCode;

use crate::indicators::GroupBy;
use crate::register::export::{self, ExportFormat, Mask, Scope};
use crate::register::{ImportOptions, ImportReport, Mapping, import_households};
use crate::{AppState, Storage};

#[derive(Subcommand)]
pub(super) enum ImportCmd {
    /// Import households and residents from a register file (.xlsx, .xls, .ods or .csv in
    /// UTF-8 or GBK). Bad rows are reported with their row, column and reason; the good ones
    /// are imported. Importing the same file again changes nothing.
    Households {
        /// The register file.
        file: PathBuf,
        /// A JSON mapping file: `{"sheet": "...", "header_row": 2, "columns": {"id_number":
        /// "证件号码", ...}}` for headers other than the usual ones.
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// The grid of rows without a 网格 column or value.
        #[arg(long)]
        grid: Option<String>,
        /// Check and match every row, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who runs the import, for the import log (default: the system user).
        #[arg(long)]
        by: Option<String>,
        /// Print the summary (with every refused row) as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List past import runs (who imported which file when, and the actor its changes carry).
    Log {
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(super) enum ExportCmd {
    /// The case ledger (台账) of cases reported in [--from, --to).
    Cases {
        #[command(flatten)]
        period: Period,
        #[command(flatten)]
        out: Output,
    },
    /// Indicators per grid, department and category (one sheet each; CSV: --group-by).
    Indicators {
        #[command(flatten)]
        period: Period,
        /// For CSV, which grouping: grid, department or category.
        #[arg(long, default_value = "grid")]
        group_by: String,
        #[command(flatten)]
        out: Output,
    },
    /// The household archive in the register's layout (re-importable) and a households sheet.
    Households {
        /// Show ID numbers and phones whole (masked by default).
        #[arg(long)]
        unmasked: bool,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(clap::Args)]
pub(super) struct Period {
    /// First day (YYYY-MM-DD, China time), included.
    #[arg(long)]
    from: String,
    /// The day after the last (YYYY-MM-DD), excluded.
    #[arg(long)]
    to: String,
}

#[derive(clap::Args)]
pub(super) struct Output {
    /// Only this unit (town, district, community or grid code) and what is inside it.
    #[arg(long)]
    within: Option<String>,
    /// The file to write; its extension gives the format unless --format says.
    #[arg(long)]
    out: PathBuf,
    /// xlsx or csv.
    #[arg(long)]
    format: Option<String>,
}

/// Runs an import command.
pub(super) async fn import<S: Storage>(storage: &S, cmd: ImportCmd) -> Result<()> {
    match cmd {
        ImportCmd::Households {
            file,
            mapping,
            grid,
            dry_run,
            by,
            json,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let mapping = match &mapping {
                Some(p) => Mapping::from_json(
                    &std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?,
                )
                .map_err(anyhow::Error::msg)?,
                None => Mapping::default(),
            };
            let default_grid = grid
                .as_deref()
                .map(|g| GridCode::parse(g.trim()).map_err(|e| anyhow::anyhow!("--grid: {e}")))
                .transpose()?;
            let opts = ImportOptions {
                file_name: file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                mapping,
                default_grid,
                dry_run,
                operator: by
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "operator".into()),
            };
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                if json || !std::io::stderr().is_terminal() {
                    indicatif::ProgressDrawTarget::hidden()
                } else {
                    indicatif::ProgressDrawTarget::stderr()
                },
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} 户 {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let report = import_households(storage, &bytes, &opts, &|done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print_report(&report);
            }
            Ok(())
        }
        ImportCmd::Log { json } => {
            let runs = storage.imports().await?;
            if json {
                println!("{}", serde_json::to_string(&runs)?);
                return Ok(());
            }
            for r in runs {
                println!(
                    "{}  {:<24} by {:<10} rows {} (bad {})  households +{} ~{} ={}  actor {}",
                    export::china_time(r.started_at),
                    r.file_name,
                    r.operator,
                    r.rows_total,
                    r.rows_bad,
                    r.created,
                    r.updated,
                    r.unchanged,
                    r.actor
                );
            }
            Ok(())
        }
    }
}

fn print_report(r: &ImportReport) {
    let encoding = if r.encoding.is_empty() {
        String::new()
    } else {
        format!(", {}", r.encoding)
    };
    println!(
        "{} (sheet {}{encoding}): header on row {}",
        r.file, r.sheet, r.header_row
    );
    println!(
        "rows: {} read, {} imported, {} refused, {} blank",
        r.rows, r.good_rows, r.bad_rows, r.blank_rows
    );
    println!(
        "households: {} created, {} changed, {} unchanged; residents: {} added, {} changed",
        r.households_created,
        r.households_updated,
        r.households_unchanged,
        r.residents_created,
        r.residents_updated
    );
    for h in &r.ignored_columns {
        println!("  column {h} not read: an earlier column holds the same field");
    }
    for e in &r.errors {
        println!("  row {} · {}: {}", e.row, e.column, e.reason);
    }
    if r.dry_run {
        println!("dry run: nothing was written");
    }
}

/// Runs an export command: the operator sees every unit.
pub(super) async fn export<S: Storage>(state: &AppState<S>, cmd: ExportCmd) -> Result<()> {
    let (out, tables) = match cmd {
        ExportCmd::Cases { period, out } => {
            let (from, to) = period.range()?;
            let scope = out.scope()?;
            let tables = export::cases(
                state.storage.as_ref(),
                &state.config.reference,
                from,
                to,
                &scope,
            )
            .await?;
            (out, tables)
        }
        ExportCmd::Indicators {
            period,
            group_by,
            out,
        } => {
            let (from, to) = period.range()?;
            let scope = out.scope()?;
            let group_by: GroupBy = serde_json::from_value(serde_json::Value::String(
                group_by.clone(),
            ))
            .map_err(|_| {
                anyhow::anyhow!("--group-by: {group_by:?} is not grid, department or category")
            })?;
            let mut groupings = vec![group_by];
            groupings.extend(
                [GroupBy::Grid, GroupBy::Department, GroupBy::Category]
                    .into_iter()
                    .filter(|g| *g != group_by),
            );
            let tables = export::indicators(state, from, to, &scope, &groupings).await?;
            (out, tables)
        }
        ExportCmd::Households { unmasked, out } => {
            let scope = out.scope()?;
            let mask = if unmasked {
                Mask::Unmasked
            } else {
                Mask::Masked
            };
            let tables = export::households(state.storage.as_ref(), &scope, mask).await?;
            (out, tables)
        }
    };
    let format = out.format()?;
    let bytes = export::encode(&tables, format)?;
    std::fs::write(&out.out, &bytes).with_context(|| format!("writing {}", out.out.display()))?;
    let rows: usize = tables.first().map_or(0, |t| t.rows.len());
    println!("{}: {rows} rows ({} bytes)", out.out.display(), bytes.len());
    Ok(())
}

impl Period {
    fn range(&self) -> Result<(i64, i64)> {
        let from =
            crate::http::parse_instant("--from", &self.from).map_err(|e| anyhow::anyhow!("{e}"))?;
        let to =
            crate::http::parse_instant("--to", &self.to).map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(to > from, "--to: must be after --from");
        Ok((from, to))
    }
}

impl Output {
    fn scope(&self) -> Result<Scope> {
        Ok(Scope {
            device: None,
            within: self
                .within
                .as_deref()
                .map(|w| GridCode::parse(w.trim()).map_err(|e| anyhow::anyhow!("--within: {e}")))
                .transpose()?,
        })
    }

    fn format(&self) -> Result<ExportFormat> {
        match &self.format {
            Some(f) => f
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--format: {e}")),
            None => {
                let ext = self
                    .out
                    .extension()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default();
                ext.parse().map_err(|_| {
                    anyhow::anyhow!("--out: name the file .xlsx or .csv, or give --format")
                })
            }
        }
    }
}
