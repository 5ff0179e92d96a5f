//! `BlockHeader`: 226 bytes covered by the block hash, then a 64-byte signature.
//!
//! | off | size | field       | rule                                               |
//! |----:|-----:|-------------|----------------------------------------------------|
//! |   0 |    1 | version     | 1 (checked by validation, not by the decoder)      |
//! |   1 |   32 | parent_hash | 32 zero bytes for genesis                          |
//! |  33 |    8 | height      | i64 LE ≥ 0                                         |
//! |  41 |    8 | timestamp   | i64 LE ≥ 0, unix seconds                           |
//! |  49 |    8 | difficulty  | i64 LE ≥ 0 (validation requires > 0)               |
//! |  57 |    8 | epoch       | i64 LE ≥ 0                                         |
//! |  65 |   32 | challenge   |                                                    |
//! |  97 |   32 | plot_root   | Merkle root of the winning plot                    |
//! | 129 |   32 | proof_score | `H(challenge ‖ leaf)`                              |
//! | 161 |   32 | tx_root     | [`super::tx_root`]                                 |
//! | 193 |   33 | miner_id    | `0xED ‖ pk` (decisions D1)                         |
//! | 226 |   64 | signature   | Ed25519 over the block hash                        |
//!
//! Block hash = `H(bytes 0..226)`.

use crate::codec::{put_u64, DecodeError, Reader};
use crate::hash::Hash32;

/// Bytes covered by the block hash.
pub const BLOCK_HEADER_UNSIGNED_LEN: usize = 226;
/// Encoded size of a header with its signature.
pub const BLOCK_HEADER_LEN: usize = 290;
/// The only block version.
pub const BLOCK_VERSION: u8 = 1;

/// A block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockHeader {
    /// Block format version (1).
    pub version: u8,
    /// Hash of the parent block.
    pub parent_hash: Hash32,
    /// Height of this block (genesis = 0).
    pub height: u64,
    /// Unix seconds.
    pub timestamp: u64,
    /// Difficulty the proof was judged against.
    pub difficulty: u64,
    /// Epoch the block was mined in.
    pub epoch: u64,
    /// The epoch's challenge.
    pub challenge: Hash32,
    /// Merkle root of the winning plot.
    pub plot_root: Hash32,
    /// `H(challenge ‖ leaf)` of the winning leaf.
    pub proof_score: Hash32,
    /// Merkle root of the transaction hashes (zeros when empty).
    pub tx_root: Hash32,
    /// `0xED ‖ pk` of the miner.
    pub miner_id: [u8; 33],
    /// Ed25519 signature of [`BlockHeader::hash`].
    pub signature: [u8; 64],
}

signed_record!(
    BlockHeader,
    signer: miner_id,
    unsigned: BLOCK_HEADER_UNSIGNED_LEN,
    signed: BLOCK_HEADER_LEN,
    name: "BlockHeader",
    docs: [
        "The 226 bytes the block hash covers.",
        "The 290-byte signed encoding.",
        "The block hash: `H(first 226 bytes)`.",
        "Sets `miner_id` to the key's id, then signs the block hash with it.",
        "Whether `signature` is a valid Ed25519 signature of the block hash by `miner_id`.",
        "Decodes exactly 290 bytes.",
    ],
);

