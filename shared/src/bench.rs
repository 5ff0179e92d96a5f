//! The engine benchmark behind `minerd bench`: raw SHA-256 rates and the engine's rates on
//! this machine, each engine figure as a ratio to the bound the hash rate implies.
//!
//! Bounds, in SHA-256 compressions per leaf: plotting ≈ 4 (leaf from the midstate 1, leaf
//! node 1, internal nodes ≈ 2 per leaf), scanning 2 (`H(challenge ‖ leaf)` is one block
//! plus the constant padding block). The bound is the all-core compression rate divided
//! by that cost.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::cache::{CacheError, MerkleCache};
use crate::compress::independent_compressions;
use crate::plot::{create_plot, CacheLevels, CreatePlot, PlotError, PlotFile};
use crate::prove::{build_proof, ProveError};
use crate::scan::{scan_plots, ScanStrategy};

/// How long each round of a raw hash-rate probe runs (shorter for tiny smoke-test plots).
fn probe_time(leaf_count: u64) -> Duration {
    if leaf_count < 1 << 20 {
        Duration::from_millis(60)
    } else {
        Duration::from_millis(300)
    }
}
/// Rounds per probe; the best round counts (other processes only ever slow a round down,
/// and the bound should be what the machine can do).
const PROBE_ROUNDS: usize = 3;
/// Uncached proofs read about half the plot each; at most this many are timed.
const MAX_UNCACHED_PROOFS: usize = 20;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Directory for the temporary plot (removed afterwards).
    pub dir: PathBuf,
    /// Size of the temporary plot in leaves (32 bytes each).
    pub leaf_count: u64,
    /// Worker threads; `None` = all cores.
    pub threads: Option<usize>,
    /// Number of proofs to time with the cache (uncached: at most 20).
    pub proofs: usize,
}

/// Median and tail of a set of latencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Samples taken.
    pub count: usize,
    /// Median.
    pub median: Duration,
    /// 99th percentile (nearest rank).
    pub p99: Duration,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |q: f64| {
            samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Some(Self {
            count: samples.len(),
            median: rank(0.5),
            p99: rank(0.99),
        })
    }
}

/// Everything one benchmark run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// Threads used for the all-core figures.
    pub threads: usize,
    /// SHA-256 of 64-byte messages per second (`Sha256::digest`), one thread.
    pub digest64_single: f64,
    /// Same, all threads.
    pub digest64_all: f64,
    /// Raw compressions per second, one thread.
    pub compress_single: f64,
    /// Raw compressions per second, all threads.
    pub compress_all: f64,
    /// Raw compressions per second of CPU time actually received (one thread; Linux
    /// schedstat), which other processes on the machine do not distort.
    pub compress_per_cpu_second: Option<f64>,
    /// Leaves in the benchmark plot.
    pub plot_leaves: u64,
    /// End-to-end plotting time (generation, tree, write, fsync, rename, cache).
    pub plot_time: Duration,
    /// Plotting rate.
    pub plot_leaves_per_sec: f64,
    /// Plotting rate in MB/s (10^6 bytes) of plot file.
    pub plot_mb_per_sec: f64,
    /// CPU time the process spent plotting (all threads), where the OS reports it.
    pub plot_cpu: Option<Duration>,
    /// Full scan of the page-cached plot, leaves per second.
    pub scan_leaves_per_sec: f64,
    /// Leaves in the measured scan.
    pub scan_leaves: u64,
    /// CPU time of the measured scan (all threads), where the OS reports it.
    pub scan_cpu: Option<Duration>,
    /// Lowest cache level of the default cache (`None` when the plot is too small for one).
    pub cache_start_level: Option<u32>,
    /// Proof latency with the default cache.
    pub proof_cached: Option<Latency>,
    /// Proof latency without a cache.
    pub proof_uncached: Option<Latency>,
}

impl BenchReport {
    /// Plotting bound: all-core compressions per second / 4.
    pub fn plot_bound(&self) -> f64 {
        self.compress_all / 4.0
    }

