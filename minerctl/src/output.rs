//! Rendering: human-readable text and tables, or JSON (`--json`) with camelCase keys, hex for
//! hashes and keys, and enum values as lower-case words.

use std::fmt::Write as _;

use serde_json::{json, Value};
use spacetime_proto::pb;

mod events;
mod farm;
pub use events::{event_json, event_text};

/// Writes to stdout. A closed stdout (`minerctl list-plots | head -1`) ends the program
/// quietly with exit code 0: the reader has what it wanted. Any other write error ends it
/// with exit code 1 and one message. (Rust ignores SIGPIPE, so a write to a closed pipe
/// returns `BrokenPipe` instead of killing the process; `println!` would panic on it.)
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("minerctl: error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints pretty JSON.
pub fn print_json(v: &Value) {
    crate::outln!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// Prints one compact JSON line.
pub fn print_json_line(v: &Value) {
    crate::outln!("{v}");
}

/// What a read command prints: with `--json` the value `to_json` builds, pretty-printed;
/// otherwise the text `to_text` builds.
pub fn print_json_or_text(
    json: bool,
    to_json: impl FnOnce() -> Value,
    to_text: impl FnOnce() -> String,
) {
    if json {
        print_json(&to_json());
    } else {
        crate::out!("{}", to_text());
    }
}

/// A JSON array of `items`, each rendered by `item`.
pub fn json_array<T>(items: &[T], item: impl Fn(&T) -> Value) -> Value {
    Value::Array(items.iter().map(item).collect())
}

/// `1.5 GiB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Decimal sizes, as the brief counts plot sizes: `1.00 GB`, `2.0 MB`, `64.0 kB`.
pub fn decimal_bytes(n: u64) -> String {
    let v = n as f64;
    if v >= 1e9 {
        format!("{:.2} GB", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1} MB", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} kB", v / 1e3)
    } else {
        format!("{n} B")
    }
}

/// `1h02m03s`-style durations from milliseconds.
pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 if ms < 10_000 => format!("{:.1}s", ms as f64 / 1000.0),
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60),
    }
}

/// Lower-case enum word: `PLOT_STATE_VALID` -> `valid`.
fn word(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// The state word of a plot (`valid`, `wrong-key`, ...).
pub fn plot_state_word(v: i32) -> String {
    plot_state(v)
}

fn plot_state(v: i32) -> String {
    pb::PlotState::try_from(v)
        .map(|s| word(s.as_str_name(), "PLOT_STATE_"))
        .unwrap_or_else(|_| format!("unknown({v})"))
}

fn job_state(v: i32) -> String {
    pb::PlotJobState::try_from(v)
        .map(|s| word(s.as_str_name(), "PLOT_JOB_STATE_"))
        .unwrap_or_else(|_| format!("unknown({v})"))
}

fn mining_state(v: i32) -> String {
    pb::MiningState::try_from(v)
        .map(|s| word(s.as_str_name(), "MINING_STATE_"))
        .unwrap_or_else(|_| format!("unknown({v})"))
}

fn link_state(v: i32) -> String {
    pb::LinkState::try_from(v)
        .map(|s| word(s.as_str_name(), "LINK_STATE_"))
        .unwrap_or_else(|_| format!("unknown({v})"))
}

fn outcome(v: i32) -> String {
    pb::PlotJobOutcome::try_from(v)
        .map(|s| word(s.as_str_name(), "PLOT_JOB_OUTCOME_"))
        .unwrap_or_else(|_| format!("unknown({v})"))
}

fn short_hex(b: &[u8]) -> String {
    let h = hex::encode(b);
    if h.len() > 16 {
        format!("{}…", &h[..16])
    } else {
        h
    }
}

/// Left-aligned columns separated by two spaces.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(&c);
            } else {
                let pad = widths[i] - c.chars().count();
                out.push_str(&c);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    };
    line(header.iter().map(|s| s.to_string()).collect(), &mut out);
    for r in rows {
        line(r.clone(), &mut out);
    }
    out
}

