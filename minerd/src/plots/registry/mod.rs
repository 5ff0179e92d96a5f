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
//! directory scan while the file holds the same plot (same seed), across restarts: see
//! `plots/choices.rs`, which also keeps which plots have no cache by choice and their last
//! check.
//!
//! File I/O (opening plots, reading caches, writing the metadata) is split from the
//! in-memory updates ([`Probe`], [`ScanPlan`], [`PendingSave`]) so that the plot manager
//! never holds its lock across it.

mod entry;
mod failed_checks;
mod files;
mod probe;
mod save;
mod scan;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use spacetime::metadata::{PlotMetadataEntry, PlotStatus};
use uuid::Uuid;

use super::choices::{unix_nanos as choice_nanos, Choices, LastCheck, Unregistered};
use super::dirs::{Counted, DirSummary, DiskInfo, PlotDirs};
use super::ids::resolve_id;
use super::FarmedPlot;
use crate::error::DaemonError;
use crate::events::Event;
use crate::timefmt;
pub use crate::types::{PlotInfo, PlotState};
use entry::Entry;
pub(crate) use entry::{stat_fingerprint, Fingerprint};
pub use failed_checks::failed_checks_path;
use failed_checks::{read_failed_checks, unix_nanos, FailedCheck};
pub use files::{check_owned, delete_plot_files, remove_stale_temporaries, Owned};
pub use probe::{describe_failure, Probe};
pub use save::PendingSave;
use scan::KnownPlot;
pub use scan::{ScanPlan, ScanResult};

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

/// The registry. Not thread-safe by itself: [`super::PlotManager`] wraps it in a mutex.
#[derive(Debug)]
pub struct Registry {
    metadata_path: PathBuf,
    /// The miner's public key: plots must be made for it.
    miner_pk: [u8; 32],
    plot_dirs: PlotDirs,
    /// Free space and device of each plot directory (in `plot_dirs` order), as the last
    /// directory scan measured them.
    disks: Vec<DiskInfo>,
    entries: BTreeMap<Uuid, Entry>,
    next_seq: u64,
    dirty: bool,
    /// Files removed without deleting them, with their fingerprint at removal.
    ignored: HashMap<PathBuf, Option<Fingerprint>>,
    /// The operator's choices (persisted beside the metadata).
    choices: Choices,
}

