//! The miner's transaction pool (decisions D7).
//!
//! Holds the transactions the node relayed (or sent in answer to TxPoolRequest) that pass the
//! basic rules and the sender's signature, once each (by tx hash), in block order: fee
//! descending, then tx hash ascending, the order `consensus::select_transactions` uses.
//! Bounded: when full, a new transaction must pay more than the cheapest one, which it then
//! replaces. Transactions leave when a block carrying them is accepted, when the node refuses
//! them (an Error naming them, e.g. for our rejected block), or when they are older than the
//! maximum age (the node's pool is the authority; it is asked again on reconnect).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use spacetime::block::Transaction;
use spacetime::consensus::{tx_order_key, TxOrderKey};
use spacetime::hash::Hash32;
use spacetime::validate::{validate_transaction, TransactionError};
use thiserror::Error;

/// Default number of transactions kept.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// Default age after which a transaction is dropped.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 60);

/// Why a transaction was not added.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MempoolError {
    /// It breaks a basic rule or its signature is invalid.
    #[error(transparent)]
    Invalid(#[from] TransactionError),
    /// The pool is full of transactions paying at least as much.
    #[error("mempool full: fee {fee} does not beat the lowest fee {lowest}")]
    Full {
        /// The refused transaction's fee.
        fee: u64,
        /// The cheapest fee in the pool.
        lowest: u64,
    },
}

/// What [`Mempool::insert`] did with a valid transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Added.
    Added,
    /// Already there.
    Duplicate,
    /// Added in place of the cheapest transaction, whose hash is given.
    Replaced(Hash32),
}

#[derive(Debug, Clone)]
struct Entry {
    tx: Transaction,
    added: Instant,
}

/// Block order key: fee descending, then hash ascending (the consensus order).
type OrderKey = TxOrderKey;

/// The pool.
#[derive(Debug)]
pub struct Mempool {
    entries: HashMap<Hash32, Entry>,
    order: BTreeSet<OrderKey>,
    capacity: usize,
    max_age: Duration,
}

impl Default for Mempool {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_MAX_AGE)
    }
}

