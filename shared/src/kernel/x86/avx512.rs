//! AVX-512 kernels: sixteen messages, one per 32-bit lane of a 512-bit register. The
//! rotations are single instructions (`vprord`) and Ch, Maj and the three-way XORs of the
//! Σ / σ functions are one `vpternlogd` each. Inputs are transposed into message words with
//! the AVX2 8×8 transpose, once per half; digests are transposed back the same way.
//! Every function here is `unsafe` only because of `#[target_feature]` and raw 32-byte
//! loads and stores of `[u8; 32]` values; callers hold a [`super::Avx512`] token.

use std::arch::x86_64::*;

use super::super::{small_sigma0, ScoreContext, K, PAD_64_WK};
use super::{avx2, by_groups};
use crate::compress::IV;
use crate::hash::Hash32;

/// Messages per kernel step.
const L: usize = 16;

type V = __m512i;

/// `vpternlogd` truth tables.
const XOR3: i32 = 0x96;
const CH: i32 = 0xCA;
const MAJ: i32 = 0xE8;

#[inline(always)]
unsafe fn add(a: V, b: V) -> V {
    _mm512_add_epi32(a, b)
}

#[inline(always)]
unsafe fn splat(x: u32) -> V {
    _mm512_set1_epi32(x as i32)
}

#[inline(always)]
unsafe fn round(s: &mut [V; 8], wk: V) {
    let [a, b, c, d, e, f, g, h] = *s;
    let big_s1 = _mm512_ternarylogic_epi32::<XOR3>(
        _mm512_ror_epi32::<6>(e),
        _mm512_ror_epi32::<11>(e),
        _mm512_ror_epi32::<25>(e),
    );
    let ch = _mm512_ternarylogic_epi32::<CH>(e, f, g);
    // `h + wk` does not depend on this round's e: it goes first, off the critical path.
    let t1 = add(add(add(h, wk), ch), big_s1);
    let big_s0 = _mm512_ternarylogic_epi32::<XOR3>(
        _mm512_ror_epi32::<2>(a),
        _mm512_ror_epi32::<13>(a),
        _mm512_ror_epi32::<22>(a),
    );
    let maj = _mm512_ternarylogic_epi32::<MAJ>(a, b, c);
    let t2 = add(big_s0, maj);
    *s = [add(t1, t2), a, b, c, add(d, t1), e, f, g];
}

#[inline(always)]
unsafe fn sigma0(x: V) -> V {
    _mm512_ternarylogic_epi32::<XOR3>(
        _mm512_ror_epi32::<7>(x),
        _mm512_ror_epi32::<18>(x),
        _mm512_srli_epi32::<3>(x),
    )
}

#[inline(always)]
unsafe fn sigma1(x: V) -> V {
    _mm512_ternarylogic_epi32::<XOR3>(
        _mm512_ror_epi32::<17>(x),
        _mm512_ror_epi32::<19>(x),
        _mm512_srli_epi32::<10>(x),
    )
}

