//! Signing in to the console: argon2id password hashes, sessions in an HttpOnly SameSite
//! cookie (only the token's SHA-256 is stored), idle and absolute expiry, a CSRF token per
//! session, lockout after repeated failures, and the audit of each.

use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::HeaderMap;
use gridsync_core::clock::now_ms;

use super::ConsoleError;
use crate::auth::{new_token, secret_hash};
use crate::storage::console::{AuditEntry, ConsoleUser, SessionRow};
use crate::{AppState, Storage};

/// The session cookie's name.
pub const COOKIE: &str = "gridsync_console";

/// The form field every console form carries its session's CSRF token in.
pub const CSRF_FIELD: &str = "_csrf";

/// How sessions and sign-in behave.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// A session ends after this long without a request.
    pub idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub absolute: Duration,
    /// Failed sign-ins in a row that lock an account.
    pub lock_after: i64,
    /// How long a lock lasts.
    pub lock_for: Duration,
    /// Mark the cookie `Secure` (the console is served over HTTPS, e.g. behind a proxy).
    pub secure_cookie: bool,
    /// Cases per inbox page.
    pub page_size: i64,
    /// Take the client's address for the audit log from `X-Forwarded-For` (only behind a
    /// proxy that sets it); otherwise the connection's own peer address is recorded.
    pub trust_forwarded_for: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
            lock_after: 5,
            lock_for: Duration::from_secs(15 * 60),
            secure_cookie: false,
            page_size: 50,
            trust_forwarded_for: false,
        }
    }
}

/// Why a password cannot be used.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < 10 {
        return Err("a password needs at least 10 characters".into());
    }
    if password.chars().all(|c| c.is_ascii_digit()) {
        return Err("a password of digits only is too easy to guess".into());
    }
    Ok(())
}

/// The argon2id PHC string of `password` (fresh random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Password checks running at once: each takes about 19 MiB and a core for tens of
/// milliseconds, so a flood of sign-ins waits here instead of exhausting memory and the
/// blocking pool.
static VERIFYING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// [`verify_password`] on the blocking pool, at most two at once.
pub async fn verify_bounded(password: &str, phc: &str) -> bool {
    let Ok(_permit) = VERIFYING.acquire().await else {
        return false;
    };
    let (pw, phc) = (password.to_owned(), phc.to_owned());
    tokio::task::spawn_blocking(move || verify_password(&pw, &phc))
        .await
        .unwrap_or(false)
}

/// Whether a login is well formed (what [`crate::console::admin::add_user`] accepts): one
/// that is not is never looked up nor written to the audit log as typed.
pub fn valid_login(login: &str) -> bool {
    !login.is_empty()
        && login.len() <= 64
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Whether `password` matches the stored PHC string (a damaged one matches nothing).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to verify against when the login does not exist, so an unknown login takes as long
/// as a wrong password (no telling which logins exist by timing).
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password, never valid").unwrap_or_default())
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The session token in the request's cookie, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` value for a new session.
pub fn session_cookie(token: &str, config: &ConsoleConfig) -> String {
    format!(
        "{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        config.absolute.as_secs(),
        if config.secure_cookie { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie(config: &ConsoleConfig) -> String {
    format!(
        "{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if config.secure_cookie { "; Secure" } else { "" }
    )
}

/// A request's signed-in person and their session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The account.
    pub user: ConsoleUser,
    /// The session's CSRF token, for the forms of the page.
    pub csrf: String,
    /// The stored key of the session.
    pub token_hash: String,
}

/// The header the server itself sets to the connection's peer address (any such header a
/// client sends is removed first, see `crate::http::serve`).
pub const PEER_HEADER: &str = "x-gridsync-peer";

/// The client's address as the audit log records it: the connection's peer, or the first
/// `X-Forwarded-For` entry when the server is configured to trust its proxy.
pub fn client_addr(headers: &HeaderMap, trust_forwarded_for: bool) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or_default().trim().to_owned())
    };
    let forwarded = trust_forwarded_for
        .then(|| header("x-forwarded-for"))
        .flatten();
    forwarded
        .or_else(|| header(PEER_HEADER))
        .unwrap_or_default()
        .chars()
        .take(64)
        .collect()
}

/// Appends one audit entry (a failure to write it fails the request: an action that cannot
/// be audited is not done).
pub async fn audit<S: Storage>(
    state: &AppState<S>,
    headers: &HeaderMap,
    login: &str,
    action: &str,
    target: &str,
    outcome: &str,
    detail: &str,
) -> Result<(), ConsoleError> {
    state
        .storage
        .audit(&AuditEntry {
            at: now_ms(),
            login: login.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: outcome.to_owned(),
            detail: detail.chars().take(500).collect(),
            addr: client_addr(headers, state.config.console.trust_forwarded_for),
        })
        .await?;
    Ok(())
}

