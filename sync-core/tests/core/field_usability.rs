//! `gridsync-field` as a grid worker types it: Chinese labels, refusals that list what is
//! accepted, readable case records, paged search and the store lock.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// The grid every test works in.
const GRID: &str = "33010200101001002";
/// 0201 占道经营: lead D01, no co-departments, 3 working days (default_reference.json).
const SUB: &str = "0201";
/// 0201's lead department: its code and its name in the table.
const LEAD: &str = "D01";
const LEAD_NAME: &str = "城市管理局（综合执法）";
/// The surnames `gridsync_core::sample` gives residents (sample.rs `SURNAMES`).
const SURNAMES: [&str; 15] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡",
];

fn field(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridsync-field"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run gridsync-field")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON value")
}

/// The text a successful command printed.
fn text(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of a command that must have failed.
fn refused(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a refusal, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `kind` of the JSON error line a `--json` command prints last on stderr.
fn error_kind(stderr: &str) -> String {
    let last = stderr.lines().last().expect("an error line");
    let v: Value = serde_json::from_str(last).expect("the last stderr line is JSON");
    v["error"]["kind"].as_str().expect("kind").to_owned()
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().expect(what)
}

/// A temporary store (the directory must live as long as the test).
fn new_store() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("phone.db");
    (dir, store)
}

/// `init --worker NAME` plus role flags; returns the identity printed.
fn init(store: &Path, worker: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "init", "--worker", worker];
    args.extend_from_slice(extra);
    json(&field(store, &args))
}

fn add_household(store: &Path, address: &str) -> String {
    let out = json(&field(
        store,
        &[
            "--json",
            "household",
            "add",
            "--grid",
            GRID,
            "--address",
            address,
        ],
    ));
    str_of(&out["id"], "household id").to_owned()
}

fn members(store: &Path, household: &str) -> Vec<Value> {
    json(&field(store, &["--json", "household", "show", household]))["members"]
        .as_array()
        .expect("members")
        .clone()
}

/// Reports an 0201 case from the default (inspection) source; returns its id.
fn report(store: &Path, title: &str) -> String {
    let out = json(&field(
        store,
        &[
            "--json",
            "case",
            "report",
            "--grid",
            GRID,
            "--title",
            title,
            "--subcategory",
            SUB,
            "--address",
            "城南路 8 号",
            "--description",
            "门口摆摊占道",
        ],
    ));
    str_of(&out["id"], "case id").to_owned()
}

/// Takes a workflow action and checks the action recorded.
fn act(store: &Path, id: &str, action: &str, extra: &[&str]) {
    let mut args = vec!["--json", "case", "act", id, action];
    args.extend_from_slice(extra);
    let out = json(&field(store, &args));
    assert_eq!(out["action"], action, "{out}");
}

fn action_codes(store: &Path, id: &str) -> Vec<String> {
    json(&field(store, &["--json", "case", "actions", id]))
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| str_of(&a["code"], "code").to_owned())
        .collect()
}

