//! The mining loop driven through its channels, with real tiny plots.

use std::sync::Arc;
use std::time::Duration;

use spacetime::block::{Block, Transaction};
use spacetime::consensus::epoch_challenge;
use spacetime::keys::MinerKey;
use spacetime::validate::{validate_block, ChainContext};
use spacetime::wire::{Message, NewEpoch};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{Config, ScanStrategy};
use crate::events::{Envelope, Event, EventBus};
use crate::mining::work::tests::signed_tx;
use crate::plots::PlotManager;
use crate::stats::{Counters, MiningStats};

const LIMIT: Duration = Duration::from_secs(10);

struct Rig {
    _home: tempfile::TempDir,
    key: Arc<MinerKey>,
    stats: MiningStats,
    events: tokio::sync::broadcast::Receiver<Arc<Envelope>>,
    to_miner: mpsc::Sender<LinkEvent>,
    from_miner: mpsc::Receiver<Outbound>,
    enabled: watch::Sender<bool>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Rig {
    async fn start(with_plot: bool) -> Rig {
        let key = Arc::new(MinerKey::from_secret_bytes(&[1; 32]));
        Self::start_with(with_plot.then(|| key.clone()), key).await
    }

    /// A miner with `key`, and a plot made for `plot_key` when given.
    async fn start_with(plot_key: Option<Arc<MinerKey>>, key: Arc<MinerKey>) -> Rig {
        let with_plot = plot_key.is_some();
        let home = tempfile::tempdir().unwrap();
        let mut config = Config::defaults_for_home(home.path()).unwrap();
        config.scan_strategy = ScanStrategy::Full;
        config.max_concurrent_proofs = 2;
        std::fs::create_dir_all(&config.plot_directory).unwrap();
        if let Some(plot_key) = &plot_key {
            crate::mining::work::tests::tiny_plot(&config.plot_directory, plot_key, 1);
        }
        let bus = EventBus::new();
        let events = bus.subscribe();
        // The plot manager flags plots made for another key (wrong-key, not farmed); to
        // drive the loop's own proof check with such a plot, the manager is given the
        // plot's key.
        let manager_pk = plot_key.as_ref().unwrap_or(&key).public_key();
        let plots = PlotManager::load(
            &config.plot_metadata_path,
            &config.plot_directory,
            manager_pk,
            bus.clone(),
        )
        .unwrap();
        assert_eq!(plots.farmed().current().len(), usize::from(with_plot));
        let (ctx, stats, enabled) = crate::mining::tests::context(config, key.clone(), bus, &plots);
        let (to_miner, link_rx) = mpsc::channel(64);
        let (out_tx, from_miner) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(ctx, link_rx, out_tx, shutdown.clone()));
        let rig = Rig {
            _home: home,
            key,
            stats,
            events,
            to_miner,
            from_miner,
            enabled,
            shutdown,
            task,
        };
        rig.link(connected(1)).await;
        rig
    }

    /// The link reports `event` to the miner.
    async fn link(&self, event: LinkEvent) {
        self.to_miner.send(event).await.unwrap();
    }

    /// The node of connection 1 sends `message`.
    async fn node_says(&self, message: Message) {
        self.link(says(1, message)).await;
    }

    async fn next_out(&mut self) -> Message {
        self.next_out_on(1).await
    }

    /// The next message the miner sends, which must be for connection `generation`.
    async fn next_out_on(&mut self, generation: u64) -> Message {
        let out = tokio::time::timeout(LIMIT, self.from_miner.recv())
            .await
            .expect("the miner sends in time")
            .unwrap();
        assert_eq!(out.generation, generation);
        out.message
    }

    /// The block mined on epoch `n` (difficulty 1) carries no transaction.
    async fn next_block_is_empty(&mut self, n: u64) {
        self.node_says(Message::NewEpoch(epoch(n, 1, 5_000))).await;
        let next = self.mined_block().await;
        assert!(next.transactions.is_empty());
    }

    /// The next message is a proof submission (of any height).
    async fn proof_submitted(&mut self) {
        assert!(matches!(
            self.next_out().await,
            Message::ProofSubmission { .. }
        ));
    }

    /// A proof submission and then the block built on it, which is returned.
    async fn mined_block(&mut self) -> Block {
        self.proof_submitted().await;
        let Message::NewBlock(block) = self.next_out().await else {
            panic!("expected the block after the proof");
        };
        block
    }

    async fn nothing_sent_for(&mut self, d: Duration) {
        if let Ok(m) = tokio::time::timeout(d, self.from_miner.recv()).await {
            panic!("unexpected message {m:?}");
        }
    }

