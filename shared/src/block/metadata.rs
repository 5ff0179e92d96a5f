//! `BlockPlotMetadata`: which plot a block proof comes from (73 bytes).
//!
//! | off | size | field            | rule                                        |
//! |----:|-----:|------------------|---------------------------------------------|
//! |   0 |    8 | leaf_count       | i64 LE, > 0                                 |
//! |   8 |   32 | plot_id          | the plot seed                               |
//! |  40 |   32 | plot_header_hash | `H(all 121 plot header bytes)`              |
//! |  72 |    1 | version          | plot format version (1)                     |

use crate::codec::{put_u64, DecodeError, Reader};
use crate::hash::Hash32;
use crate::plot::PlotHeader;

/// Encoded size of [`BlockPlotMetadata`].
pub const BLOCK_PLOT_METADATA_LEN: usize = 73;

/// The plot facts a block proof commits to; decisions D2 checks them against the proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockPlotMetadata {
    /// Number of leaves in the plot (1..=i64::MAX).
    pub leaf_count: u64,
    /// The plot seed.
    pub plot_id: Hash32,
    /// SHA-256 of the plot's 121-byte header, checksum included.
    pub plot_header_hash: Hash32,
    /// Plot format version (1).
    pub version: u8,
}

impl BlockPlotMetadata {
    /// The metadata of a plot: its leaf count, seed, header hash and format version.
    pub fn for_plot(header: &PlotHeader) -> Self {
        Self {
            leaf_count: header.leaf_count,
            plot_id: header.seed,
            plot_header_hash: header.hash(),
            version: crate::plot::FORMAT_VERSION,
        }
    }

    /// The 73-byte encoding.
    pub fn encode(&self) -> [u8; BLOCK_PLOT_METADATA_LEN] {
        let mut out = Vec::with_capacity(BLOCK_PLOT_METADATA_LEN);
        self.encode_into(&mut out);
        let mut bytes = [0u8; BLOCK_PLOT_METADATA_LEN];
        bytes.copy_from_slice(&out);
        bytes
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        put_u64(out, self.leaf_count);
        out.extend_from_slice(&self.plot_id);
        out.extend_from_slice(&self.plot_header_hash);
        out.push(self.version);
    }

    /// Decodes exactly 73 bytes (trailing bytes are an error).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let meta = Self::read(&mut r)?;
        r.finish("BlockPlotMetadata")?;
        Ok(meta)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let leaf_count = r.i64_non_negative("metadata.leaf_count")?;
        let plot_id = r.array("metadata.plot_id")?;
        let plot_header_hash = r.array("metadata.plot_header_hash")?;
        let version = r.u8("metadata.version")?;
        if leaf_count == 0 {
            return Err(DecodeError::OutOfRange {
                field: "metadata.leaf_count",
                value: 0,
                rule: "must be > 0",
            });
        }
        Ok(Self {
            leaf_count,
            plot_id,
            plot_header_hash,
            version,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_metadata() -> impl Strategy<Value = BlockPlotMetadata> {
        (
            1..=i64::MAX as u64,
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<u8>(),
        )
            .prop_map(|(leaf_count, plot_id, plot_header_hash, version)| {
                BlockPlotMetadata {
                    leaf_count,
                    plot_id,
                    plot_header_hash,
                    version,
                }
            })
    }

    #[test]
    fn zero_and_negative_leaf_counts_are_rejected() {
        let meta = BlockPlotMetadata {
            leaf_count: 1,
            plot_id: [1; 32],
            plot_header_hash: [2; 32],
            version: 1,
        };
        let mut bytes = meta.encode();
        bytes[..8].copy_from_slice(&0i64.to_le_bytes());
        assert!(matches!(
            BlockPlotMetadata::decode(&bytes),
            Err(DecodeError::OutOfRange { value: 0, .. })
        ));
        bytes[..8].copy_from_slice(&i64::MIN.to_le_bytes());
        assert!(BlockPlotMetadata::decode(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(meta in arb_metadata()) {
            let bytes = meta.encode();
            prop_assert_eq!(BlockPlotMetadata::decode(&bytes).unwrap(), meta);
            for cut in 0..bytes.len() {
                prop_assert!(BlockPlotMetadata::decode(&bytes[..cut]).is_err());
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            prop_assert!(BlockPlotMetadata::decode(&longer).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = BlockPlotMetadata::decode(&bytes);
        }
    }
}
