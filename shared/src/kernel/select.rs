//! Which backend runs each hash shape: forced by [`BACKEND_ENV`], or the fastest on this
//! CPU, measured once per process.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Backend, BackendEnvError, ScoreContext, BACKEND_ENV};
use crate::hash::Hash32;

/// A fixed-shape hash the engine computes in bulk (see the module table of
/// [`crate::kernel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// Leaf generation `H(pk ‖ seed ‖ nonce)`.
    Leaf,
    /// Merkle leaf node `H(0x00 ‖ leaf)`.
    LeafNode,
    /// Merkle internal node `H(0x01 ‖ left ‖ right)`.
    InternalNode,
    /// Score `H(challenge ‖ leaf)`.
    Score,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 4] = [
        Shape::Leaf,
        Shape::LeafNode,
        Shape::InternalNode,
        Shape::Score,
    ];

    /// Its name in logs and `minerd bench`.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Leaf => "leaf",
            Shape::LeafNode => "leaf-node",
            Shape::InternalNode => "internal-node",
            Shape::Score => "score",
        }
    }

    /// SHA-256 compressions one message of this shape costs (the score's second block is
    /// the constant one, but it is still a compression).
    pub fn compressions(self) -> u32 {
        match self {
            Shape::Leaf | Shape::LeafNode => 1,
            Shape::InternalNode | Shape::Score => 2,
        }
    }

    /// Hash `count` messages of this shape on `backend` (inputs of `scratch`, which is
    /// reused): what the calibration and `minerd bench` time.
    pub fn run(self, backend: Backend, scratch: &mut Scratch, count: usize) {
        scratch.grow(count);
        let Scratch { ctx, input, out } = scratch;
        match self {
            Shape::Leaf => backend.leaves(&[0x6a09_e667; 8], input.len() as u64, &mut out[..count]),
            Shape::LeafNode => backend.leaf_nodes(&input[..count], &mut out[..count]),
            Shape::InternalNode => backend.internal_nodes(&input[..2 * count], &mut out[..count]),
            // What a scan runs: which scores may beat the best so far (a low bound, as
            // almost all the time).
            Shape::Score => {
                let mut masks = [0u64; 4];
                for chunk in input[..count].chunks(256) {
                    backend.score_candidates(ctx, chunk, 1 << 40, &mut masks);
                    out[0][0] ^= masks[0] as u8;
                }
                out[count.saturating_sub(1)][1] ^= out[0][0];
            }
        }
        // The outputs feed the next run's inputs, so no run can be optimised away.
        input[0] = out[count.saturating_sub(1)];
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Inputs and outputs for timing a shape ([`Shape::run`]).
#[derive(Debug, Clone)]
pub struct Scratch {
    ctx: ScoreContext,
    input: Vec<Hash32>,
    out: Vec<Hash32>,
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            ctx: ScoreContext::new(&[0x5c; 32]),
            input: Vec::new(),
            out: Vec::new(),
        }
    }
}

impl Scratch {
    fn grow(&mut self, count: usize) {
        if self.out.len() < count {
            let len = self.input.len();
            self.input
                .extend((len..2 * count).map(|i| [(i as u8).wrapping_mul(37); 32]));
            self.out.resize(count, [0u8; 32]);
        }
    }
}

/// The backend of every shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kernels {
    /// Leaf generation.
    pub leaf: Backend,
    /// Merkle leaf nodes.
    pub leaf_node: Backend,
    /// Merkle internal nodes.
    pub internal_node: Backend,
    /// Scores.
    pub score: Backend,
}

/// Messages per timed calibration run: a few microseconds on any backend.
const CALIBRATION_MESSAGES: usize = 256;
/// Timed runs per shape and backend; the fastest counts (preemption only adds time).
const CALIBRATION_RUNS: usize = 12;
/// Untimed work per backend first: wide vector units reach full speed only after a few
/// microseconds of use.
const CALIBRATION_WARMUP: Duration = Duration::from_micros(200);

impl Kernels {
    /// `backend` for every shape.
    pub fn uniform(backend: Backend) -> Self {
        Self {
            leaf: backend,
            leaf_node: backend,
            internal_node: backend,
            score: backend,
        }
    }

    /// The backend of `shape`.
    pub fn get(&self, shape: Shape) -> Backend {
        match shape {
            Shape::Leaf => self.leaf,
            Shape::LeafNode => self.leaf_node,
            Shape::InternalNode => self.internal_node,
            Shape::Score => self.score,
        }
    }

    fn set(&mut self, shape: Shape, backend: Backend) {
        match shape {
            Shape::Leaf => self.leaf = backend,
            Shape::LeafNode => self.leaf_node = backend,
            Shape::InternalNode => self.internal_node = backend,
            Shape::Score => self.score = backend,
        }
    }

