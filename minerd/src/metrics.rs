//! Prometheus metrics: `GET /metrics` on the optional `metricsAddress` (off by default).
//!
//! Two kinds of value: what is observed as it happens ([`Observations`]: the latency and
//! scan-time histograms, scanned leaves, node connects), defined and owned by
//! [`crate::stats::MiningStats`] (so `stats` never imports this module), so the mining loop and node link record into it; and what
//! is read at scrape time from the daemon's state (counters of the status, plots by state,
//! the node link, plot jobs, build info). Every scrape builds a fresh registry from both,
//! encoded by `prometheus-client` in the OpenMetrics text format. Every family is listed
//! in the README ("Metrics"); `promtool check metrics` checks the exposition in a test.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::Bytes;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::context::Daemon;
use crate::plots::JobState;
use crate::stats::LinkState;
pub use crate::stats::Observations;
use crate::types::PlotState;

/// Bytes per leaf in a plot file (one SHA-256 hash).
const LEAF_BYTES: u64 = 32;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirLabel {
    directory: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    network_id: String,
}

fn gauge(v: u64) -> Gauge<u64, AtomicU64> {
    let g = Gauge::<u64, AtomicU64>::default();
    g.set(v);
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

fn link_state_name(s: LinkState) -> &'static str {
    match s {
        LinkState::Disabled => "disabled",
        LinkState::Disconnected => "disconnected",
        LinkState::Connecting => "connecting",
        LinkState::Connected => "connected",
        LinkState::Unreachable => "unreachable",
    }
}

const LINK_STATES: [LinkState; 5] = [
    LinkState::Disabled,
    LinkState::Disconnected,
    LinkState::Connecting,
    LinkState::Connected,
    LinkState::Unreachable,
];

const PLOT_STATES: [PlotState; 6] = [
    PlotState::Valid,
    PlotState::Corrupted,
    PlotState::Missing,
    PlotState::Creating,
    PlotState::Duplicate,
    PlotState::WrongKey,
];

