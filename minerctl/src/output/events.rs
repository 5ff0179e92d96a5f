//! Rendering of the event feed (`minerctl events`): one line of text or one JSON object
//! per event.

use serde_json::{json, Value};
use spacetime_proto::pb;
use spacetime_proto::pb::watch_events_response::Event as E;

use super::{
    duration_ms, outcome, plot_json, plot_state, progress_json, progress_text, scan_json,
    scan_text, short_hex,
};

fn event_parts(ev: &pb::WatchEventsResponse) -> (&'static str, Value, String) {
    match &ev.event {
        Some(E::ChallengeReceived(e)) => (
            "challengeReceived",
            json!({"epoch": e.epoch, "challenge": hex::encode(&e.challenge), "difficulty": e.difficulty, "tipHeight": e.tip_height, "deadlineUnixMs": e.deadline_unix_ms}),
            format!(
                "epoch {} challenge {} difficulty {}",
                e.epoch,
                short_hex(&e.challenge),
                e.difficulty
            ),
        ),
        Some(E::ProofFound(e)) => (
            "proofFound",
            json!({"epoch": e.epoch, "score": hex::encode(&e.score), "plotId": e.plot_id, "leafIndex": e.leaf_index, "latencyMs": e.latency_ms}),
            format!(
                "epoch {} score {} from plot {} leaf {} in {} ms",
                e.epoch,
                short_hex(&e.score),
                e.plot_id,
                e.leaf_index,
                e.latency_ms
            ),
        ),
        Some(E::ProofSubmitted(e)) => (
            "proofSubmitted",
            json!({"epoch": e.epoch, "score": hex::encode(&e.score), "blockHeight": e.block_height, "latencyMs": e.latency_ms}),
            format!(
                "epoch {} height {} score {} after {} ms",
                e.epoch,
                e.block_height,
                short_hex(&e.score),
                e.latency_ms
            ),
        ),
        Some(E::BlockWon(e)) => (
            "blockWon",
            json!({"epoch": e.epoch, "height": e.height, "blockHash": hex::encode(&e.block_hash), "transactions": e.transactions}),
            format!(
                "epoch {} height {} block {} ({} txs)",
                e.epoch,
                e.height,
                short_hex(&e.block_hash),
                e.transactions
            ),
        ),
        Some(E::BlockAccepted(e)) => (
            "blockAccepted",
            json!({"height": e.height, "blockHash": hex::encode(&e.block_hash)}),
            format!("height {} block {}", e.height, short_hex(&e.block_hash)),
        ),
        Some(E::EpochLate(e)) => (
            "epochLate",
            json!({"epoch": e.epoch, "lateByMs": e.late_by_ms, "what": e.what}),
            format!("epoch {} {} late by {} ms", e.epoch, e.what, e.late_by_ms),
        ),
        Some(E::EpochMissed(e)) => (
            "epochMissed",
            json!({"epoch": e.epoch, "reason": e.reason}),
            format!("epoch {}: {}", e.epoch, e.reason),
        ),
        Some(E::EpochScan(e)) => ("epochScan", scan_json(e), scan_text(e)),
        Some(E::FarmSizeChanged(e)) => {
            let (json, text) = super::farm::changed_parts(e);
            ("farmSizeChanged", json, text)
        }
        Some(E::PlotAdded(e)) => {
            let p = e.plot.clone().unwrap_or_default();
            (
                "plotAdded",
                json!({"plot": plot_json(&p)}),
                format!("{} {} ({})", p.plot_id, p.file_path, plot_state(p.state)),
            )
        }
        Some(E::PlotRemoved(e)) => (
            "plotRemoved",
            json!({"plotId": e.plot_id, "filePath": e.file_path, "filesDeleted": e.files_deleted}),
            format!(
                "{} {}{}",
                e.plot_id,
                e.file_path,
                if e.files_deleted {
                    " (files deleted)"
                } else {
                    ""
                }
            ),
        ),
        Some(E::PlotStateChanged(e)) => (
            "plotStateChanged",
            json!({"plotId": e.plot_id, "filePath": e.file_path, "oldState": plot_state(e.old_state), "newState": plot_state(e.new_state), "reason": e.reason}),
            format!(
                "{} {} -> {} {}",
                e.plot_id,
                plot_state(e.old_state),
                plot_state(e.new_state),
                e.reason
            ),
        ),
        Some(E::PlotJobProgress(e)) => {
            let p = e.progress.unwrap_or_default();
            (
                "plotJobProgress",
                json!({"jobId": e.job_id, "progress": progress_json(&p)}),
                format!("{} {}", e.job_id, progress_text(&p)),
            )
        }
        Some(E::PlotJobFinished(e)) => (
            "plotJobFinished",
            json!({"jobId": e.job_id, "filePath": e.file_path, "outcome": outcome(e.outcome), "error": e.error, "elapsedMs": e.elapsed_ms}),
            format!(
                "{} {} after {}{}",
                e.job_id,
                outcome(e.outcome),
                duration_ms(e.elapsed_ms),
                if e.error.is_empty() {
                    String::new()
                } else {
                    format!(": {}", e.error)
                }
            ),
        ),
        Some(E::NodeConnected(e)) => (
            "nodeConnected",
            json!({"address": e.address, "peerUserAgent": e.peer_user_agent}),
            format!("{} ({})", e.address, e.peer_user_agent),
        ),
        Some(E::NodeDisconnected(e)) => (
            "nodeDisconnected",
            json!({"address": e.address, "reason": e.reason}),
            format!("{}: {}", e.address, e.reason),
        ),
        Some(E::MiningToggled(e)) => (
            "miningToggled",
            json!({"enabled": e.enabled}),
            if e.enabled { "enabled" } else { "disabled" }.into(),
        ),
        Some(E::Lagged(e)) => (
            "lagged",
            json!({"missed": e.missed}),
            format!("missed {} events (too slow)", e.missed),
        ),
        None => ("unknown", Value::Null, String::new()),
    }
}

/// An event as one JSON object: `{"sequence", "timeUnixMs", "type", "data"}`.
pub fn event_json(ev: &pb::WatchEventsResponse) -> Value {
    let (kind, data, _) = event_parts(ev);
    json!({"sequence": ev.sequence, "timeUnixMs": ev.time_unix_ms, "type": kind, "data": data})
}

/// An event as one text line: `<time> <type> <details>`.
pub fn event_text(ev: &pb::WatchEventsResponse) -> String {
    let (kind, _, text) = event_parts(ev);
    let secs = ev.time_unix_ms.div_euclid(1000);
    let t = format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs.rem_euclid(86_400) / 3600,
        secs.rem_euclid(3600) / 60,
        secs.rem_euclid(60),
        ev.time_unix_ms.rem_euclid(1000)
    );
    format!("{t} {kind:<17} {text}")
}
