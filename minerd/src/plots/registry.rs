//! The plot registry: every known plot with its id, state and open handles, persisted as
//! `plots_metadata.json` (reference format, section 8.1; written atomically, cache path kept).
//!
//! | state       | meaning                                   | in metadata | farmed |
//! |-------------|-------------------------------------------|-------------|--------|
//! | `Valid`     | opens, header and size check out          | `Valid`     | yes    |
//! | `Duplicate` | valid, but another farmed plot has its seed | `Valid`   | no     |
//! | `Corrupted` | fails to load, or failed a check          | `Corrupted` | no     |
//! | `WrongKey`  | made for another miner key                | `Corrupted` | no     |
//! | `Missing`   | the file is gone                          | `Missing`   | no     |
//!
//! Whenever a plot is (re)opened, its first and last leaves are regenerated from the miner
//! key and the header's seed and compared with the file (two leaf reads): when neither
//! matches, the plot was made for another key and could only give proofs that fail
//! verification, so it is `WrongKey`; when only one differs, the file is damaged
//! (`Corrupted`).
//!
//! Reconciliation with the plot directory is a cheap `readdir` + `stat`: a file is only
//! re-opened when its length or modification time changed, or when it failed to load last
//! time (a permission error fixed with `chmod` changes neither). A plot corrupted by a failed
//! check stays corrupted, across restarts, until its file changes or a full check passes:
//! such failures are recorded in `<metadata stem>.failed-checks.json` beside the metadata
//! (the reference format cannot say why a plot is corrupted), and a `Corrupted` status
//! without such a record is re-tried at load. A Merkle cache that does not match its plot is
//! ignored (and removed by a check that finds the plot itself sound), never a reason to
//! exclude the plot. A plot removed without deleting its file is not re-registered by the
//! directory scan while the file is unchanged (until restart).
//!
//! File I/O (opening plots, reading caches, writing the metadata) is split from the
//! in-memory updates ([`Probe`], [`ScanPlan`], [`PendingSave`]) so that the plot manager
//! never holds its lock across it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use spacetime::cache::MerkleCache;
use spacetime::metadata::{PlotMetadataEntry, PlotStatus};
use spacetime::plot::{CheckReport, LeafGenerator, PlotFile, PlotHeader};
use uuid::Uuid;

use super::{FarmedPlot, JobProgress};
use crate::error::DaemonError;
use crate::events::Event;
use crate::timefmt;

/// Lifecycle state of a plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlotState {
    /// Open and farmed.
    Valid,
    /// Fails to load or failed a check.
    Corrupted,
    /// The file is gone.
    Missing,
    /// Being written by a job.
    Creating,
    /// Same seed as another farmed plot.
    Duplicate,
    /// Made for another miner key: its leaves are not this miner's.
    WrongKey,
}

impl PlotState {
    /// Lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PlotState::Valid => "valid",
            PlotState::Corrupted => "corrupted",
            PlotState::Missing => "missing",
            PlotState::Creating => "creating",
            PlotState::Duplicate => "duplicate",
            PlotState::WrongKey => "wrong-key",
        }
    }

    /// The status written to `plots_metadata.json` (the reference knows three).
    pub fn metadata_status(self) -> PlotStatus {
        match self {
            PlotState::Valid | PlotState::Duplicate | PlotState::Creating => PlotStatus::Valid,
            PlotState::Corrupted | PlotState::WrongKey => PlotStatus::Corrupted,
            PlotState::Missing => PlotStatus::Missing,
        }
    }
}

/// A plot as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotInfo {
    /// The plot id.
    pub id: Uuid,
    /// The plot file.
    pub path: PathBuf,
    /// Its cache file, if one exists.
    pub cache_path: Option<PathBuf>,
    /// Current state.
    pub state: PlotState,
    /// File size in bytes (0 when missing).
    pub size_bytes: u64,
    /// The header, when it could be read.
    pub header: Option<PlotHeader>,
    /// The Merkle root (from the header, else from the metadata).
    pub merkle_root: Option<[u8; 32]>,
    /// Registration time, ISO-8601 UTC.
    pub created_at_utc: String,
    /// Why it is not farmed.
    pub problem: Option<String>,
    /// For a duplicate: the farmed plot with the same seed.
    pub duplicate_of: Option<Uuid>,
    /// Whether a validated cache is used for proofs.
    pub cache_in_use: bool,
    /// For a plot being created: its job's progress.
    pub progress: Option<JobProgress>,
}

/// A removed plot and the files deleted with it.
pub type Removed = (PlotInfo, Vec<PathBuf>);

/// Plot totals for the status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// All registered plots.
    pub total: u32,
    /// Valid (farmed).
    pub valid: u32,
    /// Corrupted, or made for another miner key.
    pub corrupted: u32,
    /// Missing.
    pub missing: u32,
    /// Duplicates.
    pub duplicate: u32,
    /// Bytes of farmed plot files.
    pub farmed_bytes: u64,
}

/// Length and modification time: a file is re-opened only when one of them changed.
pub(crate) type Fingerprint = (u64, Option<SystemTime>);

#[derive(Debug)]
struct Entry {
    id: Uuid,
    seq: u64,
    path: PathBuf,
    cache_path: Option<PathBuf>,
    created_at_utc: String,
    state: PlotState,
    problem: Option<String>,
    /// Corrupted by a failed check: stays so until the file changes or a full check passes.
    /// Persisted in the check-failure record beside the metadata; load failures are never
    /// sticky (they are re-tried at every scan).
    sticky: bool,
    /// Bumped whenever state or handles change, so that a scan probed without the lock
    /// does not overwrite a newer change (e.g. a check that finished meanwhile).
    generation: u64,
    fingerprint: Option<Fingerprint>,
    header: Option<PlotHeader>,
    size: u64,
    file: Option<Arc<PlotFile>>,
    cache: Option<Arc<MerkleCache>>,
    merkle_root: Option<[u8; 32]>,
    duplicate_of: Option<Uuid>,
}

