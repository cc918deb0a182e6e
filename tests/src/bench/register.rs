//! Register import and exports (issue: registers in, reports out): a generated register of
//! 50,000 residents in about 17,000 households over 20 grids, imported into an empty server
//! by the `gridsync-server import households` process (wall time and the process's peak
//! memory), then imported again unchanged; and the case ledger of 10,000 cases written as
//! XLSX (server time).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use gridsync_core::Store;
use gridsync_core::client::{RetryPolicy, SyncClient};
use gridsync_core::records::{Case, Grid};
use gridsync_core::validate::id_check_char;
use gridsync_core::workflow::{Actor, Reference, Role as WorkflowRole};
use gridsync_proto::GridCode;
use gridsync_server::auth::Role;
use gridsync_server::register::export::{self, ExportFormat, Scope};
use gridsync_server::{SqliteStorage, Storage};

use rust_xlsxwriter::Workbook;
use serde_json::{Map, Value, json};

use super::storm::{ServerProcess, case, enroll_codes, server_bin};

const GRIDS: usize = 20;

fn grid(n: usize) -> GridCode {
    GridCode::parse(&format!("33010200101001{:03}", n % GRIDS + 1))
        .unwrap_or_else(|e| panic!("grid code: {e}"))
}

/// A valid, unique ID number for person `p`.
fn id_number(p: usize) -> String {
    // Birth dates from 1950-01-01 on (1,000 people per day), then a 3-digit sequence.
    let day = time::Date::from_calendar_date(1950, time::Month::January, 1)
        .unwrap_or(time::Date::MIN)
        .checked_add(time::Duration::days((p / 1000) as i64))
        .unwrap_or(time::Date::MIN);
    let first17 = format!(
        "330102{:04}{:02}{:02}{:03}",
        day.year(),
        u8::from(day.month()),
        day.day(),
        p % 1000
    );
    let check = id_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

/// A register of `residents` people, 3 per household (every third household 2 or 4), as an
/// Excel workbook with the usual headers; returns (bytes, households).
fn register(residents: usize) -> Result<(Vec<u8>, usize)> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let headers = [
        "网格",
        "户号",
        "户主姓名",
        "姓名",
        "身份证号",
        "与户主关系",
        "联系电话",
        "现住址",
        "户籍地址",
        "工作单位",
        "人员类别",
    ];
    for (c, h) in headers.iter().enumerate() {
        sheet.write_string(0, c as u16, *h)?;
    }
    let surnames = ["张", "王", "李", "赵", "陈", "刘", "杨", "黄", "周", "吴"];
    let (mut line, mut p, mut h) = (1u32, 0usize, 0usize);
    while p < residents {
        let size = match h % 3 {
            0 => 3,
            1 => 2,
            _ => 4,
        }
        .min(residents - p);
        let head = format!("{}户{h}", surnames[h % surnames.len()]);
        for m in 0..size {
            let (name, relation) = match m {
                0 => (head.clone(), "户主"),
                1 => (format!("{head}之妻"), "配偶"),
                2 => (format!("{head}之子"), "子女"),
                _ => (format!("{head}之母"), "母亲"),
            };
            let cells = [
                grid(h).to_string(),
                format!("H{h:06}"),
                head.clone(),
                name,
                id_number(p),
                relation.to_owned(),
                format!("13{:09}", p),
                format!("城南社区{}幢{}室", h / 100 + 1, h % 100 + 101),
                "浙江省杭州市上城区".to_owned(),
                if m < 2 {
                    "杭州某公司".to_owned()
                } else {
                    String::new()
                },
                if m == 3 {
                    "独居老人".to_owned()
                } else {
                    String::new()
                },
            ];
            for (c, v) in cells.iter().enumerate() {
                if !v.is_empty() {
                    sheet.write_string(line, c as u16, v)?;
                }
            }
            line += 1;
            p += 1;
        }
        h += 1;
    }
    Ok((book.save_to_buffer()?, h))
}

