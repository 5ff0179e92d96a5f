//! Blocks and their parts, in the reference byte layouts (one concept per file).
//!
//! A block on the wire:
//!
//! | size         | field                                                  |
//! |-------------:|--------------------------------------------------------|
//! |          290 | [`BlockHeader`] (signed)                               |
//! |            4 | tx_count, i32 LE ≥ 0                                   |
//! | tx_count × … | `i32 tx_len (= 155) ‖ tx_len bytes` ([`Transaction`])  |
//! |     121 + 33n| [`BlockProof`]                                         |
//!
//! Decoding is canonical (decisions D9): a tx blob other than exactly 155 bytes, a bit byte
//! other than 0/1, or bytes after the proof are errors. Counts are checked against the bytes
//! left before anything is allocated for them.

/// The methods both signed records (header, transaction) share, around each one's own
/// `encode_unsigned_into` and `read`: the fixed-size encodings, the hash of the unsigned
/// bytes, signing, the signature check and exact decoding. The doc lines are the type's.
macro_rules! signed_record {
    (
        $ty:ident, signer: $signer:ident, unsigned: $ulen:ident, signed: $len:ident,
        name: $name:literal,
        docs: [$unsigned:literal, $encode:literal, $hash:literal, $sign:literal,
               $verify:literal, $decode:literal $(,)?] $(,)?
    ) => {
        impl $ty {
            #[doc = $unsigned]
            pub fn encode_unsigned(&self) -> [u8; $ulen] {
                let mut out = Vec::with_capacity($len);
                self.encode_unsigned_into(&mut out);
                let mut bytes = [0u8; $ulen];
                bytes.copy_from_slice(&out);
                bytes
            }

            #[doc = $encode]
            pub fn encode(&self) -> [u8; $len] {
                let mut out = Vec::with_capacity($len);
                self.encode_into(&mut out);
                let mut bytes = [0u8; $len];
                bytes.copy_from_slice(&out);
                bytes
            }

            pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
                self.encode_unsigned_into(out);
                out.extend_from_slice(&self.signature);
            }

            #[doc = $hash]
            pub fn hash(&self) -> $crate::hash::Hash32 {
                $crate::hash::sha256(&self.encode_unsigned())
            }

            #[doc = $sign]
            pub fn sign(&mut self, key: &$crate::keys::MinerKey) {
                self.$signer = key.miner_id();
                self.signature = key.sign(&self.hash());
            }

            #[doc = $verify]
            pub fn verify_signature(&self) -> bool {
                $crate::keys::verify_signature(&self.$signer, &self.hash(), &self.signature)
            }

            #[doc = $decode]
            pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                let mut r = Reader::new(bytes);
                let record = Self::read(&mut r)?;
                r.finish($name)?;
                Ok(record)
            }
        }
    };
}

mod header;
mod metadata;
mod proof;
mod transaction;

pub use header::{BlockHeader, BLOCK_HEADER_LEN, BLOCK_HEADER_UNSIGNED_LEN, BLOCK_VERSION};
pub use metadata::{BlockPlotMetadata, BLOCK_PLOT_METADATA_LEN};
pub use proof::{block_proof_len, BlockProof, MAX_PATH_LEN};
pub use transaction::{
    Transaction, TRANSACTION_LEN, TRANSACTION_UNSIGNED_LEN, TRANSACTION_VERSION,
};

use crate::codec::{put_len, DecodeError, Reader};

/// Proptest strategies for other modules' tests.
#[cfg(test)]
pub(crate) mod test_support {
    pub(crate) use super::header::tests::{arb_header, example_header};
    pub(crate) use super::proof::tests::arb_proof;
    pub(crate) use super::transaction::tests::arb_tx;
}
use crate::hash::Hash32;
use crate::merkle::MerkleFolder;

/// A full block: header, transactions, proof.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Block {
    /// The signed header.
    pub header: BlockHeader,
    /// Transactions, in block order.
    pub transactions: Vec<Transaction>,
    /// The proof of space.
    pub proof: BlockProof,
}

impl Block {
    /// The block hash (= the header hash).
    pub fn hash(&self) -> Hash32 {
        self.header.hash()
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        BLOCK_HEADER_LEN
            + 4
            + self.transactions.len() * (4 + TRANSACTION_LEN)
            + self.proof.encoded_len()
    }