impl Entry {
    /// A registered plot not yet probed: `Missing`, no handles, no cache path, no root;
    /// [`Entry::load`] or [`Entry::apply`] fills in the rest.
    fn new(id: Uuid, seq: u64, path: PathBuf, created_at_utc: String) -> Self {
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

    fn info(&self) -> PlotInfo {
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
        }
    }

    /// Opens the file and its cache and sets state, header, handles and fingerprint (file
    /// I/O: only where no lock is contended, i.e. at start-up and in tests).
    fn load(&mut self, miner_pk: &[u8; 32]) {
        let probe = Probe::run(&self.path, self.cache_path.as_deref(), miner_pk);
        self.apply(probe);
    }

    /// Takes over what [`Probe::run`] found. Clears the sticky flag: whoever applies a
    /// probe re-derives the state from the file.
    fn apply(&mut self, p: Probe) {
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

/// What opening a plot found, gathered without holding the registry lock (file opens, leaf
/// reads and cache reads can be slow) and applied under it with [`Entry::apply`].
#[derive(Debug)]
pub struct Probe {
    state: PlotState,
    problem: Option<String>,
    fingerprint: Option<Fingerprint>,
    /// `None` = unknown (keep the previous size).
    size: Option<u64>,
    /// `None` = could not be read (keep the previous header).
    header: Option<PlotHeader>,
    file: Option<Arc<PlotFile>>,
    cache: Option<Arc<MerkleCache>>,
    cache_path: Option<PathBuf>,
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
fn key_check(file: &PlotFile, miner_pk: &[u8; 32]) -> Option<(PlotState, String)> {
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

/// The fingerprint of `path` now (`None` when it cannot be stat'ed).
pub(crate) fn stat_fingerprint(path: &Path) -> Option<Fingerprint> {
    std::fs::metadata(path)
        .ok()
        .map(|md| (md.len(), md.modified().ok()))
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

/// A registered plot as a directory scan sees it.
#[derive(Debug, Clone)]
struct KnownPlot {
    id: Uuid,
    generation: u64,
    path: PathBuf,
    cache_path: Option<PathBuf>,
    state: PlotState,
    sticky: bool,
    fingerprint: Option<Fingerprint>,
}

/// The input of a directory scan, taken from the registry under its lock; [`ScanPlan::run`]
/// then does the file I/O without it.
#[derive(Debug, Clone)]
pub struct ScanPlan {
    miner_pk: [u8; 32],
    plot_dir: PathBuf,
    skip: Vec<PathBuf>,
    known: Vec<KnownPlot>,
    ignored: HashMap<PathBuf, Option<Fingerprint>>,
}

/// What a directory scan found, for [`Registry::apply_scan`].
#[derive(Debug, Default)]
pub struct ScanResult {
    /// Registered plots re-opened: id, generation seen by the plan, what was found.
    reloads: Vec<(Uuid, u64, Probe)>,
    /// New `*.plot` files and what opening them found.
    new_files: Vec<(PathBuf, Probe)>,
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
        let dir = match std::fs::read_dir(&self.plot_dir) {
            Ok(d) => d,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %self.plot_dir.display(), error = %e, "cannot read the plot directory");
                }
                return out;
            }
        };
        let mut found: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|d| d.path())
            .filter(|p| p.extension().is_some_and(|x| x == "plot") && p.is_file())
            .collect();
        found.sort();
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
            out.new_files.push((path, probe));
        }
        out
    }
}

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

/// One plot corrupted by a failed check, recorded beside the metadata: the reference format
/// has no room for why a plot is corrupted, and only a failed check (not a load failure)
/// must survive a restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FailedCheck {
    plot_id: String,
    reason: String,
    file_length: u64,
    /// Modification time of the file when it failed, in nanoseconds since the Unix epoch.
    modified_unix_nanos: Option<u64>,
}

/// `plots_metadata.json` → `plots_metadata.failed-checks.json` beside it.
pub fn failed_checks_path(metadata_path: &Path) -> PathBuf {
    let stem = metadata_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plots_metadata".into());
    metadata_path.with_file_name(format!("{stem}.failed-checks.json"))
}

fn unix_nanos(t: SystemTime) -> Option<u64> {
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
}

