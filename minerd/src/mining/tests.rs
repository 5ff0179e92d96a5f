//! The node link and the mining loop against a real in-process devnet node.

use std::sync::Arc;
use std::time::Duration;

use spacetime::keys::MinerKey;
use spacetime::validate::{validate_block, ChainContext};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::Config;
use crate::events::EventBus;
use crate::node::{Backoff, LinkTimings};
use crate::plots::PlotManager;
use crate::stats::{LinkState, MiningStats};
use spacetime_devnet::{self as devnet, DevnetNodeConfig};

const LIMIT: Duration = Duration::from_secs(30);

async fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    tokio::time::timeout(LIMIT, async {
        loop {
            if let Some(v) = f() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The context the mining loop runs with, built as the daemon builds it: fresh stats,
/// mining enabled, the farmed set of `plots`. Returns it with its stats and the sender of
/// its `mining_enabled` switch (mining stays enabled while the sender lives).
pub(super) fn context(
    config: Config,
    key: Arc<MinerKey>,
    bus: EventBus,
    plots: &PlotManager,
) -> (MiningContext, MiningStats, watch::Sender<bool>) {
    let stats = MiningStats::new(String::new());
    let (enabled, enabled_rx) = watch::channel(true);
    let jobs = crate::plots::JobManager::new(
        plots.clone(),
        bus.clone(),
        key.public_key(),
        1,
        1,
        stats.proving_gate(),
    );
    let ctx = MiningContext {
        config: Arc::new(config),
        key,
        stats: stats.clone(),
        events: bus,
        mining_enabled: enabled_rx,
        plots: plots.farmed(),
        jobs,
    };
    (ctx, stats, enabled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mines_blocks_on_a_devnet_node_and_follows_it_across_a_restart() {
    let home = tempfile::tempdir().unwrap();
    let mut config = Config::defaults_for_home(home.path()).unwrap();
    config.scan_strategy = crate::config::ScanStrategy::Full;
    std::fs::create_dir_all(&config.plot_directory).unwrap();
    let key = Arc::new(MinerKey::generate());
    work::tests::tiny_plot(&config.plot_directory, &key, 1);
    let bus = EventBus::new();
    let plots = PlotManager::load(
        &config.plot_metadata_path,
        &config.plot_directory,
        key.public_key(),
        bus.clone(),
    )
    .unwrap();
    let (ctx, stats, _enabled) = context(config, key.clone(), bus, &plots);

    let node_dir = home.path().join("node");
    let mut node_cfg = DevnetNodeConfig::new(&node_dir);
    node_cfg.listen = "127.0.0.1:0".parse().unwrap();
    node_cfg.epoch_duration = Duration::from_millis(600);
    node_cfg.initial_difficulty = 1;
    let node_token = CancellationToken::new();
    let node = devnet::start(node_cfg.clone(), node_token.clone())
        .await
        .unwrap();
    let addr = node.local_addr();

    let mut link = super::link_config(&ctx.config, &key.public_key());
    link.host = addr.ip().to_string();
    link.port = addr.port();
    link.timings = LinkTimings {
        backoff: Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
        },
        ..LinkTimings::default()
    };
    let shutdown = CancellationToken::new();
    let task = spawn_with_link(ctx, link, shutdown.clone());

    poll("two accepted blocks", || {
        (stats.snapshot().counters.blocks_accepted >= 2).then_some(())
    })
    .await;
    let tip = node.status().tip_height;
    // Every block of the chain is ours and valid against its parent.
    for h in 1..=tip {
        let block = node.block_at(h).unwrap();
        let parent = node.block_at(h - 1).unwrap();
        assert_eq!(block.header.miner_id, key.miner_id());
        let ctx = ChainContext {
            tip_hash: Some(parent.hash()),
            tip_height: h - 1,
            expected_difficulty: block.header.difficulty,
            expected_epoch: block.header.epoch,
            expected_challenge: spacetime::consensus::epoch_challenge(
                &parent.hash(),
                block.header.epoch,
            ),
            now_unix: block.header.timestamp,
            epoch_start_unix: block.header.timestamp,
        };
        validate_block(&block, &ctx).unwrap();
    }

    // Kill the node; the miner notices and keeps retrying; restart it on the same port.
    node_token.cancel();
    node.wait().await.unwrap();
    poll("the link to notice", || {
        (stats.snapshot().link.state != LinkState::Connected).then_some(())
    })
    .await;
    let before = stats.snapshot().counters.blocks_accepted;
    node_cfg.listen = addr;
    let node_token = CancellationToken::new();
    let node = devnet::start(node_cfg, node_token.clone()).await.unwrap();
    poll("mining to resume", || {
        (stats.snapshot().counters.blocks_accepted > before).then_some(())
    })
    .await;
    assert!(
        node.status().tip_height > tip,
        "the chain resumed from its data dir"
    );
    assert_eq!(stats.snapshot().link.state, LinkState::Connected);

    shutdown.cancel();
    tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
    node_token.cancel();
    node.wait().await.unwrap();
}

#[test]
fn the_daemon_config_maps_to_the_link() {
    let home = tempfile::tempdir().unwrap();
    let mut config = crate::config::Config::defaults_for_home(home.path()).unwrap();
    config.node_address = "::1".into();
    config.node_port = 9000;
    config.connection_retry_interval_seconds = 7;
    let link = link_config(&config, &[0xAB; 32]);
    assert_eq!(link.endpoint(), "[::1]:9000");
    assert_eq!(link.timings.backoff.base, Duration::from_secs(7));
    assert_eq!(link.node_id, "miner-abababababababab");
    assert_eq!(
        spacetime::wire::network_id_of(&link.user_agent),
        Some(config.network_id.as_str())
    );
}
