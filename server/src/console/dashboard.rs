//! The indicators dashboard: the closed-loop figures (`crate::indicators`, the same as
//! `GET /v1/indicators`) per grid, department or category over a date range, with bar charts
//! drawn here as SVG; `?wall=1` is the wall-screen mode, which refreshes itself.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use maud::{DOCTYPE, Markup, html};

use gridsync_core::clock::now_ms;
use gridsync_proto::GridCode;

use super::ConsoleError;
use super::session::{SignedIn, signed_in};
use super::view::{self, Nav, Page};
use crate::indicators::{Figures, GroupBy};
use crate::storage::console::ConsoleRole;
use crate::{AppState, Storage};

/// Seconds between refreshes of the wall screen.
pub const WALL_REFRESH_S: u32 = 60;

/// The dashboard's query string.
#[derive(Debug, Default, serde::Deserialize)]
pub struct DashParams {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    wall: Option<String>,
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{:.1}%", v * 100.0))
}

/// A horizontal bar chart of `value` per group (at most 20 bars).
fn bars(title: &str, rows: &[(String, f64, String)]) -> Markup {
    let rows = &rows[..rows.len().min(20)];
    let max = rows.iter().map(|r| r.1).fold(0.0_f64, f64::max).max(1e-9);
    let (label_w, bar_w, row_h) = (150.0, 420.0, 22.0);
    let height = row_h * rows.len() as f64 + 28.0;
    let width = label_w + bar_w + 90.0;
    html! {
        svg.chart width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) role="img" aria-label=(title) {
            text x="0" y="14" font-weight="bold" { (title) }
            @for (i, (label, v, shown)) in rows.iter().enumerate() {
                @let y = 24.0 + i as f64 * row_h;
                text x="0" y=(format!("{:.1}", y + 14.0)) { (label) }
                rect x=(label_w) y=(format!("{y:.1}")) width=(format!("{:.1}", (v / max) * bar_w)) height=(row_h - 6.0) fill="#1d5fa8" rx="3" {}
                text x=(format!("{:.1}", label_w + (v / max) * bar_w + 6.0)) y=(format!("{:.1}", y + 14.0)) { (shown) }
            }
        }
    }
}

fn group_label<S: Storage>(state: &AppState<S>, by: GroupBy, key: &str) -> String {
    let reference = &state.config.reference;
    match by {
        GroupBy::Department if key == "(none)" => "未派遣".into(),
        GroupBy::Department => view::dept_name(reference, key),
        GroupBy::Category => view::major_name(reference, key),
        GroupBy::Grid => key.to_owned(),
    }
}

/// `GET /console/dashboard`.
pub async fn page<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Query(p): Query<DashParams>,
) -> Result<Page, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    if !matches!(
        signed.user.role,
        ConsoleRole::Dispatcher | ConsoleRole::Leader
    ) {
        return Err(ConsoleError::Forbidden("指标仅供调度员和领导查看。".into()));
    }
    let now = now_ms();
    let day_ms = 24 * 3_600_000;
    let to = match p.to.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => {
            view::parse_day(s).ok_or_else(|| ConsoleError::bad("截止日期", "应为 YYYY-MM-DD"))?
                + day_ms
        }
        None => view::parse_day(&view::day(now)).unwrap_or(now) + day_ms,
    };
    let from = match p.from.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => {
            view::parse_day(s).ok_or_else(|| ConsoleError::bad("起始日期", "应为 YYYY-MM-DD"))?
        }
        None => to - 30 * day_ms,
    };
    if to <= from {
        return Err(ConsoleError::bad("截止日期", "应晚于起始日期"));
    }
    let by = match p.by.as_deref() {
        None | Some("") | Some("grid") => GroupBy::Grid,
        Some("department") => GroupBy::Department,
        Some("category") => GroupBy::Category,
        Some(other) => return Err(ConsoleError::bad("分组", format!("未知的分组 {other}"))),
    };
    let towns = signed.user.towns.clone();
    let (groups, total) = crate::indicators::for_scope(&state, from, to, by, &|g| {
        GridCode::parse(g).is_ok_and(|g| towns.iter().any(|t| t.contains(&g)))
    })
    .await?;
    let wall = p.wall.is_some();
    let body = dashboard_body(&state, &signed, &groups, &total, by, from, to, wall);
    Ok(if wall {
        Page(html! {
            (DOCTYPE)
            html lang="zh-CN" {
                head {
                    meta charset="utf-8";
                    meta http-equiv="refresh" content=(WALL_REFRESH_S);
                    title { "指标大屏" }
                    link rel="stylesheet" href="/console/console.css";
                }
                body.wall { main {
                    h1 { "网格化服务管理 · 指标大屏 " span.meta { "更新于 " (view::when(Some(now))) } }
                    (body)
                } }
            }
        })
    } else {
        view::page(&signed, Nav::Dashboard, "指标", body)
    })
}

