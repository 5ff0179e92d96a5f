//! Rendering of the farm's layout and size in the status: the plot directories with their
//! totals, and the farm-size warning.

use serde_json::{json, Value};
use spacetime_proto::pb;

use super::{bytes, si};

/// The plot directories as JSON.
pub fn dirs_json(dirs: &[pb::PlotDirectory]) -> Value {
    Value::Array(
        dirs.iter()
            .map(|d| {
                json!({
                    "path": d.path,
                    "configured": d.configured,
                    "plots": d.plots,
                    "valid": d.valid,
                    "leaves": d.leaves,
                    "farmedBytes": d.farmed_bytes,
                    "leavesScanned": d.leaves_scanned,
                    "freeBytes": d.free_bytes,
                    "device": d.device,
                })
            })
            .collect(),
    )
}

/// One line per directory: `/mnt/a: 2 valid of 2 plots, 4194304 leaves, 128.0 MiB farmed,
/// 4194304 leaves scored last epoch, 1.2 TiB free (device 2049)`.
pub fn dirs_text(dirs: &[pb::PlotDirectory]) -> Vec<String> {
    dirs.iter()
        .map(|d| {
            let mut s = format!(
                "{}: {} valid of {} plots, {} leaves, {} farmed",
                d.path,
                d.valid,
                d.plots,
                d.leaves,
                bytes(d.farmed_bytes)
            );
            if d.valid > 0 {
                s.push_str(&format!(", {} leaves scored last epoch", d.leaves_scanned));
            }
            if let Some(free) = d.free_bytes {
                s.push_str(&format!(", {} free", bytes(free)));
            }
            if let Some(dev) = d.device {
                s.push_str(&format!(" (device {dev})"));
            }
            if !d.configured {
                s.push_str(" (not a plot directory: plots registered with --output)");
            }
            s
        })
        .collect()
}

/// The farm-size warning as JSON.
pub fn warning_json(w: &pb::FarmSizeWarning) -> Value {
    json!({
        "epoch": w.epoch,
        "leavesFarmed": w.leaves_farmed,
        "leavesWanted": w.leaves_wanted,
        "leavesScanned": w.leaves_scanned,
        "leavesPerSecond": w.leaves_per_second,
        "scanWindowMs": w.scan_window_ms,
        "capacityLeaves": w.capacity_leaves,
        "epochsShort": w.epochs_short,
        "epochsAssessed": w.epochs_assessed,
    })
}

/// The farm-size warning in one line.
pub fn warning_text(w: &pb::FarmSizeWarning) -> String {
    let pct = if w.leaves_wanted == 0 {
        100.0
    } else {
        w.leaves_scanned as f64 * 100.0 / w.leaves_wanted as f64
    };
    format!(
        "farm larger than this machine scores in an epoch: epoch {} scored {} of {} leaves \
         ({pct:.1}%); {} leaves/s in a {} ms scan window scores about {} ({} of the last {} \
         epochs short)",
        w.epoch,
        w.leaves_scanned,
        w.leaves_wanted,
        si(w.leaves_per_second),
        w.scan_window_ms,
        w.capacity_leaves,
        w.epochs_short,
        w.epochs_assessed
    )
}

/// The farm-size event: raised with its figures, or cleared.
pub fn changed_parts(e: &pb::FarmSizeChanged) -> (Value, String) {
    match &e.warning {
        Some(w) => (
            json!({"warning": warning_json(w)}),
            format!("warning: {}", warning_text(w)),
        ),
        None => (
            json!({"warning": null}),
            "cleared: the last epochs scored the whole farm".into(),
        ),
    }
}
