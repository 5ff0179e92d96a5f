//! The SHA-256 round structure of the lane-parallel kernels (AVX-512, AVX2), written once
//! as macros over the word operations each backend module defines under the same names:
//! `add`, `splat`, `ch`, `maj`, `big_sigma0`, `big_sigma1`, `sigma0` and `sigma1` (a macro
//! resolves them where it is used).
//!
//! Each group of eight rounds is flat, the working variables renamed from round to round
//! instead of moved, and the message schedule a sixteen-word window indexed by constants,
//! so that the compiler keeps the operands in registers; the groups run in loops, so that
//! a kernel stays small enough for the CPU's decoded-instruction cache.

/// One round on the named working variables, `W + K` given: the caller renames instead of
/// moving, so `h` becomes the new `a` and `d` the new `e`.
macro_rules! round {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $wk:expr) => {{
        // `h + W + K` does not depend on this round's e: it goes first.
        let t1 = add(add(add($h, $wk), ch($e, $f, $g)), big_sigma1($e));
        let t2 = add(big_sigma0($a), maj($a, $b, $c));
        $d = add($d, t1);
        $h = add(t1, t2);
    }};
}

/// Rounds `t..t + 8` (one full turn of the names, so each group re-enters as a..h), with
/// `$wk!(args.., t)` giving `W[t] + K[t]`.
macro_rules! rounds8 {
    ([$a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident], $wk:ident!($($arg:ident),*), $t:expr) => {
        round!($a, $b, $c, $d, $e, $f, $g, $h, $wk!($($arg,)* $t));
        round!($h, $a, $b, $c, $d, $e, $f, $g, $wk!($($arg,)* $t + 1));
        round!($g, $h, $a, $b, $c, $d, $e, $f, $wk!($($arg,)* $t + 2));
        round!($f, $g, $h, $a, $b, $c, $d, $e, $wk!($($arg,)* $t + 3));
        round!($e, $f, $g, $h, $a, $b, $c, $d, $wk!($($arg,)* $t + 4));
        round!($d, $e, $f, $g, $h, $a, $b, $c, $wk!($($arg,)* $t + 5));
        round!($c, $d, $e, $f, $g, $h, $a, $b, $wk!($($arg,)* $t + 6));
        round!($b, $c, $d, $e, $f, $g, $h, $a, $wk!($($arg,)* $t + 7));
    };
}

/// `W[t] + K[t]` of a message word as it is (rounds 0..16).
macro_rules! block_wk {
    ($w:ident, $t:expr) => {
        add($w[$t], splat(K[$t]))
    };
}

/// `W[t] + K[t]` for the round `j` of a pass of sixteen (rounds 16..64): the next schedule
/// word goes into window slot `j`; `k` holds the pass's round constants.
macro_rules! next_wk {
    ($w:ident, $k:ident, $j:expr) => {{
        const J: usize = $j;
        $w[J] = add(
            add(sigma1($w[(J + 14) & 15]), $w[(J + 9) & 15]),
            add(sigma0($w[(J + 1) & 15]), $w[J]),
        );
        add($w[J], splat($k[J]))
    }};
}

/// A precomputed `W + K` (the constant padding block).
macro_rules! const_wk {
    ($wk:ident, $j:expr) => {
        splat($wk[$j])
    };
}

/// One pass of sixteen rounds from round 16 on, `k` its round constants, on a schedule
/// window `w` that holds the sixteen words before them (the round within the pass is also
/// the window slot of its word).
macro_rules! schedule_pass {
    ([$a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident], $w:ident, $k:ident) => {
        rounds8!([$a, $b, $c, $d, $e, $f, $g, $h], next_wk!($w, $k), 0);
        rounds8!([$a, $b, $c, $d, $e, $f, $g, $h], next_wk!($w, $k), 8);
    };
}

/// Rounds 16..64 of a compression whose schedule window `w` holds `W[0..16]`: the passes in
/// a loop, or, `sparse`, the first pass written out before the loop over the other two, so
/// that for a block whose words are mostly constants (a leaf's: 14 of 16) the compiler
/// folds what of that pass's schedule reads only constants.
macro_rules! rounds16_64 {
    ([$a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident], $w:ident, $sparse:expr) => {
        let from = if $sparse {
            let k = &K[16..32];
            schedule_pass!([$a, $b, $c, $d, $e, $f, $g, $h], $w, k);
            32
        } else {
            16
        };
        for k in K[from..].chunks_exact(16) {
            schedule_pass!([$a, $b, $c, $d, $e, $f, $g, $h], $w, k);
        }
    };
}

/// The compressions every lane backend builds its shapes from: `compress` (a full block),
/// `score_state` (the score's two blocks from the per-challenge precomputation),
/// `feed_forward` and `broadcast`, written against the backend's `V`, `zero`, `splat` and
/// word operations.
macro_rules! lane_compressions {
    () => {
        /// A full compression of the block `w` (message words, consumed as the schedule) into
        /// `state`, feed-forward included.
        #[inline(always)]
        unsafe fn compress(state: &[V; 8], w: [V; 16]) -> [V; 8] {
            compress_block::<false>(state, w)
        }

        /// [`compress`] of a block whose words are mostly constants.
        #[inline(always)]
        unsafe fn compress_sparse(state: &[V; 8], w: [V; 16]) -> [V; 8] {
            compress_block::<true>(state, w)
        }

        #[inline(always)]
        unsafe fn compress_block<const SPARSE: bool>(state: &[V; 8], mut w: [V; 16]) -> [V; 8] {
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
            rounds8!([a, b, c, d, e, f, g, h], block_wk!(w), 0);
            rounds8!([a, b, c, d, e, f, g, h], block_wk!(w), 8);
            rounds16_64!([a, b, c, d, e, f, g, h], w, SPARSE);
            feed_forward([a, b, c, d, e, f, g, h], state)
        }

        #[inline(always)]
        unsafe fn feed_forward(s: [V; 8], base: &[V; 8]) -> [V; 8] {
            let mut out = s;
            for i in 0..8 {
                out[i] = add(s[i], base[i]);
            }
            out
        }

        #[inline(always)]
        unsafe fn broadcast(state: &[u32; 8]) -> [V; 8] {
            let mut out = [zero(); 8];
            for i in 0..8 {
                out[i] = splat(state[i]);
            }
            out
        }

        /// The final state of the score `H(challenge ‖ leaf)` of sixteen leaves (`leaf[t]` lane `j`
        /// = word `t` of leaf `j`): word `t` of every digest. Rounds 0..8 of the first block read
        /// only the challenge (precomputed in `ctx`); the second block is the constant padding
        /// block, whose `W + K` are constants. Callers that use only some words of the result get
        /// the rest removed by the compiler.
        #[inline(always)]
        unsafe fn score_state(ctx: &ScoreContext, leaf: &[V; 8]) -> [V; 8] {
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = broadcast(&ctx.after8);
            let mut w = [zero(); 16];
            for t in 0..8 {
                w[t] = splat(ctx.words[t]);
                w[t + 8] = leaf[t];
            }
            rounds8!([a, b, c, d, e, f, g, h], block_wk!(w), 8);
            rounds16_64!([a, b, c, d, e, f, g, h], w, false);
            let mid = feed_forward([a, b, c, d, e, f, g, h], &broadcast(&IV));
            [a, b, c, d, e, f, g, h] = mid;
            for wk in PAD_64_WK.chunks_exact(8) {
                rounds8!([a, b, c, d, e, f, g, h], const_wk!(wk), 0);
            }
            feed_forward([a, b, c, d, e, f, g, h], &mid)
        }
    };
}
