//! The control-API load test at CI scale (the full-scale figures are in the README, from
//! `cargo run --release -p e2e --bin loadtest`). CI shares two cores and runs debug
//! binaries, so latency bounds are loose; what must hold exactly: every call answers, no
//! epoch is late or missed (the epochs are 3 s long, so only an API that starves mining for
//! seconds fails this, not a scheduler hiccup of a loaded machine), and while 1000 hostile
//! TCP connections are open the daemon holds at most its cap of them, does not spin, and
//! the Unix socket answers.

use std::time::Duration;

use e2e::load::{run, LoadOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_events_under_load_and_hostile_connections() {
    let opts = LoadOptions {
        plots: 100,
        plot_leaves: 1024,
        clients: 20,
        // Back to back: the heaviest load 20 clients can make.
        poll_interval: Duration::ZERO,
        subscribers: 6,
        duration: Duration::from_secs(7),
        hostile: 1000,
        epoch_ms: 3000,
    };
    let r = run(&opts).await.unwrap();
    println!("{r}");
    assert_eq!(r.plots_registered, opts.plots);
    assert_eq!((r.unix.errors, r.tcp.errors), (0, 0), "{r}");
    assert!(r.unix.calls > 0 && r.tcp.calls > 0, "{r}");
    assert!(r.events_received > 0, "{r}");
    assert!(r.epochs >= 1, "{r}");
    assert_eq!(r.late_or_missed, 0, "{r}");
    assert_eq!(r.hostile_open, opts.hostile, "{r}");
    // maxTcpConnections (256), and a few descriptors of plot files being scanned.
    assert!(r.hostile_held <= 256 + 32, "{r}");
    assert!(r.cpu_under_hostile < 0.5, "{r}");
    assert_eq!(r.unix_under_hostile.errors, 0, "{r}");
    assert!(r.unix_under_hostile.calls > 0, "{r}");
    assert!(r.unix_under_hostile.p99 < Duration::from_secs(1), "{r}");
}
