//! The devnet node: the node side of the Spacetime protocol (decisions D3–D9), for
//! development and tests, as `minerd devnet-node` and embedded by `minerd --devnet`.
//!
//! It is a real node, not a mock: it rejects what a real node would reject and says why in
//! its log (and, to the peer, in an Error frame).
//!
//! - **Chain** ([`chain`]): the Development genesis (network `spacetime-devnet-local`,
//!   configurable difficulty and epoch length), signed by a key kept in the data dir; every
//!   accepted block is appended to `chain.dat` and fsynced before it is announced; a restart
//!   replays and re-validates the file and resumes at the same tip.
//! - **Epochs** ([`epoch`]): timed epochs with challenge `H(tip ‖ i64 epoch)`, NewEpoch on
//!   connect and at every epoch start, proofs judged against the epoch they arrive in, the
//!   lowest-score valid block accepted at the deadline and announced with BlockAccepted,
//!   difficulty adjusted by the reference rule every `adjustment_interval` blocks.
//! - **Transactions** ([`mempool`]): valid transactions are kept, relayed to the other
//!   peers and listed in answer to TxPoolRequest; accepted blocks remove theirs.
//! - **Sessions** ([`peer`]): version-2 handshake with network-id check, Ping/Pong and idle
//!   timeouts, limits on peers, frame size, message rate and outbound queue.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use spacetime_devnet::{start, DevnetNodeConfig};
//! let mut cfg = DevnetNodeConfig::new("/tmp/devnet");
//! cfg.listen = "127.0.0.1:0".parse()?;
//! let token = tokio_util::sync::CancellationToken::new();
//! let node = start(cfg, token.clone()).await?;
//! println!("node on {}", node.local_addr());
//! token.cancel();
//! node.wait().await
//! # }
//! ```

pub mod chain;
mod cli;
pub mod config;
pub mod epoch;
pub mod mempool;
mod peer;
mod state;
#[cfg(test)]
mod test_support;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use spacetime::hash::{to_hex, Hash32};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

pub use cli::{run_cli, DevnetNodeArgs};
pub use config::{ConfigError, DevnetNodeConfig, DEFAULT_LISTEN, DEFAULT_MAX_FRAME_LENGTH};
pub use peer::{LINGER, MAX_BAD_MESSAGES};

use chain::{BlockHashes, ChainStore, GenesisParams};
use epoch::{next_epoch_number, Epoch, EpochCounter, PeerId};
use mempool::Mempool;
use peer::{ConnectionSlot, NoSlot};
use spacetime_io::DataDirLock;
use state::{NodeState, Shared};

/// Product name in the node's user agent.
pub const PRODUCT: &str = "spacetime-devnet-node";
/// Lock file that keeps two nodes off one data dir.
pub const LOCK_FILE: &str = "devnet.lock";
/// How long shutdown waits for connections to end.
pub const GRACE: Duration = Duration::from_secs(5);
/// Connections being refused at once (beyond it, extra connections are closed at once).
const MAX_REFUSALS: usize = 16;

/// A snapshot of the node, for embedding callers and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevnetStatus {
    /// The network id.
    pub network_id: String,
    /// Height of the tip.
    pub tip_height: u64,
    /// Hash of the tip.
    pub tip_hash: Hash32,
    /// The current epoch.
    pub epoch: u64,
    /// Its difficulty.
    pub difficulty: u64,
    /// Its deadline, unix milliseconds.
    pub deadline_unix_ms: u64,
    /// Handshaken peers.
    pub peers: usize,
    /// Open connections, handshaking and closing ones included (bounded by `max_peers`).
    pub connections: usize,
    /// Pending transactions.
    pub mempool: usize,
    /// Blocks accepted since this node started.
    pub blocks_accepted: u64,
    /// Blocks that went through the full check (signatures included) since start.
    pub blocks_checked: u64,
    /// Blocks dropped before any check: replays of a block already taken in the epoch,
    /// or blocks whose score cannot beat the epoch's leader.
    pub blocks_ignored: u64,
}

