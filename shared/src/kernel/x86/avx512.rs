//! AVX-512 kernels: sixteen messages, one per 32-bit lane of a 512-bit register. The
//! rotations are single instructions (`vprord`) and Ch, Maj and the three-way XORs of the
//! Σ / σ functions are one `vpternlogd` each. Inputs are transposed into message words, and
//! digests back, with three stages of two-register permutes (`vpermt2d`).
//!
//! The rounds and compressions are the shared ones of `rounds.rs` (flat eight-round groups
//! in registers). Nothing on the hot path goes through `array::map` or `array::from_fn`:
//! their closures run inside std code compiled outside the `#[target_feature]` context,
//! which cost a call, a `vzeroupper` and a trip through memory per group (measured: a
//! third of the score kernel's time).
//!
//! Every function here is `unsafe` only because of `#[target_feature]` and raw 64-byte
//! loads and stores of `[u8; 32]` pairs; callers hold a [`super::Avx512`] token.

use std::arch::x86_64::*;

use super::super::{ScoreContext, K, PAD_64_WK};
use super::by_groups;
use crate::compress::IV;
use crate::hash::Hash32;

/// Messages per kernel step.
const L: usize = 16;

type V = __m512i;

lane_compressions!();

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
unsafe fn zero() -> V {
    _mm512_setzero_si512()
}

#[inline(always)]
unsafe fn ch(e: V, f: V, g: V) -> V {
    _mm512_ternarylogic_epi32::<CH>(e, f, g)
}

#[inline(always)]
unsafe fn maj(a: V, b: V, c: V) -> V {
    _mm512_ternarylogic_epi32::<MAJ>(a, b, c)
}

#[inline(always)]
unsafe fn big_sigma0(a: V) -> V {
    _mm512_ternarylogic_epi32::<XOR3>(
        _mm512_ror_epi32::<2>(a),
        _mm512_ror_epi32::<13>(a),
        _mm512_ror_epi32::<22>(a),
    )
}

