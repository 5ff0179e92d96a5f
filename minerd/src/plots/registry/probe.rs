//! Opening a plot without the registry lock ([`Probe`]): stat, header, the key check
//! (first and last leaves regenerated from the miner key) and the Merkle cache; and the
//! one-line description of a failed check.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use spacetime::cache::MerkleCache;
use spacetime::plot::{CheckReport, LeafGenerator, PlotFile, PlotHeader};

use super::entry::Fingerprint;
use crate::types::PlotState;

/// What opening a plot found, gathered without holding the registry lock (file opens, leaf
/// reads and cache reads can be slow) and applied under it with [`Entry::apply`].
#[derive(Debug)]
pub struct Probe {
    pub(super) state: PlotState,
    pub(super) problem: Option<String>,
    pub(super) fingerprint: Option<Fingerprint>,
    /// `None` = unknown (keep the previous size).
    pub(super) size: Option<u64>,
    /// `None` = could not be read (keep the previous header).
    pub(super) header: Option<PlotHeader>,
    pub(super) file: Option<Arc<PlotFile>>,
    pub(super) cache: Option<Arc<MerkleCache>>,
    pub(super) cache_path: Option<PathBuf>,
}

impl Probe {
    /// Opens `path` and its cache (`cache_path`, else `<path>.cache`). A plot whose leaves
    /// are not `miner_pk`'s is not kept open (see [`key_check`]).
    pub fn run(path: &Path, cache_path: Option<&Path>, miner_pk: &[u8; 32]) -> Self {
        let mut p = Probe {
            state: PlotState::Missing,
            problem: None,
            fingerprint: None,
            size: None,
            header: None,
            file: None,
            cache: None,
            cache_path: cache_path.map(Path::to_owned),
        };
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                p.problem = Some("file not found".into());
                p.size = Some(0);
                return p;
            }
            Err(e) => {
                p.state = PlotState::Corrupted;
                p.problem = Some(format!("cannot stat the file: {e}"));
                return p;
            }
            Ok(md) => {
                p.fingerprint = Some((md.len(), md.modified().ok()));
                p.size = Some(md.len());
            }
        }
        let file = match PlotFile::open(path) {
            Ok(file) => file,
            Err(e) => {
                p.state = PlotState::Corrupted;
                p.problem = Some(e.to_string());
                return p;
            }
        };
        let header = *file.header();
        p.header = Some(header);
        let cache_path = p
            .cache_path
            .take()
            .unwrap_or_else(|| MerkleCache::path_for(path));
        if let Some((state, problem)) = key_check(&file, miner_pk) {
            p.state = state;
            p.problem = Some(problem);
            p.cache_path = Some(cache_path).filter(|c| c.exists());
            return p;
        }
        p.state = PlotState::Valid;
        if cache_path.exists() {
            match MerkleCache::read(&cache_path).and_then(|c| {
                c.validate(&header)?;
                Ok(c)
            }) {
                Ok(c) => p.cache = Some(Arc::new(c)),
                Err(e) => tracing::warn!(
                    path = %cache_path.display(), error = %e,
                    "ignoring Merkle cache that does not match its plot"
                ),
            }
            p.cache_path = Some(cache_path);
        }
        p.file = Some(Arc::new(file));
        p
    }
}

/// Compares the first and last leaves of `file` with the leaves `miner_pk` gives for its
/// seed. `None` when they match; else the state and the problem to report: `WrongKey` when
/// no compared leaf matches, `Corrupted` when some do and some do not.
pub(super) fn key_check(file: &PlotFile, miner_pk: &[u8; 32]) -> Option<(PlotState, String)> {
    let header = file.header();
    let generator = LeafGenerator::new(miner_pk, &header.seed);
    let last = header.leaf_count.saturating_sub(1);
    let indices: &[u64] = if last == 0 { &[0] } else { &[0, last] };
    let differ: Vec<u64> = indices
        .iter()
        .copied()
        .filter(|&i| file.leaf(i).ok().flatten() != Some(generator.leaf(i)))
        .collect();
    if differ.is_empty() {
        None
    } else if differ.len() == indices.len() {
        Some((
            PlotState::WrongKey,
            format!(
                "made for another miner key: its leaves are not those of public key {}; \
                 not farmed (re-plot with this miner's key, or farm it with its own key)",
                hex::encode(miner_pk)
            ),
        ))
    } else {
        Some((
            PlotState::Corrupted,
            format!(
                "leaf {} differs from the one the miner key gives (the file is damaged; \
                 run check-plot)",
                differ[0]
            ),
        ))
    }
}

/// Describes what a check found wrong with the plot's own data, in one line (a cache that
/// does not match is reported apart: see [`super::PlotManager::check`]).
pub fn describe_failure(r: &CheckReport) -> String {
    let mut parts = Vec::new();
    if r.bad_leaves > 0 {
        parts.push(format!(
            "{} leaves differ from the miner key (first at index {})",
            r.bad_leaves,
            r.first_bad_leaf.unwrap_or_default()
        ));
    }
    if r.bad_paths > 0 {
        parts.push(format!(
            "{} Merkle paths do not verify (first at index {})",
            r.bad_paths,
            r.first_bad_path.unwrap_or_default()
        ));
    }
    if r.root_ok == Some(false) {
        parts.push("the recomputed Merkle root differs from the header".into());
    }
    if parts.is_empty() {
        "check failed".into()
    } else {
        format!("check failed: {}", parts.join("; "))
    }
}