/// A running node: its address, its status, and its end.
#[derive(Debug)]
pub struct DevnetNodeHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    token: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl DevnetNodeHandle {
    /// The bound address (the real port when the config said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node's current state.
    pub fn status(&self) -> DevnetStatus {
        let st = self.shared.lock();
        DevnetStatus {
            network_id: self.shared.cfg.network_id.clone(),
            tip_height: st.chain.height(),
            tip_hash: st.tip_hash(),
            epoch: st.epoch.number,
            difficulty: st.epoch.difficulty,
            deadline_unix_ms: st.epoch.deadline_unix_ms,
            peers: st.peer_count(),
            connections: self.shared.connections.load(Ordering::SeqCst),
            mempool: st.mempool.len(),
            blocks_accepted: st.blocks_accepted,
            blocks_checked: st.blocks_checked,
            blocks_ignored: st.blocks_ignored,
        }
    }

    /// The block at `height`, if the chain has one (an older block is read from the chain
    /// file, outside the node's lock).
    pub fn block_at(&self, height: u64) -> Option<spacetime::block::Block> {
        let (file, at, hash) = match self.shared.lock().chain.find(height)? {
            chain::StoredBlock::Memory(block) => return Some(block.clone()),
            chain::StoredBlock::File { file, at, hash } => (file, at, hash),
        };
        chain::read_stored_block(&file, at, &hash).ok()
    }

    /// Asks the node to stop (the token given to [`start`] does the same).
    pub fn shutdown(&self) {
        self.token.cancel();
    }

    /// Waits until the node has stopped (after a shutdown request).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("devnet node task failed")?
    }
}

pub(crate) use spacetime::clock::now_unix_ms;

/// Opens the chain in the data dir, binds the listener, logs
/// `devnet node listening on <addr>`, and runs the node in the background until `shutdown`
/// is cancelled (or [`DevnetNodeHandle::shutdown`] is called).
pub async fn start(
    cfg: DevnetNodeConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<DevnetNodeHandle> {
    cfg.validate()?;
    let params = GenesisParams {
        network_id: cfg.network_id.clone(),
        initial_difficulty: cfg.initial_difficulty,
        epoch_duration_secs: cfg.epoch_duration.as_secs().clamp(1, 3600),
        adjustment: cfg.adjustment(),
    };
    let data_dir = cfg.data_dir.clone();
    let counter = EpochCounter::new(&cfg.data_dir);
    let loader = counter.clone();
    // Locking, replaying the chain and reading the counter all touch the disk.
    let (lock, (chain, store, report), (last_epoch, problem)) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let lock = DataDirLock::acquire(&data_dir.join(LOCK_FILE))
                .context("locking the devnet data dir")?;
            remove_stale_temporaries(&data_dir);
            let opened = chain::open(&data_dir, &params, now_unix_ms() / 1000)
                .with_context(|| format!("opening the chain in {}", data_dir.display()))?;
            Ok((lock, opened, loader.load()))
        })
        .await
        .context("opening the chain")??;
    let mut chain = chain;
    chain.keep_bodies(cfg.max_blocks_in_memory);
    log_open_report(&cfg, &chain, &store, &report);
    if let Some(problem) = problem {
        tracing::warn!(problem = %problem, "epoch counter unreadable; the chain tip sets the next epoch");
    }
    let number = next_epoch_number(last_epoch, &chain.tip().header);
    // Stored before the epoch is announced, so a crash cannot make it run twice.
    store_epoch(&counter, number).await.with_context(|| {
        format!(
            "storing the epoch counter {}; the node would risk reusing epoch numbers",
            counter.path().display()
        )
    })?;
    let epoch = Epoch::begin(
        number,
        &chain.tip().header,
        chain.next_difficulty(),
        now_unix_ms(),
        cfg.epoch_duration,
    );

    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding the devnet node to {}", cfg.listen))?;
    let local_addr = listener.local_addr().context("reading the bound address")?;
    let node_id = format!("devnet-{}", &to_hex(&chain.genesis().hash())[..16]);
    let tip_height = chain.height();
    let max_frame = cfg.max_frame_length;
    let state = NodeState::new(
        chain,
        epoch,
        Mempool::new(cfg.max_mempool, cfg.max_mempool_per_ip),
        max_frame,
    )
    .with_min_plot_leaves(cfg.min_plot_leaves);
    let shared = Arc::new(Shared::new(cfg, node_id, state));
    tracing::info!(
        network = %shared.cfg.network_id,
        tip_height,
        epoch = number,
        epoch_ms = shared.cfg.epoch_duration.as_millis() as u64,
        "devnet node listening on {local_addr}"
    );
    let token = shutdown.child_token();
    let task = tokio::spawn(run_node(
        Arc::clone(&shared),
        listener,
        store,
        counter,
        lock,
        token.clone(),
    ));
    Ok(DevnetNodeHandle {
        local_addr,
        shared,
        token,
        task,
    })
}