    /// The reference encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.header.encode_into(&mut out);
        put_len(&mut out, self.transactions.len());
        for tx in &self.transactions {
            put_len(&mut out, TRANSACTION_LEN);
            tx.encode_into(&mut out);
        }
        self.proof.encode_into(&mut out);
        out
    }

    /// Decodes a whole block; bytes after the proof are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let header = BlockHeader::read(&mut r)?;
        let count = r.count(
            "block.tx_count",
            0,
            i32::MAX,
            4 + TRANSACTION_LEN,
            "must be >= 0",
        )?;
        let mut transactions = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.i32("block.tx_len")?;
            if len != TRANSACTION_LEN as i32 {
                return Err(DecodeError::Mismatch {
                    field: "block.tx_len",
                    expected: TRANSACTION_LEN as i64,
                    found: i64::from(len),
                });
            }
            transactions.push(Transaction::read(&mut r)?);
        }
        let proof = BlockProof::read(&mut r)?;
        r.finish("Block")?;
        Ok(Self {
            header,
            transactions,
            proof,
        })
    }
}

/// The header's `tx_root`: 32 zero bytes for no transactions, else the Merkle root (the
/// plot tree's hashing and padding) whose leaves are the tx hashes.
pub fn tx_root(transactions: &[Transaction]) -> Hash32 {
    let mut folder = MerkleFolder::new();
    for tx in transactions {
        folder.push_leaf(&tx.hash());
    }
    folder.finish().unwrap_or([0u8; 32])
}

#[cfg(test)]
mod tests {
    use super::header::tests::{arb_header, example_header};
    use super::proof::tests::arb_proof;
    use super::transaction::tests::arb_tx;
    use super::*;
    use crate::merkle::root_of_leaves;
    use proptest::prelude::*;

    fn vector(key: &str) -> Vec<u8> {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../testdata/vectors.json")).unwrap();
        hex::decode(v["block_example"][key].as_str().unwrap()).unwrap()
    }

    #[test]
    fn example_block_matches_vectors_byte_for_byte() {
        let proof = BlockProof::decode(&vector("block_proof")).unwrap();
        let block = Block {
            header: example_header(),
            transactions: vec![],
            proof,
        };
        let bytes = vector("block");
        assert_eq!(block.encode(), bytes);
        assert_eq!(block.encoded_len(), bytes.len());
        assert_eq!(Block::decode(&bytes).unwrap(), block);
        assert_eq!(block.hash().to_vec(), vector("block_hash"));
    }

    #[test]
    fn tx_root_is_zero_when_empty_and_the_merkle_root_otherwise() {
        assert_eq!(tx_root(&[]), [0u8; 32]);
        let txs: Vec<Transaction> = (0..3u64)
            .map(|i| Transaction {
                version: 1,
                sender: [1; 33],
                recipient: [2; 33],
                amount: i + 1,
                nonce: i,
                fee: 0,
                signature: [0; 64],
            })
            .collect();
        let hashes: Vec<Hash32> = txs.iter().map(Transaction::hash).collect();
        assert_eq!(tx_root(&txs), root_of_leaves(&hashes).unwrap());
    }

    #[test]
    fn hostile_tx_counts_and_lengths_are_rejected() {
        let proof = BlockProof::decode(&vector("block_proof")).unwrap();
        let tx = Transaction {
            version: 1,
            sender: [1; 33],
            recipient: [2; 33],
            amount: 1,
            nonce: 0,
            fee: 0,
            signature: [0; 64],
        };
        let block = Block {
            header: example_header(),
            transactions: vec![tx],
            proof,
        };
        let good = block.encode();
        assert_eq!(Block::decode(&good).unwrap(), block);
        for count in [i32::MAX, i32::MAX - 1, -1, i32::MIN, 1000] {
            let mut bad = good.clone();
            bad[290..294].copy_from_slice(&count.to_le_bytes());
            assert!(Block::decode(&bad).is_err(), "count {count}");
        }
        for len in [156, 154, 0, -1, i32::MAX] {
            let mut bad = good.clone();
            bad[294..298].copy_from_slice(&len.to_le_bytes());
            assert!(
                matches!(Block::decode(&bad), Err(DecodeError::Mismatch { .. })),
                "len {len}"
            );
        }
    }

    proptest! {
        #[test]
        fn round_trips_and_truncations_fail(
            header in arb_header(),
            transactions in proptest::collection::vec(arb_tx(), 0..3),
            proof in arb_proof(),
        ) {
            let block = Block { header, transactions, proof };
            let bytes = block.encode();
            prop_assert_eq!(bytes.len(), block.encoded_len());
            prop_assert_eq!(Block::decode(&bytes).unwrap(), block);
            for cut in 0..bytes.len() {
                prop_assert!(Block::decode(&bytes[..cut]).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(Block::decode(&longer).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
            let _ = Block::decode(&bytes);
        }
    }
}
