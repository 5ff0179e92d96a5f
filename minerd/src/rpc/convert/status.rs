//! The status snapshot.

use spacetime_proto::pb;

use super::ms;
use crate::context::{DaemonStatus, MiningState};
use crate::farm_size::FarmSizeWarning;
use crate::plots::DirSummary;
use crate::stats::{Counters, EpochInfo, EpochScan, LinkState, LinkStatus};
use crate::timefmt::unix_ms;

impl From<MiningState> for pb::MiningState {
    fn from(s: MiningState) -> Self {
        match s {
            MiningState::Stopped => pb::MiningState::Stopped,
            MiningState::WaitingForNode => pb::MiningState::WaitingForNode,
            MiningState::WaitingForPlots => pb::MiningState::WaitingForPlots,
            MiningState::Active => pb::MiningState::Active,
        }
    }
}

impl From<LinkState> for pb::LinkState {
    fn from(s: LinkState) -> Self {
        match s {
            LinkState::Disabled => pb::LinkState::Disabled,
            LinkState::Disconnected => pb::LinkState::Disconnected,
            LinkState::Connecting => pb::LinkState::Connecting,
            LinkState::Connected => pb::LinkState::Connected,
            LinkState::Unreachable => pb::LinkState::Unreachable,
        }
    }
}

impl From<&LinkStatus> for pb::NodeLink {
    fn from(l: &LinkStatus) -> Self {
        pb::NodeLink {
            state: pb::LinkState::from(l.state) as i32,
            address: l.address.clone(),
            last_error: l.last_error.clone().unwrap_or_default(),
            connected_since_unix_ms: l.connected_since.map(unix_ms).unwrap_or_default(),
            failed_attempts: l.failed_attempts,
            peer_user_agent: l.peer_user_agent.clone().unwrap_or_default(),
        }
    }
}

impl From<&EpochInfo> for pb::EpochInfo {
    fn from(e: &EpochInfo) -> Self {
        pb::EpochInfo {
            epoch: e.epoch,
            tip_height: e.tip_height,
            tip_hash: e.tip_hash.to_vec(),
            challenge: e.challenge.to_vec(),
            difficulty: e.difficulty,
            deadline_unix_ms: e.deadline_unix_ms,
            received_at_unix_ms: unix_ms(e.received_at),
        }
    }
}

impl From<&Counters> for pb::Counters {
    fn from(c: &Counters) -> Self {
        pb::Counters {
            challenges_received: c.challenges_received,
            proofs_generated: c.proofs_generated,
            proofs_submitted: c.proofs_submitted,
            blocks_won: c.blocks_won,
            blocks_accepted: c.blocks_accepted,
            late_epochs: c.late_epochs,
            missed_epochs: c.missed_epochs,
        }
    }
}

impl From<&EpochScan> for pb::EpochScan {
    fn from(e: &EpochScan) -> Self {
        pb::EpochScan {
            epoch: e.epoch,
            leaves_scanned: e.leaves_scanned,
            leaves_total: e.leaves_total,
            leaves_per_second: e.leaves_per_sec,
            eta_ms: e.eta.map(ms),
            leaves_farmed: e.leaves_farmed,
            finished: e.finished,
        }
    }
}

impl From<&DirSummary> for pb::PlotDirectory {
    fn from(d: &DirSummary) -> Self {
        pb::PlotDirectory {
            path: d.path.to_string_lossy().into_owned(),
            configured: d.configured,
            plots: d.plots,
            valid: d.valid,
            leaves: d.leaves,
            farmed_bytes: d.farmed_bytes,
            leaves_scanned: d.leaves_scanned,
            free_bytes: d.disk.free_bytes,
            device: d.disk.device,
        }
    }
}

impl From<&FarmSizeWarning> for pb::FarmSizeWarning {
    fn from(w: &FarmSizeWarning) -> Self {
        let f = &w.figures;
        pb::FarmSizeWarning {
            epoch: f.epoch,
            leaves_farmed: f.leaves_farmed,
            leaves_wanted: f.leaves_wanted,
            leaves_scanned: f.leaves_scanned,
            leaves_per_second: f.leaves_per_sec,
            scan_window_ms: ms(f.scan_window),
            capacity_leaves: f.capacity(),
            epochs_short: w.epochs_short,
            epochs_assessed: w.epochs_assessed,
        }
    }
}

impl From<&DaemonStatus> for pb::Status {
    fn from(s: &DaemonStatus) -> Self {
        pb::Status {
            version: s.version.to_owned(),
            network_id: s.network_id.clone(),
            miner_public_key: s.public_key.to_vec(),
            miner_id: s.miner_id.to_vec(),
            uptime_ms: ms(s.uptime),
            started_at_unix_ms: unix_ms(s.started_at),
            mining_enabled: s.mining_enabled,
            mining_state: pb::MiningState::from(s.mining_state) as i32,
            node: Some((&s.mining.link).into()),
            epoch: s.mining.epoch.as_ref().map(Into::into),
            counters: Some((&s.mining.counters).into()),
            last_proof_latency_ms: s.mining.last_proof_latency.map(ms),
            plots: Some(pb::PlotSummary {
                total: s.plots.total,
                valid: s.plots.valid,
                corrupted: s.plots.corrupted,
                missing: s.plots.missing,
                duplicate: s.plots.duplicate,
                farmed_bytes: s.plots.farmed_bytes,
            }),
            plot_jobs: u32::try_from(s.plot_jobs).unwrap_or(u32::MAX),
            shutting_down: s.shutting_down,
            lifetime_counters: Some((&s.lifetime).into()),
            expected_time_to_win_ms: s.mining.expected_time_to_win.map(ms),
            scan: s.mining.scan.as_ref().map(Into::into),
            last_scan: s.mining.last_scan.as_ref().map(Into::into),
            plot_directories: s.plot_dirs.iter().map(Into::into).collect(),
            farm_size_warning: s.mining.farm.warning().as_ref().map(Into::into),
        }
    }
}
