//! Which files the daemon may delete or replace, and deleting a plot's files on an
//! explicit request.
//!
//! Paths come from `plots_metadata.json`, which anyone who can write the data directory
//! controls, so no path is trusted (decisions R3): a file is deleted or replaced only if
//! it is inside one of the plot directories (`plotDirectories`), is named like what it claims to be (`*.plot`, or a
//! cache `*.cache`), and its content starts with that format's magic (`SPTP`, `MKTC`). A
//! symbolic link passes without the magic check: removing or replacing a link never
//! touches what it points to.

use std::io::Read;
use std::path::{Path, PathBuf};

use spacetime::cache::MerkleCache;

use crate::error::DaemonError;
use crate::plots::dirs::PlotDirs;

/// What a file claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    /// A plot file (`*.plot`, magic `SPTP`).
    Plot,
    /// A Merkle cache (`*.cache`, magic `MKTC`).
    Cache,
}

impl Owned {
    fn suffix(self) -> &'static str {
        match self {
            Owned::Plot => ".plot",
            Owned::Cache => ".cache",
        }
    }

    fn magic(self) -> &'static [u8; 4] {
        match self {
            Owned::Plot => b"SPTP",
            Owned::Cache => b"MKTC",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Owned::Plot => "a plot file",
            Owned::Cache => "a Merkle cache",
        }
    }
}

/// Whether the daemon may delete or replace `path` as `kind`: `Ok` or why not. A path
/// that does not exist passes (there is nothing to harm). It must be inside one of
/// `plot_dirs` (after resolving links of the directories).
pub fn check_owned(path: &Path, kind: Owned, plot_dirs: impl Into<PlotDirs>) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot inspect it: {e}")),
    };
    let name_ok = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(kind.suffix()) && n.len() > kind.suffix().len());
    if !name_ok {
        return Err(format!(
            "its name does not end in {:?}, so it is not {}",
            kind.suffix(),
            kind.name()
        ));
    }
    let dirs = plot_dirs.into();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let parent = parent
        .canonicalize()
        .map_err(|e| format!("cannot resolve its directory: {e}"))?;
    let mut outside = Vec::new();
    let inside = dirs.as_slice().iter().any(|d| match d.canonicalize() {
        Ok(dir) => {
            let yes = parent.starts_with(&dir);
            outside.push(dir.display().to_string());
            yes
        }
        // An unusable directory contains nothing.
        Err(e) => {
            outside.push(format!("{} (unusable: {e})", d.display()));
            false
        }
    });
    if !inside {
        return Err(if outside.len() == 1 {
            format!("it is outside the plot directory {}", outside[0])
        } else {
            format!("it is outside the plot directories {}", outside.join(", "))
        });
    }
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let mut magic = [0u8; 4];
    let read = spacetime::regular_file::open_regular(path)
        .map_err(|e| format!("cannot read it: {e}"))
        .and_then(|(f, _)| {
            f.take(4)
                .read_exact(&mut magic)
                .map_err(|_| "it is shorter than any such file".to_owned())
        });
    read?;
    if &magic != kind.magic() {
        return Err(format!(
            "it does not start with {:?}, so it is not {}",
            String::from_utf8_lossy(kind.magic()),
            kind.name()
        ));
    }
    Ok(())
}

