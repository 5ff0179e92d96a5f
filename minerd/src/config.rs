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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

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
    /// Directory scanned for `*.plot` files and where new plots are written.
    pub plot_directory: PathBuf,
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
    /// Plots scanned (and proved) at once for one challenge; each is scanned on one thread
    /// per core.
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
    /// Hashing threads per plot job (0 = one less than the cores, at least 1).
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

impl FromStr for LogFormat {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(()),
        }
    }
}

/// Which leaves of a plot are scanned per challenge (`scanStrategy`): the core's type, whose
/// text form is the configuration value.
pub use spacetime::scan::ScanStrategy;

/// Where the environment comes from: the process, or a map in tests.
pub trait Env {
    /// The value of `name`, if set and valid Unicode.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The YAML file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Cli(String),
    /// Forced by `devnet.enabled`: the embedded devnet node runs on its own network, so the
    /// effective `networkId` is the devnet's. Holds the value it replaced and that value's
    /// origin, when the user had set one.
    Devnet {
        /// `"<value>" (<origin>)` of the replaced setting.
        overrides: Option<String>,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "environment {v}"),
            Source::Cli(flag) => write!(f, "flag {flag}"),
            Source::Devnet { overrides: None } => f.write_str("devnet.enabled"),
            Source::Devnet {
                overrides: Some(was),
            } => write!(f, "devnet.enabled, replacing {was}"),
        }
    }
}

/// A configuration that cannot be used. Every variant names the offending key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `--config` or `$SPACETIME_MINER_CONFIG` does not exist.
    #[error("config file {path} does not exist")]
    MissingFile {
        /// The file.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("config file {path} is not valid YAML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The file's top level (or the `devnet` section) is not a mapping of keys to values.
    #[error("{origin}: `{key}` must be a mapping of keys to values")]
    NotAMapping {
        /// The section (`<top level>` or `devnet`).
        key: String,
        /// Where it came from.
        origin: Source,
    },
    /// A key that does not exist.
    #[error("unknown config key `{key}` ({origin}); allowed keys: {allowed}")]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it came from.
        origin: Source,
        /// Comma-separated list of valid keys.
        allowed: String,
    },
    /// A value of the wrong type or out of range.
    #[error("invalid value {value} for config key `{key}` ({origin}): expected {allowed}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value as given (quoted or in YAML form).
        value: String,
        /// Where it came from.
        origin: Source,
        /// What is allowed.
        allowed: String,
    },
    /// No home directory to derive `~/.spacetime` from.
    #[error("HOME is not set: set it or pass --data-dir")]
    NoHome,
}

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
}