/// Deletes what interrupted writes of the files in `data_dir` left (the temporaries of the
/// atomic writer beside the chain file, its verified checkpoint, the genesis key and the
/// epoch counter, and the `epoch.new` of earlier versions). Only while the data dir is locked.
fn remove_stale_temporaries(data_dir: &std::path::Path) {
    let mut removed: Vec<_> = [
        chain::CHAIN_FILE,
        chain::checkpoint::CHECKPOINT_FILE,
        chain::GENESIS_KEY_FILE,
        epoch::EPOCH_FILE,
    ]
    .into_iter()
    .flat_map(|name| spacetime::atomic_file::remove_stale_temporaries(&data_dir.join(name)))
    .collect();
    let legacy = data_dir.join("epoch.new");
    if std::fs::symlink_metadata(&legacy).is_ok_and(|m| m.is_file())
        && std::fs::remove_file(&legacy).is_ok()
    {
        removed.push(legacy);
    }
    for path in removed {
        tracing::info!(path = %path.display(), "removed the temporary file of an interrupted write");
    }
}

/// [`start`], then wait until the node stops.
pub async fn run(cfg: DevnetNodeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(cfg, shutdown).await?.wait().await
}

fn log_open_report(
    cfg: &DevnetNodeConfig,
    chain: &chain::Chain,
    store: &ChainStore,
    report: &chain::OpenReport,
) {
    let tip = chain.tip();
    if report.created {
        tracing::info!(path = %store.path().display(), genesis = %to_hex(&tip.hash()), difficulty = tip.header.difficulty, "created a new devnet chain");
    } else {
        tracing::info!(path = %store.path().display(), blocks = report.replayed, verified = report.verified, trusted_on_checkpoint = report.trusted, tip_height = chain.height(), tip = %to_hex(&tip.hash()), "chain replayed (blocks up to the verified checkpoint with the cheap checks, the rest re-validated)");
    }
    if let Some(reason) = &report.checkpoint_ignored {
        tracing::warn!(file = chain::checkpoint::CHECKPOINT_FILE, reason = %reason, "the verified checkpoint does not match the chain file and was ignored; the whole chain was re-validated");
    }
    if let Some(e) = &report.checkpoint_error {
        tracing::warn!(file = chain::checkpoint::CHECKPOINT_FILE, error = %e, "cannot write the verified checkpoint; the next start re-validates the whole chain");
    }
    if let Some(t) = &report.truncated {
        tracing::warn!(
            path = %store.path().display(),
            offset = t.offset,
            dropped_bytes = t.dropped,
            reason = %t.reason,
            "chain file tail was not trusted and has been cut off"
        );
    }
    if let Some(ahead) = report.tip_ahead_of_clock_secs {
        tracing::warn!(
            tip_ahead_secs = ahead,
            tip_timestamp = tip.header.timestamp,
            "the chain tip is ahead of this clock (has the clock stepped back?); the chain is kept, but miners' new blocks will carry earlier timestamps than the tip"
        );
    }
    if report.adjustment_differs {
        tracing::warn!(stored = ?chain.adjustment(), "the chain keeps the difficulty rule it was created with; the configured one applies only to a new chain");
    }
    let genesis_difficulty = chain.genesis().header.difficulty;
    if !report.created && genesis_difficulty != cfg.initial_difficulty {
        tracing::warn!(
            genesis_difficulty,
            configured = cfg.initial_difficulty,
            "the initial difficulty applies only to a new chain; this chain keeps its own"
        );
    }
}

