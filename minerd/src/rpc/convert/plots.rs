//! Plots, plot jobs and checks.

use spacetime::plot::CheckProgress;
use spacetime_proto::pb;

use super::ms;
use crate::plots::follow::{CheckUpdate, JobUpdate};
use crate::plots::{CheckOutcome, JobInfo, JobOutcome, JobProgress, JobState, PlotInfo, PlotState};

impl From<PlotState> for pb::PlotState {
    fn from(s: PlotState) -> Self {
        match s {
            PlotState::Valid => pb::PlotState::Valid,
            PlotState::Corrupted => pb::PlotState::Corrupted,
            PlotState::Missing => pb::PlotState::Missing,
            PlotState::Creating => pb::PlotState::Creating,
            PlotState::Duplicate => pb::PlotState::Duplicate,
            PlotState::WrongKey => pb::PlotState::WrongKey,
        }
    }
}

impl From<&JobProgress> for pb::PlotJobProgress {
    fn from(p: &JobProgress) -> Self {
        pb::PlotJobProgress {
            leaves_done: p.leaves_done,
            leaves_total: p.leaves_total,
            bytes_written: p.bytes_written,
            leaves_per_second: p.leaves_per_sec,
            eta_ms: p.eta.map(ms),
        }
    }
}

impl From<&PlotInfo> for pb::Plot {
    fn from(p: &PlotInfo) -> Self {
        pb::Plot {
            plot_id: p.id.to_string(),
            file_path: p.path.to_string_lossy().into_owned(),
            cache_file_path: p
                .cache_path
                .as_ref()
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default(),
            state: pb::PlotState::from(p.state) as i32,
            size_bytes: p.size_bytes,
            leaf_count: p.header.map(|h| h.leaf_count).unwrap_or_default(),
            tree_height: p
                .header
                .map(|h| u32::try_from(h.tree_height).unwrap_or(u32::MAX))
                .unwrap_or_default(),
            seed: p.header.map(|h| h.seed.to_vec()).unwrap_or_default(),
            merkle_root: p.merkle_root.map(|r| r.to_vec()).unwrap_or_default(),
            created_at_utc: p.created_at_utc.clone(),
            problem: p.problem.clone().unwrap_or_default(),
            duplicate_of: p.duplicate_of.map(|d| d.to_string()).unwrap_or_default(),
            cache_in_use: p.cache_in_use,
            progress: p.progress.as_ref().map(Into::into),
            cache_levels: p.cache_levels,
            cache_disabled: p.cache_disabled,
            last_check: p.last_check.map(|c| pb::LastCheck {
                at_unix_ms: c.at_unix_ms,
                ok: c.ok,
                full: c.full,
                checked: c.checked,
            }),
        }
    }
}

impl From<JobState> for pb::PlotJobState {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Queued => pb::PlotJobState::Queued,
            JobState::Running => pb::PlotJobState::Running,
            JobState::Cancelling => pb::PlotJobState::Cancelling,
        }
    }
}

impl From<&JobInfo> for pb::PlotJob {
    fn from(j: &JobInfo) -> Self {
        pb::PlotJob {
            job_id: j.id.to_string(),
            file_path: j.path.to_string_lossy().into_owned(),
            leaf_count: j.leaf_count,
            cache_levels: j.cache_levels.unwrap_or_default(),
            seed: j.seed.to_vec(),
            state: pb::PlotJobState::from(j.state) as i32,
            created_at_unix_ms: crate::timefmt::unix_ms(j.created_at),
            progress: Some((&j.progress).into()),
        }
    }
}

impl From<JobOutcome> for pb::PlotJobOutcome {
    fn from(o: JobOutcome) -> Self {
        match o {
            JobOutcome::Succeeded => pb::PlotJobOutcome::Succeeded,
            JobOutcome::Failed => pb::PlotJobOutcome::Failed,
            JobOutcome::Cancelled => pb::PlotJobOutcome::Cancelled,
        }
    }
}

/// Progress of a check.
pub fn check_progress(p: CheckProgress) -> pb::CheckProgress {
    pb::CheckProgress {
        done: p.done,
        total: p.total,
    }
}

/// The report of a check (the plot's state after it included). `ok` is about the plot's own
/// data: a cache that does not match is a finding, not a failure of the plot.
pub fn check_report(outcome: &CheckOutcome) -> pb::CheckReport {
    let (plot, r) = (&outcome.plot, &outcome.report);
    let mut findings = Vec::new();
    if !r.plot_ok() {
        findings.push(crate::plots::registry::describe_failure(r));
    }
    if !r.leaves_regenerated {
        findings.push("leaves were not regenerated from the miner key".into());
    }
    findings.extend(outcome.notes.iter().cloned());
    pb::CheckReport {
        plot_id: plot.as_ref().map(|p| p.id.to_string()).unwrap_or_default(),
        ok: r.plot_ok(),
        checked: r.leaves_checked.max(r.paths_checked),
        failures: r.bad_leaves + r.bad_paths + u64::from(r.root_ok == Some(false)),
        findings,
        elapsed_ms: ms(r.elapsed),
        state: plot
            .as_ref()
            .map(|p| pb::PlotState::from(p.state) as i32)
            .unwrap_or_default(),
        full: r.root_ok.is_some(),
        file_path: outcome.path.to_string_lossy().into_owned(),
    }
}

/// The first message of a `CreatePlot` stream: the job as queued.
pub fn job_started(job: &JobInfo) -> pb::CreatePlotResponse {
    pb::CreatePlotResponse {
        kind: Some(pb::create_plot_response::Kind::Started(job.into())),
    }
}

/// A later message of a `CreatePlot` stream.
pub fn job_update(u: JobUpdate) -> pb::CreatePlotResponse {
    use pb::create_plot_response::Kind;
    let kind = match u {
        JobUpdate::Progress(p) => Kind::Progress((&p).into()),
        JobUpdate::Finished(plot) => Kind::Finished(plot.as_ref().into()),
    };
    pb::CreatePlotResponse { kind: Some(kind) }
}

/// A message of a `CheckPlot` stream.
pub fn check_update(u: CheckUpdate) -> pb::CheckPlotResponse {
    use pb::check_plot_response::Kind;
    let kind = match u {
        CheckUpdate::Progress(p) => Kind::Progress(check_progress(p)),
        CheckUpdate::Report(outcome) => Kind::Report(check_report(&outcome)),
    };
    pb::CheckPlotResponse { kind: Some(kind) }
}
