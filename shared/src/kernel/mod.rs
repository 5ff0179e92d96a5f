//! Fixed-shape multi-buffer SHA-256 kernels for the engine's hot paths.
//!
//! Every hash the engine computes in bulk has a fixed shape, so each gets its own kernel
//! that hashes many independent messages at once (several SHA-NI streams interleaved, or
//! one message per SIMD lane) and builds its message words in registers:
//!
//! | shape                                  | blocks | what is precomputed                  |
//! |----------------------------------------|-------:|--------------------------------------|
//! | leaf `H(pk ‖ seed ‖ i64_le(nonce))`    | 1      | the midstate of `pk ‖ seed`          |
//! | leaf node `H(0x00 ‖ leaf)`             | 1      | —                                    |
//! | internal node `H(0x01 ‖ left ‖ right)` | 2      | —                                    |
//! | score `H(challenge ‖ leaf)`            | 2      | rounds 0..8 of block 1 (they read only the challenge: once per challenge); block 2 is the constant padding block, so its message schedule is a constant |
//!
//! Backends:
//!
//! - `avx512`: sixteen messages, one per 32-bit lane of a 512-bit register (AVX-512 F, BW,
//!   VL: single-instruction rotations, and `vpternlogd` for Ch, Maj and the Σ XORs);
//! - `sha-ni`: the x86 SHA extensions with [`SHANI_STREAMS`] independent messages in flight
//!   (one stream is latency bound; interleaving fills the SHA unit);
//! - `avx2`: eight messages, one per 32-bit lane of a 256-bit register;
//! - `portable`: one message at a time through `sha2::compress256` (which itself uses
//!   SHA-NI when present), the reference every other backend is tested against.
//!
//! Which backend runs each shape is decided once per process ([`Kernels::active`]): by
//! default (`auto`) each shape gets the backend that hashed it fastest on this CPU in a
//! short calibration at first use ([`Kernels::fastest`]), since the order differs between
//! CPUs (on the Intel Xeon with AVX-512 that this was written on, 16 lanes beat SHA-NI x8
//! by 1.8 to 2.4x per shape; on AMD Zen, SHA-NI beats the vector units).
//! `SPACETIME_SHA256_BACKEND` = `auto` | `avx512` | `sha-ni` | `avx2` | `portable` forces one
//! backend for every shape ([`BACKEND_ENV`]); CI runs the test suite once with `portable`
//! and once with each SIMD backend the runner has.
//!
//! All `unsafe` code of the crate's hashing lives in the `x86` submodule: the only way in is
//! through a token type that can only be made after the CPU feature was detected.

use crate::compress::{compress, state_to_hash, IV, PAD_64};
use crate::hash::Hash32;

mod select;
pub use select::{Kernels, Scratch, Shape};

#[cfg(target_arch = "x86_64")]
// The SIMD kernels need `std::arch` intrinsics and raw loads; every unsafe block in the
// module carries a `// SAFETY:` comment, and the safe entry points take a feature token.
#[allow(unsafe_code)]
mod x86;

/// Environment variable that forces a backend: `auto`, `avx512`, `sha-ni`, `avx2` or
/// `portable`.
pub const BACKEND_ENV: &str = "SPACETIME_SHA256_BACKEND";

/// Messages a SHA-NI kernel keeps in flight.
pub const SHANI_STREAMS: usize = 8;

/// The SHA-256 round constants (FIPS 180-4, 4.2.2).
pub(crate) const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

const fn small_sigma0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}

const fn small_sigma1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}

/// The 64 message-schedule words of a block.
const fn schedule(block: &[u8; 64]) -> [u32; 64] {
    let mut w = [0u32; 64];
    let mut t = 0;
    while t < 16 {
        w[t] = u32::from_be_bytes([
            block[4 * t],
            block[4 * t + 1],
            block[4 * t + 2],
            block[4 * t + 3],
        ]);
        t += 1;
    }
    while t < 64 {
        w[t] = small_sigma1(w[t - 2])
            .wrapping_add(w[t - 7])
            .wrapping_add(small_sigma0(w[t - 15]))
            .wrapping_add(w[t - 16]);
        t += 1;
    }
    w
}

/// `W[t] + K[t]` of the constant second block of every 64-byte message (the score's):
/// its message schedule never changes, so the kernels only add these to the state.
pub(crate) const PAD_64_WK: [u32; 64] = {
    let w = schedule(&PAD_64);
    let mut wk = [0u32; 64];
    let mut t = 0;
    while t < 64 {
        wk[t] = w[t].wrapping_add(K[t]);
        t += 1;
    }
    wk
};

