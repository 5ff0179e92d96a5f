//! The engine benchmark behind `minerd bench`: the machine's SHA-256 limit, the disk's
//! sequential rates, and the engine's rates measured against them in one run.
//!
//! - **LIMIT** (`limit_compressions_per_s`): fixed-shape multi-buffer SHA-256 compressions
//!   per second on all threads: the higher of this crate's own leaf kernel (one full
//!   compression per leaf, [`crate::kernel`]) and `tape_sha256::hash_chains` with 16 chains
//!   a thread (an outside multi-buffer kernel, so that LIMIT is never set by our own code
//!   alone). `sha2_compressions_per_s` is `sha2::compress256` one block at a time, for
//!   comparison.
//! - **Scanning** costs 2 compressions per leaf, so its bound is LIMIT/2 (warm: plot in the
//!   page cache), and min(LIMIT/2, disk read rate / 32 B) cold (plot evicted from the page
//!   cache with `posix_fadvise(DONTNEED)` first, then read with direct reads as the daemon
//!   reads a farm larger than half the RAM; the cold scan through the page cache, as a farm
//!   that fits in memory is read the first time, is reported beside it).
//! - **Plotting** costs about 4 compressions per leaf (leaf, leaf node, internal nodes),
//!   bound min(LIMIT/4, fdatasync'd write rate / 32 B).
//!
//! Each probe runs a few rounds and keeps the best (other processes only slow a round
//! down). The disk rates are measured on a file in the benchmark directory the size of the
//! benchmark plot; the read rate in rounds alternating with the cold scans, since a shared
//! or throttled disk changes speed from one second to the next.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cache::{build_cache, CacheError, MerkleCache};
use crate::kernel::{Backend, Kernels, Shape};
use crate::plot::{
    check_plot, create_plot, CacheLevels, CheckMode, CreatePlot, PlotError, PlotFile,
};
use crate::prove::{build_proof, ProveError};
use crate::scan::{direct_read_rate, scan_plots_reading, PlotReads, ScanStrategy};

mod probe;
pub use probe::KernelRate;
use probe::{
    cpu_since, kernel_batch, kernel_rates, process_cpu_time, rate_all, rate_per_cpu_second,
    sha2_batch, tape_batch, BATCH,
};

/// Rounds per probe; the best round counts.
const PROBE_ROUNDS: usize = 3;
/// Uncached proofs read about half the plot each; at most this many are timed.
const MAX_UNCACHED_PROOFS: usize = 20;

