//! The x86-64 kernels. Each backend is reached through a token that [`ShaNi::detect`],
//! [`Avx2::detect`] and [`Avx512::detect`] only hand out when the running CPU has the instructions, so the
//! `#[target_feature]` functions behind it are only ever called where they may run.

use super::ScoreContext;
use crate::hash::Hash32;

#[macro_use]
mod rounds;

mod avx2;
mod avx512;
mod shani;

/// Most lanes of any kernel here (AVX-512).
const MAX_LANES: usize = 16;

/// Runs `body` over groups of `PER * LANES` inputs and `LANES` outputs (`PER` inputs make
/// one output), the tail padded with zero inputs whose outputs are dropped.
#[inline(always)]
fn by_groups<const LANES: usize, const PER: usize>(
    inputs: &[[u8; 32]],
    out: &mut [Hash32],
    mut body: impl FnMut(&[[u8; 32]], &mut [Hash32]),
) {
    let mut ins = inputs.chunks_exact(PER * LANES);
    let mut outs = out.chunks_exact_mut(LANES);
    for (i, o) in (&mut ins).zip(&mut outs) {
        body(i, o);
    }
    let (rest_in, rest_out) = (ins.remainder(), outs.into_remainder());
    if !rest_out.is_empty() {
        let mut padded = [[0u8; 32]; 2 * MAX_LANES];
        let used = rest_in.len().min(PER * LANES);
        padded[..used].copy_from_slice(&rest_in[..used]);
        let mut tmp = [[0u8; 32]; MAX_LANES];
        body(&padded[..PER * LANES], &mut tmp[..LANES]);
        let n = rest_out.len();
        rest_out.copy_from_slice(&tmp[..n]);
    }
}

/// Proof that the CPU has SHA-NI (and the SSSE3 / SSE4.1 shuffles the kernel uses).
#[derive(Debug, Clone, Copy)]
pub(super) struct ShaNi(());

impl ShaNi {
    pub(super) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse2")
            && is_x86_feature_detected!("ssse3")
            && is_x86_feature_detected!("sse4.1"))
        .then_some(ShaNi(()))
    }

    pub(super) fn leaves(self, midstate: &[u32; 8], first_nonce: u64, out: &mut [[u8; 32]]) {
        // SAFETY: the token exists only when `detect` found every feature the function
        // enables.
        unsafe { shani::leaves(midstate, first_nonce, out) }
    }

    pub(super) fn leaf_nodes(self, leaves: &[[u8; 32]], out: &mut [Hash32]) {
        // SAFETY: as in `leaves`.
        unsafe { shani::leaf_nodes(leaves, out) }
    }

    pub(super) fn internal_nodes(self, children: &[Hash32], out: &mut [Hash32]) {
        // SAFETY: as in `leaves`.
        unsafe { shani::internal_nodes(children, out) }
    }

    pub(super) fn scores(self, ctx: &ScoreContext, leaves: &[[u8; 32]], out: &mut [Hash32]) {
        // SAFETY: as in `leaves`.
        unsafe { shani::scores(ctx, leaves, out) }
    }
}

/// Proof that the CPU has AVX2.
#[derive(Debug, Clone, Copy)]
pub(super) struct Avx2(());

impl Avx2 {
    pub(super) fn detect() -> Option<Self> {
        is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }

    pub(super) fn leaves(self, midstate: &[u32; 8], first_nonce: u64, out: &mut [[u8; 32]]) {
        // SAFETY: the token exists only when `detect` found AVX2.
        unsafe { avx2::leaves(midstate, first_nonce, out) }
    }

    pub(super) fn leaf_nodes(self, leaves: &[[u8; 32]], out: &mut [Hash32]) {
        // SAFETY: as in `leaves`.
        unsafe { avx2::leaf_nodes(leaves, out) }
    }

    pub(super) fn internal_nodes(self, children: &[Hash32], out: &mut [Hash32]) {
        // SAFETY: as in `leaves`.
        unsafe { avx2::internal_nodes(children, out) }
    }

    pub(super) fn scores(self, ctx: &ScoreContext, leaves: &[[u8; 32]], out: &mut [Hash32]) {
        // SAFETY: as in `leaves`.
        unsafe { avx2::scores(ctx, leaves, out) }
    }
}

/// Proof that the CPU has AVX-512 F, BW and VL (and AVX2, which the transposes use).
#[derive(Debug, Clone, Copy)]
pub(super) struct Avx512(());

impl Avx512 {
    pub(super) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx2"))
        .then_some(Avx512(()))
    }

    pub(super) fn leaves(self, midstate: &[u32; 8], first_nonce: u64, out: &mut [[u8; 32]]) {
        // SAFETY: the token exists only when `detect` found every feature the function
        // enables.
        unsafe { avx512::leaves(midstate, first_nonce, out) }
    }

    pub(super) fn leaf_nodes(self, leaves: &[[u8; 32]], out: &mut [Hash32]) {
        // SAFETY: as in `leaves`.
        unsafe { avx512::leaf_nodes(leaves, out) }
    }

    pub(super) fn internal_nodes(self, children: &[Hash32], out: &mut [Hash32]) {
        // SAFETY: as in `leaves`.
        unsafe { avx512::internal_nodes(children, out) }
    }

    pub(super) fn scores(self, ctx: &ScoreContext, leaves: &[[u8; 32]], out: &mut [Hash32]) {
        // SAFETY: as in `leaves`.
        unsafe { avx512::scores(ctx, leaves, out) }
    }

    pub(super) fn score_candidates(
        self,
        ctx: &ScoreContext,
        leaves: &[[u8; 32]],
        bound: u64,
        masks: &mut [u64],
    ) {
        // SAFETY: as in `leaves`; `masks` holds a word per 64 leaves (checked by the
        // caller, and indexing is bounds-checked anyway).
        unsafe { avx512::score_candidates(ctx, leaves, bound, masks) }
    }
}