impl BlockHeader {
    fn encode_unsigned_into(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.extend_from_slice(&self.parent_hash);
        put_u64(out, self.height);
        put_u64(out, self.timestamp);
        put_u64(out, self.difficulty);
        put_u64(out, self.epoch);
        out.extend_from_slice(&self.challenge);
        out.extend_from_slice(&self.plot_root);
        out.extend_from_slice(&self.proof_score);
        out.extend_from_slice(&self.tx_root);
        out.extend_from_slice(&self.miner_id);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            version: r.u8("header.version")?,
            parent_hash: r.array("header.parent_hash")?,
            height: r.i64_non_negative("header.height")?,
            timestamp: r.i64_non_negative("header.timestamp")?,
            difficulty: r.i64_non_negative("header.difficulty")?,
            epoch: r.i64_non_negative("header.epoch")?,
            challenge: r.array("header.challenge")?,
            plot_root: r.array("header.plot_root")?,
            proof_score: r.array("header.proof_score")?,
            tx_root: r.array("header.tx_root")?,
            miner_id: r.array("header.miner_id")?,
            signature: r.array("header.signature")?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keys::MinerKey;
    use proptest::prelude::*;

    pub(crate) fn arb_header() -> impl Strategy<Value = BlockHeader> {
        let nn = 0..=i64::MAX as u64;
        (
            (any::<u8>(), any::<[u8; 32]>(), nn.clone(), nn.clone()),
            (nn.clone(), nn, any::<[u8; 32]>(), any::<[u8; 32]>()),
            (
                any::<[u8; 32]>(),
                any::<[u8; 32]>(),
                any::<[u8; 32]>(),
                any::<[u8; 32]>(),
            ),
            (any::<[u8; 32]>(), any::<u8>()),
        )
            .prop_map(
                |((v, parent, h, ts), (d, e, ch, root), (score, txr, s1, s2), (m, tag))| {
                    let mut miner_id = [tag; 33];
                    miner_id[1..].copy_from_slice(&m);
                    let mut signature = [0u8; 64];
                    signature[..32].copy_from_slice(&s1);
                    signature[32..].copy_from_slice(&s2);
                    BlockHeader {
                        version: v,
                        parent_hash: parent,
                        height: h,
                        timestamp: ts,
                        difficulty: d,
                        epoch: e,
                        challenge: ch,
                        plot_root: root,
                        proof_score: score,
                        tx_root: txr,
                        miner_id,
                        signature,
                    }
                },
            )
    }

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// The `block_example` header of `vectors.json`.
    pub(crate) fn example_header() -> BlockHeader {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../testdata/vectors.json")).unwrap();
        let f = &v["block_example"]["header_fields"];
        let a32 = |k: &str| -> Hash32 { h(f[k].as_str().unwrap()).try_into().unwrap() };
        BlockHeader {
            version: f["version"].as_u64().unwrap() as u8,
            parent_hash: a32("parent_hash"),
            height: f["height"].as_u64().unwrap(),
            timestamp: f["timestamp"].as_u64().unwrap(),
            difficulty: f["difficulty"].as_u64().unwrap(),
            epoch: f["epoch"].as_u64().unwrap(),
            challenge: a32("challenge"),
            plot_root: a32("plot_root"),
            proof_score: a32("proof_score"),
            tx_root: a32("tx_root"),
            miner_id: h(f["miner_id"].as_str().unwrap()).try_into().unwrap(),
            signature: h(f["signature"].as_str().unwrap()).try_into().unwrap(),
        }
    }

    #[test]
    fn example_header_matches_vectors() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../testdata/vectors.json")).unwrap();
        let ex = &v["block_example"];
        let header = example_header();
        assert_eq!(
            header.encode_unsigned().to_vec(),
            h(ex["header_unsigned"].as_str().unwrap())
        );
        assert_eq!(
            crate::hash::to_hex(&header.hash()),
            ex["block_hash"].as_str().unwrap()
        );
        let signed = header.encode();
        assert_eq!(BlockHeader::decode(&signed).unwrap(), header);
    }

    #[test]
    fn signing_sets_the_miner_id_and_verifies() {
        let key = MinerKey::generate();
        let mut header = example_header();
        assert!(!header.verify_signature());
        header.sign(&key);
        assert_eq!(header.miner_id, key.miner_id());
        assert!(header.verify_signature());
        header.height += 1;
        assert!(!header.verify_signature());
    }

    proptest! {
        #[test]
        fn round_trips_and_truncations_fail(header in arb_header()) {
            let bytes = header.encode();
            prop_assert_eq!(&bytes[..226], &header.encode_unsigned()[..]);
            prop_assert_eq!(BlockHeader::decode(&bytes).unwrap(), header);
            for cut in 0..bytes.len() {
                prop_assert!(BlockHeader::decode(&bytes[..cut]).is_err());
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            prop_assert!(BlockHeader::decode(&longer).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = BlockHeader::decode(&bytes);
        }
    }
}