/// `45.0% 1.2 MiB 350000 leaves/s ETA 3.0s`.
pub fn progress_text(p: &pb::PlotJobProgress) -> String {
    let pct = if p.leaves_total == 0 {
        0.0
    } else {
        p.leaves_done as f64 * 100.0 / p.leaves_total as f64
    };
    let mut s = format!(
        "{pct:.1}% {}/{} leaves, {}, {:.0} leaves/s",
        p.leaves_done,
        p.leaves_total,
        bytes(p.bytes_written),
        p.leaves_per_second
    );
    if let Some(eta) = p.eta_ms {
        let _ = write!(s, ", ETA {}", duration_ms(eta));
    }
    s
}

/// `12.3 M leaves/s, ETA 1m02s`: the message beside the progress bar.
pub fn rate_eta(p: &pb::PlotJobProgress) -> String {
    let mut s = format!("{} leaves/s", si(p.leaves_per_second));
    if let Some(eta) = p.eta_ms {
        let _ = write!(s, ", ETA {}", duration_ms(eta));
    }
    s
}

/// `950`, `12.3 k`, `4.7 M`, `1.1 G`.
pub fn si(v: f64) -> String {
    if !v.is_finite() || v < 1e3 {
        return format!("{:.0}", v.max(0.0));
    }
    let (d, u) = if v >= 1e9 {
        (1e9, "G")
    } else if v >= 1e6 {
        (1e6, "M")
    } else {
        (1e3, "k")
    };
    format!("{:.1} {u}", v / d)
}

/// The plot progress bar: one percentage, the bar, rate and ETA; at most 80 columns
/// (` 45% [##########----] 12.3 M leaves/s, ETA 1m02s`).
pub fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(total);
    b.set_style(
        indicatif::ProgressStyle::with_template(PROGRESS_TEMPLATE)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("#>-"),
    );
    b
}

/// Template of [`progress_bar`]: 4 + 2 + 30 + 2 + a message of at most ~36 characters.
pub const PROGRESS_TEMPLATE: &str = "{percent:>3}% [{bar:30}] {msg}";

fn progress_json(p: &pb::PlotJobProgress) -> Value {
    json!({
        "leavesDone": p.leaves_done,
        "leavesTotal": p.leaves_total,
        "bytesWritten": p.bytes_written,
        "leavesPerSecond": p.leaves_per_second,
        "etaMs": p.eta_ms,
    })
}

/// A plot as JSON.
pub fn plot_json(p: &pb::Plot) -> Value {
    json!({
        "plotId": p.plot_id,
        "filePath": p.file_path,
        "cacheFilePath": p.cache_file_path,
        "state": plot_state(p.state),
        "sizeBytes": p.size_bytes,
        "leafCount": p.leaf_count,
        "treeHeight": p.tree_height,
        "seed": hex::encode(&p.seed),
        "merkleRoot": hex::encode(&p.merkle_root),
        "createdAtUtc": p.created_at_utc,
        "problem": p.problem,
        "duplicateOf": p.duplicate_of,
        "cacheInUse": p.cache_in_use,
        "progress": p.progress.as_ref().map(progress_json),
        "cacheLevels": p.cache_levels,
        "cacheDisabled": p.cache_disabled,
        "lastCheck": p.last_check.as_ref().map(|c| json!({
            "atUnixMs": c.at_unix_ms,
            "ok": c.ok,
            "full": c.full,
            "checked": c.checked,
        })),
    })
}

/// `2026-01-02 03:04:05 UTC` from Unix milliseconds.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = spacetime::clock::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

fn last_check_text(c: &pb::LastCheck) -> String {
    format!(
        "{} ({} check, {} {}) at {}",
        if c.ok { "passed" } else { "FAILED" },
        if c.full { "full" } else { "sampled" },
        c.checked,
        if c.full { "leaves" } else { "samples" },
        utc(c.at_unix_ms)
    )
}

/// The plot table of `list-plots`.
pub fn plots_table(plots: &[pb::Plot]) -> String {
    if plots.is_empty() {
        return "no plots (create one with `minerctl create-plot --size 100MiB`)\n".into();
    }
    let rows: Vec<Vec<String>> = plots
        .iter()
        .map(|p| {
            let note = if let Some(pr) = &p.progress {
                progress_text(pr)
            } else {
                p.problem.clone()
            };
            vec![
                p.plot_id.clone(),
                plot_state(p.state),
                bytes(p.size_bytes),
                p.leaf_count.to_string(),
                if p.cache_in_use { "yes" } else { "no" }.into(),
                p.file_path.clone(),
                note,
            ]
        })
        .collect();
    table(
        &["ID", "STATE", "SIZE", "LEAVES", "CACHE", "PATH", "NOTE"],
        &rows,
    )
}

