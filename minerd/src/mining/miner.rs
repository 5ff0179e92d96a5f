//! The mining loop: one task that owns the mining state and reacts to the node link, the
//! operator's switch, plot changes, finished work and epoch deadlines.
//!
//! Per epoch (decisions D5): record it and emit ChallengeReceived; abandon (cancel) work for
//! an older epoch; if mining is enabled, connected and there are plots, run [`work::run`] on
//! a blocking thread with a deadline that leaves time to prove and send; send
//! ProofSubmission, then, when the proof wins, the block built at that moment from the
//! current mempool (NewBlock), unless it would arrive after the deadline (counted late).
//! Epochs end through [`EpochRecord::settle`] (missed when no proof was computed).
//!
//! The mempool loses the transactions of every accepted block as soon as the block is known
//! (ours at BlockAccepted, others' when the node answers GetBlock). When the node rejects our
//! block with an Error naming it, the transactions the Error names are dropped and the block
//! is rebuilt empty and sent again if the deadline allows. After a reconnect the first
//! NewEpoch is taken whatever its number (the node may have restarted with another chain).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spacetime::block::{Block, BlockProof, Transaction};
use spacetime::consensus::{epoch_challenge, MAX_BLOCK_TRANSACTIONS};
use spacetime::hash::Hash32;
use spacetime::wire::{Message, NewEpoch, Rejected, Rejection};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::epoch::{
    lateness, proof_time, scan_budget, unix_millis, EpochRecord, SEND_ALLOWANCE, SETTLE_GRACE,
};
use super::mempool::{Admission, Mempool};
use super::work::{self, Found, WorkInput, WorkOutcome};
use crate::context::MiningContext;
use crate::events::{Event, LateWhat};
use crate::node::{LinkEvent, Outbound};
use crate::stats::EpochInfo;
use scan_progress::{report_scan_progress, ScanWatch};

/// Own blocks remembered to recognise their BlockAccepted.
const OWN_BLOCKS: usize = 256;

/// Work running on a blocking thread.
struct Running {
    epoch: u64,
    cancel: Arc<AtomicBool>,
    handle: JoinHandle<WorkOutcome>,
}

/// What woke the loop.
enum Step {
    Shutdown,
    Link(Option<LinkEvent>),
    WorkDone(Result<WorkOutcome, tokio::task::JoinError>),
    Enabled(bool),
    PlotsChanged,
    Deadline,
}

/// Our last block sent, kept to rebuild it when the node rejects it.
struct SentBlock {
    epoch: u64,
    hash: Hash32,
    plot_root: Hash32,
    proof: BlockProof,
    transactions: Vec<Transaction>,
}

/// The mining state.
struct Miner {
    ctx: MiningContext,
    outbound: mpsc::Sender<Outbound>,
    strategy: spacetime::scan::ScanStrategy,
    /// One scan thread per core.
    pool: Option<Arc<rayon::ThreadPool>>,
    /// Plots scanned at once (`maxConcurrentProofs`).
    plots_at_once: usize,
    /// The last measured scan rate (leaves/s as `f64` bits; 0 = none yet).
    scan_rate: Arc<AtomicU64>,
    /// `Some(generation)` while connected.
    connection: Option<u64>,
    /// No NewEpoch seen yet on this connection: the next one is taken whatever its number.
    fresh_connection: bool,
    /// Our last block sent, until accepted or rebuilt.
    sent_block: Option<SentBlock>,
    enabled: bool,
    mempool: Mempool,
    current: Option<EpochRecord>,
    /// Hashes (and transactions) of blocks we sent, newest last.
    own_blocks: VecDeque<(Hash32, Block)>,
    /// Epoch number and deadline of the last epoch worked on (to measure the epoch length).
    last_deadline: Option<(u64, u64)>,
}

/// The scan threads: one per core (scanning is CPU-bound). `maxConcurrentProofs` bounds
/// how many plots are scanned (and proved) at once, not the threads. `None` (the shared
/// pool) when the threads cannot be started.
pub fn scan_pool() -> Option<Arc<rayon::ThreadPool>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("scan-{i}"))
        .build()
    {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the scan threads; using the shared pool");
            None
        }
    }
}

