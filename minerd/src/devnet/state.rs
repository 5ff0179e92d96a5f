//! The node's shared state and what it does with each message: one lock around the chain,
//! the current epoch, the mempool and the registry of connected peers. Nothing here awaits
//! or touches the disk, so the lock is held only for in-memory work; the epoch task appends
//! blocks to the chain file outside it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use spacetime::block::{Block, Transaction, BLOCK_HEADER_LEN};
use spacetime::hash::{to_hex, Hash32};
use spacetime::validate::{validate_block, validate_transaction};
use spacetime::wire::{Message, FRAME_HEADER_LEN, MAX_HEADERS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::chain::Chain;
use super::config::DevnetNodeConfig;
use super::epoch::{Candidate, Epoch, Offer, PeerId};
use super::mempool::{Mempool, MempoolError};

/// An encoded frame, shared between the queues of every peer it is broadcast to.
pub(crate) type Frame = Arc<Vec<u8>>;

/// How the node reaches a connected (handshaken) peer.
#[derive(Debug)]
pub(crate) struct PeerLink {
    /// The peer's bounded outbound queue.
    pub tx: mpsc::Sender<Frame>,
    /// Cancelled to drop the peer (a full queue means it is too slow).
    pub cancel: CancellationToken,
    /// Remote address, for logs.
    pub addr: SocketAddr,
}

/// Everything the tasks of one node share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The settings.
    pub cfg: DevnetNodeConfig,
    /// This node's id in its Handshake.
    pub node_id: String,
    /// Open connections, handshaking ones included (bounded by `max_peers`).
    pub connections: AtomicUsize,
    state: Mutex<NodeState>,
}