/// The exposition (OpenMetrics text) of the daemon's metrics right now.
pub fn render_openmetrics(daemon: &Daemon) -> String {
    let status = daemon.status();
    let obs = daemon.stats.observations();
    let c = status.mining.counters;
    let mut r = Registry::with_prefix("spacetime_miner");

    let build = Family::<BuildLabels, Gauge>::default();
    build
        .get_or_create(&BuildLabels {
            version: status.version,
            network_id: status.network_id.clone(),
        })
        .set(1);
    r.register(
        "build_info",
        "Daemon version and network id (value 1)",
        build,
    );
    r.register_with_unit(
        "uptime",
        "Time since the daemon started",
        Unit::Seconds,
        gauge(status.uptime.as_secs()),
    );
    // Lets a leak of tasks (say, one per reconnect) show on a dashboard and in tests.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        r.register(
            "runtime_tasks",
            "Tasks alive in the daemon's async runtime",
            gauge(rt.metrics().num_alive_tasks() as u64),
        );
    }
    r.register(
        "mining_enabled",
        "1 while the operator has mining enabled (StartMining/StopMining)",
        gauge(u64::from(status.mining_enabled)),
    );
    r.register(
        "challenges",
        "Challenges (new epochs) received from the node",
        counter(c.challenges_received),
    );
    let proofs = Family::<OutcomeLabel, Counter>::default();
    for (outcome, v) in [
        ("generated", c.proofs_generated),
        ("submitted", c.proofs_submitted),
        ("won", c.blocks_won),
        ("accepted", c.blocks_accepted),
        ("late", c.late_epochs),
        ("missed", c.missed_epochs),
    ] {
        proofs.get_or_create(&OutcomeLabel { outcome }).inc_by(v);
    }
    r.register(
        "proofs",
        "Proofs by outcome: generated (a proof was built), submitted (sent with its block), won (the block met the target), accepted (the node took our block), late (ready after the deadline), missed (no proof for the epoch)",
        proofs,
    );
    r.register_with_unit(
        "challenge_to_submission",
        "Time from receiving a challenge to sending its proof and block",
        Unit::Seconds,
        obs.challenge_to_submission.clone(),
    );
    r.register_with_unit(
        "plot_scan",
        "Time to scan one plot for one challenge",
        Unit::Seconds,
        obs.plot_scan.clone(),
    );
    r.register(
        "leaves_scanned",
        "Leaves scored, all epochs",
        obs.leaves_scanned.clone(),
    );
    let scanned = obs.epoch_leaves_scanned.load(Ordering::Relaxed);
    r.register(
        "epoch_leaves_scanned",
        "Leaves scored in the last epoch's scan",
        gauge(scanned),
    );
    r.register(
        "epoch_leaves_farmed",
        "Leaves of the plots farmed in the last epoch's scan",
        gauge(obs.epoch_leaves_farmed.load(Ordering::Relaxed)),
    );
    r.register_with_unit(
        "effective_farm_size",
        "Plot bytes actually scored in the last epoch (leaves scanned x 32): the farm this machine can use",
        Unit::Bytes,
        gauge(scanned.saturating_mul(LEAF_BYTES)),
    );
    let plots = Family::<StateLabel, Gauge<u64, AtomicU64>>::default();
    let list = daemon.plots.list();
    for s in PLOT_STATES {
        let n = list.iter().filter(|p| p.state == s).count() as u64;
        plots
            .get_or_create(&StateLabel { state: s.as_str() })
            .set(n);
    }
    r.register("plots", "Registered plots by state", plots);
    r.register_with_unit(
        "farmed",
        "Bytes of the plot files being farmed (valid plots)",
        Unit::Bytes,
        gauge(status.plots.farmed_bytes),
    );
    let link = Family::<StateLabel, Gauge<u64, AtomicU64>>::default();
    for s in LINK_STATES {
        link.get_or_create(&StateLabel {
            state: link_state_name(s),
        })
        .set(u64::from(status.mining.link.state == s));
    }
    r.register(
        "node_link_state",
        "The node link's state (1 for the current state, 0 for the others)",
        link,
    );
    r.register(
        "node_connects",
        "Handshakes completed with the node (the first connection and every reconnect)",
        obs.node_connects.clone(),
    );
    r.register(
        "node_failed_attempts",
        "Consecutive failed connection attempts since the last handshake",
        gauge(u64::from(status.mining.link.failed_attempts)),
    );
    let jobs = daemon.jobs.list();
    let job_states = Family::<StateLabel, Gauge<u64, AtomicU64>>::default();
    for (name, st) in [
        ("queued", JobState::Queued),
        ("running", JobState::Running),
        ("cancelling", JobState::Cancelling),
    ] {
        let n = jobs.iter().filter(|j| j.state == st).count() as u64;
        job_states.get_or_create(&StateLabel { state: name }).set(n);
    }
    r.register("plot_jobs", "Plot jobs by state", job_states);
    let (done, total) = jobs.iter().fold((0u64, 0u64), |(d, t), j| {
        (d + j.progress.leaves_done, t + j.progress.leaves_total)
    });
    r.register(
        "plot_job_leaves_done",
        "Leaves written by the queued and running plot jobs",
        gauge(done),
    );
    r.register(
        "plot_job_leaves_to_write",
        "Leaves to write in all queued and running plot jobs",
        gauge(total),
    );
    r.register(
        "farm_size_warning",
        "1 while the farm is larger than this machine can score in an epoch (see the status' farm_size_warning)",
        gauge(u64::from(status.mining.farm.warning().is_some())),
    );
    let dir_leaves = Family::<DirLabel, Gauge<u64, AtomicU64>>::default();
    let dir_scanned = Family::<DirLabel, Gauge<u64, AtomicU64>>::default();
    let dir_free = Family::<DirLabel, Gauge<u64, AtomicU64>>::default();
    for d in &status.plot_dirs {
        let label = DirLabel {
            directory: d.path.display().to_string(),
        };
        dir_leaves.get_or_create(&label).set(d.leaves);
        dir_scanned.get_or_create(&label).set(d.leaves_scanned);
        if let Some(free) = d.disk.free_bytes {
            dir_free.get_or_create(&label).set(free);
        }
    }
    r.register(
        "plot_directory_leaves",
        "Leaves of the farmed plots of each plot directory",
        dir_leaves,
    );
    r.register(
        "plot_directory_epoch_leaves_scanned",
        "Leaves of each plot directory scored in the last epoch's scan",
        dir_scanned,
    );
    r.register_with_unit(
        "plot_directory_free",
        "Free space of each configured plot directory's file system (as of the last directory scan)",
        Unit::Bytes,
        dir_free,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    if let Err(e) = encode(&mut out, &r) {
        tracing::error!(error = %e, "encoding the metrics");
    }
    out
}