/// One plot, a field per line.
pub fn plot_detail(p: &pb::Plot) -> String {
    let mut s = String::new();
    let mut f = |k: &str, v: String| {
        if !v.is_empty() {
            let _ = writeln!(s, "{k:<13} {v}");
        }
    };
    f("id:", p.plot_id.clone());
    f("state:", plot_state(p.state));
    f("file:", p.file_path.clone());
    f(
        "directory:",
        std::path::Path::new(&p.file_path)
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
    );
    f("cache file:", p.cache_file_path.clone());
    f(
        "cache in use:",
        if p.cache_in_use { "yes" } else { "no" }.into(),
    );
    f(
        "size:",
        format!("{} ({} bytes)", bytes(p.size_bytes), p.size_bytes),
    );
    f("leaves:", p.leaf_count.to_string());
    f("tree height:", p.tree_height.to_string());
    f(
        "cache levels:",
        if p.cache_disabled {
            "0 (no cache, by choice: none is built in the background)".into()
        } else if p.cache_in_use {
            p.cache_levels.to_string()
        } else {
            "none in use".into()
        },
    );
    f("seed:", hex::encode(&p.seed));
    f("merkle root:", hex::encode(&p.merkle_root));
    f("created:", p.created_at_utc.clone());
    f(
        "last check:",
        p.last_check
            .as_ref()
            .map(last_check_text)
            .unwrap_or_else(|| "never".into()),
    );
    f("problem:", p.problem.clone());
    f("duplicate of:", p.duplicate_of.clone());
    if let Some(pr) = &p.progress {
        f("progress:", progress_text(pr));
    }
    s
}

/// A job as JSON.
pub fn job_json(j: &pb::PlotJob) -> Value {
    json!({
        "jobId": j.job_id,
        "filePath": j.file_path,
        "leafCount": j.leaf_count,
        "cacheLevels": j.cache_levels,
        "seed": hex::encode(&j.seed),
        "state": job_state(j.state),
        "createdAtUnixMs": j.created_at_unix_ms,
        "progress": j.progress.as_ref().map(progress_json),
    })
}

/// The job table of `jobs`.
pub fn jobs_table(jobs: &[pb::PlotJob]) -> String {
    if jobs.is_empty() {
        return "no plot jobs\n".into();
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.job_id.clone(),
                job_state(j.state),
                j.leaf_count.to_string(),
                j.file_path.clone(),
                j.progress.as_ref().map(progress_text).unwrap_or_default(),
            ]
        })
        .collect();
    table(&["ID", "STATE", "LEAVES", "PATH", "PROGRESS"], &rows)
}

/// A check report as JSON.
pub fn check_json(r: &pb::CheckReport) -> Value {
    json!({
        "plotId": r.plot_id,
        "ok": r.ok,
        "checked": r.checked,
        "failures": r.failures,
        "findings": r.findings,
        "elapsedMs": r.elapsed_ms,
        "state": plot_state(r.state),
        "full": r.full,
        "filePath": r.file_path,
    })
}

/// A check report as text.
pub fn check_text(r: &pb::CheckReport) -> String {
    let name = if r.plot_id.is_empty() {
        r.file_path.clone()
    } else {
        r.plot_id.clone()
    };
    let mut s = format!(
        "plot {name}: {} ({} check, {} {} checked, {} failures, {})",
        if r.ok { "OK" } else { "FAILED" },
        if r.full { "full" } else { "sampled" },
        r.checked,
        if r.full { "leaves" } else { "samples" },
        r.failures,
        duration_ms(r.elapsed_ms),
    );
    if r.state != pb::PlotState::Unspecified as i32 {
        let _ = write!(s, "; state {}", plot_state(r.state));
    } else {
        s.push_str("; not registered");
    }
    s.push('\n');
    for f in &r.findings {
        let _ = writeln!(s, "  - {f}");
    }
    s
}

