//! The node's pending transactions (decisions D7): transactions that passed the basic rules
//! and the sender's signature, not yet in a block, at most a configured number.

use std::collections::HashMap;

use spacetime::block::Transaction;
use spacetime::consensus::{tx_order_key, TxOrderKey};
use spacetime::hash::Hash32;
use thiserror::Error;

/// Why a valid transaction was not added.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MempoolError {
    /// The same transaction is already pending.
    #[error("transaction is already pending")]
    Duplicate,
    /// The mempool holds its maximum.
    #[error("mempool is full ({max} transactions)")]
    Full {
        /// The maximum.
        max: usize,
    },
}

/// Pending transactions by hash.
#[derive(Debug)]
pub struct Mempool {
    txs: HashMap<Hash32, Transaction>,
    max: usize,
}

impl Mempool {
    /// An empty mempool holding at most `max` transactions.
    pub fn new(max: usize) -> Self {
        Self {
            txs: HashMap::new(),
            max,
        }
    }

    /// Adds a transaction the caller validated; returns its hash.
    pub fn insert(&mut self, tx: Transaction) -> Result<Hash32, MempoolError> {
        let hash = tx.hash();
        if self.txs.contains_key(&hash) {
            return Err(MempoolError::Duplicate);
        }
        if self.txs.len() >= self.max {
            return Err(MempoolError::Full { max: self.max });
        }
        self.txs.insert(hash, tx);
        Ok(hash)
    }

    /// Drops the transactions with these hashes (those of an accepted block); returns how
    /// many were pending.
    pub fn remove_all(&mut self, hashes: &[Hash32]) -> usize {
        hashes
            .iter()
            .filter(|h| self.txs.remove(*h).is_some())
            .count()
    }

    /// Up to `max` pending transactions in block order (that of `select_transactions`): by
    /// fee, highest first, then hash. Runs under the node's lock, so it hashes nothing (the
    /// hashes are the keys) and sorts only the `max` it returns.
    pub fn pending(&self, max: usize) -> Vec<Transaction> {
        if max == 0 {
            return Vec::new();
        }
        let mut keyed: Vec<(TxOrderKey, &Transaction)> = self
            .txs
            .iter()
            .map(|(h, tx)| (tx_order_key(tx.fee, *h), tx))
            .collect();
        if keyed.len() > max {
            keyed.select_nth_unstable_by_key(max - 1, |k| k.0);
            keyed.truncate(max);
        }
        keyed.sort_unstable_by_key(|k| k.0);
        keyed.into_iter().map(|(_, tx)| *tx).collect()
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{header, unchecked_proof};
    use spacetime::block::Block;

    fn tx(fee: u64, nonce: u64) -> Transaction {
        Transaction {
            version: 1,
            sender: [1; 33],
            recipient: [2; 33],
            amount: 5,
            nonce,
            fee,
            signature: [0; 64],
        }
    }

    #[test]
    fn insert_dedup_limit_order_and_removal() {
        let mut m = Mempool::new(3);
        m.insert(tx(1, 0)).unwrap();
        assert_eq!(m.insert(tx(1, 0)), Err(MempoolError::Duplicate));
        m.insert(tx(9, 1)).unwrap();
        m.insert(tx(5, 2)).unwrap();
        assert_eq!(m.insert(tx(7, 3)), Err(MempoolError::Full { max: 3 }));
        let fees: Vec<u64> = m.pending(10).iter().map(|t| t.fee).collect();
        assert_eq!(fees, [9, 5, 1]);
        assert_eq!(m.pending(1)[0].fee, 9);
        let block = Block {
            header: header(1, 1),
            transactions: vec![tx(9, 1), tx(4, 4)],
            proof: unchecked_proof(),
        };
        let hashes: Vec<Hash32> = block.transactions.iter().map(|t| t.hash()).collect();
        assert_eq!(m.remove_all(&hashes), 1);
        assert_eq!(m.len(), 2);
        assert!(!m.is_empty());
    }

    #[test]
    fn pending_matches_the_block_selection_order() {
        use rand::{Rng, SeedableRng};
        use spacetime::consensus::select_transactions;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut m = Mempool::new(500);
        let mut all = Vec::new();
        for nonce in 0..300 {
            // Few distinct fees, so the hash breaks many ties.
            let t = tx(rng.gen_range(0..5), nonce);
            m.insert(t).unwrap();
            all.push(t);
        }
        for max in [0, 1, 7, 299, 300, 1000] {
            assert_eq!(m.pending(max), select_transactions(&all, max), "max {max}");
        }
    }
}
