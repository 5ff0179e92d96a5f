//! Create one plot with the library's plotter and print the time (for peak-RSS and
//! throughput measurements, e.g. under `/usr/bin/time -v`):
//!
//! ```text
//! cargo run --release -p spacetime --example storage_plot -- PATH LEAVES [THREADS]
//! ```
//!
//! The miner key and seed are fixed test values; the plot is left in place.

use std::sync::atomic::AtomicBool;

use spacetime::plot::{create_plot, CacheLevels, CreatePlot};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: storage_plot PATH LEAVES [THREADS]");
        std::process::exit(64);
    }
    let number = |s: &str| {
        s.parse::<u64>().unwrap_or_else(|e| {
            eprintln!("invalid number {s:?}: {e}");
            std::process::exit(64)
        })
    };
    let req = CreatePlot {
        path: args[0].clone().into(),
        miner_pk: [1; 32],
        seed: [2; 32],
        leaf_count: number(&args[1]),
        cache: CacheLevels::Default,
        threads: args.get(2).map(|t| number(t) as usize),
    };
    let mut last_pct = 0;
    let result = create_plot(
        &req,
        &mut |p| {
            let pct = p.leaves_done * 10 / p.leaves_total.max(1);
            if pct != last_pct {
                last_pct = pct;
                eprintln!(
                    "{:>3}%  {:.2} M leaves/s  eta {:?}",
                    pct * 10,
                    p.leaves_per_sec / 1e6,
                    p.eta.unwrap_or_default()
                );
            }
        },
        &AtomicBool::new(false),
    );
    match result {
        Ok(created) => {
            let secs = created.elapsed.as_secs_f64();
            println!(
                "{}: {} leaves in {:.2?} = {:.2} M leaves/s, {:.1} MB/s; root {}",
                created.path.display(),
                req.leaf_count,
                created.elapsed,
                req.leaf_count as f64 / secs / 1e6,
                (req.leaf_count * 32 + 121) as f64 / secs / 1e6,
                hex::encode(created.header.merkle_root)
            );
        }
        Err(e) => {
            eprintln!("plotting failed: {e}");
            std::process::exit(1);
        }
    }
}
