//! Register import and exports against a real server: a generated Excel register with a
//! merged title, merged headings, a blank line, good rows and every kind of bad row; a dry
//! run; a re-import that changes nothing; a re-import with one changed row (attributable to
//! its run); a GBK CSV through the command line; and exports opened back with calamine and
//! checked cell by cell, masked by role, over the command line and HTTP.

use std::path::Path;

use calamine::{Data, Reader};
use gridsync_core::app::{
    ActionRequest, NewCase, PersonFields, Replica, ResidentEdit, SyncOptions,
};
use gridsync_core::validate::id_check_char;
use gridsync_server::auth::Role;
use gridsync_server::register::{ImportOptions, ImportReport, import_households};
use gridsync_server::{RegisterStorage, Service, Storage};
use rust_xlsxwriter::{Format, Workbook};

use crate::harness::{GRID_A, GRID_B, TOWN, TestServer};

/// A valid ID number from its first 17 digits.
fn id(first17: &str) -> String {
    format!("{first17}{}", id_check_char(first17).expect("17 digits"))
}

/// The same ID number with a wrong check character.
fn bad_check(first17: &str) -> String {
    let right = id_check_char(first17).expect("17 digits");
    format!("{first17}{}", if right == '0' { '1' } else { '0' })
}

const HEADERS: [&str; 12] = [
    "", // 网格: merged down from the heading row above
    "户号",
    "户主姓名",
    "姓名",
    "身份证号码（18位）*",
    "与户主关系",
    "性别",
    "联系电话",
    "现住址",
    "户籍地址",
    "工作单位",
    "人员类别",
];

/// One data row; `Num(..)` writes the ID number as an Excel number.
#[derive(Clone)]
enum C {
    S(String),
    Num(f64),
}

fn row(cells: &[&str]) -> Vec<C> {
    cells.iter().map(|c| C::S((*c).to_owned())).collect()
}

/// A register as towns keep it: a merged title row, a heading row with merged group titles
/// (网格 merged down over the header row), the header row, then the data (an empty `Vec` is a
/// blank line).
fn workbook(rows: &[Vec<C>]) -> Vec<u8> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let bold = Format::new().set_bold();
    sheet
        .merge_range(0, 0, 0, 11, "城南社区居民登记表", &bold)
        .expect("title");
    sheet.merge_range(1, 0, 2, 0, "网格", &bold).expect("grid");
    sheet
        .merge_range(1, 1, 1, 4, "基本信息", &bold)
        .expect("heading");
    sheet
        .merge_range(1, 5, 1, 11, "其他信息", &bold)
        .expect("heading");
    for (c, h) in HEADERS.iter().enumerate().skip(1) {
        sheet.write_string(2, c as u16, *h).expect("header");
    }
    for (r, cells) in rows.iter().enumerate() {
        for (c, v) in cells.iter().enumerate() {
            let (line, col) = (3 + r as u32, c as u16);
            match v {
                C::S(s) if s.is_empty() => {}
                C::S(s) => {
                    sheet.write_string(line, col, s).expect("cell");
                }
                C::Num(n) => {
                    sheet.write_number(line, col, *n).expect("cell");
                }
            }
        }
    }
    book.save_to_buffer().expect("xlsx")
}

struct Town {
    server: TestServer,
    _dir: tempfile::TempDir,
    dispatcher: Replica,
    worker: Replica,
    leader: Replica,
}

async fn phone(server: &TestServer, dir: &Path, name: &str, role: Role, scope: &str) -> Replica {
    let app = Replica::open(&dir.join(format!("{name}.db")), Default::default())
        .await
        .expect("open");
    app.set_worker(name, None, None).await.expect("worker");
    let code = server.enrollment(name, role, &[scope]).await;
    app.enroll(&server.url, &code).await.expect("enroll");
    app
}

