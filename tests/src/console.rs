//! A browser-less console client for tests and the benchmark: signs in over HTTP, keeps the
//! session cookie, reads each page's CSRF token and posts forms, without following
//! redirects (so a test sees every 303 and where it points).

use anyhow::{Context, Result};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use gridsync_proto::GridCode;
use gridsync_server::Storage;
use gridsync_server::console::admin::{NewUser, add_user};
use gridsync_server::storage::console::ConsoleRole;

/// One answer: status, where a redirect points, the body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// `Location`, for a redirect.
    pub location: Option<String>,
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"_csrf\" value=\"")? + "name=\"_csrf\" value=\"".len();
        let rest = &self.body[at..];
        Some(rest[..rest.find('"')?].to_owned())
    }
}

/// A signed-in (or not yet) console session.
pub struct ConsoleClient {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl ConsoleClient {
    /// A client of the server at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Result<Self> {
        gridsync_core::client::install_crypto_provider();
        Ok(Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            cookie: None,
        })
    }

    /// The session cookie (`name=value`), once signed in.
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// Uses another session's cookie (or none).
    pub fn set_cookie(&mut self, cookie: Option<String>) {
        self.cookie = cookie;
    }

    async fn answer(&mut self, resp: reqwest::Response) -> Result<Answer> {
        let status = resp.status();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        for c in resp.headers().get_all(SET_COOKIE) {
            let c = c.to_str().unwrap_or_default();
            let pair = c.split(';').next().unwrap_or_default().trim().to_owned();
            if pair.ends_with('=') {
                self.cookie = None;
            } else if pair.starts_with("gridsync_console=") {
                self.cookie = Some(pair);
            }
        }
        Ok(Answer {
            status,
            location,
            body: resp.text().await?,
        })
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<Answer> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        let resp = req.send().await?;
        self.answer(resp).await
    }

    /// `POST path` with a urlencoded form.
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Result<Answer> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(serde_urlencoded::to_string(form)?);
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        let resp = req.send().await?;
        self.answer(resp).await
    }

    /// Signs in; returns the answer (303 to `/console/` when it worked).
    pub async fn sign_in(&mut self, login: &str, password: &str) -> Result<Answer> {
        self.post(
            "/console/login",
            &[("login", login), ("password", password)],
        )
        .await
    }

    /// Posts a form of the page at `page` (its CSRF token added), e.g. a case action.
    pub async fn submit(
        &mut self,
        page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> Result<Answer> {
        let csrf = self
            .get(page)
            .await?
            .csrf()
            .with_context(|| format!("{page} has no form with a CSRF token"))?;
        let mut form: Vec<(&str, &str)> = vec![("_csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.post(action, &form).await
    }
}

/// The password every test account gets.
pub const TEST_PASSWORD: &str = "网格调度-test-2026";

/// Adds a console account with [`TEST_PASSWORD`].
pub async fn test_user<S: Storage>(
    storage: &S,
    login: &str,
    name: &str,
    role: ConsoleRole,
    dept: Option<&str>,
    towns: &[GridCode],
) -> Result<()> {
    add_user(
        storage,
        &gridsync_core::workflow::Reference::builtin(),
        NewUser {
            login,
            name,
            role,
            dept,
            towns,
            password: TEST_PASSWORD,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("adding {login}: {e}"))?;
    Ok(())
}