impl Shared {
    pub fn new(cfg: DevnetNodeConfig, node_id: String, state: NodeState) -> Self {
        Self {
            cfg,
            node_id,
            connections: AtomicUsize::new(0),
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
    peers: HashMap<PeerId, PeerLink>,
    pub blocks_accepted: u64,
    max_frame_length: u32,
}

impl NodeState {
    pub fn new(chain: Chain, epoch: Epoch, mempool: Mempool, max_frame_length: u32) -> Self {
        Self {
            chain,
            epoch,
            previous: None,
            mempool,
            peers: HashMap::new(),
            blocks_accepted: 0,
            max_frame_length,
        }
    }

    /// Connected (handshaken) peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Adds a peer that completed the handshake and queues the current epoch for it, under
    /// the lock, so it sees every later epoch in order.
    pub fn register(&mut self, id: PeerId, link: PeerLink) {
        let frame = Arc::new(Message::NewEpoch(self.epoch.announcement()).encode());
        if link.tx.try_send(frame).is_err() {
            link.cancel.cancel();
            return;
        }
        self.peers.insert(id, link);
    }

    /// Removes a peer (its connection ended).
    pub fn unregister(&mut self, id: PeerId) {
        self.peers.remove(&id);
    }

    /// Queues `message` for every peer but `except`. A peer whose queue is full is too slow:
    /// it is dropped, never waited for.
    pub fn broadcast(&mut self, message: &Message, except: Option<PeerId>) {
        let frame = match message.encode_checked(self.max_frame_length) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                tracing::error!(error = %e, kind = ?message.message_type(), "message too large to broadcast");
                return;
            }
        };
        let mut gone = Vec::new();
        for (&id, link) in &self.peers {
            if Some(id) == except {
                continue;
            }
            match link.tx.try_send(Arc::clone(&frame)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(peer = %link.addr, "outbound queue full; dropping slow peer");
                    link.cancel.cancel();
                    gone.push(id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(id),
            }
        }
        for id in gone {
            self.peers.remove(&id);
        }
    }

    /// Handles one message from a handshaken peer at `now_unix_ms`.
    pub fn handle(
        &mut self,
        id: PeerId,
        addr: SocketAddr,
        message: Message,
        now_unix_ms: u64,
    ) -> Outcome {
        match message {
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
            Message::GetBlock { hash } => match self.chain.block_by_hash(&hash) {
                Some(block) => Outcome::reply(Message::Block(block.clone())),
                None => Outcome::reply(Message::Error(format!(
                    "GetBlock: unknown block {}",
                    to_hex(&hash)
                ))),
            },
            Message::Block(block) | Message::NewBlock(block) => {
                self.on_block(id, addr, block, now_unix_ms)
            }
            Message::Transaction(tx) => self.on_transaction(id, addr, tx),
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
            } => self.on_proof(addr, block_height, &miner_id, &proof, now_unix_ms),
            Message::Error(reason) => Outcome {
                replies: Vec::new(),
                close: Some(Close {
                    reason: format!("peer sent Error: {reason}"),
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
        }
    }

    fn on_proof(
        &mut self,
        addr: SocketAddr,
        block_height: u64,
        miner_id: &[u8; 33],
        proof: &spacetime::block::BlockProof,
        now_unix_ms: u64,
    ) -> Outcome {
        let epoch = self.epoch.number;
        if self.epoch.is_open(now_unix_ms) {
            match self.epoch.judge_proof(block_height, miner_id, proof) {
                Ok(score) => {
                    self.epoch.proofs += 1;
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

    fn on_block(
        &mut self,
        id: PeerId,
        addr: SocketAddr,
        block: Block,
        now_unix_ms: u64,
    ) -> Outcome {
        let hash = block.hash();
        let h = &block.header;
        let current = self.epoch.number;
        if h.epoch < current || (h.epoch == current && !self.epoch.is_open(now_unix_ms)) {
            tracing::warn!(
                peer = %addr,
                block = %to_hex(&hash),
                block_epoch = h.epoch,
                current_epoch = current,
                "block rejected as late: its epoch's deadline has passed"
            );
            return Outcome::default();
        }
        let reject = |reason: String| {
            tracing::warn!(peer = %addr, block = %to_hex(&hash), height = block.header.height, reason = %reason, "block rejected");
            Outcome::reply(Message::Error(format!(
                "block {} rejected: {reason}",
                to_hex(&hash)
            )))
        };
        if h.epoch > current {
            return reject(format!(
                "it names epoch {} but the current epoch is {current}",
                h.epoch
            ));
        }
        if let Err(e) = validate_block(&block, &self.epoch.context(now_unix_ms / 1000)) {
            return reject(e.to_string());
        }
        if let Some(reason) = self.transaction_conflict(&block) {
            return reject(reason);
        }
        let score = block.header.proof_score;
        let height = block.header.height;
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

    /// A transaction listed twice in `block`, or already in the chain.
    fn transaction_conflict(&self, block: &Block) -> Option<String> {
        let mut seen = std::collections::HashSet::new();
        for (i, tx) in block.transactions.iter().enumerate() {
            let hash = tx.hash();
            if !seen.insert(hash) {
                return Some(format!(
                    "transaction #{i} {} is listed twice",
                    to_hex(&hash)
                ));
            }
            if self.chain.contains_tx(&hash) {
                return Some(format!(
                    "transaction #{i} {} is already in the chain",
                    to_hex(&hash)
                ));
            }
        }
        None
    }

    fn on_transaction(&mut self, id: PeerId, addr: SocketAddr, tx: Transaction) -> Outcome {
        let hash = tx.hash();
        let reject = |reason: String| {
            tracing::warn!(peer = %addr, tx = %to_hex(&hash), reason = %reason, "transaction rejected");
            Outcome::reply(Message::Error(format!(
                "transaction {} rejected: {reason}",
                to_hex(&hash)
            )))
        };
        if let Err(e) = validate_transaction(&tx) {
            return reject(e.to_string());
        }
        if self.chain.contains_tx(&hash) {
            return reject("it is already in the chain".into());
        }
        match self.mempool.insert(tx) {
            Ok(_) => {
                tracing::info!(peer = %addr, tx = %to_hex(&hash), fee = tx.fee, pending = self.mempool.len(), "transaction added to the mempool");
                self.broadcast(&Message::Transaction(tx), Some(id));
                Outcome::default()
            }
            Err(MempoolError::Duplicate) => Outcome::default(),
            Err(e @ MempoolError::Full { .. }) => reject(e.to_string()),
        }
    }

    /// Stops the current epoch at its deadline and takes its winner.
    pub fn close_epoch(&mut self) -> Option<Candidate> {
        self.epoch.close();
        self.epoch.take_winner()
    }

    /// Appends a winner that is already in the chain file, and announces it.
    pub fn accept_block(&mut self, winner: Candidate) {
        let block = winner.block;
        let hash = block.hash();
        let height = block.header.height;
        let removed = self.mempool.remove_included(&block);
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
        self.chain.push(block);
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