/// A server with two registered grids, a dispatcher, a leader and grid A's worker.
async fn town() -> Town {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dispatcher = phone(&server, dir.path(), "调度中心", Role::Dispatcher, TOWN).await;
    dispatcher
        .add_grid(GRID_A, "城南一网格")
        .await
        .expect("grid");
    dispatcher
        .add_grid(GRID_B, "城南二网格")
        .await
        .expect("grid");
    dispatcher.sync(SyncOptions::default()).await.expect("sync");
    let worker = phone(&server, dir.path(), "周网格", Role::Worker, GRID_A).await;
    let leader = phone(&server, dir.path(), "镇领导", Role::Leader, TOWN).await;
    Town {
        server,
        _dir: dir,
        dispatcher,
        worker,
        leader,
    }
}

fn ids() -> [String; 5] {
    [
        id("33010219800101001"), // 张三, male
        id("33010219820202002"), // 李四, female
        id("33010219750303003"), // 王五, male
        id("33010219900404005"), // 陈十三, male
        bad_check("33010219850505006"),
    ]
}

/// The register: rows 4–6 household H001, 7 blank, 8 household H002 (its grid by name),
/// 9–18 one kind of bad row each.
fn register(li_si_phone: &str) -> Vec<Vec<C>> {
    let [zhang, li, wang, chen, wrong] = ids();
    vec![
        row(&[
            GRID_A,
            "H001",
            "张三",
            "张三",
            &zhang,
            "户主",
            "",
            "13800138000",
            "城南社区3幢501",
            "杭州市上城区望江街道",
            "杭州某公司",
            "",
        ]),
        row(&[
            GRID_A,
            "H001",
            "张三",
            "李四",
            &li,
            "妻子",
            "女",
            li_si_phone,
            "城南社区3幢501",
            "",
            "",
            "低保",
        ]),
        row(&[
            GRID_A,
            "H001",
            "张三",
            "张小明",
            "",
            "儿子",
            "男",
            "",
            "",
            "",
            "城南小学",
            "",
        ]),
        Vec::new(),
        row(&[
            "城南一网格",
            "H002",
            "王五",
            "王五",
            &wang,
            "户主",
            "",
            "0571-88886666",
            "城南社区5幢101",
            "",
            "",
            "",
        ]),
        // 9: a mistyped check character.
        row(&[
            GRID_A,
            "H003",
            "赵六",
            "赵六",
            &wrong,
            "户主",
            "",
            "",
            "城南社区6幢",
            "",
            "",
            "",
        ]),
        // 10: an ID number Excel stored as a number.
        vec![
            C::S(GRID_A.into()),
            C::S("H003".into()),
            C::S("赵六".into()),
            C::S("钱七".into()),
            C::Num(330102199001011234.0),
            C::S("配偶".into()),
        ],
        // 11: a phone that is no phone.
        row(&[
            GRID_A, "H002", "王五", "王小", "", "女儿", "", "12345", "", "", "", "",
        ]),
        // 12: a relation nobody knows.
        row(&[
            GRID_A, "H002", "王五", "孙八", "", "表哥", "", "", "", "", "", "",
        ]),
        // 13: a grid the server does not have.
        row(&[
            "33010200101001099",
            "H004",
            "周九",
            "周九",
            "",
            "户主",
            "",
            "",
            "城南社区9幢",
            "",
            "",
            "",
        ]),
        // 14: the same person as row 5.
        row(&[
            GRID_A, "H002", "王五", "吴十", &li, "子女", "", "", "", "", "", "",
        ]),
        // 15: a second head of H001.
        row(&[
            GRID_A,
            "H001",
            "张三",
            "郑十一",
            "",
            "户主",
            "",
            "",
            "",
            "",
            "",
            "",
        ]),
        // 16: a category that is not one.
        row(&[
            GRID_A,
            "H002",
            "王五",
            "冯十二",
            "",
            "子女",
            "",
            "",
            "",
            "",
            "",
            "未知类别",
        ]),
        // 17: an ID number of a man given as a woman.
        row(&[
            GRID_A,
            "H002",
            "王五",
            "陈十三",
            &chen,
            "配偶",
            "女",
            "",
            "",
            "",
            "",
            "",
        ]),
        // 18: a member with neither 户号 nor 户主姓名.
        row(&[GRID_A, "", "", "褚十四", "", "子女", "", "", "", "", "", ""]),
    ]
}