impl Kind {
    fn allowed(&self) -> String {
        match self {
            Kind::Bool => "true or false".into(),
            Kind::Int { min, max } => format!("an integer from {min} to {max}"),
            Kind::Path => "a non-empty path".into(),
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

const fn key(key: &'static str, kind: Kind, default: DefaultValue, doc: &'static str) -> KeyDef {
    KeyDef {
        key,
        kind,
        default,
        doc,
    }
}

const SECONDS: Kind = Kind::Int { min: 1, max: 3600 };

/// Every configuration key, in display order.
pub const KEYS: &[KeyDef] = &[
    key(
        "dataDirectory",
        Kind::Path,
        DefaultValue::HomeSpacetime,
        "directory for the daemon's own files: socket, lock, token, key, metadata",
    ),
    key(
        "plotDirectory",
        Kind::Path,
        DefaultValue::InData("plots"),
        "directory scanned for *.plot files; new plots are written here",
    ),
    key(
        "plotMetadataPath",
        Kind::Path,
        DefaultValue::InData("plots_metadata.json"),
        "the plot registry, reference format, written atomically",
    ),
    key(
        "nodeAddress",
        Kind::Host,
        DefaultValue::Str("127.0.0.1"),
        "node host name or IP address",
    ),
    key(
        "nodePort",
        Kind::Int { min: 1, max: 65535 },
        DefaultValue::Int(8333),
        "node TCP port",
    ),
    key(
        "privateKeyPath",
        Kind::Path,
        DefaultValue::InData("miner_key.dat"),
        "the miner's Ed25519 key file, created 0600 on first start",
    ),
    key(
        "networkId",
        Kind::NetworkId,
        DefaultValue::Str(DEVNET_NETWORK_ID),
        "network id the node must announce",
    ),
    key(
        "maxConcurrentProofs",
        Kind::Int { min: 1, max: 256 },
        DefaultValue::Int(1),
        "plots scanned at once for one challenge (the scan uses every core either way)",
    ),
    key(
        "proofGenerationTimeoutSeconds",
        SECONDS,
        DefaultValue::Int(60),
        "upper bound on the work for one challenge",
    ),
    key(
        "connectionRetryIntervalSeconds",
        SECONDS,
        DefaultValue::Int(5),
        "base of the exponential reconnect backoff",
    ),
    key(
        "maxConnectionRetries",
        Kind::Int {
            min: 0,
            max: 1_000_000,
        },
        DefaultValue::Int(10),
        "consecutive failed connects before the node is reported unreachable (retries continue)",
    ),
    key(
        "enablePerformanceMonitoring",
        Kind::Bool,
        DefaultValue::Bool(true),
        "log per-plot scan times and warn about slow plots",
    ),
    key(
        "controlSocket",
        Kind::Path,
        DefaultValue::InData("minerd.sock"),
        "Unix socket of the control API (mode 0600)",
    ),
    key(
        "listenTcp",
        Kind::OptSocketAddr,
        DefaultValue::None,
        "optional TCP address of the control API; calls need the bearer token",
    ),
    key(
        "tokenFile",
        Kind::Path,
        DefaultValue::InData("minerd.token"),
        "bearer token for the TCP listener, created 0600 if absent",
    ),
    key(
        "scanStrategy",
        Kind::ScanStrategy,
        DefaultValue::Str("deadline"),
        "leaves scanned per plot and challenge",
    ),
    key(
        "autoStartMining",
        Kind::Bool,
        DefaultValue::Bool(true),
        "enable mining at start (else wait for `minerctl start`)",
    ),
    key(
        "logLevel",
        Kind::LogFilter,
        DefaultValue::Str("info"),
        "log filter; RUST_LOG wins when set",
    ),
    key(
        "logFormat",
        Kind::Choice(&["text", "json"]),
        DefaultValue::Str("text"),
        "log line format on stderr",
    ),
    key(
        "maxConcurrentPlotJobs",
        Kind::Int { min: 1, max: 64 },
        DefaultValue::Int(1),
        "plot jobs writing at the same time; more jobs queue",
    ),
    key(
        "plotThreads",
        Kind::Int { min: 0, max: 1024 },
        DefaultValue::Int(0),
        "hashing threads per plot job (0 = cores - 1, at least 1)",
    ),
    key(
        "plotScanIntervalSeconds",
        SECONDS,
        DefaultValue::Int(5),
        "seconds between scans of the plot directory for added or removed files",
    ),
    key(
        "buildMissingCaches",
        Kind::Bool,
        DefaultValue::Bool(true),
        "build the Merkle cache of valid plots without one, in the background (fast proofs)",
    ),
    key(
        "devnet.enabled",
        Kind::Bool,
        DefaultValue::Bool(false),
        "run a devnet node inside minerd and mine on it",
    ),
    key(
        "devnet.listenPort",
        Kind::Int { min: 0, max: 65535 },
        DefaultValue::Int(8333),
        "loopback port of the embedded devnet node (0 = any free port)",
    ),
    key(
        "devnet.epochDurationSeconds",
        SECONDS,
        DefaultValue::Int(10),
        "length of one devnet epoch",
    ),
    key(
        "devnet.difficulty",
        Kind::Int {
            min: 1,
            max: u64::MAX,
        },
        DefaultValue::Int(1),
        "initial devnet block difficulty",
    ),
    key(
        "devnet.dataDirectory",
        Kind::Path,
        DefaultValue::InData("devnet"),
        "where the devnet node keeps its chain",
    ),
];

/// Looks a key up by its dotted name.
pub fn key_def(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.key == name)
}

/// What the loader is told by the command line.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config`: a file that must exist.
    pub config_file: Option<PathBuf>,
    /// Overrides from flags: (key, raw value, the flag as typed, e.g. `--plot-dir`).
    pub cli: Vec<(String, String, String)>,
}

/// A loaded configuration with the origin of every value.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Origin of each key (every key of [`KEYS`] is present).
    pub sources: BTreeMap<&'static str, Source>,
    /// The configuration file consulted, and whether it existed.
    pub file: (PathBuf, bool),
    /// Settings that were overridden and deserve a warning at start (one line each).
    pub notes: Vec<String>,
}