fn counters_json(c: &pb::Counters) -> Value {
    json!({
        "challengesReceived": c.challenges_received,
        "proofsGenerated": c.proofs_generated,
        "proofsSubmitted": c.proofs_submitted,
        "blocksWon": c.blocks_won,
        "blocksAccepted": c.blocks_accepted,
        "lateEpochs": c.late_epochs,
        "missedEpochs": c.missed_epochs,
    })
}

fn counters_text(c: &pb::Counters) -> String {
    format!(
        "{} challenges, {} proofs, {} submitted, {} blocks won, {} accepted, {} late, {} missed",
        c.challenges_received,
        c.proofs_generated,
        c.proofs_submitted,
        c.blocks_won,
        c.blocks_accepted,
        c.late_epochs,
        c.missed_epochs
    )
}

fn scan_json(e: &pb::EpochScan) -> Value {
    json!({
        "epoch": e.epoch,
        "leavesScanned": e.leaves_scanned,
        "leavesTotal": e.leaves_total,
        "leavesPerSecond": e.leaves_per_second,
        "etaMs": e.eta_ms,
        "leavesFarmed": e.leaves_farmed,
        "finished": e.finished,
    })
}

/// `65536 of 65536 farmed leaves scored in epoch 12 (100.0%)`.
fn farm_text(e: &pb::EpochScan) -> String {
    let pct = if e.leaves_farmed == 0 {
        0.0
    } else {
        e.leaves_scanned as f64 * 100.0 / e.leaves_farmed as f64
    };
    format!(
        "{} of {} farmed leaves scored in epoch {} ({pct:.1}%)",
        e.leaves_scanned, e.leaves_farmed, e.epoch
    )
}

/// `epoch 12: 45.0% of 4194304 leaves, 12.3 M leaves/s, ETA 0.4s`.
fn scan_text(e: &pb::EpochScan) -> String {
    let pct = if e.leaves_total == 0 {
        100.0
    } else {
        e.leaves_scanned as f64 * 100.0 / e.leaves_total as f64
    };
    let mut s = format!(
        "epoch {}: {pct:.1}% of {} leaves, {} leaves/s",
        e.epoch,
        e.leaves_total,
        si(e.leaves_per_second)
    );
    if let Some(eta) = e.eta_ms {
        let _ = write!(s, ", ETA {}", duration_ms(eta));
    }
    if e.finished {
        let _ = write!(s, "; done: {}", farm_text(e));
    }
    s
}

/// The status as JSON.
pub fn status_json(s: &pb::Status) -> Value {
    let node = s.node.clone().unwrap_or_default();
    let c = s.counters.unwrap_or_default();
    let p = s.plots.unwrap_or_default();
    json!({
        "version": s.version,
        "networkId": s.network_id,
        "minerPublicKey": hex::encode(&s.miner_public_key),
        "minerId": hex::encode(&s.miner_id),
        "uptimeMs": s.uptime_ms,
        "startedAtUnixMs": s.started_at_unix_ms,
        "miningEnabled": s.mining_enabled,
        "miningState": mining_state(s.mining_state),
        "node": {
            "state": link_state(node.state),
            "address": node.address,
            "lastError": node.last_error,
            "connectedSinceUnixMs": node.connected_since_unix_ms,
            "failedAttempts": node.failed_attempts,
            "peerUserAgent": node.peer_user_agent,
        },
        "epoch": s.epoch.as_ref().map(|e| json!({
            "epoch": e.epoch,
            "tipHeight": e.tip_height,
            "tipHash": hex::encode(&e.tip_hash),
            "challenge": hex::encode(&e.challenge),
            "difficulty": e.difficulty,
            "deadlineUnixMs": e.deadline_unix_ms,
            "receivedAtUnixMs": e.received_at_unix_ms,
        })),
        "counters": counters_json(&c),
        "lifetimeCounters": counters_json(&s.lifetime_counters.unwrap_or_default()),
        "expectedTimeToWinMs": s.expected_time_to_win_ms,
        "scan": s.scan.as_ref().map(scan_json),
        "lastScan": s.last_scan.as_ref().map(scan_json),
        "lastProofLatencyMs": s.last_proof_latency_ms,
        "plots": {
            "total": p.total,
            "valid": p.valid,
            "corrupted": p.corrupted,
            "missing": p.missing,
            "duplicate": p.duplicate,
            "farmedBytes": p.farmed_bytes,
        },
        "plotJobs": s.plot_jobs,
        "shuttingDown": s.shutting_down,
        "plotDirectories": farm::dirs_json(&s.plot_directories),
        "farmSizeWarning": s.farm_size_warning.as_ref().map(farm::warning_json),
    })
}

