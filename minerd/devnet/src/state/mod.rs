//! The node's shared state and what it does with each message: one lock around the chain,
//! the current epoch, the mempool and the registry of connected peers. The lock is held
//! only for short in-memory work, never across an await or a disk write (the epoch task
//! appends blocks to the chain file outside it).
//!
//! Work that costs more than a few microseconds runs without the lock
//! ([`Shared::handle`]): a Block/NewBlock is admitted under the lock (is its epoch the open
//! one?), checked on the blocking pool by [`check_block`] (at most
//! [`MAX_BLOCK_TRANSACTIONS`] transactions, then the proof, which is cheap and needs a real
//! plot and a winning score, before any signature; then every other rule), and offered to
//! the epoch under the lock again, if that epoch is still the open one. A transaction's
//! signature is checked before the lock is taken.
//!
//! | module | owns |
//! |---|---|
//! | this one | [`Shared`] (the lock), [`NodeState`] and the dispatch of each message |
//! | [`check`] | the lock-free block checks |
//! | [`peers`] | the peer registry and the broadcast |

mod check;
mod peers;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard};

use spacetime::block::{Block, Transaction, BLOCK_HEADER_LEN};
use spacetime::hash::{to_hex, Hash32};
use spacetime::validate::validate_transaction;
use spacetime::wire::{Message, Rejection, FRAME_HEADER_LEN, MAX_HEADERS};

use super::chain::{read_stored_block, BlockHashes, Chain, RecordLocation, StoredBlock};
use super::config::DevnetNodeConfig;
use super::epoch::{Candidate, Epoch, Offer, PeerId};
use super::mempool::{Mempool, MempoolError};
use super::now_unix_ms;

pub(crate) use check::{check_block, CheckedBlock, PendingBlock};
#[cfg(test)]
pub(crate) use peers::HANDSHAKE_GRACE;
pub(crate) use peers::{Frame, PeerLink, Peers};

/// Everything the tasks of one node share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The settings.
    pub cfg: DevnetNodeConfig,
    /// This node's id in its Handshake.
    pub node_id: String,
    /// Open connections, handshaking ones included (bounded by `max_peers`).
    pub connections: AtomicUsize,
    /// Open connections per remote address (bounded by `max_peers_per_ip`).
    pub per_ip: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    /// Signalled whenever a connection gives its slot back.
    pub slot_freed: tokio::sync::Notify,
    state: Mutex<NodeState>,
}

impl Shared {
    pub fn new(cfg: DevnetNodeConfig, node_id: String, state: NodeState) -> Self {
        Self {
            cfg,
            node_id,
            connections: AtomicUsize::new(0),
            per_ip: Mutex::new(std::collections::HashMap::new()),
            slot_freed: tokio::sync::Notify::new(),
            state: Mutex::new(state),
        }
    }

    /// The state. A panic while the lock was held leaves consistent data behind (every
    /// update is a single step), so a poisoned lock is taken over rather than propagated.
    pub fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Handles one message from a handshaken peer: the in-memory steps under the lock, the
    /// expensive checks without it (see the module docs).
    pub async fn handle(&self, id: PeerId, addr: SocketAddr, message: Message) -> Outcome {
        let step = self.lock().handle(id, addr, message, now_unix_ms());
        match step {
            Step::Done(outcome) => outcome,
            Step::CheckBlock(pending) => {
                let PendingBlock { block, ctx } = *pending;
                let hash = block.hash();
                let height = block.header.height;
                match tokio::task::spawn_blocking(move || check_block(block, &ctx)).await {
                    Ok(Ok(checked)) => self.lock().offer_block(id, addr, checked, now_unix_ms()),
                    Ok(Err(e)) => block_rejected(addr, height, e.rejection(hash)),
                    Err(e) => {
                        tracing::error!(peer = %addr, block = %to_hex(&hash), error = %e, "block check failed");
                        Outcome::reply(Message::Error(format!(
                            "block {} could not be checked: internal error",
                            to_hex(&hash)
                        )))
                    }
                }
            }
            Step::ReadBlock { file, at, hash } => {
                let read = tokio::task::spawn_blocking(move || read_stored_block(&file, at, &hash))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                match read {
                    Ok(block) => Outcome::reply(Message::Block(block)),
                    Err(error) => {
                        tracing::error!(block = %to_hex(&hash), error = %error, "cannot read a block from the chain file");
                        Outcome::reply(Message::Error(format!(
                            "GetBlock: block {} could not be read: internal error",
                            to_hex(&hash)
                        )))
                    }
                }
            }
            Step::CheckTransaction(tx) => {
                // One Ed25519 verification (well under a millisecond): on this worker, but
                // without the lock.
                match validate_transaction(&tx) {
                    Ok(()) => self.lock().add_transaction(id, addr, tx),
                    Err(e) => transaction_rejected(addr, tx.hash(), &e.to_string()),
                }
            }
        }
    }
}

