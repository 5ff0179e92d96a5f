//! Leaf generation: `leaf[nonce] = H(pk[32] ‖ seed[32] ‖ i64_le(nonce))`.
//!
//! The 72-byte input is two SHA-256 blocks; the first (`pk ‖ seed`) is the same for every
//! leaf of a plot, so its compression (the midstate) is computed once and each leaf costs
//! one compression of the second block: `nonce[8] ‖ 0x80 ‖ 0…0 ‖ bit length 576 (u64 BE)`.

use crate::compress::{compress, pad_block, state_to_hash, IV};
use crate::kernel::Kernels;

/// The second-block template of a 72-byte message (nonce bytes still zero).
const NONCE_BLOCK: [u8; 64] = pad_block([0u8; 64], 72);

/// Generates the leaves of one plot (one miner key and seed).
#[derive(Debug, Clone)]
pub struct LeafGenerator {
    /// The SHA-256 state after compressing `pk ‖ seed`.
    midstate: [u32; 8],
}

impl LeafGenerator {
    /// Prepare the midstate of `pk ‖ seed`.
    pub fn new(miner_pk: &[u8; 32], seed: &[u8; 32]) -> Self {
        let mut first = [0u8; 64];
        first[..32].copy_from_slice(miner_pk);
        first[32..].copy_from_slice(seed);
        let mut midstate = IV;
        compress(&mut midstate, &first);
        Self { midstate }
    }

    /// Leaf `nonce` (one compression).
    #[inline]
    pub fn leaf(&self, nonce: u64) -> [u8; 32] {
        let mut block = NONCE_BLOCK;
        block[..8].copy_from_slice(&nonce.to_le_bytes());
        let mut state = self.midstate;
        compress(&mut state, &block);
        state_to_hash(&state)
    }

    /// Fill `out` with leaves `first_nonce, first_nonce + 1, …` (the multi-buffer leaf
    /// kernel of the active backend, [`crate::kernel`]).
    pub fn fill(&self, first_nonce: u64, out: &mut [[u8; 32]]) {
        Kernels::active().leaves(&self.midstate, first_nonce, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256_concat;
    use proptest::prelude::*;

    #[test]
    fn leaves_match_vectors() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../testdata/vectors.json")).unwrap();
        let pk: [u8; 32] = hex::decode(v["inputs"]["pubkey"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let seed: [u8; 32] = hex::decode(v["inputs"]["seed"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let gen = LeafGenerator::new(&pk, &seed);
        for nonce in 0..3u64 {
            let expected = v["leaves"][nonce.to_string()].as_str().unwrap();
            assert_eq!(hex::encode(gen.leaf(nonce)), expected);
        }
        let mut out = [[0u8; 32]; 3];
        gen.fill(0, &mut out);
        assert_eq!(out, [gen.leaf(0), gen.leaf(1), gen.leaf(2)]);
        let mut many = vec![[0u8; 32]; 200];
        gen.fill(1000, &mut many);
        assert!(many.iter().zip(1000..).all(|(l, i)| *l == gen.leaf(i)));
    }

    proptest! {
        #[test]
        fn midstate_leaf_equals_plain_digest(pk in any::<[u8; 32]>(), seed in any::<[u8; 32]>(), nonce in any::<u64>()) {
            let expected = sha256_concat(&[&pk, &seed, &nonce.to_le_bytes()]);
            prop_assert_eq!(LeafGenerator::new(&pk, &seed).leaf(nonce), expected);
        }
    }
}
