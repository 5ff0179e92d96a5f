//! Settings of the devnet node: the Development genesis parameters (network id, difficulty,
//! epoch length), where the chain lives, and the limits every peer is held to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use spacetime::consensus::{DifficultyAdjustmentConfig, DEVNET_NETWORK_ID};
use spacetime::wire::MAX_FRAME_LENGTH;
use thiserror::Error;

/// Default listen address: loopback on the reference node port (8333), so a node started
/// without flags is reachable only from this machine.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8333";
/// Default largest frame (2 MiB): a devnet block is a few hundred bytes plus 155 bytes per
/// transaction, and 2000 headers are under 600 KiB.
pub const DEFAULT_MAX_FRAME_LENGTH: u32 = 2 * 1024 * 1024;

/// Why a [`DevnetNodeConfig`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("devnet node setting {field} = {value} is invalid: {rule}")]
pub struct ConfigError {
    /// The setting.
    pub field: &'static str,
    /// Its value, as text.
    pub value: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

/// Everything a devnet node needs. [`DevnetNodeConfig::new`] gives the Development genesis
/// (difficulty 100, 10 s epochs and blocks) and production limits; tests shorten the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevnetNodeConfig {
    /// Address to listen on; port 0 picks a free port (see `DevnetNodeHandle::local_addr`).
    pub listen: SocketAddr,
    /// Directory of the chain file, the genesis signer key and the epoch counter.
    pub data_dir: PathBuf,
    /// Network id: the genesis challenge is `H(network_id)`, and peers must name the same id
    /// in their user agent (decisions D3).
    pub network_id: String,
    /// Length of an epoch (decisions D4). At least 100 ms; the Development genesis uses 10 s.
    pub epoch_duration: Duration,
    /// Difficulty of a new chain's genesis block (ignored when the data dir holds a chain).
    pub initial_difficulty: u64,
    /// Target time per block for difficulty adjustment (decisions D6; whole seconds, ≥ 1).
    pub target_block_time: Duration,
    /// Adjust the difficulty every this many blocks.
    pub adjustment_interval: u64,
    /// Only `1/dampening` of a raw difficulty change is applied.
    pub dampening_factor: u64,
    /// Most simultaneous connections (handshaking ones included).
    pub max_peers: usize,
    /// Most simultaneous connections from one IP address, so that one host cannot hold
    /// every slot (loopback included: a local test rig is one address too).
    pub max_peers_per_ip: usize,
    /// Largest frame accepted or sent (`length` field, at most 16 MiB).
    pub max_frame_length: u32,
    /// Sustained messages per second a peer may send (token bucket refill rate).
    pub max_messages_per_sec: u32,
    /// Messages a peer may send in a burst above the sustained rate (bucket size).
    pub message_burst: u32,
    /// Frames queued for one peer before it counts as too slow and is dropped.
    pub outbound_queue: usize,
    /// Time a new connection has to complete the handshake (decisions D3: 5 s).
    pub handshake_timeout: Duration,
    /// Silence after which the node sends a Ping (decisions D3: 30 s).
    pub ping_after: Duration,
    /// Silence after which the node closes the connection (decisions D3: 60 s).
    pub idle_timeout: Duration,
    /// Most pending transactions kept in the mempool (a full one evicts its lowest fee for
    /// a transaction that pays more).
    pub max_mempool: usize,
    /// Most pending transactions sent from one IP address (decisions R8).
    pub max_mempool_per_ip: usize,
    /// A handshaken peer that sent nothing useful (a proof, a block or a transaction the
    /// node took) for this long may be dropped to make room when `max_peers` are connected
    /// (decisions R8).
    pub idle_peer_after: Duration,
    /// Block bodies kept in memory, the newest ones; older blocks are served from the chain
    /// file (decisions R8).
    pub max_blocks_in_memory: usize,
    /// Smallest plot (in leaves) whose proofs and blocks count (decisions R6).
    pub min_plot_leaves: u64,
}

/// Default [`DevnetNodeConfig::min_plot_leaves`]: 1024 leaves (32 KiB).
pub const DEFAULT_MIN_PLOT_LEAVES: u64 = 1024;

