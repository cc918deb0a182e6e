//! The dispatch centre's console at `/console/`: server-rendered pages (no script needed) for
//! dispatchers, department clerks, leaders and operators, signed in as people.
//!
//! - [`session`]: accounts, passwords, sessions, CSRF, lockout, audit.
//! - [`act`]: a person's case actions, written as that person's replica through the same
//!   merge path as a phone's.
//! - [`pages`]: the inbox and the case detail; [`archive`]: the household archive;
//!   [`dashboard`]: the indicators and the wall screen; [`admin`]: devices, intake keys,
//!   accounts, the audit log and the automatic-routing rules.
//! - [`view`]: the page layout and the labels shared by the pages.
//!
//! **Invariant:** every page checks the signed-in person's role and towns (a clerk: the cases
//! their department holds now) before it reads a record, and every form carries the session's
//! CSRF token; a case page a person may not see answers as if the case did not exist.

pub mod act;
pub mod admin;
pub mod archive;
pub mod dashboard;
pub mod pages;
pub mod session;
pub mod view;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use session::ConsoleConfig;

use crate::storage::StorageError;
use crate::{AppState, Storage};

/// Why a console request was refused; each renders as a page with its status.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No session (or one that does not exist any more): sign in.
    #[error("not signed in")]
    NotSignedIn,
    /// The session ran out (its cookie is cleared; `secure` as the cookie was set).
    #[error("the session has expired")]
    SessionExpired {
        /// Whether the cookie is `Secure`.
        secure: bool,
    },
    /// The form did not carry this session's CSRF token, or came from another site.
    #[error("the form is not from this session (CSRF check failed)")]
    Csrf,
    /// The person's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing here (or nothing this person may see).
    #[error("{0}")]
    NotFound(String),
    /// A form field is missing or wrong.
    #[error("{field}: {reason}")]
    BadForm {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The workflow or the merge refused the action; nothing was written.
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ConsoleError {
    /// A form field error.
    pub fn bad(field: &str, reason: impl Into<String>) -> Self {
        ConsoleError::BadForm {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            ConsoleError::NotSignedIn => {
                return Redirect::to("/console/login").into_response();
            }
            ConsoleError::SessionExpired { secure } => {
                let mut r = Redirect::to("/console/login?expired=1").into_response();
                let cleared = session::cleared_cookie(&ConsoleConfig {
                    secure_cookie: *secure,
                    ..ConsoleConfig::default()
                });
                if let Ok(v) = HeaderValue::from_str(&cleared) {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                return r;
            }
            ConsoleError::Csrf => (
                StatusCode::FORBIDDEN,
                "表单已失效",
                "表单校验失败（CSRF）：请回到上一页刷新后重试。".to_owned(),
            ),
            ConsoleError::Forbidden(why) => (StatusCode::FORBIDDEN, "无权操作", why.clone()),
            ConsoleError::NotFound(what) => (StatusCode::NOT_FOUND, "未找到", what.clone()),
            ConsoleError::BadForm { field, reason } => (
                StatusCode::BAD_REQUEST,
                "填写有误",
                format!("{field}：{reason}"),
            ),
            ConsoleError::Refused(why) => (StatusCode::CONFLICT, "操作未执行", why.clone()),
            ConsoleError::Storage(e) => {
                tracing::error!(error = %e, "console storage error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "服务器错误",
                    "服务器暂时无法完成请求，请稍后重试。".to_owned(),
                )
            }
        };
        (status, view::message_page(title, &text)).into_response()
    }
}

/// A urlencoded form body as its pairs in order (repeated fields, such as several
/// co-departments, are kept).
#[derive(Debug, Default, Clone)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// Parses a form body; a body that is not a form is a form error.
    pub fn parse(body: &[u8]) -> Result<Self, ConsoleError> {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .map(FormData)
            .map_err(|e| ConsoleError::bad("表单", e.to_string()))
    }

    /// The first value of `name`, trimmed; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every non-empty value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    /// A required value of `name`.
    pub fn need(&self, name: &str, label: &str) -> Result<&str, ConsoleError> {
        self.get(name)
            .ok_or_else(|| ConsoleError::bad(label, "必须填写"))
    }
}

/// The console's routes (merged into the server's router).
pub fn routes<S: Storage>() -> Router<AppState<S>> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(pages::inbox::<S>))
        .route(
            "/console/login",
            get(pages::login_page).post(pages::login::<S>),
        )
        .route("/console/logout", post(pages::logout::<S>))
        .route("/console/cases/{id}", get(pages::case::<S>))
        .route("/console/cases/{id}/act", post(act::act_form::<S>))
        .route("/console/cases/{id}/resolve", post(act::resolve::<S>))
        .route(
            "/console/cases/{id}/photos",
            post(act::add_photo::<S>).layer(axum::extract::DefaultBodyLimit::max(
                act::MAX_UPLOAD + 64 * 1024,
            )),
        )
        .route(
            "/console/cases/{id}/photos/{sha}",
            get(pages::case_photo::<S>),
        )
        .route("/console/archive", get(archive::search::<S>))
        .route("/console/households/{id}", get(archive::household::<S>))
        .route("/console/dashboard", get(dashboard::page::<S>))
        .route("/console/devices", get(admin::devices::<S>))
        .route("/console/devices/enroll", post(admin::enroll::<S>))
        .route("/console/devices/{id}/revoke", post(admin::revoke::<S>))
        .route(
            "/console/keys",
            get(admin::keys::<S>).post(admin::new_key::<S>),
        )
        .route(
            "/console/users",
            get(admin::users::<S>).post(admin::user_action::<S>),
        )
        .route("/console/audit", get(admin::audit_page::<S>))
        .route(
            "/console/routes",
            get(admin::routes_page::<S>).post(admin::set_route::<S>),
        )
        .route("/console/console.css", get(view::stylesheet))
        .layer(axum::middleware::map_response(page_headers))
}

/// Headers every console answer carries: never framed by another site, never cached by a
/// shared cache, no referrer leaking case ids, no type sniffing.
async fn page_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}