#[inline(always)]
unsafe fn big_sigma1(e: V) -> V {
    _mm512_ternarylogic_epi32::<XOR3>(
        _mm512_ror_epi32::<6>(e),
        _mm512_ror_epi32::<11>(e),
        _mm512_ror_epi32::<25>(e),
    )
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

/// Where word `t` of value `j` of a group of sixteen 32-byte values sits, as (register,
/// lane), before stage `k` of the load transpose (`k = 0`: as loaded, register `i` holding
/// values `2i` and `2i + 1`; `k = 3`: register `t`, lane `j`). Each stage swaps one bit of
/// the register number with one bit of the lane number.
const fn place(k: usize, j: usize, t: usize) -> (usize, usize) {
    let (low, high) = (j & 1, j >> 1);
    match k {
        0 => (high, (low << 3) | t),
        1 => (
            (high & 0b110) | (t & 0b001),
            (low << 3) | (t & 0b110) | (high & 0b001),
        ),
        2 => (
            (high & 0b100) | (t & 0b011),
            (low << 3) | (t & 0b100) | (high & 0b011),
        ),
        _ => (t, j),
    }
}

/// The value and word at (register `r`, lane `l`) before stage `k`.
const fn find(k: usize, r: usize, l: usize) -> (usize, usize) {
    let mut j = 0;
    while j < 16 {
        let mut t = 0;
        while t < 8 {
            let (pr, pl) = place(k, j, t);
            if pr == r && pl == l {
                return (j, t);
            }
            t += 1;
        }
        j += 1;
    }
    panic!("every (register, lane) holds one word");
}

/// `vpermt2d` indices that build register `r` of layout `to` from the two registers of
/// layout `from` that differ from `r` only in register bit `bit` (lane `l` takes lane
/// `idx & 15` of the one whose bit is `idx >> 4`).
const fn stage_index(from: usize, to: usize, bit: usize, r: usize) -> [u32; 16] {
    let mut idx = [0u32; 16];
    let mut l = 0;
    while l < 16 {
        let (j, t) = find(to, r, l);
        let (pr, pl) = place(from, j, t);
        assert!(
            pr & !(1 << bit) == r & !(1 << bit),
            "a stage mixes only one register bit"
        );
        idx[l] = ((((pr >> bit) & 1) << 4) | pl) as u32;
        l += 1;
    }
    idx
}

/// Indices of the three load stages (layout `s` to `s + 1`, register bit `s`) and of the
/// three store stages (layout `3 - s` to `2 - s`, register bit `2 - s`), per register.
static LOAD_INDEX: [[[u32; 16]; 8]; 3] = stage_table(false);
static STORE_INDEX: [[[u32; 16]; 8]; 3] = stage_table(true);

const fn stage_table(store: bool) -> [[[u32; 16]; 8]; 3] {
    let mut table = [[[0u32; 16]; 8]; 3];
    let mut s = 0;
    while s < 3 {
        let mut r = 0;
        while r < 8 {
            table[s][r] = if store {
                stage_index(3 - s, 2 - s, 2 - s, r)
            } else {
                stage_index(s, s + 1, s, r)
            };
            r += 1;
        }
        s += 1;
    }
    table
}

/// Byte swap of every 32-bit word.
#[inline(always)]
unsafe fn bswap(x: V) -> V {
    let pattern = _mm512_set_epi8(
        60, 61, 62, 63, 56, 57, 58, 59, 52, 53, 54, 55, 48, 49, 50, 51, 44, 45, 46, 47, 40, 41, 42,
        43, 36, 37, 38, 39, 32, 33, 34, 35, 28, 29, 30, 31, 24, 25, 26, 27, 20, 21, 22, 23, 16, 17,
        18, 19, 12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
    );
    _mm512_shuffle_epi8(x, pattern)
}

/// Three permute stages on registers `r` with the indices of `table`; stage `s` pairs the
/// registers that differ in register bit `bits[s]`.
#[inline(always)]
unsafe fn permute_stages(mut r: [V; 8], table: &[[[u32; 16]; 8]; 3], bits: [usize; 3]) -> [V; 8] {
    for s in 0..3 {
        let bit = 1 << bits[s];
        let mut next = r;
        for i in 0..8 {
            let idx = _mm512_loadu_si512(table[s][i].as_ptr().cast());
            next[i] = _mm512_permutex2var_epi32(r[i & !bit], idx, r[i | bit]);
        }
        r = next;
    }
    r
}

/// Sixteen 32-byte values as their big-endian words: `out[t]` lane `j` = word `t` of value
/// `x[OFFSET + STRIDE * j]` (`x` holds at least `OFFSET + STRIDE * 15 + 1` values).
#[inline(always)]
unsafe fn load_words<const STRIDE: usize, const OFFSET: usize>(x: &[[u8; 32]]) -> [V; 8] {
    assert!(x.len() > OFFSET + STRIDE * 15);
    let base = x.as_ptr().add(OFFSET);
    let mut r = [_mm512_setzero_si512(); 8];
    for (i, r) in r.iter_mut().enumerate() {
        let first = base.add(STRIDE * 2 * i);
        // SAFETY (of the reads): both values are inside `x` (asserted above).
        let pair = if STRIDE == 1 {
            _mm512_loadu_si512(first.cast())
        } else {
            let lo = _mm256_loadu_si256(first.cast());
            let hi = _mm256_loadu_si256(first.add(STRIDE).cast());
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
        };
        *r = bswap(pair);
    }
    permute_stages(r, &LOAD_INDEX, [0, 1, 2])
}

/// Write the digests of the sixteen lanes of state `s` to `out[..16]`.
#[inline(always)]
unsafe fn store_digests(s: &[V; 8], out: &mut [Hash32]) {
    assert!(out.len() >= L);
    let r = permute_stages(*s, &STORE_INDEX, [2, 1, 0]);
    for (i, r) in r.iter().enumerate() {
        // SAFETY (of the write): digests `2i` and `2i + 1` are inside `out` (asserted).
        _mm512_storeu_si512(out.as_mut_ptr().add(2 * i).cast(), bswap(*r));
    }
}

/// Words `(c[t-1] << 24) | (c[t] >> 8)`: the message shifted one byte right behind a
/// prefix byte (`c[-1]`'s low byte is taken from `prefix`).
#[inline(always)]
unsafe fn shifted<const N: usize>(prefix: V, c: &[V; N]) -> [V; N] {
    let mut out = *c;
    for t in 0..N {
        let prev = if t == 0 { prefix } else { c[t - 1] };
        out[t] = _mm512_or_si512(_mm512_slli_epi32::<24>(prev), _mm512_srli_epi32::<8>(c[t]));
    }
    out
}

/// See [`crate::kernel::Backend::leaves`].
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VL, and AVX2.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
pub(super) unsafe fn leaves(midstate: &[u32; 8], first_nonce: u64, out: &mut [[u8; 32]]) {
    let init = broadcast(midstate);
    let lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
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
        let mut w = [_mm512_setzero_si512(); 16];
        w[0] = bswap(lo);
        w[1] = bswap(hi);
        for t in 2..16 {
            w[t] = splat(fixed[t]);
        }
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
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
pub(super) unsafe fn leaf_nodes(leaves: &[[u8; 32]], out: &mut [Hash32]) {
    let iv = broadcast(&IV);
    let zero = _mm512_setzero_si512();
    by_groups::<L, 1>(leaves, out, |ins, outs| {
        let c = load_words::<1, 0>(ins);
        let mut w = [zero; 16];
        w[..8].copy_from_slice(&shifted(zero, &c));
        w[8] = _mm512_or_si512(_mm512_slli_epi32::<24>(c[7]), splat(0x0080_0000));
        w[15] = splat(33 * 8);
        let s = compress_sparse(&iv, w);
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
        let left = load_words::<2, 0>(ins);
        let right = load_words::<2, 1>(ins);
        let mut c = [zero; 16];
        c[..8].copy_from_slice(&left);
        c[8..].copy_from_slice(&right);
        // The prefix byte 0x01 sits in the low byte of the virtual word before word 0.
        let s = compress(&iv, shifted(splat(0x01), &c));
        let mut second = [zero; 16];
        second[0] = _mm512_or_si512(_mm512_slli_epi32::<24>(c[15]), splat(0x0080_0000));
        second[15] = splat(65 * 8);
        let s = compress_sparse(&s, second);
        store_digests(&s, outs);
    });
}

/// See [`crate::kernel::Backend::scores`] (`out.len() == leaves.len()`).
///
/// # Safety
/// As [`leaves`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
pub(super) unsafe fn scores(ctx: &ScoreContext, leaves: &[[u8; 32]], out: &mut [Hash32]) {
    by_groups::<L, 1>(leaves, out, |ins, outs| {
        let s = score_state(ctx, &load_words::<1, 0>(ins));
        store_digests(&s, outs);
    });
}

/// See [`crate::kernel::Backend::score_candidates`] (`masks.len() >= leaves.len() / 64`
/// rounded up).
///
/// # Safety
/// As [`leaves`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
pub(super) unsafe fn score_candidates(
    ctx: &ScoreContext,
    leaves: &[[u8; 32]],
    bound: u64,
    masks: &mut [u64],
) {
    let (hi, lo) = (splat((bound >> 32) as u32), splat(bound as u32));
    let mut groups = leaves.chunks_exact(L);
    let mut g = 0;
    for group in &mut groups {
        let m = candidates(&score_state(ctx, &load_words::<1, 0>(group)), hi, lo);
        put_mask(masks, g, m);
        g += 1;
    }
    let rest = groups.remainder();
    if !rest.is_empty() {
        let mut padded = [[0u8; 32]; L];
        padded[..rest.len()].copy_from_slice(rest);
        let m = candidates(&score_state(ctx, &load_words::<1, 0>(&padded)), hi, lo);
        put_mask(masks, g, m & ((1u64 << rest.len()) - 1));
    }
}

/// The lanes of digest state `s` whose first 8 bytes (words 0 and 1) are at most the
/// bound `(hi, lo)`: word 0 below the high half, or equal to it with word 1 at most the low
/// half.
#[inline(always)]
unsafe fn candidates(s: &[V; 8], hi: V, lo: V) -> u64 {
    let below = _mm512_cmplt_epu32_mask(s[0], hi);
    let equal = _mm512_cmpeq_epu32_mask(s[0], hi);
    let within = _mm512_cmple_epu32_mask(s[1], lo);
    u64::from(below | (equal & within))
}

/// Stores the sixteen-lane mask of group `g` at bits `16 g..16 g + 16` of `masks`.
#[inline(always)]
fn put_mask(masks: &mut [u64], g: usize, m: u64) {
    let (word, shift) = (g / 4, 16 * (g % 4));
    if shift == 0 {
        masks[word] = m;
    } else {
        masks[word] |= m << shift;
    }
}