async fn run_node(
    shared: Arc<Shared>,
    listener: TcpListener,
    store: ChainStore,
    counter: EpochCounter,
    lock: DataDirLock,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let epochs = tokio::spawn(run_epochs(
        Arc::clone(&shared),
        store,
        counter,
        shutdown.clone(),
    ));
    let mut peers = JoinSet::new();
    let mut refusals = JoinSet::new();
    let mut next_id: PeerId = 0;
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        while peers.try_join_next().is_some() {}
        while refusals.try_join_next().is_some() {}
        let (stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        next_id += 1;
        let slot = match ConnectionSlot::take(&shared, addr.ip()) {
            Ok(slot) => slot,
            Err(no) => {
                if refusals.len() >= MAX_REFUSALS {
                    continue;
                }
                // Full: a connection stuck in its handshake, or the peer idle the longest,
                // makes room (if one is idle long enough).
                let evicted = matches!(no, NoSlot::Full(_))
                    .then(|| shared.lock().evict_idle_peer(shared.cfg.idle_peer_after))
                    .flatten();
                if let Some((idle, for_secs)) = evicted {
                    tracing::info!(peer = %idle, idle_secs = for_secs.as_secs(), new_peer = %addr, "node full: dropped an idle connection to make room");
                    refusals.spawn(peer::admit_after_eviction(
                        Arc::clone(&shared),
                        stream,
                        addr,
                        next_id,
                        shutdown.clone(),
                    ));
                } else {
                    refusals.spawn(peer::refuse(stream, addr, no.reason()));
                }
                continue;
            }
        };
        tracing::debug!(peer = %addr, id = next_id, "connection accepted");
        peers.spawn(peer::serve(
            Arc::clone(&shared),
            stream,
            addr,
            next_id,
            shutdown.clone(),
            slot,
        ));
    }
    drop(listener);
    tracing::info!("devnet node shutting down");
    if tokio::time::timeout(GRACE, async { while peers.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!("connections did not end within the grace period");
        peers.abort_all();
    }
    refusals.abort_all();
    if let Err(e) = epochs.await {
        tracing::error!(error = %e, "epoch task failed");
    }
    drop(lock);
    tracing::info!("devnet node stopped");
    Ok(())
}

/// Runs the epoch clock: at each deadline, append and announce the winner (if any), then
/// start the next epoch.
async fn run_epochs(
    shared: Arc<Shared>,
    mut store: ChainStore,
    counter: EpochCounter,
    shutdown: CancellationToken,
) {
    let duration = shared.cfg.epoch_duration;
    loop {
        let deadline = shared.lock().epoch.deadline_unix_ms;
        let now = now_unix_ms();
        if now < deadline {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(deadline - now)) => {}
            }
            // The timer and the wall clock can disagree by a little: never close early.
            continue;
        }
        let winner = {
            let mut st = shared.lock();
            let winner = st.close_epoch();
            let e = &st.epoch;
            if winner.is_none() && e.proofs > 0 {
                tracing::info!(
                    epoch = e.number,
                    proofs = e.proofs,
                    blocks = e.blocks,
                    "epoch ended with proofs but no valid block"
                );
            } else {
                tracing::debug!(
                    epoch = e.number,
                    proofs = e.proofs,
                    blocks = e.blocks,
                    "epoch deadline"
                );
            }
            winner
        };
        if let Some(winner) = winner {
            let block = winner.block.clone();
            // The write and the hashing both stay off the runtime and out of the lock.
            let appended = tokio::task::spawn_blocking(move || {
                let result = store.append(&block).map(|at| (BlockHashes::of(&block), at));
                (store, result)
            })
            .await;
            let result;
            (store, result) = match appended {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::error!(error = %e, "chain writer failed; stopping the node");
                    shutdown.cancel();
                    return;
                }
            };
            match result {
                Ok((hashes, at)) => shared.lock().accept_block(winner, &hashes, at),
                Err(e) => tracing::error!(
                    error = %anyhow::Error::from(e),
                    block = %to_hex(&winner.block.hash()),
                    "cannot store the winning block; it is not accepted"
                ),
            }
        }
        let number = {
            let st = shared.lock();
            next_epoch_number(st.epoch.number, &st.chain.tip().header)
        };
        // Stored durably before the epoch is announced, so a crash cannot make a restarted
        // node run it again (the old epoch stays closed meanwhile; only this task changes
        // the epoch and the tip, so `number` is still the next one afterwards).
        if let Err(e) = store_epoch(&counter, number).await {
            tracing::error!(
                error = %format!("{e:#}"),
                path = %counter.path().display(),
                "cannot store the epoch counter; a crash before the next successful store may make the restarted node reuse epoch numbers"
            );
        }
        shared.lock().start_epoch(number, now_unix_ms(), duration);
    }
}

/// [`EpochCounter::store`] on the blocking pool (it fsyncs).
async fn store_epoch(counter: &EpochCounter, number: u64) -> anyhow::Result<()> {
    let counter = counter.clone();
    tokio::task::spawn_blocking(move || counter.store(number))
        .await
        .context("epoch counter writer failed")?
        .context("writing the epoch counter")
}
