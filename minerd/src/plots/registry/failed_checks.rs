//! The failed-check record beside the metadata (`<metadata stem>.failed-checks.json`):
//! the plots a check found corrupt, which stay corrupted across restarts until their file
//! changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use uuid::Uuid;

use super::entry::Fingerprint;

/// One plot corrupted by a failed check, recorded beside the metadata: the reference format
/// has no room for why a plot is corrupted, and only a failed check (not a load failure)
/// must survive a restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FailedCheck {
    pub(super) plot_id: String,
    pub(super) reason: String,
    pub(super) file_length: u64,
    /// Modification time of the file when it failed, in nanoseconds since the Unix epoch.
    pub(super) modified_unix_nanos: Option<u64>,
}

/// `plots_metadata.json` → `plots_metadata.failed-checks.json` beside it.
pub fn failed_checks_path(metadata_path: &Path) -> PathBuf {
    let stem = metadata_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plots_metadata".into());
    metadata_path.with_file_name(format!("{stem}.failed-checks.json"))
}

pub(super) fn unix_nanos(t: SystemTime) -> Option<u64> {
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
}

/// Largest failed-check record read.
const MAX_FAILED_CHECKS_BYTES: u64 = 64 << 20;

/// Reads the failed-check record; a missing file is empty, an unreadable one is logged and
/// treated as empty (its plots are then re-tried like load failures).
pub(super) fn read_failed_checks(path: &Path) -> HashMap<Uuid, (String, Fingerprint)> {
    // Bounded like every file we read (a real record is a few hundred bytes per plot).
    let text = match spacetime::regular_file::read_regular(path, MAX_FAILED_CHECKS_BYTES) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the failed-check record");
            return HashMap::new();
        }
    };
    let records: Vec<FailedCheck> = match serde_json::from_slice(&text) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring a corrupt failed-check record");
            return HashMap::new();
        }
    };
    records
        .into_iter()
        .filter_map(|r| {
            let id = Uuid::parse_str(&r.plot_id).ok()?;
            let modified = r
                .modified_unix_nanos
                .map(|n| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(n));
            Some((id, (r.reason, (r.file_length, modified))))
        })
        .collect()
}