/// What a message needs after its first step under the lock.
#[derive(Debug)]
pub(crate) enum Step {
    /// Fully handled.
    Done(Outcome),
    /// A block of the open epoch, to be checked without the lock ([`check_block`]) and
    /// then offered ([`NodeState::offer_block`]).
    CheckBlock(Box<PendingBlock>),
    /// A transaction, to be checked without the lock and then added
    /// ([`NodeState::add_transaction`]).
    CheckTransaction(Transaction),
    /// A block no longer in memory, to be read from the chain file without the lock.
    ReadBlock {
        /// The chain file.
        file: std::sync::Arc<std::fs::File>,
        /// Where the block is.
        at: RecordLocation,
        /// Its hash.
        hash: Hash32,
    },
}

/// Logs a refused block and answers the sender with the refusal (`spacetime::wire::rejection`).
fn block_rejected(addr: SocketAddr, height: u64, rejection: Rejection) -> Outcome {
    let text = rejection.to_text();
    tracing::warn!(peer = %addr, height, reason = %text, "block rejected");
    Outcome::reply(Message::Error(text))
}

/// Logs a refused transaction and answers the sender with the refusal.
fn transaction_rejected(addr: SocketAddr, hash: Hash32, reason: &str) -> Outcome {
    tracing::warn!(peer = %addr, tx = %to_hex(&hash), reason = %reason, "transaction rejected");
    Outcome::reply(Message::Error(
        Rejection::transaction(hash, reason).to_text(),
    ))
}

/// What to do after handling a message.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Messages for the sender, in order.
    pub replies: Vec<Message>,
    /// Close the connection after the replies.
    pub close: Option<Close>,
}

/// Why and how a connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Close {
    /// The reason, logged and (when `send_error`) sent as an Error frame.
    pub reason: String,
    /// Whether to send the reason to the peer (not when the peer itself sent Error).
    pub send_error: bool,
}

impl Outcome {
    fn reply(message: Message) -> Self {
        Self {
            replies: vec![message],
            close: None,
        }
    }

    fn close(reason: String) -> Self {
        Self {
            replies: Vec::new(),
            close: Some(Close {
                reason,
                send_error: true,
            }),
        }
    }
}

/// The node's state.
#[derive(Debug)]
pub(crate) struct NodeState {
    pub chain: Chain,
    pub epoch: Epoch,
    /// The epoch before the current one, so that a proof that arrives a moment after its
    /// deadline is recognised as late rather than invalid.
    previous: Option<Epoch>,
    pub mempool: Mempool,
    peers: Peers,
    pub blocks_accepted: u64,
    /// Blocks taken for the full check (signatures included).
    pub blocks_checked: u64,
    /// Blocks dropped unchecked: replays, or not better than the epoch's leader.
    pub blocks_ignored: u64,
    max_frame_length: u32,
    /// Proofs and blocks from smaller plots are refused (decisions R6).
    min_plot_leaves: u64,
}

impl NodeState {
    pub fn new(chain: Chain, epoch: Epoch, mempool: Mempool, max_frame_length: u32) -> Self {
        Self {
            chain,
            epoch,
            previous: None,
            mempool,
            peers: Peers::new(max_frame_length),
            blocks_accepted: 0,
            blocks_checked: 0,
            blocks_ignored: 0,
            max_frame_length,
            min_plot_leaves: 1,
        }
    }

    /// Sets the smallest plot whose proofs and blocks count.
    pub fn with_min_plot_leaves(mut self, min: u64) -> Self {
        self.min_plot_leaves = min.max(1);
        self
    }

    /// `Ok` when a plot of `leaves` leaves is at least this network's minimum. (The
    /// proof's leaf count is bound to its Merkle path by the strict check, so a small plot
    /// cannot claim more.)
    fn plot_big_enough(&self, leaves: u64) -> Result<(), String> {
        if leaves < self.min_plot_leaves {
            return Err(format!(
                "its plot has {leaves} leaves, below this network's minimum of {}",
                self.min_plot_leaves
            ));
        }
        Ok(())
    }

    /// Connected (handshaken) peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Adds a peer that completed the handshake and queues the current epoch for it, under
    /// the lock, so it sees every later epoch in order.
    pub fn register(&mut self, id: PeerId, link: PeerLink) {
        self.peers
            .register(id, link, &Message::NewEpoch(self.epoch.announcement()));
    }