    async fn counters_reach(&self, check: impl Fn(&Counters) -> bool) -> Counters {
        tokio::time::timeout(LIMIT, async {
            loop {
                let c = self.stats.snapshot().counters;
                if check(&c) {
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("counters stuck at {:?}", self.stats.snapshot().counters))
    }

    fn drain_events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e.event.clone());
        }
        out
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(LIMIT, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn connected(generation: u64) -> LinkEvent {
    LinkEvent::Connected {
        generation,
        user_agent: "node".into(),
    }
}

fn says(generation: u64, message: Message) -> LinkEvent {
    LinkEvent::Message {
        generation,
        message: Box::new(message),
    }
}

fn epoch(n: u64, difficulty: u64, ms_left: u64) -> NewEpoch {
    let tip = [n as u8; 32];
    NewEpoch {
        epoch: n,
        tip_hash: tip,
        tip_height: n - 1,
        difficulty,
        challenge: epoch_challenge(&tip, n),
        deadline_unix_ms: unix_millis() + ms_left,
    }
}

#[tokio::test]
async fn wins_a_block_with_the_mempool_and_counts_its_acceptance() {
    let mut rig = Rig::start(true).await;
    assert!(matches!(
        rig.next_out().await,
        Message::TxPoolRequest {
            include_data: true,
            ..
        }
    ));
    let (cheap, rich) = (signed_tx(1, 1), signed_tx(2, 9));
    rig.node_says(Message::Transaction(cheap)).await;
    rig.node_says(Message::Transaction(rich)).await;
    rig.node_says(Message::Transaction(rich)).await; // duplicate
    let e = epoch(5, 1, 5_000);
    rig.node_says(Message::NewEpoch(e)).await;

    let Message::ProofSubmission {
        block_height,
        miner_id,
        proof,
    } = rig.next_out().await
    else {
        panic!("expected the proof first");
    };
    assert_eq!(block_height, 5);
    assert_eq!(miner_id, rig.key.miner_id());
    let Message::NewBlock(block) = rig.next_out().await else {
        panic!("expected the block");
    };
    assert_eq!(block.proof, proof);
    assert_eq!(block.transactions, vec![rich, cheap]);
    let now = crate::mining::work::unix_secs();
    validate_block(&block, &ChainContext::for_epoch(&e, now, now)).unwrap();

    let c = rig.counters_reach(|c| c.blocks_won == 1).await;
    assert_eq!(
        (
            c.challenges_received,
            c.proofs_generated,
            c.proofs_submitted
        ),
        (1, 1, 1)
    );
    assert!(rig.stats.snapshot().last_proof_latency.is_some());
    assert_eq!(rig.stats.snapshot().epoch.unwrap().epoch, 5);

    // Someone else's block is fetched (to prune the mempool); ours is counted.
    rig.node_says(Message::BlockAccepted {
        hash: [0xAA; 32],
        height: 5,
    })
    .await;
    assert_eq!(rig.next_out().await, Message::GetBlock { hash: [0xAA; 32] });
    rig.node_says(Message::BlockAccepted {
        hash: block.hash(),
        height: 5,
    })
    .await;
    rig.counters_reach(|c| c.blocks_accepted == 1).await;

    let kinds: Vec<&'static str> = rig
        .drain_events()
        .iter()
        .filter_map(|e| match e {
            Event::ChallengeReceived { .. } => Some("challenge"),
            Event::ProofFound { .. } => Some("found"),
            Event::ProofSubmitted { .. } => Some("submitted"),
            Event::BlockWon { .. } => Some("won"),
            Event::BlockAccepted { .. } => Some("accepted"),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        ["challenge", "found", "submitted", "won", "accepted"]
    );

    // The next epoch's block no longer carries the mined transactions.
    rig.next_block_is_empty(6).await;
    rig.stop().await;
}

#[tokio::test]
async fn a_reannounced_epoch_is_not_mined_twice_and_old_ones_are_ignored() {
    let mut rig = Rig::start(true).await;
    rig.next_out().await; // TxPoolRequest
    let e = epoch(8, u64::MAX / 2, 5_000);
    rig.node_says(Message::NewEpoch(e)).await;
    rig.proof_submitted().await;
    rig.node_says(Message::NewEpoch(e)).await;
    rig.node_says(Message::NewEpoch(epoch(7, 1, 5_000))).await;
    // Messages from an earlier connection are ignored too.
    rig.link(says(0, Message::NewEpoch(epoch(9, 1, 5_000))))
        .await;
    rig.nothing_sent_for(Duration::from_millis(300)).await;
    let c = rig.stats.snapshot().counters;
    assert_eq!(
        (c.challenges_received, c.proofs_submitted, c.blocks_won),
        (1, 1, 0)
    );
    rig.stop().await;
}

#[tokio::test]
async fn an_epoch_without_plots_is_missed() {
    let mut rig = Rig::start(false).await;
    rig.next_out().await; // TxPoolRequest
    rig.node_says(Message::NewEpoch(epoch(3, 1, 100))).await;
    let c = rig.counters_reach(|c| c.missed_epochs == 1).await;
    assert_eq!(c.proofs_submitted, 0);
    let missed: Vec<Event> = rig
        .drain_events()
        .into_iter()
        .filter(|e| matches!(e, Event::EpochMissed { .. }))
        .collect();
    assert_eq!(
        missed,
        [Event::EpochMissed {
            epoch: 3,
            reason: "no valid plots".into()
        }]
    );
    rig.stop().await;
}

#[tokio::test]
async fn nothing_is_sent_while_mining_is_disabled() {
    let mut rig = Rig::start(true).await;
    rig.next_out().await; // TxPoolRequest
    rig.enabled.send(false).unwrap();
    tokio::task::yield_now().await;
    rig.node_says(Message::NewEpoch(epoch(4, 1, 100))).await;
    rig.nothing_sent_for(Duration::from_millis(800)).await;
    // The disabled epoch was abandoned, not missed.
    let c = rig.stats.snapshot().counters;
    assert_eq!(
        (c.challenges_received, c.missed_epochs, c.proofs_generated),
        (1, 0, 0)
    );
    // Enabled again during an epoch: it is mined.
    rig.node_says(Message::NewEpoch(epoch(5, 1, 5_000))).await;
    rig.nothing_sent_for(Duration::from_millis(200)).await;
    rig.enabled.send(true).unwrap();
    rig.mined_block().await;
    rig.stop().await;
}

#[tokio::test]
async fn a_lost_link_stops_sending_until_the_epoch_is_announced_again() {
    let mut rig = Rig::start(true).await;
    rig.next_out().await; // TxPoolRequest
    rig.link(LinkEvent::Disconnected {
        generation: 1,
        reason: "gone".into(),
    })
    .await;
    // A stale event of the lost connection changes nothing.
    rig.node_says(Message::NewEpoch(epoch(2, 1, 5_000))).await;
    rig.nothing_sent_for(Duration::from_millis(200)).await;
    rig.link(connected(2)).await;
    assert!(matches!(
        rig.next_out_on(2).await,
        Message::TxPoolRequest { .. }
    ));
    rig.link(says(2, Message::NewEpoch(epoch(2, 1, 5_000))))
        .await;
    assert!(matches!(
        rig.next_out_on(2).await,
        Message::ProofSubmission { .. }
    ));
    rig.stop().await;
}

#[tokio::test]
async fn a_plot_that_gives_bad_proofs_is_tried_once_and_the_epoch_missed() {
    let stranger = Arc::new(MinerKey::from_secret_bytes(&[2; 32]));
    let key = Arc::new(MinerKey::from_secret_bytes(&[1; 32]));
    let mut rig = Rig::start_with(Some(stranger), key).await;
    rig.next_out().await; // TxPoolRequest
    rig.node_says(Message::NewEpoch(epoch(3, 1, 300))).await;
    let c = rig.counters_reach(|c| c.missed_epochs == 1).await;
    assert_eq!((c.proofs_generated, c.proofs_submitted), (0, 0));
    rig.nothing_sent_for(Duration::from_millis(100)).await;
    let reason = rig
        .drain_events()
        .into_iter()
        .find_map(|e| match e {
            Event::EpochMissed { reason, .. } => Some(reason),
            _ => None,
        })
        .unwrap();
    assert!(reason.contains("fails verification"), "{reason}");
    rig.stop().await;
}

/// A valid block of another miner for `e`, carrying `txs`.
fn foreign_block(e: &NewEpoch, txs: &[Transaction]) -> Block {
    let dir = tempfile::tempdir().unwrap();
    let other = Arc::new(MinerKey::from_secret_bytes(&[7; 32]));
    let plot = crate::mining::work::tests::tiny_plot(dir.path(), &other, 9);
    let now = std::time::Instant::now();
    let input = work::WorkInput {
        epoch: *e,
        epoch_start_unix: work::unix_secs(),
        plots: Arc::new(vec![plot]),
        strategy: spacetime::scan::ScanStrategy::Full,
        scan_deadline: now + LIMIT,
        proof_deadline: now + LIMIT,
        cancel: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        key: other.clone(),
        monitor: false,
        plots_at_once: 1,
        scan_rate: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        pool: None,
        progress: Default::default(),
    };
    let WorkOutcome::Found(found) = work::run(input) else {
        panic!("the other miner finds a proof");
    };
    let start = work::unix_secs();
    work::build_block(e, start, found.plot_root, &found.proof, txs, &other).unwrap()
}

#[tokio::test]
async fn a_block_accepted_just_before_the_epoch_leaves_the_next_block() {
    let mut rig = Rig::start(true).await;
    rig.next_out().await; // TxPoolRequest
    let tx = signed_tx(1, 4);
    rig.node_says(Message::Transaction(tx)).await;
    let theirs = foreign_block(&epoch(5, 1, 5_000), &[tx]);
    // The node announces another miner's block and the next epoch back to back; the block
    // itself arrives (answering GetBlock) while the epoch is being scanned.
    rig.node_says(Message::BlockAccepted {
        hash: theirs.hash(),
        height: 5,
    })
    .await;
    rig.node_says(Message::NewEpoch(epoch(6, 1, 5_000))).await;
    rig.node_says(Message::Block(theirs.clone())).await;
    assert_eq!(
        rig.next_out().await,
        Message::GetBlock {
            hash: theirs.hash()
        }
    );
    let ours = rig.mined_block().await;
    assert!(
        ours.transactions.is_empty(),
        "a transaction already in the chain was put in the block"
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_rejected_block_is_resent_without_transactions_and_they_are_dropped() {
    let mut rig = Rig::start(true).await;
    rig.next_out().await; // TxPoolRequest
    let tx = signed_tx(3, 2);
    rig.node_says(Message::Transaction(tx)).await;
    let e = epoch(4, 1, 5_000);
    rig.node_says(Message::NewEpoch(e)).await;
    let Message::ProofSubmission { proof, .. } = rig.next_out().await else {
        panic!("expected the proof");
    };
    let Message::NewBlock(first) = rig.next_out().await else {
        panic!("expected the block");
    };
    assert_eq!(first.transactions, vec![tx]);
    // An unrelated refusal changes nothing.
    rig.node_says(Message::Error("GetBlock: unknown block 00".into()))
        .await;
    rig.node_says(Message::Error(format!(
        "block {} rejected: transaction #0 {} is already in the chain",
        hex::encode(first.hash()),
        hex::encode(tx.hash())
    )))
    .await;
    let Message::NewBlock(second) = rig.next_out().await else {
        panic!("expected the block again");
    };
    assert!(second.transactions.is_empty());
    assert_eq!(second.proof, proof);
    let now = work::unix_secs();
    validate_block(&second, &ChainContext::for_epoch(&e, now, now)).unwrap();
    rig.node_says(Message::BlockAccepted {
        hash: second.hash(),
        height: 4,
    })
    .await;
    let c = rig.counters_reach(|c| c.blocks_accepted == 1).await;
    assert_eq!(c.blocks_won, 1, "one block won, sent twice");
    // The refused transaction is gone from the mempool.
    rig.next_block_is_empty(5).await;
    rig.stop().await;
}

#[tokio::test]
async fn after_a_reconnect_a_lower_epoch_is_mined() {
    let mut rig = Rig::start(true).await;
    rig.next_out().await; // TxPoolRequest
    rig.node_says(Message::NewEpoch(epoch(9, u64::MAX / 2, 5_000)))
        .await;
    rig.proof_submitted().await;
    for event in [
        LinkEvent::Disconnected {
            generation: 1,
            reason: "node restarted".into(),
        },
        connected(2),
    ] {
        rig.link(event).await;
    }
    let say = |n: u64| says(2, Message::NewEpoch(epoch(n, u64::MAX / 2, 5_000)));
    let out = rig.from_miner.recv().await.unwrap();
    assert!(matches!(out.message, Message::TxPoolRequest { .. }));
    // The restarted node counts from 3: that epoch is mined.
    rig.link(say(3)).await;
    let out = tokio::time::timeout(LIMIT, rig.from_miner.recv())
        .await
        .expect("the lower epoch after a reconnect is mined")
        .unwrap();
    assert_eq!(out.generation, 2);
    assert!(matches!(
        out.message,
        Message::ProofSubmission {
            block_height: 3,
            ..
        }
    ));
    // On the same connection an older epoch is still ignored.
    rig.link(say(2)).await;
    rig.nothing_sent_for(Duration::from_millis(300)).await;
    assert_eq!(rig.stats.snapshot().counters.challenges_received, 2);
    rig.stop().await;
}

#[test]
fn the_scan_pool_has_a_thread_per_core_whatever_max_concurrent_proofs() {
    let home = tempfile::tempdir().unwrap();
    let mut config = Config::defaults_for_home(home.path()).unwrap();
    config.max_concurrent_proofs = 1;
    let pool = scan_pool().expect("a scan pool");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(pool.current_num_threads(), cores);
    assert_eq!(config.scan_strategy, ScanStrategy::Deadline, "the default");
}
