//! `minerd --devnet` (issue 5 §4): a devnet node inside the daemon, and the miner pointed at
//! it, so that one command mines on a fresh machine.
//!
//! [`run`] starts the node on loopback (`devnet.listenPort`, 0 = any free port) with the
//! `devnet:` settings, makes a small plot in `plotDirectory` when there is none (a plot job
//! like any other: the job manager writes and registers it), then runs the node link and the
//! mining loop against the node's address and network id until shutdown, and stops the node.
//!
//! Defaults: difficulty 1 (every proof is below the target, so each epoch with a proof
//! yields a block) and 10 s epochs, so the first block comes about 10–20 s after start; the
//! node's difficulty adjustment (target block time = the epoch length) keeps it there.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use spacetime::consensus::DEVNET_NETWORK_ID;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::context::MiningContext;
use crate::node::PRODUCT;
use crate::plots::follow::JobUpdate;
use crate::plots::JobSpec;
use crate::stats::LinkState;
use spacetime_devnet::{self as devnet, DevnetNodeConfig};

/// Leaves of the plot made for the devnet when there is none (2^16 leaves = 2 MiB).
pub const DEVNET_PLOT_LEAVES: u64 = 1 << 16;
/// File name of that plot.
pub const DEVNET_PLOT_NAME: &str = "devnet.plot";
/// How long shutdown waits for the embedded node.
const NODE_GRACE: Duration = Duration::from_secs(5);

/// The embedded node's settings from the daemon's `devnet:` section.
pub fn node_config(config: &crate::config::Config) -> DevnetNodeConfig {
    let d = &config.devnet;
    let mut cfg = DevnetNodeConfig::new(&d.data_directory);
    cfg.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, d.listen_port));
    cfg.network_id = DEVNET_NETWORK_ID.to_owned();
    cfg.epoch_duration = Duration::from_secs(d.epoch_duration_seconds);
    cfg.target_block_time = cfg.epoch_duration.max(Duration::from_secs(1));
    cfg.initial_difficulty = d.difficulty;
    cfg
}

/// Whether `e` failed because its address is taken.
fn addr_in_use(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
    })
}

/// Runs the embedded node and the miner until `shutdown`.
pub async fn run(ctx: MiningContext, shutdown: CancellationToken) {
    let cfg = node_config(&ctx.config);
    let wanted = cfg.listen;
    let mut started = devnet::start(cfg.clone(), shutdown.child_token()).await;
    if started.as_ref().is_err_and(addr_in_use) && wanted.port() != 0 {
        // Another node (often a second `minerd --devnet`, or a real node) has the port:
        // the embedded node takes any free loopback port, and the log says which.
        let mut any = cfg;
        any.listen.set_port(0);
        started = devnet::start(any, shutdown.child_token()).await;
        if let Ok(node) = &started {
            tracing::warn!(
                wanted = %wanted, listening = %node.local_addr(),
                "devnet.listenPort {} is taken; the embedded devnet node listens on port {} instead",
                wanted.port(), node.local_addr().port()
            );
        }
    }
    let node = match started {
        Ok(node) => node,
        Err(e) => {
            let reason = format!("embedded devnet node failed to start: {e:#}");
            tracing::error!("{reason}");
            ctx.stats.set_link_state(LinkState::Disabled, Some(reason));
            return;
        }
    };
    let addr = node.local_addr();
    tracing::info!(node = %addr, network = DEVNET_NETWORK_ID, "mining on the embedded devnet node");

    if ctx.plots.current().is_empty() {
        // At shutdown the wait ends here; the job manager cancels the job as it drains.
        let made = tokio::select! {
            made = ensure_plot(&ctx) => made,
            () = shutdown.cancelled() => Ok(None),
        };
        match made {
            Ok(Some(path)) => tracing::info!(
                plot = %path.display(), leaves = DEVNET_PLOT_LEAVES,
                "created and registered a small plot for the devnet"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot create a plot for the devnet")
            }
        }
    }

    let mut link = super::link_config(&ctx.config, &ctx.key.public_key());
    link.host = addr.ip().to_string();
    link.port = addr.port();
    link.network_id = DEVNET_NETWORK_ID.to_owned();
    link.user_agent =
        spacetime::wire::user_agent(PRODUCT, crate::context::VERSION, DEVNET_NETWORK_ID);
    super::run_with_link(ctx, link, shutdown.clone()).await;

    node.shutdown();
    match tokio::time::timeout(NODE_GRACE, node.wait()).await {
        Ok(Ok(())) => tracing::info!("embedded devnet node stopped"),
        Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "embedded devnet node failed"),
        Err(_) => tracing::warn!("embedded devnet node did not stop within {NODE_GRACE:?}"),
    }
}

/// Creates [`DEVNET_PLOT_NAME`] through a plot job when the plot directory holds no
/// `*.plot` file, and waits until the job has registered it.
/// Returns the new plot's path, or `None` when there was one already.
async fn ensure_plot(ctx: &MiningContext) -> anyhow::Result<Option<PathBuf>> {
    if has_plot_file(&ctx.config.plot_directory)? {
        return Ok(None);
    }
    let spec = JobSpec {
        leaf_count: DEVNET_PLOT_LEAVES,
        cache_levels: None,
        seed: None,
        file_name: Some(DEVNET_PLOT_NAME.to_owned()),
        threads: None,
        output_path: None,
    };
    let (_, mut updates) = ctx
        .jobs
        .create_followed(spec)
        .await
        .context("creating the devnet plot")?;
    while let Some(update) = updates.next().await {
        match update.context("creating the devnet plot")? {
            JobUpdate::Progress(_) => {}
            JobUpdate::Finished(plot) => return Ok(Some(plot.path)),
        }
    }
    anyhow::bail!("the devnet plot's job ended without a result")
}

fn has_plot_file(dir: &Path) -> anyhow::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if entry.path().extension().is_some_and(|x| x == "plot") {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_devnet_section_configures_the_node() {
        let home = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::defaults_for_home(home.path()).unwrap();
        config.devnet.listen_port = 0;
        config.devnet.epoch_duration_seconds = 3;
        config.devnet.difficulty = 7;
        let cfg = node_config(&config);
        assert_eq!(cfg.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(cfg.epoch_duration, Duration::from_secs(3));
        assert_eq!(cfg.target_block_time, Duration::from_secs(3));
        assert_eq!(cfg.initial_difficulty, 7);
        assert_eq!(cfg.network_id, DEVNET_NETWORK_ID);
        assert_eq!(cfg.data_dir, config.devnet.data_directory);
        cfg.validate().unwrap();
    }

    #[test]
    fn only_plot_files_count() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_plot_file(&dir.path().join("absent")).unwrap());
        std::fs::write(dir.path().join(".devnet.plot.tmp-1"), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        assert!(!has_plot_file(dir.path()).unwrap());
        std::fs::write(dir.path().join("a.plot"), b"x").unwrap();
        assert!(has_plot_file(dir.path()).unwrap());
    }
}
