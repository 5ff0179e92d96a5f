//! The key table: every configuration key declared once ([`KEYS`]: name, type, range,
//! default, meaning), which drives parsing, validation, the environment variable names and
//! `minerd config`.

use super::{DEVNET_NETWORK_ID, ENV_PREFIX};

/// The type of a key and its allowed values.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `true` or `false`.
    Bool,
    /// An integer within an inclusive range.
    Int {
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// A file system path (`~/` expands to the home directory).
    Path,
    /// An optional file system path (`""` or `null` = none).
    OptPath,
    /// A node host: host name or IP literal.
    Host,
    /// A network id: 1 to 64 printable characters without spaces.
    NetworkId,
    /// An optional `ip:port` socket address (`""` or `null` = none).
    OptSocketAddr,
    /// A scan strategy (see [`ScanStrategy`]).
    ScanStrategy,
    /// A log filter.
    LogFilter,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// Web origins (`scheme://host[:port]`), comma-separated or a YAML list; empty = none.
    Origins,
    /// A non-empty list of distinct paths: a YAML list, or `:`-separated text (as `PATH`).
    PathList,
}

impl Kind {
    pub(super) fn allowed(&self) -> String {
        match self {
            Kind::Bool => "true or false".into(),
            Kind::Int { min, max } => format!("an integer from {min} to {max}"),
            Kind::Path => "a non-empty path".into(),
            Kind::OptPath => "a path, or empty".into(),
            Kind::Host => "a host name or an IP address (without port)".into(),
            Kind::NetworkId => "1 to 64 characters, no spaces".into(),
            Kind::OptSocketAddr => "an address ip:port (e.g. 127.0.0.1:9090), or empty".into(),
            Kind::ScanStrategy => {
                "deadline, full, sampling, sampling:<leaves>, cache-friendly or cache-friendly:<block>:<per block ≤ block>".into()
            }
            Kind::LogFilter => {
                "a level (error, warn, info, debug, trace) or a RUST_LOG-style filter".into()
            }
            Kind::Choice(words) => format!("one of {}", words.join(", ")),
            Kind::Origins => {
                "web origins such as https://dash.example.org or http://localhost:8080, comma-separated or a list, or empty".into()
            }
            Kind::PathList => {
                "a non-empty list of distinct paths: a YAML list, or paths separated by ':'".into()
            }
        }
    }
}

