//! The console's page layout, stylesheet and the Chinese labels the pages share.

use axum::http::header;
use axum::response::IntoResponse;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use gridsync_core::workflow::{Action, Reference, Status};

use super::session::{CSRF_FIELD, SignedIn};
use crate::storage::console::ConsoleRole;

/// The stylesheet (plain CSS; laid out for 1366×768 up to a 1920×1080 wall screen).
const CSS: &str = include_str!("console.css");

/// `GET /console/console.css`.
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
}

/// A whole HTML page as an answer.
#[derive(Debug, Clone)]
pub struct Page(pub Markup);

impl IntoResponse for Page {
    fn into_response(self) -> axum::response::Response {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            self.0.into_string(),
        )
            .into_response()
    }
}

impl Page {
    /// The page's HTML.
    pub fn into_string(self) -> String {
        self.0.into_string()
    }
}

/// What a page is for, so the navigation can mark it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The case inbox.
    Inbox,
    /// The household archive.
    Archive,
    /// The indicators.
    Dashboard,
    /// Automatic routing.
    Routes,
    /// Devices.
    Devices,
    /// Intake keys.
    Keys,
    /// Accounts.
    Users,
    /// The audit log.
    Audit,
}

/// A whole page for a signed-in person: navigation for their role, the sign-out form, `body`.
pub fn page(signed: &SignedIn, nav: Nav, title: &str, body: Markup) -> Page {
    let role = signed.user.role;
    let casework = role != ConsoleRole::Operator;
    let reads_all = matches!(role, ConsoleRole::Dispatcher | ConsoleRole::Leader);
    let admin = role == ConsoleRole::Operator;
    let routes = matches!(role, ConsoleRole::Dispatcher | ConsoleRole::Operator);
    let item = |n: Nav, href: &str, label: &str| {
        html! { a href=(href) class=(if n == nav { "on" } else { "" }) { (label) } }
    };
    Page(html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · 网格化服务管理平台" }
                link rel="stylesheet" href="/console/console.css";
            }
            body {
                header.top {
                    span.brand { "网格化服务管理 · 调度中心" }
                    nav {
                        @if casework { (item(Nav::Inbox, "/console/", "案件")) }
                        @if reads_all {
                            (item(Nav::Archive, "/console/archive", "一户一档"))
                            (item(Nav::Dashboard, "/console/dashboard", "指标"))
                        }
                        @if routes { (item(Nav::Routes, "/console/routes", "自动流转")) }
                        @if admin {
                            (item(Nav::Devices, "/console/devices", "设备"))
                            (item(Nav::Keys, "/console/keys", "接入密钥"))
                            (item(Nav::Users, "/console/users", "账号"))
                            (item(Nav::Audit, "/console/audit", "审计"))
                        }
                    }
                    span.who {
                        (signed.user.name) "（" (role.label())
                        @if let Some(d) = &signed.user.dept { " · " (d) }
                        "）"
                    }
                    form.logout method="post" action="/console/logout" {
                        (csrf_field(signed))
                        button type="submit" { "退出" }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    })
}

/// The hidden CSRF field every form of a signed-in page carries.
pub fn csrf_field(signed: &SignedIn) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(signed.csrf); }
}

/// A page with only a message (errors, the sign-in page's frame).
pub fn message_page(title: &str, text: &str) -> Page {
    bare_page(
        title,
        html! {
            p.message { (text) }
            p { a href="/console/" { "返回首页" } }
        },
    )
}

/// A page without navigation (before signing in, errors).
pub fn bare_page(title: &str, body: Markup) -> Page {
    Page(html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · 网格化服务管理平台" }
                link rel="stylesheet" href="/console/console.css";
            }
            body.bare { main { h1 { (title) } (body) } }
        }
    })
}

/// China Standard Time (UTC+8), as every date in the console is shown.
const CST_MS: i64 = 8 * 3_600_000;

/// `2026-12-02 09:30` in China time; `—` for none.
pub fn when(ms: Option<i64>) -> String {
    let Some(ms) = ms.filter(|m| *m > 0) else {
        return "—".into();
    };
    let secs = (ms + CST_MS).div_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "—".into(),
    }
}

/// `2026-12-02` (China time) of an instant.
pub fn day(ms: i64) -> String {
    when(Some(ms)).chars().take(10).collect()
}

/// The instant (ms) a `YYYY-MM-DD` day starts in China time.
pub fn parse_day(s: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(s.trim(), &format).ok()?;
    let midnight = date.midnight().assume_utc().unix_timestamp() * 1000;
    Some(midnight - CST_MS)
}

