//! [`run`]: starts every part of the daemon, wires them together through
//! [`crate::context`] (the shared state handed to the control API and the mining loop), and
//! drains them at shutdown.
//!
//! Start-up order: data directory, lock, key, plots, control API, directory watcher, mining,
//! readiness (`READY=1` to systemd). Shutdown order: stop mining, cancel plot jobs, stop the
//! API, flush the metadata, remove the socket, release the lock, each bounded in time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use spacetime::keys::MinerKey;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::context::{Daemon, VERSION};
use crate::events::EventBus;
use crate::files::ensure_private_dir;
use crate::plots::{self, JobManager, PlotManager};
use crate::shutdown::{drain, GRACE};
use crate::stats::MiningStats;
use spacetime_io::DataDirLock;

/// Tells systemd (when started by it) about a state change; a no-op otherwise.
fn notify_systemd(state: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(state) {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// Every file the daemon writes atomically outside the plot directory: the key, the plot
/// metadata and the files beside it, the lifetime counters, the token file.
fn owned_files(config: &Config) -> Vec<std::path::PathBuf> {
    let meta = &config.plot_metadata_path;
    vec![
        config.private_key_path.clone(),
        meta.clone(),
        plots::choices::choices_path(meta),
        plots::registry::failed_checks_path(meta),
        crate::stats::CountersFile::in_dir(&config.data_directory)
            .path()
            .to_path_buf(),
        config.token_file.clone(),
    ]
}

/// Runs the daemon until `shutdown` is cancelled (by a signal, the Shutdown RPC or a test),
/// then drains. Binds what the configuration says (TCP port 0 is fine) and logs every bound
/// address on a line containing "listening".
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = Arc::new(config);
    ensure_private_dir(&config.data_directory)?;
    let lock = DataDirLock::acquire(&config.lock_path())?;
    crate::files::remove_stale_temporaries(&owned_files(&config));
    for dir in &config.plot_directories {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating plot directory {}", dir.display()))?;
    }
    // Listed twice, its plots would be registered twice (and farmed once, as duplicates).
    if let Some((first, second)) =
        plots::dirs::same_directory(&config.plot_directories.as_slice().into())
    {
        return Err(crate::config::ConfigError::SameDirectory { first, second }.into());
    }

    let key_path = config.private_key_path.clone();
    let key = tokio::task::spawn_blocking(move || MinerKey::load_or_create(&key_path))
        .await
        .context("loading the miner key")??;
    let key = Arc::new(key);
    let pk = key.public_key();
    tracing::info!(
        public_key = %hex::encode(pk), key_file = %config.private_key_path.display(),
        network = %config.network_id, "minerd {VERSION} starting"
    );

    let events = EventBus::new();
    let plots = {
        let (meta, dirs, ev) = (
            config.plot_metadata_path.clone(),
            config.plot_directories.clone(),
            events.clone(),
        );
        tokio::task::spawn_blocking(move || PlotManager::load(&meta, dirs, pk, ev))
            .await
            .context("loading plots")??
    };
    let summary = plots.summary();
    tracing::info!(
        total = summary.total, valid = summary.valid, corrupted = summary.corrupted,
        missing = summary.missing, duplicate = summary.duplicate, bytes = summary.farmed_bytes,
        dirs = ?config.plot_directories, "plots loaded"
    );
    // In devnet mode the embedded miner creates its own small plot when there is none.
    if summary.valid == 0 && !config.devnet.enabled {
        tracing::warn!("no valid plot: create one with `minerctl create-plot --size 100MiB`");
    }
    let stats = MiningStats::new(config.node_endpoint());
    let counters_file = crate::stats::CountersFile::in_dir(&config.data_directory);
    {
        let f = counters_file.clone();
        let base = tokio::task::spawn_blocking(move || f.read()).await?;
        stats.update(|s| s.lifetime_base = base);
    }
    let jobs = JobManager::new(
        plots.clone(),
        events.clone(),
        pk,
        config.max_concurrent_plot_jobs as usize,
        plots::jobs::default_plot_threads(config.plot_threads),
        stats.proving_gate(),
    );
    if config.build_missing_caches {
        jobs.start_cache_builds();
    }
    let daemon = Arc::new(Daemon::new(
        config.clone(),
        key,
        plots.clone(),
        jobs.clone(),
        stats,
        events,
        shutdown.clone(),
    ));

    let servers = crate::rpc::serve(daemon.clone()).await?;
    let metrics = match config.metrics_address {
        Some(addr) => Some(crate::metrics::serve(addr, daemon.clone()).await?),
        None => None,
    };

    let watcher = tokio::spawn(plots::watch_directory(
        plots.clone(),
        jobs.clone(),
        Duration::from_secs(config.plot_scan_interval_seconds),
        shutdown.clone(),
    ));
    let counters_task = tokio::spawn(persist_counters(
        daemon.stats.clone(),
        counters_file.clone(),
        shutdown.clone(),
    ));
    let mining_token = shutdown.child_token();
    let mining = crate::mining::spawn_mining(daemon.mining_context(), mining_token.clone());

    notify_systemd(&[sd_notify::NotifyState::Ready]);
    tracing::info!("minerd ready");
    shutdown.cancelled().await;

    // Drain, each step bounded.
    let begun = Instant::now();
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down");
    daemon.set_mining(false);
    mining_token.cancel();
    drain("mining loop", GRACE, async {
        if let Err(e) = mining.await {
            tracing::error!(error = %e, "mining loop panicked");
        }
    })
    .await;
    drain("plot jobs", GRACE, jobs.shutdown()).await;
    let _ = counters_task.await;
    {
        let life = daemon.stats.snapshot().lifetime();
        let f = counters_file.clone();
        match tokio::task::spawn_blocking(move || f.write(&life)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot write the lifetime counters at shutdown")
            }
            Err(e) => tracing::error!(error = %e, "writing the lifetime counters panicked"),
        }
    }
    let _ = watcher.await;
    servers.stop().await;
    if let Some(m) = metrics {
        m.stop().await;
    }
    if let Err(e) = tokio::task::spawn_blocking(move || plots.flush()).await? {
        tracing::error!(error = %e, "cannot write the plot metadata at shutdown");
    }
    drop(lock);
    tracing::info!(elapsed = ?begun.elapsed(), "minerd stopped");
    Ok(())
}