/// Runs the loop until `shutdown` or until the link is gone; abandons running work on exit.
pub async fn run(
    ctx: MiningContext,
    mut link_events: mpsc::Receiver<LinkEvent>,
    outbound: mpsc::Sender<Outbound>,
    shutdown: CancellationToken,
) {
    let pool = scan_pool();
    let mut enabled_rx = ctx.mining_enabled.clone();
    let mut plots = ctx.plots.clone();
    let mut miner = Miner {
        strategy: ctx.config.scan_strategy,
        enabled: *enabled_rx.borrow_and_update(),
        plots_at_once: (ctx.config.max_concurrent_proofs as usize).max(1),
        ctx,
        outbound,
        pool,
        scan_rate: Arc::new(AtomicU64::new(0)),
        connection: None,
        fresh_connection: false,
        sent_block: None,
        mempool: Mempool::default(),
        current: None,
        own_blocks: VecDeque::new(),
        last_deadline: None,
    };
    let mut running: Option<Running> = None;
    let mut enabled_open = true;
    let mut plots_open = true;
    loop {
        let settle_at = miner
            .current
            .as_ref()
            .filter(|r| !r.settled)
            .map(|r| deadline_instant(r.info.deadline_unix_ms) + SETTLE_GRACE);
        let step = tokio::select! {
            biased;
            () = shutdown.cancelled() => Step::Shutdown,
            r = wait(&mut running) => Step::WorkDone(r),
            // The operator's switch before node messages: a disabled miner sends nothing.
            r = enabled_rx.changed(), if enabled_open => match r {
                Ok(()) => Step::Enabled(*enabled_rx.borrow_and_update()),
                Err(_) => { enabled_open = false; continue; }
            },
            ev = link_events.recv() => Step::Link(ev),
            open = plots.changed(), if plots_open => {
                plots_open = open;
                Step::PlotsChanged
            }
            () = sleep_until(settle_at), if settle_at.is_some() => Step::Deadline,
        };
        match step {
            Step::Shutdown | Step::Link(None) => break,
            Step::Link(Some(ev)) => miner.on_link(ev, &mut running),
            Step::WorkDone(result) => {
                let epoch = running.take().map(|r| r.epoch);
                miner.on_work_done(epoch, result);
            }
            Step::Enabled(on) => miner.on_enabled(on, &mut running),
            Step::PlotsChanged => miner.maybe_start(&mut running),
            Step::Deadline => miner.on_deadline(&mut running),
        }
    }
    abandon(&mut running);
}

