//! Requests into the daemon's terms: what a create or check request asks for, validated
//! field by field (a bad field is [`DaemonError::InvalidField`]).

use spacetime_proto::pb;

use crate::error::DaemonError;
use crate::plots::jobs::JobSpec;
use crate::plots::{CheckKind, DEFAULT_CHECK_SAMPLES};

/// The job a `CreatePlot` request asks for.
pub fn job_spec(req: pb::CreatePlotRequest) -> Result<JobSpec, DaemonError> {
    let leaf_count = match (req.leaf_count, req.size_bytes) {
        (0, 0) => {
            return Err(DaemonError::invalid(
                "leaf_count",
                "set leaf_count or size_bytes (exactly one)",
            ))
        }
        (n, 0) => n,
        (0, size) if size >= 32 => size / 32,
        (0, size) => {
            return Err(DaemonError::invalid(
                "size_bytes",
                format!("{size} is smaller than one 32-byte leaf"),
            ))
        }
        (_, _) => {
            return Err(DaemonError::invalid(
                "leaf_count",
                "set leaf_count or size_bytes, not both",
            ))
        }
    };
    let seed = match req.seed.len() {
        0 => None,
        32 => {
            let mut s = [0u8; 32];
            s.copy_from_slice(&req.seed);
            Some(s)
        }
        n => {
            return Err(DaemonError::invalid(
                "seed",
                format!("must be empty or 32 bytes, got {n}"),
            ))
        }
    };
    Ok(JobSpec {
        leaf_count,
        cache_levels: req.cache_levels,
        seed,
        file_name: (!req.file_name.is_empty()).then_some(req.file_name),
        threads: (req.threads > 0).then_some(req.threads as usize),
        output_path: (!req.output_path.is_empty()).then(|| req.output_path.into()),
    })
}

/// The check a `CheckPlot` request's mode asks for (sampled by default).
pub fn check_kind(mode: Option<pb::check_plot_request::Mode>) -> CheckKind {
    match mode {
        Some(pb::check_plot_request::Mode::Full(_)) => CheckKind::Full,
        Some(pb::check_plot_request::Mode::Sampled(s)) => CheckKind::Sampled {
            samples: if s.samples == 0 {
                DEFAULT_CHECK_SAMPLES
            } else {
                u64::from(s.samples)
            },
            seed: s.seed,
        },
        None => CheckKind::Sampled {
            samples: DEFAULT_CHECK_SAMPLES,
            seed: None,
        },
    }
}

/// What a `CheckPlot` request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckTarget {
    /// A registered plot, by id or unique prefix.
    Plot(String),
    /// A plot file by absolute path, registered or not.
    File(String),
}

/// The target of a `CheckPlot` request: exactly one of `plot_id` and an absolute `file_path`.
pub fn check_target(plot_id: String, file_path: String) -> Result<CheckTarget, DaemonError> {
    match (plot_id.is_empty(), file_path.is_empty()) {
        (false, true) => Ok(CheckTarget::Plot(plot_id)),
        (true, false) if std::path::Path::new(&file_path).is_absolute() => {
            Ok(CheckTarget::File(file_path))
        }
        (true, false) => Err(DaemonError::invalid(
            "file_path",
            "must be an absolute path",
        )),
        _ => Err(DaemonError::invalid(
            "plot_id",
            "set plot_id or file_path (exactly one)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_plot_requests_are_validated() {
        let ok = |r: pb::CreatePlotRequest| job_spec(r).unwrap();
        let err = |r: pb::CreatePlotRequest| job_spec(r).unwrap_err().to_string();
        assert_eq!(
            ok(pb::CreatePlotRequest {
                size_bytes: 1 << 20,
                ..Default::default()
            })
            .leaf_count,
            1 << 15
        );
        let s = ok(pb::CreatePlotRequest {
            leaf_count: 10,
            seed: vec![1; 32],
            cache_levels: Some(0),
            ..Default::default()
        });
        assert_eq!(
            (s.leaf_count, s.seed, s.cache_levels),
            (10, Some([1; 32]), Some(0))
        );
        assert!(err(pb::CreatePlotRequest::default()).contains("leaf_count"));
        assert!(err(pb::CreatePlotRequest {
            leaf_count: 1,
            size_bytes: 64,
            ..Default::default()
        })
        .contains("not both"));
        assert!(err(pb::CreatePlotRequest {
            size_bytes: 31,
            ..Default::default()
        })
        .contains("size_bytes"));
        assert!(err(pb::CreatePlotRequest {
            leaf_count: 1,
            seed: vec![1; 5],
            ..Default::default()
        })
        .contains("seed"));
    }

    #[test]
    fn check_requests_name_one_plot_or_one_absolute_file() {
        let t = |id: &str, path: &str| check_target(id.into(), path.into());
        assert_eq!(t("abcd", "").unwrap(), CheckTarget::Plot("abcd".into()));
        assert_eq!(
            t("", "/p/a.plot").unwrap(),
            CheckTarget::File("/p/a.plot".into())
        );
        assert!(t("", "a.plot")
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        assert!(t("", "").unwrap_err().to_string().contains("exactly one"));
        assert!(t("abcd", "/p/a.plot").is_err());
        assert_eq!(
            check_kind(None),
            CheckKind::Sampled {
                samples: DEFAULT_CHECK_SAMPLES,
                seed: None
            }
        );
    }
}