/// The peak resident memory (`VmHWM`) of a process, in MB, from `/proc`.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs `gridsync-server import households` as a process: (seconds, peak MB, JSON summary).
fn import_process(data: &Path, file: &Path) -> Result<(f64, Option<f64>, Value)> {
    let start = Instant::now();
    let mut child = Command::new(server_bin()?)
        .arg("--data-dir")
        .arg(data)
        .args(["import", "households"])
        .arg(file)
        .args(["--json", "--by", "bench"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the import")?;
    // VmHWM only grows: the last reading before the process ends is its peak (but for the
    // last few milliseconds).
    let mut peak = None;
    while child.try_wait()?.is_none() {
        if let Some(mb) = peak_rss_mb(child.id()) {
            peak = Some(mb);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    let seconds = start.elapsed().as_secs_f64();
    ensure!(out.status.success(), "import failed");
    let summary: Value = serde_json::from_slice(&out.stdout).context("import summary")?;
    Ok((seconds, peak, summary))
}

/// The register scenario: `--quick` is 600 residents and 300 cases.
pub async fn register_scenario(quick: bool, out: &mut Map<String, Value>) -> Result<()> {
    let (residents, cases) = if quick { (600, 300) } else { (50_000, 10_000) };
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("server");
    let grids: Vec<GridCode> = (0..GRIDS).map(grid).collect();

    // The town's grids (a dispatcher's work) and its cases (a worker's), through a server.
    {
        let codes = enroll_codes(
            &data,
            &[
                (Role::Dispatcher, GridCode::parse("330102001")?),
                (Role::Worker, grids[0].clone()),
            ],
        )
        .await?;
        let server = ServerProcess::start(&data)?;
        let client = SyncClient::new(&server.url, RetryPolicy::default())?;
        let office = Store::open(&dir.path().join("office.db")).await?;
        client.enroll(&office, &codes[0]).await?;
        for (i, g) in grids.iter().enumerate() {
            office
                .create(
                    g.clone(),
                    &Grid {
                        code: g.to_string(),
                        name: format!("城南{}网格", i + 1),
                        roster: Default::default(),
                        boundary: Vec::new(),
                    },
                )
                .await?;
        }
        let seeder = Store::open(&dir.path().join("seeder.db")).await?;
        client.enroll(&seeder, &codes[1]).await?;
        let actor = Actor {
            name: "网格员".into(),
            role: WorkflowRole::Worker,
            dept: None,
        };
        let cs: Vec<Case> = (0..cases).map(|i| case(i, &actor)).collect::<Result<_>>()?;
        for chunk in cs.chunks(500) {
            seeder.create_many(grids[0].clone(), chunk).await?;
        }
        client.sync(&office, 1_000).await?;
        let pushed = client.sync(&seeder, 10_000).await?;
        ensure!(
            pushed.acked == cases,
            "seeded {} of {cases} cases",
            pushed.acked
        );
        office.close().await;
        seeder.close().await;
    }

    let (bytes, households) = register(residents)?;
    let file = dir.path().join("register.xlsx");
    std::fs::write(&file, &bytes)?;
    let (seconds, peak, summary) = import_process(&data, &file)?;
    ensure!(
        summary["bad_rows"] == 0 && summary["households_created"] == households,
        "import: {summary}"
    );
    ensure!(
        summary["residents_created"] == residents,
        "import: {summary}"
    );
    out.insert("import_residents".into(), json!(residents));
    out.insert("import_households".into(), json!(households));
    out.insert("import_50k_residents_s".into(), json!(seconds));
    out.insert("import_50k_peak_rss_mb".into(), json!(peak));
    if let Some(phases) = summary["phase_ms"].as_object() {
        for (phase, ms) in phases {
            out.insert(format!("import_50k_{phase}_ms"), ms.clone());
        }
    }
    let (again, _, summary) = import_process(&data, &file)?;
    ensure!(
        summary["households_unchanged"] == households && summary["households_updated"] == 0,
        "re-import: {summary}"
    );
    out.insert("import_50k_unchanged_again_s".into(), json!(again));

    let storage = SqliteStorage::open(&data).await?;
    let reference = Reference::builtin();
    let start = Instant::now();
    let tables = export::cases(&storage, &reference, 0, i64::MAX, &Scope::default()).await?;
    let xlsx = export::encode(&tables, ExportFormat::Xlsx)?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    ensure!(
        tables[0].rows.len() == cases,
        "ledger rows {}",
        tables[0].rows.len()
    );
    out.insert("export_cases".into(), json!(cases));
    out.insert("export_cases_10k_ms".into(), json!(ms));
    out.insert("export_cases_10k_bytes".into(), json!(xlsx.len()));
    let start = Instant::now();
    let tables = export::households(&storage, &Scope::default(), export::Mask::Masked).await?;
    let xlsx = export::encode(&tables, ExportFormat::Xlsx)?;
    ensure!(
        tables[0].rows.len() == residents,
        "archive rows {}",
        tables[0].rows.len()
    );
    out.insert(
        "export_households_50k_ms".into(),
        json!(start.elapsed().as_secs_f64() * 1000.0),
    );
    out.insert("export_households_50k_bytes".into(), json!(xlsx.len()));
    storage.close().await;
    Ok(())
}
