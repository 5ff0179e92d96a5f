//! The 121-byte plot header.
//!
//! | off | size | field        | encoding                                   |
//! |----:|-----:|--------------|--------------------------------------------|
//! |   0 |    4 | magic        | `SPTP`                                     |
//! |   4 |    1 | version      | 0x01                                       |
//! |   5 |   32 | plot seed    | raw (the plot id)                          |
//! |  37 |    8 | leaf count N | i64 LE, > 0                                |
//! |  45 |    4 | leaf size    | i32 LE, > 0 (always 32 when we write)      |
//! |  49 |    8 | tree height  | i64 LE, ⌈log₂ N⌉ (not checked by the decoder) |
//! |  57 |   32 | Merkle root  | raw                                        |
//! |  89 |   32 | checksum     | `H(bytes 0..89)`; all-zero is rejected     |
//!
//! The decoder applies the reference loader's checks in its order (section 1.5): length,
//! magic, version, counts, then the checksum.

use super::{PlotError, FORMAT_VERSION, HEADER_LEN, LEAF_LEN, MAGIC};
use crate::hash::{sha256, Hash32};
use crate::merkle::tree_height;

/// Length of the checksummed part of the header.
const BODY_LEN: usize = 89;

/// A decoded plot header. The checksum is not stored: [`PlotHeader::encode`] recomputes it
/// and [`PlotHeader::decode`] verifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlotHeader {
    /// The plot seed, which is also the plot id in proofs.
    pub seed: [u8; 32],
    /// Number of leaves N (at most `i64::MAX`).
    pub leaf_count: u64,
    /// Leaf size in bytes (at most `i32::MAX`; 32 for every plot we write).
    pub leaf_size: u32,
    /// Merkle tree height as stored (at most `i64::MAX`).
    pub tree_height: u64,
    /// The Merkle root over the leaves.
    pub merkle_root: Hash32,
}

impl PlotHeader {
    /// The header the creator writes: leaf size 32 and height `⌈log₂ N⌉`.
    pub fn new(seed: [u8; 32], leaf_count: u64, merkle_root: Hash32) -> Self {
        Self {
            seed,
            leaf_count,
            leaf_size: LEAF_LEN as u32,
            tree_height: u64::from(tree_height(leaf_count)),
            merkle_root,
        }
    }

    /// The 121 header bytes, checksum included. Fields are written as the reference's
    /// signed integers (bit patterns preserved).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = FORMAT_VERSION;
        out[5..37].copy_from_slice(&self.seed);
        out[37..45].copy_from_slice(&self.leaf_count.to_le_bytes());
        out[45..49].copy_from_slice(&self.leaf_size.to_le_bytes());
        out[49..57].copy_from_slice(&self.tree_height.to_le_bytes());
        out[57..89].copy_from_slice(&self.merkle_root);
        let checksum = sha256(&out[..BODY_LEN]);
        out[BODY_LEN..].copy_from_slice(&checksum);
        out
    }

    /// Parse and check exactly 121 header bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, PlotError> {
        let bytes: &[u8; HEADER_LEN] = bytes
            .try_into()
            .map_err(|_| PlotError::HeaderLength { len: bytes.len() })?;
        let magic: [u8; 4] = take(bytes, 0);
        if magic != MAGIC {
            return Err(PlotError::BadMagic { found: magic });
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(PlotError::UnsupportedVersion { version: bytes[4] });
        }
        let leaf_count = i64::from_le_bytes(take(bytes, 37));
        if leaf_count <= 0 {
            return Err(PlotError::InvalidLeafCount { count: leaf_count });
        }
        let leaf_size = i32::from_le_bytes(take(bytes, 45));
        if leaf_size <= 0 {
            return Err(PlotError::InvalidLeafSize { size: leaf_size });
        }
        let found: Hash32 = take(bytes, BODY_LEN);
        if found == [0u8; 32] {
            return Err(PlotError::ChecksumMissing);
        }
        let expected = sha256(&bytes[..BODY_LEN]);
        if found != expected {
            return Err(PlotError::ChecksumMismatch { expected, found });
        }
        Ok(Self {
            seed: take(bytes, 5),
            leaf_count: leaf_count.unsigned_abs(),
            leaf_size: leaf_size.unsigned_abs(),
            tree_height: u64::from_le_bytes(take(bytes, 49)),
            merkle_root: take(bytes, 57),
        })
    }

    /// `H(all 121 header bytes)`: the `plot_header_hash` carried in proofs.
    pub fn hash(&self) -> Hash32 {
        sha256(&self.encode())
    }
}

