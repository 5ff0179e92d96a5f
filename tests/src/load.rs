//! The control-API load test (issue "Reliability and security", Deliver 4): a real `minerd`
//! with many registered plots, mining against a real devnet node, while many clients poll
//! `GetStatus` and many subscribers hold `WatchEvents` streams on both listeners (Unix
//! socket and TCP); then many hostile TCP connections that never speak, while the Unix
//! socket must keep answering.
//!
//! [`run`] returns the figures; `cargo run --release -p e2e --bin loadtest` prints them (the
//! README quotes that output) and the e2e suite runs a smaller instance with loose bounds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use spacetime::keys::MinerKey;
use spacetime::plot::{create_plot, CacheLevels, CreatePlot};
use spacetime_proto::client::{self, MinerClient, Target};
use spacetime_proto::pb;

use crate::mining::{miner_args, DevnetNode, NodeOptions};
use crate::{wait_until_async, Home, Minerd, MinerdOptions};

/// What to load the daemon with.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Plots registered (tiny, distinct plots written before the daemon starts).
    pub plots: u32,
    /// Leaves per plot.
    pub plot_leaves: u64,
    /// Concurrent `GetStatus` pollers, split evenly between the Unix socket and TCP.
    pub clients: u32,
    /// Concurrent `WatchEvents` subscribers, split evenly between both listeners.
    pub subscribers: u32,
    /// How long the pollers run.
    pub duration: Duration,
    /// Hostile TCP connections opened afterwards (they connect and say nothing).
    pub hostile: u32,
    /// Epoch length of the devnet node.
    pub epoch_ms: u64,
}

impl Default for LoadOptions {
    /// The figures the issue asks for.
    fn default() -> Self {
        Self {
            plots: 1000,
            plot_leaves: 1024,
            clients: 200,
            subscribers: 50,
            duration: Duration::from_secs(20),
            hostile: 1000,
            epoch_ms: 2000,
        }
    }
}

/// Latency figures of a set of calls.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Calls that succeeded.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Latency {
    fn of(mut samples: Vec<Duration>, errors: u64) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            samples
                .get(((samples.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        Self {
            calls: samples.len() as u64,
            errors,
            p50: at(0.50),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

/// What [`run`] measured.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Plots the daemon reported registered.
    pub plots_registered: u32,
    /// `GetStatus` over the Unix socket while loaded.
    pub unix: Latency,
    /// `GetStatus` over TCP while loaded.
    pub tcp: Latency,
    /// Events received by all subscribers together.
    pub events_received: u64,
    /// Epochs the miner saw during the polling phase.
    pub epochs: u64,
    /// Epochs the miner counted late or missed during the polling phase.
    pub late_or_missed: u64,
    /// Hostile connections that were open at once.
    pub hostile_open: u32,
    /// `GetStatus` over the Unix socket while the hostile connections were open.
    pub unix_under_hostile: Latency,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = |x: &Latency| {
            format!(
                "{} calls ({} errors), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                x.calls,
                x.errors,
                x.p50.as_secs_f64() * 1e3,
                x.p99.as_secs_f64() * 1e3,
                x.max.as_secs_f64() * 1e3
            )
        };
        writeln!(f, "plots registered:          {}", self.plots_registered)?;
        writeln!(f, "GetStatus over unix:       {}", l(&self.unix))?;
        writeln!(f, "GetStatus over tcp:        {}", l(&self.tcp))?;
        writeln!(f, "events received:           {}", self.events_received)?;
        writeln!(
            f,
            "epochs during the load:    {} ({} late or missed)",
            self.epochs, self.late_or_missed
        )?;
        writeln!(f, "hostile tcp connections:   {} open", self.hostile_open)?;
        write!(
            f,
            "unix GetStatus meanwhile:  {}",
            l(&self.unix_under_hostile)
        )
    }
}

fn write_plots(home: &Home, key: &MinerKey, opts: &LoadOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(home.plot_dir())?;
    let pk = key.public_key();
    for i in 0..opts.plots {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&i.to_le_bytes());
        seed[4..12].copy_from_slice(&pk[..8]);
        create_plot(
            &CreatePlot {
                path: home.plot_dir().join(format!("load-{i:05}.plot")),
                miner_pk: pk,
                seed,
                leaf_count: opts.plot_leaves,
                cache: CacheLevels::Disabled,
                threads: Some(1),
            },
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .with_context(|| format!("writing plot {i}"))?;
    }
    Ok(())
}

async fn status(c: &mut MinerClient) -> anyhow::Result<pb::Status> {
    Ok(client::get_status(c).await?)
}

async fn counters(c: &mut MinerClient) -> anyhow::Result<pb::Counters> {
    status(c).await?.counters.context("no counters")
}

/// Polls `GetStatus` on `target` until `stop`; returns the latencies and the error count.
async fn poller(target: Target, stop: Arc<AtomicBool>) -> (Vec<Duration>, u64) {
    let mut samples = Vec::new();
    let mut errors = 0;
    let Ok(mut c) = client::connect(&target).await else {
        return (samples, 1);
    };
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        match status(&mut c).await {
            Ok(_) => samples.push(t.elapsed()),
            Err(_) => errors += 1,
        }
    }
    (samples, errors)
}

/// Holds a `WatchEvents` stream on `target` until `stop`, counting events.
async fn subscriber(target: Target, stop: Arc<AtomicBool>, seen: Arc<AtomicU64>) {
    let Ok(mut c) = client::connect(&target).await else {
        return;
    };
    let Ok(stream) = c.watch_events(pb::WatchEventsRequest {}).await else {
        return;
    };
    let mut stream = stream.into_inner();
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
            Ok(Ok(Some(_))) => {
                seen.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => return,
            Err(_) => {}
        }
    }
}

