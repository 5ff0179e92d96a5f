//! Blocks, block headers, block proofs, plot metadata and transactions: decoders never
//! panic, what decodes re-encodes to the same bytes, and the validation that runs on
//! decoded values (proof verification, transaction checks) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spacetime::block::{Block, BlockHeader, BlockPlotMetadata, BlockProof, Transaction};
use spacetime::validate::validate_transaction;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    match sel % 5 {
        0 => {
            if let Ok(b) = Block::decode(bytes) {
                assert_eq!(b.encode(), bytes);
                assert_eq!(b.encoded_len(), bytes.len());
                let _ = b.hash();
                for tx in &b.transactions {
                    let _ = validate_transaction(tx);
                }
            }
        }
        1 => {
            if let Ok(p) = BlockProof::decode(bytes) {
                assert_eq!(p.encode(), bytes);
                assert_eq!(p.encoded_len(), bytes.len());
                let _ = p.to_merkle_path();
            }
        }
        2 => {
            if let Ok(tx) = Transaction::decode(bytes) {
                assert_eq!(&tx.encode()[..], bytes);
                let _ = validate_transaction(&tx);
            }
        }
        3 => {
            if let Ok(h) = BlockHeader::decode(bytes) {
                assert_eq!(&h.encode()[..], bytes);
                let _ = h.verify_signature();
            }
        }
        _ => {
            if let Ok(m) = BlockPlotMetadata::decode(bytes) {
                assert_eq!(&m.encode()[..], bytes);
            }
        }
    }
});
