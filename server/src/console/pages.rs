//! Signing in and out, the case inbox and the case detail.

use std::str::FromStr;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::StreamExt;
use maud::{Markup, html};
use object_store::ObjectStoreExt;

use gridsync_core::Document;
use gridsync_core::clock::now_ms;
use gridsync_core::records::{Case, PhotoStage};
use gridsync_core::workflow::{Action, available_actions, fold_order, needs_note, plan_dispatch};
use gridsync_proto::{DocId, GridCode};

use super::session::{self, SignIn, SignedIn, check_csrf, signed_in};
use super::view::{self, Nav, Page, csrf_field, when};
use super::{ConsoleError, FormData};
use crate::storage::console::{ConsoleRole, DeadlineFlag, InboxQuery};
use crate::{AppState, Storage};

/// `GET /console/login`.
pub async fn login_page(Query(q): Query<std::collections::BTreeMap<String, String>>) -> Page {
    login_form(if q.contains_key("expired") {
        Some("会话已过期，请重新登录。")
    } else {
        None
    })
}

fn login_form(message: Option<&str>) -> Page {
    view::bare_page(
        "登录",
        html! {
            @if let Some(m) = message { p.error { (m) } }
            form method="post" action="/console/login" {
                p { label { "账号" br; input type="text" name="login" autocomplete="username" required autofocus; } }
                p { label { "密码" br; input type="password" name="password" autocomplete="current-password" required; } }
                p { button type="submit" { "登录" } }
            }
        },
    )
}

/// `POST /console/login`: checks the password, opens a session, sets the cookie.
pub async fn login<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    session::check_origin(&headers)?;
    let form = FormData::parse(&body)?;
    let login = form.get("login").unwrap_or_default().to_owned();
    let password = form
        .0
        .iter()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.clone());
    let outcome = session::sign_in(&state, &headers, &login, &password.unwrap_or_default()).await?;
    Ok(match outcome {
        SignIn::Ok(token) => {
            let mut r = Redirect::to("/console/").into_response();
            let cookie = session::session_cookie(&token, &state.config.console);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        SignIn::Refused => (
            StatusCode::UNAUTHORIZED,
            login_form(Some(
                "账号或密码错误。连续失败 5 次，账号将锁定 15 分钟；如需解锁请联系运维。",
            )),
        )
            .into_response(),
    })
}

/// `POST /console/logout`: ends the session.
pub async fn logout<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    let form = FormData::parse(&body)?;
    check_csrf(&signed, &headers, form.get(session::CSRF_FIELD))?;
    state.storage.end_session(&signed.token_hash).await?;
    session::audit(
        &state,
        &headers,
        &signed.user.login,
        "sign_out",
        "",
        "ok",
        "",
    )
    .await?;
    let mut r = Redirect::to("/console/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::cleared_cookie(&state.config.console)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// The inbox's filters as the query string carries them.
#[derive(Debug, Default, serde::Deserialize)]
pub struct InboxParams {
    status: Option<String>,
    grid: Option<String>,
    dept: Option<String>,
    category: Option<String>,
    flag: Option<String>,
    conflicts: Option<String>,
    times: Option<String>,
    page: Option<i64>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Refuses operators (and anyone else without case work).
pub fn need_casework(signed: &SignedIn) -> Result<(), ConsoleError> {
    if signed.user.role == ConsoleRole::Operator {
        return Err(ConsoleError::Forbidden(
            "运维账号不处理案件，也不查看居民信息。".into(),
        ));
    }
    Ok(())
}

/// The inbox query for a person: their visibility and the filters asked for.
pub fn inbox_query(
    signed: &SignedIn,
    p: &InboxParams,
    page_size: i64,
    now: i64,
) -> Result<InboxQuery, ConsoleError> {
    let within = match nonempty(&p.grid) {
        Some(g) => Some(GridCode::parse(&g).map_err(|e| ConsoleError::bad("网格", e.to_string()))?),
        None => None,
    };
    let flag = match nonempty(&p.flag).as_deref() {
        None => None,
        Some("amber") => Some(DeadlineFlag::Amber),
        Some("red") => Some(DeadlineFlag::Red),
        Some(other) => return Err(ConsoleError::bad("预警", format!("未知的取值 {other}"))),
    };
    let page = p.page.unwrap_or(1).clamp(1, 100_000);
    let clerk = signed.user.role == ConsoleRole::Clerk;
    Ok(InboxQuery {
        // A clerk without a department sees nothing (no towns: fail closed).
        towns: if clerk && signed.user.dept.is_none() {
            Vec::new()
        } else {
            signed.user.towns.clone()
        },
        holder: if clerk {
            signed.user.dept.clone()
        } else {
            None
        },
        status: nonempty(&p.status),
        within,
        dept: nonempty(&p.dept),
        category: nonempty(&p.category),
        flag,
        conflicts: p.conflicts.is_some(),
        times: p.times.is_some(),
        now,
        offset: (page - 1).saturating_mul(page_size),
        limit: page_size,
    })
}

/// `GET /console/`: the case inbox.
pub async fn inbox<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Query(p): Query<InboxParams>,
) -> Result<Page, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    need_casework(&signed)?;
    let now = now_ms();
    let page_size = state.config.console.page_size;
    let q = inbox_query(&signed, &p, page_size, now)?;
    let (rows, total) = state.storage.inbox(&q).await?;
    Ok(render_inbox(&state, &signed, &p, &q, &rows, total, now))
}

