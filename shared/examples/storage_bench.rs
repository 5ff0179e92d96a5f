//! Run the engine benchmark (`spacetime::bench`) from a release build:
//!
//! ```text
//! cargo run --release -p spacetime --example storage_bench -- [DIR] [LEAVES] [PROOFS] [THREADS]
//! ```
//!
//! Defaults: the system temp dir, 2^25 leaves (1 GiB), 200 proofs, all cores.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let parse = |a: Option<String>, default: u64| {
        a.map_or(Ok(default), |s| s.parse::<u64>())
            .unwrap_or_else(|e| {
                eprintln!("invalid number: {e}");
                std::process::exit(64)
            })
    };
    let leaf_count = parse(args.next(), 1 << 25);
    let proofs = parse(args.next(), 200) as usize;
    let threads = args.next().map(|t| parse(Some(t), 0) as usize);
    let opts = spacetime::bench::BenchOptions {
        dir,
        leaf_count,
        threads,
        proofs,
    };
    match spacetime::bench::run(&opts) {
        Ok(report) => println!("{report}"),
        Err(e) => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("benchmark failed: {msg}");
            std::process::exit(1);
        }
    }
}
