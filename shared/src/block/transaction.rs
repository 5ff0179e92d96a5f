//! `Transaction`: 91 bytes covered by the tx hash, then a 64-byte signature (155 bytes).
//!
//! | off | size | field     | rule                                   |
//! |----:|-----:|-----------|----------------------------------------|
//! |   0 |    1 | version   | 1                                      |
//! |   1 |   33 | sender    | `0xED ‖ pk` (33 zero bytes in genesis) |
//! |  34 |   33 | recipient | `0xED ‖ pk`                            |
//! |  67 |    8 | amount    | i64 LE ≥ 0 (validation requires > 0)   |
//! |  75 |    8 | nonce     | i64 LE ≥ 0                             |
//! |  83 |    8 | fee       | i64 LE ≥ 0                             |
//! |  91 |   64 | signature | Ed25519 over the tx hash               |
//!
//! Tx hash = `H(bytes 0..91)`.

use crate::codec::{put_u64, DecodeError, Reader};

/// Bytes covered by the tx hash.
pub const TRANSACTION_UNSIGNED_LEN: usize = 91;
/// Encoded size of a signed transaction.
pub const TRANSACTION_LEN: usize = 155;
/// The only transaction version.
pub const TRANSACTION_VERSION: u8 = 1;

/// A transfer between two keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transaction {
    /// Transaction format version (1).
    pub version: u8,
    /// `0xED ‖ pk` of the payer.
    pub sender: [u8; 33],
    /// `0xED ‖ pk` of the payee.
    pub recipient: [u8; 33],
    /// Amount transferred.
    pub amount: u64,
    /// Sender's sequence number.
    pub nonce: u64,
    /// Fee paid to the block's miner.
    pub fee: u64,
    /// Ed25519 signature of [`Transaction::hash`] by the sender.
    pub signature: [u8; 64],
}

signed_record!(
    Transaction,
    signer: sender,
    unsigned: TRANSACTION_UNSIGNED_LEN,
    signed: TRANSACTION_LEN,
    name: "Transaction",
    docs: [
        "The 91 bytes the tx hash covers.",
        "The 155-byte signed encoding.",
        "The tx hash: `H(first 91 bytes)`.",
        "Sets `sender` to the key's id, then signs the tx hash with it.",
        "Whether `signature` is a valid Ed25519 signature of the tx hash by `sender`.",
        "Decodes exactly 155 bytes (a longer blob is an error, decisions D9).",
    ],
);

impl Transaction {
    fn encode_unsigned_into(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.extend_from_slice(&self.sender);
        out.extend_from_slice(&self.recipient);
        put_u64(out, self.amount);
        put_u64(out, self.nonce);
        put_u64(out, self.fee);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            version: r.u8("tx.version")?,
            sender: r.array("tx.sender")?,
            recipient: r.array("tx.recipient")?,
            amount: r.i64_non_negative("tx.amount")?,
            nonce: r.i64_non_negative("tx.nonce")?,
            fee: r.i64_non_negative("tx.fee")?,
            signature: r.array("tx.signature")?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hash::sha256;
    use crate::keys::MinerKey;
    use proptest::prelude::*;

    pub(crate) fn arb_tx() -> impl Strategy<Value = Transaction> {
        let nn = 0..=i64::MAX as u64;
        (
            any::<u8>(),
            (
                any::<u8>(),
                any::<[u8; 32]>(),
                any::<u8>(),
                any::<[u8; 32]>(),
            ),
            (nn.clone(), nn.clone(), nn),
            (any::<[u8; 32]>(), any::<[u8; 32]>()),
        )
            .prop_map(
                |(version, (t1, s, t2, rc), (amount, nonce, fee), (g1, g2))| {
                    let mut sender = [t1; 33];
                    sender[1..].copy_from_slice(&s);
                    let mut recipient = [t2; 33];
                    recipient[1..].copy_from_slice(&rc);
                    let mut signature = [0u8; 64];
                    signature[..32].copy_from_slice(&g1);
                    signature[32..].copy_from_slice(&g2);
                    Transaction {
                        version,
                        sender,
                        recipient,
                        amount,
                        nonce,
                        fee,
                        signature,
                    }
                },
            )
    }

    #[test]
    fn signed_transaction_verifies_and_tampering_fails() {
        let key = MinerKey::generate();
        let other = MinerKey::generate();
        let mut tx = Transaction {
            version: TRANSACTION_VERSION,
            sender: [0; 33],
            recipient: other.miner_id(),
            amount: 10,
            nonce: 0,
            fee: 1,
            signature: [0; 64],
        };
        tx.sign(&key);
        assert!(tx.verify_signature());
        let mut tampered = tx;
        tampered.amount = 11;
        assert!(!tampered.verify_signature());
        assert_eq!(tx.hash(), sha256(&tx.encode()[..TRANSACTION_UNSIGNED_LEN]));
    }

    proptest! {
        #[test]
        fn round_trips_and_truncations_fail(tx in arb_tx()) {
            let bytes = tx.encode();
            prop_assert_eq!(Transaction::decode(&bytes).unwrap(), tx);
            for cut in 0..bytes.len() {
                prop_assert!(Transaction::decode(&bytes[..cut]).is_err());
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            prop_assert!(Transaction::decode(&longer).is_err());
        }
    }
}
