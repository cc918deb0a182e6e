//! The operator's pages (devices with enrollment QR codes, intake keys, accounts, the audit
//! log) and the automatic-routing rules (dispatchers and operators).

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, PreEscaped, html};

use gridsync_core::clock::now_ms;
use gridsync_proto::{DeviceId, GridCode};

use super::session::{self, CSRF_FIELD, SignedIn, audit, check_csrf, signed_in};
use super::view::{self, Nav, Page, csrf_field, when};
use super::{ConsoleError, FormData};
use crate::auth::{
    Role, new_enrollment_code, new_token, normalize_code, parse_scopes, secret_hash,
};
use crate::storage::console::{ConsoleRole, ConsoleUser};
use crate::{AppState, Storage};

fn need_operator(signed: &SignedIn) -> Result<(), ConsoleError> {
    if signed.user.role != ConsoleRole::Operator {
        return Err(ConsoleError::Forbidden("此页面仅供运维账号使用。".into()));
    }
    Ok(())
}

/// An SVG QR code of `text` (inline, so nothing leaves the server).
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(220, 220)
            .quiet_zone(true)
            .build(),
    )
}

/// What a phone scans to enroll: the server's address and the one-time code.
pub fn enrollment_uri(server: &str, code: &str) -> String {
    format!("gridsync://enroll?server={server}&code={code}")
}

fn server_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// `GET /console/devices`.
pub async fn devices<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Result<Page, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    need_operator(&signed)?;
    devices_page(&state, &signed, None).await
}

