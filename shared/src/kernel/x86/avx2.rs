//! AVX2 kernels: eight messages, one per 32-bit lane. Inputs are loaded one message per
//! register and transposed 8×8 into message words; digests are transposed back.
//! Every function here is `unsafe` only because of `#[target_feature]` and raw 32-byte
//! loads and stores of `[u8; 32]` values; callers hold a [`super::Avx2`] token.

use std::arch::x86_64::*;

use super::super::{ScoreContext, K, PAD_64_WK};
use super::by_groups;
use crate::compress::IV;
use crate::hash::Hash32;

/// Messages per kernel step.
const L: usize = 8;

/// Byte shuffle (per 128-bit half) that turns big-endian bytes into native 32-bit words.
const BSWAP: [u8; 32] = [
    3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15,
    14, 13, 12,
];

type V = __m256i;

macro_rules! rotr {
    ($x:expr, $n:literal) => {
        _mm256_or_si256(_mm256_srli_epi32($x, $n), _mm256_slli_epi32($x, 32 - $n))
    };
}

#[inline(always)]
unsafe fn add(a: V, b: V) -> V {
    _mm256_add_epi32(a, b)
}

#[inline(always)]
unsafe fn splat(x: u32) -> V {
    _mm256_set1_epi32(x as i32)
}

#[inline(always)]
unsafe fn zero() -> V {
    _mm256_setzero_si256()
}

#[inline(always)]
unsafe fn bswap(x: V) -> V {
    _mm256_shuffle_epi8(x, _mm256_loadu_si256(BSWAP.as_ptr().cast()))
}

#[inline(always)]
unsafe fn xor3(a: V, b: V, c: V) -> V {
    _mm256_xor_si256(_mm256_xor_si256(a, b), c)
}

#[inline(always)]
unsafe fn ch(e: V, f: V, g: V) -> V {
    // g ^ (e & (f ^ g)): where e is set f, else g.
    _mm256_xor_si256(g, _mm256_and_si256(e, _mm256_xor_si256(f, g)))
}

#[inline(always)]
unsafe fn maj(a: V, b: V, c: V) -> V {
    _mm256_or_si256(
        _mm256_and_si256(a, b),
        _mm256_and_si256(c, _mm256_or_si256(a, b)),
    )
}

#[inline(always)]
unsafe fn big_sigma0(a: V) -> V {
    xor3(rotr!(a, 2), rotr!(a, 13), rotr!(a, 22))
}

#[inline(always)]
unsafe fn big_sigma1(e: V) -> V {
    xor3(rotr!(e, 6), rotr!(e, 11), rotr!(e, 25))
}

#[inline(always)]
unsafe fn sigma0(x: V) -> V {
    xor3(rotr!(x, 7), rotr!(x, 18), _mm256_srli_epi32(x, 3))
}

#[inline(always)]
unsafe fn sigma1(x: V) -> V {
    xor3(rotr!(x, 17), rotr!(x, 19), _mm256_srli_epi32(x, 10))
}

lane_compressions!();

/// 8×8 transpose of 32-bit words: row `r` word `c` becomes row `c` word `r`.
#[inline(always)]
unsafe fn transpose(r: [V; 8]) -> [V; 8] {
    let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
    let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
    let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
    let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
    let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256(u0, u4, 0x20),
        _mm256_permute2x128_si256(u1, u5, 0x20),
        _mm256_permute2x128_si256(u2, u6, 0x20),
        _mm256_permute2x128_si256(u3, u7, 0x20),
        _mm256_permute2x128_si256(u0, u4, 0x31),
        _mm256_permute2x128_si256(u1, u5, 0x31),
        _mm256_permute2x128_si256(u2, u6, 0x31),
        _mm256_permute2x128_si256(u3, u7, 0x31),
    ]
}

/// Eight 32-byte values as their big-endian words: `out[t]` lane `j` = word `t` of
/// `x[offset + stride * j]`.
#[inline(always)]
unsafe fn load_words(x: &[[u8; 32]], stride: usize, offset: usize) -> [V; 8] {
    let mut rows = [zero(); 8];
    for (j, r) in rows.iter_mut().enumerate() {
        *r = bswap(_mm256_loadu_si256(x[offset + stride * j].as_ptr().cast()));
    }
    transpose(rows)
}

