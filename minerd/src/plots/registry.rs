//! The plot registry: every known plot with its id, state and open handles, persisted as
//! `plots_metadata.json` (reference format, section 8.1; written atomically, cache path kept).
//!
//! | state       | meaning                                   | in metadata | farmed |
//! |-------------|-------------------------------------------|-------------|--------|
//! | `Valid`     | opens, header and size check out          | `Valid`     | yes    |
//! | `Duplicate` | valid, but another farmed plot has its seed | `Valid`   | no     |
//! | `Corrupted` | fails to open, or failed a check          | `Corrupted` | no     |
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
//! re-opened when its length or modification time changed. A plot corrupted by a failed check
//! stays corrupted until its file changes. A plot removed without deleting its file is not
//! re-registered by the directory scan while the file is unchanged (until restart).

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

type Fingerprint = (u64, Option<SystemTime>);

#[derive(Debug)]
struct Entry {
    id: Uuid,
    seq: u64,
    path: PathBuf,
    cache_path: Option<PathBuf>,
    created_at_utc: String,
    state: PlotState,
    problem: Option<String>,
    /// Corrupted by a failed check: stays so until the file changes.
    sticky: bool,
    fingerprint: Option<Fingerprint>,
    header: Option<PlotHeader>,
    size: u64,
    file: Option<Arc<PlotFile>>,
    cache: Option<Arc<MerkleCache>>,
    merkle_root: Option<[u8; 32]>,
    duplicate_of: Option<Uuid>,
}

impl Entry {
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

    /// Opens the file and its cache and sets state, header, handles and fingerprint. A plot
    /// whose leaves are not `miner_pk`'s is not kept open (see [`key_check`]).
    fn load(&mut self, miner_pk: &[u8; 32]) {
        self.duplicate_of = None;
        self.file = None;
        self.cache = None;
        self.sticky = false;
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.state = PlotState::Missing;
                self.problem = Some("file not found".into());
                self.fingerprint = None;
                self.size = 0;
                return;
            }
            Err(e) => {
                self.state = PlotState::Corrupted;
                self.problem = Some(format!("cannot stat the file: {e}"));
                self.fingerprint = None;
                return;
            }
            Ok(md) => {
                self.fingerprint = Some((md.len(), md.modified().ok()));
                self.size = md.len();
            }
        }
        match PlotFile::open(&self.path) {
            Ok(file) => {
                let header = *file.header();
                self.header = Some(header);
                self.merkle_root = Some(header.merkle_root);
                if let Some((state, problem)) = key_check(&file, miner_pk) {
                    self.state = state;
                    self.problem = Some(problem);
                    self.cache_path = self
                        .cache_path
                        .take()
                        .or_else(|| Some(MerkleCache::path_for(&self.path)))
                        .filter(|p| p.exists());
                    return;
                }
                self.state = PlotState::Valid;
                self.problem = None;
                let cache_path = self
                    .cache_path
                    .clone()
                    .unwrap_or_else(|| MerkleCache::path_for(&self.path));
                if cache_path.exists() {
                    match MerkleCache::read(&cache_path).and_then(|c| {
                        c.validate(&header)?;
                        Ok(c)
                    }) {
                        Ok(c) => self.cache = Some(Arc::new(c)),
                        Err(e) => tracing::warn!(
                            path = %cache_path.display(), error = %e,
                            "ignoring Merkle cache that does not match its plot"
                        ),
                    }
                    self.cache_path = Some(cache_path);
                } else {
                    self.cache_path = None;
                }
                self.file = Some(Arc::new(file));
            }
            Err(e) => {
                self.state = PlotState::Corrupted;
                self.problem = Some(e.to_string());
            }
        }
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
        .filter(|&i| file.leaf(i) != Some(generator.leaf(i)))
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

fn stat_fingerprint(path: &Path) -> Option<Fingerprint> {
    std::fs::metadata(path)
        .ok()
        .map(|md| (md.len(), md.modified().ok()))
}

