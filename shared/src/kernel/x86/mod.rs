//! The x86-64 kernels. Each backend is reached through a token that [`ShaNi::detect`] /
//! [`Avx2::detect`] only hands out when the running CPU has the instructions, so the
//! `#[target_feature]` functions behind it are only ever called where they may run.

use super::ScoreContext;
use crate::hash::Hash32;

mod avx2;
mod shani;

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
