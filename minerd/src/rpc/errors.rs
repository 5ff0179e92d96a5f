//! Domain errors as gRPC statuses: the one place that decides the code of each.

use tonic::Status;

use crate::error::DaemonError;

/// Maps a domain error to a gRPC status, exhaustively (a new variant must be decided
/// here). Caller mistakes keep their message; internal failures and failed jobs are logged
/// in full and answered with a generic message, so no cause text reaches the client.
pub fn map_error(e: DaemonError) -> Status {
    match e {
        DaemonError::PlotNotFound { .. } | DaemonError::JobNotFound { .. } => {
            Status::not_found(e.to_string())
        }
        DaemonError::PlotRegistered { .. } | DaemonError::FileExists { .. } => {
            Status::already_exists(e.to_string())
        }
        DaemonError::AmbiguousId { .. } | DaemonError::InvalidField { .. } => {
            Status::invalid_argument(e.to_string())
        }
        DaemonError::NoSpace { .. }
        | DaemonError::QueueFull { .. }
        | DaemonError::DeleteRefused { .. }
        | DaemonError::PlotFileMissing { .. }
        | DaemonError::PlotUnreadable { .. }
        | DaemonError::PlotNotWritten { .. } => Status::failed_precondition(e.to_string()),
        DaemonError::ShuttingDown => Status::unavailable(e.to_string()),
        DaemonError::Cancelled | DaemonError::JobCancelled => Status::cancelled(e.to_string()),
        DaemonError::JobFailed { ref cause } => {
            tracing::error!(cause = %cause, "a plot job followed through the API failed");
            Status::internal("plot job failed; see the daemon log")
        }
        DaemonError::Internal { .. } => {
            tracing::error!(error = %spacetime::error_chain(&e), "internal error answering a request");
            Status::internal("internal error in minerd; see the daemon log")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn every_domain_error_maps_to_its_code() {
        let cases = [
            (DaemonError::PlotNotFound { id: "x".into() }, Code::NotFound),
            (DaemonError::JobNotFound { id: "x".into() }, Code::NotFound),
            (
                DaemonError::PlotRegistered { what: "x".into() },
                Code::AlreadyExists,
            ),
            (
                DaemonError::FileExists { path: "/x".into() },
                Code::AlreadyExists,
            ),
            (DaemonError::invalid("f", "bad"), Code::InvalidArgument),
            (
                DaemonError::AmbiguousId {
                    kind: "plot",
                    id: "ab".into(),
                    matches: 0,
                },
                Code::InvalidArgument,
            ),
            (
                DaemonError::NoSpace { reason: "r".into() },
                Code::FailedPrecondition,
            ),
            (DaemonError::QueueFull { max: 64 }, Code::FailedPrecondition),
            (
                DaemonError::DeleteRefused { reason: "r".into() },
                Code::FailedPrecondition,
            ),
            (
                DaemonError::PlotFileMissing {
                    id: "x".into(),
                    path: "/x".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                DaemonError::PlotUnreadable {
                    subject: "x".into(),
                    reason: "r".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                DaemonError::PlotNotWritten {
                    cause: "File too large".into(),
                },
                Code::FailedPrecondition,
            ),
            (DaemonError::ShuttingDown, Code::Unavailable),
            (DaemonError::Cancelled, Code::Cancelled),
            (DaemonError::JobCancelled, Code::Cancelled),
        ];
        for (e, code) in cases {
            assert_eq!(map_error(e).code(), code);
        }
        let s = map_error(DaemonError::internal(
            "writing /secret/path",
            std::io::Error::other("disk"),
        ));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("/secret/path"));
        let s = map_error(DaemonError::JobFailed {
            cause: "writing /secret/path: disk".into(),
        });
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("/secret/path"));
    }

    #[test]
    fn messages_stay_those_users_read() {
        let ambiguous = |matches| {
            DaemonError::AmbiguousId {
                kind: "job",
                id: "abcd".into(),
                matches,
            }
            .to_string()
        };
        assert_eq!(
            ambiguous(0),
            "invalid job_id: \"abcd\" is too short: give the full id or at least 4 characters"
        );
        assert_eq!(
            ambiguous(2),
            "invalid job_id: \"abcd\" matches 2 jobs: give more characters"
        );
        assert_eq!(
            DaemonError::QueueFull { max: 64 }.to_string(),
            "64 plot jobs are queued already"
        );
    }
}
