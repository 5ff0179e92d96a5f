//! The directory scan: a [`ScanPlan`] taken under the registry lock, run without it
//! (`readdir` + `stat` of every plot directory, opening only what is new or changed, and
//! `statvfs` for each directory's free space), giving a [`ScanResult`].

use std::collections::HashMap;
use std::path::PathBuf;

use uuid::Uuid;

use super::entry::{stat_fingerprint, Fingerprint};
use super::probe::Probe;
use crate::plots::dirs::{DiskInfo, PlotDirs};
use crate::types::PlotState;

/// A registered plot as a directory scan sees it.
#[derive(Debug, Clone)]
pub(super) struct KnownPlot {
    pub(super) id: Uuid,
    pub(super) generation: u64,
    pub(super) path: PathBuf,
    pub(super) cache_path: Option<PathBuf>,
    pub(super) state: PlotState,
    pub(super) sticky: bool,
    pub(super) fingerprint: Option<Fingerprint>,
}

/// The input of a directory scan, taken from the registry under its lock; [`ScanPlan::run`]
/// then does the file I/O without it.
#[derive(Debug, Clone)]
pub struct ScanPlan {
    pub(super) miner_pk: [u8; 32],
    pub(super) plot_dirs: PlotDirs,
    pub(super) skip: Vec<PathBuf>,
    pub(super) known: Vec<KnownPlot>,
    pub(super) ignored: HashMap<PathBuf, Option<Fingerprint>>,
    /// Seeds (hex) of the unregistered files: such a file stays unregistered while it holds
    /// the same plot, even when touched or after a restart.
    pub(super) ignored_seeds: HashMap<PathBuf, String>,
}

/// What a directory scan found, for [`Registry::apply_scan`].
#[derive(Debug, Default)]
pub struct ScanResult {
    /// Registered plots re-opened: id, generation seen by the plan, what was found.
    pub(super) reloads: Vec<(Uuid, u64, Probe)>,
    /// New `*.plot` files and what opening them found.
    pub(super) new_files: Vec<(PathBuf, Probe)>,
    /// Free space and device of each plot directory, in order.
    pub(super) disks: Vec<DiskInfo>,
}

impl ScanPlan {
    /// `readdir` + `stat`; opens only the files that are new, changed, back, or that failed
    /// to load last time (a load failure such as a permission error may be fixed without
    /// changing the file's length or mtime).
    pub fn run(self) -> ScanResult {
        let mut out = ScanResult::default();
        for k in &self.known {
            let now = stat_fingerprint(&k.path);
            let reload = match (k.state, &now) {
                (PlotState::Missing, Some(_)) => true,
                (PlotState::Missing, None) => false,
                (_, None) => true,
                (PlotState::Corrupted, Some(_)) if !k.sticky => true,
                (_, Some(fp)) => k.fingerprint.as_ref() != Some(fp),
            };
            if reload {
                let probe = Probe::run(&k.path, k.cache_path.as_deref(), &self.miner_pk);
                out.reloads.push((k.id, k.generation, probe));
            }
        }
        let mut found: Vec<PathBuf> = Vec::new();
        for dir in self.plot_dirs.as_slice() {
            out.disks.push(DiskInfo::measure(dir));
            match std::fs::read_dir(dir) {
                Ok(d) => found.extend(
                    d.filter_map(Result::ok)
                        .map(|d| d.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "plot") && p.is_file()),
                ),
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot read the plot directory");
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        for path in found {
            if self.skip.contains(&path) || self.known.iter().any(|k| k.path == path) {
                continue;
            }
            if let Some(fp) = self.ignored.get(&path) {
                if *fp == stat_fingerprint(&path) {
                    continue;
                }
            }
            let probe = Probe::run(&path, None, &self.miner_pk);
            if let (Some(seed), Some(h)) = (self.ignored_seeds.get(&path), probe.header) {
                if !seed.is_empty() && *seed == hex::encode(h.seed) {
                    continue;
                }
            }
            out.new_files.push((path, probe));
        }
        out
    }
}