/// The inbox page (also what the benchmark renders).
pub fn render_inbox<S: Storage>(
    state: &AppState<S>,
    signed: &SignedIn,
    p: &InboxParams,
    q: &InboxQuery,
    rows: &[gridsync_core::projection::CaseRow],
    total: i64,
    now: i64,
) -> Page {
    let reference = &state.config.reference;
    let page = q.offset / q.limit.max(1) + 1;
    let pages = (total + q.limit - 1) / q.limit.max(1);
    let link = |page: i64| {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (k, v) in [
            ("status", &p.status),
            ("grid", &p.grid),
            ("dept", &p.dept),
            ("category", &p.category),
            ("flag", &p.flag),
            ("conflicts", &p.conflicts),
            ("times", &p.times),
        ] {
            if let Some(v) = nonempty(v) {
                pairs.push((k, v));
            }
        }
        pairs.push(("page", page.to_string()));
        format!(
            "/console/?{}",
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    };
    let majors: std::collections::BTreeMap<String, String> = reference
        .categories
        .iter()
        .map(|c| {
            (
                c.code[..2.min(c.code.len())].to_owned(),
                c.major_name.clone(),
            )
        })
        .collect();
    let title = match signed.user.role {
        ConsoleRole::Clerk => "本部门案件",
        _ => "案件收件箱",
    };
    view::page(
        signed,
        Nav::Inbox,
        title,
        html! {
            form.filters method="get" action="/console/" {
                label { "状态" select name="status" {
                    option value="" { "全部" }
                    @for s in gridsync_core::workflow::STATUSES.iter().skip(1) {
                        option value=(s.as_str()) selected[q.status.as_deref() == Some(s.as_str())] { (view::status_label(s.as_str())) }
                    }
                } }
                label { "网格编码" input type="text" name="grid" value=(nonempty(&p.grid).unwrap_or_default()) size="18"; }
                @if signed.user.role != ConsoleRole::Clerk {
                    label { "部门" select name="dept" {
                        option value="" { "全部" }
                        @for d in &reference.departments {
                            option value=(d.code) selected[q.dept.as_deref() == Some(d.code.as_str())] { (d.name) }
                        }
                    } }
                }
                label { "大类" select name="category" {
                    option value="" { "全部" }
                    @for (code, name) in &majors {
                        option value=(code) selected[q.category.as_deref() == Some(code.as_str())] { (name) }
                    }
                } }
                label { "预警" select name="flag" {
                    option value="" { "全部" }
                    option value="amber" selected[q.flag == Some(DeadlineFlag::Amber)] { "黄灯（临期）" }
                    option value="red" selected[q.flag == Some(DeadlineFlag::Red)] { "红灯（超期）" }
                } }
                label { "冲突" input type="checkbox" name="conflicts" value="1" checked[q.conflicts]; }
                label { "时间存疑" input type="checkbox" name="times" value="1" checked[q.times]; }
                button type="submit" { "筛选" }
                a href="/console/" { "清除" }
            }
            p { "共 " (total) " 件" }
            table.inbox {
                thead { tr {
                    th { "标题" } th { "网格" } th { "状态" } th { "类别" } th { "承办部门" }
                    th { "上报时间" } th { "办理期限" } th { "标记" }
                } }
                tbody {
                    @for r in rows {
                        tr {
                            td { a href=(format!("/console/cases/{}", r.doc_id)) { (r.title) } }
                            td { (r.grid) }
                            td { (view::status_label(&r.status)) }
                            td { (view::minor_name(reference, &r.subcategory)) }
                            td { @if let Some(l) = &r.lead { (view::dept_name(reference, l)) } @else { "—" } }
                            td { (when(Some(r.reported_at))) }
                            td { (when(r.deadline)) }
                            td { (flags(r, now)) }
                        }
                    }
                }
            }
            @if rows.is_empty() { p { "没有符合条件的案件。" } }
            div.pager {
                @if page > 1 { a href=(link(page - 1)) { "上一页" } }
                span { "第 " (page) " / " (pages.max(1)) " 页" }
                @if page < pages { a href=(link(page + 1)) { "下一页" } }
            }
        },
    )
}

/// The amber/red and conflict badges of a case row.
fn flags(r: &gridsync_core::projection::CaseRow, now: i64) -> Markup {
    let running = gridsync_core::workflow::STATUSES
        .iter()
        .any(|s| s.as_str() == r.status && s.clock_runs());
    let red = running && r.deadline.is_some_and(|d| d < now);
    let amber = running && !red && r.amber_at.is_some_and(|a| a <= now);
    html! {
        @if red { span.badge.red { "超期" } " " }
        @if amber { span.badge.amber { "临期" } " " }
        @if r.urgency == "urgent" { span.badge.red { "紧急" } " " }
        @if r.event_conflicts > 0 || r.conflict_count > 0 { span.badge.flag { "冲突" } " " }
        @if r.supervisions > 0 { span.badge { "督办 " (r.supervisions) } }
    }
}

/// The case a person may see, with its record; `NotFound` for one they may not (the same
/// answer as for a case that does not exist, so ids cannot be probed).
pub async fn visible_case<S: Storage>(
    state: &AppState<S>,
    signed: &SignedIn,
    id: &str,
) -> Result<(Document, Case), ConsoleError> {
    need_casework(signed)?;
    let missing = || ConsoleError::NotFound("案件不存在，或不在您的办理范围内。".into());
    let id = DocId::from_str(id).map_err(|_| missing())?;
    let doc = state.storage.load(id).await?.ok_or_else(missing)?;
    let scope = doc.header().scope.clone();
    if !signed.user.towns.iter().any(|t| t.contains(&scope)) {
        return Err(missing());
    }
    if signed.user.role == ConsoleRole::Clerk {
        let holders = state.storage.case_holders(id).await?;
        let Some(dept) = &signed.user.dept else {
            return Err(missing());
        };
        if !holders.contains(dept) {
            return Err(missing());
        }
    }
    let case: Case = doc.read().map_err(|_| missing())?;
    Ok((doc, case))
}

/// `GET /console/cases/{id}`: the case with its timeline, photos, map and the actions the
/// person may take now.
pub async fn case<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
) -> Result<Page, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    let (doc, case) = visible_case(&state, &signed, &id).await?;
    let reference = &state.config.reference;
    let now = now_ms();
    let st = case.state();
    let id = doc.id();
    let role = signed.user.role.workflow_role();
    let actions: Vec<Action> = match role {
        Some(role) => available_actions(&case, &st, role, signed.user.dept.as_deref(), now)
            .into_iter()
            .filter(|a| super::act::console_offers(*a))
            .collect(),
        None => Vec::new(),
    };
    let grid = state.storage.grid(doc.header().scope.as_str()).await?;
    let town = doc.header().scope.town().to_string();
    let auto = state
        .storage
        .auto_routes(&signed.user.towns)
        .await?
        .into_iter()
        .find(|r| r.subcategory == case.subcategory && r.town == town);
    let conflicts: std::collections::BTreeMap<_, _> = st
        .conflicts
        .iter()
        .map(|c| (c.event, c.reason.clone()))
        .collect();
    let order = fold_order(&case);
    let field_conflicts = doc.conflicts();
    let done = q.get("done").map(String::as_str);
    Ok(view::page(
        &signed,
        Nav::Inbox,
        &case.title,
        html! {
            @if let Some(a) = done.and_then(|a| a.parse::<Action>().ok()) {
                p.notice { "已" (view::action_label(a)) "。" }
            }
            @if done == Some("resolve") { p.notice { "已采用所选的值。" } }
            @if done == Some("photo") { p.notice { "照片已上传。" } }
            div.grid2 {
                div {
                    div.card {
                        dl.facts {
                            dt { "状态" } dd { (view::status_label(st.status.as_str())) }
                            dt { "类别" } dd { (view::major_name(reference, &case.category)) " / " (view::minor_name(reference, &case.subcategory)) }
                            dt { "紧急程度" } dd { @if case.urgency == gridsync_core::records::Urgency::Urgent { span.badge.red { "紧急" } } @else { "一般" } }
                            dt { "来源" } dd { (view::source_label(case.source)) }
                            dt { "地址" } dd { (case.address) }
                            dt { "网格" } dd { (doc.header().scope) @if let Some(g) = &grid { " " (g.name) } }
                            dt { "上报" } dd { (case.reported_by) " · " (when(Some(case.reported_at))) }
                            dt { "描述" } dd { (case.description) }
                            dt { "承办部门" } dd {
                                @if let Some(l) = &st.lead { "主办：" (view::dept_name(reference, l)) }
                                @for c in &st.co { " · 协办：" (view::dept_name(reference, c)) }
                                @if st.lead.is_none() { "—" }
                            }
                            dt { "办理期限" } dd { (when(st.deadline)) @if let Some(a) = st.amber_at { "（黄灯 " (when(Some(a))) "）" } }
                            @if !st.supervisions.is_empty() {
                                dt { "督办" } dd { (st.supervisions.len()) " 次" }
                            }
                            @if let Some(r) = &auto {
                                dt { "自动流转" } dd { "本小类登记后自动派往默认部门（" (r.set_by) " 于 " (when(Some(r.set_at))) " 设置）" }
                            }
                        }
                    }
                    @if !field_conflicts.is_empty() {
                        h2 { "待裁决的冲突" }
                        div.card.conflicts {
                            p.meta { "以下字段被两人同时修改，两个值都已保留；请选择采用哪一个。" }
                            @for c in &field_conflicts {
                                div.conflict {
                                    strong { (c.path) }
                                    @for (i, v) in c.values.iter().enumerate() {
                                        form method="post" action=(format!("/console/cases/{id}/resolve")) data-resolve=(c.path) {
                                            (csrf_field(&signed))
                                            input type="hidden" name="path" value=(c.path);
                                            input type="hidden" name="choice" value=(i);
                                            code { (v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())) }
                                            " "
                                            @if role.is_some() { button type="submit" { "采用此值" } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    h2 { "处置过程" }
                    div.card {
                        ol.timeline {
                            @for eid in &order {
                                @if let Some(e) = case.events.get(eid) {
                                    li class=(if conflicts.contains_key(eid) { "conflict" } else { "" }) {
                                        strong { (view::kind_label(&e.kind)) }
                                        " "
                                        span.meta {
                                            (e.by) "（" (view::role_label(&e.role))
                                            @if let Some(d) = &e.dept { " · " (view::dept_name(reference, d)) }
                                            "） " (when(Some(e.at)))
                                        }
                                        @if !e.note.is_empty() { div { (e.note) } }
                                        @if let Some(lead) = e.data.get("lead") {
                                            div.meta { "主办 " (view::dept_name(reference, lead))
                                                @if let Some(d) = e.data.get("deadline").and_then(|d| d.parse::<i64>().ok()) { "，期限 " (when(Some(d))) } }
                                        }
                                        @if let Some(rule) = e.data.get("rule") { div.meta { "规则：" (rule) } }
                                        @if let Some(why) = conflicts.get(eid) { div.meta { span.badge.red { "未生效" } " " (why) } }
                                    }
                                }
                            }
                        }
                    }
                    h2 { "照片" }
                    div.card {
                        (photos(id, &case))
                        @if role.is_some() && !st.status.is_finished() {
                            form.upload method="post" enctype="multipart/form-data" action=(format!("/console/cases/{id}/photos")) {
                                (csrf_field(&signed))
                                label { "阶段 " select name="stage" {
                                    option value="after" { "处置后" }
                                    option value="during" { "处置中" }
                                    option value="before" { "处置前" }
                                    option value="check" { "核查" }
                                } }
                                " "
                                input type="file" name="photo" accept="image/jpeg,image/png,image/webp" required;
                                " "
                                button type="submit" { "上传照片" }
                            }
                        }
                    }
                }
                div {
                    h2 { "位置" }
                    div.card { (map(&case, grid.as_ref())) }
                    h2 { "可执行的操作" }
                    div.card.actions {
                        @if actions.is_empty() { p { "当前没有您可以执行的操作。" } }
                        @for a in &actions { (action_form(&state, &signed, id, &case, *a, now)) }
                    }
                }
            }
        },
    ))
}

/// The form of one action, with the inputs it needs.
fn action_form<S: Storage>(
    state: &AppState<S>,
    signed: &SignedIn,
    id: DocId,
    case: &Case,
    action: Action,
    now: i64,
) -> Markup {
    let reference = &state.config.reference;
    let plan = plan_dispatch(case, reference, now, None, None).ok();
    html! {
        form method="post" action=(format!("/console/cases/{id}/act")) data-action=(action.as_str()) {
            (csrf_field(signed))
            input type="hidden" name="action" value=(action.as_str());
            @match action {
                Action::Dispatch => {
                    label { "主办部门" select name="lead" {
                        @for d in &reference.departments {
                            option value=(d.code) selected[plan.as_ref().and_then(|p| p.get("lead")) == Some(&d.code)] { (d.name) }
                        }
                    } }
                    label { "协办部门（可多选）" select name="co" multiple size="4" {
                        @for d in &reference.departments {
                            option value=(d.code) selected[plan.as_ref().and_then(|p| p.get("co")).is_some_and(|co| co.split(',').any(|c| c == d.code))] { (d.name) }
                        }
                    } }
                    @if let Some(d) = plan.as_ref().and_then(|p| p.get("deadline")).and_then(|d| d.parse::<i64>().ok()) {
                        p.meta { "按本类别时限（工作日历）计算，期限至 " (when(Some(d))) }
                    }
                }
                Action::ApproveExtension => {
                    label { "延长工作日" input type="number" name="days" min="1" max="30" value="3"; }
                }
                Action::FollowUp => {
                    label { "满意度" select name="satisfaction" {
                        option value="satisfied" { "满意" }
                        option value="basically_satisfied" { "基本满意" }
                        option value="dissatisfied" { "不满意" }
                    } }
                }
                Action::Merge => {
                    label { "合并到案件编号" input type="text" name="into" size="40" required; }
                }
                _ => {}
            }
            label { @if needs_note(action) { "说明（必填）" } @else { "说明" }
                textarea name="note" required[needs_note(action)] {} }
            button type="submit" class=(if matches!(action, Action::Reject | Action::Return | Action::FailCheck) { "danger" } else { "" }) {
                (view::action_label(action))
            }
        }
    }
}

/// Photos by stage, thumbnails linking to the full image.
fn photos(id: DocId, case: &Case) -> Markup {
    let stages = [
        (PhotoStage::Before, "处置前"),
        (PhotoStage::During, "处置中"),
        (PhotoStage::After, "处置后"),
        (PhotoStage::Check, "核查"),
        (PhotoStage::Record, "其他"),
    ];
    let hidden: std::collections::BTreeSet<_> = case.redactions.keys().copied().collect();
    html! {
        @if case.photos.is_empty() { p { "无照片。" } }
        @for (stage, label) in stages {
            @let list: Vec<_> = case.photos.iter().filter(|(pid, p)| p.stage == stage && !hidden.contains(pid)).collect();
            @if !list.is_empty() {
                h3 { (label) }
                div.photos {
                    @for (_, p) in list {
                        figure {
                            a href=(format!("/console/cases/{id}/photos/{}", p.sha256)) target="_blank" {
                                img src=(format!("/console/cases/{id}/photos/{}", p.thumb_sha256.as_deref().unwrap_or(&p.sha256))) alt=(label) loading="lazy";
                            }
                            figcaption { (when(Some(p.taken_at))) }
                        }
                    }
                }
            }
        }
    }
}

/// The grid's boundary and the case's location, drawn as SVG (no online tiles).
fn map(case: &Case, grid: Option<&gridsync_core::projection::GridRow>) -> Markup {
    let boundary: Vec<[f64; 2]> = grid
        .and_then(|g| serde_json::from_str(&g.boundary).ok())
        .unwrap_or_default();
    let point = case.location.as_ref().map(|g| [g.lat, g.lon]);
    let all: Vec<[f64; 2]> = boundary.iter().copied().chain(point).collect();
    if all.is_empty() {
        return html! { p { "没有网格边界和位置信息。" } };
    }
    let (w, h, pad) = (360.0, 240.0, 16.0);
    let lat = |p: &[f64; 2]| p[0];
    let lon = |p: &[f64; 2]| p[1];
    let (min_lat, max_lat) = all
        .iter()
        .map(lat)
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (min_lon, max_lon) = all
        .iter()
        .map(lon)
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let span_lat = (max_lat - min_lat).max(1e-6);
    let span_lon = (max_lon - min_lon).max(1e-6);
    let scale = ((w - 2.0 * pad) / span_lon).min((h - 2.0 * pad) / span_lat);
    let xy = |p: &[f64; 2]| {
        (
            pad + (lon(p) - min_lon) * scale,
            h - pad - (lat(p) - min_lat) * scale,
        )
    };
    let polygon: Vec<String> = boundary
        .iter()
        .map(|p| {
            let (x, y) = xy(p);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    html! {
        svg.map width=(w) height=(h) viewBox=(format!("0 0 {w} {h}")) role="img" aria-label="网格位置图" {
            @if !polygon.is_empty() {
                polygon points=(polygon.join(" ")) fill="#dbeafe" stroke="#1d5fa8" stroke-width="2" {}
            }
            @if let Some(p) = point {
                @let (x, y) = xy(&p);
                circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="6" fill="#e5484d" stroke="#fff" stroke-width="2" {}
            }
        }
        @if point.is_none() { p.meta { "案件未记录位置。" } }
    }
}

/// `GET /console/cases/{id}/photos/{sha}`: one photo (or thumbnail) of a case the person
/// may see; any other file is not found.
pub async fn case_photo<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path((id, sha)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    let (_, case) = visible_case(&state, &signed, &id).await?;
    let missing = || ConsoleError::NotFound("没有这张照片。".into());
    let hidden: std::collections::BTreeSet<_> = case.redactions.keys().copied().collect();
    let photo = case
        .photos
        .iter()
        .filter(|(pid, _)| !hidden.contains(pid))
        .map(|(_, p)| p)
        .find(|p| p.sha256 == sha || p.thumb_sha256.as_deref() == Some(sha.as_str()))
        .ok_or_else(missing)?;
    let mime = if photo.sha256 == sha {
        photo.mime.clone()
    } else {
        "image/jpeg".to_owned()
    };
    let path = crate::photos::blob_path(&sha);
    let got = state
        .config
        .photos
        .store
        .get(&path)
        .await
        .map_err(|_| missing())?;
    let stream = got.into_stream().map(|r| r.map_err(std::io::Error::other));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, mime)
        // Not kept by the browser: a shared dispatch PC keeps no resident's photo after
        // sign-out.
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-content-type-options", "nosniff")
        .body(Body::from_stream(stream))
        .map_err(|e| ConsoleError::Refused(e.to_string()))
}