/// Content type of the OpenMetrics exposition (served when the scraper asks for it).
pub const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text exposition (the default).
pub const TEXT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The classic Prometheus text format (0.0.4) of an OpenMetrics exposition, for scrapers and
/// tools that do not negotiate OpenMetrics (promtool, older Prometheus, curl): counter
/// families take their `_total` sample name in `# HELP`/`# TYPE`, and the OpenMetrics-only
/// `# UNIT` and `# EOF` lines go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The classic text exposition of the daemon's metrics right now.
pub fn render(daemon: &Daemon) -> String {
    to_prometheus_text(&render_openmetrics(daemon))
}

/// The metrics listener.
#[derive(Debug)]
pub struct MetricsServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl MetricsServer {
    /// Stops accepting and waits for the accept loop (connections in flight are dropped).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// At most this many scrapes served at once; more wait in the kernel backlog.
const MAX_CONNECTIONS: usize = 16;
/// A scrape connection is closed after this long, whatever it does.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds `addr` and serves `GET /metrics` (anything else: 404) over HTTP/1.1.
pub async fn serve(addr: SocketAddr, daemon: Arc<Daemon>) -> anyhow::Result<MetricsServer> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener {addr}"))?;
    let bound = listener
        .local_addr()
        .context("reading the metrics address")?;
    tracing::info!("metrics listening on http://{bound}/metrics");
    let stop = CancellationToken::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut backoff = Duration::from_millis(10);
            loop {
                let permit = tokio::select! {
                    () = stop.cancelled() => return,
                    p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                };
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                let stream = match accepted {
                    Ok((s, _)) => {
                        backoff = Duration::from_millis(10);
                        s
                    }
                    Err(e) => {
                        // Out of descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "metrics listener: accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                let daemon = daemon.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let svc = hyper::service::service_fn(move |req| {
                        let daemon = daemon.clone();
                        async move { Ok::<_, std::convert::Infallible>(respond(&req, &daemon)) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
                });
            }
        }
    });
    Ok(MetricsServer {
        addr: bound,
        task,
        stop,
    })
}

fn respond<B>(req: &hyper::Request<B>, daemon: &Daemon) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
    if req.uri().path() != "/metrics" {
        *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
        *resp.body_mut() = Full::new(Bytes::from_static(b"not found: try /metrics\n"));
    } else if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        *resp.status_mut() = hyper::StatusCode::METHOD_NOT_ALLOWED;
    } else {
        let openmetrics = req
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/openmetrics-text"));
        let (ty, body) = if openmetrics {
            (OPENMETRICS_TYPE, render_openmetrics(daemon))
        } else {
            (TEXT_TYPE, render(daemon))
        };
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(ty),
        );
        *resp.body_mut() = Full::new(Bytes::from(body));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counters_by_their_samples_and_drops_openmetrics_lines() {
        let om = "# HELP x_total_things Things.\n# TYPE x_things counter\n# HELP x_things Things.\n# UNIT x_lat seconds\nx_things_total 3\n# HELP x_g G.\n# TYPE x_g gauge\nx_g 1\n# EOF\n";
        let text = to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP x_total_things Things.\n# TYPE x_things_total counter\n# HELP x_things_total Things.\nx_things_total 3\n# HELP x_g G.\n# TYPE x_g gauge\nx_g 1\n"
        );
    }

    #[test]
    fn observations_fill_the_histograms_and_epoch_gauges() {
        let o = Observations::default();
        o.record_scan(
            [Duration::from_millis(3), Duration::from_millis(40)],
            1000,
            4096,
        );
        o.record_submission(Duration::from_millis(120));
        assert_eq!(o.leaves_scanned.get(), 1000);
        assert_eq!(o.epoch_leaves_scanned.load(Ordering::Relaxed), 1000);
        assert_eq!(o.epoch_leaves_farmed.load(Ordering::Relaxed), 4096);
        let mut r = Registry::default();
        r.register("scan", "s", o.plot_scan.clone());
        r.register("sub", "s", o.challenge_to_submission.clone());
        let mut out = String::new();
        encode(&mut out, &r).unwrap();
        assert!(out.contains("scan_count 2"), "{out}");
        assert!(out.contains("sub_count 1"), "{out}");
    }
}
