//! Deleting a plot's files (the plot and its cache), on an explicit request only.

use std::path::{Path, PathBuf};

use spacetime::cache::MerkleCache;

use crate::error::DaemonError;

/// Deletes a plot file and its cache (`cache_path`, else `<path>.cache`); returns the files
/// deleted. Files already gone are not an error.
pub fn delete_plot_files(
    path: &Path,
    cache_path: Option<&Path>,
) -> Result<Vec<PathBuf>, DaemonError> {
    let cache = cache_path.map_or_else(|| MerkleCache::path_for(path), Path::to_owned);
    let mut deleted = Vec::new();
    for p in [path.to_owned(), cache] {
        match std::fs::remove_file(&p) {
            Ok(()) => deleted.push(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(DaemonError::internal(
                    format!("deleting {}", p.display()),
                    e,
                ))
            }
        }
    }
    Ok(deleted)
}