#[test]
fn relations_are_typed_in_chinese_and_shown_with_their_labels() {
    let (_dir, store) = new_store();
    init(&store, "周网格", &[]);
    let hh = add_household(&store, "城南社区 3 幢 2 单元 501 室");
    // (name, typed, code, label)
    let typed = [
        ("王建国", "户主", "head", "户主"),
        ("李秀英", "妻子", "spouse", "配偶"),
        ("王小明", "子", "child", "子女"),
        ("王小红", "女", "child", "子女"),
        ("王老汉", "父亲", "parent", "父母"),
        ("赵老太", "母亲", "parent", "父母"),
        ("王乐乐", "孙子", "grandchild", "孙子女"),
        ("王欢欢", "孙女", "grandchild", "孙子女"),
    ];
    for (name, relation, _, _) in typed {
        let added = json(&field(
            &store,
            &[
                "--json",
                "resident",
                "add",
                "--household",
                &hh,
                "--name",
                name,
                "--relation",
                relation,
            ],
        ));
        assert_eq!(added["household"], hh.as_str());
    }
    let shown = members(&store, &hh);
    assert_eq!(shown.len(), typed.len());
    // The head is listed first.
    assert_eq!(shown[0]["name"], "王建国");
    for (name, relation, code, label) in typed {
        let m = shown.iter().find(|m| m["name"] == name).expect(name);
        assert_eq!(m["relation"], code, "{name} typed as {relation}");
        assert_eq!(m["relation_label"], label, "{name} typed as {relation}");
    }
    // People read labels, not codes.
    let page = text(&field(&store, &["household", "show", &hh]));
    for label in ["户主", "配偶", "子女", "父母", "孙子女"] {
        assert!(page.contains(label), "{label} missing:\n{page}");
    }
    assert!(!page.contains("grandchild"), "{page}");
    // An unknown relation is refused with the accepted labels, and nothing is added.
    let err = refused(&field(
        &store,
        &[
            "resident",
            "add",
            "--household",
            &hh,
            "--name",
            "王表哥",
            "--relation",
            "表哥",
        ],
    ));
    assert!(err.contains("relation: unknown value \"表哥\""), "{err}");
    assert!(err.contains("户主 (head)"), "{err}");
    assert!(err.contains("子女 (child)"), "{err}");
    assert_eq!(members(&store, &hh).len(), typed.len());
}

#[test]
fn gender_and_birth_date_come_from_a_valid_id_number() {
    let (_dir, store) = new_store();
    init(&store, "周网格", &[]);
    let hh = add_household(&store, "城南社区 5 幢 1 单元 302 室");
    json(&field(
        &store,
        &[
            "--json",
            "resident",
            "add",
            "--household",
            &hh,
            "--name",
            "李桂英",
            "--relation",
            "户主",
            "--id-number",
            "11010519491231002X",
        ],
    ));
    // A male number made with the check character GB 11643 gives (odd 17th digit: male).
    let first17 = "33010219800101001";
    let check = gridsync_core::validate::id_check_char(first17).expect("17 digits");
    let male = format!("{first17}{check}");
    json(&field(
        &store,
        &[
            "--json",
            "resident",
            "add",
            "--household",
            &hh,
            "--name",
            "王建军",
            "--relation",
            "子",
            "--id-number",
            &male,
        ],
    ));
    let shown = members(&store, &hh);
    assert_eq!(shown.len(), 2);
    let head = shown.iter().find(|m| m["name"] == "李桂英").expect("head");
    assert_eq!(head["id_number"], "11010519491231002X");
    assert_eq!(head["gender"], "female");
    assert_eq!(head["gender_label"], "女");
    assert_eq!(head["birth_date"], "1949-12-31");
    let son = shown.iter().find(|m| m["name"] == "王建军").expect("son");
    assert_eq!(son["id_number"], male.as_str());
    assert_eq!(son["gender"], "male");
    assert_eq!(son["gender_label"], "男");
    assert_eq!(son["birth_date"], "1980-01-01");
    // A mistyped check character is refused, naming the field and the expected character.
    let err = refused(&field(
        &store,
        &[
            "resident",
            "add",
            "--household",
            &hh,
            "--name",
            "王错号",
            "--relation",
            "女",
            "--id-number",
            "110105194912310021",
        ],
    ));
    assert!(err.contains("id_number:"), "{err}");
    assert!(err.contains("check character"), "{err}");
    assert!(err.contains("'X'"), "{err}");
    let after = members(&store, &hh);
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|m| m["name"] != "王错号"));
}