/// Waits for the running work, or forever when there is none.
async fn wait(running: &mut Option<Running>) -> Result<WorkOutcome, tokio::task::JoinError> {
    match running {
        Some(r) => (&mut r.handle).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The local instant of a unix-milliseconds deadline (a deadline absurdly far away, which
/// only a broken node would send, is clamped to a day).
fn deadline_instant(deadline_ms: u64) -> Instant {
    const FAR: Duration = Duration::from_secs(24 * 3600);
    let now_ms = unix_millis();
    let now = Instant::now();
    if deadline_ms >= now_ms {
        now + Duration::from_millis(deadline_ms - now_ms).min(FAR)
    } else {
        now.checked_sub(Duration::from_millis(now_ms - deadline_ms))
            .unwrap_or(now)
    }
}

/// Signals running work to stop (its blocking thread ends at the next work item).
fn abandon(running: &mut Option<Running>) {
    if let Some(r) = running.take() {
        r.cancel.store(true, Ordering::Relaxed);
        // The handle is dropped: the thread finishes on its own and its result is ignored.
    }
}

impl Miner {
    fn send(&self, message: Message) -> bool {
        let Some(generation) = self.connection else {
            return false;
        };
        match self.outbound.try_send(Outbound {
            generation,
            message,
        }) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot queue a message for the node");
                false
            }
        }
    }

    fn on_link(&mut self, ev: LinkEvent, running: &mut Option<Running>) {
        match ev {
            LinkEvent::Connected { generation, .. } => {
                self.connection = Some(generation);
                self.fresh_connection = true;
                // The node's pool is the authority: start over from its answer.
                self.mempool.clear();
                let max = i32::try_from(self.mempool.capacity()).unwrap_or(i32::MAX);
                self.send(Message::TxPoolRequest {
                    max_transactions: max,
                    include_data: true,
                });
            }
            LinkEvent::Disconnected { generation, reason } => {
                if self.connection == Some(generation) {
                    self.connection = None;
                    abandon(running);
                    if let Some(r) = self.current.as_mut() {
                        if !r.proof_submitted {
                            r.miss_reason = Some(format!("node link lost: {reason}"));
                        }
                    }
                }
            }
            LinkEvent::Message {
                generation,
                message,
            } => {
                if self.connection == Some(generation) {
                    self.on_message(*message, running);
                }
            }
        }
    }

    fn on_message(&mut self, message: Message, running: &mut Option<Running>) {
        match message {
            Message::NewEpoch(e) => self.on_new_epoch(e, running),
            Message::BlockAccepted { hash, height } => self.on_block_accepted(hash, height),
            Message::Transaction(tx) => match self.mempool.insert(tx, Instant::now()) {
                Ok(Admission::Added | Admission::Replaced(_)) => {
                    tracing::debug!(tx = %hex::encode(tx.hash()), fee = tx.fee, "transaction added to the mempool");
                }
                Ok(Admission::Duplicate) => {}
                Err(e) => tracing::debug!(error = %e, "transaction refused"),
            },
            Message::Block(block) | Message::NewBlock(block) => {
                let pruned = self.mempool.prune(&block.transactions);
                tracing::debug!(height = block.header.height, pruned, "block received");
            }
            Message::Error(reason) => self.on_node_error(&reason),
            other => {
                tracing::debug!(kind = ?other.message_type(), "ignoring a message from the node")
            }
        }
    }

    fn on_new_epoch(&mut self, e: NewEpoch, running: &mut Option<Running>) {
        if e.challenge != epoch_challenge(&e.tip_hash, e.epoch) || e.difficulty == 0 {
            tracing::warn!(
                epoch = e.epoch, "ignoring an inconsistent NewEpoch (challenge is not H(tip ‖ epoch), or difficulty 0)"
            );
            return;
        }
        // After a reconnect the node's numbering is the authority, even if it went back.
        let fresh = std::mem::take(&mut self.fresh_connection);
        if let Some(cur) = self.current.as_ref() {
            if cur.same_epoch(&e) {
                // Announced again (after a reconnect): resume it if nothing was sent.
                self.maybe_start(running);
                return;
            }
            if e.epoch < cur.info.epoch && !fresh {
                tracing::debug!(
                    epoch = e.epoch,
                    current = cur.info.epoch,
                    "ignoring an older epoch"
                );
                return;
            }
        }
        // A newer epoch: stale work stops, the previous epoch ends.
        abandon(running);
        self.settle_current();
        self.mempool.expire(Instant::now());
        let mut record = EpochRecord::new(e);
        // Mining disabled for it: abandoned unless enabled again in time.
        record.abandoned = !self.enabled;
        self.ctx.stats.record_epoch(EpochInfo {
            epoch: e.epoch,
            tip_height: e.tip_height,
            tip_hash: e.tip_hash,
            challenge: e.challenge,
            difficulty: e.difficulty,
            deadline_unix_ms: i64::try_from(e.deadline_unix_ms).unwrap_or(i64::MAX),
            received_at: std::time::SystemTime::now(),
        });
        self.ctx.events.emit(Event::ChallengeReceived {
            epoch: e.epoch,
            challenge: e.challenge,
            difficulty: e.difficulty,
            tip_height: e.tip_height,
            deadline_unix_ms: i64::try_from(e.deadline_unix_ms).unwrap_or(i64::MAX),
        });
        tracing::debug!(
            epoch = e.epoch, tip_height = e.tip_height, difficulty = e.difficulty,
            challenge = %hex::encode(e.challenge), "challenge received"
        );
        self.current = Some(record);
        self.maybe_start(running);
    }

    fn on_block_accepted(&mut self, hash: Hash32, height: u64) {
        if self.sent_block.as_ref().is_some_and(|b| b.hash == hash) {
            self.sent_block = None;
        }
        if let Some(pos) = self.own_blocks.iter().position(|(h, _)| *h == hash) {
            if let Some((_, block)) = self.own_blocks.remove(pos) {
                self.mempool.prune(&block.transactions);
            }
            self.ctx.stats.update(|s| s.counters.blocks_accepted += 1);
            tracing::info!(height, hash = %hex::encode(hash), "block accepted by the node");
            self.ctx.events.emit(Event::BlockAccepted {
                height,
                block_hash: hash,
            });
        } else if !self.mempool.is_empty() {
            // Someone else's block: fetch it to drop the transactions it carries.
            self.send(Message::GetBlock { hash });
        }
    }

    fn on_enabled(&mut self, on: bool, running: &mut Option<Running>) {
        self.enabled = on;
        if on {
            if let Some(r) = self.current.as_mut() {
                r.abandoned = false;
            }
            self.maybe_start(running);
        } else {
            abandon(running);
            if let Some(r) = self.current.as_mut() {
                r.abandoned = true;
            }
        }
    }

    fn on_deadline(&mut self, running: &mut Option<Running>) {
        if running
            .as_ref()
            .zip(self.current.as_ref())
            .is_some_and(|(w, c)| w.epoch == c.info.epoch)
        {
            abandon(running);
        }
        self.settle_current();
    }

    fn settle_current(&mut self) {
        if let Some(r) = self.current.as_mut() {
            r.settle(&self.ctx.stats, &self.ctx.events);
        }
    }

    /// Starts the work for the current epoch when everything allows it.
    fn maybe_start(&mut self, running: &mut Option<Running>) {
        if running.is_some() || !self.enabled {
            return;
        }
        let connected = self.connection.is_some();
        let Some(record) = self.current.as_mut() else {
            return;
        };
        if record.settled || record.worked || !connected {
            return;
        }
        let plots = self.ctx.plots.current();
        if plots.is_empty() {
            record.miss_reason = Some("no valid plots".into());
            return;
        }
        let now_ms = unix_millis();
        let left = Duration::from_millis(record.info.deadline_unix_ms.saturating_sub(now_ms));
        let timeout = Duration::from_secs(self.ctx.config.proof_generation_timeout_seconds);
        // Keep time for the slowest plot's proof (an uncached plot is read whole).
        let rate = f64::from_bits(self.scan_rate.load(Ordering::Relaxed));
        let reserve = plots
            .iter()
            .map(|p| {
                let reads =
                    spacetime::prove::proof_read_leaves(p.file.leaf_count(), p.cache.as_deref());
                proof_time(reads, rate)
            })
            .max()
            .unwrap_or_default();
        let Some(budget) = scan_budget(left, timeout, reserve) else {
            record.miss_reason = Some("no time left before the deadline".into());
            return;
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let now = Instant::now();
        let input = WorkInput {
            epoch: record.info,
            epoch_start_unix: record.epoch_start_unix(),
            plots,
            strategy: self.strategy,
            scan_deadline: now + budget,
            proof_deadline: now + left.saturating_sub(SEND_ALLOWANCE),
            cancel: cancel.clone(),
            key: self.ctx.key.clone(),
            monitor: self.ctx.config.enable_performance_monitoring,
            plots_at_once: self.plots_at_once,
            scan_rate: self.scan_rate.clone(),
            pool: self.pool.clone(),
            progress: Arc::new(AtomicU64::new(0)),
        };
        record.abandoned = false;
        let epoch = record.info.epoch;
        let stats = self.ctx.stats.clone();
        let done = Arc::new(AtomicBool::new(false));
        let leaves_total = input
            .plots
            .iter()
            .map(|p| self.strategy.positions(p.file.leaf_count()))
            .sum();
        tokio::spawn(report_scan_progress(
            ScanWatch {
                epoch,
                leaves_total,
                leaves_farmed: input.plots.iter().map(|p| p.file.leaf_count()).sum(),
                progress: input.progress.clone(),
                started: now,
                scan_deadline: input.scan_deadline,
                done: done.clone(),
                scan_rate: self.scan_rate.clone(),
                cancel: cancel.clone(),
            },
            stats.clone(),
            self.ctx.events.clone(),
        ));
        let handle = tokio::task::spawn_blocking(move || {
            let out = work::run_proving(input, &stats);
            done.store(true, Ordering::SeqCst);
            out
        });
        *running = Some(Running {
            epoch,
            cancel,
            handle,
        });
    }

    fn on_work_done(
        &mut self,
        epoch: Option<u64>,
        result: Result<WorkOutcome, tokio::task::JoinError>,
    ) {
        let Some(record) = self
            .current
            .as_mut()
            .filter(|r| Some(r.info.epoch) == epoch && !r.settled)
        else {
            return; // work for an epoch that has ended
        };
        record.worked = true;
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, epoch = record.info.epoch, "mining work panicked");
                record.miss_reason = Some("mining work failed".into());
                return;
            }
        };
        match outcome {
            WorkOutcome::NoLeaf { reason } => record.miss_reason = Some(reason),
            WorkOutcome::Failed { reason } => {
                tracing::error!(epoch = record.info.epoch, error = %reason, "no proof this epoch");
                record.miss_reason = Some(reason);
            }
            WorkOutcome::Found(found) => {
                let info = record.info;
                let epoch_len = match self.last_deadline {
                    Some((e, d)) if e < info.epoch && d < info.deadline_unix_ms => {
                        (info.deadline_unix_ms - d) / (info.epoch - e)
                    }
                    _ => info
                        .deadline_unix_ms
                        .saturating_sub(record.received_unix.saturating_mul(1000)),
                };
                self.last_deadline = Some((info.epoch, info.deadline_unix_ms));
                let expected = work::expected_time_to_win(
                    found.leaves_scanned,
                    info.difficulty,
                    Duration::from_millis(epoch_len),
                );
                self.ctx.stats.update(|s| s.expected_time_to_win = expected);
                self.submit(*found)
            }
        }
    }

    /// Sends the proof and, when it wins, the block (D5 steps 2-4).
    fn submit(&mut self, found: Found) {
        let Some(record) = self.current.as_mut() else {
            return;
        };
        let stats = &self.ctx.stats;
        let events = &self.ctx.events;
        let epoch = record.info;
        record.proof_generated = true;
        stats.update(|s| s.counters.proofs_generated += 1);
        events.emit(Event::ProofFound {
            epoch: epoch.epoch,
            score: found.score,
            plot_id: found.plot_id,
            leaf_index: found.leaf_index,
            latency: found.ready_at.saturating_duration_since(record.received),
        });
        if !self.enabled || self.connection.is_none() {
            return;
        }
        if let Some(late_by) = lateness(epoch.deadline_unix_ms, unix_millis()) {
            record.count_late(LateWhat::Proof, late_by, stats, events);
            if found.wins {
                record.count_late(LateWhat::Block, late_by, stats, events);
            }
            return;
        }
        let block_height = epoch.tip_height.saturating_add(1);
        let miner_id = self.ctx.key.miner_id();
        let Some(generation) = self.connection else {
            return;
        };
        let proof_msg = Message::ProofSubmission {
            block_height,
            miner_id,
            proof: found.proof.clone(),
        };
        if self
            .outbound
            .try_send(Outbound {
                generation,
                message: proof_msg,
            })
            .is_err()
        {
            record.miss_reason = Some("the node link's queue is full".into());
            return;
        }
        let latency = record.received.elapsed();
        record.proof_submitted = true;
        stats.update(|s| {
            s.counters.proofs_submitted += 1;
            s.last_proof_latency = Some(latency);
        });
        stats.observations().record_submission(latency);
        events.emit(Event::ProofSubmitted {
            epoch: epoch.epoch,
            score: found.score,
            block_height,
            latency,
        });
        tracing::debug!(
            epoch = epoch.epoch, score = %hex::encode(found.score), ?latency,
            leaves = found.leaves_scanned, plot = %found.plot_path.display(), "proof submitted"
        );
        if !found.wins {
            return;
        }
        // The transactions are chosen now, from the mempool as it is after the scan: the
        // blocks accepted meanwhile have been pruned from it.
        let transactions = self.mempool.select(MAX_BLOCK_TRANSACTIONS);
        let block = match work::build_block(
            &epoch,
            record.epoch_start_unix(),
            found.plot_root,
            &found.proof,
            &transactions,
            &self.ctx.key,
        ) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(epoch = epoch.epoch, error = %e, "own winning block is invalid; not sent");
                return;
            }
        };
        if let Some(late_by) = lateness(epoch.deadline_unix_ms, unix_millis()) {
            record.count_late(LateWhat::Block, late_by, stats, events);
            return;
        }
        let hash = block.hash();
        let height = block.header.height;
        let count = u32::try_from(block.transactions.len()).unwrap_or(u32::MAX);
        self.sent_block = Some(SentBlock {
            epoch: epoch.epoch,
            hash,
            plot_root: found.plot_root,
            proof: found.proof,
            transactions: block.transactions.clone(),
        });
        if !self.send_block(block) {
            self.sent_block = None;
            return;
        }
        let stats = &self.ctx.stats;
        stats.update(|s| s.counters.blocks_won += 1);
        self.ctx.events.emit(Event::BlockWon {
            epoch: epoch.epoch,
            height,
            block_hash: hash,
            transactions: count,
        });
        tracing::info!(
            epoch = epoch.epoch,
            transactions = count,
            "block won: height {height} hash {}",
            hex::encode(hash)
        );
    }

    /// Queues NewBlock and remembers the block to recognise its BlockAccepted.
    fn send_block(&mut self, block: Block) -> bool {
        let hash = block.hash();
        let epoch = block.header.epoch;
        if !self.send(Message::NewBlock(block.clone())) {
            tracing::warn!(epoch, "the node link's queue is full; block not sent");
            return false;
        }
        if self.own_blocks.len() >= OWN_BLOCKS {
            self.own_blocks.pop_front();
        }
        self.own_blocks.push_back((hash, block));
        true
    }

    /// An Error from the node, read as a refusal (`spacetime::wire::rejection`) when it is
    /// one. A refused transaction, or the transaction a block was refused for, leaves the
    /// mempool (already in the chain, invalid). A refusal of our last block: it is rebuilt
    /// without transactions and sent again while its epoch is open.
    fn on_node_error(&mut self, reason: &str) {
        let (refused_tx, refused_block) = match Rejection::parse(reason).map(|r| r.rejected) {
            Some(Rejected::Transaction { hash }) => (Some(hash), None),
            Some(Rejected::Block { hash, transaction }) => (transaction, Some(hash)),
            None => (None, None),
        };
        let pruned = refused_tx.is_some_and(|h| self.mempool.remove(&h));
        let ours =
            refused_block.is_some_and(|h| self.sent_block.as_ref().is_some_and(|b| b.hash == h));
        if !ours {
            tracing::debug!(reason, pruned, "error from the node");
            return;
        }
        let Some(sent) = self.sent_block.take() else {
            return;
        };
        tracing::warn!(
            epoch = sent.epoch, block = %hex::encode(sent.hash), reason, pruned,
            "the node rejected our block"
        );
        let Some(record) = self
            .current
            .as_ref()
            .filter(|r| r.info.epoch == sent.epoch && !r.settled)
        else {
            return;
        };
        if sent.transactions.is_empty() {
            return; // nothing to leave out: the rejection is final
        }
        if lateness(record.info.deadline_unix_ms, unix_millis()).is_some() {
            tracing::warn!(
                epoch = sent.epoch,
                "no time left to resend the block without its transactions"
            );
            return;
        }
        let block = match work::build_block(
            &record.info,
            record.epoch_start_unix(),
            sent.plot_root,
            &sent.proof,
            &[],
            &self.ctx.key,
        ) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(epoch = sent.epoch, error = %e, "cannot rebuild our block empty");
                return;
            }
        };
        let hash = block.hash();
        self.sent_block = Some(SentBlock {
            epoch: sent.epoch,
            hash,
            plot_root: sent.plot_root,
            proof: sent.proof,
            transactions: Vec::new(),
        });
        if self.send_block(block) {
            tracing::info!(epoch = sent.epoch, block = %hex::encode(hash), "resent our block without transactions");
        } else {
            self.sent_block = None;
        }
    }
}

mod scan_progress;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod deadline_tests {
    use super::*;

    #[test]
    fn deadlines_map_to_instants_without_overflow() {
        let now = Instant::now();
        let soon = deadline_instant(unix_millis() + 1_000);
        assert!(soon > now && soon <= now + Duration::from_millis(1_100));
        let past = deadline_instant(unix_millis().saturating_sub(1_000));
        assert!(past <= now);
        assert!(deadline_instant(u64::MAX) <= Instant::now() + Duration::from_secs(24 * 3600));
        assert!(deadline_instant(0) <= now);
    }
}
