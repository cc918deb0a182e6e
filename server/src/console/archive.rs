//! The household archive (一户一档): residents found by name or ID number, and one
//! household's page (members, relations, work, residence, visits, past cases). For
//! dispatchers and leaders, within their towns; every search and view is audited.

use std::str::FromStr;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use maud::html;

use gridsync_core::records::{Household, Relation};
use gridsync_proto::{DocId, GridCode};

use super::ConsoleError;
use super::session::{SignedIn, audit, signed_in};
use super::view::{self, Nav, Page, when};
use crate::storage::console::ConsoleRole;
use crate::{AppState, Storage};

/// Only dispatchers and leaders read the archive.
fn need_reader(signed: &SignedIn) -> Result<(), ConsoleError> {
    match signed.user.role {
        ConsoleRole::Dispatcher | ConsoleRole::Leader => Ok(()),
        _ => Err(ConsoleError::Forbidden(
            "一户一档仅供调度员和领导查询。".into(),
        )),
    }
}

fn in_towns(signed: &SignedIn, grid: &str) -> bool {
    GridCode::parse(grid).is_ok_and(|g| signed.user.towns.iter().any(|t| t.contains(&g)))
}

/// A relation in Chinese.
pub fn relation_label(r: Relation) -> &'static str {
    match r {
        Relation::Head => "户主",
        Relation::Spouse => "配偶",
        Relation::Child => "子女",
        Relation::Parent => "父母",
        Relation::Grandchild => "孙子女",
        Relation::Grandparent => "祖父母",
        Relation::Sibling => "兄弟姐妹",
        Relation::ChildInLaw => "儿媳/女婿",
        Relation::Tenant => "租客",
        Relation::Other => "其他",
    }
}

/// A resident ID number shown with its middle hidden (the full number is on the
/// household page, which is audited).
fn masked(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() < 8 {
        return "****".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}**********{tail}")
}

/// A search term as the audit log keeps it: its first character, the rest hidden.
fn masked_query(q: &str) -> String {
    let n = q.chars().count();
    let first: String = q.chars().take(1).collect();
    format!("{first}{}", "*".repeat(n.saturating_sub(1)))
}

/// `GET /console/archive?q=`: residents by name (part of it) or by ID number (whole).
pub async fn search<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
) -> Result<Page, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    need_reader(&signed)?;
    let query = q.get("q").map(|s| s.trim().to_owned()).unwrap_or_default();
    let rows = if query.is_empty() {
        Vec::new()
    } else {
        let found = state
            .storage
            .residents_in_towns(&query, &signed.user.towns, 200)
            .await?;
        // Who searched is recorded; what they searched for only masked (the audit log is
        // read by operators, who see no resident data).
        audit(
            &state,
            &headers,
            &signed.user.login,
            "archive.search",
            &masked_query(&query),
            "ok",
            &format!("{} found", found.len()),
        )
        .await?;
        found
    };
    Ok(view::page(
        &signed,
        Nav::Archive,
        "一户一档",
        html! {
            form.filters method="get" action="/console/archive" {
                label { "姓名或身份证号" input type="text" name="q" value=(query) size="30" autofocus; }
                button type="submit" { "查询" }
            }
            @if !query.is_empty() {
                p { "找到 " (rows.len()) " 人" }
                table {
                    thead { tr { th { "姓名" } th { "身份证号" } th { "与户主关系" } th { "网格" } th { "工作/学习" } th { "状态" } } }
                    tbody {
                        @for r in &rows {
                            tr {
                                td { a href=(format!("/console/households/{}", r.household_id)) { (r.name) } }
                                td { (r.id_number.as_deref().map(masked).unwrap_or_else(|| "—".into())) }
                                td { (r.relation) }
                                td { (r.grid) }
                                td { (r.work) }
                                td { (r.status) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// `GET /console/households/{id}`: one household's archive.
pub async fn household<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Page, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    need_reader(&signed)?;
    let missing = || ConsoleError::NotFound("没有这户档案，或不在您的范围内。".into());
    let id = DocId::from_str(&id).map_err(|_| missing())?;
    let doc = state.storage.load(id).await?.ok_or_else(missing)?;
    if !in_towns(&signed, doc.header().scope.as_str()) {
        return Err(missing());
    }
    let h: Household = doc.read().map_err(|_| missing())?;
    audit(
        &state,
        &headers,
        &signed.user.login,
        "archive.view",
        &id.to_string(),
        "ok",
        "",
    )
    .await?;
    let cases = state
        .storage
        .household_cases(id, &signed.user.towns)
        .await?;
    let reference = &state.config.reference;
    let hidden: std::collections::BTreeSet<_> = h.redactions.keys().copied().collect();
    Ok(view::page(
        &signed,
        Nav::Archive,
        &format!("户档案：{}", h.address),
        html! {
            div.card {
                dl.facts {
                    dt { "地址" } dd { (h.address) }
                    dt { "户号" } dd { @if h.number.is_empty() { "—" } @else { (h.number) } }
                    dt { "户籍地址" } dd { @if h.registered_address.is_empty() { "—" } @else { (h.registered_address) } }
                    dt { "居住类型" } dd { (h.residence.label()) }
                    dt { "网格" } dd { (doc.header().scope) }
                    @if !h.flags.is_empty() { dt { "标记" } dd { (h.flags.iter().cloned().collect::<Vec<_>>().join("、")) } }
                }
            }
            h2 { "家庭成员" }
            table {
                thead { tr { th { "姓名" } th { "关系" } th { "身份证号" } th { "性别" } th { "出生日期" } th { "电话" } th { "工作/学习" } th { "类别" } th { "状态" } } }
                tbody {
                    @for (mid, m) in &h.members {
                        @if !hidden.contains(mid) {
                            tr {
                                td { (m.name) }
                                td { (relation_label(m.relation)) }
                                td { (m.id_number.as_deref().unwrap_or("—")) }
                                td { (match m.gender.as_deref() { Some("male") => "男", Some("female") => "女", _ => "—" }) }
                                td { (m.birth_date.as_deref().unwrap_or("—")) }
                                td { (m.phones.join("、")) }
                                td { (m.work) }
                                td { (m.categories.iter().cloned().collect::<Vec<_>>().join("、")) }
                                td { (m.status.label()) @if let Some(d) = &m.status_date { "（" (d) "）" } }
                            }
                        }
                    }
                }
            }
            h2 { "走访记录" }
            table {
                thead { tr { th { "时间" } th { "网格员" } th { "目的" } th { "情况" } } }
                tbody {
                    @for (vid, v) in h.visits.iter().rev() {
                        @if !hidden.contains(vid) {
                            tr { td { (when(Some(v.at))) } td { (v.worker) } td { (v.purpose) } td { (v.findings) } }
                        }
                    }
                }
            }
            h2 { "历史诉求" }
            table {
                thead { tr { th { "标题" } th { "状态" } th { "类别" } th { "上报时间" } } }
                tbody {
                    @for c in &cases {
                        tr {
                            td { a href=(format!("/console/cases/{}", c.doc_id)) { (c.title) } }
                            td { (view::status_label(&c.status)) }
                            td { (view::minor_name(reference, &c.subcategory)) }
                            td { (when(Some(c.reported_at))) }
                        }
                    }
                }
            }
            @if cases.is_empty() { p { "无。" } }
        },
    ))
}
