//! The plot directories (`plotDirectories`): where plots are discovered, where new plots
//! go, and the only places whose plot files and caches the daemon deletes or replaces
//! (decisions R3, for each directory).
//!
//! A new plot goes to the directory with the most free space (ties: the first listed), so
//! that disks fill evenly; `create-plot --output` overrides it. Directories on one device
//! (`st_dev`) share that device: the scan reads each device's plots in file order.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The configured plot directories, in configuration order (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotDirs(Vec<PathBuf>);

impl PlotDirs {
    /// The directories, in order.
    pub fn as_slice(&self) -> &[PathBuf] {
        &self.0
    }

    /// The first directory (where the embedded devnet puts its plot).
    pub fn first(&self) -> &Path {
        self.0.first().map_or(Path::new("."), PathBuf::as_path)
    }

    /// The configured directory that contains `path` (the deepest, if they nest).
    pub fn containing(&self, path: &Path) -> Option<&Path> {
        self.0
            .iter()
            .filter(|d| path.starts_with(d))
            .max_by_key(|d| d.components().count())
            .map(PathBuf::as_path)
    }
}

impl From<Vec<PathBuf>> for PlotDirs {
    fn from(dirs: Vec<PathBuf>) -> Self {
        PlotDirs(dirs)
    }
}

impl From<&[PathBuf]> for PlotDirs {
    fn from(dirs: &[PathBuf]) -> Self {
        PlotDirs(dirs.to_vec())
    }
}

impl From<&Path> for PlotDirs {
    fn from(dir: &Path) -> Self {
        PlotDirs(vec![dir.to_owned()])
    }
}

impl From<&PathBuf> for PlotDirs {
    fn from(dir: &PathBuf) -> Self {
        PlotDirs(vec![dir.clone()])
    }
}

impl From<&PlotDirs> for PlotDirs {
    fn from(dirs: &PlotDirs) -> Self {
        dirs.clone()
    }
}

/// What the daemon knows of one directory's disk, measured by the directory scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskInfo {
    /// Bytes available to the daemon (`statvfs`), `None` when it could not be read.
    pub free_bytes: Option<u64>,
    /// The device (`st_dev`), `None` when the directory cannot be inspected.
    pub device: Option<u64>,
}

impl DiskInfo {
    /// Measures `dir` (blocking: `stat` and `statvfs`).
    pub fn measure(dir: &Path) -> DiskInfo {
        DiskInfo {
            free_bytes: fs4::available_space(dir).ok(),
            device: std::fs::metadata(dir).ok().map(|m| m.dev()),
        }
    }
}

/// The first two of `dirs` that are one directory under two names (a link, a bind mount:
/// same device and inode), if any. Directories that cannot be inspected are skipped (the
/// directory scan reports them).
pub fn same_directory(dirs: &PlotDirs) -> Option<(PathBuf, PathBuf)> {
    let mut seen: Vec<((u64, u64), &PathBuf)> = Vec::new();
    for d in dirs.as_slice() {
        let Ok(m) = std::fs::metadata(d) else {
            continue;
        };
        let id = (m.dev(), m.ino());
        if let Some((_, first)) = seen.iter().find(|(s, _)| *s == id) {
            return Some(((*first).clone(), d.clone()));
        }
        seen.push((id, d));
    }
    None
}

/// One plot directory's totals, for the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSummary {
    /// The directory.
    pub path: PathBuf,
    /// Whether it is one of `plotDirectories` (else it holds plots registered elsewhere,
    /// e.g. by `create-plot --output`).
    pub configured: bool,
    /// Registered plots in it, whatever their state.
    pub plots: u32,
    /// Of those, the farmed (valid) ones.
    pub valid: u32,
    /// Leaves of its farmed plots.
    pub leaves: u64,
    /// Bytes of its farmed plot files.
    pub farmed_bytes: u64,
    /// Leaves of its plots scored in the last finished epoch scan (see [`add_scanned`]).
    pub leaves_scanned: u64,
    /// Its disk (configured directories only; as of the last directory scan).
    pub disk: DiskInfo,
}

