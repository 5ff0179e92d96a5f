//! The daemon's domain error: what went wrong, named by what happened (a plot that is not
//! there, a queue that is full), never by how the API answers it. `rpc::map_error` is the
//! one place that decides the status code of each.

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
    /// An id prefix too short to try, or matching several plots or jobs.
    #[error("invalid {kind}_id: {}", ambiguity(id, *matches, kind))]
    AmbiguousId {
        /// "plot" or "job".
        kind: &'static str,
        /// The id as given.
        id: String,
        /// How many ids it matches (0: too short to look up).
        matches: usize,
    },
    /// A request field is malformed or out of range.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The request field.
        field: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The plot (its path or its id) is registered already.
    #[error("{what} already exists")]
    PlotRegistered {
        /// Which plot.
        what: String,
    },
    /// A plot file path is already taken.
    #[error("file {path} already exists")]
    FileExists {
        /// The path.
        path: PathBuf,
    },
    /// The plot does not fit: in its directory, or in any plot directory.
    #[error("{reason}")]
    NoSpace {
        /// Where and how much.
        reason: String,
    },
    /// As many plot jobs as the daemon queues are queued already.
    #[error("{max} plot jobs are queued already")]
    QueueFull {
        /// The limit.
        max: usize,
    },
    /// A delete would remove a file that is not minerd's to remove (nothing was deleted).
    #[error("{reason}")]
    DeleteRefused {
        /// Which file and why.
        reason: String,
    },
    /// A registered plot's file is gone.
    #[error("plot {id}: file {} is missing", path.display())]
    PlotFileMissing {
        /// The plot id.
        id: String,
        /// Its file.
        path: PathBuf,
    },
    /// A file cannot be opened as a plot.
    #[error("{subject}: {reason}")]
    PlotUnreadable {
        /// Which plot or file, and what was tried.
        subject: String,
        /// Why it failed.
        reason: String,
    },
    /// The daemon is shutting down and takes no new work.
    #[error("minerd is shutting down")]
    ShuttingDown,
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A plot job was cancelled before it finished.
    #[error("plot job cancelled")]
    JobCancelled,
    /// A plot job could not write its plot (disk full, directory not writable, no room).
    #[error("plot job failed: {cause}")]
    PlotNotWritten {
        /// What the file system said.
        cause: String,
    },
    /// A plot job failed by a fault of the daemon; the cause goes to the log and the event
    /// feed, not to the caller.
    #[error("plot job failed")]
    JobFailed {
        /// What went wrong, for the log.
        cause: String,
    },
    /// A daemon-side failure (I/O, a bug); the details go to the log, not to the client.
    #[error("{context}")]
    Internal {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

/// Why an id prefix did not pick one plot or job.
fn ambiguity(id: &str, matches: usize, kind: &str) -> String {
    if matches == 0 {
        format!("{id:?} is too short: give the full id or at least 4 characters")
    } else {
        format!("{id:?} matches {matches} {kind}s: give more characters")
    }
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

    /// An invalid request field.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        DaemonError::InvalidField {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}