/// A raw value before validation.
enum Raw {
    Yaml(Value),
    Text(String),
}

impl Raw {
    fn show(&self) -> String {
        match self {
            Raw::Text(s) => format!("{s:?}"),
            Raw::Yaml(Value::String(s)) => format!("{s:?}"),
            Raw::Yaml(v) => serde_yaml_ng::to_string(v)
                .map(|s| s.trim_end().to_owned())
                .unwrap_or_else(|_| "<unprintable>".into()),
        }
    }
}

fn home(env: &dyn Env) -> Result<PathBuf, ConfigError> {
    env.var("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or(ConfigError::NoHome)
}

fn expand_tilde(s: &str, env: &dyn Env) -> Result<PathBuf, ConfigError> {
    if s == "~" {
        return home(env);
    }
    match s.strip_prefix("~/") {
        Some(rest) => Ok(home(env)?.join(rest)),
        None => Ok(PathBuf::from(s)),
    }
}

fn valid_host(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    // RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn valid_log_filter(s: &str) -> bool {
    !s.trim().is_empty() && tracing_subscriber::EnvFilter::try_new(s).is_ok()
}

/// Validates one raw value against its key and returns it in normalized YAML form.
fn check(def: &KeyDef, raw: Raw, origin: &Source, env: &dyn Env) -> Result<Value, ConfigError> {
    let invalid = |raw: &Raw| ConfigError::InvalidValue {
        key: def.key.to_owned(),
        value: raw.show(),
        origin: origin.clone(),
        allowed: def.kind.allowed(),
    };
    let text: Option<String> = match &raw {
        Raw::Text(s) => Some(s.clone()),
        Raw::Yaml(Value::String(s)) => Some(s.clone()),
        Raw::Yaml(_) => None,
    };
    match def.kind {
        Kind::Bool => {
            let b = match &raw {
                Raw::Yaml(Value::Bool(b)) => Some(*b),
                Raw::Text(s) => match s.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => Some(true),
                    "false" | "0" | "no" | "off" => Some(false),
                    _ => None,
                },
                Raw::Yaml(_) => None,
            };
            b.map(Value::Bool).ok_or_else(|| invalid(&raw))
        }
        Kind::Int { min, max } => {
            let n = match &raw {
                Raw::Yaml(Value::Number(n)) => n.as_u64(),
                Raw::Text(s) => s.trim().parse::<u64>().ok(),
                Raw::Yaml(_) => None,
            };
            match n {
                Some(n) if (min..=max).contains(&n) => Ok(Value::Number(n.into())),
                _ => Err(invalid(&raw)),
            }
        }
        Kind::Path => match text {
            Some(s) if !s.trim().is_empty() => {
                let p = expand_tilde(&s, env)?;
                Ok(Value::String(p.to_string_lossy().into_owned()))
            }
            _ => Err(invalid(&raw)),
        },
        Kind::Host => match text {
            Some(s) if valid_host(&s) => Ok(Value::String(s)),
            _ => Err(invalid(&raw)),
        },
        Kind::NetworkId => match text {
            Some(s)
                if !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_graphic()) =>
            {
                Ok(Value::String(s))
            }
            _ => Err(invalid(&raw)),
        },
        Kind::OptSocketAddr => match (&raw, text) {
            (Raw::Yaml(Value::Null), _) => Ok(Value::Null),
            (_, Some(s)) if s.trim().is_empty() => Ok(Value::Null),
            (_, Some(s)) => match s.trim().parse::<SocketAddr>() {
                Ok(a) => Ok(Value::String(a.to_string())),
                Err(_) => Err(invalid(&raw)),
            },
            (_, None) => Err(invalid(&raw)),
        },
        Kind::ScanStrategy => match text.as_deref().map(str::parse::<ScanStrategy>) {
            Some(Ok(s)) => Ok(Value::String(s.to_string())),
            _ => Err(invalid(&raw)),
        },
        Kind::LogFilter => match text {
            Some(s) if valid_log_filter(&s) => Ok(Value::String(s)),
            _ => Err(invalid(&raw)),
        },
        Kind::Choice(words) => match text {
            Some(s) if words.contains(&s.as_str()) => Ok(Value::String(s)),
            _ => Err(invalid(&raw)),
        },
    }
}

