//! HTTP transport for the sync engine: one `reqwest` client (rustls with the ring provider,
//! one pooled connection), timeouts, and exponential backoff with full jitter on failures that
//! may pass (connection errors, timeouts, 5xx, 503 with Retry-After). A 4xx is final.

use std::time::Duration;

use gridsync_proto::{
    CONTENT_TYPE, EnrollRequest, EnrollResponse, ErrorBody, SyncRequest, SyncResponse,
};
use rand::Rng;

use crate::store::{Store, StoreError};
use crate::sync::{RoundReport, SyncError, SyncSession};

/// Why talking to the server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with a typed error (4xx, or 5xx after every retry).
    #[error("server refused ({status}): {code}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The error code from the JSON body.
        code: String,
        /// Its message.
        message: String,
    },
    /// The server could not be reached (after every retry).
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// This phone is not enrolled yet.
    #[error(
        "this phone is not enrolled: run `gridsync-field enroll --server URL --code CODE` first"
    )]
    NotEnrolled,
    /// The local sync engine failed.
    #[error(transparent)]
    Sync(Box<SyncError>),
    /// The local store failed.
    #[error(transparent)]
    Store(Box<StoreError>),
    /// The server's answer did not decode.
    #[error("bad response: {0}")]
    BadResponse(String),
    /// The sync stopped making progress (rounds in a row that moved nothing).
    #[error("sync stopped making progress after {0} round trips; it will continue next time")]
    TooManyRounds(usize),
}

impl From<SyncError> for ClientError {
    fn from(e: SyncError) -> Self {
        ClientError::Sync(Box::new(e))
    }
}

impl From<StoreError> for ClientError {
    fn from(e: StoreError) -> Self {
        ClientError::Store(Box::new(e))
    }
}

/// How failed requests are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// First backoff.
    pub base: Duration,
    /// Longest backoff.
    pub cap: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Totals of one [`SyncClient::sync`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// Request/response round trips.
    pub round_trips: usize,
    /// Request bytes sent (bodies).
    pub bytes_sent: usize,
    /// Response bytes received (bodies).
    pub bytes_received: usize,
    /// Documents whose changes the server stored.
    pub acked: usize,
    /// Documents that received changes.
    pub pulled_docs: usize,
    /// Changes received.
    pub pulled_changes: usize,
    /// Documents refused, as `(doc, code, message)`.
    pub rejected: Vec<(String, String, String)>,
    /// Pulled documents this build could not read, as `(doc, reason)`.
    pub quarantined: Vec<(String, String)>,
    /// Quarantined documents applied at the start of this sync (a newer build reads them).
    pub unquarantined: usize,
}

/// Makes ring the process's rustls crypto provider (reqwest is built without one).
pub fn install_crypto_provider() {
    // Installing twice is an error we do not care about: someone already chose ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A connection to one gridsync server.
#[derive(Debug, Clone)]
pub struct SyncClient {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) retry: RetryPolicy,
}

pub(crate) const TOKEN_KEY: &str = "device_token";

/// Most round trips one [`SyncClient::sync`] makes (a 40,000-document first sync takes ~40).
pub const MAX_ROUNDS_PER_SYNC: usize = 1_000;
const SERVER_KEY: &str = "server_url";