    /// Removes a peer (its connection ended).
    pub fn unregister(&mut self, id: PeerId) {
        self.peers.unregister(id);
    }

    /// Notes a connection that has not completed its handshake (it can be dropped to make
    /// room, see [`Peers::evict_idle`]).
    pub fn track_handshake(
        &mut self,
        id: PeerId,
        addr: SocketAddr,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        self.peers.track_handshake(id, addr, cancel);
    }

    /// Drops a connection stuck in its handshake, or the handshaken peer idle the longest
    /// if it sent nothing useful for at least `idle_after` (see [`Peers::evict_idle`]).
    pub fn evict_idle_peer(
        &mut self,
        idle_after: std::time::Duration,
    ) -> Option<(SocketAddr, std::time::Duration)> {
        self.peers.evict_idle(idle_after)
    }

    /// Queues `message` for every peer but `except` (see [`Peers::broadcast`]).
    pub fn broadcast(&mut self, message: &Message, except: Option<PeerId>) {
        self.peers.broadcast(message, except);
    }

    /// The first step of one message from a handshaken peer at `now_unix_ms`, under the
    /// lock: in-memory work only; what needs expensive checks comes back as a [`Step`].
    pub fn handle(
        &mut self,
        id: PeerId,
        addr: SocketAddr,
        message: Message,
        now_unix_ms: u64,
    ) -> Step {
        let outcome = match message {
            Message::Ping { nonce, .. } => Outcome::reply(Message::Pong {
                nonce,
                timestamp: i64::try_from(now_unix_ms).unwrap_or(i64::MAX),
            }),
            Message::Pong { .. } | Message::Heartbeat => Outcome::default(),
            Message::Handshake(_) | Message::HandshakeAck => {
                Outcome::close("unexpected handshake message after the handshake".into())
            }
            // This node does not relay peer addresses: an empty list is the honest answer.
            Message::GetPeers { .. } => Outcome::reply(Message::Peers(Vec::new())),
            Message::GetHeaders {
                locator,
                stop,
                max_headers,
            } => {
                let fit = (self.max_frame_length as usize).saturating_sub(FRAME_HEADER_LEN + 4)
                    / (4 + BLOCK_HEADER_LEN);
                let max = usize::try_from(max_headers)
                    .unwrap_or(0)
                    .min(MAX_HEADERS)
                    .min(fit);
                match self.chain.headers_after(&locator, stop.as_ref(), max) {
                    Some(headers) => Outcome::reply(Message::Headers(headers)),
                    None => Outcome::reply(Message::Error(format!(
                        "GetHeaders: unknown locator block {}",
                        to_hex(&locator)
                    ))),
                }
            }
            Message::GetBlock { hash } => match self.chain.find_by_hash(&hash) {
                Some(StoredBlock::Memory(block)) => Outcome::reply(Message::Block(block.clone())),
                Some(StoredBlock::File { file, at, hash }) => {
                    return Step::ReadBlock { file, at, hash }
                }
                None => Outcome::reply(Message::Error(format!(
                    "GetBlock: unknown block {}",
                    to_hex(&hash)
                ))),
            },
            Message::Block(block) | Message::NewBlock(block) => {
                return self.admit_block(addr, block, now_unix_ms)
            }
            Message::Transaction(tx) => return Step::CheckTransaction(tx),
            Message::TxPoolRequest {
                max_transactions, ..
            } => {
                // The protocol has no hash-only answer, so include_data = false is answered
                // with the transactions too.
                let max = usize::try_from(max_transactions).unwrap_or(0);
                Outcome {
                    replies: self
                        .mempool
                        .pending(max)
                        .into_iter()
                        .map(Message::Transaction)
                        .collect(),
                    close: None,
                }
            }
            Message::ProofSubmission {
                block_height,
                miner_id,
                proof,
            } => self.on_proof(id, addr, block_height, &miner_id, &proof, now_unix_ms),
            Message::Error(reason) => Outcome {
                replies: Vec::new(),
                close: Some(Close {
                    reason: format!(
                        "peer sent Error: {}",
                        spacetime::wire::printable(&reason, spacetime::wire::MAX_PEER_TEXT)
                    ),
                    send_error: false,
                }),
            },
            // Node-to-node announcements: a devnet node does not sync from its peers.
            other @ (Message::Peers(_)
            | Message::Headers(_)
            | Message::BlockAccepted { .. }
            | Message::NewEpoch(_)) => {
                tracing::debug!(peer = %addr, kind = ?other.message_type(), "ignored: this node does not sync from peers");
                Outcome::default()
            }
        };
        Step::Done(outcome)
    }