/// Reads the failed-check record; a missing file is empty, an unreadable one is logged and
/// treated as empty (its plots are then re-tried like load failures).
fn read_failed_checks(path: &Path) -> HashMap<Uuid, (String, Fingerprint)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the failed-check record");
            return HashMap::new();
        }
    };
    let records: Vec<FailedCheck> = match serde_json::from_str(&text) {
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

/// A metadata write prepared under the registry lock and performed outside it.
#[derive(Debug)]
pub struct PendingSave {
    metadata_path: PathBuf,
    entries: Vec<PlotMetadataEntry>,
    failed: Vec<FailedCheck>,
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
        write_atomic(&path, &json).map_err(io)
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The registry. Not thread-safe by itself: [`super::PlotManager`] wraps it in a mutex.
#[derive(Debug)]
pub struct Registry {
    metadata_path: PathBuf,
    /// The miner's public key: plots must be made for it.
    miner_pk: [u8; 32],
    plot_dir: PathBuf,
    entries: BTreeMap<Uuid, Entry>,
    next_seq: u64,
    dirty: bool,
    /// Files removed without deleting them, with their fingerprint at removal.
    ignored: HashMap<PathBuf, Option<Fingerprint>>,
}

impl Registry {
    /// Loads `metadata_path` (missing = empty; corrupt = renamed aside, empty) and opens every
    /// entry, checking that plots are made for `miner_pk`. Returns the registry and what
    /// changed (for logging).
    pub fn load(
        metadata_path: &Path,
        plot_dir: &Path,
        miner_pk: [u8; 32],
    ) -> Result<(Self, Vec<Event>), DaemonError> {
        let mut reg = Registry {
            metadata_path: metadata_path.to_owned(),
            miner_pk,
            plot_dir: plot_dir.to_owned(),
            entries: BTreeMap::new(),
            next_seq: 0,
            dirty: false,
            ignored: HashMap::new(),
        };
        let mut changes = Vec::new();
        let text = match std::fs::read_to_string(metadata_path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(DaemonError::internal(
                    format!("reading {}", metadata_path.display()),
                    e,
                ))
            }
        };
        let parsed = match text {
            None => Vec::new(),
            Some(t) => match spacetime::metadata::parse_metadata(&t) {
                Ok(entries) => entries,
                Err(e) => {
                    let aside = PathBuf::from(format!(
                        "{}.corrupt.{}",
                        metadata_path.display(),
                        timefmt::compact_utc(SystemTime::now())
                    ));
                    std::fs::rename(metadata_path, &aside).map_err(|io| {
                        DaemonError::internal(
                            format!("renaming corrupt {} aside", metadata_path.display()),
                            io,
                        )
                    })?;
                    tracing::warn!(
                        path = %metadata_path.display(), kept_as = %aside.display(), error = %e,
                        "plot metadata is corrupt; kept aside and rebuilt from the plot directory"
                    );
                    reg.dirty = true;
                    Vec::new()
                }
            },
        };
        let failed_checks = read_failed_checks(&failed_checks_path(metadata_path));
        for m in parsed {
            if reg.entries.contains_key(&m.plot_id) {
                tracing::warn!(plot_id = %m.plot_id, "duplicate plot id in metadata; keeping the first");
                reg.dirty = true;
                continue;
            }
            let seq = reg.bump_seq();
            let path = PathBuf::from(&m.file_path);
            if reg.find_path(&path).is_some() {
                tracing::warn!(path = %path.display(), "plot registered twice in metadata; keeping the first");
                reg.dirty = true;
                continue;
            }
            let mut e = Entry {
                cache_path: (!m.cache_file_path.is_empty())
                    .then(|| PathBuf::from(&m.cache_file_path)),
                merkle_root: m.merkle_root,
                ..Entry::new(m.plot_id, seq, path, m.created_at_utc.clone())
            };
            e.load(&miner_pk);
            // A plot that failed a check stays corrupted until its file changes (or a full
            // check passes). A `Corrupted` status without such a record came from a load
            // failure (e.g. permissions, since fixed): the load above has just re-tried it.
            if m.status == PlotStatus::Corrupted && e.state == PlotState::Valid {
                if let Some((reason, fp)) = failed_checks.get(&e.id) {
                    if e.fingerprint.as_ref() == Some(fp) {
                        e.file = None;
                        e.cache = None;
                        e.state = PlotState::Corrupted;
                        e.sticky = true;
                        e.problem = Some(reason.clone());
                    }
                }
            }
            let recorded = match m.status {
                PlotStatus::Valid => PlotState::Valid,
                PlotStatus::Corrupted => PlotState::Corrupted,
                PlotStatus::Missing => PlotState::Missing,
            };
            if e.state.metadata_status() != m.status {
                reg.dirty = true;
            }
            // A wrong-key plot is recorded as corrupted: report it again as what it is.
            if recorded != e.state {
                changes.push(Event::PlotStateChanged {
                    plot_id: e.id,
                    path: e.path.clone(),
                    old: recorded,
                    new: e.state,
                    reason: e.problem.clone().unwrap_or_default(),
                });
            }
            reg.entries.insert(e.id, e);
        }
        changes.extend(reg.update_duplicates());
        Ok((reg, changes))
    }

    fn bump_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// The id of the plot registered at `path`.
    pub fn find_path(&self, path: &Path) -> Option<Uuid> {
        self.entries.values().find(|e| e.path == path).map(|e| e.id)
    }

    /// Resolves a full id or a unique prefix of at least 4 characters.
    pub fn resolve(&self, id: &str) -> Result<Uuid, DaemonError> {
        resolve_id(id, self.entries.keys().copied()).map_err(|e| e.for_kind("plot"))
    }

    /// One plot.
    pub fn info(&self, id: &Uuid) -> Option<PlotInfo> {
        self.entries.get(id).map(Entry::info)
    }

    /// Every plot, sorted by path.
    pub fn list(&self) -> Vec<PlotInfo> {
        let mut v: Vec<PlotInfo> = self.entries.values().map(Entry::info).collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    /// Plots to farm, in path order.
    pub fn farmed(&self) -> Vec<FarmedPlot> {
        let mut v: Vec<(&Path, FarmedPlot)> = self
            .entries
            .values()
            .filter(|e| e.state == PlotState::Valid)
            .filter_map(|e| {
                e.file.as_ref().map(|f| {
                    (
                        e.path.as_path(),
                        FarmedPlot {
                            id: e.id,
                            file: f.clone(),
                            cache: e.cache.clone(),
                        },
                    )
                })
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.into_iter().map(|(_, p)| p).collect()
    }

    /// Totals.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for e in self.entries.values() {
            s.total += 1;
            match e.state {
                PlotState::Valid => {
                    s.valid += 1;
                    s.farmed_bytes += e.size;
                }
                PlotState::Corrupted | PlotState::WrongKey => s.corrupted += 1,
                PlotState::Missing => s.missing += 1,
                PlotState::Duplicate => s.duplicate += 1,
                PlotState::Creating => {}
            }
        }
        s
    }

    /// Registers `path` under `id` (a new plot: from a job or found in the directory). Opens
    /// the file: use [`Registry::register_probed`] where a lock is held.
    pub fn register(
        &mut self,
        id: Uuid,
        path: &Path,
        cache_path: Option<&Path>,
    ) -> Result<(PlotInfo, Vec<Event>), DaemonError> {
        let probe = Probe::run(path, cache_path, &self.miner_pk);
        self.register_probed(id, path, probe)
    }

    /// Registers `path` under `id` with what [`Probe::run`] found (no file I/O).
    pub fn register_probed(
        &mut self,
        id: Uuid,
        path: &Path,
        probe: Probe,
    ) -> Result<(PlotInfo, Vec<Event>), DaemonError> {
        if let Some(existing) = self.find_path(path) {
            return Err(DaemonError::AlreadyExists {
                what: format!("plot {existing} at {}", path.display()),
            });
        }
        if self.entries.contains_key(&id) {
            return Err(DaemonError::AlreadyExists {
                what: format!("plot id {id}"),
            });
        }
        self.ignored.remove(path);
        let seq = self.bump_seq();
        let mut e = Entry::new(
            id,
            seq,
            path.to_owned(),
            timefmt::iso_utc(SystemTime::now()),
        );
        e.apply(probe);
        self.entries.insert(id, e);
        self.dirty = true;
        let mut events = self.update_duplicates();
        let info = self
            .info(&id)
            .ok_or_else(|| DaemonError::PlotNotFound { id: id.to_string() })?;
        events.insert(0, Event::PlotAdded(Box::new(info.clone())));
        Ok((info, events))
    }

    /// Unregisters a plot; with `delete_files` also deletes the plot and cache files. Does
    /// file I/O: [`super::PlotManager`] uses [`delete_plot_files`] and
    /// [`Registry::unregister`] instead, to keep it outside its lock.
    pub fn remove(
        &mut self,
        id: &Uuid,
        delete_files: bool,
    ) -> Result<(Removed, Vec<Event>), DaemonError> {
        let entry = self
            .entries
            .get(id)
            .ok_or_else(|| DaemonError::PlotNotFound { id: id.to_string() })?;
        let (deleted, ignore_as) = if delete_files {
            (
                delete_plot_files(&entry.path, entry.cache_path.as_deref())?,
                None,
            )
        } else {
            (Vec::new(), Some(stat_fingerprint(&entry.path)))
        };
        let (info, events) = self.unregister(id, ignore_as)?;
        Ok(((info, deleted), events))
    }

    /// Drops a plot from the registry (no file I/O). `ignore_as`: the file stays on disk with
    /// this fingerprint, and the directory scan must not register it again while unchanged;
    /// `None` when its files were deleted.
    pub fn unregister(
        &mut self,
        id: &Uuid,
        ignore_as: Option<Option<Fingerprint>>,
    ) -> Result<(PlotInfo, Vec<Event>), DaemonError> {
        let entry = self
            .entries
            .remove(id)
            .ok_or_else(|| DaemonError::PlotNotFound { id: id.to_string() })?;
        let info = entry.info();
        if let Some(fp) = ignore_as {
            self.ignored.insert(entry.path.clone(), fp);
        }
        self.dirty = true;
        let mut events = vec![Event::PlotRemoved {
            plot_id: *id,
            path: info.path.clone(),
            files_deleted: ignore_as.is_none(),
        }];
        events.extend(self.update_duplicates());
        Ok((info, events))
    }

    /// The plot and cache paths of a registered plot and its generation (see
    /// [`Registry::apply_probe`]).
    pub fn paths(&self, id: &Uuid) -> Option<(PathBuf, Option<PathBuf>, u64)> {
        self.entries
            .get(id)
            .map(|e| (e.path.clone(), e.cache_path.clone(), e.generation))
    }

    /// Marks a plot corrupted. `sticky` (a failed check) keeps it so, across restarts, until
    /// its file changes from `fingerprint` (taken by the caller, outside any lock) or a full
    /// check passes; otherwise (a load failure) the next scan re-tries it.
    pub fn mark_corrupted(
        &mut self,
        id: &Uuid,
        reason: &str,
        sticky: bool,
        fingerprint: Option<Fingerprint>,
    ) -> Vec<Event> {
        let Some(e) = self.entries.get_mut(id) else {
            return Vec::new();
        };
        let old = e.state;
        e.state = PlotState::Corrupted;
        e.problem = Some(reason.to_owned());
        e.sticky = sticky;
        e.generation += 1;
        e.file = None;
        e.cache = None;
        e.duplicate_of = None;
        e.fingerprint = fingerprint;
        self.dirty = true;
        let mut events = Vec::new();
        if old != PlotState::Corrupted {
            events.push(Event::PlotStateChanged {
                plot_id: *id,
                path: e.path.clone(),
                old,
                new: PlotState::Corrupted,
                reason: reason.to_owned(),
            });
        }
        events.extend(self.update_duplicates());
        events
    }

    /// Brings the registry in line with the disk: new `*.plot` files in the plot directory
    /// (except `skip`) are registered, vanished files become missing, changed files are
    /// re-opened, plots that failed to load are re-tried. Does file I/O: the plot manager
    /// runs [`Registry::scan_plan`], [`ScanPlan::run`] and [`Registry::apply_scan`] with its
    /// lock held only for the first and the last.
    pub fn reconcile_directory(&mut self, skip: &[PathBuf]) -> Vec<Event> {
        let found = self.scan_plan(skip).run();
        self.apply_scan(found)
    }

    /// What a directory scan must look at (no file I/O).
    pub fn scan_plan(&self, skip: &[PathBuf]) -> ScanPlan {
        ScanPlan {
            miner_pk: self.miner_pk,
            plot_dir: self.plot_dir.clone(),
            skip: skip.to_vec(),
            known: self
                .entries
                .values()
                .map(|e| KnownPlot {
                    id: e.id,
                    generation: e.generation,
                    path: e.path.clone(),
                    cache_path: e.cache_path.clone(),
                    state: e.state,
                    sticky: e.sticky,
                    fingerprint: e.fingerprint,
                })
                .collect(),
            ignored: self.ignored.clone(),
        }
    }

    /// Applies what a scan found (no file I/O). A plot that changed since the plan was made
    /// (checked, removed, registered by a job meanwhile) keeps its newer state.
    pub fn apply_scan(&mut self, found: ScanResult) -> Vec<Event> {
        let mut events = Vec::new();
        for (id, generation, probe) in found.reloads {
            events.extend(self.apply_probe(&id, generation, probe));
        }
        for (path, probe) in found.new_files {
            if self.find_path(&path).is_some() {
                continue;
            }
            match self.register_probed(Uuid::new_v4(), &path, probe) {
                Ok((_, ev)) => events.extend(ev),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot register plot")
                }
            }
        }
        events.extend(self.update_duplicates());
        events
    }

    /// Re-derives a plot's state from a fresh [`Probe`], unless it changed since generation
    /// `generation` (see [`Registry::paths`]). Clears a sticky corruption: call it after a
    /// file change or a passed full check. Returns the state-change events.
    pub fn apply_probe(&mut self, id: &Uuid, generation: u64, probe: Probe) -> Vec<Event> {
        let Some(e) = self.entries.get_mut(id) else {
            return Vec::new();
        };
        if e.generation != generation {
            return Vec::new();
        }
        let old = e.state;
        let old_problem = e.problem.clone();
        let was_sticky = e.sticky;
        e.apply(probe);
        let mut events = Vec::new();
        if e.state != old || (e.state == PlotState::Corrupted && e.problem != old_problem) {
            self.dirty = true;
            events.push(Event::PlotStateChanged {
                plot_id: *id,
                path: e.path.clone(),
                old,
                new: e.state,
                reason: e.problem.clone().unwrap_or_default(),
            });
        } else if e.state == PlotState::Valid || was_sticky {
            self.dirty = true; // size, root or the check-failure record may have changed
        }
        events.extend(self.update_duplicates());
        events
    }

    /// Recomputes which valid plots are duplicates (same seed as an earlier-registered one).
    fn update_duplicates(&mut self) -> Vec<Event> {
        let mut keeper_by_seed: HashMap<[u8; 32], (u64, Uuid)> = HashMap::new();
        for e in self.entries.values() {
            if matches!(e.state, PlotState::Valid | PlotState::Duplicate) {
                if let Some(h) = e.header {
                    let k = keeper_by_seed.entry(h.seed).or_insert((e.seq, e.id));
                    if e.seq < k.0 {
                        *k = (e.seq, e.id);
                    }
                }
            }
        }
        let mut events = Vec::new();
        for e in self.entries.values_mut() {
            if !matches!(e.state, PlotState::Valid | PlotState::Duplicate) {
                continue;
            }
            let Some(h) = e.header else { continue };
            let Some(&(_, keeper)) = keeper_by_seed.get(&h.seed) else {
                continue;
            };
            let (new, dup_of, problem) = if keeper == e.id {
                (PlotState::Valid, None, None)
            } else {
                (
                    PlotState::Duplicate,
                    Some(keeper),
                    Some(format!("same seed as plot {keeper}; farmed once")),
                )
            };
            if e.state != new {
                events.push(Event::PlotStateChanged {
                    plot_id: e.id,
                    path: e.path.clone(),
                    old: e.state,
                    new,
                    reason: problem.clone().unwrap_or_default(),
                });
            }
            e.state = new;
            e.duplicate_of = dup_of;
            e.problem = problem;
        }
        events
    }

    fn to_metadata(&self) -> Vec<PlotMetadataEntry> {
        let mut v: Vec<&Entry> = self.entries.values().collect();
        v.sort_by_key(|e| e.seq);
        v.into_iter()
            .map(|e| PlotMetadataEntry {
                plot_id: e.id,
                file_path: e.path.to_string_lossy().into_owned(),
                cache_file_path: e
                    .cache_path
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                space_allocated_bytes: match e.state {
                    PlotState::Missing => 0,
                    _ => i64::try_from(e.size).unwrap_or(i64::MAX),
                },
                merkle_root: e.header.map(|h| h.merkle_root).or(e.merkle_root),
                created_at_utc: e.created_at_utc.clone(),
                status: e.state.metadata_status(),
            })
            .collect()
    }

    /// Writes the metadata file atomically (file I/O: see [`Registry::take_save`]).
    pub fn save(&mut self) -> Result<(), DaemonError> {
        let pending = self.prepare_save();
        self.dirty = false;
        pending.write().inspect_err(|_| self.dirty = true)
    }

    /// Writes the metadata file if anything changed since the last write.
    pub fn save_if_dirty(&mut self) -> Result<(), DaemonError> {
        if self.dirty {
            self.save()
        } else {
            Ok(())
        }
    }

    /// The pending metadata write if anything changed, marking it written (no file I/O). If
    /// the write then fails, call [`Registry::mark_dirty`] so that the next one retries.
    pub fn take_save(&mut self) -> Option<PendingSave> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        Some(self.prepare_save())
    }

    /// The metadata must be written again.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    fn prepare_save(&self) -> PendingSave {
        let failed = self
            .entries
            .values()
            .filter(|e| e.sticky && e.state == PlotState::Corrupted)
            .filter_map(|e| {
                let (len, modified) = e.fingerprint?;
                Some(FailedCheck {
                    plot_id: e.id.to_string(),
                    reason: e.problem.clone().unwrap_or_default(),
                    file_length: len,
                    modified_unix_nanos: modified.and_then(unix_nanos),
                })
            })
            .collect();
        PendingSave {
            metadata_path: self.metadata_path.clone(),
            entries: self.to_metadata(),
            failed,
        }
    }
}