impl DevnetNodeConfig {
    /// The Development genesis with its data in `data_dir`, listening on
    /// [`DEFAULT_LISTEN`].
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let adjust = DifficultyAdjustmentConfig::default();
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8333))),
            data_dir: data_dir.into(),
            network_id: DEVNET_NETWORK_ID.to_owned(),
            epoch_duration: Duration::from_secs(10),
            initial_difficulty: 100,
            target_block_time: Duration::from_secs(10),
            adjustment_interval: adjust.adjustment_interval,
            dampening_factor: adjust.dampening_factor,
            max_peers: 64,
            max_peers_per_ip: 16,
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            max_messages_per_sec: 200,
            message_burst: 400,
            outbound_queue: 1024,
            handshake_timeout: Duration::from_secs(5),
            ping_after: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_mempool: 10_000,
            max_mempool_per_ip: 1_000,
            idle_peer_after: Duration::from_secs(120),
            max_blocks_in_memory: crate::chain::DEFAULT_BLOCKS_IN_MEMORY,
            min_plot_leaves: DEFAULT_MIN_PLOT_LEAVES,
        }
    }

    /// Checks every setting; `start` calls this before touching the data dir.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, value: String, rule: &'static str| {
            Err(ConfigError { field, value, rule })
        };
        let id = &self.network_id;
        if id.trim().is_empty() || id.len() > 64 || id.chars().any(char::is_whitespace) {
            return bad(
                "network_id",
                format!("{id:?}"),
                "must be 1 to 64 characters, no spaces",
            );
        }
        if self.epoch_duration < Duration::from_millis(100)
            || self.epoch_duration > Duration::from_secs(3600)
        {
            return bad(
                "epoch_duration",
                format!("{:?}", self.epoch_duration),
                "must be 100 ms ..= 3600 s",
            );
        }
        if self.initial_difficulty == 0 || self.initial_difficulty > i64::MAX as u64 {
            return bad(
                "initial_difficulty",
                self.initial_difficulty.to_string(),
                "must be 1..=i64::MAX",
            );
        }
        if self.target_block_time.as_secs() == 0 {
            return bad(
                "target_block_time",
                format!("{:?}", self.target_block_time),
                "must be at least 1 s",
            );
        }
        for (field, value) in [
            ("adjustment_interval", self.adjustment_interval),
            ("dampening_factor", self.dampening_factor),
            ("max_peers", self.max_peers as u64),
            ("max_peers_per_ip", self.max_peers_per_ip as u64),
            ("max_messages_per_sec", u64::from(self.max_messages_per_sec)),
            ("message_burst", u64::from(self.message_burst)),
            ("outbound_queue", self.outbound_queue as u64),
            ("max_mempool", self.max_mempool as u64),
            ("max_mempool_per_ip", self.max_mempool_per_ip as u64),
            ("max_blocks_in_memory", self.max_blocks_in_memory as u64),
            ("min_plot_leaves", self.min_plot_leaves),
        ] {
            if value == 0 {
                return bad(field, value.to_string(), "must be > 0");
            }
        }
        // A frame must hold at least one block with its proof and a Handshake.
        if !(4096..=MAX_FRAME_LENGTH).contains(&self.max_frame_length) {
            return bad(
                "max_frame_length",
                self.max_frame_length.to_string(),
                "must be 4096..=16777216",
            );
        }
        for (field, d) in [
            ("handshake_timeout", self.handshake_timeout),
            ("ping_after", self.ping_after),
            ("idle_timeout", self.idle_timeout),
            ("idle_peer_after", self.idle_peer_after),
        ] {
            if d.is_zero() {
                return bad(field, format!("{d:?}"), "must be > 0");
            }
        }
        if self.idle_timeout <= self.ping_after {
            return bad(
                "idle_timeout",
                format!("{:?}", self.idle_timeout),
                "must be longer than ping_after",
            );
        }
        Ok(())
    }

    /// The difficulty adjustment settings (decisions D6).
    pub fn adjustment(&self) -> DifficultyAdjustmentConfig {
        DifficultyAdjustmentConfig {
            target_block_time_secs: self.target_block_time.as_secs(),
            adjustment_interval: self.adjustment_interval,
            dampening_factor: self.dampening_factor,
            ..DifficultyAdjustmentConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_development_genesis_and_valid() {
        let c = DevnetNodeConfig::new("/tmp/x");
        assert_eq!(c.network_id, "spacetime-devnet-local");
        assert_eq!(c.initial_difficulty, 100);
        assert_eq!(c.epoch_duration, Duration::from_secs(10));
        assert_eq!(c.listen.port(), 8333);
        c.validate().unwrap();
        assert_eq!(c.adjustment().target_block_time_secs, 10);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let base = DevnetNodeConfig::new("/tmp/x");
        let cases: Vec<(&str, DevnetNodeConfig)> = vec![
            (
                "network_id",
                DevnetNodeConfig {
                    network_id: "a b".into(),
                    ..base.clone()
                },
            ),
            (
                "network_id",
                DevnetNodeConfig {
                    network_id: String::new(),
                    ..base.clone()
                },
            ),
            (
                "epoch_duration",
                DevnetNodeConfig {
                    epoch_duration: Duration::from_millis(10),
                    ..base.clone()
                },
            ),
            (
                "initial_difficulty",
                DevnetNodeConfig {
                    initial_difficulty: 0,
                    ..base.clone()
                },
            ),
            (
                "max_peers",
                DevnetNodeConfig {
                    max_peers: 0,
                    ..base.clone()
                },
            ),
            (
                "max_frame_length",
                DevnetNodeConfig {
                    max_frame_length: 100,
                    ..base.clone()
                },
            ),
            (
                "idle_timeout",
                DevnetNodeConfig {
                    idle_timeout: Duration::from_secs(1),
                    ..base.clone()
                },
            ),
        ];
        for (field, c) in cases {
            assert_eq!(c.validate().unwrap_err().field, field);
        }
    }
}
