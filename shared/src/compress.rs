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

// ---- The Merkle node shapes (the tree itself is `crate::merkle`) ----

/// Domain prefix of a leaf node.
const LEAF_PREFIX: u8 = 0x00;
/// Domain prefix of an internal node (and of a padding node).
const INTERNAL_PREFIX: u8 = 0x01;
/// The marker inside a padding hash.
const PADDING_MARKER: &[u8; 14] = b"MERKLE_PADDING";

/// `H(0x00 ‖ leaf)`: the level-0 node of a leaf (one compression).
#[inline]
pub fn leaf_node(leaf: &[u8; 32]) -> Hash32 {
    let mut block = [0u8; 64];
    block[0] = LEAF_PREFIX;
    block[1..33].copy_from_slice(leaf);
    hash_short(block, 33)
}

/// The constant second block of an internal node before its last byte is filled in.
const INTERNAL_TAIL: [u8; 64] = pad_block([0u8; 64], 65);

/// `H(0x01 ‖ left ‖ right)`: the parent of two nodes (two compressions).
#[inline]
pub fn internal_node(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut first = [0u8; 64];
    first[0] = INTERNAL_PREFIX;
    first[1..33].copy_from_slice(left);
    first[33..].copy_from_slice(&right[..31]);
    let mut second = INTERNAL_TAIL;
    second[0] = right[31];
    let mut state = IV;
    compress(&mut state, &first);
    compress(&mut state, &second);
    state_to_hash(&state)
}

/// `H(0x01 ‖ "MERKLE_PADDING" ‖ node)`: the right sibling of an unpaired last node
/// (one compression).
#[inline]
pub fn padding_node(node: &Hash32) -> Hash32 {
    let mut block = [0u8; 64];
    block[0] = INTERNAL_PREFIX;
    block[1..15].copy_from_slice(PADDING_MARKER);
    block[15..47].copy_from_slice(node);
    hash_short(block, 47)
}

/// The parent of an unpaired last node: `internal(X, padding(X))`.
#[inline]
pub fn padded_parent(node: &Hash32) -> Hash32 {
    internal_node(node, &padding_node(node))
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
