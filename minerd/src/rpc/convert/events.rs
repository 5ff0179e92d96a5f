//! The event feed.

use spacetime_proto::pb;
use spacetime_proto::pb::watch_events_response::Event as E;

use super::ms;
use crate::events::{Envelope, Event};
use crate::timefmt::unix_ms;

/// The wire form of one event.
pub fn event(env: &Envelope) -> pb::WatchEventsResponse {
    pb::WatchEventsResponse {
        sequence: env.sequence,
        time_unix_ms: unix_ms(env.time),
        event: Some(body(&env.event)),
    }
}

/// A synthetic "you missed `n` events" message.
pub fn lagged(n: u64) -> pb::WatchEventsResponse {
    pb::WatchEventsResponse {
        sequence: 0,
        time_unix_ms: unix_ms(std::time::SystemTime::now()),
        event: Some(E::Lagged(pb::Lagged { missed: n })),
    }
}

fn body(e: &Event) -> E {
    match e {
        Event::ChallengeReceived {
            epoch,
            challenge,
            difficulty,
            tip_height,
            deadline_unix_ms,
        } => E::ChallengeReceived(pb::ChallengeReceived {
            epoch: *epoch,
            challenge: challenge.to_vec(),
            difficulty: *difficulty,
            tip_height: *tip_height,
            deadline_unix_ms: *deadline_unix_ms,
        }),
        Event::ProofFound {
            epoch,
            score,
            plot_id,
            leaf_index,
            latency,
        } => E::ProofFound(pb::ProofFound {
            epoch: *epoch,
            score: score.to_vec(),
            plot_id: plot_id.to_string(),
            leaf_index: *leaf_index,
            latency_ms: ms(*latency),
        }),
        Event::ProofSubmitted {
            epoch,
            score,
            block_height,
            latency,
        } => E::ProofSubmitted(pb::ProofSubmitted {
            epoch: *epoch,
            score: score.to_vec(),
            block_height: *block_height,
            latency_ms: ms(*latency),
        }),
        Event::BlockWon {
            epoch,
            height,
            block_hash,
            transactions,
        } => E::BlockWon(pb::BlockWon {
            epoch: *epoch,
            height: *height,
            block_hash: block_hash.to_vec(),
            transactions: *transactions,
        }),
        Event::BlockAccepted { height, block_hash } => E::BlockAccepted(pb::BlockAccepted {
            height: *height,
            block_hash: block_hash.to_vec(),
        }),
        Event::EpochLate {
            epoch,
            late_by,
            what,
        } => E::EpochLate(pb::EpochLate {
            epoch: *epoch,
            late_by_ms: ms(*late_by),
            what: what.as_str().to_owned(),
        }),
        Event::EpochMissed { epoch, reason } => E::EpochMissed(pb::EpochMissed {
            epoch: *epoch,
            reason: reason.clone(),
        }),
        Event::EpochScan(s) => E::EpochScan(s.into()),
        Event::FarmSizeChanged(w) => E::FarmSizeChanged(pb::FarmSizeChanged {
            warning: w.as_ref().map(Into::into),
        }),
        Event::PlotAdded(p) => E::PlotAdded(pb::PlotAdded {
            plot: Some(p.as_ref().into()),
        }),
        Event::PlotRemoved {
            plot_id,
            path,
            files_deleted,
        } => E::PlotRemoved(pb::PlotRemoved {
            plot_id: plot_id.to_string(),
            file_path: path.to_string_lossy().into_owned(),
            files_deleted: *files_deleted,
        }),
        Event::PlotStateChanged {
            plot_id,
            path,
            old,
            new,
            reason,
        } => E::PlotStateChanged(pb::PlotStateChanged {
            plot_id: plot_id.to_string(),
            file_path: path.to_string_lossy().into_owned(),
            old_state: pb::PlotState::from(*old) as i32,
            new_state: pb::PlotState::from(*new) as i32,
            reason: reason.clone(),
        }),
        Event::PlotJobProgress { job_id, progress } => E::PlotJobProgress(pb::PlotJobProgressed {
            job_id: job_id.to_string(),
            progress: Some(progress.into()),
        }),
        Event::PlotJobFinished {
            job_id,
            path,
            outcome,
            error,
            elapsed,
        } => E::PlotJobFinished(pb::PlotJobFinished {
            job_id: job_id.to_string(),
            file_path: path.to_string_lossy().into_owned(),
            outcome: pb::PlotJobOutcome::from(*outcome) as i32,
            error: error.clone().unwrap_or_default(),
            elapsed_ms: ms(*elapsed),
        }),
        Event::NodeConnected {
            address,
            user_agent,
        } => E::NodeConnected(pb::NodeConnected {
            address: address.clone(),
            peer_user_agent: user_agent.clone(),
        }),
        Event::NodeDisconnected { address, reason } => E::NodeDisconnected(pb::NodeDisconnected {
            address: address.clone(),
            reason: reason.clone(),
        }),
        Event::MiningToggled { enabled } => {
            E::MiningToggled(pb::MiningToggled { enabled: *enabled })
        }
    }
}
