//! Refusals of one block or transaction, as a node words them in an Error message.
//!
//! The Error message carries free text (decisions D3), so a refusal that a miner must act
//! on opens with a fixed, machine-readable head, followed by prose for people:
//!
//! | text                                                        | refused            |
//! |-------------------------------------------------------------|--------------------|
//! | `block <hash> rejected: <reason>`                           | a block            |
//! | `block <hash> rejected: transaction #<i> <tx hash> <rest>`  | a block, for one of its transactions |
//! | `transaction <hash> rejected: <reason>`                     | a transaction      |
//!
//! `<hash>` is 64 lower-case hex digits. The devnet node writes refusals only through
//! [`Rejection::to_text`]; the miner reads them only through [`Rejection::parse`], never by
//! looking for hashes anywhere in the text (an Error that does not open with one of these
//! heads refuses nothing in particular).

use crate::hash::{to_hex, Hash32};

/// What a refusal names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// A block, with the transaction it was refused for, if it was refused for one.
    Block {
        /// The block hash.
        hash: Hash32,
        /// The transaction of the block that made it invalid.
        transaction: Option<Hash32>,
    },
    /// A transaction.
    Transaction {
        /// The tx hash.
        hash: Hash32,
    },
}

/// A refusal: what is refused, and why (prose).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What is refused.
    pub rejected: Rejected,
    /// Why, for people (after the transaction head when there is one).
    pub reason: String,
}

const BLOCK: &str = "block ";
const TRANSACTION: &str = "transaction ";
const REJECTED: &str = " rejected: ";
const TX_IN_BLOCK: &str = "transaction #";

impl Rejection {
    /// A block refused for `reason`.
    pub fn block(hash: Hash32, reason: impl Into<String>) -> Self {
        Self {
            rejected: Rejected::Block {
                hash,
                transaction: None,
            },
            reason: reason.into(),
        }
    }

    /// A block refused because of its transaction `index` (`tx_hash`), for `reason`.
    pub fn block_for_transaction(
        hash: Hash32,
        index: usize,
        tx_hash: Hash32,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            rejected: Rejected::Block {
                hash,
                transaction: Some(tx_hash),
            },
            reason: format!(
                "{TX_IN_BLOCK}{index} {} {}",
                to_hex(&tx_hash),
                reason.into()
            ),
        }
    }

    /// A transaction refused for `reason`.
    pub fn transaction(hash: Hash32, reason: impl Into<String>) -> Self {
        Self {
            rejected: Rejected::Transaction { hash },
            reason: reason.into(),
        }
    }

    /// The Error message text.
    pub fn to_text(&self) -> String {
        let (kind, hash) = match &self.rejected {
            Rejected::Block { hash, .. } => (BLOCK, hash),
            Rejected::Transaction { hash } => (TRANSACTION, hash),
        };
        format!("{kind}{}{REJECTED}{}", to_hex(hash), self.reason)
    }

    /// The refusal an Error message text states, if it opens with one of the heads above.
    pub fn parse(text: &str) -> Option<Self> {
        let (block, rest) = if let Some(rest) = text.strip_prefix(BLOCK) {
            (true, rest)
        } else {
            (false, text.strip_prefix(TRANSACTION)?)
        };
        let hash = hash_at(rest)?;
        let reason = rest[64..].strip_prefix(REJECTED)?.to_owned();
        let rejected = if block {
            let transaction = reason
                .strip_prefix(TX_IN_BLOCK)
                .and_then(|r| r.split_once(' '))
                .filter(|(index, _)| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|(_, r)| hash_at(r).filter(|_| r[64..].starts_with(' ')));
            Rejected::Block { hash, transaction }
        } else {
            Rejected::Transaction { hash }
        };
        Some(Self { rejected, reason })
    }
}

/// The 32-byte hash written as the first 64 characters of `text`, lower-case hex.
fn hash_at(text: &str) -> Option<Hash32> {
    let digits = text.get(..64)?;
    if !digits
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut hash = [0u8; 32];
    hex::decode_to_slice(digits, &mut hash).ok()?;
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_head_round_trips() {
        for r in [
            Rejection::block([1; 32], "proof rejected: bad path"),
            Rejection::block_for_transaction([2; 32], 3, [4; 32], "is already in the chain"),
            Rejection::transaction([5; 32], "bad signature"),
        ] {
            assert_eq!(Rejection::parse(&r.to_text()), Some(r));
        }
        let text =
            Rejection::block_for_transaction([2; 32], 0, [4; 32], "is listed twice").to_text();
        assert_eq!(
            text,
            format!(
                "block {} rejected: transaction #0 {} is listed twice",
                "02".repeat(32),
                "04".repeat(32)
            )
        );
    }

    #[test]
    fn text_without_a_head_refuses_nothing() {
        let hash = "ab".repeat(32);
        for text in [
            format!("GetBlock: unknown block {hash}"),
            format!("block {hash} accepted"),
            format!("block {} rejected: x", "AB".repeat(32)),
            format!("block {} rejected: x", &hash[..62]),
            format!("peer {hash} rejected: x"),
            String::new(),
        ] {
            assert_eq!(Rejection::parse(&text), None, "{text}");
        }
        // A block refused for prose that merely mentions a hash names no transaction.
        let r = Rejection::parse(&format!("block {hash} rejected: see {hash}")).unwrap();
        assert_eq!(
            r.rejected,
            Rejected::Block {
                hash: [0xab; 32],
                transaction: None
            }
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,200}") {
            let _ = Rejection::parse(&text);
        }
    }
}