    /// Scanning bound: all-core compressions per second / 2.
    pub fn scan_bound(&self) -> f64 {
        self.compress_all / 2.0
    }

    /// Plotting rate / its bound.
    pub fn plot_ratio(&self) -> f64 {
        ratio(self.plot_leaves_per_sec, self.plot_bound())
    }

    /// Scanning rate / its bound.
    pub fn scan_ratio(&self) -> f64 {
        ratio(self.scan_leaves_per_sec, self.scan_bound())
    }

    /// Plotting compressions per CPU-second / [`BenchReport::compress_per_cpu_second`]: how
    /// close the plotter's CPU time is to pure hashing, whatever else the machine runs.
    pub fn plot_cpu_efficiency(&self) -> Option<f64> {
        let cpu = self.plot_cpu?.as_secs_f64();
        let rate = self.compress_per_cpu_second?;
        (cpu > 0.0).then(|| ratio(self.plot_leaves as f64 * 4.0 / cpu, rate))
    }

    /// Scanning compressions per CPU-second / [`BenchReport::compress_per_cpu_second`].
    pub fn scan_cpu_efficiency(&self) -> Option<f64> {
        let cpu = self.scan_cpu?.as_secs_f64();
        let rate = self.compress_per_cpu_second?;
        (cpu > 0.0).then(|| ratio(self.scan_leaves as f64 * 2.0 / cpu, rate))
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = |x: f64| x / 1e6;
        writeln!(f, "spacetime engine benchmark ({} threads)", self.threads)?;
        writeln!(f, "SHA-256")?;
        writeln!(
            f,
            "  64-byte messages     {:>9.2} M/s one thread   {:>9.2} M/s all threads",
            m(self.digest64_single),
            m(self.digest64_all)
        )?;
        writeln!(
            f,
            "  compressions         {:>9.2} M/s one thread   {:>9.2} M/s all threads",
            m(self.compress_single),
            m(self.compress_all)
        )?;
        if let Some(rate) = self.compress_per_cpu_second {
            writeln!(
                f,
                "  compressions         {:>9.2} M per CPU-second",
                m(rate)
            )?;
        }
        writeln!(
            f,
            "plotting ({} leaves, {:.1} MiB, end to end with write)",
            self.plot_leaves,
            (self.plot_leaves * 32) as f64 / 1048576.0
        )?;
        writeln!(
            f,
            "  {:>9.2} M leaves/s  {:>8.1} MB/s  {:.2?}   bound {:.2} M leaves/s (4 compressions/leaf)   ratio {:.0}%",
            m(self.plot_leaves_per_sec),
            self.plot_mb_per_sec,
            self.plot_time,
            m(self.plot_bound()),
            100.0 * self.plot_ratio()
        )?;
        if let (Some(cpu), Some(eff)) = (self.plot_cpu, self.plot_cpu_efficiency()) {
            writeln!(
                f,
                "  cpu {cpu:.2?}: {:.0}% of the raw compression rate per CPU-second",
                100.0 * eff
            )?;
        }
        writeln!(f, "full scan (page-cached)")?;
        writeln!(
            f,
            "  {:>9.2} M leaves/s   bound {:.2} M leaves/s (2 compressions/leaf)   ratio {:.0}%",
            m(self.scan_leaves_per_sec),
            m(self.scan_bound()),
            100.0 * self.scan_ratio()
        )?;
        if let (Some(cpu), Some(eff)) = (self.scan_cpu, self.scan_cpu_efficiency()) {
            writeln!(
                f,
                "  cpu {cpu:.2?}: {:.0}% of the raw compression rate per CPU-second",
                100.0 * eff
            )?;
        }
        let lat = |l: &Option<Latency>| match l {
            Some(l) => format!(
                "median {:.3?}  p99 {:.3?}  ({} proofs)",
                l.median, l.p99, l.count
            ),
            None => "n/a".to_string(),
        };
        match self.cache_start_level {
            Some(c) => writeln!(
                f,
                "proofs with cache (levels {c}..)  {}",
                lat(&self.proof_cached)
            )?,
            None => writeln!(f, "proofs with cache   n/a (plot too small for a cache)")?,
        }
        writeln!(
            f,
            "proofs without cache          {}",
            lat(&self.proof_uncached)
        )
    }
}