#[test]
fn a_subcategory_outside_the_table_is_refused_with_the_known_codes() {
    let (_dir, store) = new_store();
    init(&store, "周网格", &[]);
    let err = refused(&field(
        &store,
        &[
            "case",
            "report",
            "--grid",
            GRID,
            "--title",
            "占道经营",
            "--subcategory",
            "9999",
            "--address",
            "城南路 8 号",
            "--description",
            "门口摆摊",
        ],
    ));
    assert!(
        err.contains("subcategory: \"9999\" is not in the category table"),
        "{err}"
    );
    assert!(err.contains("0201 市容环境/占道经营"), "{err}");
    assert!(err.contains("0401 安全隐患/消防通道堵塞"), "{err}");
    let listed = json(&field(&store, &["--json", "case", "list"]));
    assert_eq!(listed.as_array().expect("list").len(), 0, "{listed}");
}

#[test]
fn the_reference_data_and_vocabularies_are_listed() {
    let (_dir, store) = new_store();
    let cats = json(&field(&store, &["--json", "categories"]));
    let cats = cats.as_array().expect("categories");
    assert_eq!(cats.len(), 20);
    let c = cats.iter().find(|c| c["code"] == SUB).expect("0201");
    assert_eq!(c["name"], "占道经营");
    assert_eq!(c["major_code"], "02");
    assert_eq!(c["major_name"], "市容环境");
    assert_eq!(c["lead"]["code"], LEAD);
    assert_eq!(c["lead"]["name"], LEAD_NAME);
    assert_eq!(c["co"].as_array().expect("co").len(), 0);
    assert_eq!(c["limit"], "3 个工作日");
    assert_eq!(c["urgent_limit"], "3 个工作日");
    let fire = cats.iter().find(|c| c["code"] == "0401").expect("0401");
    assert_eq!(fire["lead"]["code"], "D07");
    assert_eq!(fire["lead"]["name"], "消防救援大队");
    assert_eq!(fire["co"][0]["code"], "D20");
    assert_eq!(fire["co"][0]["name"], "街道社区服务中心");
    assert_eq!(fire["limit"], "2 个工作日");
    assert_eq!(fire["urgent_limit"], "4 个工作小时");
    let table = text(&field(&store, &["categories"]));
    assert!(
        table.contains(&format!("主办 {LEAD} {LEAD_NAME}")),
        "{table}"
    );

    let depts = json(&field(&store, &["--json", "departments"]));
    let depts = depts.as_array().expect("departments");
    assert_eq!(depts.len(), 20);
    let d = depts.iter().find(|d| d["code"] == "D07").expect("D07");
    assert_eq!(d["name"], "消防救援大队");
    let d = depts.iter().find(|d| d["code"] == LEAD).expect("D01");
    assert_eq!(d["name"], LEAD_NAME);

    let vocab = json(&field(&store, &["--json", "vocab"]));
    let has = |list: &str, code: &str, label: &str| {
        vocab[list]
            .as_array()
            .expect(list)
            .iter()
            .any(|t| t["code"] == code && t["label"] == label)
    };
    assert!(has("relations", "child", "子女"), "{vocab}");
    assert!(has("relations", "grandchild", "孙子女"), "{vocab}");
    assert!(has("statuses", "dispatched", "已派遣"), "{vocab}");
    assert!(has("satisfactions", "satisfied", "满意"), "{vocab}");
}

#[test]
fn case_list_takes_a_status_code_or_label_and_lists_the_accepted_ones() {
    let (_dir, store) = new_store();
    init(&store, "周网格", &[]);
    let id = report(&store, "占道经营");
    let err = refused(&field(&store, &["case", "list", "--status", "nonsense"]));
    assert!(err.contains("status: unknown status \"nonsense\""), "{err}");
    assert!(err.contains("已派遣 (dispatched)"), "{err}");
    assert!(err.contains("已上报 (reported)"), "{err}");
    for status in ["已上报", "reported"] {
        let listed = json(&field(
            &store,
            &["--json", "case", "list", "--status", status],
        ));
        let rows = listed.as_array().expect("list");
        assert_eq!(rows.len(), 1, "{status}: {listed}");
        assert_eq!(rows[0]["doc_id"], id.as_str());
        assert_eq!(rows[0]["status"], "reported");
    }
    let none = json(&field(
        &store,
        &["--json", "case", "list", "--status", "已派遣"],
    ));
    assert_eq!(none.as_array().expect("list").len(), 0, "{none}");
}