impl Registry {
    /// Loads `metadata_path` (missing = empty; corrupt = renamed aside, empty) and opens every
    /// entry, checking that plots are made for `miner_pk`. Returns the registry and what
    /// changed (for logging).
    pub fn load(
        metadata_path: &Path,
        plot_dirs: impl Into<PlotDirs>,
        miner_pk: [u8; 32],
    ) -> Result<(Self, Vec<Event>), DaemonError> {
        let plot_dirs = plot_dirs.into();
        let mut reg = Registry {
            metadata_path: metadata_path.to_owned(),
            miner_pk,
            disks: vec![DiskInfo::default(); plot_dirs.as_slice().len()],
            plot_dirs,
            entries: BTreeMap::new(),
            next_seq: 0,
            dirty: false,
            ignored: HashMap::new(),
            choices: Choices::read(metadata_path),
        };
        for u in &reg.choices.unregistered {
            let modified = u
                .modified_unix_nanos
                .map(|n| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(n));
            reg.ignored
                .insert(u.path.clone(), u.file_length.map(|l| (l, modified)));
        }
        let mut changes = Vec::new();
        // Read with a size bound, as a regular file only; anything that does not decode
        // (bad JSON, invalid UTF-8, too large) is corruption: kept aside, rebuilt.
        let parsed = match spacetime::metadata::load(metadata_path) {
            Ok(entries) => entries,
            Err(e @ spacetime::metadata::MetadataError::Io(_)) => {
                return Err(DaemonError::internal(
                    format!("reading {}", metadata_path.display()),
                    e,
                ))
            }
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
        self.entries.get(id).map(|e| self.entry_info(e))
    }

    fn entry_info(&self, e: &Entry) -> PlotInfo {
        PlotInfo {
            cache_disabled: self.choices.no_cache.contains(&e.id),
            last_check: self.choices.last_checks.get(&e.id).copied(),
            ..e.info()
        }
    }

    /// Remembers that plot `id` has no cache by choice (created with cache levels 0).
    pub fn set_cache_disabled(&mut self, id: &Uuid) {
        if self.entries.contains_key(id) && self.choices.no_cache.insert(*id) {
            self.dirty = true;
        }
    }

    /// Records the outcome of a check of plot `id`.
    pub fn record_check(&mut self, id: &Uuid, check: LastCheck) {
        if self.entries.contains_key(id) {
            self.choices.last_checks.insert(*id, check);
            self.dirty = true;
        }
    }

    /// Every plot, sorted by path.
    pub fn list(&self) -> Vec<PlotInfo> {
        let mut v: Vec<PlotInfo> = self.entries.values().map(|e| self.entry_info(e)).collect();
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

    /// Totals per plot directory (see [`super::dirs::summarize`]).
    pub fn dir_summaries(&self) -> Vec<DirSummary> {
        super::dirs::summarize(
            &self.plot_dirs,
            &self.disks,
            self.entries.values().map(|e| Counted {
                path: &e.path,
                farmed: e.state == PlotState::Valid,
                leaves: e.header.map_or(0, |h| h.leaf_count),
                bytes: e.size,
            }),
        )
    }

    /// Registers `path` under `id` with what [`Probe::run`] found (no file I/O).
    pub fn register_probed(
        &mut self,
        id: Uuid,
        path: &Path,
        probe: Probe,
    ) -> Result<(PlotInfo, Vec<Event>), DaemonError> {
        if let Some(existing) = self.find_path(path) {
            return Err(DaemonError::PlotRegistered {
                what: format!("plot {existing} at {}", path.display()),
            });
        }
        if self.entries.contains_key(&id) {
            return Err(DaemonError::PlotRegistered {
                what: format!("plot id {id}"),
            });
        }
        self.ignored.remove(path);
        self.choices.forget_unregistered(path);
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
                delete_plot_files(&entry.path, entry.cache_path.as_deref(), &self.plot_dirs)?,
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
        let info = PlotInfo {
            cache_disabled: self.choices.no_cache.contains(id),
            last_check: self.choices.last_checks.get(id).copied(),
            ..entry.info()
        };
        self.choices.forget_plot(id);
        self.choices.forget_unregistered(&entry.path);
        if let Some(fp) = ignore_as {
            self.ignored.insert(entry.path.clone(), fp);
            self.choices.unregistered.push(Unregistered {
                path: entry.path.clone(),
                seed: entry
                    .header
                    .map(|h| hex::encode(h.seed))
                    .unwrap_or_default(),
                file_length: fp.map(|(l, _)| l),
                modified_unix_nanos: fp.and_then(|(_, m)| m).and_then(choice_nanos),
            });
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

    /// The plot directories: the only places whose plots and caches the daemon deletes or
    /// replaces ([`check_owned`]).
    pub fn plot_dirs(&self) -> &PlotDirs {
        &self.plot_dirs
    }

    /// A plot's path, cache path and generation.
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
            plot_dirs: self.plot_dirs.clone(),
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
            ignored_seeds: self
                .choices
                .unregistered
                .iter()
                .map(|u| (u.path.clone(), u.seed.clone()))
                .collect(),
        }
    }

    /// Applies what a scan found (no file I/O). A plot that changed since the plan was made
    /// (checked, removed, registered by a job meanwhile) keeps its newer state.
    pub fn apply_scan(&mut self, found: ScanResult) -> Vec<Event> {
        if found.disks.len() == self.disks.len() {
            self.disks = found.disks;
        }
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
            choices: self.choices.clone(),
        }
    }
}
