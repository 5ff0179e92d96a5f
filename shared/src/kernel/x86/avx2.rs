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
unsafe fn bswap(x: V) -> V {
    _mm256_shuffle_epi8(x, _mm256_loadu_si256(BSWAP.as_ptr().cast()))
}

#[inline(always)]
unsafe fn round(s: &mut [V; 8], wk: V) {
    let [a, b, c, d, e, f, g, h] = *s;
    let big_s1 = _mm256_xor_si256(_mm256_xor_si256(rotr!(e, 6), rotr!(e, 11)), rotr!(e, 25));
    let ch = _mm256_xor_si256(_mm256_and_si256(e, f), _mm256_andnot_si256(e, g));
    let t1 = add(add(add(h, big_s1), ch), wk);
    let big_s0 = _mm256_xor_si256(_mm256_xor_si256(rotr!(a, 2), rotr!(a, 13)), rotr!(a, 22));
    let maj = _mm256_or_si256(
        _mm256_and_si256(a, b),
        _mm256_and_si256(c, _mm256_or_si256(a, b)),
    );
    let t2 = add(big_s0, maj);
    *s = [add(t1, t2), a, b, c, add(d, t1), e, f, g];
}

/// Rounds `START..64` of a compression of `w` (words 0..16 of the block) into `s`, then
/// the feed-forward of `base` (the state before round 0).
#[inline(always)]
unsafe fn compress_from<const START: usize>(s: &mut [V; 8], w: &mut [V; 16], base: &[V; 8]) {
    for (t, &k) in K.iter().enumerate().skip(START) {
        if t >= 16 {
            let w2 = w[(t - 2) & 15];
            let w15 = w[(t - 15) & 15];
            let s1 = _mm256_xor_si256(
                _mm256_xor_si256(rotr!(w2, 17), rotr!(w2, 19)),
                _mm256_srli_epi32(w2, 10),
            );
            let s0 = _mm256_xor_si256(
                _mm256_xor_si256(rotr!(w15, 7), rotr!(w15, 18)),
                _mm256_srli_epi32(w15, 3),
            );
            w[t & 15] = add(add(s1, w[(t - 7) & 15]), add(s0, w[t & 15]));
        }
        round(s, add(w[t & 15], splat(k)));
    }
    for (x, b) in s.iter_mut().zip(base) {
        *x = add(*x, *b);
    }
}

/// The constant second block of a 64-byte message: rounds on precomputed `W + K`.
#[inline(always)]
unsafe fn compress_pad64(s: &mut [V; 8]) {
    let base = *s;
    for &wk in &PAD_64_WK {
        round(s, splat(wk));
    }
    for (x, b) in s.iter_mut().zip(&base) {
        *x = add(*x, *b);
    }
}

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

/// Eight 32-byte values as their big-endian words: `out[t]` lane `j` = word `t` of `x[j]`.
#[inline(always)]
pub(super) unsafe fn load_words(x: &[[u8; 32]]) -> [V; 8] {
    let mut rows = [_mm256_setzero_si256(); 8];
    for (r, v) in rows.iter_mut().zip(x) {
        *r = bswap(_mm256_loadu_si256(v.as_ptr().cast()));
    }
    transpose(rows)
}

/// Write the digests of the eight lanes of state `s`.
#[inline(always)]
pub(super) unsafe fn store_digests(s: &[V; 8], out: &mut [Hash32]) {
    let rows = transpose(*s);
    for (r, o) in rows.iter().zip(out.iter_mut()) {
        _mm256_storeu_si256(o.as_mut_ptr().cast(), bswap(*r));
    }
}

#[inline(always)]
unsafe fn broadcast(state: &[u32; 8]) -> [V; 8] {
    state.map(|x| splat(x))
}

/// Words `(c[t-1] << 24) | (c[t] >> 8)`: the message shifted one byte right behind a
/// prefix byte (`c[-1]`'s low byte is taken from `prefix`).
#[inline(always)]
unsafe fn shifted(prefix: V, c: &[V]) -> impl Iterator<Item = V> + '_ {
    (0..c.len()).map(move |t| {
        let prev = if t == 0 { prefix } else { c[t - 1] };
        _mm256_or_si256(_mm256_slli_epi32(prev, 24), _mm256_srli_epi32(c[t], 8))
    })
}

