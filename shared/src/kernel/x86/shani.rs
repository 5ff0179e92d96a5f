//! SHA-NI kernels: [`N`] independent messages interleaved round group by round group, so
//! that the SHA unit always has independent work while one stream waits on its latency.
//!
//! The state is kept as SHA-NI wants it (ABEF / CDGH). Message words are built in registers
//! from the inputs with byte shuffles (no staging buffer, so no store-to-load stalls).
//! Every function here is `unsafe` only because of `#[target_feature]` and raw 16-byte
//! loads and stores of `[u8; 32]` values; callers hold a [`super::ShaNi`] token.

use std::arch::x86_64::*;

use super::super::{ScoreContext, K, PAD_64_WK, SHANI_STREAMS as N};
use super::by_groups;
use crate::compress::IV;
use crate::hash::Hash32;

/// Byte shuffle that turns big-endian message bytes into native 32-bit words.
const BSWAP: [u8; 16] = [3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12];

#[derive(Clone, Copy)]
struct State {
    abef: __m128i,
    cdgh: __m128i,
}

#[inline(always)]
unsafe fn bswap(x: __m128i) -> __m128i {
    _mm_shuffle_epi8(x, _mm_loadu_si128(BSWAP.as_ptr().cast()))
}

/// Eight state words A..H into ABEF / CDGH.
#[inline(always)]
unsafe fn pack(s: &[u32; 8]) -> State {
    let abcd = _mm_loadu_si128(s.as_ptr().cast());
    let efgh = _mm_loadu_si128(s.as_ptr().add(4).cast());
    let t = _mm_shuffle_epi32(abcd, 0xB1);
    let e = _mm_shuffle_epi32(efgh, 0x1B);
    State {
        abef: _mm_alignr_epi8(t, e, 8),
        cdgh: _mm_blend_epi16(e, t, 0xF0),
    }
}

/// The big-endian digest of a final state.
#[inline(always)]
unsafe fn digest(st: State, out: &mut [u8; 32]) {
    let t = _mm_shuffle_epi32(st.abef, 0x1B);
    let s1 = _mm_shuffle_epi32(st.cdgh, 0xB1);
    let abcd = _mm_blend_epi16(t, s1, 0xF0);
    let efgh = _mm_alignr_epi8(s1, t, 8);
    _mm_storeu_si128(out.as_mut_ptr().cast(), bswap(abcd));
    _mm_storeu_si128(out.as_mut_ptr().add(16).cast(), bswap(efgh));
}

#[inline(always)]
unsafe fn load2(x: &[u8; 32]) -> (__m128i, __m128i) {
    (
        _mm_loadu_si128(x.as_ptr().cast()),
        _mm_loadu_si128(x.as_ptr().add(16).cast()),
    )
}

#[inline(always)]
unsafe fn feed_forward(st: &mut [State; N], base: &[State; N]) {
    for (s, b) in st.iter_mut().zip(base) {
        s.abef = _mm_add_epi32(s.abef, b.abef);
        s.cdgh = _mm_add_epi32(s.cdgh, b.cdgh);
    }
}

/// Rounds `4i..4i+4` of one stream, with the message schedule for later groups.
#[inline(always)]
unsafe fn round4(st: &mut State, m: &mut [__m128i; 4], i: usize) {
    let k = _mm_loadu_si128(K.as_ptr().add(i * 4).cast());
    let wk = _mm_add_epi32(m[i & 3], k);
    st.cdgh = _mm_sha256rnds2_epu32(st.cdgh, st.abef, wk);
    if (3..=14).contains(&i) {
        let t = _mm_alignr_epi8(m[i & 3], m[(i + 3) & 3], 4);
        m[(i + 1) & 3] = _mm_sha256msg2_epu32(_mm_add_epi32(m[(i + 1) & 3], t), m[i & 3]);
    }
    st.abef = _mm_sha256rnds2_epu32(st.abef, st.cdgh, _mm_shuffle_epi32(wk, 0x0E));
    // msg1 prepares `W[t-16] + σ0(W[t-15])` for the group after next; the last schedule
    // words (group 15) get theirs at group 12.
    if (1..=12).contains(&i) {
        m[(i + 3) & 3] = _mm_sha256msg1_epu32(m[(i + 3) & 3], m[i & 3]);
    }
}