    fn on_proof(
        &mut self,
        id: PeerId,
        addr: SocketAddr,
        block_height: u64,
        miner_id: &[u8; 33],
        proof: &spacetime::block::BlockProof,
        now_unix_ms: u64,
    ) -> Outcome {
        let epoch = self.epoch.number;
        if let Err(reason) = self.plot_big_enough(proof.metadata.leaf_count) {
            tracing::warn!(peer = %addr, epoch, %reason, "proof refused; disconnecting");
            return Outcome::close(format!("proof rejected: {reason}"));
        }
        if self.epoch.is_open(now_unix_ms) {
            match self.epoch.judge_proof(block_height, miner_id, proof) {
                Ok(score) => {
                    self.epoch.proofs += 1;
                    self.peers.mark_useful(id);
                    tracing::info!(
                        peer = %addr,
                        epoch,
                        height = block_height,
                        miner = %to_hex(miner_id),
                        score = %to_hex(&score),
                        "proof accepted"
                    );
                    return Outcome::default();
                }
                Err(e) => {
                    if let Some(prev) = &self.previous {
                        if prev.judge_proof(block_height, miner_id, proof).is_ok() {
                            tracing::warn!(peer = %addr, epoch = prev.number, "proof arrived after its epoch's deadline; ignored as late");
                            return Outcome::default();
                        }
                    }
                    tracing::warn!(peer = %addr, epoch, error = %e, "invalid proof; disconnecting");
                    return Outcome::close(format!("proof rejected: {e}"));
                }
            }
        }
        // Between the deadline and the next epoch: judged against the closed epoch.
        match self.epoch.judge_proof(block_height, miner_id, proof) {
            Ok(_) => {
                tracing::warn!(peer = %addr, epoch, "proof arrived after the deadline; ignored as late");
                Outcome::default()
            }
            Err(e) => {
                tracing::warn!(peer = %addr, epoch, error = %e, "invalid proof; disconnecting");
                Outcome::close(format!("proof rejected: {e}"))
            }
        }
    }

    /// Admits a block for checking if it names the open epoch: a block of an earlier (or
    /// closed) epoch is late and ignored, one of a later epoch is refused.
    fn admit_block(&mut self, addr: SocketAddr, block: Block, now_unix_ms: u64) -> Step {
        let h = &block.header;
        let current = self.epoch.number;
        if h.epoch < current || (h.epoch == current && !self.epoch.is_open(now_unix_ms)) {
            tracing::warn!(
                peer = %addr,
                block = %to_hex(&block.hash()),
                block_epoch = h.epoch,
                current_epoch = current,
                "block rejected as late: its epoch's deadline has passed"
            );
            return Step::Done(Outcome::default());
        }
        if h.epoch > current {
            let reason = format!(
                "it names epoch {} but the current epoch is {current}",
                h.epoch
            );
            return Step::Done(block_rejected(
                addr,
                h.height,
                Rejection::block(block.hash(), reason),
            ));
        }
        // Cheap before expensive: a block whose claimed score cannot beat the leader, or
        // one already taken in this epoch (a replay), is dropped here for the price of one
        // hash of its bytes; only the rest reach the proof and signature checks.
        if let Err(reason) = self.plot_big_enough(block.proof.metadata.leaf_count) {
            return Step::Done(block_rejected(
                addr,
                h.height,
                Rejection::block(block.hash(), reason),
            ));
        }
        if !self.epoch.worth_checking(&block) {
            tracing::debug!(peer = %addr, block = %to_hex(&block.hash()), "block ignored: already seen in this epoch or not better than the leader");
            self.blocks_ignored += 1;
            return Step::Done(Outcome::default());
        }
        self.blocks_checked += 1;
        Step::CheckBlock(Box::new(PendingBlock {
            ctx: self.epoch.context(now_unix_ms / 1000),
            block,
        }))
    }

