//! The rate probes of the benchmark: hash rates on all threads and per CPU-second, and
//! the process and thread CPU clocks they read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::digest::generic_array::GenericArray;

use crate::compress::IV;
use crate::kernel::{Backend, Kernels, Scratch, Shape};

/// Chains per thread of the `tape_sha256::hash_chains` reference (issue 9's figure).
const TAPE_CHAINS: usize = 16;

/// Compressions per batch of a rate probe.
pub(super) const BATCH: u64 = 8_192;

/// `BATCH` independent one-block compressions through `sha2::compress256`, one at a time.
pub(super) fn sha2_batch(seed: u64) -> u8 {
    let mut block = [0u8; 64];
    let mut acc = 0u32;
    for i in 0..BATCH {
        block[..8].copy_from_slice(&(seed ^ i).to_le_bytes());
        let mut state = IV;
        sha2::compress256(
            &mut state,
            std::slice::from_ref(GenericArray::from_slice(&block)),
        );
        acc ^= state[0];
    }
    acc as u8
}

/// `BATCH` compressions of the active backend's leaf kernel (one full compression each).
pub(super) fn kernel_batch(seed: u64) -> u8 {
    let mut out = [[0u8; 32]; 256];
    let mid = [seed as u32; 8];
    let mut acc = 0u8;
    for i in 0..BATCH / 256 {
        Kernels::active().leaves(&mid, seed.wrapping_add(i * 256), &mut out);
        acc ^= out[255][0];
    }
    acc
}

/// `BATCH` links (one compression each) of `tape_sha256::hash_chains`, 16 chains.
pub(super) fn tape_batch(seed: u64) -> u8 {
    let seeds: [[u8; 32]; TAPE_CHAINS] = std::array::from_fn(|i| [(seed as u8) ^ i as u8; 32]);
    let lens = [BATCH / TAPE_CHAINS as u64; TAPE_CHAINS];
    let mut out = [[0u8; 32]; TAPE_CHAINS];
    tape_sha256::hash_chains(&seeds, &lens, &mut out);
    out[0][0]
}

/// User + system CPU time of this process so far, all threads (Linux `/proc/self/stat`,
/// in `USER_HZ` = 100 ticks per second); `None` elsewhere.
pub(super) fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

pub(super) fn cpu_since(before: Option<Duration>) -> Option<Duration> {
    Some(process_cpu_time()?.saturating_sub(before?))
}

/// One shape on one backend, one thread ([`BenchReport::kernel_rates`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelRate {
    /// The shape.
    pub shape: Shape,
    /// The backend.
    pub backend: Backend,
    /// SHA-256 compressions per second of CPU time.
    pub compressions_per_cpu_s: f64,
}

/// Every shape on every available backend, `probe / 4` each (empty where the OS does not
/// report thread CPU time).
pub(super) fn kernel_rates(probe: Duration) -> Vec<KernelRate> {
    let mut scratch = Scratch::default();
    let mut rates = Vec::new();
    for backend in Backend::available() {
        for shape in Shape::ALL {
            let mut run = || {
                shape.run(backend, &mut scratch, 1024);
                1024 * u64::from(shape.compressions())
            };
            if let Some(rate) = rate_per_cpu_second(probe / 4, &mut run) {
                rates.push(KernelRate {
                    shape,
                    backend,
                    compressions_per_cpu_s: rate,
                });
            }
        }
    }
    rates
}

/// CPU time of the calling thread (Linux `/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Units of work per second of CPU time the calling thread received (`run` does some and
/// says how many).
pub(super) fn rate_per_cpu_second(probe: Duration, run: &mut dyn FnMut() -> u64) -> Option<f64> {
    let before = thread_cpu_time()?;
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < probe {
        done += run();
    }
    let secs = thread_cpu_time()?.saturating_sub(before).as_secs_f64();
    (secs > 0.0).then(|| done as f64 / secs)
}

/// Units per second of `batch` on every thread of `pool` at once.
pub(super) fn rate_all(
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