/// How long each round of a hash-rate probe runs (shorter for tiny smoke-test plots).
fn probe_time(leaf_count: u64) -> Duration {
    if leaf_count < 1 << 20 {
        Duration::from_millis(60)
    } else {
        Duration::from_millis(300)
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Directory for the temporary plot and disk probe file (removed afterwards): put it on
    /// the plot disk.
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
    /// The SHA-256 backend of each shape the engine ran on.
    pub kernels: Kernels,
    /// Each shape on each backend this CPU has, one thread, in compressions per second of
    /// CPU time (what `auto` chooses from; [`Kernels::fastest`]).
    pub kernel_rates: Vec<KernelRate>,
    /// `sha2::compress256`, one block at a time, all threads.
    pub sha2_compressions_per_s: f64,
    /// This crate's leaf kernel on the active backend, all threads.
    pub kernel_compressions_per_s: f64,
    /// `tape_sha256::hash_chains`, 16 chains a thread, all threads (`None` if it could not
    /// run).
    pub tape_chain_compressions_per_s: Option<f64>,
    /// The leaf kernel on one thread, per second of CPU time that thread received (Linux
    /// schedstat): unlike the wall-clock rates, other load on the machine does not lower it.
    pub kernel_compressions_per_cpu_s: Option<f64>,
    /// Leaves in the benchmark plot.
    pub plot_leaves: u64,
    /// CPU time (all threads) of plotting, where the OS reports it.
    pub plot_cpu: Option<Duration>,
    /// CPU time (all threads) of the best warm scan.
    pub scan_warm_cpu: Option<Duration>,
    /// End-to-end plotting time (generation, tree, write, fsync, rename, cache).
    pub plot_time: Duration,
    /// Plotting rate.
    pub plot_leaves_per_s: f64,
    /// Sequential write rate of a file the size of the plot, fdatasync included.
    pub disk_write_bytes_per_s: f64,
    /// Sequential read rate of the plot after evicting it from the page cache: the higher of
    /// 4 MiB reads with the kernel's read-ahead and the scan's own direct reads with nothing
    /// hashed ([`direct_read_rate`]); the best of the rounds, each taken right before a cold
    /// scan.
    pub disk_read_bytes_per_s: f64,
    /// Full scan of the page-cached plot.
    pub scan_warm_leaves_per_s: f64,
    /// Full scan of the plot evicted from the page cache, read direct as the daemon reads
    /// farms larger than half the RAM ([`PlotReads::Auto`]).
    pub scan_cold_leaves_per_s: f64,
    /// CPU time (all threads) of that scan.
    pub scan_cold_cpu: Option<Duration>,
    /// Full scan of the plot evicted from the page cache, read through it (as a farm that
    /// fits in memory is read on its first scan).
    pub scan_cold_cached_leaves_per_s: f64,
    /// Building the default Merkle cache from the (page-cached) plot.
    pub cache_build_leaves_per_s: f64,
    /// Full check with the key (every leaf regenerated, root recomputed).
    pub check_full_leaves_per_s: f64,
    /// Lowest cache level of the default cache (`None` when the plot is too small for one).
    pub cache_start_level: Option<u32>,
    /// Proof latency with the default cache.
    pub proof_cached: Option<Latency>,
    /// Proof latency without a cache.
    pub proof_uncached: Option<Latency>,
}

impl BenchReport {
    /// LIMIT: the best fixed-shape multi-buffer compression rate measured.
    pub fn limit_compressions_per_s(&self) -> f64 {
        self.kernel_compressions_per_s
            .max(self.tape_chain_compressions_per_s.unwrap_or(0.0))
    }

    /// Warm-scan bound: LIMIT/2 leaves per second.
    pub fn scan_warm_bound(&self) -> f64 {
        self.limit_compressions_per_s() / 2.0
    }

    /// Cold-scan bound: min(LIMIT/2, read rate / 32) leaves per second.
    pub fn scan_cold_bound(&self) -> f64 {
        self.scan_warm_bound()
            .min(self.disk_read_bytes_per_s / 32.0)
    }

    /// Plotting bound: min(LIMIT/4, write rate / 32) leaves per second.
    pub fn plot_bound(&self) -> f64 {
        (self.limit_compressions_per_s() / 4.0).min(self.disk_write_bytes_per_s / 32.0)
    }

    /// Compressions the warm scan did per CPU-second (2 a leaf) / the score kernel's rate
    /// per CPU-second on the backend the scan ran ([`BenchReport::kernel_rates`]): how
    /// close scanning is to pure hashing whatever else the machine runs (what is missing
    /// is reading: the copy out of the page cache, and the system calls).
    pub fn scan_warm_cpu_efficiency(&self) -> Option<f64> {
        let cpu = self.scan_warm_cpu?.as_secs_f64();
        let rate = self
            .kernel_rates
            .iter()
            .find(|r| r.shape == Shape::Score && r.backend == self.kernels.score)?
            .compressions_per_cpu_s;
        (cpu > 0.0).then(|| ratio(self.plot_leaves as f64 * 2.0 / cpu, rate))
    }

    /// Compressions plotting did per CPU-second (about 4 a leaf) / the kernel's rate per
    /// CPU-second.
    pub fn plot_cpu_efficiency(&self) -> Option<f64> {
        let cpu = self.plot_cpu?.as_secs_f64();
        let rate = self.kernel_compressions_per_cpu_s?;
        (cpu > 0.0).then(|| ratio(self.plot_leaves as f64 * 4.0 / cpu, rate))
    }

    /// The report as one JSON object (`minerd bench --json`): every figure, every bound
    /// and every ratio, rates per second, latencies in microseconds.
    pub fn to_json(&self) -> serde_json::Value {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let lat = |l: &Option<Latency>| {
            l.map(|l| serde_json::json!({"count": l.count, "median_us": us(l.median), "p99_us": us(l.p99)}))
        };
        serde_json::json!({
            "threads": self.threads,
            "backend": self.kernels.to_string(),
            "kernels": Shape::ALL.iter().map(|&s| (s.name().to_owned(), self.kernels.get(s).name().into())).collect::<serde_json::Map<String, serde_json::Value>>(),
            "kernel_rates": self.kernel_rates.iter().map(|r| serde_json::json!({"shape": r.shape.name(), "backend": r.backend.name(), "compressions_per_cpu_s": r.compressions_per_cpu_s})).collect::<Vec<_>>(),
            "available_backends": Backend::available().iter().map(|b| b.name()).collect::<Vec<_>>(),
            "limit_compressions_per_s": self.limit_compressions_per_s(),
            "kernel_compressions_per_s": self.kernel_compressions_per_s,
            "tape_chain_compressions_per_s": self.tape_chain_compressions_per_s,
            "sha2_compressions_per_s": self.sha2_compressions_per_s,
            "kernel_vs_sha2_ratio": ratio(self.kernel_compressions_per_s, self.sha2_compressions_per_s),
            "plot_leaves": self.plot_leaves,
            "plot_seconds": self.plot_time.as_secs_f64(),
            "plot_leaves_per_s": self.plot_leaves_per_s,
            "plot_bound_leaves_per_s": self.plot_bound(),
            "plot_ratio": ratio(self.plot_leaves_per_s, self.plot_bound()),
            "plot_cpu_seconds": self.plot_cpu.map(|d| d.as_secs_f64()),
            "plot_cpu_efficiency": self.plot_cpu_efficiency(),
            "kernel_compressions_per_cpu_s": self.kernel_compressions_per_cpu_s,
            "disk_write_bytes_per_s": self.disk_write_bytes_per_s,
            "disk_read_bytes_per_s": self.disk_read_bytes_per_s,
            "scan_warm_leaves_per_s": self.scan_warm_leaves_per_s,
            "scan_warm_bound_leaves_per_s": self.scan_warm_bound(),
            "scan_warm_ratio": ratio(self.scan_warm_leaves_per_s, self.scan_warm_bound()),
            "scan_warm_cpu_seconds": self.scan_warm_cpu.map(|d| d.as_secs_f64()),
            "scan_warm_cpu_efficiency": self.scan_warm_cpu_efficiency(),
            "scan_cold_leaves_per_s": self.scan_cold_leaves_per_s,
            "scan_cold_bound_leaves_per_s": self.scan_cold_bound(),
            "scan_cold_ratio": ratio(self.scan_cold_leaves_per_s, self.scan_cold_bound()),
            "scan_cold_cpu_seconds": self.scan_cold_cpu.map(|d| d.as_secs_f64()),
            "scan_cold_cached_leaves_per_s": self.scan_cold_cached_leaves_per_s,
            "scan_cold_cached_ratio": ratio(self.scan_cold_cached_leaves_per_s, self.scan_cold_bound()),
            "cache_build_leaves_per_s": self.cache_build_leaves_per_s,
            "check_full_leaves_per_s": self.check_full_leaves_per_s,
            "cache_start_level": self.cache_start_level,
            "proof_median_us": self.proof_cached.or(self.proof_uncached).map(|l| us(l.median)),
            "proof_cached": lat(&self.proof_cached),
            "proof_uncached": lat(&self.proof_uncached),
        })
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
        let pct = |a: f64, b: f64| 100.0 * ratio(a, b);
        writeln!(
            f,
            "spacetime engine benchmark ({} threads, SHA-256 backend {})",
            self.threads, self.kernels
        )?;
        if !self.kernel_rates.is_empty() {
            writeln!(f, "kernels, one thread, M compressions per CPU-second")?;
            for shape in Shape::ALL {
                write!(f, "  {:<14}", shape.name())?;
                for r in self.kernel_rates.iter().filter(|r| r.shape == shape) {
                    let mark = if self.kernels.get(shape) == r.backend {
                        "*"
                    } else {
                        " "
                    };
                    write!(
                        f,
                        " {:>9} {:>6.1}{mark}",
                        r.backend.name(),
                        m(r.compressions_per_cpu_s)
                    )?;
                }
                writeln!(f)?;
            }
        }
        writeln!(f, "SHA-256 compressions, all threads")?;
        writeln!(
            f,
            "  LIMIT                 {:>9.2} M/s",
            m(self.limit_compressions_per_s())
        )?;
        writeln!(
            f,
            "  own leaf kernel       {:>9.2} M/s   ({:.2}x sha2)",
            m(self.kernel_compressions_per_s),
            ratio(self.kernel_compressions_per_s, self.sha2_compressions_per_s)
        )?;
        match self.tape_chain_compressions_per_s {
            Some(t) => writeln!(f, "  tape_sha256 chains    {:>9.2} M/s", m(t))?,
            None => writeln!(f, "  tape_sha256 chains          n/a")?,
        }
        writeln!(
            f,
            "  sha2 one at a time    {:>9.2} M/s",
            m(self.sha2_compressions_per_s)
        )?;
        writeln!(
            f,
            "disk: write {:.0} MB/s (fdatasync'd), read {:.0} MB/s (evicted from the page cache)",
            self.disk_write_bytes_per_s / 1e6,
            self.disk_read_bytes_per_s / 1e6
        )?;
        writeln!(
            f,
            "plotting ({} leaves, {:.1} MiB, end to end with write, {:.2?})",
            self.plot_leaves,
            (self.plot_leaves * 32) as f64 / 1048576.0,
            self.plot_time
        )?;
        writeln!(
            f,
            "  {:>9.2} M leaves/s   bound {:.2} M leaves/s = min(LIMIT/4, write)   ratio {:.0}%",
            m(self.plot_leaves_per_s),
            m(self.plot_bound()),
            pct(self.plot_leaves_per_s, self.plot_bound())
        )?;
        if let Some(e) = self.plot_cpu_efficiency() {
            writeln!(
                f,
                "  cpu {:.2?}: {:.0}% of the kernel's compressions per CPU-second",
                self.plot_cpu.unwrap_or_default(),
                100.0 * e
            )?;
        }
        writeln!(
            f,
            "full scan, warm  {:>9.2} M leaves/s   bound {:.2} M leaves/s = LIMIT/2   ratio {:.0}%",
            m(self.scan_warm_leaves_per_s),
            m(self.scan_warm_bound()),
            pct(self.scan_warm_leaves_per_s, self.scan_warm_bound())
        )?;
        if let Some(e) = self.scan_warm_cpu_efficiency() {
            writeln!(
                f,
                "  cpu {:.2?}: {:.0}% of the score kernel's compressions per CPU-second (2 a leaf)",
                self.scan_warm_cpu.unwrap_or_default(),
                100.0 * e
            )?;
        }
        writeln!(
            f,
            "full scan, cold  {:>9.2} M leaves/s   bound {:.2} M leaves/s = min(LIMIT/2, read)   ratio {:.0}%",
            m(self.scan_cold_leaves_per_s),
            m(self.scan_cold_bound()),
            pct(self.scan_cold_leaves_per_s, self.scan_cold_bound())
        )?;
        if let Some(cpu) = self.scan_cold_cpu {
            writeln!(
                f,
                "  cpu {cpu:.2?}; direct reads (a farm larger than half the RAM)"
            )?;
        }
        writeln!(
            f,
            "  through the page cache {:>9.2} M leaves/s   ratio {:.0}%",
            m(self.scan_cold_cached_leaves_per_s),
            pct(self.scan_cold_cached_leaves_per_s, self.scan_cold_bound())
        )?;
        writeln!(
            f,
            "cache build      {:>9.2} M leaves/s;  full check with key {:.2} M leaves/s",
            m(self.cache_build_leaves_per_s),
            m(self.check_full_leaves_per_s)
        )?;
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
    /// The disk probe file could not be written or read.
    #[error("disk probe {path}")]
    Disk {
        /// The probe file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A cache build or plot check failed.
    #[error("benchmark {what}: {reason}")]
    Engine {
        /// What was being measured.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
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

/// Run the benchmark. Writes and removes one plot (and its cache) and one probe file of
/// the same size in `opts.dir`.
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
    let kernels = Kernels::active();

    let probe = probe_time(opts.leaf_count);
    let (mut sha2_rate, mut kernel_rate, mut tape_rate) = (0f64, 0f64, 0f64);
    let mut kernel_per_cpu: Option<f64> = None;
    for _ in 0..PROBE_ROUNDS {
        let mut seed = 0u64;
        let mut kernel_run = || {
            std::hint::black_box(kernel_batch(seed));
            seed += BATCH;
            BATCH
        };
        if let Some(r) = rate_per_cpu_second(probe, &mut kernel_run) {
            kernel_per_cpu = Some(kernel_per_cpu.unwrap_or(0.0).max(r));
        }
        sha2_rate = sha2_rate.max(rate_all(&pool, threads, probe, sha2_batch));
        kernel_rate = kernel_rate.max(rate_all(&pool, threads, probe, kernel_batch));
        tape_rate = tape_rate.max(rate_all(&pool, threads, probe, tape_batch));
    }

    let mut nonce = [0u8; 8];
    rand::thread_rng().fill(&mut nonce);
    let path = opts.dir.join(format!("bench-{}.plot", hex::encode(nonce)));
    let probe_path = opts.dir.join(format!(".bench-{}.disk", hex::encode(nonce)));
    let cache_path = MerkleCache::path_for(&path);
    let _cleanup = Cleanup(vec![path.clone(), cache_path.clone(), probe_path.clone()]);
    let plot_bytes = opts.leaf_count * 32 + 121;
    let disk_write_bytes_per_s = write_rate(&probe_path, plot_bytes)?;
    let _ = std::fs::remove_file(&probe_path);

    let mut rng = StdRng::seed_from_u64(u64::from_le_bytes(nonce));
    let miner_pk: [u8; 32] = rng.gen();
    let req = CreatePlot {
        path: path.clone(),
        miner_pk,
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
    let plot_leaves_per_s = opts.leaf_count as f64 / plot_time.as_secs_f64().max(1e-9);

    let plot = PlotFile::open(&path)?;
    let challenge: [u8; 32] = rng.gen();
    let scan = |reads| {
        let started = Instant::now();
        let outcome = scan_plots_reading(
            &[&plot],
            &challenge,
            &ScanStrategy::Full,
            None,
            &never,
            &AtomicU64::new(0),
            reads,
        );
        outcome.leaves_scanned as f64 / started.elapsed().as_secs_f64().max(1e-9)
    };
    let full_scan = || scan(PlotReads::PageCache);
    // Cold first, in rounds (a shared or throttled disk changes speed from one second to
    // the next, so the disk rate and the scans are measured side by side, and the best
    // round of each counts): evicted, read raw for the disk rate, evicted again, scanned
    // the way the daemon scans a farm larger than the page cache (direct reads); then
    // evicted and scanned through the page cache.
    let (mut disk_read_bytes_per_s, mut scan_cold_leaves_per_s) = (0f64, 0f64);
    let (mut scan_cold_cpu, mut scan_cold_cached_leaves_per_s) = (None, 0f64);
    for _ in 0..PROBE_ROUNDS {
        plot.evict_from_page_cache();
        disk_read_bytes_per_s = disk_read_bytes_per_s.max(read_rate(&path)?);
        plot.evict_from_page_cache();
        if let Some(rate) = direct_read_rate(&plot) {
            disk_read_bytes_per_s = disk_read_bytes_per_s.max(rate);
        }
        plot.evict_from_page_cache();
        let before = process_cpu_time();
        let rate = pool.install(|| scan(PlotReads::Direct));
        if rate > scan_cold_leaves_per_s {
            scan_cold_leaves_per_s = rate;
            scan_cold_cpu = cpu_since(before);
        }
        plot.evict_from_page_cache();
        scan_cold_cached_leaves_per_s = scan_cold_cached_leaves_per_s.max(pool.install(full_scan));
    }
    // Warm: the first pass makes every page resident, the best of the next ones counts.
    let mut scan_warm_leaves_per_s = 0f64;
    let mut scan_warm_cpu = None;
    pool.install(|| {
        let _ = full_scan();
        for _ in 0..PROBE_ROUNDS {
            let before = process_cpu_time();
            let rate = full_scan();
            if rate > scan_warm_leaves_per_s {
                scan_warm_leaves_per_s = rate;
                scan_warm_cpu = cpu_since(before);
            }
        }
    });

    let started = Instant::now();
    let built = pool
        .install(|| build_cache(&plot, CacheLevels::Default, None, &mut |_| {}, &never))
        .map_err(|e| BenchError::Engine {
            what: "cache build",
            reason: e.to_string(),
        })?;
    let cache_build_leaves_per_s =
        opts.leaf_count as f64 / started.elapsed().as_secs_f64().max(1e-9);
    drop(built);
    let started = Instant::now();
    let report = pool.install(|| {
        check_plot(
            &plot,
            None,
            &CheckMode::Full {
                miner_pk: Some(miner_pk),
            },
            &mut |_| {},
            &never,
        )
    })?;
    if !report.plot_ok() {
        return Err(BenchError::Engine {
            what: "full check",
            reason: "the benchmark plot failed its own check".into(),
        });
    }
    let check_full_leaves_per_s =
        opts.leaf_count as f64 / started.elapsed().as_secs_f64().max(1e-9);

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
        kernels,
        kernel_rates: kernel_rates(probe),
        sha2_compressions_per_s: sha2_rate,
        kernel_compressions_per_s: kernel_rate,
        tape_chain_compressions_per_s: (tape_rate > 0.0).then_some(tape_rate),
        kernel_compressions_per_cpu_s: kernel_per_cpu,
        plot_leaves: opts.leaf_count,
        plot_cpu,
        scan_warm_cpu,
        plot_time,
        plot_leaves_per_s,
        disk_write_bytes_per_s,
        disk_read_bytes_per_s,
        scan_warm_leaves_per_s,
        scan_cold_leaves_per_s,
        scan_cold_cpu,
        scan_cold_cached_leaves_per_s,
        cache_build_leaves_per_s,
        check_full_leaves_per_s,
        cache_start_level: cache.as_ref().map(|c| c.start_level),
        proof_cached,
        proof_uncached,
    })
}

/// Bytes per second of writing `len` bytes to a new file at `path` in 4 MiB writes, then
/// `fdatasync` (the way plotting writes).
fn write_rate(path: &Path, len: u64) -> Result<f64, BenchError> {
    let err = |source| BenchError::Disk {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(err)?;
    let block = vec![0x5Au8; 4 << 20];
    let started = Instant::now();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).map_err(err)?;
        left -= n as u64;
    }
    file.sync_data().map_err(err)?;
    Ok(len as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

/// Bytes per second of reading the file at `path` sequentially in 4 MiB reads.
fn read_rate(path: &Path) -> Result<f64, BenchError> {
    let err = |source| BenchError::Disk {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(err)?;
    let mut block = vec![0u8; 4 << 20];
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let n = file.read(&mut block).map_err(err)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64().max(1e-9))
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
        assert!(report.limit_compressions_per_s() > 0.0 && report.plot_leaves_per_s > 0.0);
        assert!(report.scan_warm_leaves_per_s > 0.0 && report.scan_cold_leaves_per_s > 0.0);
        assert!(report.disk_read_bytes_per_s > 0.0 && report.disk_write_bytes_per_s > 0.0);
        assert!(report.tape_chain_compressions_per_s.is_some());
        assert_eq!(report.cache_start_level, Some(12));
        assert_eq!(report.proof_cached.unwrap().count, 5);
        assert_eq!(report.proof_uncached.unwrap().count, 5);
        let text = report.to_string();
        assert!(text.contains("ratio"), "{text}");
        let json = report.to_json();
        for key in [
            "limit_compressions_per_s",
            "sha2_compressions_per_s",
            "plot_leaves_per_s",
            "scan_warm_leaves_per_s",
            "scan_cold_leaves_per_s",
            "disk_read_bytes_per_s",
            "disk_write_bytes_per_s",
            "proof_median_us",
            "plot_ratio",
            "scan_warm_ratio",
            "scan_cold_ratio",
        ] {
            assert!(json[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {json}");
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "files removed"
        );
    }
}
