//! File-system helpers of the daemon's own files: private directories and owner-only modes.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Creates a directory (and parents) with mode 0700 when it does not exist yet.
pub(crate) fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating directory {}", dir.display()))?;
    }
    Ok(())
}

/// Sets mode 0600 on a file the daemon created for its owner only.
pub(crate) fn set_owner_only(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Deletes the temporaries that interrupted atomic writes (`spacetime::atomic_file`) of the
/// daemon's own files left beside them, and logs each; returns those deleted. Call at start,
/// holding the data-directory lock, before anything writes. (Plot and cache temporaries in
/// the plot directory are removed when the plots are loaded.)
pub(crate) fn remove_stale_temporaries(files: &[PathBuf]) -> Vec<PathBuf> {
    let removed: Vec<PathBuf> = files
        .iter()
        .flat_map(|f| spacetime::atomic_file::remove_stale_temporaries(f))
        .collect();
    for path in &removed {
        tracing::info!(path = %path.display(), "removed the temporary file of an interrupted write");
    }
    removed
}
