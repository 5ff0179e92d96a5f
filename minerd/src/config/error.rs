//! Where a value came from ([`Source`]) and why a configuration cannot be used
//! ([`ConfigError`]).

use std::fmt;
use std::path::PathBuf;

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
    /// Keys that are valid one by one but not together (the message names them and says
    /// how to fix it).
    #[error("{message}")]
    Combination {
        /// What is wrong and what to do.
        message: String,
    },
    /// Both spellings of one setting (`plotDirectory`, `plotDirectories`) in one layer.
    #[error(
        "`{one}` and `{list}` are both set ({origins}): `{one}` is the one-entry form of \
         `{list}`, so set only one of them (a later layer may replace either: the \
         environment replaces the file, a flag replaces both)"
    )]
    Conflict {
        /// The one-entry spelling.
        one: String,
        /// The list spelling.
        list: String,
        /// Where the two values came from.
        origins: String,
    },
    /// Two entries of `plotDirectories` are one directory (found at start, once they exist).
    #[error(
        "`plotDirectories` lists one directory twice: {first} and {second} are the same \
         directory (a link or a bind mount); list it once"
    )]
    SameDirectory {
        /// The first name.
        first: PathBuf,
        /// The other name.
        second: PathBuf,
    },
    /// No home directory to derive `~/.spacetime` from.
    #[error("HOME is not set: set it or pass --data-dir")]
    NoHome,
}