/// Write the digests of the eight lanes of state `s`.
#[inline(always)]
unsafe fn store_digests(s: &[V; 8], out: &mut [Hash32]) {
    let rows = transpose(*s);
    for (r, o) in rows.iter().zip(out.iter_mut()) {
        _mm256_storeu_si256(o.as_mut_ptr().cast(), bswap(*r));
    }
}

/// Words `(c[t-1] << 24) | (c[t] >> 8)`: the message shifted one byte right behind a
/// prefix byte (`c[-1]`'s low byte is taken from `prefix`).
#[inline(always)]
unsafe fn shifted<const N: usize>(prefix: V, c: &[V; N]) -> [V; N] {
    let mut out = *c;
    for t in 0..N {
        let prev = if t == 0 { prefix } else { c[t - 1] };
        out[t] = _mm256_or_si256(_mm256_slli_epi32(prev, 24), _mm256_srli_epi32(c[t], 8));
    }
    out
}

/// See [`crate::kernel::Backend::leaves`].
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn leaves(midstate: &[u32; 8], first_nonce: u64, out: &mut [[u8; 32]]) {
    let init = broadcast(midstate);
    let lane = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    let mut nonce = first_nonce;
    let mut tmp = [[0u8; 32]; L];
    for chunk in out.chunks_mut(L) {
        // Eight consecutive nonces: their low words, and the high words, which differ
        // where the low word wraps around (lanes whose low word is below the first one's).
        let lo = _mm256_add_epi32(splat(nonce as u32), lane);
        let wrapped = _mm256_cmpgt_epi32(
            _mm256_xor_si256(splat(nonce as u32), splat(0x8000_0000)),
            _mm256_xor_si256(lo, splat(0x8000_0000)),
        );
        let hi = _mm256_sub_epi32(splat((nonce >> 32) as u32), wrapped);
        let mut w = [zero(); 16];
        w[0] = bswap(lo);
        w[1] = bswap(hi);
        w[2] = splat(0x8000_0000);
        w[15] = splat(72 * 8);
        let s = compress_sparse(&init, w);
        if chunk.len() == L {
            store_digests(&s, chunk);
        } else {
            store_digests(&s, &mut tmp);
            let n = chunk.len();
            chunk.copy_from_slice(&tmp[..n]);
        }
        nonce = nonce.wrapping_add(L as u64);
    }
}

/// See [`crate::kernel::Backend::leaf_nodes`] (`out.len() == leaves.len()`).
///
/// # Safety
/// As [`leaves`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn leaf_nodes(leaves: &[[u8; 32]], out: &mut [Hash32]) {
    let iv = broadcast(&IV);
    by_groups::<L, 1>(leaves, out, |ins, outs| {
        let c = load_words(ins, 1, 0);
        let mut w = [zero(); 16];
        w[..8].copy_from_slice(&shifted(zero(), &c));
        w[8] = _mm256_or_si256(_mm256_slli_epi32(c[7], 24), splat(0x0080_0000));
        w[15] = splat(33 * 8);
        store_digests(&compress_sparse(&iv, w), outs);
    });
}

/// See [`crate::kernel::Backend::internal_nodes`] (`children.len() == 2 * out.len()`).
///
/// # Safety
/// As [`leaves`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn internal_nodes(children: &[Hash32], out: &mut [Hash32]) {
    let iv = broadcast(&IV);
    by_groups::<L, 2>(children, out, |ins, outs| {
        let mut c = [zero(); 16];
        c[..8].copy_from_slice(&load_words(ins, 2, 0));
        c[8..].copy_from_slice(&load_words(ins, 2, 1));
        // The prefix byte 0x01 sits in the low byte of the virtual word before word 0.
        let s = compress(&iv, shifted(splat(0x01), &c));
        let mut second = [zero(); 16];
        second[0] = _mm256_or_si256(_mm256_slli_epi32(c[15], 24), splat(0x0080_0000));
        second[15] = splat(65 * 8);
        store_digests(&compress_sparse(&s, second), outs);
    });
}

/// See [`crate::kernel::Backend::scores`] (`out.len() == leaves.len()`).
///
/// # Safety
/// As [`leaves`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn scores(ctx: &ScoreContext, leaves: &[[u8; 32]], out: &mut [Hash32]) {
    by_groups::<L, 1>(leaves, out, |ins, outs| {
        store_digests(&score_state(ctx, &load_words(ins, 1, 0)), outs);
    });
}