/// The status as text.
pub fn status_text(s: &pb::Status) -> String {
    let node = s.node.clone().unwrap_or_default();
    let c = s.counters.unwrap_or_default();
    let p = s.plots.unwrap_or_default();
    let mut out = String::new();
    let mut f = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<20} {v}");
    };
    f(
        "minerd:",
        format!("{} (up {})", s.version, duration_ms(s.uptime_ms)),
    );
    f("network:", s.network_id.clone());
    f("miner public key:", hex::encode(&s.miner_public_key));
    f(
        "mining:",
        format!(
            "{}{}",
            mining_state(s.mining_state),
            if s.shutting_down {
                " (shutting down)"
            } else {
                ""
            }
        ),
    );
    let mut link = format!("{} {}", link_state(node.state), node.address);
    if !node.last_error.is_empty() {
        let _ = write!(link, " (last error: {})", node.last_error);
    }
    f("node:", link);
    match &s.epoch {
        Some(e) => f(
            "epoch:",
            format!(
                "{} on height {}, difficulty {}, challenge {}",
                e.epoch,
                e.tip_height,
                e.difficulty,
                short_hex(&e.challenge)
            ),
        ),
        None => f("epoch:", "none yet".into()),
    }
    if let Some(scan) = &s.scan {
        f("scanning:", scan_text(scan));
    }
    if let Some(last) = &s.last_scan {
        f("effective farm:", farm_text(last));
    }
    if let Some(w) = &s.farm_size_warning {
        f("WARNING:", farm::warning_text(w));
    }
    f("this run:", counters_text(&c));
    f(
        "lifetime:",
        counters_text(&s.lifetime_counters.unwrap_or_default()),
    );
    f(
        "expected to win:",
        s.expected_time_to_win_ms
            .map(|ms| format!("in {} on average", duration_ms(ms)))
            .unwrap_or_else(|| "- (no epoch scanned yet)".into()),
    );
    f(
        "last proof latency:",
        s.last_proof_latency_ms
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "-".into()),
    );
    f(
        "plots:",
        format!(
            "{} valid of {} ({} farmed), {} corrupted, {} missing, {} duplicate; {} plot jobs",
            p.valid,
            p.total,
            bytes(p.farmed_bytes),
            p.corrupted,
            p.missing,
            p.duplicate,
            s.plot_jobs
        ),
    );
    for (i, line) in farm::dirs_text(&s.plot_directories).into_iter().enumerate() {
        f(if i == 0 { "plot directories:" } else { "" }, line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(100 << 20), "100.0 MiB");
        assert_eq!(decimal_bytes(1_000_000_000), "1.00 GB");
        assert_eq!(decimal_bytes(2_000_000), "2.0 MB");
        assert_eq!(si(4_700_000.0), "4.7 M");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_116_332_906), "2026-12-01 09:12:12 UTC");
        assert_eq!(duration_ms(1500), "1.5s");
        assert_eq!(duration_ms(61_000), "1m01s");
        assert_eq!(duration_ms(3_723_000), "1h02m03s");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }

    #[test]
    fn enum_words() {
        assert_eq!(plot_state(pb::PlotState::Duplicate as i32), "duplicate");
        assert_eq!(plot_state(pb::PlotState::WrongKey as i32), "wrong-key");
        assert_eq!(
            mining_state(pb::MiningState::WaitingForNode as i32),
            "waiting-for-node"
        );
        assert_eq!(plot_state(99), "unknown(99)");
    }

    #[test]
    fn events_have_a_type_and_data() {
        let ev = pb::WatchEventsResponse {
            sequence: 7,
            time_unix_ms: 1_000,
            event: Some(pb::watch_events_response::Event::MiningToggled(
                pb::MiningToggled { enabled: true },
            )),
        };
        let j = event_json(&ev);
        assert_eq!(j["type"], "miningToggled");
        assert_eq!(j["data"]["enabled"], true);
        assert_eq!(event_text(&ev), "00:00:01.000 miningToggled     enabled");
    }
}