#[test]
fn a_case_driven_through_the_loop_reads_as_a_record() {
    let (dir, store) = new_store();
    init(&store, "周网格", &[]);
    let id = report(&store, "占道经营");

    // The centre registers an inspection case straight from reported, and dispatches it to the
    // category's lead department.
    init(&store, "调度员", &["--role", "dispatcher"]);
    assert_eq!(action_codes(&store, &id), ["register"]);
    act(&store, &id, "register", &[]);
    act(&store, &id, "dispatch", &[]);

    // The lead department's clerk may sign or return it.
    let me = init(
        &store,
        "城管王",
        &["--role", "department", "--department", LEAD],
    );
    assert_eq!(me["role"], "department");
    assert_eq!(me["department"], LEAD);
    let offered = json(&field(&store, &["--json", "case", "actions", &id]));
    let sign = offered
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["code"] == "sign")
        .expect("sign is offered");
    assert_eq!(sign["label"], "签收");
    assert_eq!(action_codes(&store, &id), ["return", "sign"]);
    act(&store, &id, "sign", &[]);
    let photo = dir.path().join("after.jpg");
    let camera = gridsync_core::sample::CameraExif::default();
    std::fs::write(
        &photo,
        gridsync_core::sample::camera_photo(800, 600, &camera, 1),
    )
    .expect("photo");
    json(&field(
        &store,
        &[
            "--json",
            "photo",
            "add",
            photo.to_str().expect("utf8"),
            "--case",
            &id,
            "--stage",
            "after",
        ],
    ));
    act(&store, &id, "handle", &["--note", "已处理"]);

    // The grid worker checks it and calls the resident back.
    init(&store, "周网格", &["--role", "worker"]);
    act(&store, &id, "pass_check", &[]);
    let err = refused(&field(&store, &["case", "act", &id, "follow_up"]));
    assert!(err.contains("satisfaction:"), "{err}");
    assert!(err.contains("满意"), "{err}");
    let before = json(&field(&store, &["--json", "case", "show", &id]));
    assert_eq!(before["status"], "closed");
    act(&store, &id, "follow_up", &["--satisfaction", "满意"]);

    let shown = json(&field(&store, &["--json", "case", "show", &id]));
    assert_eq!(shown["status"], "followed_up");
    assert_eq!(shown["status_label"], "已回访");
    assert_eq!(shown["state"]["status"], "followed_up");
    assert_eq!(shown["satisfaction"], "满意");
    assert_eq!(shown["lead"]["code"], LEAD);
    assert_eq!(shown["lead"]["name"], LEAD_NAME);
    let labels: Vec<&str> = shown["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| str_of(&e["label"], "label"))
        .collect();
    assert_eq!(
        labels,
        ["上报", "立案", "派遣", "签收", "办结", "核查通过", "回访"],
        "{shown}"
    );
    let signed = &shown["timeline"][3];
    assert_eq!(signed["by"], "城管王");
    assert_eq!(signed["dept"], LEAD);
    assert!(
        shown["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .all(|e| e["applied"] == true),
        "{shown}"
    );
    assert_eq!(shown["photos"][0]["stage"], "after");
    assert_eq!(shown["photos"][0]["stage_label"], "处置后");
    // Nothing is left for a worker to do on a followed-up case.
    assert_eq!(
        shown["allowed_actions"].as_array().expect("actions").len(),
        0,
        "{shown}"
    );

    let page = text(&field(&store, &["case", "show", &id]));
    assert!(page.contains("【已回访】"), "{page}");
    assert!(page.contains("回访满意度: 满意"), "{page}");
    assert!(
        page.contains(&format!("主办: {LEAD} {LEAD_NAME}")),
        "{page}"
    );
    for label in ["派遣", "签收", "办结", "核查通过", "回访"] {
        assert!(page.contains(label), "{label} missing:\n{page}");
    }
    assert!(!page.contains("followed_up"), "{page}");
    assert!(!page.contains("pass_check"), "{page}");
}

#[test]
fn a_checkpoint_needs_its_result() {
    let (_dir, store) = new_store();
    init(&store, "周网格", &[]);
    let started = json(&field(
        &store,
        &["--json", "inspection", "start", "--grid", GRID],
    ));
    let id = str_of(&started["id"], "patrol id").to_owned();
    let err = refused(&field(
        &store,
        &["inspection", "checkpoint", &id, "--name", "消防通道"],
    ));
    assert!(err.contains("--ok"), "{err}");
    assert!(err.contains("--not-ok"), "{err}");
    // Both at once is a usage error.
    refused(&field(
        &store,
        &[
            "inspection",
            "checkpoint",
            &id,
            "--name",
            "消防通道",
            "--ok",
            "--not-ok",
        ],
    ));
    let shown = json(&field(&store, &["--json", "inspection", "show", &id]));
    assert_eq!(
        shown["inspection"]["checkpoints"]
            .as_object()
            .expect("checkpoints")
            .len(),
        0,
        "{shown}"
    );

    let bad = json(&field(
        &store,
        &[
            "--json",
            "inspection",
            "checkpoint",
            &id,
            "--name",
            "消防通道",
            "--not-ok",
        ],
    ));
    assert_eq!(bad["ok"], false);
    let bad = str_of(&bad["checkpoint"], "checkpoint id").to_owned();
    let good = json(&field(
        &store,
        &[
            "--json",
            "inspection",
            "checkpoint",
            &id,
            "--name",
            "楼道照明",
            "--ok",
        ],
    ));
    assert_eq!(good["ok"], true);
    let good = str_of(&good["checkpoint"], "checkpoint id").to_owned();

    let shown = json(&field(&store, &["--json", "inspection", "show", &id]));
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["grid"], GRID);
    let checkpoints = &shown["inspection"]["checkpoints"];
    assert_eq!(checkpoints.as_object().expect("checkpoints").len(), 2);
    assert_eq!(checkpoints[&bad]["name"], "消防通道");
    assert_eq!(checkpoints[&bad]["ok"], false);
    assert_eq!(checkpoints[&good]["name"], "楼道照明");
    assert_eq!(checkpoints[&good]["ok"], true);
    let page = text(&field(&store, &["inspection", "show", &id]));
    assert!(page.contains("消防通道 异常"), "{page}");
    assert!(page.contains("楼道照明 正常"), "{page}");
}