/// Default value of a key.
#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(u64),
    /// A string.
    Str(&'static str),
    /// No value.
    None,
    /// A path inside the data directory.
    InData(&'static str),
    /// The data directory default: `~/.spacetime`.
    HomeSpacetime,
    /// A one-entry list of the value of another key (`plotDirectories` = `[plotDirectory]`).
    ListOf(&'static str),
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeyDef {
    /// Dotted key path as written in YAML (`devnet.listenPort`).
    pub key: &'static str,
    /// Type and allowed values.
    pub kind: Kind,
    /// The default.
    pub default: DefaultValue,
    /// What it means (one line; the README table repeats it).
    pub doc: &'static str,
}

impl KeyDef {
    /// `SPACETIME_MINER_<KEY IN SCREAMING_SNAKE_CASE>`; dots become underscores.
    pub fn env_var(&self) -> String {
        let mut out = String::from(ENV_PREFIX);
        for c in self.key.chars() {
            if c == '.' {
                out.push('_');
            } else if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c);
            } else {
                out.push(c.to_ascii_uppercase());
            }
        }
        out
    }
}

pub(super) const fn key(
    key: &'static str,
    kind: Kind,
    default: DefaultValue,
    doc: &'static str,
) -> KeyDef {
    KeyDef {
        key,
        kind,
        default,
        doc,
    }
}

pub(super) const SECONDS: Kind = Kind::Int { min: 1, max: 3600 };

/// Every configuration key, in display order.
#[rustfmt::skip] // one row a key, as in the README's table
pub const KEYS: &[KeyDef] = &[
    key("dataDirectory", Kind::Path, DefaultValue::HomeSpacetime, "directory for the daemon's own files: socket, lock, token, key, metadata"),
    key("plotDirectory", Kind::Path, DefaultValue::InData("plots"), "the one-entry form of plotDirectories (a single plot directory)"),
    key("plotDirectories", Kind::PathList, DefaultValue::ListOf("plotDirectory"), "directories scanned for *.plot files, every disk read at once, each in file order; new plots go to the one with the most free space"),
    key("plotMetadataPath", Kind::Path, DefaultValue::InData("plots_metadata.json"), "the plot registry, reference format, written atomically"),
    key("nodeAddress", Kind::Host, DefaultValue::Str("127.0.0.1"), "node host name or IP address"),
    key("nodePort", Kind::Int { min: 1, max: 65535 }, DefaultValue::Int(8333), "node TCP port"),
    key("privateKeyPath", Kind::Path, DefaultValue::InData("miner_key.dat"), "the miner's Ed25519 key file, created 0600 on first start"),
    key("networkId", Kind::NetworkId, DefaultValue::Str(DEVNET_NETWORK_ID), "network id the node must announce"),
    key("maxConcurrentProofs", Kind::Int { min: 1, max: 256 }, DefaultValue::Int(1), "plots per disk scanned at once by the sampling strategies (full and deadline read each disk's plots in turn, every disk at once; every core hashes either way)"),
    key("proofGenerationTimeoutSeconds", SECONDS, DefaultValue::Int(60), "upper bound on the work for one challenge"),
    key("connectionRetryIntervalSeconds", SECONDS, DefaultValue::Int(5), "base of the exponential reconnect backoff"),
    key("maxConnectionRetries", Kind::Int { min: 0, max: 1_000_000 }, DefaultValue::Int(10), "consecutive failed connects before the node is reported unreachable (retries continue)"),
    key("enablePerformanceMonitoring", Kind::Bool, DefaultValue::Bool(true), "log per-plot scan times and warn about slow plots"),
    key("controlSocket", Kind::Path, DefaultValue::InData("minerd.sock"), "Unix socket of the control API (mode 0600)"),
    key("listenTcp", Kind::OptSocketAddr, DefaultValue::None, "optional TCP address of the control API; calls need the bearer token"),
    key("grpcWebOrigins", Kind::Origins, DefaultValue::Str(""), "web origins allowed to call the TCP listener by gRPC-Web from a browser (CORS); empty = none"),
    key("metricsAddress", Kind::OptSocketAddr, DefaultValue::None, "optional ip:port serving Prometheus metrics at /metrics (no authentication: keep it on loopback or a trusted network)"),
    key("tokenFile", Kind::Path, DefaultValue::InData("minerd.token"), "bearer token for the TCP listener, created 0600 if absent"),
    key("tlsCertFile", Kind::OptPath, DefaultValue::None, "PEM certificate chain of the TCP listener; with tlsKeyFile the listener speaks only TLS (`minerd tls-init` makes a self-signed pair)"),
    key("tlsKeyFile", Kind::OptPath, DefaultValue::None, "PEM private key of tlsCertFile (must not be readable by group or others)"),
    key("allowPlaintextTcp", Kind::Bool, DefaultValue::Bool(false), "allow listenTcp on a non-loopback address without TLS (the token then crosses the network in clear)"),
    key("maxTcpConnections", Kind::Int { min: 1, max: 65_536 }, DefaultValue::Int(256), "connections the TCP listener holds at once; more are closed at accept (lowered to fit the open-file limit)"),
    key("maxSocketConnections", Kind::Int { min: 1, max: 65_536 }, DefaultValue::Int(1024), "connections the Unix socket holds at once: its own budget, so local control answers whatever TCP does"),
    key("scanStrategy", Kind::ScanStrategy, DefaultValue::Str("deadline"), "leaves scanned per plot and challenge"),
    key("autoStartMining", Kind::Bool, DefaultValue::Bool(true), "enable mining at start (else wait for `minerctl start`)"),
    key("logLevel", Kind::LogFilter, DefaultValue::Str("info"), "log filter; RUST_LOG wins when set"),
    key("logFormat", Kind::Choice(&["text", "json"]), DefaultValue::Str("text"), "log line format on stderr"),
    key("maxConcurrentPlotJobs", Kind::Int { min: 1, max: 64 }, DefaultValue::Int(1), "plot jobs writing at the same time; more jobs queue"),
    key("plotThreads", Kind::Int { min: 0, max: 1024 }, DefaultValue::Int(0), "hashing threads per plot job (0 = every core; jobs pause while proving)"),
    key("plotScanIntervalSeconds", SECONDS, DefaultValue::Int(5), "seconds between scans of the plot directory for added or removed files"),
    key("buildMissingCaches", Kind::Bool, DefaultValue::Bool(true), "build the Merkle cache of valid plots without one, in the background (fast proofs)"),
    key("devnet.enabled", Kind::Bool, DefaultValue::Bool(false), "run a devnet node inside minerd and mine on it"),
    key("devnet.listenPort", Kind::Int { min: 0, max: 65535 }, DefaultValue::Int(8333), "loopback port of the embedded devnet node (0 = any free port)"),
    key("devnet.epochDurationSeconds", SECONDS, DefaultValue::Int(10), "length of one devnet epoch"),
    key("devnet.difficulty", Kind::Int { min: 1, max: u64::MAX }, DefaultValue::Int(1), "initial devnet block difficulty"),
    key("devnet.dataDirectory", Kind::Path, DefaultValue::InData("devnet"), "where the devnet node keeps its chain"),
];

/// Looks a key up by its dotted name.
pub fn key_def(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.key == name)
}