/// A registered plot as [`summarize`] counts it.
#[derive(Debug, Clone, Copy)]
pub struct Counted<'a> {
    /// The plot file.
    pub path: &'a Path,
    /// Whether it is farmed.
    pub farmed: bool,
    /// Its leaves.
    pub leaves: u64,
    /// Its file size.
    pub bytes: u64,
}

/// Totals per directory: every configured one (in order, with `disks`), then the parent
/// directories of plots outside them (sorted).
pub fn summarize<'a>(
    dirs: &PlotDirs,
    disks: &[DiskInfo],
    plots: impl Iterator<Item = Counted<'a>>,
) -> Vec<DirSummary> {
    let mut out: Vec<DirSummary> = dirs
        .as_slice()
        .iter()
        .enumerate()
        .map(|(i, d)| DirSummary {
            path: d.clone(),
            configured: true,
            plots: 0,
            valid: 0,
            leaves: 0,
            farmed_bytes: 0,
            leaves_scanned: 0,
            disk: disks.get(i).copied().unwrap_or_default(),
        })
        .collect();
    for p in plots {
        let s = slot_for(&mut out, dirs, p.path);
        s.plots += 1;
        if p.farmed {
            s.valid += 1;
            s.leaves += p.leaves;
            s.farmed_bytes += p.bytes;
        }
    }
    let configured = dirs.as_slice().len().min(out.len());
    out[configured..].sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Adds the leaves each plot (`path`, leaves) scored in the last epoch to its directory.
pub fn add_scanned<'a>(
    summaries: &mut Vec<DirSummary>,
    dirs: &PlotDirs,
    plots: impl Iterator<Item = (&'a Path, u64)>,
) {
    for (path, leaves) in plots {
        slot_for(summaries, dirs, path).leaves_scanned += leaves;
    }
}

/// The summary of the directory that holds `path`: its configured directory, else its
/// parent (added when new).
fn slot_for<'s>(out: &'s mut Vec<DirSummary>, dirs: &PlotDirs, path: &Path) -> &'s mut DirSummary {
    let dir = dirs
        .containing(path)
        .map(Path::to_owned)
        .unwrap_or_else(|| path.parent().unwrap_or(Path::new("")).to_owned());
    let at = match out.iter().position(|s| s.path == dir) {
        Some(at) => at,
        None => {
            out.push(DirSummary {
                path: dir,
                configured: false,
                plots: 0,
                valid: 0,
                leaves: 0,
                farmed_bytes: 0,
                leaves_scanned: 0,
                disk: DiskInfo::default(),
            });
            out.len() - 1
        }
    };
    &mut out[at]
}

