//! Fixed-shape SHA-256 fast paths built on the raw compression function.
//!
//! Every hash on the plotting, proving and scanning hot paths has a fixed input length, so
//! its padding is known in advance. Feeding pre-padded blocks straight to
//! [`sha2::compress256`] (which picks SHA-NI at run time) skips the streaming hasher's
//! buffering and lets callers reuse a midstate:
//!
//! | input                              | bytes | compressions |
//! |------------------------------------|------:|-------------:|
//! | leaf `pk ‖ seed ‖ i64 nonce`       |    72 | 1 (+1 midstate, once per plot) |
//! | leaf node `0x00 ‖ leaf`            |    33 | 1            |
//! | padding `0x01 ‖ "MERKLE_PADDING" ‖ X` | 47 | 1            |
//! | internal `0x01 ‖ left ‖ right`     |    65 | 2            |
//! | score `challenge ‖ leaf`           |    64 | 2 (second block constant) |
//!
//! Tests check each shape against `Sha256::digest`.

use sha2::digest::generic_array::GenericArray;

use crate::hash::Hash32;

/// The SHA-256 initial hash value (FIPS 180-4, 5.3.3).
pub(crate) const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Run one compression of `block` into `state`.
#[inline]
pub(crate) fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
}

/// Items per batch of the `*_each` helpers. Building every block of a batch before
/// compressing any of them keeps the compressions independent (the CPU overlaps them) and
/// lets the block stores reach the cache first (a block written just before its 16-byte
/// SIMD loads would stall on store forwarding): about 1.5× the rate of one-at-a-time.
pub(crate) const BATCH: usize = 64;

/// `out[i] = compress(init, blocks[i])` as a digest, for every block.
#[inline]
pub(crate) fn compress_each(init: &[u32; 8], blocks: &[[u8; 64]], out: &mut [Hash32]) {
    for (block, out) in blocks.iter().zip(out) {
        let mut state = *init;
        compress(&mut state, block);
        *out = state_to_hash(&state);
    }
}

/// `out[i] = H(blocks[i])` for 64-byte messages (second block constant). Two messages are
/// interleaved (first blocks of both, then second blocks) so that each second compression
/// does not wait on the one just issued: about 12% faster.
#[inline]
pub(crate) fn hash_64_each(blocks: &[[u8; 64]], out: &mut [Hash32]) {
    let n = blocks.len().min(out.len());
    let mut i = 0;
    while i + 1 < n {
        let (mut s0, mut s1) = (IV, IV);
        compress(&mut s0, &blocks[i]);
        compress(&mut s1, &blocks[i + 1]);
        compress(&mut s0, &PAD_64);
        compress(&mut s1, &PAD_64);
        out[i] = state_to_hash(&s0);
        out[i + 1] = state_to_hash(&s1);
        i += 2;
    }
    if i < n {
        out[i] = hash_64(&blocks[i]);
    }
}

/// The big-endian digest bytes of a final state.
#[inline]
pub(crate) fn state_to_hash(state: &[u32; 8]) -> Hash32 {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Write the SHA-256 padding of a message of `len` bytes whose tail sits in `block`
/// (the message tail occupies `block[..len % 64]`, and it must leave room for the padding).
pub(crate) const fn pad_block(mut block: [u8; 64], len: usize) -> [u8; 64] {
    let tail = len % 64;
    block[tail] = 0x80;
    let bits = (len as u64 * 8).to_be_bytes();
    let mut i = 0;
    while i < 8 {
        block[56 + i] = bits[i];
        i += 1;
    }
    block
}

/// The constant second block of any 64-byte message.
pub(crate) const PAD_64: [u8; 64] = pad_block([0u8; 64], 64);

/// SHA-256 of exactly 64 bytes (two compressions, the second on a constant block).
#[inline]
pub(crate) fn hash_64(block: &[u8; 64]) -> Hash32 {
    let mut state = IV;
    compress(&mut state, block);
    compress(&mut state, &PAD_64);
    state_to_hash(&state)
}

/// SHA-256 of a message of at most 55 bytes already placed at the start of `block`
/// (bytes past `len` must be zero).
#[inline]
pub(crate) fn hash_short(block: [u8; 64], len: usize) -> Hash32 {
    debug_assert!(len <= 55);
    let mut state = IV;
    compress(&mut state, &pad_block(block, len));
    state_to_hash(&state)
}

/// Raw compression throughput probe for the benchmark: `count` (rounded up to a batch)
/// independent one-block compressions from the IV, built a batch at a time like the hot
/// paths do, folded into one value. This is the best rate measured on the machines we
/// tried, so it is the honest bound.
pub(crate) fn independent_compressions(count: u64, seed: u8) -> u32 {
    let mut blocks = [[seed; 64]; BATCH];
    let mut acc = 0u32;
    let mut done = 0u64;
    while done < count {
        for (j, block) in blocks.iter_mut().enumerate() {
            block[..8].copy_from_slice(&(done + j as u64).to_le_bytes());
        }
        for block in &blocks {
            let mut state = IV;
            compress(&mut state, block);
            acc ^= state[0];
        }
        done += BATCH as u64;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256;

    #[test]
    fn hash_64_matches_digest() {
        let block: [u8; 64] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        assert_eq!(hash_64(&block), sha256(&block));
    }

    #[test]
    fn hash_short_matches_digest_for_every_length() {
        for len in 0..=55usize {
            let mut block = [0u8; 64];
            for (i, b) in block.iter_mut().take(len).enumerate() {
                *b = (i as u8).wrapping_mul(31).wrapping_add(1);
            }
            assert_eq!(hash_short(block, len), sha256(&block[..len]), "len {len}");
        }
    }

    #[test]
    fn batched_helpers_match_digest_for_odd_and_even_lengths() {
        let blocks: Vec<[u8; 64]> = (0..7u8).map(|i| [i.wrapping_mul(37); 64]).collect();
        for len in 0..=blocks.len() {
            let mut out = vec![[0u8; 32]; len];
            hash_64_each(&blocks[..len], &mut out);
            for (b, o) in blocks.iter().zip(&out) {
                assert_eq!(*o, sha256(b));
            }
            let mut out = vec![[0u8; 32]; len];
            compress_each(&IV, &blocks[..len], &mut out);
            for (b, o) in blocks.iter().zip(&out) {
                let mut state = IV;
                compress(&mut state, b);
                assert_eq!(*o, state_to_hash(&state));
            }
        }
    }

    #[test]
    fn two_block_messages_match_digest() {
        let msg: Vec<u8> = (0..72u8).collect();
        let mut first = [0u8; 64];
        first.copy_from_slice(&msg[..64]);
        let mut second = [0u8; 64];
        second[..8].copy_from_slice(&msg[64..]);
        let mut state = IV;
        compress(&mut state, &first);
        compress(&mut state, &pad_block(second, 72));
        assert_eq!(state_to_hash(&state), sha256(&msg));
    }
}