    /// Per shape, the available backend that hashes it fastest on this CPU: each one is
    /// warmed up, then timed on a few short runs of every shape, the fastest run counting
    /// (about a millisecond in all). Every backend computes the same hashes, so the choice
    /// only changes speed.
    pub fn fastest() -> Self {
        let available = Backend::available();
        let mut best = Self::uniform(Backend::Portable);
        let mut best_time = [Duration::MAX; 4];
        let mut scratch = Scratch::default();
        for &backend in &available {
            let warm = Instant::now();
            while warm.elapsed() < CALIBRATION_WARMUP {
                for shape in Shape::ALL {
                    shape.run(backend, &mut scratch, CALIBRATION_MESSAGES);
                }
            }
            for (i, shape) in Shape::ALL.into_iter().enumerate() {
                let mut fastest = Duration::MAX;
                for _ in 0..CALIBRATION_RUNS {
                    let started = Instant::now();
                    shape.run(backend, &mut scratch, CALIBRATION_MESSAGES);
                    fastest = fastest.min(started.elapsed());
                }
                if fastest < best_time[i] {
                    best_time[i] = fastest;
                    best.set(shape, backend);
                }
            }
        }
        best
    }

    /// What the process environment asks for: the backend [`BACKEND_ENV`] names for every
    /// shape, else [`Kernels::fastest`].
    pub fn configured() -> Result<Self, BackendEnvError> {
        let value = std::env::var(BACKEND_ENV).ok();
        Ok(match Backend::from_env_value(value.as_deref())? {
            Some(b) => Self::uniform(b),
            None => Self::fastest(),
        })
    }

    /// [`Kernels::configured`], decided once per process; binaries call this at start so
    /// that a bad [`BACKEND_ENV`] is a clear error, not a silent fallback.
    pub fn try_active() -> Result<Self, BackendEnvError> {
        static ACTIVE: OnceLock<Result<Kernels, BackendEnvError>> = OnceLock::new();
        ACTIVE.get_or_init(Self::configured).clone()
    }

    /// The kernels every engine hash uses ([`Kernels::try_active`]). An invalid
    /// [`BACKEND_ENV`] falls back to the portable backend here (the binaries reject it at
    /// start, before any hashing).
    pub fn active() -> Self {
        Self::try_active().unwrap_or(Self::uniform(Backend::Portable))
    }

    /// `out[i] = H(pk ‖ seed ‖ i64_le(first_nonce + i))`: [`Backend::leaves`].
    pub fn leaves(&self, midstate: &[u32; 8], first_nonce: u64, out: &mut [[u8; 32]]) {
        self.leaf.leaves(midstate, first_nonce, out)
    }

    /// Merkle leaf nodes: [`Backend::leaf_nodes`].
    pub fn leaf_nodes(&self, leaves: &[[u8; 32]], out: &mut [Hash32]) {
        self.leaf_node.leaf_nodes(leaves, out)
    }

    /// Merkle internal nodes: [`Backend::internal_nodes`].
    pub fn internal_nodes(&self, children: &[Hash32], out: &mut [Hash32]) {
        self.internal_node.internal_nodes(children, out)
    }

    /// Scores: [`Backend::scores`].
    pub fn scores(&self, ctx: &ScoreContext, leaves: &[[u8; 32]], out: &mut [Hash32]) {
        self.score.scores(ctx, leaves, out)
    }

    /// Score candidates below a bound: [`Backend::score_candidates`].
    pub fn score_candidates(
        &self,
        ctx: &ScoreContext,
        leaves: &[[u8; 32]],
        bound: u64,
        masks: &mut [u64],
    ) {
        self.score.score_candidates(ctx, leaves, bound, masks)
    }
}

/// One backend's name when every shape uses it, else `shape backend` per shape.
impl fmt::Display for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if Shape::ALL.iter().all(|&s| self.get(s) == self.leaf) {
            return f.write_str(self.leaf.name());
        }
        for (i, shape) in Shape::ALL.into_iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{shape} {}", self.get(shape))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_kernels_are_available_ones_and_forced_ones_are_uniform() {
        let fastest = Kernels::fastest();
        for shape in Shape::ALL {
            assert!(fastest.get(shape).is_available(), "{shape}: {fastest}");
        }
        eprintln!("fastest kernels on this machine: {fastest}");
        let forced = Kernels::uniform(Backend::Portable);
        assert_eq!(forced.to_string(), "portable");
        let mut mixed = forced;
        mixed.set(Shape::Score, Backend::Avx2);
        assert_eq!(
            mixed.to_string(),
            "leaf portable, leaf-node portable, internal-node portable, score avx2"
        );
    }
}