/// A status in Chinese.
pub fn status_label(s: &str) -> &'static str {
    match s.parse::<StatusName>().map(|s| s.0) {
        Ok(Status::Draft) => "草稿",
        Ok(Status::Reported) => "待受理",
        Ok(Status::SelfHandling) => "自办中",
        Ok(Status::Verifying) => "核实中",
        Ok(Status::Registered) => "已立案",
        Ok(Status::Rejected) => "不予立案",
        Ok(Status::Merged) => "已合并",
        Ok(Status::Dispatched) => "已派遣",
        Ok(Status::Returned) => "已回退",
        Ok(Status::InProgress) => "办理中",
        Ok(Status::Suspended) => "挂账",
        Ok(Status::Handled) => "已办结待核查",
        Ok(Status::Checking) => "核查中",
        Ok(Status::Closed) => "已结案",
        Ok(Status::FollowedUp) => "已回访",
        Ok(Status::Archived) => "已归档",
        Err(()) => "未知",
    }
}

/// A status's stable name parsed back.
struct StatusName(Status);

impl std::str::FromStr for StatusName {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        gridsync_core::workflow::STATUSES
            .into_iter()
            .find(|x| x.as_str() == s)
            .map(StatusName)
            .ok_or(())
    }
}

/// An action in Chinese (buttons and the timeline).
pub fn action_label(a: Action) -> &'static str {
    match a {
        Action::Report => "上报",
        Action::SelfHandle => "自行处置",
        Action::CloseSelf => "自办结案",
        Action::Verify => "核实",
        Action::Register => "立案",
        Action::Reject => "不予立案",
        Action::Merge => "合并重复",
        Action::Dispatch => "派遣",
        Action::Return => "回退",
        Action::Sign => "签收",
        Action::RequestExtension => "申请延期",
        Action::ApproveExtension => "批准延期",
        Action::DenyExtension => "驳回延期",
        Action::Suspend => "挂账",
        Action::Resume => "恢复办理",
        Action::Handle => "办结反馈",
        Action::StartCheck => "开始核查",
        Action::PassCheck => "核查通过",
        Action::FailCheck => "核查不通过",
        Action::FollowUp => "回访",
        Action::Archive => "归档",
        Action::Reopen => "重新办理",
        Action::Supervise => "督办",
    }
}

/// An event kind (an action's stable name) in Chinese.
pub fn kind_label(kind: &str) -> String {
    kind.parse::<Action>()
        .map(|a| action_label(a).to_owned())
        .unwrap_or_else(|_| kind.to_owned())
}

/// Where a case came from, in Chinese.
pub fn source_label(source: gridsync_core::records::CaseSource) -> &'static str {
    use gridsync_core::records::CaseSource;
    match source {
        CaseSource::Inspection => "巡查发现",
        CaseSource::Visit => "走访发现",
        CaseSource::Resident => "居民反映",
        CaseSource::Hotline12345 => "12345 热线",
        CaseSource::Assigned => "上级交办",
    }
}

/// A workflow role in Chinese.
pub fn role_label(role: &str) -> &'static str {
    match role {
        "worker" => "网格员",
        "dispatcher" => "调度员",
        "department" => "部门",
        "leader" => "领导",
        "intake" => "热线接入",
        _ => "—",
    }
}

/// A department's name (its code when the reference does not know it).
pub fn dept_name(reference: &Reference, code: &str) -> String {
    reference
        .departments
        .iter()
        .find(|d| d.code == code)
        .map_or_else(|| code.to_owned(), |d| d.name.clone())
}

/// A 大类's name, from any of its 小类.
pub fn major_name(reference: &Reference, major: &str) -> String {
    reference
        .categories
        .iter()
        .find(|c| c.code.starts_with(major))
        .map_or_else(|| major.to_owned(), |c| c.major_name.clone())
}

/// A 小类's name.
pub fn minor_name(reference: &Reference, code: &str) -> String {
    reference
        .category(code)
        .map_or_else(|| code.to_owned(), |c| c.name.clone())
}

/// Raw HTML that is known safe (built here, never from input).
pub fn raw(s: String) -> PreEscaped<String> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_times_are_china_time() {
        let start = parse_day("2026-12-02").expect("day");
        assert_eq!(when(Some(start)), "2026-12-02 00:00");
        assert_eq!(day(start + 23 * 3_600_000), "2026-12-02");
        assert_eq!(when(None), "—");
        assert!(parse_day("2026-13-01").is_none());
    }

    #[test]
    fn every_status_and_action_has_a_label() {
        for s in gridsync_core::workflow::STATUSES {
            assert_ne!(status_label(s.as_str()), "未知", "{s:?}");
        }
        assert_eq!(kind_label("dispatch"), "派遣");
        assert_eq!(kind_label("something_new"), "something_new");
    }
}