    /// Offers a block that passed [`check_block`] to the epoch, if that epoch is still the
    /// open one (the deadline may have passed while it was checked) and none of its
    /// transactions is already in the chain.
    pub fn offer_block(
        &mut self,
        id: PeerId,
        addr: SocketAddr,
        checked: CheckedBlock,
        now_unix_ms: u64,
    ) -> Outcome {
        let CheckedBlock {
            block,
            epoch,
            tx_hashes,
        } = checked;
        let hash = block.hash();
        let current = self.epoch.number;
        if epoch != current || !self.epoch.is_open(now_unix_ms) {
            tracing::warn!(
                peer = %addr,
                block = %to_hex(&hash),
                block_epoch = epoch,
                current_epoch = current,
                "block rejected as late: its epoch's deadline passed while it was checked"
            );
            return Outcome::default();
        }
        if let Some((i, tx)) = tx_hashes
            .iter()
            .enumerate()
            .find(|(_, tx)| self.chain.contains_tx(tx))
        {
            let rejection =
                Rejection::block_for_transaction(hash, i, *tx, "is already in the chain");
            return block_rejected(addr, block.header.height, rejection);
        }
        let score = block.header.proof_score;
        let height = block.header.height;
        self.peers.mark_useful(id);
        match self.epoch.offer(block, id) {
            Offer::Leading => tracing::info!(
                peer = %addr,
                block = %to_hex(&hash),
                height,
                epoch = current,
                score = %to_hex(&score),
                "valid block leads the epoch"
            ),
            Offer::NotBetter { best_score } => tracing::info!(
                peer = %addr,
                block = %to_hex(&hash),
                score = %to_hex(&score),
                best = %to_hex(&best_score),
                "valid block does not beat the epoch's best score"
            ),
            Offer::Duplicate => {
                tracing::debug!(peer = %addr, block = %to_hex(&hash), "block already leads the epoch")
            }
        }
        Outcome::default()
    }

    /// Adds a transaction whose signature and basic rules were already checked, and relays
    /// it.
    pub fn add_transaction(&mut self, id: PeerId, addr: SocketAddr, tx: Transaction) -> Outcome {
        let hash = tx.hash();
        if self.chain.contains_tx(&hash) {
            return transaction_rejected(addr, hash, "it is already in the chain");
        }
        match self.mempool.insert(tx, addr.ip()) {
            Ok((_, evicted)) => {
                if let Some(evicted) = evicted {
                    tracing::info!(tx = %to_hex(&evicted), "mempool full: evicted its lowest-fee transaction");
                }
                tracing::info!(peer = %addr, tx = %to_hex(&hash), fee = tx.fee, pending = self.mempool.len(), "transaction added to the mempool");
                self.peers.mark_useful(id);
                self.broadcast(&Message::Transaction(tx), Some(id));
                Outcome::default()
            }
            Err(MempoolError::Duplicate) => Outcome::default(),
            Err(e @ (MempoolError::Full { .. } | MempoolError::Quota { .. })) => {
                transaction_rejected(addr, hash, &e.to_string())
            }
        }
    }

    /// Stops the current epoch at its deadline and takes its winner.
    pub fn close_epoch(&mut self) -> Option<Candidate> {
        self.epoch.close();
        self.epoch.take_winner()
    }

    /// Appends a winner that is already in the chain file (at `at`), and announces it.
    /// `hashes` are its hashes ([`BlockHashes::of`], computed before the lock was taken).
    pub fn accept_block(&mut self, winner: Candidate, hashes: &BlockHashes, at: RecordLocation) {
        let block = winner.block;
        let hash = hashes.block;
        let height = block.header.height;
        let removed = self.mempool.remove_all(&hashes.transactions);
        tracing::info!(
            block = %to_hex(&hash),
            height,
            epoch = block.header.epoch,
            miner = %to_hex(&block.header.miner_id),
            score = %to_hex(&block.header.proof_score),
            transactions = block.transactions.len(),
            mempool_removed = removed,
            "block accepted"
        );
        self.chain.push_stored(block, hashes, Some(at));
        self.blocks_accepted += 1;
        self.broadcast(&Message::BlockAccepted { hash, height }, None);
    }

    /// Starts epoch `number` on the current tip at `now_unix_ms` and announces it.
    pub fn start_epoch(&mut self, number: u64, now_unix_ms: u64, duration: std::time::Duration) {
        let tip = self.chain.tip().header;
        let next = Epoch::begin(
            number,
            &tip,
            self.chain.next_difficulty(),
            now_unix_ms,
            duration,
        );
        let mut old = std::mem::replace(&mut self.epoch, next);
        old.close();
        self.previous = Some(old);
        let e = &self.epoch;
        tracing::debug!(
            epoch = e.number,
            tip_height = e.tip_height,
            difficulty = e.difficulty,
            challenge = %to_hex(&e.challenge),
            deadline_unix_ms = e.deadline_unix_ms,
            "epoch started"
        );
        let announcement = Message::NewEpoch(e.announcement());
        self.broadcast(&announcement, None);
    }

    /// The current tip hash.
    pub fn tip_hash(&self) -> Hash32 {
        self.chain.tip().hash()
    }
}