impl SyncClient {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, retry: RetryPolicy) -> Result<Self, ClientError> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(retry.timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            retry,
        })
    }

    /// Trades an enrollment code for a device token and keeps it (and the server URL) in the
    /// store.
    pub async fn enroll(&self, store: &Store, code: &str) -> Result<EnrollResponse, ClientError> {
        let body = serde_json::to_vec(&EnrollRequest {
            code: code.to_owned(),
            device: store.device(),
        })
        .map_err(|e| ClientError::BadResponse(e.to_string()))?;
        let bytes = self
            .post("/v1/enroll", None, "application/json", body)
            .await?;
        let resp: EnrollResponse =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))?;
        store.set_meta(TOKEN_KEY, &resp.token).await?;
        store.set_meta(SERVER_KEY, &self.base).await?;
        store.set_meta("role", &resp.role).await?;
        store.set_meta("scopes", &resp.scopes.join(",")).await?;
        store
            .set_meta("department", resp.department.as_deref().unwrap_or(""))
            .await?;
        Ok(resp)
    }

    /// The server URL a store was enrolled with.
    pub async fn enrolled_server(store: &Store) -> Result<Option<String>, ClientError> {
        Ok(store.meta(SERVER_KEY).await?)
    }

    /// Runs rounds until nothing is left to push or pull. Any backlog drains in slices over
    /// as many rounds as it takes while rounds make progress; `max_rounds` bounds only rounds
    /// in a row that moved nothing (then the sync stops and continues next time).
    pub async fn sync(&self, store: &Store, max_rounds: usize) -> Result<SyncReport, ClientError> {
        self.sync_observed(store, max_rounds, &mut |_, _| {}).await
    }

    /// [`SyncClient::sync`], calling `observe` after every round with the report so far and
    /// the documents that round changed (for progress bars and "something changed" events).
    pub async fn sync_observed(
        &self,
        store: &Store,
        max_rounds: usize,
        observe: &mut (dyn FnMut(&SyncReport, &[gridsync_proto::DocId]) + Send),
    ) -> Result<SyncReport, ClientError> {
        let token = store
            .meta(TOKEN_KEY)
            .await?
            .ok_or(ClientError::NotEnrolled)?;
        let mut session = SyncSession::new(store.clone());
        let mut report = SyncReport {
            unquarantined: session.retry_quarantine(false).await?,
            ..SyncReport::default()
        };
        let mut idle = 0;
        let mut retired = false;
        // A ceiling on all rounds as well, so a sync that keeps "progressing" without ever
        // settling (a bug, or a hostile server) still ends.
        while idle < max_rounds && report.round_trips < MAX_ROUNDS_PER_SYNC {
            let (req, outbox) = session.build_request().await?;
            let cursor_before = req.cursor.clone();
            let round = match self
                .round(&mut session, &token, &req, &outbox, &mut report)
                .await
            {
                Err(ClientError::Server { code, .. }) if code == "actor_retired" && !retired => {
                    // A copy of this store wrote under the same actor: continue as a fresh one.
                    session.retire_actor().await?;
                    retired = true;
                    continue;
                }
                other => other?,
            };
            let cursor_after = store
                .meta(crate::store::CURSOR_KEY)
                .await?
                .unwrap_or_default();
            let progressed = round.acked > 0
                || round.cleaned > 0
                || round.pulled_changes > 0
                || !round.rejected.is_empty()
                || !round.quarantined.is_empty()
                || hex::encode(&cursor_before) != cursor_after;
            idle = if progressed { 0 } else { idle + 1 };
            report.acked += round.acked;
            report.pulled_docs += round.pulled_docs;
            report.pulled_changes += round.pulled_changes;
            report.rejected.extend(
                round
                    .rejected
                    .into_iter()
                    .map(|(d, c, m)| (d.to_string(), c, m)),
            );
            report.quarantined.extend(
                round
                    .quarantined
                    .into_iter()
                    .map(|(d, why)| (d.to_string(), why)),
            );
            observe(&report, &round.pulled);
            if !round.more {
                return Ok(report);
            }
        }
        Err(ClientError::TooManyRounds(report.round_trips))
    }

    async fn round(
        &self,
        session: &mut SyncSession,
        token: &str,
        req: &SyncRequest,
        outbox: &crate::sync::Outbox,
        report: &mut SyncReport,
    ) -> Result<RoundReport, ClientError> {
        let body = req.encode();
        report.bytes_sent += body.len();
        let bytes = self
            .post("/v1/sync", Some(token), CONTENT_TYPE, body)
            .await?;
        report.bytes_received += bytes.len();
        report.round_trips += 1;
        let resp =
            SyncResponse::decode(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))?;
        // Boxed: the engine's future is large, and callers may poll on a small stack.
        Ok(Box::pin(session.apply_response(outbox, resp)).await?)
    }

    /// POSTs with retries; returns the body of a 2xx answer.
    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut last = ClientError::Unreachable("no attempt made".into());
        for attempt in 0..self.retry.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt, &last)).await;
            }
            let mut req = self
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone());
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = ClientError::Unreachable(e.to_string());
                    continue;
                }
            };
            let status = resp.status();
            let bytes = match resp.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    last = ClientError::Unreachable(e.to_string());
                    continue;
                }
            };
            if status.is_success() {
                return Ok(bytes);
            }
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => (b.error.code, b.error.message),
                Err(_) => (
                    status.as_str().to_owned(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ),
            };
            last = ClientError::Server {
                status: status.as_u16(),
                code,
                message,
            };
            let retryable =
                status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            if !retryable {
                break;
            }
        }
        Err(last)
    }

    pub(crate) fn backoff(&self, attempt: u32, last: &ClientError) -> Duration {
        // Full jitter: a storm of phones reconnecting at once spreads itself out.
        let exp = self.retry.base.saturating_mul(1u32 << attempt.min(16));
        let ceiling = exp.min(self.retry.cap);
        let jittered =
            Duration::from_millis(rand::rng().random_range(0..=ceiling.as_millis() as u64));
        if matches!(last, ClientError::Server { status: 503, .. }) {
            jittered.max(Duration::from_secs(1).min(self.retry.cap))
        } else {
            jittered
        }
    }
}

impl SyncClient {
    /// Waits (long poll, at most `wait`, 1 to 60 s) until the server has something for this
    /// phone to pull: `true` means run [`SyncClient::sync`] now, `false` that the wait ran out.
    /// How an online phone hears of a dispatcher's or a colleague's work within a second.
    pub async fn wait_for_news(&self, store: &Store, wait: Duration) -> Result<bool, ClientError> {
        let token = store
            .meta(TOKEN_KEY)
            .await?
            .ok_or(ClientError::NotEnrolled)?;
        let cursor = store
            .meta(crate::store::CURSOR_KEY)
            .await?
            .unwrap_or_default();
        let secs = wait.as_secs().clamp(1, 60);
        let resp = self
            .http
            // Hex and digits only: nothing to escape.
            .get(format!(
                "{}/v1/sync/live?cursor={cursor}&actor={}&wait={secs}",
                self.base,
                store.actor_id().to_hex_string()
            ))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(secs + 15))
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(crate::upload::server_error(resp).await);
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        let answer: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ClientError::BadResponse(format!("live answer: {e}")))?;
        answer["news"]
            .as_bool()
            .ok_or_else(|| ClientError::BadResponse(format!("live answer without news: {answer}")))
    }
}