/// Deletes a plot file and its cache (`cache_path`, else `<path>.cache`); returns the files
/// deleted. Files already gone are not an error. Both files are checked first
/// ([`check_owned`]); if either is not the daemon's to delete, nothing is deleted.
pub fn delete_plot_files(
    path: &Path,
    cache_path: Option<&Path>,
    plot_dirs: impl Into<PlotDirs>,
) -> Result<Vec<PathBuf>, DaemonError> {
    let plot_dirs = plot_dirs.into();
    let cache = cache_path.map_or_else(|| MerkleCache::path_for(path), Path::to_owned);
    for (p, kind) in [(path, Owned::Plot), (cache.as_path(), Owned::Cache)] {
        if let Err(why) = check_owned(p, kind, &plot_dirs) {
            return Err(DaemonError::DeleteRefused {
                reason: format!(
                    "refusing to delete {}: {why}; minerd only deletes plot files and Merkle \
                     caches inside its plot directories (nothing was deleted)",
                    p.display()
                ),
            });
        }
    }
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

/// Whether `name` is a temporary of a plot or cache write: `.<name>.plot.tmp-<random>` or
/// `.<name>.plot.cache.tmp-<random>` (see `spacetime::atomic_file`).
fn is_plot_temporary(name: &str) -> bool {
    name.starts_with('.')
        && [".plot.tmp-", ".cache.tmp-"].iter().any(|m| {
            name.find(m)
                .is_some_and(|at| at > 1 && name.len() > at + m.len())
        })
}

/// Deletes the temporaries of interrupted plot and cache writes in `plot_dir` (regular
/// files only, top level only); returns those deleted. Call only while no write runs.
pub fn remove_stale_temporaries(plot_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(plot_dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        if regular && is_plot_temporary(name) {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale temporary file");
                }
            }
        }
    }
    removed.sort();
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_named_and_marked_files_inside_the_plot_dir_are_ours() {
        let dir = tempfile::tempdir().unwrap();
        let plots = dir.path().join("plots");
        std::fs::create_dir_all(&plots).unwrap();
        let w = |name: &str, bytes: &[u8]| {
            let p = plots.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let plot = w("a.plot", b"SPTP\x01rest");
        let cache = w("a.plot.cache", b"MKTC\x01rest");
        assert_eq!(check_owned(&plot, Owned::Plot, &plots), Ok(()));
        assert_eq!(check_owned(&cache, Owned::Cache, &plots), Ok(()));
        assert_eq!(
            check_owned(&plots.join("gone.plot"), Owned::Plot, &plots),
            Ok(())
        );
        let victim = w("victim.txt", b"precious");
        let fake = w("fake.plot", b"precious");
        let short = w("short.plot", b"SP");
        let outside = dir.path().join("b.plot");
        std::fs::write(&outside, b"SPTP").unwrap();
        let sneaky = plots.join("..").join("b.plot");
        for (p, kind, why) in [
            (&victim, Owned::Cache, "does not end in"),
            (&victim, Owned::Plot, "does not end in"),
            (&fake, Owned::Plot, "does not start with"),
            (&plot, Owned::Cache, "does not end in"),
            (&short, Owned::Plot, "shorter"),
            (&outside, Owned::Plot, "outside the plot directory"),
            (&sneaky, Owned::Plot, "outside the plot directory"),
        ] {
            let err = check_owned(p, kind, &plots).unwrap_err();
            assert!(err.contains(why), "{p:?} {kind:?}: {err}");
        }
        // A link is removed, never followed.
        let link = plots.join("l.plot");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert_eq!(check_owned(&link, Owned::Plot, &plots), Ok(()));
        let deleted = delete_plot_files(&link, None, &plots).unwrap();
        assert_eq!(deleted, vec![link]);
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    /// Audit row 12: the temporaries of a plot job killed mid-way stayed forever.
    #[test]
    fn stale_plot_and_cache_temporaries_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let keep = [
            "a.plot",
            "a.plot.cache",
            ".hidden",
            ".plot.tmp-x",
            "x.plot.tmp-abc",
            ".plots_metadata.json.tmp-abcdefgh",
        ];
        let gone = [".a.plot.tmp-AbCdEfGh", ".a.plot.cache.tmp-12345678"];
        for n in keep.iter().chain(&gone) {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join(".d.plot.tmp-dir")).unwrap();
        let removed = remove_stale_temporaries(dir.path());
        let mut want: Vec<_> = gone.iter().map(|n| dir.path().join(n)).collect();
        want.sort();
        assert_eq!(removed, want);
        for n in keep {
            assert!(dir.path().join(n).exists(), "{n}");
        }
        assert!(dir.path().join(".d.plot.tmp-dir").is_dir());
    }

    /// Audit row 2: `delete-plot --delete-file` deleted a non-plot file outside the plot
    /// directory, and a `cacheFilePath` of `victim.txt`.
    #[test]
    fn delete_refuses_files_that_are_not_ours_and_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let plots = dir.path().join("plots");
        std::fs::create_dir_all(&plots).unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"precious").unwrap();
        let err = delete_plot_files(&victim, None, &plots).unwrap_err();
        assert!(err.to_string().contains("refusing to delete"), "{err}");
        let plot = plots.join("a.plot");
        std::fs::write(&plot, b"SPTP\x01").unwrap();
        let err = delete_plot_files(&plot, Some(&victim), &plots).unwrap_err();
        assert!(err.to_string().contains("nothing was deleted"), "{err}");
        assert!(plot.exists() && victim.exists());
        assert_eq!(delete_plot_files(&plot, None, &plots).unwrap(), vec![plot]);
    }
}
