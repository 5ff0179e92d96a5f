//! Registry tests: load, scan, states, checks, persistence.

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

/// Audit row 12: one invalid UTF-8 byte in `plots_metadata.json` stopped the daemon from
/// starting. It is corruption like any other: kept aside, rebuilt from the plot directory.
#[test]
fn invalid_utf8_metadata_is_corruption_not_a_fatal_error() {
    let f = fixture();
    make_plot(&f.plots.join("a.plot"), 1, 64);
    std::fs::write(&f.meta, b"[{\"plotId\": \"\xff\"}]").unwrap();
    let (mut reg, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
    reg.reconcile_directory(&[]);
    reg.save_if_dirty().unwrap();
    assert_eq!(reg.list().len(), 1);
    let aside = std::fs::read_dir(f.meta.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|d| d.file_name().to_string_lossy().contains(".corrupt."))
        .count();
    assert_eq!(aside, 1);
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
    let meta =
        spacetime::metadata::parse_metadata(&std::fs::read_to_string(&f.meta).unwrap()).unwrap();
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
    let meta =
        spacetime::metadata::parse_metadata(&std::fs::read_to_string(&f.meta).unwrap()).unwrap();
    let rec = meta.iter().find(|m| m.plot_id == id).unwrap();
    assert_eq!(rec.status, PlotStatus::Corrupted);
    // Reloaded: wrong-key again, nothing to rewrite, a rescan changes nothing.
    let (mut again, _) = Registry::load(&f.meta, &f.plots, PK).unwrap();
    assert_eq!(again.info(&id).unwrap().state, PlotState::WrongKey);
    assert!(!again.dirty);
    assert!(again.reconcile_directory(&[]).is_empty());
    // The key it was made for farms it (in a registry of its own).
    let (mut theirs, _) = Registry::load(&f.plots.join("theirs.json"), &f.plots, [8; 32]).unwrap();
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

/// Durability of a save: `plots_metadata.json`, then its choices and failed-check record,
/// each written through the atomic writer. A crash at any step of any of the three leaves
/// the files before it new, that one old or new, the ones after it old; each parses, and
/// the next start removes the temporary.
#[test]
fn a_crash_at_any_step_of_a_save_leaves_each_file_old_or_new() {
    use spacetime::atomic_file::{crash_points::crashed_writing, remove_stale_temporaries, Step};
    let read = |paths: &[PathBuf]| -> Vec<Option<Vec<u8>>> {
        paths.iter().map(|p| std::fs::read(p).ok()).collect()
    };
    for which in 0..3 {
        for step in Step::ALL {
            let f = fixture();
            let files = [
                f.meta.clone(),
                crate::plots::choices::choices_path(&f.meta),
                failed_checks_path(&f.meta),
            ];
            let (a, mut reg, id) = one_plot(&f);
            reg.set_cache_disabled(&id);
            reg.save().unwrap();
            let old = read(&files);
            make_plot(&f.plots.join("b.plot"), 2, 64);
            reg.reconcile_directory(&[]);
            let b = reg.find_path(&f.plots.join("b.plot")).unwrap();
            reg.set_cache_disabled(&b);
            reg.mark_corrupted(&id, "check failed: leaf 5", true, stat_fingerprint(&a));
            let target = &files[which];
            crashed_writing(target, step, || reg.save()).unwrap_err();
            let now = read(&files);
            reg.save().unwrap();
            let new = read(&files);
            for i in 0..3 {
                let expected = if i < which || (i == which && step == Step::Renamed) {
                    &new[i]
                } else {
                    &old[i]
                };
                assert_eq!(
                    &now[i], expected,
                    "file {i}, crash in file {which} at {step:?}"
                );
            }
            assert!(
                old.iter().zip(&new).all(|(o, n)| o != n),
                "every file changes"
            );
            assert!(spacetime::metadata::load(&f.meta).is_ok());
            // A real crash would have left the temporary of the interrupted write (the
            // save that followed left none of its own): the next start removes it.
            let temps = files
                .iter()
                .flat_map(|p| remove_stale_temporaries(p))
                .count();
            assert_eq!(temps, usize::from(step != Step::Renamed), "{step:?}");
        }
    }
}
