//! Daemon configuration: one typed [`Config`], loaded in layers with the origin of every value.
//!
//! Layers, lowest first: built-in defaults, the YAML file (`--config`, else
//! `$SPACETIME_MINER_CONFIG`, else `<dataDirectory>/miner.yaml`, where a missing default file
//! means "all defaults"), `SPACETIME_MINER_*` environment variables, then command-line flags.
//! Every key is declared once in [`KEYS`] (name, type, range, meaning), which drives parsing,
//! validation, the environment variable names and `minerd config`. The environment is read
//! through the [`Env`] trait, so tests never touch the process environment.
//!
//! Errors name the key, the value, where it came from and what is allowed.

mod env;
mod error;
mod keys;
mod load;
mod plot_dirs;
mod render;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use env::{Env, ProcessEnv};
pub use error::{ConfigError, Source};
pub use keys::{key_def, DefaultValue, KeyDef, Kind, KEYS};
pub use load::{check_tcp_security, load, LoadOptions, Loaded};

/// Prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "SPACETIME_MINER_";
/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "SPACETIME_MINER_CONFIG";
/// Network id of the local devnet, our default (no public Spacetime network exists). The
/// embedded devnet node (`devnet.enabled`) always runs on it.
pub const DEVNET_NETWORK_ID: &str = spacetime::consensus::DEVNET_NETWORK_ID;

/// The daemon's effective configuration. Field names are the YAML keys (camelCase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Directory for the daemon's own files (socket, lock, token, key, metadata).
    pub data_directory: PathBuf,
    /// The first of [`Config::plot_directories`] (the setting's one-entry spelling).
    pub plot_directory: PathBuf,
    /// Directories scanned for `*.plot` files (at least one, distinct); new plots go to the
    /// one with the most free space.
    pub plot_directories: Vec<PathBuf>,
    /// The plot registry (`plots_metadata.json`, reference format).
    pub plot_metadata_path: PathBuf,
    /// Node host name or IP address.
    pub node_address: String,
    /// Node TCP port.
    pub node_port: u16,
    /// The miner's Ed25519 key file (created 0600 on first start).
    pub private_key_path: PathBuf,
    /// Network id that the node must announce.
    pub network_id: String,
    /// Plots per disk scanned at once by the sampling strategies (`full` and `deadline` read
    /// each disk's plots in turn, every disk at once); every core hashes either way.
    pub max_concurrent_proofs: u32,
    /// Upper bound on the work for one challenge.
    pub proof_generation_timeout_seconds: u64,
    /// Base of the reconnect backoff.
    pub connection_retry_interval_seconds: u64,
    /// Consecutive failed connects before the node is reported unreachable.
    pub max_connection_retries: u32,
    /// Log per-plot scan times and warn about slow plots.
    pub enable_performance_monitoring: bool,
    /// Unix socket of the control API.
    pub control_socket: PathBuf,
    /// Optional TCP address of the control API (bearer token required).
    pub listen_tcp: Option<SocketAddr>,
    /// Bearer token file for the TCP listener (created 0600 if absent).
    pub token_file: PathBuf,
    /// PEM certificate chain of the TCP listener (TLS when set, with `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Allow a non-loopback `listen_tcp` without TLS.
    pub allow_plaintext_tcp: bool,
    /// Connections the TCP listener holds at once.
    pub max_tcp_connections: u32,
    /// Connections the Unix socket holds at once (its own budget).
    pub max_socket_connections: u32,
    /// Web origins allowed to use gRPC-Web on the TCP listener, comma-separated (see
    /// [`Config::grpc_web_origins`]).
    pub grpc_web_origins: String,
    /// Optional address of the Prometheus metrics listener (`GET /metrics`).
    pub metrics_address: Option<SocketAddr>,
    /// Which leaves are scanned per plot and challenge.
    pub scan_strategy: ScanStrategy,
    /// Whether mining is enabled at start (else wait for `minerctl start`).
    pub auto_start_mining: bool,
    /// Log filter (a level or a `RUST_LOG`-style directive); `RUST_LOG` wins when set.
    pub log_level: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// Plot jobs that write at the same time; further jobs queue.
    pub max_concurrent_plot_jobs: u32,
    /// Hashing threads per plot job (0 = every core; jobs pause while a proof is built).
    pub plot_threads: u32,
    /// Seconds between two scans of the plot directory for new or removed files.
    pub plot_scan_interval_seconds: u64,
    /// Build a Merkle cache in the background for every valid plot that has none usable
    /// (reference plots, stale caches removed), one at a time, yielding to proofs.
    pub build_missing_caches: bool,
    /// The embedded devnet node.
    pub devnet: DevnetConfig,
}

/// Settings of the embedded devnet node (`devnet:` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevnetConfig {
    /// Run a devnet node inside minerd and mine on it.
    pub enabled: bool,
    /// Loopback port of the embedded node.
    pub listen_port: u16,
    /// Length of one epoch.
    pub epoch_duration_seconds: u64,
    /// Initial block difficulty.
    pub difficulty: u64,
    /// Where the devnet node keeps its chain.
    pub data_directory: PathBuf,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which leaves of a plot are scanned per challenge (`scanStrategy`): the core's type, whose
/// text form is the configuration value.
pub use spacetime::scan::ScanStrategy;

impl Config {
    /// The `grpcWebOrigins`, one by one.
    pub fn grpc_web_origins(&self) -> Vec<&str> {
        self.grpc_web_origins
            .split(',')
            .filter(|o| !o.is_empty())
            .collect()
    }

    /// The defaults for a given home directory (for tests and embedding).
    pub fn defaults_for_home(home: &Path) -> Result<Config, ConfigError> {
        let mut env = HashMap::new();
        env.insert("HOME".to_owned(), home.to_string_lossy().into_owned());
        load(&LoadOptions::default(), &env).map(|l| l.config)
    }

    /// The lock file in the data directory.
    pub fn lock_path(&self) -> PathBuf {
        self.data_directory.join("minerd.lock")
    }

    /// `nodeAddress:nodePort`, with brackets around an IPv6 literal.
    pub fn node_endpoint(&self) -> String {
        if self.node_address.contains(':') {
            format!("[{}]:{}", self.node_address, self.node_port)
        } else {
            format!("{}:{}", self.node_address, self.node_port)
        }
    }
}