async fn import<S: Storage>(storage: &S, bytes: &[u8], dry_run: bool) -> ImportReport {
    import_households(
        storage,
        bytes,
        &ImportOptions {
            file_name: "城南社区.xlsx".into(),
            dry_run,
            operator: "李主任".into(),
            ..ImportOptions::default()
        },
        &|_, _| {},
    )
    .await
    .expect("import")
}

async fn change_count(server: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM changes")
        .fetch_one(server.storage.pool())
        .await
        .expect("count")
}

#[tokio::test]
async fn an_excel_register_is_imported_row_by_row_and_reimporting_changes_nothing() {
    let t = town().await;
    let file = workbook(&register("13900139000"));

    // A dry run checks everything and writes nothing.
    let dry = import(&t.server.storage, &file, true).await;
    assert!(dry.dry_run && dry.actor.is_none(), "{dry:?}");
    assert_eq!(dry.households_created, 2, "{dry:?}");
    let meta: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM server_meta WHERE key = 'import_device'")
            .fetch_one(t.server.storage.pool())
            .await
            .expect("meta");
    assert_eq!(meta, 0, "a dry run does not even make the import device");
    assert!(t.server.storage.imports().await.expect("log").is_empty());
    assert!(
        t.server
            .storage
            .households(None)
            .await
            .expect("list")
            .is_empty()
    );

    let report = import(&t.server.storage, &file, false).await;
    assert_eq!(report.header_row, 3, "{report:?}");
    assert_eq!(report.columns["grid"], "网格", "merged heading: {report:?}");
    assert_eq!(report.columns["id_number"], "身份证号码（18位）*");
    assert_eq!(
        (
            report.rows,
            report.blank_rows,
            report.good_rows,
            report.bad_rows
        ),
        (14, 1, 4, 10),
        "{report:#?}"
    );
    let refused: Vec<(usize, &str)> = report
        .errors
        .iter()
        .map(|e| (e.row, e.column.as_str()))
        .collect();
    let id_col = "身份证号码（18位）*";
    assert_eq!(
        refused,
        vec![
            (9, id_col),
            (10, id_col),
            (11, "联系电话"),
            (12, "与户主关系"),
            (13, "网格"),
            (14, id_col),
            (15, "与户主关系"),
            (16, "人员类别"),
            (17, id_col),
            (18, "户主姓名"),
        ],
        "{report:#?}"
    );
    let reason = |row: usize| {
        report
            .errors
            .iter()
            .find(|e| e.row == row)
            .map(|e| e.reason.clone())
            .unwrap_or_default()
    };
    assert!(reason(9).contains("check character"), "{}", reason(9));
    assert!(reason(10).contains("as a number"), "{}", reason(10));
    assert!(reason(12).contains("表哥"), "{}", reason(12));
    assert!(reason(13).contains("not registered"), "{}", reason(13));
    assert!(reason(14).contains("row 5"), "{}", reason(14));
    assert!(reason(15).contains("second 户主"), "{}", reason(15));
    assert!(reason(17).contains("gender"), "{}", reason(17));
    assert_eq!(dry.errors, report.errors, "a dry run reports the same rows");
    assert_eq!(
        (report.households_created, report.residents_created),
        (2, 4)
    );

    // The grid's phone gets the households at its next sync, searchable by name, with gender
    // and birth date taken from the ID number as the phone itself would.
    t.worker.sync(SyncOptions::default()).await.expect("sync");
    let homes = t.worker.households(None).await.expect("households");
    assert_eq!(homes.len(), 2, "{homes:?}");
    let h001 = homes.iter().find(|h| h.number == "H001").expect("H001");
    assert_eq!(h001.registered_address, "杭州市上城区望江街道");
    let view = t.worker.household(h001.doc_id).await.expect("view");
    assert_eq!(
        (view.number.as_str(), view.registered_address.as_str()),
        ("H001", "杭州市上城区望江街道")
    );
    let names: Vec<&str> = view.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let zhang = view
        .members
        .iter()
        .find(|m| m.name == "张三")
        .expect("张三");
    assert_eq!(zhang.gender.as_deref(), Some("male"));
    assert_eq!(zhang.birth_date.as_deref(), Some("1980-01-01"));
    let found = t
        .worker
        .search_residents("张小明", Default::default())
        .await
        .expect("search");
    assert_eq!(found.total, 1);

    // The same file again: nothing written.
    let before = change_count(&t.server).await;
    let again = import(&t.server.storage, &file, false).await;
    assert_eq!(
        (
            again.households_created,
            again.households_updated,
            again.households_unchanged
        ),
        (0, 0, 2),
        "{again:?}"
    );
    assert_eq!(change_count(&t.server).await, before);
    assert!(again.actor.is_none());

    // One changed row: one household changed, by this run's actor, as the import device.
    let changed = workbook(&register("13700137000"));
    let third = import(&t.server.storage, &changed, false).await;
    assert_eq!(
        (
            third.households_updated,
            third.households_unchanged,
            third.residents_updated
        ),
        (1, 1, 1),
        "{third:?}"
    );
    let (actor, device): (String, String) =
        sqlx::query_as("SELECT actor, device FROM changes ORDER BY seq DESC LIMIT 1")
            .fetch_one(t.server.storage.pool())
            .await
            .expect("last change");
    assert_eq!(Some(actor), third.actor);
    let import_device = t
        .server
        .storage
        .service_device(Service::Import)
        .await
        .expect("device");
    assert_eq!(device, import_device.to_string());
    let runs = t.server.storage.imports().await.expect("log");
    assert_eq!(runs.len(), 2, "runs that wrote: {runs:?}");
    assert_eq!(runs[0].operator, "李主任");
    assert_eq!((runs[0].updated, runs[0].rows_bad), (1, 10));
    t.worker.sync(SyncOptions::default()).await.expect("sync");
    let view = t.worker.household(h001.doc_id).await.expect("view");
    let li = view
        .members
        .iter()
        .find(|m| m.name == "李四")
        .expect("李四");
    assert_eq!(li.phones, vec!["13700137000".to_owned()]);

    // Against what is stored: a person already in another household, and a household whose
    // head is registered under another 户号.
    let [zhang, li, ..] = ids();
    let csv = format!(
        "户号,姓名,与户主关系,身份证号,现住址,网格\n\
         H005,新户主,户主,,城南社区7幢,{GRID_A}\n\
         H005,李四,配偶,{li},城南社区7幢,{GRID_A}\n\
         H009,张三,户主,{zhang},城南社区3幢501,{GRID_A}\n"
    );
    let stored = import_households(
        &t.server.storage,
        csv.as_bytes(),
        &ImportOptions {
            file_name: "more.csv".into(),
            ..ImportOptions::default()
        },
        &|_, _| {},
    )
    .await
    .expect("import");
    let refused: Vec<(usize, &str)> = stored
        .errors
        .iter()
        .map(|e| (e.row, e.column.as_str()))
        .collect();
    assert_eq!(refused, vec![(3, "身份证号"), (4, "户号")], "{stored:#?}");
    assert!(
        stored.errors[0].reason.contains("another household"),
        "{stored:#?}"
    );
    assert!(stored.errors[1].reason.contains("H001"), "{stored:#?}");
    assert_eq!(stored.households_created, 1, "H005 with its head only");

    // A worker corrects 张三's work on the phone; importing the register again (which still
    // says 杭州某公司, as it did when last imported) does not undo the worker's edit.
    let zhang_id = view
        .members
        .iter()
        .find(|m| m.name == "张三")
        .expect("张三")
        .id;
    t.worker
        .edit_resident(
            h001.doc_id,
            zhang_id,
            ResidentEdit {
                person: PersonFields {
                    work: Some("已退休".into()),
                    ..PersonFields::default()
                },
                ..ResidentEdit::default()
            },
        )
        .await
        .expect("edit");
    t.worker.sync(SyncOptions::default()).await.expect("sync");
    let fourth = import(&t.server.storage, &changed, false).await;
    assert_eq!(fourth.households_unchanged, 2, "{fourth:?}");
    t.worker.sync(SyncOptions::default()).await.expect("sync");
    let view = t.worker.household(h001.doc_id).await.expect("view");
    let zhang = view
        .members
        .iter()
        .find(|m| m.name == "张三")
        .expect("张三");
    assert_eq!(zhang.work, "已退休");
    // The dispatcher's copy of the town has the imported households too.
    t.dispatcher
        .sync(SyncOptions::default())
        .await
        .expect("sync");
    assert_eq!(
        t.dispatcher.households(None).await.expect("list").len(),
        3,
        "H001, H002 and H005"
    );
    drop(t.leader);
}