#[test]
fn sync_says_what_set_up_step_is_missing() {
    let (_dir, store) = new_store();
    let err = refused(&field(&store, &["sync"]));
    assert!(err.contains("init --worker"), "{err}");
    let err = refused(&field(&store, &["--json", "sync"]));
    assert_eq!(error_kind(&err), "not_set_up");

    init(&store, "周网格", &[]);
    let err = refused(&field(&store, &["sync"]));
    assert!(err.contains("not enrolled"), "{err}");
    assert!(err.contains("enroll --server"), "{err}");
    assert!(!err.contains("init --worker"), "{err}");
    let err = refused(&field(&store, &["--json", "sync"]));
    assert_eq!(error_kind(&err), "not_set_up");
}

#[test]
fn resident_search_comes_a_page_at_a_time() {
    let (_dir, store) = new_store();
    init(&store, "周网格", &[]);
    // 60 households of 3: 180 names over 15 surnames, so one surname has at least 12.
    let seeded = text(&field(
        &store,
        &[
            "seed",
            "--grid",
            GRID,
            "--households",
            "60",
            "--residents",
            "3",
        ],
    ));
    assert_eq!(seeded.lines().count(), 60, "{seeded}");
    let totals: Vec<(u64, &str)> = SURNAMES
        .iter()
        .map(|&s| {
            let page = json(&field(
                &store,
                &["--json", "resident", "search", s, "--limit", "1"],
            ));
            (page["total"].as_u64().expect("total"), s)
        })
        .collect();
    assert_eq!(
        totals.iter().map(|(n, _)| n).sum::<u64>(),
        180,
        "{totals:?}"
    );
    let (total, surname) = *totals.iter().max().expect("surnames");
    assert!(total > 10, "{totals:?}");

    let page = |offset: u64, limit: u64| {
        json(&field(
            &store,
            &[
                "--json",
                "resident",
                "search",
                surname,
                "--offset",
                &offset.to_string(),
                "--limit",
                &limit.to_string(),
            ],
        ))
    };
    let ids = |p: &Value| -> Vec<String> {
        p["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|h| {
                assert!(
                    str_of(&h["resident"]["name"], "name").contains(surname),
                    "{h}"
                );
                h["resident"]["resident_id"].to_string()
            })
            .collect()
    };
    let first = page(0, 10);
    assert_eq!(first["hits"].as_array().expect("hits").len(), 10);
    assert_eq!(first["total"], total);
    assert_eq!(first["more"], true);
    assert_eq!(first["offset"], 0);
    let second = page(10, 10);
    assert_eq!(second["offset"], 10);
    assert_eq!(second["total"], total);
    let first_ids: BTreeSet<String> = ids(&first).into_iter().collect();
    let second_ids = ids(&second);
    assert_eq!(second_ids.len() as u64, (total - 10).min(10));
    assert!(
        second_ids.iter().all(|i| !first_ids.contains(i)),
        "pages overlap: {first_ids:?} {second_ids:?}"
    );
    // Walking every page sees each match once, and the last page says there is no more.
    let mut seen = BTreeSet::new();
    let mut offset = 0;
    loop {
        let p = page(offset, 10);
        seen.extend(ids(&p));
        if p["more"] == false {
            assert_eq!(
                offset + p["hits"].as_array().expect("hits").len() as u64,
                total
            );
            break;
        }
        offset += 10;
        assert!(offset < total, "more is true past the end");
    }
    assert_eq!(seen.len() as u64, total);

    let err = refused(&field(
        &store,
        &["resident", "search", surname, "--limit", "0"],
    ));
    assert!(err.contains("limit:"), "{err}");
    refused(&field(
        &store,
        &["resident", "search", surname, "--limit", "501"],
    ));

    let listing = text(&field(
        &store,
        &["resident", "search", surname, "--limit", "10"],
    ));
    assert!(listing.contains(&format!("1–10 of {total}")), "{listing}");
    assert!(listing.contains("next page: --offset 10"), "{listing}");
}

