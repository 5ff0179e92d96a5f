//! The mining loop and its node link (issue 5).
//!
//! * [`miner`]: the loop that owns the mining state (epochs, mempool, own blocks) and reacts
//!   to the node link, the operator's switch, plot changes and finished work;
//! * [`work`]: one epoch's scan, proof, self-verification and block, on a blocking thread;
//! * [`epoch`]: late/missed accounting and the time budget of an epoch;
//! * [`mempool`]: the transactions offered to blocks;
//! * [`embedded`]: `minerd --devnet`, a devnet node inside the daemon.
//!
//! SEAM: [`spawn_mining`] is called once by `daemon::run` after the control API is up, with
//! a shutdown token (a child of the daemon's); shutdown awaits the returned task (bounded by
//! `shutdown::GRACE`).

pub mod embedded;
pub mod epoch;
pub mod mempool;
pub mod miner;
pub mod work;

use std::time::Duration;

use spacetime::wire::MAX_FRAME_LENGTH;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::context::{MiningContext, VERSION};
use crate::node::{self, LinkConfig, LinkTimings, PRODUCT};

/// Starts the node link and the mining loop (and, with `devnet.enabled`, the embedded
/// devnet node they connect to). The task ends after `shutdown` is cancelled.
pub fn spawn_mining(ctx: MiningContext, shutdown: CancellationToken) -> JoinHandle<()> {
    if ctx.config.devnet.enabled {
        return tokio::spawn(embedded::run(ctx, shutdown));
    }
    let link = link_config(&ctx.config, &ctx.key.public_key());
    spawn_with_link(ctx, link, shutdown)
}

/// The node link of a daemon: address, port, network id, backoff base and retry count from
/// `config`, our id derived from the miner's public key. Built here, on the mining side, so
/// the node link knows nothing of the daemon's configuration.
pub fn link_config(config: &Config, public_key: &[u8; 32]) -> LinkConfig {
    let mut timings = LinkTimings::default();
    timings.backoff.base = Duration::from_secs(config.connection_retry_interval_seconds);
    LinkConfig {
        host: config.node_address.clone(),
        port: config.node_port,
        network_id: config.network_id.clone(),
        node_id: format!("miner-{}", hex::encode(&public_key[..8])),
        user_agent: spacetime::wire::user_agent(PRODUCT, VERSION, &config.network_id),
        max_retries: config.max_connection_retries,
        max_frame: MAX_FRAME_LENGTH,
        timings,
    }
}

/// Starts the mining loop on a link configured by the caller (tests shorten its timings).
pub fn spawn_with_link(
    ctx: MiningContext,
    link: LinkConfig,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(run_with_link(ctx, link, shutdown))
}

/// Runs the link and the loop until `shutdown`.
pub async fn run_with_link(ctx: MiningContext, link: LinkConfig, shutdown: CancellationToken) {
    let link = node::spawn(
        link,
        ctx.stats.clone(),
        ctx.events.clone(),
        shutdown.clone(),
    );
    miner::run(ctx, link.events, link.outbound, shutdown.clone()).await;
    // The loop only ends early if the link is gone; make sure the link stops too.
    shutdown.cancel();
    if let Err(e) = link.task.await {
        tracing::error!(error = %e, "node link task failed");
    }
}

#[cfg(test)]
mod tests;
