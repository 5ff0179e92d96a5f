//! `BlockProof`: the winning leaf, its Merkle path and the plot it comes from
//! (121 + 33·n bytes for a path of n levels).
//!
//! | off     | size | field            | rule                                   |
//! |--------:|-----:|------------------|----------------------------------------|
//! |       0 |   32 | leaf             | raw leaf (not its leaf node)           |
//! |      32 |    8 | leaf_index       | i64 LE, ≥ 0                            |
//! |      40 |    4 | n                | i32 LE, 0..=64                         |
//! |      44 | 32·n | siblings         | from the leaf level up                 |
//! |  44+32n |    4 | n_bits           | i32 LE, must equal n                   |
//! |  48+32n |    n | sibling_is_right | one byte per level, 0x00 or 0x01 (D9)  |
//! |  48+33n |   73 | metadata         | [`BlockPlotMetadata`]                  |
//!
//! The reference reads any non-zero bit byte as true and caps nothing; we require 0/1 and
//! cap the path at [`MAX_PATH_LEN`] levels (a tree of at most `i64::MAX` leaves is at most
//! 63 levels high), so a hostile count can never drive an allocation.

use super::metadata::{BlockPlotMetadata, BLOCK_PLOT_METADATA_LEN};
use crate::codec::{put_len, put_u64, DecodeError, Reader};
use crate::hash::Hash32;
use crate::merkle::MerklePath;
use crate::plot::PlotHeader;

/// Longest Merkle path a [`BlockProof`] may carry.
pub const MAX_PATH_LEN: usize = 64;

/// Encoded size of a proof whose path has `n` levels.
pub const fn block_proof_len(n: usize) -> usize {
    121 + 33 * n
}

/// The proof-of-space part of a block: leaf, path and plot metadata.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockProof {
    /// The raw 32-byte leaf.
    pub leaf: [u8; 32],
    /// Index of the leaf in its plot.
    pub leaf_index: u64,
    /// Sibling hashes from the leaf level up.
    pub siblings: Vec<Hash32>,
    /// Orientation per level: `true` = the sibling is on the right.
    pub sibling_is_right: Vec<bool>,
    /// The plot the leaf belongs to.
    pub metadata: BlockPlotMetadata,
}

impl BlockProof {
    /// A proof from a Merkle path and the metadata of the plot it was built from
    /// (see `BlockPlotMetadata::for_plot`).
    pub fn from_merkle_path(path: MerklePath, metadata: BlockPlotMetadata) -> Self {
        Self {
            leaf: path.leaf,
            leaf_index: path.index,
            siblings: path.siblings,
            sibling_is_right: path.sibling_is_right,
            metadata,
        }
    }

    /// A proof for a leaf of the plot whose header is `plot`: the metadata is
    /// [`BlockPlotMetadata::for_plot`].
    pub fn for_plot(path: MerklePath, plot: &PlotHeader) -> Self {
        Self::from_merkle_path(path, BlockPlotMetadata::for_plot(plot))
    }

    /// The Merkle path, for [`MerklePath::verify_strict`] and friends.
    pub fn to_merkle_path(&self) -> MerklePath {
        MerklePath {
            leaf: self.leaf,
            index: self.leaf_index,
            siblings: self.siblings.clone(),
            sibling_is_right: self.sibling_is_right.clone(),
        }
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        44 + 32 * self.siblings.len() + 4 + self.sibling_is_right.len() + BLOCK_PLOT_METADATA_LEN
    }

