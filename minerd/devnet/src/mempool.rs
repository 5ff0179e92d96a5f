//! The node's pending transactions (decisions D7, R8): transactions that passed the basic
//! rules and the sender's signature, not yet in a block. Bounded twice: at most `max` in
//! all and at most `per_source` from one source (the IP address that sent it). A full
//! mempool evicts its lowest-fee transaction (the last one a block would take) for a
//! transaction that pays more; a source at its quota is refused, so one address cannot fill
//! the mempool or evict everyone else's transactions.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

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
    /// The mempool is full of transactions that pay at least as much.
    #[error("mempool is full ({max} transactions) and its lowest fee is {lowest_fee}; pay more to replace one")]
    Full {
        /// The maximum.
        max: usize,
        /// The fee of the transaction that would be evicted.
        lowest_fee: u64,
    },
    /// This source holds its share of the mempool already.
    #[error("{source_addr} has {held} pending transactions, the most one address may have")]
    Quota {
        /// The source.
        source_addr: IpAddr,
        /// Its pending transactions.
        held: usize,
    },
}

/// A pending transaction and where it came from.
#[derive(Debug)]
struct Pending {
    tx: Transaction,
    source: IpAddr,
}

/// Pending transactions by hash, with the block order and the count per source.
#[derive(Debug)]
pub struct Mempool {
    txs: HashMap<Hash32, Pending>,
    /// Every pending hash in block order; the last one is the first evicted.
    order: BTreeMap<TxOrderKey, Hash32>,
    per_source: HashMap<IpAddr, usize>,
    max: usize,
    max_per_source: usize,
}

impl Mempool {
    /// An empty mempool holding at most `max` transactions, at most `max_per_source` of
    /// them from one address.
    pub fn new(max: usize, max_per_source: usize) -> Self {
        Self {
            txs: HashMap::new(),
            order: BTreeMap::new(),
            per_source: HashMap::new(),
            max,
            max_per_source: max_per_source.max(1),
        }
    }

    /// Adds a transaction the caller validated, sent by `source`; returns its hash and the
    /// hash of the transaction it evicted, if the mempool was full.
    pub fn insert(
        &mut self,
        tx: Transaction,
        source: IpAddr,
    ) -> Result<(Hash32, Option<Hash32>), MempoolError> {
        let hash = tx.hash();
        if self.txs.contains_key(&hash) {
            return Err(MempoolError::Duplicate);
        }
        let held = self.per_source.get(&source).copied().unwrap_or(0);
        if held >= self.max_per_source {
            return Err(MempoolError::Quota {
                source_addr: source,
                held,
            });
        }
        let key = tx_order_key(tx.fee, hash);
        let mut evicted = None;
        if self.txs.len() >= self.max {
            // The last in block order (the lowest fee, then the highest hash) goes, for a
            // transaction that pays strictly more.
            match self.order.last_key_value() {
                Some((&last, &victim)) if tx.fee > last.0 .0 => {
                    self.remove(&victim);
                    evicted = Some(victim);
                }
                Some((&last, _)) => {
                    return Err(MempoolError::Full {
                        max: self.max,
                        lowest_fee: last.0 .0,
                    })
                }
                None => {
                    return Err(MempoolError::Full {
                        max: self.max,
                        lowest_fee: 0,
                    })
                }
            }
        }
        self.txs.insert(hash, Pending { tx, source });
        self.order.insert(key, hash);
        *self.per_source.entry(source).or_insert(0) += 1;
        Ok((hash, evicted))
    }

