//! The app API's one error type: what kind of failure it is (so an app can react) and a
//! message a person can act on, naming the field and the problem where there is one.

use crate::client::ClientError;
use crate::document::DocError;
use crate::store::StoreError;

/// Why an app call failed. Every variant names what was wrong; a failed call changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// A value the caller gave is not acceptable (`field` is the input's name).
    #[error("{field}: {problem}")]
    Invalid {
        /// The input or record field, e.g. `relation` or `members.<id>.id_number`.
        field: String,
        /// What is wrong, and what would be accepted.
        problem: String,
    },
    /// The record or entry asked for is not on this phone.
    #[error("{0}")]
    NotFound(String),
    /// The rules refuse this: wrong role, wrong state, not the entry's author.
    #[error("{0}")]
    NotAllowed(String),
    /// The phone is not set up for this yet (no worker name, not enrolled).
    #[error("{0}")]
    NotSetUp(String),
    /// Another open replica holds the store file.
    #[error("{0}")]
    StoreInUse(String),
    /// The server could not be reached, or refused the request.
    #[error(transparent)]
    Network(Box<ClientError>),
    /// The local store failed (disk, database, a damaged file).
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl AppError {
    /// An invalid input value.
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        AppError::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The stable kind name (`invalid`, `not_found`, `not_allowed`, `not_set_up`,
    /// `store_in_use`, `network`, `store`), as the bindings and `--json` errors carry it.
    pub fn kind(&self) -> &'static str {
        match self {
            AppError::Invalid { .. } => "invalid",
            AppError::NotFound(_) => "not_found",
            AppError::NotAllowed(_) => "not_allowed",
            AppError::NotSetUp(_) => "not_set_up",
            AppError::StoreInUse(_) => "store_in_use",
            AppError::Network(_) => "network",
            AppError::Store(_) => "store",
        }
    }
}

impl From<crate::vocab::VocabError> for AppError {
    fn from(e: crate::vocab::VocabError) -> Self {
        AppError::Invalid {
            field: e.field,
            problem: e.problem,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Doc(DocError::Invalid { source, .. }) => {
                let mut all = source.0.iter();
                let Some(first) = all.next() else {
                    return AppError::invalid("record", "invalid");
                };
                let mut problem = first.problem.to_string();
                for other in all {
                    problem += &format!("; {other}");
                }
                AppError::Invalid {
                    field: first.field.clone(),
                    problem,
                }
            }
            StoreError::Doc(d @ DocError::NotAllowed(_)) => AppError::NotAllowed(d.to_string()),
            StoreError::Doc(d @ DocError::WrongType { .. }) => AppError::NotFound(d.to_string()),
            StoreError::Workflow(w) => AppError::NotAllowed(w.to_string()),
            StoreError::NotFound(id) => AppError::NotFound(format!("no record {id} on this phone")),
            StoreError::NoSuchEntry(m) => AppError::NotFound(m),
            StoreError::Photo(p) => AppError::invalid("photo", p.to_string()),
            other => AppError::Store(Box::new(other)),
        }
    }
}

impl From<ClientError> for AppError {
    /// What the app should do differs by cause: enroll again (revoked or unknown device),
    /// tell the person (the server refused this), look at the phone (its store failed), or
    /// retry later (no link, server busy): only the last is `network`.
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Store(s) => (*s).into(),
            ClientError::Sync(s) => match *s {
                crate::sync::SyncError::Store(st) => st.into(),
                other => AppError::Store(Box::new(StoreError::Corrupt(other.to_string()))),
            },
            ClientError::NotEnrolled => AppError::NotSetUp(NOT_ENROLLED.into()),
            ClientError::Server {
                status: 401 | 403,
                ref code,
                ..
            } if matches!(
                code.as_str(),
                "device_revoked" | "unauthorized" | "unknown_device"
            ) =>
            {
                AppError::NotSetUp(format!(
                    "{e}; this phone must be enrolled again (ask the operator for a code)"
                ))
            }
            ClientError::Server { status, .. }
                if (400..500).contains(&status) && status != 408 && status != 429 =>
            {
                AppError::NotAllowed(e.to_string())
            }
            other => AppError::Network(Box::new(other)),
        }
    }
}

impl From<crate::workflow::WorkflowError> for AppError {
    fn from(e: crate::workflow::WorkflowError) -> Self {
        AppError::NotAllowed(e.to_string())
    }
}

/// What to do when the phone has no worker yet.
pub(crate) const NOT_INITIALISED: &str = "this phone is not set up: first `gridsync-field init --worker NAME`, then `gridsync-field enroll --server URL --code CODE` with the code the operator gave you";

/// What to do when the phone has a worker but no server.
pub(crate) const NOT_ENROLLED: &str = "this phone is not enrolled: run `gridsync-field enroll --server URL --code CODE` with the code the operator gave you";