/// Describes a failed check in one line.
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
    if r.cache_ok == Some(false) {
        parts.push(format!(
            "the Merkle cache does not match: {}",
            r.cache_error.as_deref().unwrap_or("mismatch")
        ));
    }
    if parts.is_empty() {
        "check failed".into()
    } else {
        format!("check failed: {}", parts.join("; "))
    }
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
                id: m.plot_id,
                seq,
                path,
                cache_path: (!m.cache_file_path.is_empty())
                    .then(|| PathBuf::from(&m.cache_file_path)),
                created_at_utc: m.created_at_utc.clone(),
                state: PlotState::Missing,
                problem: None,
                sticky: false,
                fingerprint: None,
                header: None,
                size: 0,
                file: None,
                cache: None,
                merkle_root: m.merkle_root,
                duplicate_of: None,
            };
            e.load(&miner_pk);
            // A plot recorded as corrupted stays so until its file changes.
            if m.status == PlotStatus::Corrupted && e.state == PlotState::Valid {
                e.file = None;
                e.cache = None;
                e.state = PlotState::Corrupted;
                e.sticky = true;
                e.problem = Some("recorded as corrupted in the plot metadata".into());
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

    /// Registers `path` under `id` (a new plot: from a job or found in the directory).
    pub fn register(
        &mut self,
        id: Uuid,
        path: &Path,
        cache_path: Option<&Path>,
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
        let mut e = Entry {
            id,
            seq,
            path: path.to_owned(),
            cache_path: cache_path.map(Path::to_owned),
            created_at_utc: timefmt::iso_utc(SystemTime::now()),
            state: PlotState::Missing,
            problem: None,
            sticky: false,
            fingerprint: None,
            header: None,
            size: 0,
            file: None,
            cache: None,
            merkle_root: None,
            duplicate_of: None,
        };
        e.load(&self.miner_pk);
        self.entries.insert(id, e);
        self.dirty = true;
        let mut events = self.update_duplicates();
        let info = self
            .info(&id)
            .ok_or_else(|| DaemonError::PlotNotFound { id: id.to_string() })?;
        events.insert(0, Event::PlotAdded(Box::new(info.clone())));
        Ok((info, events))
    }

    /// Unregisters a plot; with `delete_files` also deletes the plot and cache files.
    pub fn remove(
        &mut self,
        id: &Uuid,
        delete_files: bool,
    ) -> Result<(Removed, Vec<Event>), DaemonError> {
        let entry = self
            .entries
            .get(id)
            .ok_or_else(|| DaemonError::PlotNotFound { id: id.to_string() })?;
        let info = entry.info();
        let mut deleted = Vec::new();
        if delete_files {
            let cache = entry
                .cache_path
                .clone()
                .unwrap_or_else(|| MerkleCache::path_for(&entry.path));
            for p in [entry.path.clone(), cache] {
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
        } else {
            self.ignored
                .insert(entry.path.clone(), stat_fingerprint(&entry.path));
        }
        self.entries.remove(id);
        self.dirty = true;
        let mut events = vec![Event::PlotRemoved {
            plot_id: *id,
            path: info.path.clone(),
            files_deleted: delete_files,
        }];
        events.extend(self.update_duplicates());
        Ok(((info, deleted), events))
    }

    /// Marks a plot corrupted (e.g. after a failed check); `sticky` keeps it so until its
    /// file changes.
    pub fn mark_corrupted(&mut self, id: &Uuid, reason: &str, sticky: bool) -> Vec<Event> {
        let Some(e) = self.entries.get_mut(id) else {
            return Vec::new();
        };
        let old = e.state;
        e.state = PlotState::Corrupted;
        e.problem = Some(reason.to_owned());
        e.sticky = sticky;
        e.file = None;
        e.cache = None;
        e.duplicate_of = None;
        e.fingerprint = stat_fingerprint(&e.path);
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
    /// re-opened. Only files whose length or mtime changed are opened again.
    pub fn reconcile_directory(&mut self, skip: &[PathBuf]) -> Vec<Event> {
        let mut events = Vec::new();
        // Existing entries first.
        let ids: Vec<Uuid> = self.entries.keys().copied().collect();
        for id in ids {
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            let now = stat_fingerprint(&e.path);
            let reload = match (e.state, &now) {
                (PlotState::Missing, Some(_)) => true,
                (PlotState::Missing, None) => false,
                (_, None) => true,
                (_, Some(fp)) => e.fingerprint.as_ref() != Some(fp),
            };
            if !reload {
                continue;
            }
            let old = e.state;
            let old_problem = e.problem.clone();
            e.load(&self.miner_pk);
            if e.state != old || (e.state == PlotState::Corrupted && e.problem != old_problem) {
                self.dirty = true;
                events.push(Event::PlotStateChanged {
                    plot_id: id,
                    path: e.path.clone(),
                    old,
                    new: e.state,
                    reason: e.problem.clone().unwrap_or_default(),
                });
            } else if e.state == PlotState::Valid {
                self.dirty = true; // size or root may have changed
            }
        }
        // Then new files.
        let dir = match std::fs::read_dir(&self.plot_dir) {
            Ok(d) => d,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %self.plot_dir.display(), error = %e, "cannot read the plot directory");
                }
                events.extend(self.update_duplicates());
                return events;
            }
        };
        let mut found: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|d| d.path())
            .filter(|p| p.extension().is_some_and(|x| x == "plot") && p.is_file())
            .collect();
        found.sort();
        for path in found {
            if skip.contains(&path) || self.find_path(&path).is_some() {
                continue;
            }
            if let Some(fp) = self.ignored.get(&path) {
                if *fp == stat_fingerprint(&path) {
                    continue;
                }
            }
            match self.register(Uuid::new_v4(), &path, None) {
                Ok((_, ev)) => events.extend(ev),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot register plot")
                }
            }
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

    /// Writes the metadata file atomically.
    pub fn save(&mut self) -> Result<(), DaemonError> {
        if let Some(dir) = self.metadata_path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DaemonError::internal(format!("creating {}", dir.display()), e))?;
        }
        spacetime::metadata::save_atomic(&self.metadata_path, &self.to_metadata()).map_err(
            |e| DaemonError::internal(format!("writing {}", self.metadata_path.display()), e),
        )?;
        self.dirty = false;
        Ok(())
    }

    /// Writes the metadata file if anything changed since the last write.
    pub fn save_if_dirty(&mut self) -> Result<(), DaemonError> {
        if self.dirty {
            self.save()
        } else {
            Ok(())
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
        let a = f.plots.join("a.plot");
        make_plot(&a, 1, 64);
        let (mut reg, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        reg.reconcile_directory(&[]);
        let id = reg.find_path(&a).unwrap();
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
        let a = f.plots.join("a.plot");
        make_plot(&a, 1, 64);
        let (mut reg, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        reg.reconcile_directory(&[]);
        let id = reg.find_path(&a).unwrap();
        reg.mark_corrupted(&id, "check failed", true);
        reg.reconcile_directory(&[]);
        assert_eq!(reg.info(&id).unwrap().state, PlotState::Corrupted);
        reg.save().unwrap();
        let (reg2, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
        assert_eq!(reg2.info(&id).unwrap().state, PlotState::Corrupted);
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
        // The key it was made for farms it (a registry of its own: this one recorded it as
        // corrupted, which sticks until the file changes).
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