#[test]
fn a_store_open_elsewhere_is_refused_until_it_is_closed() {
    let (_dir, store) = new_store();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let replica = rt
        .block_on(gridsync_core::app::Replica::open(
            &store,
            Default::default(),
        ))
        .expect("first open");
    let me = rt.block_on(replica.identity()).expect("identity");

    let err = refused(&field(&store, &["--wait", "0", "whoami"]));
    assert!(err.contains("open elsewhere"), "{err}");
    let err = refused(&field(&store, &["--json", "--wait", "1", "whoami"]));
    assert_eq!(error_kind(&err), "store_in_use");
    // A second open from this process is refused too.
    let again = rt.block_on(gridsync_core::app::Replica::open(
        &store,
        Default::default(),
    ));
    assert_eq!(
        again.expect_err("second open in this process").kind(),
        "store_in_use"
    );

    // A command that waits gets the store as soon as its holder lets go.
    let mut waiting = std::process::Command::new(env!("CARGO_BIN_EXE_gridsync-field"))
        .arg("--store")
        .arg(&store)
        .args(["--json", "--wait", "30", "whoami"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(300));
    rt.block_on(replica.close());
    let waited = waiting.wait().expect("wait");
    assert!(
        waited.success(),
        "the waiting command did not get the store"
    );
    let who = json(&field(&store, &["--json", "whoami"]));
    assert_eq!(who["device"], me.device.as_str());
    assert_eq!(who["role"], "worker");
}