/// Copy `N` bytes at `at` out of the header (in bounds by construction).
fn take<const N: usize>(bytes: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{hex32, vectors};
    use proptest::prelude::*;

    #[test]
    fn headers_match_vectors_byte_for_byte() {
        let v = vectors();
        let seed = hex32(&v["inputs"]["seed"]);
        for n in [1u64, 2, 3, 5, 8] {
            let plot = &v[format!("plot_{n}")];
            let header = PlotHeader::new(seed, n, hex32(&plot["root"]));
            assert_eq!(header.tree_height, plot["tree_height"].as_u64().unwrap());
            let bytes = header.encode();
            assert_eq!(
                hex::encode(bytes),
                plot["header"].as_str().unwrap(),
                "N = {n}"
            );
            assert_eq!(PlotHeader::decode(&bytes).unwrap(), header);
        }
        let five = PlotHeader::new(seed, 5, hex32(&v["plot_5"]["root"]));
        assert_eq!(five.hash(), hex32(&v["plot_5"]["header_hash"]));
    }

    fn sample() -> [u8; HEADER_LEN] {
        PlotHeader::new([7; 32], 5, [9; 32]).encode()
    }

    /// Re-checksum a modified body so that only the field under test is wrong.
    fn rechecksum(mut bytes: [u8; HEADER_LEN]) -> [u8; HEADER_LEN] {
        let sum = sha256(&bytes[..BODY_LEN]);
        bytes[BODY_LEN..].copy_from_slice(&sum);
        bytes
    }

    #[test]
    fn rejects_every_malformed_header() {
        let good = sample();
        assert!(matches!(
            PlotHeader::decode(&good[..120]),
            Err(PlotError::HeaderLength { len: 120 })
        ));
        let mut long = good.to_vec();
        long.push(0);
        assert!(matches!(
            PlotHeader::decode(&long),
            Err(PlotError::HeaderLength { len: 122 })
        ));
        assert!(matches!(
            PlotHeader::decode(&[]),
            Err(PlotError::HeaderLength { len: 0 })
        ));

        let mut b = good;
        b[0] = b'X';
        assert!(matches!(
            PlotHeader::decode(&b),
            Err(PlotError::BadMagic { .. })
        ));
        let mut b = good;
        b[4] = 2;
        assert!(matches!(
            PlotHeader::decode(&b),
            Err(PlotError::UnsupportedVersion { version: 2 })
        ));
        for count in [0i64, -1, i64::MIN] {
            let mut b = good;
            b[37..45].copy_from_slice(&count.to_le_bytes());
            let b = rechecksum(b);
            assert!(matches!(
                PlotHeader::decode(&b),
                Err(PlotError::InvalidLeafCount { .. })
            ));
        }
        for size in [0i32, -32] {
            let mut b = good;
            b[45..49].copy_from_slice(&size.to_le_bytes());
            let b = rechecksum(b);
            assert!(matches!(
                PlotHeader::decode(&b),
                Err(PlotError::InvalidLeafSize { .. })
            ));
        }
        let mut b = good;
        b[89..].fill(0);
        assert!(matches!(
            PlotHeader::decode(&b),
            Err(PlotError::ChecksumMissing)
        ));
        let mut b = good;
        b[60] ^= 1;
        assert!(matches!(
            PlotHeader::decode(&b),
            Err(PlotError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn counts_near_the_limits_decode() {
        let h = PlotHeader::new([1; 32], i64::MAX as u64, [2; 32]);
        assert_eq!(PlotHeader::decode(&h.encode()).unwrap(), h);
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(
            seed in any::<[u8; 32]>(),
            leaf_count in 1..=i64::MAX as u64,
            leaf_size in 1..=i32::MAX as u32,
            tree_height in any::<u64>(),
            merkle_root in any::<[u8; 32]>(),
        ) {
            let h = PlotHeader { seed, leaf_count, leaf_size, tree_height, merkle_root };
            prop_assert_eq!(PlotHeader::decode(&h.encode()).unwrap(), h);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = PlotHeader::decode(&bytes);
        }
    }
}