/// The directory for a new plot: the one with the most free space (`free` of each; ties go
/// to the first listed). Directories whose free space cannot be read are passed over; when
/// none can be read, the error names each.
pub fn choose_for_new_plot(
    dirs: &PlotDirs,
    free: impl Fn(&Path) -> std::io::Result<u64>,
) -> Result<(PathBuf, u64), String> {
    let mut best: Option<(PathBuf, u64)> = None;
    let mut errors = Vec::new();
    for d in dirs.as_slice() {
        match free(d) {
            Ok(n) => {
                if best.as_ref().is_none_or(|(_, b)| n > *b) {
                    best = Some((d.clone(), n));
                }
            }
            Err(e) => errors.push(format!("{}: {e}", d.display())),
        }
    }
    best.ok_or_else(|| {
        format!(
            "cannot read the free space of any plot directory ({})",
            errors.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(names: &[&str]) -> PlotDirs {
        names.iter().map(PathBuf::from).collect::<Vec<_>>().into()
    }

    #[test]
    fn a_new_plot_goes_where_most_space_is_free_ties_to_the_first() {
        let d = dirs(&["/a", "/b", "/c"]);
        let free = |sizes: [u64; 3]| {
            move |p: &Path| -> std::io::Result<u64> {
                match p.to_str() {
                    Some("/a") => Ok(sizes[0]),
                    Some("/b") => Ok(sizes[1]),
                    _ => Ok(sizes[2]),
                }
            }
        };
        assert_eq!(
            choose_for_new_plot(&d, free([1, 3, 2])).unwrap(),
            (PathBuf::from("/b"), 3)
        );
        assert_eq!(
            choose_for_new_plot(&d, free([5, 5, 5])).unwrap().0,
            PathBuf::from("/a")
        );
        // An unreadable directory is passed over; when all are, each is named.
        let broken = |p: &Path| -> std::io::Result<u64> {
            if p == Path::new("/a") {
                Ok(1)
            } else {
                Err(std::io::Error::other("gone"))
            }
        };
        assert_eq!(
            choose_for_new_plot(&d, broken).unwrap().0,
            PathBuf::from("/a")
        );
        let err = choose_for_new_plot(&d, |_| Err(std::io::Error::other("gone"))).unwrap_err();
        assert!(
            err.contains("/a: gone") && err.contains("/c: gone"),
            "{err}"
        );
    }

    #[test]
    fn totals_per_directory_count_each_plot_once_in_its_directory() {
        let d = dirs(&["/a", "/b"]);
        let disks = [
            DiskInfo {
                free_bytes: Some(10),
                device: Some(1),
            },
            DiskInfo::default(),
        ];
        let plot = |path: &'static str, farmed, leaves| Counted {
            path: Path::new(path),
            farmed,
            leaves,
            bytes: leaves * 32,
        };
        let got = summarize(
            &d,
            &disks,
            [
                plot("/a/1.plot", true, 4),
                plot("/a/2.plot", false, 8),
                plot("/elsewhere/3.plot", true, 2),
                plot("/a/3.plot", true, 1),
            ]
            .into_iter(),
        );
        let brief: Vec<_> = got
            .iter()
            .map(|s| {
                (
                    s.path.to_str().unwrap(),
                    s.configured,
                    s.plots,
                    s.valid,
                    s.leaves,
                )
            })
            .collect();
        assert_eq!(
            brief,
            [
                ("/a", true, 3, 2, 5),
                ("/b", true, 0, 0, 0),
                ("/elsewhere", false, 1, 1, 2)
            ]
        );
        assert_eq!(got[0].disk.free_bytes, Some(10));
        assert_eq!(got[0].farmed_bytes, 160);
        let mut got = got;
        add_scanned(
            &mut got,
            &d,
            [
                (Path::new("/a/1.plot"), 4),
                (Path::new("/b/9.plot"), 7),
                (Path::new("/elsewhere/3.plot"), 2),
            ]
            .into_iter(),
        );
        let scanned: Vec<u64> = got.iter().map(|s| s.leaves_scanned).collect();
        assert_eq!(scanned, [4, 7, 2]);
    }

    #[test]
    fn one_directory_under_two_names_is_found() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let link = t.path().join("link-to-a");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        assert_eq!(same_directory(&vec![a.clone(), b.clone()].into()), None);
        assert_eq!(
            same_directory(&vec![a.clone(), b.clone(), link.clone()].into()),
            Some((a.clone(), link))
        );
        assert_eq!(
            same_directory(&vec![a.clone(), a.join("."), t.path().join("gone")].into()),
            Some((a.clone(), a.join(".")))
        );
    }

    #[test]
    fn real_directories_are_measured_and_the_containing_one_found() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("a").join("b"));
        std::fs::create_dir_all(&b).unwrap();
        let d: PlotDirs = vec![a.clone(), b.clone()].into();
        let (chosen, free) = choose_for_new_plot(&d, |p| fs4::available_space(p)).unwrap();
        // One file system: the same free space, so the first wins.
        assert_eq!(chosen, a);
        assert!(free > 0);
        let (ia, ib) = (DiskInfo::measure(&a), DiskInfo::measure(&b));
        assert!(ia.device.is_some() && ia.device == ib.device);
        assert!(ia.free_bytes.is_some());
        assert_eq!(DiskInfo::measure(&t.path().join("gone")).device, None);
        assert_eq!(d.containing(&b.join("x.plot")), Some(b.as_path()));
        assert_eq!(d.containing(&a.join("x.plot")), Some(a.as_path()));
        assert_eq!(d.containing(Path::new("/elsewhere/x.plot")), None);
    }
}