/// How often the lifetime counters are written while they change.
const COUNTERS_INTERVAL: Duration = Duration::from_secs(2);

/// Writes the lifetime counters whenever they changed, every [`COUNTERS_INTERVAL`], until
/// shutdown (the final write happens after mining stopped).
async fn persist_counters(
    stats: MiningStats,
    file: crate::stats::CountersFile,
    shutdown: CancellationToken,
) {
    let mut written = stats.snapshot().counters;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(COUNTERS_INTERVAL) => {}
        }
        let snap = stats.snapshot();
        if snap.counters == written {
            continue;
        }
        let life = snap.lifetime();
        let f = file.clone();
        match tokio::task::spawn_blocking(move || f.write(&life)).await {
            Ok(Ok(())) => written = snap.counters,
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the lifetime counters"),
            Err(e) => tracing::warn!(error = %e, "writing the lifetime counters panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use spacetime_proto::client::{connect, get_status, Target};
    use spacetime_proto::pb;

    #[tokio::test]
    async fn run_serves_the_api_and_drains_cleanly() {
        let home = tempfile::tempdir().unwrap();
        let mut config = Config::defaults_for_home(home.path()).unwrap();
        config.auto_start_mining = false;
        config.listen_tcp = Some("127.0.0.1:0".parse().unwrap());
        let socket = config.control_socket.clone();
        let lock = config.lock_path();
        let token = CancellationToken::new();
        let daemon = tokio::spawn(run(config, token.clone()));

        let mut client = None;
        for _ in 0..500 {
            if let Ok(c) = connect(&Target::Unix(socket.clone())).await {
                client = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut client = client.expect("the daemon listens");
        let status = get_status(&mut client).await.unwrap();
        assert_eq!(status.version, VERSION);
        assert!(!status.mining_enabled);
        assert_eq!(status.miner_public_key.len(), 32);
        assert!(lock.exists());
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        client.shutdown(pb::ShutdownRequest {}).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), daemon)
            .await
            .expect("drains in time")
            .unwrap()
            .unwrap();
        assert!(token.is_cancelled());
        assert!(!socket.exists());
        assert!(!lock.exists());
        assert!(home.path().join(".spacetime/plots_metadata.json").exists());
    }
}