/// Rounds `0..rounds` of one compression of `words` into `state` (without the final
/// feed-forward addition): used once per challenge to precompute the score's first rounds.
fn partial_rounds(state: &[u32; 8], words: &[u32; 16], rounds: usize) -> [u32; 8] {
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for (t, &k) in K.iter().enumerate().take(rounds.min(16)) {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(s1)
            .wrapping_add(ch)
            .wrapping_add(k)
            .wrapping_add(words[t]);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    [a, b, c, d, e, f, g, h]
}

/// A SHA-256 implementation the engine can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// One message at a time through `sha2::compress256`.
    Portable,
    /// x86 SHA extensions, [`SHANI_STREAMS`] messages interleaved.
    ShaNi,
    /// x86 AVX2, eight messages in the lanes of 256-bit registers.
    Avx2,
    /// x86 AVX-512 (F, BW, VL), sixteen messages in the lanes of 512-bit registers.
    Avx512,
}

/// A value of [`BACKEND_ENV`] that names no backend, or one this CPU does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendEnvError {
    /// Not one of the names.
    #[error(
        "{BACKEND_ENV}={value:?} is not a SHA-256 backend: expected auto, avx512, sha-ni, avx2 or portable"
    )]
    Unknown {
        /// The value found.
        value: String,
    },
    /// A backend this CPU lacks.
    #[error("{BACKEND_ENV}={value:?}: this CPU does not support the {value} backend (available: {available})")]
    Unavailable {
        /// The value found.
        value: String,
        /// The names of the backends this CPU has.
        available: String,
    },
}

impl Backend {
    /// Every backend, widest first.
    pub const ALL: [Backend; 4] = [
        Backend::Avx512,
        Backend::ShaNi,
        Backend::Avx2,
        Backend::Portable,
    ];