/// Round groups with literal indices, every stream in turn (literals let the schedule
/// conditions fold away).
macro_rules! groups {
    ($st:ident, $m:ident; $($i:literal)*) => {
        $(
            for (s, m) in $st.iter_mut().zip($m.iter_mut()) {
                round4(s, m, $i);
            }
        )*
    };
}

/// One full compression per stream.
#[inline(always)]
unsafe fn compress(st: &mut [State; N], m: &mut [[__m128i; 4]; N]) {
    let save = *st;
    groups!(st, m; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    feed_forward(st, &save);
}

/// The score's first block from round 8 on: `st` is the state after rounds 0..8 (from
/// the IV), `m[s][0]` already went through group 1's msg1, `m[s][1]` is words 4..8.
#[inline(always)]
unsafe fn compress_from_round8(st: &mut [State; N], m: &mut [[__m128i; 4]; N], iv: State) {
    groups!(st, m; 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    feed_forward(st, &[iv; N]);
}

/// The constant second block of a 64-byte message: rounds on precomputed `W + K`.
#[inline(always)]
unsafe fn compress_pad64(st: &mut [State; N], wk: &[__m128i; 16], wk_hi: &[__m128i; 16]) {
    let save = *st;
    for (lo, hi) in wk.iter().zip(wk_hi) {
        for s in st.iter_mut() {
            s.cdgh = _mm_sha256rnds2_epu32(s.cdgh, s.abef, *lo);
            s.abef = _mm_sha256rnds2_epu32(s.abef, s.cdgh, *hi);
        }
    }
    feed_forward(st, &save);
}

/// Bytes `[prefix, x[0..15]]` of a block as words.
#[inline(always)]
unsafe fn prefixed(prefix: u8, x0: __m128i) -> __m128i {
    _mm_or_si128(
        bswap(_mm_slli_si128(x0, 1)),
        _mm_set_epi32(0, 0, 0, (u32::from(prefix) << 24) as i32),
    )
}

/// Bytes `[x0[15], x1[0..15]]` as words.
#[inline(always)]
unsafe fn straddle(x1: __m128i, x0: __m128i) -> __m128i {
    bswap(_mm_alignr_epi8(x1, x0, 15))
}

/// Bytes `[x1[15], 0x80, 0, …]` as words (the last input byte, then the padding marker).
#[inline(always)]
unsafe fn last_byte_then_pad(x1: __m128i) -> __m128i {
    _mm_or_si128(
        bswap(_mm_srli_si128(x1, 15)),
        _mm_set_epi32(0, 0, 0, 0x0080_0000),
    )
}

/// Length word 15 of a final block.
#[inline(always)]
unsafe fn length_words(bits: u32) -> __m128i {
    _mm_set_epi32(bits as i32, 0, 0, 0)
}

/// See [`crate::kernel::Backend::leaves`].
///
/// # Safety
/// The CPU must support SHA, SSE2, SSSE3 and SSE4.1.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub(super) unsafe fn leaves(midstate: &[u32; 8], first_nonce: u64, out: &mut [[u8; 32]]) {
    let init = pack(midstate);
    let zero = _mm_setzero_si128();
    let tail = length_words(72 * 8);
    let mut nonce = first_nonce;
    for chunk in out.chunks_mut(N) {
        let mut st = [init; N];
        let mut m = [[zero; 4]; N];
        for (s, m) in m.iter_mut().enumerate() {
            let n = nonce.wrapping_add(s as u64);
            m[0] = _mm_set_epi32(
                0,
                0x8000_0000_u32 as i32,
                ((n >> 32) as u32).swap_bytes() as i32,
                (n as u32).swap_bytes() as i32,
            );
            m[3] = tail;
        }
        compress(&mut st, &mut m);
        for (s, o) in st.iter().zip(chunk.iter_mut()) {
            digest(*s, o);
        }
        nonce = nonce.wrapping_add(N as u64);
    }
}

/// See [`crate::kernel::Backend::leaf_nodes`] (`out.len() == leaves.len()`).
///
/// # Safety
/// As [`leaves`].
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub(super) unsafe fn leaf_nodes(leaves: &[[u8; 32]], out: &mut [Hash32]) {
    let iv = pack(&IV);
    let tail = length_words(33 * 8);
    let zero = _mm_setzero_si128();
    by_groups::<N, 1>(leaves, out, |ins, outs| {
        let mut st = [iv; N];
        let mut m = [[zero; 4]; N];
        for (m, leaf) in m.iter_mut().zip(ins) {
            let (l0, l1) = load2(leaf);
            *m = [
                prefixed(0x00, l0),
                straddle(l1, l0),
                last_byte_then_pad(l1),
                tail,
            ];
        }
        compress(&mut st, &mut m);
        for (s, o) in st.iter().zip(outs.iter_mut()) {
            digest(*s, o);
        }
    });
}

/// See [`crate::kernel::Backend::internal_nodes`] (`children.len() == 2 * out.len()`).
///
/// # Safety
/// As [`leaves`].
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub(super) unsafe fn internal_nodes(children: &[Hash32], out: &mut [Hash32]) {
    let iv = pack(&IV);
    let tail = length_words(65 * 8);
    let zero = _mm_setzero_si128();
    by_groups::<N, 2>(children, out, |ins, outs| {
        let mut st = [iv; N];
        let mut m = [[zero; 4]; N];
        let mut second = [[zero; 4]; N];
        for ((m, second), pair) in m.iter_mut().zip(second.iter_mut()).zip(ins.chunks_exact(2)) {
            let (a0, a1) = load2(&pair[0]);
            let (b0, b1) = load2(&pair[1]);
            *m = [
                prefixed(0x01, a0),
                straddle(a1, a0),
                straddle(b0, a1),
                straddle(b1, b0),
            ];
            *second = [last_byte_then_pad(b1), zero, zero, tail];
        }
        compress(&mut st, &mut m);
        compress(&mut st, &mut second);
        for (s, o) in st.iter().zip(outs.iter_mut()) {
            digest(*s, o);
        }
    });
}

/// See [`crate::kernel::Backend::scores`] (`out.len() == leaves.len()`).
///
/// # Safety
/// As [`leaves`].
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub(super) unsafe fn scores(ctx: &ScoreContext, leaves: &[[u8; 32]], out: &mut [Hash32]) {
    let iv = pack(&IV);
    let after8 = pack(&ctx.after8);
    let w0 = _mm_loadu_si128(ctx.words.as_ptr().cast());
    let w1 = _mm_loadu_si128(ctx.words.as_ptr().add(4).cast());
    // Group 1's msg1 reads only challenge words: done once here.
    let w0_sched = _mm_sha256msg1_epu32(w0, w1);
    let mut wk = [_mm_setzero_si128(); 16];
    let mut wk_hi = [_mm_setzero_si128(); 16];
    for (i, (lo, hi)) in wk.iter_mut().zip(wk_hi.iter_mut()).enumerate() {
        *lo = _mm_loadu_si128(PAD_64_WK.as_ptr().add(4 * i).cast());
        *hi = _mm_shuffle_epi32(*lo, 0x0E);
    }
    by_groups::<N, 1>(leaves, out, |ins, outs| {
        let mut st = [after8; N];
        let mut m = [[w0_sched, w1, w0, w0]; N];
        for (m, leaf) in m.iter_mut().zip(ins) {
            let (l0, l1) = load2(leaf);
            m[2] = bswap(l0);
            m[3] = bswap(l1);
        }
        compress_from_round8(&mut st, &mut m, iv);
        compress_pad64(&mut st, &wk, &wk_hi);
        for (s, o) in st.iter().zip(outs.iter_mut()) {
            digest(*s, o);
        }
    });
}