fn allowed_keys() -> String {
    KEYS.iter().map(|k| k.key).collect::<Vec<_>>().join(", ")
}

/// Flattens the file's mapping into dotted keys, rejecting unknown keys and non-mappings.
fn flatten_file(
    map: &Mapping,
    prefix: &str,
    origin: &Source,
    out: &mut Vec<(String, Value)>,
) -> Result<(), ConfigError> {
    for (k, v) in map {
        let name = match k {
            Value::String(s) => s.clone(),
            other => Raw::Yaml(other.clone()).show(),
        };
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        let is_section = KEYS.iter().any(|d| d.key.starts_with(&format!("{full}.")));
        if is_section {
            match v {
                Value::Mapping(m) => flatten_file(m, &full, origin, out)?,
                Value::Null => {}
                _ => {
                    return Err(ConfigError::NotAMapping {
                        key: full,
                        origin: origin.clone(),
                    })
                }
            }
        } else if key_def(&full).is_some() {
            out.push((full, v.clone()));
        } else {
            return Err(ConfigError::UnknownKey {
                key: full,
                origin: origin.clone(),
                allowed: allowed_keys(),
            });
        }
    }
    Ok(())
}

/// Loads the configuration: defaults, file, environment, flags.
pub fn load(opts: &LoadOptions, env: &dyn Env) -> Result<Loaded, ConfigError> {
    let mut values: BTreeMap<&'static str, (Value, Source)> = BTreeMap::new();

    // Which file: --config, then $SPACETIME_MINER_CONFIG, then <data dir>/miner.yaml where the
    // data dir comes from the flag or the environment (the file cannot move itself).
    let explicit = opts
        .config_file
        .clone()
        .map(|p| (p, Source::Cli("--config".into())))
        .or_else(|| {
            env.var(CONFIG_ENV)
                .filter(|s| !s.is_empty())
                .map(|p| (PathBuf::from(p), Source::Env(CONFIG_ENV.into())))
        });
    let file = match &explicit {
        Some((p, _)) => expand_tilde(&p.to_string_lossy(), env)?,
        None => {
            let data_def = &KEYS[0]; // dataDirectory
            let from_cli = opts
                .cli
                .iter()
                .rev()
                .find(|(k, _, _)| k == "dataDirectory")
                .map(|(_, v, f)| (v.clone(), Source::Cli(f.clone())));
            let from_env = || {
                env.var(&data_def.env_var())
                    .map(|v| (v, Source::Env(data_def.env_var())))
            };
            let data = match from_cli.or_else(from_env) {
                Some((v, origin)) => {
                    let checked = check(data_def, Raw::Text(v), &origin, env)?;
                    PathBuf::from(checked.as_str().unwrap_or_default())
                }
                None => home(env)?.join(".spacetime"),
            };
            data.join("miner.yaml")
        }
    };
    let exists = file.is_file();
    if exists {
        let origin = Source::File(file.clone());
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
            path: file.clone(),
            source,
        })?;
        let doc: Value = serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: file.clone(),
            message: e.to_string(),
        })?;
        let mut flat = Vec::new();
        match doc {
            Value::Null => {}
            Value::Mapping(m) => flatten_file(&m, "", &origin, &mut flat)?,
            _ => {
                return Err(ConfigError::NotAMapping {
                    key: "<top level>".into(),
                    origin,
                })
            }
        }
        for (k, v) in flat {
            let def = key_def(&k).ok_or_else(|| ConfigError::UnknownKey {
                key: k.clone(),
                origin: origin.clone(),
                allowed: allowed_keys(),
            })?;
            let value = check(def, Raw::Yaml(v), &origin, env)?;
            values.insert(def.key, (value, origin.clone()));
        }
    } else if explicit.is_some() {
        return Err(ConfigError::MissingFile { path: file });
    }

    for def in KEYS {
        let var = def.env_var();
        if let Some(raw) = env.var(&var) {
            let origin = Source::Env(var);
            let value = check(def, Raw::Text(raw), &origin, env)?;
            values.insert(def.key, (value, origin));
        }
    }

    for (k, raw, flag) in &opts.cli {
        let origin = Source::Cli(flag.clone());
        let def = key_def(k).ok_or_else(|| ConfigError::UnknownKey {
            key: k.clone(),
            origin: origin.clone(),
            allowed: allowed_keys(),
        })?;
        let value = check(def, Raw::Text(raw.clone()), &origin, env)?;
        values.insert(def.key, (value, origin));
    }

    // Defaults, with data-directory-relative paths resolved against the effective one.
    let data_dir = match values.get("dataDirectory") {
        Some((Value::String(s), _)) => PathBuf::from(s),
        _ => home(env)?.join(".spacetime"),
    };
    for def in KEYS {
        if values.contains_key(def.key) {
            continue;
        }
        let v = match def.default {
            DefaultValue::Bool(b) => Value::Bool(b),
            DefaultValue::Int(n) => Value::Number(n.into()),
            DefaultValue::Str(s) => Value::String(s.into()),
            DefaultValue::None => Value::Null,
            DefaultValue::InData(rel) => {
                Value::String(data_dir.join(rel).to_string_lossy().into_owned())
            }
            DefaultValue::HomeSpacetime => Value::String(data_dir.to_string_lossy().into_owned()),
        };
        values.insert(def.key, (v, Source::Default));
    }

    let notes = apply_devnet_network(&mut values);

    let mut root = Mapping::new();
    let mut sources = BTreeMap::new();
    for (k, (v, src)) in values {
        sources.insert(k, src);
        match k.split_once('.') {
            Some((section, leaf)) => {
                let entry = root
                    .entry(Value::String(section.into()))
                    .or_insert_with(|| Value::Mapping(Mapping::new()));
                if let Value::Mapping(m) = entry {
                    m.insert(Value::String(leaf.into()), v);
                }
            }
            None => {
                root.insert(Value::String(k.into()), v);
            }
        }
    }
    let config: Config =
        serde_yaml_ng::from_value(Value::Mapping(root)).map_err(|e| ConfigError::InvalidValue {
            // Unreachable when KEYS and Config agree (a unit test checks that they do).
            key: "<config>".into(),
            value: String::new(),
            origin: Source::Default,
            allowed: e.to_string(),
        })?;
    Ok(Loaded {
        config,
        sources,
        file: (file, exists),
        notes,
    })
}