impl Mempool {
    /// An empty pool of at most `capacity` (≥ 1) transactions kept at most `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeSet::new(),
            capacity: capacity.max(1),
            max_age,
        }
    }

    /// Checks and adds a transaction received at `now`.
    pub fn insert(&mut self, tx: Transaction, now: Instant) -> Result<Admission, MempoolError> {
        validate_transaction(&tx)?;
        let hash = tx.hash();
        if self.entries.contains_key(&hash) {
            return Ok(Admission::Duplicate);
        }
        let key = tx_order_key(tx.fee, hash);
        let mut admission = Admission::Added;
        if self.entries.len() >= self.capacity {
            // The last key in block order is the cheapest (then highest hash).
            let Some(&worst) = self.order.last() else {
                return Err(MempoolError::Full {
                    fee: tx.fee,
                    lowest: 0,
                });
            };
            if tx.fee <= worst.0 .0 {
                return Err(MempoolError::Full {
                    fee: tx.fee,
                    lowest: worst.0 .0,
                });
            }
            self.remove(&worst.1);
            admission = Admission::Replaced(worst.1);
        }
        self.order.insert(key);
        self.entries.insert(hash, Entry { tx, added: now });
        Ok(admission)
    }

    /// Removes one transaction; whether it was there.
    pub fn remove(&mut self, hash: &Hash32) -> bool {
        match self.entries.remove(hash) {
            Some(e) => {
                self.order.remove(&tx_order_key(e.tx.fee, *hash));
                true
            }
            None => false,
        }
    }

    /// Removes the transactions of an accepted block; how many were in the pool.
    pub fn prune<'a>(&mut self, included: impl IntoIterator<Item = &'a Transaction>) -> usize {
        included
            .into_iter()
            .filter(|tx| self.remove(&tx.hash()))
            .count()
    }

    /// Drops transactions older than the maximum age; how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let old: Vec<Hash32> = self
            .entries
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.added) > self.max_age)
            .map(|(h, _)| *h)
            .collect();
        old.iter().filter(|h| self.remove(h)).count()
    }

    /// The transactions for a block: at most `max`, fee descending then hash ascending.
    pub fn select(&self, max: usize) -> Vec<Transaction> {
        self.order
            .iter()
            .take(max)
            .filter_map(|(_, h)| self.entries.get(h).map(|e| e.tx))
            .collect()
    }

    /// Empties the pool (on reconnect, before asking the node for its pool).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacetime::consensus::select_transactions;
    use spacetime::keys::MinerKey;

    fn tx(key: &MinerKey, nonce: u64, fee: u64) -> Transaction {
        let mut t = Transaction {
            version: 1,
            sender: key.miner_id(),
            recipient: MinerKey::from_secret_bytes(&[9; 32]).miner_id(),
            amount: 5,
            nonce,
            fee,
            signature: [0; 64],
        };
        t.sign(key);
        t
    }

    #[test]
    fn orders_by_fee_then_hash_like_the_block_builder() {
        let key = MinerKey::from_secret_bytes(&[1; 32]);
        let txs: Vec<_> = (0..40).map(|n| tx(&key, n, n % 4)).collect();
        let mut pool = Mempool::default();
        let now = Instant::now();
        for t in &txs {
            assert_eq!(pool.insert(*t, now), Ok(Admission::Added));
        }
        assert_eq!(pool.insert(txs[3], now), Ok(Admission::Duplicate));
        assert_eq!(pool.len(), 40);
        assert_eq!(pool.select(1000), select_transactions(&txs, 1000));
        assert_eq!(pool.select(7), select_transactions(&txs, 7));
        let fees: Vec<u64> = pool.select(1000).iter().map(|t| t.fee).collect();
        assert!(fees.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn refuses_invalid_transactions() {
        let key = MinerKey::from_secret_bytes(&[1; 32]);
        let mut pool = Mempool::default();
        let mut forged = tx(&key, 1, 1);
        forged.amount += 1; // signature no longer matches
        assert!(matches!(
            pool.insert(forged, Instant::now()),
            Err(MempoolError::Invalid(
                TransactionError::InvalidSignature { .. }
            ))
        ));
        let mut zero = tx(&key, 2, 1);
        zero.amount = 0;
        zero.sign(&key);
        assert!(matches!(
            pool.insert(zero, Instant::now()),
            Err(MempoolError::Invalid(TransactionError::ZeroAmount))
        ));
        assert!(pool.is_empty());
    }

    #[test]
    fn a_full_pool_keeps_the_best_paying() {
        let key = MinerKey::from_secret_bytes(&[1; 32]);
        let mut pool = Mempool::new(3, DEFAULT_MAX_AGE);
        let now = Instant::now();
        for (n, fee) in [(0, 5), (1, 1), (2, 3)] {
            pool.insert(tx(&key, n, fee), now).unwrap();
        }
        let cheap = tx(&key, 3, 1);
        assert_eq!(
            pool.insert(cheap, now),
            Err(MempoolError::Full { fee: 1, lowest: 1 })
        );
        let rich = tx(&key, 4, 9);
        let evicted = tx(&key, 1, 1).hash();
        assert_eq!(pool.insert(rich, now), Ok(Admission::Replaced(evicted)));
        let fees: Vec<u64> = pool.select(10).iter().map(|t| t.fee).collect();
        assert_eq!(fees, [9, 5, 3]);
    }

    #[test]
    fn prunes_included_and_expires_old_transactions() {
        let key = MinerKey::from_secret_bytes(&[1; 32]);
        let mut pool = Mempool::new(100, Duration::from_secs(60));
        let t0 = Instant::now();
        let a = tx(&key, 0, 1);
        let b = tx(&key, 1, 2);
        let c = tx(&key, 2, 3);
        pool.insert(a, t0).unwrap();
        pool.insert(b, t0 + Duration::from_secs(30)).unwrap();
        pool.insert(c, t0 + Duration::from_secs(30)).unwrap();
        let other = tx(&key, 99, 1);
        assert_eq!(pool.prune([&c, &other]), 1);
        assert_eq!(pool.expire(t0 + Duration::from_secs(61)), 1);
        assert_eq!(pool.select(10), vec![b]);
        assert_eq!(pool.expire(t0 + Duration::from_secs(200)), 1);
        assert!(pool.is_empty());
        pool.insert(a, t0).unwrap();
        pool.clear();
        assert!(pool.select(10).is_empty());
    }
}
