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
    /// Each poller's period (a dashboard refreshing); zero = back to back (each poller
    /// sends its next call as soon as the previous one answered: a saturation test).
    pub poll_interval: Duration,
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
            poll_interval: Duration::from_millis(100),
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
    /// Hostile connections that were open at once (on the client side: connected).
    pub hostile_open: u32,
    /// Descriptors the daemon held for them (its open descriptors minus those before):
    /// at most its connection cap, the rest closed at accept.
    pub hostile_held: i64,
    /// CPU time the daemon used per second of wall time in two quiet seconds while they
    /// were open (mining goes on; a spinning accept loop would show as about 1.0).
    pub cpu_under_hostile: f64,
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
        writeln!(
            f,
            "hostile tcp connections:   {} open, {} held by the daemon, daemon CPU {:.1} %",
            self.hostile_open,
            self.hostile_held,
            self.cpu_under_hostile * 100.0
        )?;
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
async fn poller(target: Target, period: Duration, stop: Arc<AtomicBool>) -> (Vec<Duration>, u64) {
    let mut samples = Vec::new();
    let mut errors = 0;
    let Ok(mut c) = client::connect(&target).await else {
        return (samples, 1);
    };
    // Pollers start spread over one period, as independent dashboards would.
    let mut tick = (!period.is_zero()).then(|| {
        let offset = period.mul_f64(rand_fraction());
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    while !stop.load(Ordering::Relaxed) {
        if let Some(t) = &mut tick {
            t.tick().await;
        }
        let t = Instant::now();
        match status(&mut c).await {
            Ok(_) => samples.push(t.elapsed()),
            Err(_) => errors += 1,
        }
    }
    (samples, errors)
}

/// A pseudo-random fraction in [0, 1) (spreads the pollers' start; no crate needed).
fn rand_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
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
    eprintln!("load: writing {} plots", opts.plots);
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

    eprintln!(
        "load: minerd pid {} mining; polling for {:?}",
        daemon.pid(),
        opts.duration
    );
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
        polls.push((
            on_unix,
            tokio::spawn(poller(target, opts.poll_interval, Arc::clone(&stop))),
        ));
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
    eprintln!("load: {} hostile connections", opts.hostile);
    let tcp_addr = daemon.tcp.clone().context("no tcp listener")?;
    let fds_before = crate::process::open_fds(daemon.pid())? as i64;
    let mut hostile = Vec::new();
    for _ in 0..opts.hostile {
        let connect = tokio::net::TcpStream::connect(&tcp_addr);
        match tokio::time::timeout(Duration::from_secs(3), connect).await {
            Ok(Ok(s)) => hostile.push(s),
            _ => break,
        }
    }
    // Two quiet seconds: what the daemon spends on them (mining goes on meanwhile), and how
    // many it holds.
    let cpu_before = (crate::process::cpu_time(daemon.pid())?, Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_under_hostile = (crate::process::cpu_time(daemon.pid())? - cpu_before.0).as_secs_f64()
        / cpu_before.1.elapsed().as_secs_f64();
    let hostile_held = crate::process::open_fds(daemon.pid())? as i64 - fds_before;
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
        hostile_held,
        cpu_under_hostile,
        unix_under_hostile: Latency::of(samples, errors),
    })
}