async fn devices_page<S: Storage>(
    state: &AppState<S>,
    signed: &SignedIn,
    issued: Option<Markup>,
) -> Result<Page, ConsoleError> {
    let list = state.storage.devices().await?;
    let reference = &state.config.reference;
    Ok(view::page(
        signed,
        Nav::Devices,
        "设备管理",
        html! {
            @if let Some(m) = issued { div.card { (m) } }
            div.card {
                h2 { "新设备登记" }
                form method="post" action="/console/devices/enroll" {
                    (csrf_field(signed))
                    label { "使用人 " input type="text" name="name" required; }
                    " "
                    label { "角色 " select name="role" {
                        option value="worker" { "网格员" }
                        option value="dispatcher" { "调度员" }
                        option value="department" { "部门" }
                        option value="leader" { "领导" }
                    } }
                    " "
                    label { "范围（网格或镇街编码，逗号分隔） " input type="text" name="scopes" size="40" required; }
                    " "
                    label { "部门 " select name="dept" {
                        option value="" { "—" }
                        @for d in &reference.departments { option value=(d.code) { (d.name) } }
                    } }
                    " "
                    button type="submit" { "生成登记码" }
                }
            }
            table {
                thead { tr { th { "设备" } th { "使用人" } th { "角色" } th { "范围" } th { "登记时间" } th { "最近上传" } th { "时钟偏差" } th { "状态" } th {} } }
                tbody {
                    @for d in &list {
                        tr {
                            td { code { (d.device) } }
                            td { (d.name) }
                            td { (view::role_label(&d.role)) }
                            td { (d.scopes) }
                            td { (when(Some(d.enrolled_at))) }
                            td { (when(d.last_push_at)) }
                            td { @match d.skew_ms {
                                Some(s) if s.abs() >= 300_000 => span.badge.red { (format!("{:+.0} 分钟", s as f64 / 60_000.0)) },
                                Some(s) => (format!("{:+.1} 秒", s as f64 / 1000.0)),
                                None => "—",
                            } }
                            td { @if d.revoked_at.is_some() { span.badge.red { "已停用" } } @else { "正常" } }
                            td {
                                @if d.revoked_at.is_none() {
                                    form method="post" action=(format!("/console/devices/{}/revoke", d.device)) {
                                        (csrf_field(signed))
                                        button.danger type="submit" { "停用" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// `POST /console/devices/enroll`: a one-time enrollment code, shown once with its QR code.
pub async fn enroll<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Page, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    let form = FormData::parse(&body)?;
    check_csrf(&signed, &headers, form.get(CSRF_FIELD))?;
    need_operator(&signed)?;
    let name = form.need("name", "使用人")?.to_owned();
    let role =
        Role::from_str(form.need("role", "角色")?).map_err(|e| ConsoleError::bad("角色", e))?;
    let scopes = parse_scopes(role, form.need("scopes", "范围")?)
        .map_err(|e| ConsoleError::bad("范围", e))?;
    let dept = form.get("dept").map(str::to_owned);
    let code = new_enrollment_code();
    let expires = now_ms() + 7 * 86_400_000;
    state
        .storage
        .create_enrollment(
            &secret_hash(&normalize_code(&code)),
            &name,
            role,
            &scopes,
            dept.as_deref(),
            None,
            expires,
        )
        .await
        .map_err(|e| ConsoleError::bad("登记", e.to_string()))?;
    audit(
        &state,
        &headers,
        &signed.user.login,
        "device.enroll",
        &name,
        "ok",
        &format!("{role} {}", crate::auth::join_scopes(&scopes)),
    )
    .await?;
    let uri = enrollment_uri(&server_url(&headers), &code);
    let issued = html! {
        h2 { "登记码（仅显示一次，7 天内有效，只能使用一次）" }
        p.code data-enrollment-code=(code) { (code) }
        @if let Some(svg) = qr_svg(&uri) { div.qr { (PreEscaped(svg)) } }
        p.meta { "用手机扫码，或在手机上输入登记码。" }
    };
    devices_page(&state, &signed, Some(issued)).await
}

/// `POST /console/devices/{id}/revoke`: a lost phone stops syncing at once.
pub async fn revoke<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    let form = FormData::parse(&body)?;
    check_csrf(&signed, &headers, form.get(CSRF_FIELD))?;
    need_operator(&signed)?;
    let device =
        DeviceId::from_str(&id).map_err(|_| ConsoleError::NotFound("没有这台设备。".into()))?;
    let done = state.storage.revoke(device).await?;
    audit(
        &state,
        &headers,
        &signed.user.login,
        "device.revoke",
        &id,
        if done { "ok" } else { "refused" },
        "",
    )
    .await?;
    Ok(Redirect::to("/console/devices").into_response())
}

/// `GET /console/keys`.
pub async fn keys<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Result<Page, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    need_operator(&signed)?;
    Ok(keys_page(&signed, None))
}

fn keys_page(signed: &SignedIn, issued: Option<(String, String)>) -> Page {
    view::page(
        signed,
        Nav::Keys,
        "接入密钥（12345 热线、小程序）",
        html! {
            @if let Some((name, key)) = issued {
                div.card {
                    h2 { (name) " 的接入密钥（仅显示一次）" }
                    p.code data-intake-key=(key) { (key) }
                    p.meta { "对方系统以 Authorization: Bearer <密钥> 调用 POST /v1/intake/cases。" }
                }
            }
            div.card {
                form method="post" action="/console/keys" {
                    (csrf_field(signed))
                    label { "系统名称 " input type="text" name="name" required; }
                    " "
                    label { "服务镇街（编码，逗号分隔） " input type="text" name="towns" required; }
                    " "
                    button type="submit" { "生成密钥" }
                }
            }
        },
    )
}

/// `POST /console/keys`: a new intake key, shown once.
pub async fn new_key<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Page, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    let form = FormData::parse(&body)?;
    check_csrf(&signed, &headers, form.get(CSRF_FIELD))?;
    need_operator(&signed)?;
    let name = form.need("name", "系统名称")?.to_owned();
    let towns = parse_scopes(Role::Dispatcher, form.need("towns", "服务镇街")?)
        .map_err(|_| ConsoleError::bad("服务镇街", "应为 9 位镇街编码，逗号分隔"))?;
    let key = new_token();
    state
        .storage
        .create_intake_key(&secret_hash(&key), &name, &towns)
        .await?;
    audit(
        &state,
        &headers,
        &signed.user.login,
        "intake_key.create",
        &name,
        "ok",
        &crate::auth::join_scopes(&towns),
    )
    .await?;
    Ok(keys_page(&signed, Some((name, key))))
}

/// `GET /console/users`.
pub async fn users<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Result<Page, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    need_operator(&signed)?;
    users_page(&state, &signed, None).await
}

async fn users_page<S: Storage>(
    state: &AppState<S>,
    signed: &SignedIn,
    message: Option<String>,
) -> Result<Page, ConsoleError> {
    let list = state.storage.console_users().await?;
    let reference = &state.config.reference;
    let now = now_ms();
    Ok(view::page(
        signed,
        Nav::Users,
        "账号管理",
        html! {
            @if let Some(m) = message { p.notice { (m) } }
            div.card {
                h2 { "新增账号" }
                form method="post" action="/console/users" {
                    (csrf_field(signed))
                    input type="hidden" name="op" value="add";
                    label { "账号 " input type="text" name="login" required; } " "
                    label { "姓名 " input type="text" name="name" required; } " "
                    label { "角色 " select name="role" {
                        @for r in ConsoleRole::ALL { option value=(r.as_str()) { (r.label()) } }
                    } } " "
                    label { "部门 " select name="dept" {
                        option value="" { "—" }
                        @for d in &reference.departments { option value=(d.code) { (d.name) } }
                    } } " "
                    label { "镇街（编码，逗号分隔） " input type="text" name="towns" required; } " "
                    label { "初始密码 " input type="password" name="password" required autocomplete="new-password"; } " "
                    button type="submit" { "新增" }
                }
            }
            table {
                thead { tr { th { "账号" } th { "姓名" } th { "角色" } th { "部门" } th { "镇街" } th { "状态" } th {} } }
                tbody {
                    @for u in &list {
                        tr {
                            td { (u.login) } td { (u.name) } td { (u.role.label()) }
                            td { (u.dept.as_deref().map(|d| view::dept_name(reference, d)).unwrap_or_else(|| "—".into())) }
                            td { (crate::auth::join_scopes(&u.towns)) }
                            td {
                                @if u.disabled { span.badge.red { "已停用" } }
                                @else if u.locked_until > now { span.badge.amber { "锁定至 " (when(Some(u.locked_until))) } }
                                @else { "正常" }
                            }
                            td {
                                @if u.login != signed.user.login {
                                    form method="post" action="/console/users" {
                                        (csrf_field(signed))
                                        input type="hidden" name="login" value=(u.login);
                                        @if u.disabled {
                                            input type="hidden" name="op" value="enable";
                                            button type="submit" { "启用" }
                                        } @else {
                                            input type="hidden" name="op" value="disable";
                                            button.danger type="submit" { "停用" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// An account to make (see [`add_user`]).
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    /// The sign-in name.
    pub login: &'a str,
    /// The person's name.
    pub name: &'a str,
    /// What they do.
    pub role: ConsoleRole,
    /// A clerk's department.
    pub dept: Option<&'a str>,
    /// The towns they work in.
    pub towns: &'a [GridCode],
    /// The first password.
    pub password: &'a str,
}

/// Makes an account (used by the CLI and the users page): checks the role's binding, hashes
/// the password, gives a case-working person their own replica id.
pub async fn add_user<S: Storage>(
    storage: &S,
    reference: &gridsync_core::workflow::Reference,
    new: NewUser<'_>,
) -> Result<ConsoleUser, ConsoleError> {
    let NewUser {
        login,
        name,
        role,
        dept,
        towns,
        password,
    } = new;
    let login = login.trim();
    if !session::valid_login(login) {
        return Err(ConsoleError::bad("账号", "1–64 个字母、数字或 . _ -"));
    }
    if name.trim().is_empty() {
        return Err(ConsoleError::bad("姓名", "必须填写"));
    }
    match (role, dept) {
        (ConsoleRole::Clerk, None) => {
            return Err(ConsoleError::bad("部门", "部门办理人必须属于一个部门"));
        }
        (ConsoleRole::Clerk, Some(d)) if !reference.has_department(d) => {
            return Err(ConsoleError::bad("部门", format!("{d} 不在部门表中")));
        }
        (ConsoleRole::Clerk, Some(_)) => {}
        (_, Some(_)) => {
            return Err(ConsoleError::bad("部门", "只有部门办理人属于部门"));
        }
        (_, None) => {}
    }
    if towns.is_empty()
        || towns
            .iter()
            .any(|t| t.level() != gridsync_proto::GridLevel::Town)
    {
        return Err(ConsoleError::bad("镇街", "应为 9 位镇街编码，至少一个"));
    }
    session::check_password(password).map_err(|e| ConsoleError::bad("密码", e))?;
    let hash = session::hash_password(password).map_err(|e| ConsoleError::bad("密码", e))?;
    let user = ConsoleUser {
        login: login.to_owned(),
        name: name.trim().to_owned(),
        role,
        dept: dept.map(str::to_owned),
        towns: towns.to_vec(),
        device_id: role.workflow_role().map(|_| DeviceId::new()),
        password_hash: hash,
        disabled: false,
        failures: 0,
        locked_until: 0,
        created_at: now_ms(),
    };
    if !storage.add_console_user(&user).await? {
        return Err(ConsoleError::bad("账号", format!("{login} 已存在")));
    }
    Ok(user)
}

/// `POST /console/users`: add, disable or enable an account.
pub async fn user_action<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Page, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    let form = FormData::parse(&body)?;
    check_csrf(&signed, &headers, form.get(CSRF_FIELD))?;
    need_operator(&signed)?;
    let login = form.need("login", "账号")?.to_owned();
    let message = match form.need("op", "操作")? {
        "add" => {
            let role = ConsoleRole::from_str(form.need("role", "角色")?)
                .map_err(|e| ConsoleError::bad("角色", e))?;
            let towns = parse_scopes(Role::Dispatcher, form.need("towns", "镇街")?)
                .map_err(|_| ConsoleError::bad("镇街", "应为 9 位镇街编码，逗号分隔"))?;
            let password = form
                .0
                .iter()
                .find(|(k, _)| k == "password")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            add_user(
                state.storage.as_ref(),
                &state.config.reference,
                NewUser {
                    login: &login,
                    name: form.need("name", "姓名")?,
                    role,
                    dept: form.get("dept"),
                    towns: &towns,
                    password,
                },
            )
            .await?;
            audit(
                &state,
                &headers,
                &signed.user.login,
                "user.add",
                &login,
                "ok",
                role.as_str(),
            )
            .await?;
            format!("已新增账号 {login}。")
        }
        op @ ("disable" | "enable") => {
            if login == signed.user.login {
                return Err(ConsoleError::bad("账号", "不能停用自己的账号"));
            }
            let disable = op == "disable";
            if !state.storage.set_console_disabled(&login, disable).await? {
                return Err(ConsoleError::NotFound(format!("没有账号 {login}。")));
            }
            audit(
                &state,
                &headers,
                &signed.user.login,
                &format!("user.{op}"),
                &login,
                "ok",
                "",
            )
            .await?;
            if disable {
                format!("已停用 {login}。")
            } else {
                format!("已启用 {login}。")
            }
        }
        other => return Err(ConsoleError::bad("操作", format!("未知的操作 {other}"))),
    };
    users_page(&state, &signed, Some(message)).await
}

/// `GET /console/audit?login=`: the newest 500 audit entries.
pub async fn audit_page<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
) -> Result<Page, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    need_operator(&signed)?;
    let login = q.get("login").map(String::as_str).filter(|l| !l.is_empty());
    let entries = state.storage.audit_log(login, 500).await?;
    Ok(view::page(
        &signed,
        Nav::Audit,
        "审计日志",
        html! {
            form.filters method="get" action="/console/audit" {
                label { "账号" input type="text" name="login" value=(login.unwrap_or_default()); }
                button type="submit" { "筛选" }
            }
            table {
                thead { tr { th { "时间" } th { "账号" } th { "操作" } th { "对象" } th { "结果" } th { "详情" } th { "地址" } } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (when(Some(e.at))) } td { (e.login) } td { (e.action) } td { (e.target) }
                            td { @if e.outcome == "ok" { "成功" } @else { span.badge.red { (e.outcome) } } }
                            td { (e.detail) } td { (e.addr) }
                        }
                    }
                }
            }
        },
    ))
}

fn need_router(signed: &SignedIn) -> Result<(), ConsoleError> {
    match signed.user.role {
        ConsoleRole::Dispatcher | ConsoleRole::Operator => Ok(()),
        _ => Err(ConsoleError::Forbidden(
            "自动流转规则由调度员或运维设置。".into(),
        )),
    }
}

/// `GET /console/routes`: the category table with the automatic-dispatch marks.
pub async fn routes_page<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Result<Page, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    need_router(&signed)?;
    let marked = state.storage.auto_routes(&signed.user.towns).await?;
    let reference = &state.config.reference;
    Ok(view::page(
        &signed,
        Nav::Routes,
        "自动流转规则",
        html! {
            p { "标记的小类在本镇街（" (crate::auth::join_scopes(&signed.user.towns)) "）立案后自动派往其默认主办、协办部门，并按类别时限计算期限；案件上会写明所依据的规则。" }
            table {
                thead { tr { th { "小类" } th { "大类" } th { "默认主办" } th { "默认协办" } th { "时限" } th { "自动流转" } th {} } }
                tbody {
                    @for c in &reference.categories {
                        @let on = marked.iter().find(|r| r.subcategory == c.code);
                        tr {
                            td { (c.code) " " (c.name) } td { (c.major_name) }
                            td { (view::dept_name(reference, &c.lead)) }
                            td { (c.co.iter().map(|d| view::dept_name(reference, d)).collect::<Vec<_>>().join("、")) }
                            td { (match c.limit { gridsync_core::workflow::TimeLimit::WorkingDays(d) => format!("{d} 个工作日"), gridsync_core::workflow::TimeLimit::WorkingHours(h) => format!("{h} 工作小时") }) }
                            td { @if let Some(r) = on { span.badge.flag { "开" } " " (r.set_by) " " (when(Some(r.set_at))) } @else { "关" } }
                            td {
                                form method="post" action="/console/routes" {
                                    (csrf_field(&signed))
                                    input type="hidden" name="subcategory" value=(c.code);
                                    input type="hidden" name="on" value=(if on.is_some() { "0" } else { "1" });
                                    button type="submit" { @if on.is_some() { "关闭" } @else { "开启" } }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// `POST /console/routes`: marks or unmarks a 小类; routes what is waiting at once.
pub async fn set_route<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    let form = FormData::parse(&body)?;
    check_csrf(&signed, &headers, form.get(CSRF_FIELD))?;
    need_router(&signed)?;
    let sub = form.need("subcategory", "小类")?.to_owned();
    if state.config.reference.category(&sub).is_none() {
        return Err(ConsoleError::bad("小类", format!("{sub} 不在类别表中")));
    }
    let on = form.get("on") == Some("1");
    for town in &signed.user.towns {
        state
            .storage
            .set_auto_route(town, &sub, on, &signed.user.name, now_ms())
            .await?;
    }
    audit(
        &state,
        &headers,
        &signed.user.login,
        "route.set",
        &sub,
        "ok",
        if on { "on" } else { "off" },
    )
    .await?;
    if on {
        let _ = crate::routing::route_pending(&state).await;
    }
    Ok(Redirect::to("/console/routes").into_response())
}
