//! The benchmark scenarios behind `gridsync-bench`. Each adds named metrics to one JSON
//! object; `quick` shrinks every scenario so CI can check that it runs and that its results
//! are right, without timing anything.

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

/// Runs every scenario and returns the one JSON object of metrics.
pub async fn run(quick: bool) -> Result<Value> {
    let mut out = Map::new();
    out.insert("quick".into(), json!(quick));
    import_breakdown(Sizes::new(quick), &mut out)?;
    store_scenarios(Sizes::new(quick), &mut out)
        .await
        .context("store scenarios")?;
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
