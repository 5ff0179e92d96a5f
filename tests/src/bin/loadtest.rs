//! `cargo run --release -p e2e --bin loadtest [-- --plots N --clients N --subscribers N
//! --seconds S --interval-ms MS --hostile N]`: runs the control-API load test against real `minerd` and
//! devnet node binaries (built from this checkout) and prints the figures.

use std::time::Duration;

use anyhow::Context as _;
use e2e::load::{run, LoadOptions};

fn main() -> anyhow::Result<()> {
    let mut opts = LoadOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || -> anyhow::Result<u64> {
            args.next()
                .with_context(|| format!("{flag} needs a value"))?
                .parse()
                .with_context(|| format!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--plots" => opts.plots = u32::try_from(value()?)?,
            "--clients" => opts.clients = u32::try_from(value()?)?,
            "--subscribers" => opts.subscribers = u32::try_from(value()?)?,
            "--seconds" => opts.duration = Duration::from_secs(value()?),
            "--hostile" => opts.hostile = u32::try_from(value()?)?,
            "--interval-ms" => opts.poll_interval = Duration::from_millis(value()?),
            "--help" | "-h" => {
                println!(
                    "usage: loadtest [--plots N] [--clients N] [--subscribers N] [--seconds S] [--interval-ms MS] [--hostile N]\n\
                     defaults: 1000 plots, 200 clients each polling every 100 ms (0 = back to back), 50 subscribers, 20 s, 1000 hostile connections"
                );
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    // The binaries are found beside this one (or through $MINERD_BIN / $MINERCTL_BIN).
    let rt = tokio::runtime::Runtime::new()?;
    println!(
        "load: {} plots, {} clients polling every {:?} (0 = back to back), {} subscribers for {:?}, then {} hostile connections",
        opts.plots, opts.clients, opts.poll_interval, opts.subscribers, opts.duration, opts.hostile
    );
    let report = rt.block_on(run(&opts))?;
    println!("{report}");
    Ok(())
}