/// See [`crate::kernel::Backend::leaves`].
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn leaves(midstate: &[u32; 8], first_nonce: u64, out: &mut [[u8; 32]]) {
    let init = broadcast(midstate);
    let zero = _mm256_setzero_si256();
    let mut nonce = first_nonce;
    let mut tmp = [[0u8; 32]; L];
    for chunk in out.chunks_mut(L) {
        let lo: [u32; L] =
            std::array::from_fn(|j| (nonce.wrapping_add(j as u64) as u32).swap_bytes());
        let hi: [u32; L] =
            std::array::from_fn(|j| ((nonce.wrapping_add(j as u64) >> 32) as u32).swap_bytes());
        let mut w = [zero; 16];
        w[0] = _mm256_loadu_si256(lo.as_ptr().cast());
        w[1] = _mm256_loadu_si256(hi.as_ptr().cast());
        w[2] = splat(0x8000_0000);
        w[15] = splat(72 * 8);
        let mut s = init;
        compress_from::<0>(&mut s, &mut w, &init);
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
    let zero = _mm256_setzero_si256();
    by_groups::<L, 1>(leaves, out, |ins, outs| {
        let c = load_words(ins);
        let mut w = [zero; 16];
        for (w, x) in w.iter_mut().zip(shifted(zero, &c)) {
            *w = x;
        }
        w[8] = _mm256_or_si256(_mm256_slli_epi32(c[7], 24), splat(0x0080_0000));
        w[15] = splat(33 * 8);
        let mut s = iv;
        compress_from::<0>(&mut s, &mut w, &iv);
        store_digests(&s, outs);
    });
}

/// See [`crate::kernel::Backend::internal_nodes`] (`children.len() == 2 * out.len()`).
///
/// # Safety
/// As [`leaves`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn internal_nodes(children: &[Hash32], out: &mut [Hash32]) {
    let iv = broadcast(&IV);
    let zero = _mm256_setzero_si256();
    by_groups::<L, 2>(children, out, |ins, outs| {
        let lefts: [Hash32; L] = std::array::from_fn(|j| ins[2 * j]);
        let rights: [Hash32; L] = std::array::from_fn(|j| ins[2 * j + 1]);
        let a = load_words(&lefts);
        let b = load_words(&rights);
        let c: [V; 16] = std::array::from_fn(|t| if t < 8 { a[t] } else { b[t - 8] });
        let mut w = [zero; 16];
        // The prefix byte 0x01 sits in the low byte of the virtual word before word 0.
        for (w, x) in w.iter_mut().zip(shifted(splat(0x01), &c)) {
            *w = x;
        }
        let mut s = iv;
        compress_from::<0>(&mut s, &mut w, &iv);
        let mut second = [zero; 16];
        second[0] = _mm256_or_si256(_mm256_slli_epi32(c[15], 24), splat(0x0080_0000));
        second[15] = splat(65 * 8);
        let base = s;
        compress_from::<0>(&mut s, &mut second, &base);
        store_digests(&s, outs);
    });
}

/// See [`crate::kernel::Backend::scores`] (`out.len() == leaves.len()`).
///
/// # Safety
/// As [`leaves`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn scores(ctx: &ScoreContext, leaves: &[[u8; 32]], out: &mut [Hash32]) {
    let iv = broadcast(&IV);
    let after8 = broadcast(&ctx.after8);
    let head: [V; 8] = ctx.words.map(|x| splat(x));
    by_groups::<L, 1>(leaves, out, |ins, outs| {
        let l = load_words(ins);
        let mut w: [V; 16] = std::array::from_fn(|t| if t < 8 { head[t] } else { l[t - 8] });
        let mut s = after8;
        compress_from::<8>(&mut s, &mut w, &iv);
        compress_pad64(&mut s);
        store_digests(&s, outs);
    });
}