/// With `devnet.enabled`, the miner mines on the embedded node, whose network is
/// [`DEVNET_NETWORK_ID`]: the effective `networkId` becomes that id here, in one place, so
/// that the status, the logs and `minerd config` say what the miner actually uses. A
/// different value set by the user is replaced, with a note for the start-up log.
fn apply_devnet_network(values: &mut BTreeMap<&'static str, (Value, Source)>) -> Vec<String> {
    let enabled = matches!(values.get("devnet.enabled"), Some((Value::Bool(true), _)));
    if !enabled {
        return Vec::new();
    }
    let mut notes = Vec::new();
    let overrides = match values.get("networkId") {
        Some((Value::String(id), src)) if id != DEVNET_NETWORK_ID && *src != Source::Default => {
            notes.push(format!(
                "networkId {id:?} ({src}) is not used: devnet.enabled mines on the embedded \
                 devnet node, network {DEVNET_NETWORK_ID:?}"
            ));
            Some(format!("{id:?} ({src})"))
        }
        _ => None,
    };
    values.insert(
        "networkId",
        (
            Value::String(DEVNET_NETWORK_ID.into()),
            Source::Devnet { overrides },
        ),
    );
    notes
}

impl Config {
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

impl Loaded {
    /// The effective configuration as YAML, each line commented with where its value came
    /// from (what `minerd config` prints; the output is itself a valid config file).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let (file, exists) = &self.file;
        out.push_str(&format!(
            "# minerd effective configuration\n# config file: {} ({})\n",
            file.display(),
            if *exists {
                "read"
            } else {
                "not found: defaults used"
            }
        ));
        let mut section = "";
        let root = serde_yaml_ng::to_value(&self.config).unwrap_or(Value::Null);
        for def in KEYS {
            let (sect, leaf) = def.key.split_once('.').unwrap_or(("", def.key));
            if sect != section {
                out.push_str(&format!("{sect}:\n"));
                section = sect;
            }
            let v = if sect.is_empty() {
                root.get(leaf)
            } else {
                root.get(sect).and_then(|s| s.get(leaf))
            };
            let text = v
                .and_then(|v| serde_yaml_ng::to_string(v).ok())
                .map(|s| s.trim_end().to_owned())
                .unwrap_or_else(|| "null".into());
            let indent = if sect.is_empty() { "" } else { "  " };
            let src = self
                .sources
                .get(def.key)
                .map(ToString::to_string)
                .unwrap_or_default();
            let line = format!("{indent}{leaf}: {text}");
            out.push_str(&format!("{line:<60} # {src}; env {}\n", def.env_var()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        m.entry("HOME".into())
            .or_insert_with(|| "/home/test".into());
        m
    }

    fn load_yaml(yaml: &str, extra_env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("miner.yaml");
        std::fs::write(&path, yaml).unwrap();
        let opts = LoadOptions {
            config_file: Some(path),
            cli: vec![],
        };
        load(&opts, &env(extra_env))
    }

    #[test]
    fn defaults_follow_home_and_reference() {
        let l = load(&LoadOptions::default(), &env(&[])).unwrap();
        let c = &l.config;
        assert_eq!(c.data_directory, PathBuf::from("/home/test/.spacetime"));
        assert_eq!(
            c.plot_directory,
            PathBuf::from("/home/test/.spacetime/plots")
        );
        assert_eq!(
            c.plot_metadata_path,
            PathBuf::from("/home/test/.spacetime/plots_metadata.json")
        );
        assert_eq!(c.node_address, "127.0.0.1");
        assert_eq!(c.node_port, 8333);
        assert_eq!(c.max_concurrent_proofs, 1);
        assert_eq!(c.proof_generation_timeout_seconds, 60);
        assert_eq!(c.connection_retry_interval_seconds, 5);
        assert_eq!(c.max_connection_retries, 10);
        assert!(c.enable_performance_monitoring);
        assert_eq!(c.network_id, DEVNET_NETWORK_ID);
        assert_eq!(c.scan_strategy, ScanStrategy::Deadline);
        assert_eq!(c.listen_tcp, None);
        assert!(!c.devnet.enabled);
        assert!(l.sources.values().all(|s| *s == Source::Default));
        assert_eq!(l.sources.len(), KEYS.len());
        assert!(!l.file.1);
    }

    #[test]
    fn layers_apply_in_order_and_record_sources() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(
            &path,
            "nodePort: 9000\nnodeAddress: node.example.org\ndevnet:\n  epochDurationSeconds: 3\n",
        )
        .unwrap();
        let e = env(&[
            ("SPACETIME_MINER_NODE_PORT", "9001"),
            ("SPACETIME_MINER_DEVNET_ENABLED", "true"),
            ("SPACETIME_MINER_DATA_DIRECTORY", "~/x"),
        ]);
        let opts = LoadOptions {
            config_file: Some(path.clone()),
            cli: vec![("nodePort".into(), "9002".into(), "--node-port".into())],
        };
        let l = load(&opts, &e).unwrap();
        assert_eq!(l.config.node_port, 9002);
        assert_eq!(l.config.node_address, "node.example.org");
        assert_eq!(l.config.devnet.epoch_duration_seconds, 3);
        assert!(l.config.devnet.enabled);
        assert_eq!(l.config.data_directory, PathBuf::from("/home/test/x"));
        assert_eq!(l.config.plot_directory, PathBuf::from("/home/test/x/plots"));
        assert_eq!(l.sources["nodePort"], Source::Cli("--node-port".into()));
        assert_eq!(l.sources["nodeAddress"], Source::File(path));
        assert_eq!(
            l.sources["devnet.enabled"],
            Source::Env("SPACETIME_MINER_DEVNET_ENABLED".into())
        );
        let text = l.render();
        assert!(text.contains("nodePort: 9002"), "{text}");
        assert!(text.contains("flag --node-port"), "{text}");
        // The rendered output is itself a valid configuration.
        let reparsed = load_yaml(
            &text
                .lines()
                .map(|l| l.split(" #").next().unwrap())
                .collect::<Vec<_>>()
                .join("\n"),
            &[],
        )
        .unwrap();
        assert_eq!(reparsed.config, l.config);
    }

    #[test]
    fn unknown_key_is_named_with_the_allowed_keys() {
        let err = load_yaml("nodePort: 1\nplotDir: /x\n", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown config key `plotDir`"), "{msg}");
        assert!(msg.contains("plotDirectory"), "{msg}");
        let err = load_yaml("devnet:\n  bogus: 1\n", &[]).unwrap_err();
        assert!(err.to_string().contains("`devnet.bogus`"), "{err}");
    }

    #[test]
    fn wrong_type_and_out_of_range_name_key_value_and_range() {
        let msg = load_yaml("nodePort: abc\n", &[]).unwrap_err().to_string();
        assert!(msg.contains("`nodePort`"), "{msg}");
        assert!(msg.contains("\"abc\""), "{msg}");
        assert!(msg.contains("from 1 to 65535"), "{msg}");
        let msg = load_yaml("maxConcurrentProofs: 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`maxConcurrentProofs`") && msg.contains("from 1 to 256"),
            "{msg}"
        );
        let msg = load_yaml("autoStartMining: maybe\n", &[])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("true or false"), "{msg}");
        let msg = load_yaml("logFormat: xml\n", &[]).unwrap_err().to_string();
        assert!(msg.contains("one of text, json"), "{msg}");
        let msg = load_yaml("nodeAddress: \"bad host!\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("host name"), "{msg}");
        let msg = load_yaml("devnet: 3\n", &[]).unwrap_err().to_string();
        assert!(msg.contains("`devnet` must be a mapping"), "{msg}");
        let msg = load(
            &LoadOptions::default(),
            &env(&[("SPACETIME_MINER_NODE_PORT", "70000")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("environment SPACETIME_MINER_NODE_PORT"),
            "{msg}"
        );
        assert!(msg.contains("\"70000\""), "{msg}");
    }

    #[test]
    fn yaml_syntax_error_names_the_file() {
        let msg = load_yaml("nodePort: [1,\n", &[]).unwrap_err().to_string();
        assert!(
            msg.contains("miner.yaml") && msg.contains("not valid YAML"),
            "{msg}"
        );
    }

    #[test]
    fn explicit_missing_file_is_an_error_default_missing_is_not() {
        let err = load(
            &LoadOptions {
                config_file: Some("/nonexistent/m.yaml".into()),
                cli: vec![],
            },
            &env(&[]),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile { .. }));
        assert!(load(&LoadOptions::default(), &env(&[])).is_ok());
    }

    #[test]
    fn host_names_and_socket_addresses() {
        assert!(valid_host("localhost"));
        assert!(valid_host("node-1.example.org"));
        assert!(valid_host("::1"));
        assert!(!valid_host("-bad.example"));
        assert!(!valid_host("a..b"));
        assert!(!valid_host("host:8333"));
        let l = load_yaml("listenTcp: 127.0.0.1:0\n", &[]).unwrap();
        assert_eq!(l.config.listen_tcp, Some("127.0.0.1:0".parse().unwrap()));
        let l = load_yaml("listenTcp: \"\"\n", &[]).unwrap();
        assert_eq!(l.config.listen_tcp, None);
        assert!(load_yaml("listenTcp: localhost\n", &[]).is_err());
    }

    #[test]
    fn env_var_names() {
        assert_eq!(
            key_def("proofGenerationTimeoutSeconds").unwrap().env_var(),
            "SPACETIME_MINER_PROOF_GENERATION_TIMEOUT_SECONDS"
        );
        assert_eq!(
            key_def("devnet.listenPort").unwrap().env_var(),
            "SPACETIME_MINER_DEVNET_LISTEN_PORT"
        );
    }

    #[test]
    fn readme_documents_every_key_and_variable() {
        let readme = include_str!("../../README.md");
        for def in KEYS {
            assert!(
                readme.contains(&format!("`{}`", def.key)),
                "README lacks {}",
                def.key
            );
            assert!(
                readme.contains(&def.env_var()),
                "README lacks {}",
                def.env_var()
            );
        }
    }

    #[test]
    fn devnet_forces_the_devnet_network_id_and_says_so() {
        // A network id from the file and devnet from a flag: the devnet's id wins, with a note.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, "networkId: spacetime-testnet-v1\n").unwrap();
        let opts = LoadOptions {
            config_file: Some(path.clone()),
            cli: vec![("devnet.enabled".into(), "true".into(), "--devnet".into())],
        };
        let l = load(&opts, &env(&[])).unwrap();
        assert_eq!(l.config.network_id, DEVNET_NETWORK_ID);
        let src = l.sources["networkId"].to_string();
        assert!(
            src.contains("devnet.enabled") && src.contains("spacetime-testnet-v1"),
            "{src}"
        );
        assert_eq!(l.notes.len(), 1);
        assert!(l.notes[0].contains("spacetime-testnet-v1"), "{:?}", l.notes);
        let text = l.render();
        let line = text.lines().find(|l| l.starts_with("networkId:")).unwrap();
        assert!(
            line.contains(DEVNET_NETWORK_ID) && line.contains("devnet.enabled"),
            "{line}"
        );
        // Devnet with the default id: same id, the source says why, nothing to warn about.
        let l = load(
            &LoadOptions::default(),
            &env(&[("SPACETIME_MINER_DEVNET_ENABLED", "true")]),
        )
        .unwrap();
        assert_eq!(l.config.network_id, DEVNET_NETWORK_ID);
        assert_eq!(l.sources["networkId"], Source::Devnet { overrides: None });
        assert!(l.notes.is_empty());
        // Without devnet the configured id stands.
        let l = load(
            &LoadOptions {
                config_file: Some(path),
                cli: vec![],
            },
            &env(&[]),
        )
        .unwrap();
        assert_eq!(l.config.network_id, "spacetime-testnet-v1");
        assert!(l.notes.is_empty());
    }

    #[test]
    fn missing_home_without_data_dir_is_reported() {
        let err = load(&LoadOptions::default(), &HashMap::new()).unwrap_err();
        assert!(matches!(err, ConfigError::NoHome));
    }
}