/// Why the benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The benchmark plot could not be created or opened.
    #[error("benchmark plot")]
    Plot(#[from] PlotError),
    /// Its cache could not be read or validated.
    #[error("benchmark cache")]
    Cache(#[from] CacheError),
    /// A proof failed.
    #[error("benchmark proof")]
    Prove(#[from] ProveError),
    /// The options are unusable.
    #[error("invalid benchmark options: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
}

/// Removes the benchmark files however the run ends.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            // Best effort: a file that was never created is fine.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Run the benchmark. Writes and removes one plot (and its cache) in `opts.dir`.
pub fn run(opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    if opts.leaf_count == 0 {
        return Err(BenchError::Invalid {
            reason: "leaf_count must be at least 1".into(),
        });
    }
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| BenchError::Invalid {
            reason: format!("cannot start {threads} threads: {e}"),
        })?;

    let probe = probe_time(opts.leaf_count);
    let (mut digest64_single, mut digest64_all) = (0f64, 0f64);
    let (mut compress_single, mut compress_all) = (0f64, 0f64);
    let mut compress_per_cpu_second: Option<f64> = None;
    for _ in 0..PROBE_ROUNDS {
        digest64_single = digest64_single.max(rate_single(probe, digest_batch).0);
        digest64_all = digest64_all.max(rate_all(&pool, threads, probe, digest_batch));
        let (wall, cpu) = rate_single(probe, compress_batch);
        compress_single = compress_single.max(wall);
        if let Some(cpu) = cpu {
            compress_per_cpu_second = Some(compress_per_cpu_second.unwrap_or(0.0).max(cpu));
        }
        compress_all = compress_all.max(rate_all(&pool, threads, probe, compress_batch));
    }

    let mut nonce = [0u8; 8];
    rand::thread_rng().fill(&mut nonce);
    let path = opts.dir.join(format!("bench-{}.plot", hex::encode(nonce)));
    let cache_path = MerkleCache::path_for(&path);
    let _cleanup = Cleanup(vec![path.clone(), cache_path.clone()]);
    let mut rng = StdRng::seed_from_u64(u64::from_le_bytes(nonce));
    let req = CreatePlot {
        path: path.clone(),
        miner_pk: rng.gen(),
        seed: rng.gen(),
        leaf_count: opts.leaf_count,
        cache: CacheLevels::Default,
        threads: Some(threads),
    };
    let never = AtomicBool::new(false);
    let cpu_before = process_cpu_time();
    let created = create_plot(&req, &mut |_| {}, &never)?;
    let plot_cpu = cpu_since(cpu_before);
    let plot_time = created.elapsed;
    let plot_secs = plot_time.as_secs_f64().max(1e-9);
    let plot_leaves_per_sec = opts.leaf_count as f64 / plot_secs;
    let plot_mb_per_sec = (opts.leaf_count * 32 + 121) as f64 / plot_secs / 1e6;

    let plot = PlotFile::open(&path)?;
    let challenge: [u8; 32] = rng.gen();
    let (scan_leaves_per_sec, scan_leaves, scan_cpu) = pool.install(|| {
        // The first pass makes sure every page is resident; the second is measured.
        let _ = scan_plots(&[&plot], &challenge, &ScanStrategy::Full, None, &never);
        let cpu_before = process_cpu_time();
        let started = Instant::now();
        let outcome = scan_plots(&[&plot], &challenge, &ScanStrategy::Full, None, &never);
        let rate = outcome.leaves_scanned as f64 / started.elapsed().as_secs_f64().max(1e-9);
        (rate, outcome.leaves_scanned, cpu_since(cpu_before))
    });

    let cache = match created.cache_path {
        Some(p) => {
            let cache = MerkleCache::read(&p)?;
            cache.validate(plot.header())?;
            Some(cache)
        }
        None => None,
    };
    let n = plot.leaf_count();
    let mut time_proofs =
        |cache: Option<&MerkleCache>, count: usize| -> Result<Option<Latency>, BenchError> {
            let mut samples = Vec::with_capacity(count);
            for _ in 0..count {
                let index = rng.gen_range(0..n);
                let started = Instant::now();
                pool.install(|| build_proof(&plot, cache, index))?;
                samples.push(started.elapsed());
            }
            Ok(Latency::of(samples))
        };
    let proof_cached = match &cache {
        Some(c) => time_proofs(Some(c), opts.proofs)?,
        None => None,
    };
    let proof_uncached = time_proofs(None, opts.proofs.min(MAX_UNCACHED_PROOFS))?;

    Ok(BenchReport {
        threads,
        digest64_single,
        digest64_all,
        compress_single,
        compress_all,
        compress_per_cpu_second,
        plot_leaves: opts.leaf_count,
        plot_time,
        plot_leaves_per_sec,
        plot_mb_per_sec,
        plot_cpu,
        scan_leaves_per_sec,
        scan_leaves,
        scan_cpu,
        cache_start_level: cache.as_ref().map(|c| c.start_level),
        proof_cached,
        proof_uncached,
    })
}

/// User + system CPU time of this process so far, all threads (Linux `/proc/self/stat`,
/// in `USER_HZ` = 100 ticks per second); `None` elsewhere.
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn cpu_since(before: Option<Duration>) -> Option<Duration> {
    Some(process_cpu_time()?.saturating_sub(before?))
}

/// Work units per batch of a rate probe.
const BATCH: u64 = 8_192;

fn digest_batch(seed: u64) -> u8 {
    let mut block = [0u8; 64];
    let mut acc = 0u8;
    for i in 0..BATCH {
        block[..8].copy_from_slice(&(seed ^ i).to_le_bytes());
        acc ^= Sha256::digest(block)[0];
    }
    acc
}

fn compress_batch(seed: u64) -> u8 {
    independent_compressions(BATCH, seed as u8) as u8
}

/// Units per second of `batch` on the calling thread: per wall second, and per second of
/// CPU time the thread received (where the OS reports it).
fn rate_single(probe: Duration, batch: fn(u64) -> u8) -> (f64, Option<f64>) {
    let cpu_before = thread_cpu_time();
    let started = Instant::now();
    let mut done = 0u64;
    let mut sink = 0u8;
    while started.elapsed() < probe {
        sink ^= batch(done);
        done += BATCH;
    }
    std::hint::black_box(sink);
    let wall = done as f64 / started.elapsed().as_secs_f64();
    let cpu = thread_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before).as_secs_f64())
        .filter(|&secs| secs > 0.0)
        .map(|secs| done as f64 / secs);
    (wall, cpu)
}

