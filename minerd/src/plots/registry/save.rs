//! A metadata write ([`PendingSave`]): prepared under the registry lock, written outside it.

use std::path::PathBuf;

use spacetime::metadata::PlotMetadataEntry;

use super::failed_checks::{failed_checks_path, FailedCheck};
use crate::error::DaemonError;
use crate::plots::choices::{choices_path, Choices};

/// A metadata write prepared under the registry lock and performed outside it.
#[derive(Debug)]
pub struct PendingSave {
    pub(super) metadata_path: PathBuf,
    pub(super) entries: Vec<PlotMetadataEntry>,
    pub(super) failed: Vec<FailedCheck>,
    pub(super) choices: Choices,
}

impl PendingSave {
    /// Writes the metadata and the failed-check record atomically (the record is removed
    /// when empty).
    pub fn write(&self) -> Result<(), DaemonError> {
        if let Some(dir) = self.metadata_path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DaemonError::internal(format!("creating {}", dir.display()), e))?;
        }
        spacetime::metadata::save_atomic(&self.metadata_path, &self.entries).map_err(|e| {
            DaemonError::internal(format!("writing {}", self.metadata_path.display()), e)
        })?;
        let choices = choices_path(&self.metadata_path);
        let io = |e| DaemonError::internal(format!("writing {}", choices.display()), e);
        if self.choices.is_empty() {
            match std::fs::remove_file(&choices) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            }
        } else {
            let json = serde_json::to_vec_pretty(&self.choices)
                .map_err(|e| DaemonError::internal("encoding the plot choices", e))?;
            spacetime::atomic_file::write_atomic(&choices, &json).map_err(io)?;
        }
        let path = failed_checks_path(&self.metadata_path);
        let io = |e| DaemonError::internal(format!("writing {}", path.display()), e);
        if self.failed.is_empty() {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => return Ok(()),
            }
        }
        let json = serde_json::to_vec_pretty(&self.failed)
            .map_err(|e| DaemonError::internal("encoding the failed-check record", e))?;
        spacetime::atomic_file::write_atomic(&path, &json).map_err(io)
    }
}