/// Rounds `START..64` of a compression of `w` (words 0..16 of the block) into `s`, then
/// the feed-forward of `base` (the state before round 0). `fixed[t - 16]`, when given, is
/// `σ0(W[t-15]) + W[t-16]` for `t` in `16..16 + fixed.len()` (known when those words are
/// the same in every lane).
#[inline(always)]
unsafe fn compress_from<const START: usize>(
    s: &mut [V; 8],
    w: &mut [V; 16],
    fixed: &[V],
    base: &[V; 8],
) {
    for (t, &k) in K.iter().enumerate().skip(START) {
        if t >= 16 {
            let tail = match fixed.get(t - 16) {
                Some(&f) => f,
                None => add(sigma0(w[(t - 15) & 15]), w[t & 15]),
            };
            w[t & 15] = add(add(sigma1(w[(t - 2) & 15]), w[(t - 7) & 15]), tail);
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

/// Sixteen 32-byte values as their big-endian words: `out[t]` lane `j` = word `t` of `x[j]`.
#[inline(always)]
unsafe fn load_words(x: &[[u8; 32]]) -> [V; 8] {
    let lo = avx2::load_words(&x[..8]);
    let hi = avx2::load_words(&x[8..16]);
    std::array::from_fn(|t| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo[t]), hi[t]))
}

/// Write the digests of the sixteen lanes of state `s`.
#[inline(always)]
unsafe fn store_digests(s: &[V; 8], out: &mut [Hash32]) {
    let lo: [__m256i; 8] = s.map(|x| _mm512_castsi512_si256(x));
    let hi: [__m256i; 8] = s.map(|x| _mm512_extracti64x4_epi64::<1>(x));
    let (a, b) = out.split_at_mut(8);
    avx2::store_digests(&lo, a);
    avx2::store_digests(&hi, b);
}

#[inline(always)]
unsafe fn broadcast(state: &[u32; 8]) -> [V; 8] {
    state.map(|x| splat(x))
}

/// Words `(c[t-1] << 24) | (c[t] >> 8)`: the message shifted one byte right behind a
/// prefix byte (`c[-1]`'s low byte is taken from `prefix`).
#[inline(always)]
unsafe fn shifted<const N: usize>(prefix: V, c: &[V; N]) -> [V; N] {
    std::array::from_fn(|t| {
        let prev = if t == 0 { prefix } else { c[t - 1] };
        _mm512_or_si512(_mm512_slli_epi32::<24>(prev), _mm512_srli_epi32::<8>(c[t]))
    })
}

/// See [`crate::kernel::Backend::leaves`].
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VL, and AVX2.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
pub(super) unsafe fn leaves(midstate: &[u32; 8], first_nonce: u64, out: &mut [[u8; 32]]) {
    let init = broadcast(midstate);
    let zero = _mm512_setzero_si512();
    let lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    // Byte swap of every 32-bit word (the nonce is little-endian in the message).
    let bswap = _mm512_set_epi8(
        60, 61, 62, 63, 56, 57, 58, 59, 52, 53, 54, 55, 48, 49, 50, 51, 44, 45, 46, 47, 40, 41, 42,
        43, 36, 37, 38, 39, 32, 33, 34, 35, 28, 29, 30, 31, 24, 25, 26, 27, 20, 21, 22, 23, 16, 17,
        18, 19, 12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
    );
    // Words 2.. of the block are the same in every lane: 0x80, zeros, the length.
    let mut fixed = [0u32; 16];
    fixed[2] = 0x8000_0000;
    fixed[15] = 72 * 8;
    let mut tmp = [[0u8; 32]; L];
    let mut nonce = first_nonce;
    for chunk in out.chunks_mut(L) {
        // Sixteen consecutive nonces as 64-bit lanes (two registers), then split into
        // their low and high 32-bit words, byte-swapped.
        let n0 = _mm512_add_epi64(_mm512_set1_epi64(nonce as i64), lane);
        let n1 = _mm512_add_epi64(n0, _mm512_set1_epi64(8));
        let lo = _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm512_cvtepi64_epi32(n0)),
            _mm512_cvtepi64_epi32(n1),
        );
        let hi = _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm512_cvtepi64_epi32(_mm512_srli_epi64::<32>(n0))),
            _mm512_cvtepi64_epi32(_mm512_srli_epi64::<32>(n1)),
        );
        let mut w = [zero; 16];
        w[0] = _mm512_shuffle_epi8(lo, bswap);
        w[1] = _mm512_shuffle_epi8(hi, bswap);
        for t in 2..16 {
            w[t] = splat(fixed[t]);
        }
        let mut s = init;
        compress_from::<0>(&mut s, &mut w, &[], &init);
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
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
pub(super) unsafe fn leaf_nodes(leaves: &[[u8; 32]], out: &mut [Hash32]) {
    let iv = broadcast(&IV);
    let zero = _mm512_setzero_si512();
    by_groups::<L, 1>(leaves, out, |ins, outs| {
        let c = load_words(ins);
        let mut w = [zero; 16];
        w[..8].copy_from_slice(&shifted(zero, &c));
        w[8] = _mm512_or_si512(_mm512_slli_epi32::<24>(c[7]), splat(0x0080_0000));
        w[15] = splat(33 * 8);
        let mut s = iv;
        compress_from::<0>(&mut s, &mut w, &[], &iv);
        store_digests(&s, outs);
    });
}

/// See [`crate::kernel::Backend::internal_nodes`] (`children.len() == 2 * out.len()`).
///
/// # Safety
/// As [`leaves`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
pub(super) unsafe fn internal_nodes(children: &[Hash32], out: &mut [Hash32]) {
    let iv = broadcast(&IV);
    let zero = _mm512_setzero_si512();
    by_groups::<L, 2>(children, out, |ins, outs| {
        let lefts: [Hash32; L] = std::array::from_fn(|j| ins[2 * j]);
        let rights: [Hash32; L] = std::array::from_fn(|j| ins[2 * j + 1]);
        let a = load_words(&lefts);
        let b = load_words(&rights);
        let c: [V; 16] = std::array::from_fn(|t| if t < 8 { a[t] } else { b[t - 8] });
        // The prefix byte 0x01 sits in the low byte of the virtual word before word 0.
        let mut w = shifted(splat(0x01), &c);
        let mut s = iv;
        compress_from::<0>(&mut s, &mut w, &[], &iv);
        let mut second = [zero; 16];
        second[0] = _mm512_or_si512(_mm512_slli_epi32::<24>(c[15]), splat(0x0080_0000));
        second[15] = splat(65 * 8);
        let base = s;
        compress_from::<0>(&mut s, &mut second, &[], &base);
        store_digests(&s, outs);
    });
}

/// See [`crate::kernel::Backend::scores`] (`out.len() == leaves.len()`).
///
/// # Safety
/// As [`leaves`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
pub(super) unsafe fn scores(ctx: &ScoreContext, leaves: &[[u8; 32]], out: &mut [Hash32]) {
    let iv = broadcast(&IV);
    let after8 = broadcast(&ctx.after8);
    let head: [V; 8] = ctx.words.map(|x| splat(x));
    // `σ0(W[t-15]) + W[t-16]` for t in 16..23 reads only challenge words (0..8).
    let fixed: [V; 7] =
        std::array::from_fn(|i| splat(small_sigma0(ctx.words[i + 1]).wrapping_add(ctx.words[i])));
    by_groups::<L, 1>(leaves, out, |ins, outs| {
        let l = load_words(ins);
        let mut w: [V; 16] = std::array::from_fn(|t| if t < 8 { head[t] } else { l[t - 8] });
        let mut s = after8;
        compress_from::<8>(&mut s, &mut w, &fixed, &iv);
        compress_pad64(&mut s);
        store_digests(&s, outs);
    });
}