/// CPU time of the calling thread (Linux `/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Units per second of `batch` on every thread of `pool` at once.
fn rate_all(
    pool: &rayon::ThreadPool,
    threads: usize,
    probe: Duration,
    batch: fn(u64) -> u8,
) -> f64 {
    let done = AtomicU64::new(0);
    let started = Instant::now();
    pool.scope(|s| {
        for t in 0..threads {
            let done = &done;
            s.spawn(move |_| {
                let mut sink = 0u8;
                let mut local = 0u64;
                while started.elapsed() < probe {
                    sink ^= batch(local ^ (t as u64) << 40);
                    local += BATCH;
                }
                std::hint::black_box(sink);
                done.fetch_add(local, Ordering::Relaxed);
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_benchmark_runs_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let report = run(&BenchOptions {
            dir: dir.path().to_path_buf(),
            leaf_count: 20_000,
            threads: Some(2),
            proofs: 5,
        })
        .unwrap();
        assert!(report.compress_all > 0.0 && report.plot_leaves_per_sec > 0.0);
        assert!(report.scan_leaves_per_sec > 0.0);
        assert_eq!(report.cache_start_level, Some(12));
        assert_eq!(report.proof_cached.unwrap().count, 5);
        assert_eq!(report.proof_uncached.unwrap().count, 5);
        let text = report.to_string();
        assert!(text.contains("ratio"), "{text}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "files removed"
        );
    }
}