#[allow(clippy::too_many_arguments)]
fn dashboard_body<S: Storage>(
    state: &AppState<S>,
    _signed: &SignedIn,
    groups: &[Figures],
    total: &Figures,
    by: GroupBy,
    from: i64,
    to: i64,
    wall: bool,
) -> Markup {
    let label = |f: &Figures| group_label(state, by, &f.key);
    let cases: Vec<(String, f64, String)> = groups
        .iter()
        .map(|f| (label(f), f.cases as f64, f.cases.to_string()))
        .collect();
    let closure: Vec<(String, f64, String)> = groups
        .iter()
        .map(|f| (label(f), f.closure_rate.unwrap_or(0.0), pct(f.closure_rate)))
        .collect();
    let by_name = match by {
        GroupBy::Grid => "grid",
        GroupBy::Department => "department",
        GroupBy::Category => "category",
    };
    let day_ms = 24 * 3_600_000;
    html! {
        @if !wall {
            form.filters method="get" action="/console/dashboard" {
                label { "起始日期" input type="date" name="from" value=(view::day(from)); }
                label { "截止日期" input type="date" name="to" value=(view::day(to - day_ms)); }
                label { "分组" select name="by" {
                    option value="grid" selected[by == GroupBy::Grid] { "按网格" }
                    option value="department" selected[by == GroupBy::Department] { "按部门" }
                    option value="category" selected[by == GroupBy::Category] { "按类别" }
                } }
                button type="submit" { "查看" }
                a.button href=(format!("/console/dashboard?wall=1&by={by_name}&from={}&to={}", view::day(from), view::day(to - day_ms))) target="_blank" { "大屏模式" }
            }
        }
        div.kpis {
            div.kpi { div.v data-kpi="cases" { (total.cases) } div.k { "案件总数" } }
            div.kpi { div.v data-kpi="closure" { (pct(total.closure_rate)) } div.k { "结案率" } }
            div.kpi { div.v { (pct(total.on_time_rate)) } div.k { "按期办结率" } }
            div.kpi { div.v { (pct(total.satisfaction_rate)) } div.k { "满意率" } }
            div.kpi { div.v { (pct(total.self_closed_rate)) } div.k { "自办自结率" } }
            div.kpi { div.v { (pct(total.rework_rate)) } div.k { "返工率" } }
            div.kpi { div.v data-kpi="overdue" { (total.overdue) } div.k { "超期未办结" } }
            div.kpi { div.v { (total.supervised) } div.k { "督办件" } }
        }
        div.grid2 {
            div.card { (bars("案件数", &cases)) }
            div.card { (bars("结案率", &closure)) }
        }
        table {
            thead { tr {
                th { "分组" } th { "案件" } th { "结案率" } th { "按期率" } th { "返工率" }
                th { "延期率" } th { "满意率" } th { "平均办理（小时）" } th { "超期" } th { "督办" } th { "时间存疑" }
            } }
            tbody {
                @for f in groups.iter().chain(std::iter::once(total)) {
                    tr {
                        td { @if f.key == "total" { strong { "合计" } } @else { (label(f)) } }
                        td { (f.cases) } td { (pct(f.closure_rate)) } td { (pct(f.on_time_rate)) }
                        td { (pct(f.rework_rate)) } td { (pct(f.extension_rate)) } td { (pct(f.satisfaction_rate)) }
                        td { (f.avg_handling_hours.map_or_else(|| "—".into(), |h| format!("{h:.1}"))) }
                        td { (f.overdue) } td { (f.supervised) } td { (f.flagged_time) }
                    }
                }
            }
        }
    }
}