    /// Removes one pending transaction; whether it was pending.
    fn remove(&mut self, hash: &Hash32) -> bool {
        let Some(p) = self.txs.remove(hash) else {
            return false;
        };
        self.order.remove(&tx_order_key(p.tx.fee, *hash));
        if let Some(n) = self.per_source.get_mut(&p.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&p.source);
            }
        }
        true
    }

    /// Drops the transactions with these hashes (those of an accepted block); returns how
    /// many were pending.
    pub fn remove_all(&mut self, hashes: &[Hash32]) -> usize {
        hashes.iter().filter(|h| self.remove(h)).count()
    }

    /// Up to `max` pending transactions in block order (that of `select_transactions`): by
    /// fee, highest first, then hash. Runs under the node's lock: it walks the order index,
    /// hashing and sorting nothing.
    pub fn pending(&self, max: usize) -> Vec<Transaction> {
        self.order
            .values()
            .take(max)
            .filter_map(|h| self.txs.get(h).map(|p| p.tx))
            .collect()
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Pending transactions sent by `source`.
    pub fn held_by(&self, source: IpAddr) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
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

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn insert_dedup_limit_order_and_removal() {
        let mut m = Mempool::new(3, 3);
        m.insert(tx(1, 0), A).unwrap();
        assert_eq!(m.insert(tx(1, 0), A), Err(MempoolError::Duplicate));
        m.insert(tx(9, 1), A).unwrap();
        m.insert(tx(5, 2), A).unwrap();
        let fees: Vec<u64> = m.pending(10).iter().map(|t| t.fee).collect();
        assert_eq!(fees, [9, 5, 1]);
        assert_eq!(m.pending(1)[0].fee, 9);
        // Full: a higher fee evicts the lowest (fee 1, the transaction of nonce 0).
        let (_, evicted) = m.insert(tx(7, 3), B).unwrap();
        assert_eq!(evicted, Some(tx(1, 0).hash()));
        let fees: Vec<u64> = m.pending(10).iter().map(|t| t.fee).collect();
        assert_eq!(fees, [9, 7, 5]);
        assert_eq!((m.held_by(A), m.held_by(B)), (2, 1));
        assert_eq!(m.pending(1)[0].fee, 9);
        let block = Block {
            header: header(1, 1),
            transactions: vec![tx(9, 1), tx(4, 4)],
            proof: unchecked_proof(),
        };
        let hashes: Vec<Hash32> = block.transactions.iter().map(|t| t.hash()).collect();
        assert_eq!(m.remove_all(&hashes), 1);
        assert_eq!(m.len(), 2);
        assert_eq!(m.held_by(A), 1);
        assert!(!m.is_empty());
    }

    /// Regression (issue 10, row 10): the mempool had no eviction and no quota, so a full
    /// mempool refused every better transaction and one address could fill it alone.
    #[test]
    fn a_full_mempool_evicts_the_lowest_fee_and_one_address_gets_only_its_share() {
        let mut m = Mempool::new(4, 2);
        m.insert(tx(3, 0), A).unwrap();
        m.insert(tx(4, 1), A).unwrap();
        assert_eq!(
            m.insert(tx(100, 2), A),
            Err(MempoolError::Quota {
                source_addr: A,
                held: 2
            })
        );
        m.insert(tx(5, 3), B).unwrap();
        m.insert(tx(6, 4), B).unwrap();
        // Full, and a fee no higher than the lowest is refused with the fee to beat.
        let err = m.insert(tx(3, 5), IpAddr::from([10, 0, 0, 3])).unwrap_err();
        assert_eq!(
            err,
            MempoolError::Full {
                max: 4,
                lowest_fee: 3
            }
        );
        assert!(err.to_string().contains("lowest fee is 3"), "{err}");
        // A better one evicts the lowest fee, whoever sent it; that frees its sender's share.
        let (_, evicted) = m.insert(tx(9, 6), IpAddr::from([10, 0, 0, 3])).unwrap();
        assert_eq!(evicted, Some(tx(3, 0).hash()));
        assert_eq!(m.held_by(A), 1);
        m.insert(tx(10, 7), A).unwrap();
        assert_eq!(m.len(), 4);
        let fees: Vec<u64> = m.pending(10).iter().map(|t| t.fee).collect();
        assert_eq!(fees, [10, 9, 6, 5]);
    }

    #[test]
    fn pending_matches_the_block_selection_order() {
        use rand::{Rng, SeedableRng};
        use spacetime::consensus::select_transactions;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut m = Mempool::new(500, 500);
        let mut all = Vec::new();
        for nonce in 0..300 {
            // Few distinct fees, so the hash breaks many ties.
            let t = tx(rng.gen_range(0..5), nonce);
            m.insert(t, A).unwrap();
            all.push(t);
        }
        for max in [0, 1, 7, 299, 300, 1000] {
            assert_eq!(m.pending(max), select_transactions(&all, max), "max {max}");
        }
    }
}