    /// Its name in [`BACKEND_ENV`], logs and `minerd bench`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Portable => "portable",
            Backend::ShaNi => "sha-ni",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
        }
    }

    /// Messages one kernel call keeps in flight.
    pub fn lanes(self) -> usize {
        match self {
            Backend::Portable => 1,
            Backend::ShaNi => SHANI_STREAMS,
            Backend::Avx2 => 8,
            Backend::Avx512 => 16,
        }
    }

    /// Whether this CPU can run it.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Backend::ShaNi => x86::ShaNi::detect().is_some(),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => x86::Avx2::detect().is_some(),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => x86::Avx512::detect().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Backend::ShaNi | Backend::Avx2 | Backend::Avx512 => false,
        }
    }

    /// The backends this CPU can run, fastest first.
    pub fn available() -> Vec<Backend> {
        Self::ALL.into_iter().filter(|b| b.is_available()).collect()
    }

    /// The backend a [`BACKEND_ENV`] value asks for: `None` for unset, empty or `auto`.
    pub fn from_env_value(value: Option<&str>) -> Result<Option<Backend>, BackendEnvError> {
        let Some(value) = value
            .map(str::trim)
            .filter(|v| !v.is_empty() && *v != "auto")
        else {
            return Ok(None);
        };
        let backend = Self::ALL
            .into_iter()
            .find(|b| b.name() == value)
            .ok_or_else(|| BackendEnvError::Unknown {
                value: value.to_owned(),
            })?;
        if !backend.is_available() {
            return Err(BackendEnvError::Unavailable {
                value: value.to_owned(),
                available: Self::available()
                    .iter()
                    .map(|b| b.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(Some(backend))
    }

    /// `out[i] = H(pk ‖ seed ‖ i64_le(first_nonce + i))` from the midstate of `pk ‖ seed`.
    pub fn leaves(self, midstate: &[u32; 8], first_nonce: u64, out: &mut [[u8; 32]]) {
        match self.token() {
            #[cfg(target_arch = "x86_64")]
            Token::ShaNi(t) => t.leaves(midstate, first_nonce, out),
            #[cfg(target_arch = "x86_64")]
            Token::Avx2(t) => t.leaves(midstate, first_nonce, out),
            #[cfg(target_arch = "x86_64")]
            Token::Avx512(t) => t.leaves(midstate, first_nonce, out),
            Token::Portable => portable::leaves(midstate, first_nonce, out),
        }
    }

    /// `out[i] = H(0x00 ‖ leaves[i])` (Merkle leaf nodes), for `min(len)` items.
    pub fn leaf_nodes(self, leaves: &[[u8; 32]], out: &mut [Hash32]) {
        let n = leaves.len().min(out.len());
        let (leaves, out) = (&leaves[..n], &mut out[..n]);
        match self.token() {
            #[cfg(target_arch = "x86_64")]
            Token::ShaNi(t) => t.leaf_nodes(leaves, out),
            #[cfg(target_arch = "x86_64")]
            Token::Avx2(t) => t.leaf_nodes(leaves, out),
            #[cfg(target_arch = "x86_64")]
            Token::Avx512(t) => t.leaf_nodes(leaves, out),
            Token::Portable => portable::leaf_nodes(leaves, out),
        }
    }

    /// `out[i] = H(0x01 ‖ children[2i] ‖ children[2i + 1])` (Merkle internal nodes), for
    /// `min(children.len() / 2, out.len())` items.
    pub fn internal_nodes(self, children: &[Hash32], out: &mut [Hash32]) {
        let n = (children.len() / 2).min(out.len());
        let (children, out) = (&children[..2 * n], &mut out[..n]);
        match self.token() {
            #[cfg(target_arch = "x86_64")]
            Token::ShaNi(t) => t.internal_nodes(children, out),
            #[cfg(target_arch = "x86_64")]
            Token::Avx2(t) => t.internal_nodes(children, out),
            #[cfg(target_arch = "x86_64")]
            Token::Avx512(t) => t.internal_nodes(children, out),
            Token::Portable => portable::internal_nodes(children, out),
        }
    }

    /// `out[i] = H(challenge ‖ leaves[i])` (scores), for `min(len)` items.
    pub fn scores(self, ctx: &ScoreContext, leaves: &[[u8; 32]], out: &mut [Hash32]) {
        let n = leaves.len().min(out.len());
        let (leaves, out) = (&leaves[..n], &mut out[..n]);
        match self.token() {
            #[cfg(target_arch = "x86_64")]
            Token::ShaNi(t) => t.scores(ctx, leaves, out),
            #[cfg(target_arch = "x86_64")]
            Token::Avx2(t) => t.scores(ctx, leaves, out),
            #[cfg(target_arch = "x86_64")]
            Token::Avx512(t) => t.scores(ctx, leaves, out),
            Token::Portable => portable::scores(ctx, leaves, out),
        }
    }

    /// Which scores of `leaves` may be at most `bound` in their first 8 bytes (read as a
    /// big-endian integer): bit `i % 64` of `masks[i / 64]` for leaf `i`. A set bit is a
    /// candidate, to be rescored exactly; a clear bit is a leaf whose score is certainly
    /// above `bound`, so beaten by the best so far. Backends with a dedicated kernel compare
    /// in registers and never write the digests; the others hash with [`Backend::scores`].
    ///
    /// # Panics
    /// If `masks` holds fewer than `leaves.len().div_ceil(64)` words.
    pub fn score_candidates(
        self,
        ctx: &ScoreContext,
        leaves: &[[u8; 32]],
        bound: u64,
        masks: &mut [u64],
    ) {
        let words = leaves.len().div_ceil(64);
        assert!(
            masks.len() >= words,
            "score_candidates: {} mask words for {} leaves",
            masks.len(),
            leaves.len()
        );
        match self.token() {
            #[cfg(target_arch = "x86_64")]
            Token::Avx512(t) => t.score_candidates(ctx, leaves, bound, masks),
            _ => {
                let mut scores = [[0u8; 32]; 64];
                for (chunk, mask) in leaves.chunks(64).zip(masks.iter_mut()) {
                    self.scores(ctx, chunk, &mut scores);
                    *mask = 0;
                    for (i, score) in scores.iter().take(chunk.len()).enumerate() {
                        if score_prefix(score) <= bound {
                            *mask |= 1 << i;
                        }
                    }
                }
            }
        }
    }

    fn token(self) -> Token {
        match self {
            Backend::Portable => Token::Portable,
            #[cfg(target_arch = "x86_64")]
            Backend::ShaNi => x86::ShaNi::detect().map_or(Token::Portable, Token::ShaNi),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => x86::Avx2::detect().map_or(Token::Portable, Token::Avx2),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => x86::Avx512::detect().map_or(Token::Portable, Token::Avx512),
            #[cfg(not(target_arch = "x86_64"))]
            Backend::ShaNi | Backend::Avx2 | Backend::Avx512 => Token::Portable,
        }
    }
}

/// A backend with the proof that the CPU has it.
enum Token {
    Portable,
    #[cfg(target_arch = "x86_64")]
    ShaNi(x86::ShaNi),
    #[cfg(target_arch = "x86_64")]
    Avx2(x86::Avx2),
    #[cfg(target_arch = "x86_64")]
    Avx512(x86::Avx512),
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The first 8 bytes of a score as a big-endian integer: it orders like the score's bytes
/// do, so `score_prefix(a) < score_prefix(b)` implies `a < b`.
#[inline]
pub fn score_prefix(score: &Hash32) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&score[..8]);
    u64::from_be_bytes(bytes)
}

/// What a score kernel precomputes once per challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreContext {
    /// The challenge bytes (the portable backend hashes them as they are).
    challenge: Hash32,
    /// Message words 0..8 of the first block: the challenge, big-endian.
    words: [u32; 8],
    /// The state after rounds 0..8 of the first block (they read only words 0..8).
    after8: [u32; 8],
}

impl ScoreContext {
    /// Precompute for `challenge`.
    pub fn new(challenge: &Hash32) -> Self {
        let mut words = [0u32; 16];
        for (w, chunk) in words.iter_mut().zip(challenge.chunks_exact(4)) {
            *w = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        let after8 = partial_rounds(&IV, &words, 8);
        let mut first = [0u32; 8];
        first.copy_from_slice(&words[..8]);
        Self {
            challenge: *challenge,
            words: first,
            after8,
        }
    }

    /// The challenge.
    pub fn challenge(&self) -> &Hash32 {
        &self.challenge
    }
}

/// The one-message-at-a-time reference implementation of every shape.
mod portable {
    use super::*;
    use crate::compress::{internal_node, leaf_node};

    pub(super) fn leaves(midstate: &[u32; 8], first_nonce: u64, out: &mut [[u8; 32]]) {
        let mut block = crate::compress::pad_block([0u8; 64], 72);
        for (out, nonce) in out.iter_mut().zip(first_nonce..) {
            block[..8].copy_from_slice(&nonce.to_le_bytes());
            let mut state = *midstate;
            compress(&mut state, &block);
            *out = state_to_hash(&state);
        }
    }

    pub(super) fn leaf_nodes(leaves: &[[u8; 32]], out: &mut [Hash32]) {
        for (leaf, out) in leaves.iter().zip(out) {
            *out = leaf_node(leaf);
        }
    }

    pub(super) fn internal_nodes(children: &[Hash32], out: &mut [Hash32]) {
        for (pair, out) in children.chunks_exact(2).zip(out) {
            *out = internal_node(&pair[0], &pair[1]);
        }
    }

    pub(super) fn scores(ctx: &ScoreContext, leaves: &[[u8; 32]], out: &mut [Hash32]) {
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&ctx.challenge);
        for (leaf, out) in leaves.iter().zip(out) {
            block[32..].copy_from_slice(leaf);
            let mut state = IV;
            compress(&mut state, &block);
            compress(&mut state, &PAD_64);
            *out = state_to_hash(&state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256_concat;
    use proptest::prelude::*;

    fn midstate(pk: &[u8; 32], seed: &[u8; 32]) -> [u32; 8] {
        let mut first = [0u8; 64];
        first[..32].copy_from_slice(pk);
        first[32..].copy_from_slice(seed);
        let mut state = IV;
        compress(&mut state, &first);
        state
    }

    /// Lengths that cover empty input, partial lane groups and several full groups.
    fn lengths() -> impl Strategy<Value = usize> {
        prop_oneof![0usize..20, 20usize..80]
    }

    #[test]
    fn the_machine_has_at_least_the_portable_backend_and_names_round_trip() {
        let available = Backend::available();
        assert!(available.contains(&Backend::Portable));
        for b in Backend::ALL {
            if b.is_available() {
                assert_eq!(Backend::from_env_value(Some(b.name())), Ok(Some(b)));
            } else {
                assert!(matches!(
                    Backend::from_env_value(Some(b.name())),
                    Err(BackendEnvError::Unavailable { .. })
                ));
            }
        }
        assert_eq!(Backend::from_env_value(None), Ok(None));
        assert_eq!(Backend::from_env_value(Some("auto")), Ok(None));
        assert_eq!(Backend::from_env_value(Some(" ")), Ok(None));
        let err = Backend::from_env_value(Some("avx9")).unwrap_err();
        assert!(err.to_string().contains("avx9"), "{err}");
        eprintln!(
            "SHA-256 backends on this machine: {:?} (active {})",
            available,
            Kernels::active()
        );
    }

    #[test]
    fn the_constant_second_block_schedule_is_the_padding_block_schedule() {
        // Rounds from the constants equal a plain compression of the padding block.
        let block: [u8; 64] = std::array::from_fn(|i| i as u8);
        for b in Backend::available() {
            let challenge: [u8; 32] = block[..32].try_into().unwrap();
            let leaf: [u8; 32] = block[32..].try_into().unwrap();
            let mut out = [[0u8; 32]; 1];
            b.scores(&ScoreContext::new(&challenge), &[leaf], &mut out);
            assert_eq!(out[0], crate::hash::sha256(&block), "{b}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn leaf_kernels_match_sha2(pk in any::<[u8; 32]>(), seed in any::<[u8; 32]>(),
                                   first in any::<u64>(), len in lengths()) {
            let mid = midstate(&pk, &seed);
            let expected: Vec<Hash32> = (0..len as u64)
                .map(|i| sha256_concat(&[&pk, &seed, &first.wrapping_add(i).to_le_bytes()]))
                .collect();
            for b in Backend::available() {
                let mut out = vec![[0u8; 32]; len];
                b.leaves(&mid, first, &mut out);
                prop_assert_eq!(&out, &expected, "backend {}", b);
            }
        }

        #[test]
        fn leaf_node_kernels_match_sha2(leaves in proptest::collection::vec(any::<[u8; 32]>(), 0..80)) {
            let expected: Vec<Hash32> = leaves.iter().map(|l| sha256_concat(&[&[0u8], l])).collect();
            for b in Backend::available() {
                let mut out = vec![[0u8; 32]; leaves.len()];
                b.leaf_nodes(&leaves, &mut out);
                prop_assert_eq!(&out, &expected, "backend {}", b);
            }
        }

        #[test]
        fn internal_node_kernels_match_sha2(children in proptest::collection::vec(any::<[u8; 32]>(), 0..120)) {
            let expected: Vec<Hash32> = children
                .chunks_exact(2)
                .map(|p| sha256_concat(&[&[1u8], &p[0], &p[1]]))
                .collect();
            for b in Backend::available() {
                let mut out = vec![[0u8; 32]; children.len() / 2];
                b.internal_nodes(&children, &mut out);
                prop_assert_eq!(&out, &expected, "backend {}", b);
            }
        }

        #[test]
        fn score_candidates_are_exactly_the_scores_within_the_bound(
            challenge in any::<[u8; 32]>(),
            leaves in proptest::collection::vec(any::<[u8; 32]>(), 0..150),
            pick in any::<proptest::sample::Index>(),
            nudge in -2i64..=2,
        ) {
            let ctx = ScoreContext::new(&challenge);
            let prefixes: Vec<u64> = leaves
                .iter()
                .map(|l| score_prefix(&sha256_concat(&[&challenge, l])))
                .collect();
            // Bounds at, just around, and far from real prefixes (ties on the prefix must
            // be candidates), plus the extremes.
            let mut bounds = vec![0, u64::MAX, 1 << 63];
            if !prefixes.is_empty() {
                let p = prefixes[pick.index(prefixes.len())];
                bounds.push(p.saturating_add_signed(nudge));
                bounds.push(p & 0xffff_ffff_0000_0000);
                bounds.push(p | 0x0000_0000_ffff_ffff);
            }
            for b in Backend::available() {
                for &bound in &bounds {
                    let mut masks = vec![u64::MAX; leaves.len().div_ceil(64)];
                    b.score_candidates(&ctx, &leaves, bound, &mut masks);
                    for (i, &p) in prefixes.iter().enumerate() {
                        let set = masks[i / 64] >> (i % 64) & 1 == 1;
                        prop_assert_eq!(set, p <= bound, "backend {} leaf {} bound {:#x}", b, i, bound);
                    }
                    if leaves.len() % 64 != 0 {
                        prop_assert_eq!(masks[leaves.len() / 64] >> (leaves.len() % 64), 0, "backend {}: bits past the end", b);
                    }
                }
            }
        }

        #[test]
        fn score_kernels_match_sha2(challenge in any::<[u8; 32]>(),
                                    leaves in proptest::collection::vec(any::<[u8; 32]>(), 0..80)) {
            let expected: Vec<Hash32> = leaves.iter().map(|l| sha256_concat(&[&challenge, l])).collect();
            let ctx = ScoreContext::new(&challenge);
            for b in Backend::available() {
                let mut out = vec![[0u8; 32]; leaves.len()];
                b.scores(&ctx, &leaves, &mut out);
                prop_assert_eq!(&out, &expected, "backend {}", b);
            }
        }
    }
}
