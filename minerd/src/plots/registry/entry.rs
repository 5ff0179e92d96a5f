//! One registered plot as the registry keeps it ([`Entry`]) and the file fingerprint
//! (length and modification time) that decides when a plot is re-opened.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use spacetime::cache::MerkleCache;
use spacetime::plot::{PlotFile, PlotHeader};
use uuid::Uuid;

use super::probe::Probe;
use crate::types::{PlotInfo, PlotState};

/// Length and modification time: a file is re-opened only when one of them changed.
pub(crate) type Fingerprint = (u64, Option<SystemTime>);

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) id: Uuid,
    pub(super) seq: u64,
    pub(super) path: PathBuf,
    pub(super) cache_path: Option<PathBuf>,
    pub(super) created_at_utc: String,
    pub(super) state: PlotState,
    pub(super) problem: Option<String>,
    /// Corrupted by a failed check: stays so until the file changes or a full check passes.
    /// Persisted in the check-failure record beside the metadata; load failures are never
    /// sticky (they are re-tried at every scan).
    pub(super) sticky: bool,
    /// Bumped whenever state or handles change, so that a scan probed without the lock
    /// does not overwrite a newer change (e.g. a check that finished meanwhile).
    pub(super) generation: u64,
    pub(super) fingerprint: Option<Fingerprint>,
    pub(super) header: Option<PlotHeader>,
    pub(super) size: u64,
    pub(super) file: Option<Arc<PlotFile>>,
    pub(super) cache: Option<Arc<MerkleCache>>,
    pub(super) merkle_root: Option<[u8; 32]>,
    pub(super) duplicate_of: Option<Uuid>,
}

impl Entry {
    /// A registered plot not yet probed: `Missing`, no handles, no cache path, no root;
    /// [`Entry::load`] or [`Entry::apply`] fills in the rest.
    pub(super) fn new(id: Uuid, seq: u64, path: PathBuf, created_at_utc: String) -> Self {
        Entry {
            id,
            seq,
            path,
            cache_path: None,
            created_at_utc,
            state: PlotState::Missing,
            problem: None,
            sticky: false,
            generation: 0,
            fingerprint: None,
            header: None,
            size: 0,
            file: None,
            cache: None,
            merkle_root: None,
            duplicate_of: None,
        }
    }

    pub(super) fn info(&self) -> PlotInfo {
        PlotInfo {
            id: self.id,
            path: self.path.clone(),
            cache_path: self.cache_path.clone(),
            state: self.state,
            size_bytes: self.size,
            header: self.header,
            merkle_root: self.header.map(|h| h.merkle_root).or(self.merkle_root),
            created_at_utc: self.created_at_utc.clone(),
            problem: self.problem.clone(),
            duplicate_of: self.duplicate_of,
            cache_in_use: self.cache.is_some(),
            progress: None,
            cache_levels: self
                .cache
                .as_ref()
                .map_or(0, |c| u32::try_from(c.levels.len()).unwrap_or(u32::MAX)),
            cache_disabled: false,
            last_check: None,
        }
    }

    /// Opens the file and its cache and sets state, header, handles and fingerprint (file
    /// I/O: only where no lock is contended, i.e. at start-up and in tests).
    pub(super) fn load(&mut self, miner_pk: &[u8; 32]) {
        let probe = Probe::run(&self.path, self.cache_path.as_deref(), miner_pk);
        self.apply(probe);
    }

    /// Takes over what [`Probe::run`] found. Clears the sticky flag: whoever applies a
    /// probe re-derives the state from the file.
    pub(super) fn apply(&mut self, p: Probe) {
        self.duplicate_of = None;
        self.sticky = false;
        self.generation += 1;
        self.state = p.state;
        self.problem = p.problem;
        self.fingerprint = p.fingerprint;
        if let Some(size) = p.size {
            self.size = size;
        }
        if let Some(h) = p.header {
            self.header = Some(h);
            self.merkle_root = Some(h.merkle_root);
        }
        self.file = p.file;
        self.cache = p.cache;
        self.cache_path = p.cache_path;
    }
}

/// The fingerprint of `path` now (`None` when it cannot be stat'ed).
pub(crate) fn stat_fingerprint(path: &Path) -> Option<Fingerprint> {
    std::fs::metadata(path)
        .ok()
        .map(|md| (md.len(), md.modified().ok()))
}
