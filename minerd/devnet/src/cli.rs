//! `minerd devnet-node`: the command-line face of the devnet node. The doc comments below
//! are its `--help` text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use spacetime::consensus::DEVNET_NETWORK_ID;
use tokio_util::sync::CancellationToken;

use super::config::{DevnetNodeConfig, DEFAULT_LISTEN, DEFAULT_MAX_FRAME_LENGTH};

/// Run a Spacetime devnet node: the node side of the protocol, for development and tests.
///
/// Starts from the Development genesis (or resumes the chain in the data directory), runs
/// timed epochs, judges proofs and blocks strictly, accepts the lowest-score block at each
/// deadline, relays transactions, and answers header, block and mempool requests.
#[derive(Debug, Clone, Args)]
pub struct DevnetNodeArgs {
    /// Address to listen on; port 0 picks a free port (the log line
    /// "devnet node listening on ADDR" names it)
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Directory of the chain, the genesis key and the epoch counter
    /// [default: $HOME/.spacetime/devnet]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Network id; peers must name it in their user agent
    #[arg(long, default_value = DEVNET_NETWORK_ID, value_name = "ID")]
    pub network_id: String,
    /// Epoch length in milliseconds (at least 100) [default: 10000]
    #[arg(long, value_name = "MS", conflicts_with = "epoch_seconds")]
    pub epoch_ms: Option<u64>,
    /// Epoch length in seconds [default: 10]
    #[arg(long, value_name = "SECS")]
    pub epoch_seconds: Option<u64>,
    /// Genesis difficulty of a new chain (a stored chain keeps its own)
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub difficulty: u64,
    /// Target seconds per block for difficulty adjustment (new chains)
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub target_block_seconds: u64,
    /// Adjust the difficulty every N blocks (new chains)
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub adjustment_interval: u64,
    /// Most simultaneous connections; when full, a new one takes the place of a connection
    /// stuck in its handshake or of a long-idle peer (--idle-peer-seconds), or is refused
    /// with "too many peers"
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_peers: usize,
    /// Most simultaneous connections from one IP address; more are refused with
    /// "too many connections from"
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_peers_per_ip: usize,
    /// Largest frame accepted or sent, in bytes (4096..=16777216)
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_LENGTH, value_name = "BYTES")]
    pub max_frame_bytes: u32,
    /// Sustained messages per second a peer may send (bursts of twice that)
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub max_messages_per_sec: u32,
    /// Most pending transactions kept in the mempool; a full mempool drops its lowest fee
    /// for a transaction that pays more
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_mempool: usize,
    /// Most pending transactions from one IP address
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    pub max_mempool_per_ip: usize,
    /// When --max-peers are connected, a new connection may take the place of a peer that
    /// sent no proof, block or transaction for this many seconds (the longest idle goes)
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub idle_peer_seconds: u64,
    /// Smallest plot, in leaves, whose proofs and blocks count; smaller ones are refused
    /// (a plot made after the challenge must at least cost this much work)
    #[arg(long, default_value_t = crate::config::DEFAULT_MIN_PLOT_LEAVES, value_name = "N")]
    pub min_plot_leaves: u64,
}

impl DevnetNodeArgs {
    /// The node settings these flags describe; `home` gives the default data dir.
    pub fn to_config(&self, home: Option<PathBuf>) -> anyhow::Result<DevnetNodeConfig> {
        let data_dir = match (&self.data_dir, home) {
            (Some(dir), _) => dir.clone(),
            (None, Some(home)) => home.join(".spacetime").join("devnet"),
            (None, None) => anyhow::bail!("HOME is not set; pass --data-dir"),
        };
        let mut cfg = DevnetNodeConfig::new(data_dir);
        cfg.listen = self.listen;
        cfg.network_id = self.network_id.clone();
        cfg.epoch_duration = match (self.epoch_ms, self.epoch_seconds) {
            (Some(ms), _) => Duration::from_millis(ms),
            (None, Some(s)) => Duration::from_secs(s),
            (None, None) => cfg.epoch_duration,
        };
        cfg.initial_difficulty = self.difficulty;
        cfg.target_block_time = Duration::from_secs(self.target_block_seconds);
        cfg.adjustment_interval = self.adjustment_interval;
        cfg.max_peers = self.max_peers;
        cfg.max_peers_per_ip = self.max_peers_per_ip;
        cfg.max_frame_length = self.max_frame_bytes;
        cfg.max_messages_per_sec = self.max_messages_per_sec;
        cfg.message_burst = self.max_messages_per_sec.saturating_mul(2);
        cfg.max_mempool = self.max_mempool;
        cfg.max_mempool_per_ip = self.max_mempool_per_ip;
        cfg.idle_peer_after = Duration::from_secs(self.idle_peer_seconds);
        cfg.min_plot_leaves = self.min_plot_leaves;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Runs `minerd devnet-node` until `shutdown` is cancelled (main wires SIGINT/SIGTERM to
/// it). Logging is set up by the caller.
pub async fn run_cli(args: DevnetNodeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let cfg = args
        .to_config(home)
        .context("invalid devnet node options")?;
    super::run(cfg, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: DevnetNodeArgs,
    }

    #[test]
    fn flags_map_onto_the_config() {
        let cli = Cli::try_parse_from([
            "x",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/d",
            "--epoch-ms",
            "500",
            "--difficulty",
            "1",
            "--max-peers",
            "3",
        ])
        .unwrap();
        let cfg = cli.args.to_config(None).unwrap();
        assert_eq!(cfg.listen.port(), 0);
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(cfg.epoch_duration, Duration::from_millis(500));
        assert_eq!((cfg.initial_difficulty, cfg.max_peers), (1, 3));
        assert_eq!(cfg.network_id, "spacetime-devnet-local");
    }

    /// The shape of `minerd`'s command line: global `--data-dir` and `--network-id` flags
    /// beside a `devnet-node` subcommand that has its own.
    #[derive(Debug, Parser)]
    struct Minerd {
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
        #[arg(long, global = true)]
        network_id: Option<String>,
        #[command(subcommand)]
        command: Option<Sub>,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        DevnetNode(DevnetNodeArgs),
    }

    #[test]
    fn the_subcommand_coexists_with_minerd_global_flags() {
        use clap::CommandFactory;
        Minerd::command().debug_assert();
        let cli = Minerd::try_parse_from([
            "minerd",
            "devnet-node",
            "--data-dir",
            "/d",
            "--network-id",
            "n1",
        ])
        .unwrap();
        let Some(Sub::DevnetNode(args)) = cli.command else {
            panic!("no subcommand")
        };
        assert_eq!(args.data_dir, Some(PathBuf::from("/d")));
        assert_eq!(args.network_id, "n1");
    }

    #[test]
    fn defaults_and_errors() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        let cfg = cli.args.to_config(Some("/home/u".into())).unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/home/u/.spacetime/devnet"));
        assert_eq!(cfg.epoch_duration, Duration::from_secs(10));
        assert_eq!(cfg.listen.port(), 8333);
        assert!(cli.args.to_config(None).is_err());
        let bad = Cli::try_parse_from(["x", "--epoch-ms", "5", "--data-dir", "/d"]).unwrap();
        assert!(bad.args.to_config(None).is_err());
        assert!(Cli::try_parse_from(["x", "--epoch-ms", "500", "--epoch-seconds", "1"]).is_err());
    }
}
