//! The daemon's domain error: what went wrong, in terms the API maps to status codes
//! (`rpc::map_error` is the one place that does).

use std::path::PathBuf;

/// Why a daemon operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// No plot has this id.
    #[error("no plot with id {id}")]
    PlotNotFound {
        /// The id as given.
        id: String,
    },
    /// No queued or running job has this id.
    #[error("no plot job with id {id}")]
    JobNotFound {
        /// The id as given.
        id: String,
    },
    /// The thing to create exists already.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What exists.
        what: String,
    },
    /// A request field is malformed or out of range.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The request field.
        field: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The request does not fit the current state.
    #[error("{reason}")]
    FailedPrecondition {
        /// Why.
        reason: String,
    },
    /// The daemon is shutting down and takes no new work.
    #[error("minerd is shutting down")]
    ShuttingDown,
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A daemon-side failure (I/O, a bug); the details go to the log, not to the client.
    #[error("{context}")]
    Internal {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A plot file path is already taken.
    #[error("file {path} already exists")]
    FileExists {
        /// The path.
        path: PathBuf,
    },
}

impl DaemonError {
    /// An internal error with its context and cause.
    pub fn internal(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        DaemonError::Internal {
            context: context.into(),
            source: source.into(),
        }
    }

    /// An invalid-argument error.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        DaemonError::InvalidArgument {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}