fn cli(data_dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gridsync-test-server"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run gridsync-server")
}

fn sheet_rows(bytes: &[u8], sheet: &str) -> Vec<Vec<String>> {
    let mut book =
        calamine::open_workbook_auto_from_rs(std::io::Cursor::new(bytes.to_vec())).expect("open");
    let range = book.worksheet_range(sheet).expect("sheet");
    range
        .rows()
        .map(|r| {
            r.iter()
                .map(|c| match c {
                    Data::Empty => String::new(),
                    Data::String(s) => s.clone(),
                    Data::Float(f) => f.to_string(),
                    Data::Int(i) => i.to_string(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn a_gbk_csv_comes_in_through_the_command_line_and_exports_open_cell_by_cell() {
    let t = town().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let [zhang, li, ..] = ids();
    // Excel in China saves CSV as GBK; this one has no grid column (--grid), a blank line and
    // a blank trailing column.
    let text = format!(
        "户号,姓名,与户主关系,身份证号,联系电话,现住址,人员类别,\n\
         B01,张三,户主,{zhang},13800138000,城南社区8幢,,\n\
         ,,,,,,,\n\
         B01,李四,配偶,{li},13900139000,城南社区8幢,低保、残疾人,\n\
         B02,王芳,户主,,,城南社区9幢,,\n"
    );
    let (gbk, _, _) = encoding_rs::GBK.encode(&text);
    let csv_path = dir.path().join("二网格.csv");
    std::fs::write(&csv_path, &gbk).expect("write");
    let out = cli(
        t.server.data_dir(),
        &[
            "import",
            "households",
            csv_path.to_str().expect("path"),
            "--grid",
            GRID_B,
            "--by",
            "李主任",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(report["encoding"], "gbk", "{report}");
    assert_eq!(report["households_created"], 2, "{report}");
    assert_eq!(report["blank_rows"], 1, "{report}");
    assert_eq!(report["bad_rows"], 0, "{report}");
    let found = t
        .server
        .storage
        .search_residents("李四")
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].categories, "disabled,low_income");
    assert_eq!(found[0].grid, GRID_B);
    // Grid A's worker does not get grid B's households.
    t.worker.sync(SyncOptions::default()).await.expect("sync");
    assert!(t.worker.households(None).await.expect("list").is_empty());

    // The household archive, masked by default, whole with --unmasked.
    let masked = dir.path().join("archive.xlsx");
    let out = cli(
        t.server.data_dir(),
        &[
            "export",
            "households",
            "--out",
            masked.to_str().expect("path"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = sheet_rows(&std::fs::read(&masked).expect("read"), "人员");
    assert_eq!(
        rows[0],
        [
            "户号",
            "网格",
            "户主姓名",
            "姓名",
            "身份证号",
            "与户主关系",
            "性别",
            "出生日期",
            "联系电话",
            "现住址",
            "户籍地址",
            "工作单位",
            "人员类别",
            "居住类型",
            "状态",
        ]
    );
    let li_row = rows.iter().find(|r| r[3] == "李四").expect("李四");
    assert_eq!(li_row[0], "B01");
    assert_eq!(li_row[1], GRID_B);
    assert_eq!(li_row[2], "张三");
    assert_eq!(li_row[4], format!("{}********{}", &li[..6], &li[14..]));
    assert_eq!(li_row[5], "配偶");
    assert_eq!(li_row[6], "女");
    assert_eq!(
        li_row[7], "1982",
        "masked: the year only, or it gives the ID back"
    );
    assert_eq!(li_row[8], "139****9000");
    assert_eq!(li_row[12], "残疾人、低保", "in code order");
    assert_eq!(li_row[14], "在住");
    let whole = dir.path().join("archive-whole.xlsx");
    let out = cli(
        t.server.data_dir(),
        &[
            "export",
            "households",
            "--unmasked",
            "--within",
            GRID_B,
            "--out",
            whole.to_str().expect("path"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&whole).expect("read");
    let rows = sheet_rows(&bytes, "人员");
    assert_eq!(rows.len(), 4, "header + 3 people: {rows:?}");
    let li_row = rows.iter().find(|r| r[3] == "李四").expect("李四");
    assert_eq!(li_row[4], li);
    assert_eq!(li_row[8], "13900139000");
    // The whole archive goes back in unchanged: the export is the register's own layout.
    let back = import_households(
        &t.server.storage,
        &bytes,
        &ImportOptions {
            file_name: "archive.xlsx".into(),
            ..ImportOptions::default()
        },
        &|_, _| {},
    )
    .await
    .expect("re-import");
    assert_eq!(
        (
            back.bad_rows,
            back.households_created,
            back.households_updated,
            back.households_unchanged
        ),
        (0, 0, 0, 2),
        "{back:#?}"
    );

    // A case reported and registered, then the ledger and the indicators.
    let case = t
        .worker
        .report_case(NewCase {
            grid: GRID_A.into(),
            title: "楼道灯损坏".into(),
            subcategory: "0102".into(),
            address: "3 幢".into(),
            description: "楼道灯不亮".into(),
            ..NewCase::default()
        })
        .await
        .expect("report");
    t.worker.sync(SyncOptions::default()).await.expect("sync");
    t.dispatcher
        .sync(SyncOptions::default())
        .await
        .expect("sync");
    t.dispatcher
        .act(
            case,
            ActionRequest {
                action: "立案".into(),
                ..ActionRequest::default()
            },
        )
        .await
        .expect("register");
    t.dispatcher
        .sync(SyncOptions::default())
        .await
        .expect("sync");
    let ledger = dir.path().join("ledger.csv");
    let out = cli(
        t.server.data_dir(),
        &[
            "export",
            "cases",
            "--from",
            "2000-01-01",
            "--to",
            "2100-01-01",
            "--out",
            ledger.to_str().expect("path"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&ledger).expect("read");
    let text = text.strip_prefix('\u{feff}').expect("BOM for Excel");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let cells: Vec<&str> = lines.next().expect("the case").split(',').collect();
    assert!(lines.next().is_none());
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    assert_eq!(cells[col("案件编号")], case.to_string());
    assert_eq!(cells[col("标题")], "楼道灯损坏");
    assert_eq!(cells[col("状态")], "已立案");
    assert_eq!(cells[col("网格")], GRID_A);
    assert_eq!(cells[col("小类")], "路灯、楼道灯损坏");

    // Over HTTP: a dispatcher gets the archive whole, a leader masked, a worker nothing.
    let http = reqwest::Client::new();
    let token = |who: &Replica| {
        let store = who.store().clone();
        async move {
            store
                .meta("device_token")
                .await
                .expect("meta")
                .expect("token")
        }
    };
    let (d_token, l_token, w_token) = (
        token(&t.dispatcher).await,
        token(&t.leader).await,
        token(&t.worker).await,
    );
    let get = |token: &str, path: &str| {
        http.get(format!("{}{path}", t.server.url))
            .bearer_auth(token)
            .send()
    };
    let resp = get(&d_token, "/v1/exports/households?format=xlsx")
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .expect("type")
            .contains("spreadsheetml")
    );
    let rows = sheet_rows(&resp.bytes().await.expect("body"), "人员");
    assert!(rows.iter().any(|r| r[4] == li), "dispatcher sees it whole");
    let resp = get(
        &d_token,
        "/v1/exports/cases?from=2000-01-01&to=2100-01-01&format=xlsx",
    )
    .await
    .expect("get");
    assert_eq!(resp.status(), 200);
    let rows = sheet_rows(&resp.bytes().await.expect("body"), "案件台账");
    assert_eq!(rows.len(), 2, "header + the case: {rows:?}");
    let at = |name: &str| rows[0].iter().position(|h| h == name).expect(name);
    assert_eq!(rows[1][at("标题")], "楼道灯损坏");
    assert_eq!(rows[1][at("来源")], "巡查发现");
    assert_eq!(rows[1][at("大类")], "市政设施");
    assert_eq!(rows[1][at("状态")], "已立案");
    assert_eq!(rows[1][at("紧急程度")], "一般");
    assert_eq!(rows[1][at("延期次数")], "0");
    let resp = get(&l_token, "/v1/exports/households?format=csv")
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.expect("csv");
    assert!(
        !body.contains(&li) && body.contains("139****9000"),
        "{body}"
    );
    let resp = get(&w_token, "/v1/exports/households").await.expect("get");
    assert_eq!(resp.status(), 403);
    let resp = get(
        &d_token,
        "/v1/exports/indicators?from=2000-01-01&to=2100-01-01",
    )
    .await
    .expect("get");
    assert_eq!(resp.status(), 200);
    let rows = sheet_rows(&resp.bytes().await.expect("body"), "按网格");
    assert_eq!(rows[1][0], GRID_A);
    assert_eq!(rows[1][1], "城南一网格");
    assert_eq!(rows[1][2], "1");
    assert_eq!(rows.last().expect("total")[0], "合计");
    let resp = get(
        &d_token,
        "/v1/exports/cases?from=2000-01-01&to=2100-01-01&within=330103001",
    )
    .await
    .expect("get");
    assert_eq!(resp.status(), 403, "a unit outside the device's towns");
    let resp = get(&d_token, "/v1/exports/cases").await.expect("get");
    assert_eq!(resp.status(), 400, "the period is required");
}

#[tokio::test]
async fn a_file_that_cannot_be_imported_says_why_and_writes_nothing() {
    let t = town().await;
    let attempt = |name: &str, bytes: Vec<u8>, grid: Option<&str>| {
        let storage = t.server.storage.clone();
        let opts = ImportOptions {
            file_name: name.into(),
            default_grid: grid.map(|g| g.parse().expect("grid")),
            ..ImportOptions::default()
        };
        async move {
            import_households(&storage, &bytes, &opts, &|_, _| {})
                .await
                .expect_err("refused")
                .to_string()
        }
    };
    let no_relation = "姓名,现住址,网格\n张三,3幢,33010200101001002\n"
        .as_bytes()
        .to_vec();
    let e = attempt("a.csv", no_relation, None).await;
    assert!(e.contains("与户主关系") && e.contains("--mapping"), "{e}");
    let no_names = "户号,地址\nH1,3幢\n".as_bytes().to_vec();
    let e = attempt("a.csv", no_names, None).await;
    assert!(e.contains("no header row"), "{e}");
    let e = attempt("a.pdf", b"%PDF".to_vec(), None).await;
    assert!(e.contains("not a register file"), "{e}");
    let e = attempt("a.xlsx", b"not a workbook".to_vec(), None).await;
    assert!(e.contains("workbook cannot be read"), "{e}");
    let no_grid = "姓名,与户主关系,现住址\n张三,户主,3幢\n"
        .as_bytes()
        .to_vec();
    let e = attempt("a.csv", no_grid.clone(), None).await;
    assert!(e.contains("--grid"), "{e}");
    let e = attempt("a.csv", no_grid, Some("33010200101001099")).await;
    assert!(e.contains("not registered"), "{e}");
    assert!(
        t.server
            .storage
            .households(None)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(t.server.storage.imports().await.expect("log").is_empty());
}

#[tokio::test]
async fn a_register_without_household_numbers_goes_in_once_and_takes_corrections() {
    let t = town().await;
    let first17 = ["33010219820202002", "33010219820202010"];
    let (old_id, new_id) = (id(first17[0]), id(first17[1]));
    let file = |li_id: &str| {
        format!(
            "网格,户主姓名,姓名,与户主关系,身份证号,联系电话,现住址\n\
             {GRID_A},张三,张三,户主,,138 0013 8000,城南社区3幢\n\
             {GRID_A},张三,李四,配偶,{li_id},,\n"
        )
    };
    let run = |text: String| {
        let storage = t.server.storage.clone();
        async move {
            import_households(
                &storage,
                text.as_bytes(),
                &ImportOptions {
                    file_name: "no-numbers.csv".into(),
                    ..ImportOptions::default()
                },
                &|_, _| {},
            )
            .await
            .expect("import")
        }
    };
    let first = run(file(&old_id)).await;
    assert_eq!(
        (first.bad_rows, first.households_created),
        (0, 1),
        "{first:#?}"
    );
    // Found again by its grid and head's name (no 户号, no head ID number): no second copy.
    let again = run(file(&old_id)).await;
    assert_eq!(
        (again.households_created, again.households_unchanged),
        (0, 1),
        "{again:#?}"
    );
    // The register corrects 李四's ID number: the same member is changed, not a new one added.
    let fixed = run(file(&new_id)).await;
    assert_eq!(
        (
            fixed.households_updated,
            fixed.residents_created,
            fixed.residents_updated
        ),
        (1, 0, 1),
        "{fixed:#?}"
    );
    let homes = t.server.storage.households(None).await.expect("list");
    assert_eq!(homes.len(), 1);
    let people = t
        .server
        .storage
        .residents_within(None)
        .await
        .expect("people");
    assert_eq!(people.len(), 2, "{people:?}");
    let li = people.iter().find(|p| p.name == "李四").expect("李四");
    assert_eq!(li.id_number.as_deref(), Some(new_id.as_str()));
    let zhang = people.iter().find(|p| p.name == "张三").expect("张三");
    assert_eq!(zhang.phones, "13800138000", "a phone written with spaces");
    // Going back to the old file is itself a change of the register: applied, and to the
    // same member (matched on the ID number the last import wrote), never as a new one.
    let back = run(file(&old_id)).await;
    assert_eq!(
        (back.residents_created, back.residents_updated),
        (0, 1),
        "an older register is a change, applied to the same member: {back:#?}"
    );
}

#[tokio::test]
async fn excel_text_marks_and_a_second_phone_column_are_handled_as_a_clerk_expects() {
    let t = town().await;
    let zhang = id("33010219800101001");
    // Excel's text mark before the ID number is not part of it; a second phone column is not
    // read silently but named in the summary.
    let text = format!(
        "网格,户号,姓名,与户主关系,身份证号,电话,手机,现住址\n\
         {GRID_A},H1,张三,户主,'{zhang},13800138000,13900139000,城南社区1幢\n"
    );
    let report = import_households(
        &t.server.storage,
        text.as_bytes(),
        &ImportOptions {
            file_name: "marks.csv".into(),
            ..ImportOptions::default()
        },
        &|_, _| {},
    )
    .await
    .expect("import");
    assert_eq!(
        (report.bad_rows, report.households_created),
        (0, 1),
        "{report:#?}"
    );
    assert_eq!(report.ignored_columns, vec!["手机".to_owned()]);
    let people = t
        .server
        .storage
        .residents_within(None)
        .await
        .expect("people");
    assert_eq!(people[0].id_number.as_deref(), Some(zhang.as_str()));
    assert_eq!(people[0].phones, "13800138000");
}
