//! Open an existing plot and measure its cache validation, proof latency (with and without
//! the cache) and full-scan rate:
//!
//! ```text
//! cargo run --release -p spacetime --example storage_probe -- PLOT [PROOFS] [UNCACHED_PROOFS]
//! ```

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use spacetime::cache::MerkleCache;
use spacetime::plot::PlotFile;
use spacetime::prove::build_proof;
use spacetime::scan::{scan_plots, ScanStrategy};

fn percentiles(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    v.sort_unstable();
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    format!(
        "median {:.3?}  p99 {:.3?}  max {:.3?}  ({} proofs)",
        at(0.5),
        at(0.99),
        v[v.len() - 1],
        v.len()
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: storage_probe PLOT [PROOFS] [UNCACHED_PROOFS]");
        std::process::exit(64);
    };
    let proofs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let uncached: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let plot = PlotFile::open(Path::new(path)).unwrap_or_else(|e| {
        eprintln!("cannot open {path}: {e}");
        std::process::exit(1)
    });
    let n = plot.leaf_count();
    println!("{path}: {n} leaves, height {}", plot.header().tree_height);
    let started = Instant::now();
    let cache = MerkleCache::read(&MerkleCache::path_for(Path::new(path)))
        .and_then(|c| c.validate(plot.header()).map(|()| c));
    println!(
        "cache read + validate: {:.2?} ({})",
        started.elapsed(),
        match &cache {
            Ok(c) => format!("levels {}..{}", c.start_level, c.tree_height - 1),
            Err(e) => format!("unusable: {e}"),
        }
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    if let Ok(cache) = &cache {
        let mut times = Vec::with_capacity(proofs);
        for _ in 0..proofs {
            let i = rng.gen_range(0..n);
            let t = Instant::now();
            build_proof(&plot, Some(cache), i).expect("proof");
            times.push(t.elapsed());
        }
        println!("proofs with cache:    {}", percentiles(times));
    }
    let mut times = Vec::with_capacity(uncached);
    for _ in 0..uncached {
        let i = rng.gen_range(0..n);
        let t = Instant::now();
        build_proof(&plot, None, i).expect("proof");
        times.push(t.elapsed());
    }
    println!("proofs without cache: {}", percentiles(times));
    let never = AtomicBool::new(false);
    for pass in 1..=2 {
        let t = Instant::now();
        let out = scan_plots(&[&plot], &[7; 32], &ScanStrategy::Full, None, &never);
        let secs = t.elapsed().as_secs_f64();
        println!(
            "full scan pass {pass}: {} leaves in {secs:.2} s = {:.2} M leaves/s",
            out.leaves_scanned,
            out.leaves_scanned as f64 / secs / 1e6
        );
    }
}
