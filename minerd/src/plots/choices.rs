//! What the operator decided about plots, which the reference metadata format cannot hold,
//! kept beside it in `<metadata stem>.choices.json` (written atomically with the metadata):
//!
//! | key            | what                                                                  |
//! |----------------|-----------------------------------------------------------------------|
//! | `unregistered` | plots removed without deleting their file: path, plot seed, and the file's length and mtime then. The directory scan does not register such a file again, across restarts, while it still holds the plot with that seed |
//! | `noCache`      | ids of plots created with cache levels 0: the background cache builder leaves them alone |
//! | `lastChecks`   | the outcome of the last check of each plot                            |
//!
//! A missing file is empty; a corrupt one is logged and treated as empty (nothing is lost
//! but the choices: plots are then handled as if no choice had been made).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::types::LastCheck;

/// A plot file that was unregistered without being deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unregistered {
    /// The plot file.
    pub path: PathBuf,
    /// Its plot seed, hex (empty when its header could not be read).
    pub seed: String,
    /// Its length when it was unregistered.
    pub file_length: Option<u64>,
    /// Its modification time then, nanoseconds since the Unix epoch.
    pub modified_unix_nanos: Option<u64>,
}

/// Every choice, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Choices {
    /// Unregistered files.
    pub unregistered: Vec<Unregistered>,
    /// Plots without a cache by choice.
    pub no_cache: BTreeSet<Uuid>,
    /// Last checks by plot id.
    pub last_checks: BTreeMap<Uuid, LastCheck>,
}

/// `plots_metadata.json` → `plots_metadata.choices.json` beside it.
pub fn choices_path(metadata_path: &Path) -> PathBuf {
    let stem = metadata_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plots_metadata".into());
    metadata_path.with_file_name(format!("{stem}.choices.json"))
}

/// Nanoseconds since the Unix epoch.
pub fn unix_nanos(t: SystemTime) -> Option<u64> {
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
}

impl Choices {
    /// Reads the file beside `metadata_path`.
    pub fn read(metadata_path: &Path) -> Self {
        let path = choices_path(metadata_path);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the plot choices");
                return Self::default();
            }
        };
        serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ignoring corrupt plot choices");
            Self::default()
        })
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.unregistered.is_empty() && self.no_cache.is_empty() && self.last_checks.is_empty()
    }

    /// The unregistered entry of `path`.
    pub fn unregistered_at(&self, path: &Path) -> Option<&Unregistered> {
        self.unregistered.iter().find(|u| u.path == path)
    }

    /// Forgets `path` as unregistered (it is registered again).
    pub fn forget_unregistered(&mut self, path: &Path) {
        self.unregistered.retain(|u| u.path != path);
    }

    /// Forgets what concerns plot `id` (it was removed).
    pub fn forget_plot(&mut self, id: &Uuid) {
        self.no_cache.remove(id);
        self.last_checks.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_round_trip_and_tolerate_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("plots_metadata.json");
        assert_eq!(Choices::read(&meta), Choices::default());
        let mut c = Choices::default();
        c.no_cache.insert(Uuid::nil());
        c.unregistered.push(Unregistered {
            path: "/p/a.plot".into(),
            seed: "ab".into(),
            file_length: Some(7),
            modified_unix_nanos: None,
        });
        c.last_checks.insert(
            Uuid::nil(),
            LastCheck {
                at_unix_ms: 5,
                ok: true,
                full: false,
                checked: 10,
            },
        );
        std::fs::write(choices_path(&meta), serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(Choices::read(&meta), c);
        std::fs::write(choices_path(&meta), b"{not json").unwrap();
        assert_eq!(Choices::read(&meta), Choices::default());
        assert_eq!(
            choices_path(&meta),
            dir.path().join("plots_metadata.choices.json")
        );
    }
}