    /// The reference encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.leaf);
        put_u64(out, self.leaf_index);
        put_len(out, self.siblings.len());
        for sibling in &self.siblings {
            out.extend_from_slice(sibling);
        }
        put_len(out, self.sibling_is_right.len());
        out.extend(self.sibling_is_right.iter().map(|&b| u8::from(b)));
        self.metadata.encode_into(out);
    }

    /// Decodes a standalone proof; trailing bytes are an error (decisions D9).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let proof = Self::read(&mut r)?;
        r.finish("BlockProof")?;
        Ok(proof)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let leaf = r.array("proof.leaf")?;
        let leaf_index = r.i64_non_negative("proof.leaf_index")?;
        let n = r.count(
            "proof.sibling_count",
            0,
            MAX_PATH_LEN as i32,
            32,
            "must be 0..=64",
        )?;
        let mut siblings = Vec::with_capacity(n);
        for _ in 0..n {
            siblings.push(r.array("proof.sibling")?);
        }
        let n_bits = r.i32("proof.bit_count")?;
        if i64::from(n_bits) != n as i64 {
            return Err(DecodeError::Mismatch {
                field: "proof.bit_count",
                expected: n as i64,
                found: i64::from(n_bits),
            });
        }
        let mut sibling_is_right = Vec::with_capacity(n);
        for _ in 0..n {
            sibling_is_right.push(r.bool("proof.sibling_is_right")?);
        }
        let metadata = BlockPlotMetadata::read(r)?;
        Ok(Self {
            leaf,
            leaf_index,
            siblings,
            sibling_is_right,
            metadata,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::metadata::tests::arb_metadata;
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_proof() -> impl Strategy<Value = BlockProof> {
        (
            any::<[u8; 32]>(),
            0..=i64::MAX as u64,
            proptest::collection::vec((any::<[u8; 32]>(), any::<bool>()), 0..8),
            arb_metadata(),
        )
            .prop_map(|(leaf, leaf_index, path, metadata)| BlockProof {
                leaf,
                leaf_index,
                siblings: path.iter().map(|p| p.0).collect(),
                sibling_is_right: path.iter().map(|p| p.1).collect(),
                metadata,
            })
    }

    use crate::test_support::vectors;

    fn h32(v: &serde_json::Value) -> Hash32 {
        hex::decode(v.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    }

    #[test]
    fn leaf_4_proof_matches_the_vector_byte_for_byte() {
        let v = vectors();
        let p5 = &v["plot_5"];
        let pl = &p5["proof_leaf_4"];
        let proof = BlockProof {
            leaf: h32(&pl["leaf"]),
            leaf_index: 4,
            siblings: pl["siblings"].as_array().unwrap().iter().map(h32).collect(),
            sibling_is_right: pl["orientation"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_bool().unwrap())
                .collect(),
            metadata: BlockPlotMetadata {
                leaf_count: 5,
                plot_id: h32(&v["inputs"]["seed"]),
                plot_header_hash: h32(&p5["header_hash"]),
                version: 1,
            },
        };
        let expected = hex::decode(v["block_example"]["block_proof"].as_str().unwrap()).unwrap();
        assert_eq!(proof.encode(), expected);
        assert_eq!(expected.len(), block_proof_len(3));
        assert_eq!(BlockProof::decode(&expected).unwrap(), proof);
        let path = proof.to_merkle_path();
        assert!(path.verify_strict(&h32(&p5["root"]), 5));
        assert_eq!(BlockProof::from_merkle_path(path, proof.metadata), proof);
    }

    #[test]
    fn hostile_counts_and_bits_are_rejected() {
        let proof = BlockProof {
            leaf: [7; 32],
            leaf_index: 1,
            siblings: vec![[1; 32]],
            sibling_is_right: vec![false],
            metadata: BlockPlotMetadata {
                leaf_count: 2,
                plot_id: [0; 32],
                plot_header_hash: [0; 32],
                version: 1,
            },
        };
        let good = proof.encode();
        for n in [i32::MAX, i32::MIN, -1, 65] {
            let mut bad = good.clone();
            bad[40..44].copy_from_slice(&n.to_le_bytes());
            assert!(BlockProof::decode(&bad).is_err(), "n = {n}");
        }
        let mut bad = good.clone();
        bad[76..80].copy_from_slice(&2i32.to_le_bytes());
        assert!(matches!(
            BlockProof::decode(&bad),
            Err(DecodeError::Mismatch {
                expected: 1,
                found: 2,
                ..
            })
        ));
        let mut bad = good.clone();
        bad[80] = 2;
        assert!(matches!(
            BlockProof::decode(&bad),
            Err(DecodeError::InvalidBool { value: 2, .. })
        ));
        let mut bad = good.clone();
        bad[32..40].copy_from_slice(&(-1i64).to_le_bytes());
        assert!(BlockProof::decode(&bad).is_err());
    }

    proptest! {
        #[test]
        fn round_trips_and_truncations_fail(proof in arb_proof()) {
            let bytes = proof.encode();
            prop_assert_eq!(bytes.len(), block_proof_len(proof.siblings.len()));
            prop_assert_eq!(BlockProof::decode(&bytes).unwrap(), proof);
            for cut in 0..bytes.len() {
                prop_assert!(BlockProof::decode(&bytes[..cut]).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(BlockProof::decode(&longer).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = BlockProof::decode(&bytes);
        }
    }
}