/// Why an id did not resolve.
#[derive(Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// Nothing matches.
    NotFound(String),
    /// Too short, or more than one match.
    Ambiguous(String, usize),
}

impl ResolveError {
    /// The daemon error for a plot or job id.
    pub fn for_kind(self, kind: &'static str) -> DaemonError {
        match self {
            ResolveError::NotFound(id) if kind == "plot" => DaemonError::PlotNotFound { id },
            ResolveError::NotFound(id) => DaemonError::JobNotFound { id },
            ResolveError::Ambiguous(id, matches) => DaemonError::InvalidArgument {
                field: format!("{kind}_id"),
                reason: if matches == 0 {
                    format!("{id:?} is too short: give the full id or at least 4 characters")
                } else {
                    format!("{id:?} matches {matches} {kind}s: give more characters")
                },
            },
        }
    }
}

/// Resolves a full UUID or a unique prefix (≥ 4 characters, case-insensitive).
pub fn resolve_id(id: &str, ids: impl Iterator<Item = Uuid>) -> Result<Uuid, ResolveError> {
    let want = id.trim().to_ascii_lowercase();
    if let Ok(u) = Uuid::parse_str(&want) {
        let all: Vec<Uuid> = ids.collect();
        return all
            .into_iter()
            .find(|x| *x == u)
            .ok_or(ResolveError::NotFound(id.to_owned()));
    }
    if want.len() < 4 {
        return Err(ResolveError::Ambiguous(id.to_owned(), 0));
    }
    let matches: Vec<Uuid> = ids.filter(|u| u.to_string().starts_with(&want)).collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(ResolveError::NotFound(id.to_owned())),
        many => Err(ResolveError::Ambiguous(id.to_owned(), many.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacetime::plot::{create_plot, CacheLevels, CreatePlot};
    use std::sync::atomic::AtomicBool;

    const PK: [u8; 32] = [7; 32];

    fn make_plot(path: &Path, seed: u8, leaves: u64) {
        make_plot_for(path, PK, seed, leaves);
    }

    fn make_plot_for(path: &Path, miner_pk: [u8; 32], seed: u8, leaves: u64) {
        create_plot(
            &CreatePlot {
                path: path.to_owned(),
                miner_pk,
                seed: [seed; 32],
                leaf_count: leaves,
                cache: CacheLevels::Disabled,
                threads: Some(1),
            },
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        meta: PathBuf,
        plots: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let plots = dir.path().join("plots");
        std::fs::create_dir_all(&plots).unwrap();
        Fixture {
            meta: dir.path().join("plots_metadata.json"),
            plots,
            _dir: dir,
        }
    }

    /// A registry that has scanned one 64-leaf plot `a.plot`: its path, the registry and
    /// the plot's id.
    fn one_plot(f: &Fixture) -> (PathBuf, Registry, Uuid) {
        let a = f.plots.join("a.plot");
        make_plot(&a, 1, 64);
        let (mut reg, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        reg.reconcile_directory(&[]);
        let id = reg.find_path(&a).unwrap();
        (a, reg, id)
    }

    #[test]
    fn directory_plots_are_registered_saved_and_reloaded_with_their_ids() {
        let f = fixture();
        make_plot(&f.plots.join("a.plot"), 1, 64);
        make_plot(&f.plots.join("b.plot"), 2, 64);
        std::fs::write(f.plots.join("notes.txt"), "x").unwrap();
        let (mut reg, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        let ev = reg.reconcile_directory(&[]);
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, Event::PlotAdded(_)))
                .count(),
            2
        );
        reg.save_if_dirty().unwrap();
        let ids: Vec<Uuid> = reg.list().iter().map(|p| p.id).collect();
        assert_eq!(reg.farmed().len(), 2);
        assert_eq!(reg.summary().valid, 2);

        let (mut again, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        assert!(again.reconcile_directory(&[]).is_empty());
        assert_eq!(again.list().iter().map(|p| p.id).collect::<Vec<_>>(), ids);
        assert_eq!(again.list()[0].state, PlotState::Valid);
    }

    #[test]
    fn vanished_and_returning_files_change_state_without_failing() {
        let f = fixture();
        let (a, mut reg, id) = one_plot(&f);
        let moved = f.plots.join("a.bak");
        std::fs::rename(&a, &moved).unwrap();
        let ev = reg.reconcile_directory(&[]);
        assert!(ev.iter().any(|e| matches!(
            e,
            Event::PlotStateChanged {
                new: PlotState::Missing,
                ..
            }
        )));
        assert!(reg.farmed().is_empty());
        std::fs::rename(&moved, &a).unwrap();
        reg.reconcile_directory(&[]);
        assert_eq!(reg.info(&id).unwrap().state, PlotState::Valid);
        // Truncate it: corrupted, not fatal.
        let len = std::fs::metadata(&a).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&a)
            .unwrap()
            .set_len(len - 32)
            .unwrap();
        reg.reconcile_directory(&[]);
        let info = reg.info(&id).unwrap();
        assert_eq!(info.state, PlotState::Corrupted);
        assert!(info.problem.is_some());
    }

    #[test]
    fn same_seed_is_farmed_once() {
        let f = fixture();
        make_plot(&f.plots.join("a.plot"), 9, 64);
        std::fs::copy(f.plots.join("a.plot"), f.plots.join("b.plot")).unwrap();
        let (mut reg, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        reg.reconcile_directory(&[]);
        let list = reg.list();
        assert_eq!(list[0].state, PlotState::Valid);
        assert_eq!(list[1].state, PlotState::Duplicate);
        assert_eq!(list[1].duplicate_of, Some(list[0].id));
        assert_eq!(reg.farmed().len(), 1);
        // Removing the keeper promotes the duplicate.
        reg.remove(&list[0].id, true).unwrap();
        assert_eq!(reg.info(&list[1].id).unwrap().state, PlotState::Valid);
    }

    #[test]
    fn corrupt_metadata_is_kept_aside_and_rebuilt() {
        let f = fixture();
        make_plot(&f.plots.join("a.plot"), 1, 64);
        std::fs::write(&f.meta, "[{ not json").unwrap();
        let (mut reg, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        reg.reconcile_directory(&[]);
        reg.save_if_dirty().unwrap();
        let aside: Vec<_> = std::fs::read_dir(f.meta.parent().unwrap())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|d| {
                d.file_name()
                    .to_string_lossy()
                    .starts_with("plots_metadata.json.corrupt.")
            })
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(
            std::fs::read_to_string(aside[0].path()).unwrap(),
            "[{ not json"
        );
        assert_eq!(reg.list().len(), 1);
        assert!(
            spacetime::metadata::parse_metadata(&std::fs::read_to_string(&f.meta).unwrap()).is_ok()
        );
    }

    #[test]
    fn remove_with_and_without_files() {
        let f = fixture();
        let a = f.plots.join("a.plot");
        let b = f.plots.join("b.plot");
        make_plot(&a, 1, 64);
        make_plot(&b, 2, 64);
        let (mut reg, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        reg.reconcile_directory(&[]);
        let ia = reg.find_path(&a).unwrap();
        let ib = reg.find_path(&b).unwrap();
        let ((_, deleted), _) = reg.remove(&ia, false).unwrap();
        assert!(deleted.is_empty() && a.exists());
        // Not re-registered while unchanged.
        assert!(reg.reconcile_directory(&[]).is_empty());
        assert!(reg.find_path(&a).is_none());
        let ((_, deleted), _) = reg.remove(&ib, true).unwrap();
        assert_eq!(deleted, vec![b.clone()]);
        assert!(!b.exists());
        assert!(matches!(
            reg.remove(&ib, true),
            Err(DaemonError::PlotNotFound { .. })
        ));
    }

    #[test]
    fn sticky_corruption_survives_until_the_file_changes() {
        let f = fixture();
        let (a, mut reg, id) = one_plot(&f);
        reg.mark_corrupted(&id, "check failed: leaf 5", true, stat_fingerprint(&a));
        reg.reconcile_directory(&[]);
        assert_eq!(reg.info(&id).unwrap().state, PlotState::Corrupted);
        reg.save().unwrap();
        assert!(failed_checks_path(&f.meta).exists());
        let (mut reg2, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        let info = reg2.info(&id).unwrap();
        assert_eq!(info.state, PlotState::Corrupted);
        assert_eq!(info.problem.as_deref(), Some("check failed: leaf 5"));
        assert!(reg2.reconcile_directory(&[]).is_empty());
        assert_eq!(reg2.info(&id).unwrap().state, PlotState::Corrupted);
        // The file changes (rewritten): re-opened, valid again, the record is dropped.
        let bytes = std::fs::read(&a).unwrap();
        std::fs::remove_file(&a).unwrap();
        std::fs::write(&a, &bytes).unwrap();
        let t = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&a)
            .unwrap()
            .set_modified(t)
            .unwrap();
        reg2.reconcile_directory(&[]);
        assert_eq!(reg2.info(&id).unwrap().state, PlotState::Valid);
        reg2.save_if_dirty().unwrap();
        assert!(!failed_checks_path(&f.meta).exists());
    }

    #[test]
    fn a_load_failure_is_retried_at_the_next_scan_and_restart_not_sticky() {
        let f = fixture();
        let (a, mut reg, id) = one_plot(&f);
        // As a load failure (e.g. a permission error, then fixed with chmod) leaves it: the
        // file's length and mtime do not change.
        reg.mark_corrupted(
            &id,
            "opening: permission denied",
            false,
            stat_fingerprint(&a),
        );
        reg.save().unwrap();
        let ev = reg.reconcile_directory(&[]);
        assert!(ev.iter().any(|e| matches!(
            e,
            Event::PlotStateChanged {
                new: PlotState::Valid,
                ..
            }
        )));
        assert_eq!(reg.info(&id).unwrap().state, PlotState::Valid);
        assert_eq!(reg.farmed().len(), 1);
        // Recorded `Corrupted` in the metadata by the failed load: a restart re-tries it.
        let meta = spacetime::metadata::parse_metadata(&std::fs::read_to_string(&f.meta).unwrap())
            .unwrap();
        assert_eq!(meta[0].status, PlotStatus::Corrupted);
        let (reg2, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        assert_eq!(reg2.info(&id).unwrap().state, PlotState::Valid);
        assert_eq!(reg2.farmed().len(), 1);
    }

    #[test]
    fn a_scan_probed_before_a_newer_change_does_not_overwrite_it() {
        let f = fixture();
        let (a, mut reg, id) = one_plot(&f);
        reg.mark_corrupted(&id, "opening: transient", false, stat_fingerprint(&a));
        // The scan probes without the lock; meanwhile a check fails and marks it sticky.
        let found = reg.scan_plan(&[]).run();
        reg.mark_corrupted(&id, "check failed", true, stat_fingerprint(&a));
        reg.apply_scan(found);
        let info = reg.info(&id).unwrap();
        assert_eq!(info.state, PlotState::Corrupted);
        assert_eq!(info.problem.as_deref(), Some("check failed"));
    }

    #[test]
    fn plots_for_another_key_are_flagged_not_farmed_and_recorded_as_corrupted() {
        let f = fixture();
        let foreign = f.plots.join("foreign.plot");
        let own = f.plots.join("own.plot");
        make_plot_for(&foreign, [8; 32], 1, 64);
        make_plot(&own, 2, 64);
        let (mut reg, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        let ev = reg.reconcile_directory(&[]);
        let id = reg.find_path(&foreign).unwrap();
        let added = ev
            .iter()
            .find_map(|e| match e {
                Event::PlotAdded(p) if p.id == id => Some(p.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(added.state, PlotState::WrongKey);
        let info = reg.info(&id).unwrap();
        assert_eq!(info.state, PlotState::WrongKey);
        let problem = info.problem.unwrap();
        assert!(problem.contains("another miner key"), "{problem}");
        assert!(problem.contains(&hex::encode(PK)), "{problem}");
        assert!(info.header.is_some(), "the header is still shown");
        let farmed = reg.farmed();
        assert_eq!(farmed.len(), 1);
        assert_eq!(farmed[0].file.path(), own);
        let s = reg.summary();
        assert_eq!((s.total, s.valid, s.corrupted), (2, 1, 1));
        // The metadata keeps the reference's three statuses.
        reg.save_if_dirty().unwrap();
        let meta = spacetime::metadata::parse_metadata(&std::fs::read_to_string(&f.meta).unwrap())
            .unwrap();
        let rec = meta.iter().find(|m| m.plot_id == id).unwrap();
        assert_eq!(rec.status, PlotStatus::Corrupted);
        // Reloaded: wrong-key again, nothing to rewrite, a rescan changes nothing.
        let (mut again, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        assert_eq!(again.info(&id).unwrap().state, PlotState::WrongKey);
        assert!(!again.dirty);
        assert!(again.reconcile_directory(&[]).is_empty());
        // The key it was made for farms it (in a registry of its own).
        let (mut theirs, _) =
            Registry::load(&f.plots.join("theirs.json"), &f.plots, [8; 32]).unwrap();
        theirs.reconcile_directory(&[]);
        let id = theirs.find_path(&foreign).unwrap();
        assert_eq!(theirs.info(&id).unwrap().state, PlotState::Valid);
    }

    #[test]
    fn a_damaged_last_leaf_is_corruption_not_a_wrong_key() {
        use std::io::{Seek, SeekFrom, Write};
        let f = fixture();
        let a = f.plots.join("a.plot");
        make_plot(&a, 3, 64);
        let mut file = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
        let at = spacetime::plot::leaf_offset(63).unwrap();
        file.seek(SeekFrom::Start(at)).unwrap();
        file.write_all(&[0xAB; 32]).unwrap();
        drop(file);
        let (mut reg, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        reg.reconcile_directory(&[]);
        let info = reg.info(&reg.find_path(&a).unwrap()).unwrap();
        assert_eq!(info.state, PlotState::Corrupted);
        assert!(info.problem.unwrap().contains("leaf 63"));
        assert!(reg.farmed().is_empty());
    }

    #[test]
    fn id_prefixes_resolve_uniquely() {
        let a = Uuid::parse_str("aaaa1111-0000-4000-8000-000000000000").unwrap();
        let b = Uuid::parse_str("aaaa2222-0000-4000-8000-000000000000").unwrap();
        let ids = [a, b];
        assert_eq!(resolve_id("aaaa1", ids.iter().copied()), Ok(a));
        assert_eq!(
            resolve_id(&a.to_string().to_uppercase(), ids.iter().copied()),
            Ok(a)
        );
        assert_eq!(
            resolve_id("aaaa", ids.iter().copied()),
            Err(ResolveError::Ambiguous("aaaa".into(), 2))
        );
        assert_eq!(
            resolve_id("aa", ids.iter().copied()),
            Err(ResolveError::Ambiguous("aa".into(), 0))
        );
        assert_eq!(
            resolve_id("bbbb", ids.iter().copied()),
            Err(ResolveError::NotFound("bbbb".into()))
        );
    }
}