/// Runs the load test; see the module docs.
pub async fn run(opts: &LoadOptions) -> anyhow::Result<LoadReport> {
    crate::process::raise_own_fd_limit();
    let node = DevnetNode::start(NodeOptions {
        epoch_ms: opts.epoch_ms,
        ..NodeOptions::default()
    })?;
    let home = Home::new()?;
    std::fs::create_dir_all(home.data_dir())?;
    let key = MinerKey::create(&home.data_dir().join("miner_key.dat"))?;
    write_plots(&home, &key, opts)?;
    let daemon = Minerd::start_in(
        home,
        MinerdOptions {
            args: miner_args(node.addr()),
            tcp: true,
            ..MinerdOptions::default()
        },
    )?;
    let unix = Target::Unix(daemon.home.socket());
    let token = client::read_token_file(&daemon.home.data_dir().join("minerd.token"))?;
    let tcp = Target::Tcp {
        address: daemon.tcp.clone().context("no tcp listener")?,
        token: Some(token),
        tls: None,
    };
    let mut probe = client::connect(&unix).await?;
    let want = opts.plots;
    let registered = wait_until_async(Duration::from_secs(120), || {
        let mut c = probe.clone();
        async move {
            status(&mut c)
                .await
                .ok()
                .and_then(|s| s.plots)
                .is_some_and(|p| p.total >= want)
        }
    })
    .await;
    anyhow::ensure!(registered, "the daemon did not register {want} plots");
    // Mining runs before the load starts: the miner has seen an epoch.
    let mining = wait_until_async(Duration::from_secs(60), || {
        let mut c = probe.clone();
        async move {
            counters(&mut c)
                .await
                .is_ok_and(|c| c.challenges_received >= 1)
        }
    })
    .await;
    anyhow::ensure!(mining, "the miner never received an epoch");
    let before = counters(&mut probe).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let mut subs = Vec::new();
    for i in 0..opts.subscribers {
        let target = if i % 2 == 0 {
            unix.clone()
        } else {
            tcp.clone()
        };
        subs.push(tokio::spawn(subscriber(
            target,
            Arc::clone(&stop),
            Arc::clone(&seen),
        )));
    }
    let mut polls = Vec::new();
    for i in 0..opts.clients {
        let on_unix = i % 2 == 0;
        let target = if on_unix { unix.clone() } else { tcp.clone() };
        polls.push((on_unix, tokio::spawn(poller(target, Arc::clone(&stop)))));
    }
    tokio::time::sleep(opts.duration).await;
    stop.store(true, Ordering::Relaxed);
    let (mut unix_samples, mut tcp_samples, mut unix_err, mut tcp_err) =
        (Vec::new(), Vec::new(), 0, 0);
    for (on_unix, p) in polls {
        let (s, e) = p.await?;
        if on_unix {
            unix_samples.extend(s);
            unix_err += e;
        } else {
            tcp_samples.extend(s);
            tcp_err += e;
        }
    }
    for s in subs {
        s.await?;
    }
    let after = counters(&mut probe).await?;
    let plots_registered = status(&mut probe).await?.plots.map_or(0, |p| p.total);

    // Hostile phase: connections that never speak, held open while the Unix socket is used.
    let tcp_addr = daemon.tcp.clone().context("no tcp listener")?;
    let mut hostile = Vec::new();
    for _ in 0..opts.hostile {
        match tokio::net::TcpStream::connect(&tcp_addr).await {
            Ok(s) => hostile.push(s),
            Err(_) => break,
        }
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut c = client::connect(&unix).await?;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), status(&mut c)).await {
            Ok(Ok(_)) => samples.push(t.elapsed()),
            _ => errors += 1,
        }
    }
    let hostile_open = hostile.len() as u32;
    drop(hostile);
    drop(daemon);
    drop(node);
    Ok(LoadReport {
        plots_registered,
        unix: Latency::of(unix_samples, unix_err),
        tcp: Latency::of(tcp_samples, tcp_err),
        events_received: seen.load(Ordering::Relaxed),
        epochs: after.challenges_received - before.challenges_received,
        late_or_missed: (after.late_epochs + after.missed_epochs)
            - (before.late_epochs + before.missed_epochs),
        hostile_open,
        unix_under_hostile: Latency::of(samples, errors),
    })
}