/// The session of the request, checked: it exists, has not expired (idle or absolute), and
/// its account is enabled. A valid session is extended by the idle time.
pub async fn signed_in<S: Storage>(
    state: &AppState<S>,
    headers: &HeaderMap,
) -> Result<SignedIn, ConsoleError> {
    let token = cookie_token(headers).ok_or(ConsoleError::NotSignedIn)?;
    let token_hash = secret_hash(&token);
    let session = state
        .storage
        .session(&token_hash)
        .await?
        .ok_or(ConsoleError::NotSignedIn)?;
    let now = now_ms();
    let config = &state.config.console;
    let absolute_end = session.created_at + millis(config.absolute);
    if now >= session.expires_at || now >= absolute_end {
        state.storage.end_session(&token_hash).await?;
        return Err(ConsoleError::SessionExpired {
            secure: config.secure_cookie,
        });
    }
    let user = state
        .storage
        .console_user(&session.login)
        .await?
        .filter(|u| !u.disabled)
        .ok_or(ConsoleError::NotSignedIn)?;
    // Extended at most once a minute (not a write per page view).
    if now - session.seen_at > 60_000 {
        let expires = (now + millis(config.idle)).min(absolute_end);
        state
            .storage
            .touch_session(&token_hash, now, expires)
            .await?;
    }
    Ok(SignedIn {
        user,
        csrf: session.csrf,
        token_hash,
    })
}

/// Checks a form's CSRF token against the session's, and that the request comes from a page
/// of this server when the browser says where it comes from.
pub fn check_csrf(
    signed: &SignedIn,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<(), ConsoleError> {
    check_origin(headers)?;
    match form_token {
        Some(t) if same_secret(t, &signed.csrf) => Ok(()),
        _ => Err(ConsoleError::Csrf),
    }
}

/// Refuses a form posted from another site (the `Origin` a browser sends names it).
pub fn check_origin(headers: &HeaderMap) -> Result<(), ConsoleError> {
    let Some(origin) = headers.get(axum::http::header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin = origin.to_str().unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    if origin_host == host {
        Ok(())
    } else {
        Err(ConsoleError::Csrf)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What a sign-in attempt came to.
#[derive(Debug)]
pub enum SignIn {
    /// Signed in: the new session's token (for the cookie).
    Ok(String),
    /// Refused: a wrong login or password, or an account locked after repeated failures.
    /// The person is told the same for all three (nothing says which logins exist).
    Refused,
}

/// Checks a login and password and opens a session; every attempt is audited.
pub async fn sign_in<S: Storage>(
    state: &AppState<S>,
    headers: &HeaderMap,
    login: &str,
    password: &str,
) -> Result<SignIn, ConsoleError> {
    let config = &state.config.console;
    if !valid_login(login) || password.len() > 1024 {
        let _ = verify_bounded(password.get(..64).unwrap_or_default(), decoy_hash()).await;
        audit(
            state,
            headers,
            "(invalid)",
            "sign_in",
            "",
            "refused",
            "malformed login",
        )
        .await?;
        return Ok(SignIn::Refused);
    }
    let now = now_ms();
    let user = state.storage.console_user(login).await?;
    let Some(user) = user.filter(|u| !u.disabled) else {
        // As long as a real check, and nothing says whether the login exists.
        let _ = verify_bounded(password, decoy_hash()).await;
        audit(
            state,
            headers,
            login,
            "sign_in",
            login,
            "refused",
            "unknown or disabled login",
        )
        .await?;
        return Ok(SignIn::Refused);
    };
    if user.locked_until > now {
        let _ = verify_bounded(password, decoy_hash()).await;
        audit(state, headers, login, "sign_in", login, "refused", "locked").await?;
        return Ok(SignIn::Refused);
    }
    if !verify_bounded(password, &user.password_hash).await {
        let counted = state
            .storage
            .console_sign_in_failed(login, now, config.lock_after, millis(config.lock_for))
            .await?;
        let detail = match counted {
            Some((failures, until)) if until > now => {
                format!("wrong password ({failures} in a row): locked until {until}")
            }
            Some((failures, _)) => format!("wrong password ({failures} in a row)"),
            None => "wrong password".into(),
        };
        audit(state, headers, login, "sign_in", login, "refused", &detail).await?;
        return Ok(SignIn::Refused);
    }
    // Conditional: a right guess racing the failure that locked the account does not get in.
    if !state.storage.console_sign_in_ok(login, now_ms()).await? {
        audit(state, headers, login, "sign_in", login, "refused", "locked").await?;
        return Ok(SignIn::Refused);
    }
    let token = new_token();
    let session = SessionRow {
        login: user.login.clone(),
        csrf: new_token(),
        created_at: now,
        seen_at: now,
        expires_at: now + millis(config.idle),
    };
    state
        .storage
        .create_session(&secret_hash(&token), &session)
        .await?;
    audit(state, headers, login, "sign_in", login, "ok", "").await?;
    Ok(SignIn::Ok(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify_and_weak_ones_are_refused() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("correct horse battery", "not a hash"));
        assert_ne!(
            h,
            hash_password("correct horse battery").expect("hash"),
            "salted"
        );
        assert!(check_password("short").is_err());
        assert!(check_password("1234567890").is_err());
        assert!(check_password("网格调度中心2026").is_ok());
    }

    #[test]
    fn cookies_and_secrets() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=1; gridsync_console=tok; b=2".parse().expect("header"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("tok"));
        let c = session_cookie("tok", &ConsoleConfig::default());
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));
    }

    #[test]
    fn a_form_from_another_site_is_refused() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::HOST,
            "127.0.0.1:8080".parse().expect("h"),
        );
        assert!(
            check_origin(&h).is_ok(),
            "no Origin: a same-site form or a script-less client"
        );
        h.insert(
            axum::http::header::ORIGIN,
            "http://127.0.0.1:8080".parse().expect("h"),
        );
        assert!(check_origin(&h).is_ok());
        h.insert(
            axum::http::header::ORIGIN,
            "https://evil.example".parse().expect("h"),
        );
        assert!(matches!(check_origin(&h), Err(ConsoleError::Csrf)));
    }
}
