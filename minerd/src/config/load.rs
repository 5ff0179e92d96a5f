//! The layered loader: defaults, the YAML file, `SPACETIME_MINER_*`, then flags; each
//! value validated against its key and kept with its origin.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde_yaml_ng::{Mapping, Value};

use super::plot_dirs;
use super::*;

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
pub(super) enum Raw {
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

pub(super) fn home(env: &dyn Env) -> Result<PathBuf, ConfigError> {
    env.var("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or(ConfigError::NoHome)
}

pub(super) fn expand_tilde(s: &str, env: &dyn Env) -> Result<PathBuf, ConfigError> {
    if s == "~" {
        return home(env);
    }
    match s.strip_prefix("~/") {
        Some(rest) => Ok(home(env)?.join(rest)),
        None => Ok(PathBuf::from(s)),
    }
}

pub(super) fn valid_host(s: &str) -> bool {
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

pub(super) fn valid_log_filter(s: &str) -> bool {
    !s.trim().is_empty() && tracing_subscriber::EnvFilter::try_new(s).is_ok()
}

/// Validates one raw value against its key and returns it in normalized YAML form.
pub(super) fn check(
    def: &KeyDef,
    raw: Raw,
    origin: &Source,
    env: &dyn Env,
) -> Result<Value, ConfigError> {
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
        Kind::OptPath => match (&raw, text) {
            (Raw::Yaml(Value::Null), _) => Ok(Value::Null),
            (_, Some(s)) if s.trim().is_empty() => Ok(Value::Null),
            (_, Some(s)) => {
                let p = expand_tilde(&s, env)?;
                Ok(Value::String(p.to_string_lossy().into_owned()))
            }
            (_, None) => Err(invalid(&raw)),
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
        Kind::PathList => super::plot_dirs::check_list(&raw, env)?.ok_or_else(|| invalid(&raw)),
        Kind::Origins => {
            let items: Option<Vec<String>> = match (&raw, text) {
                (Raw::Yaml(Value::Null), _) => Some(Vec::new()),
                (Raw::Yaml(Value::Sequence(seq)), _) => {
                    seq.iter().map(|v| v.as_str().map(str::to_owned)).collect()
                }
                (_, Some(s)) => Some(
                    s.split(',')
                        .map(|o| o.trim().to_owned())
                        .filter(|o| !o.is_empty())
                        .collect(),
                ),
                (_, None) => None,
            };
            match items {
                Some(list) if list.iter().all(|o| valid_origin(o)) => {
                    Ok(Value::String(list.join(",")))
                }
                _ => Err(invalid(&raw)),
            }
        }
    }
}

/// A web origin as browsers send it: `http[s]://host[:port]`, nothing after.
fn valid_origin(o: &str) -> bool {
    let Some(rest) = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' ', ','])
        && http::uri::Authority::try_from(rest).is_ok()
        && http::HeaderValue::from_str(o).is_ok()
}

pub(super) fn allowed_keys() -> String {
    KEYS.iter().map(|k| k.key).collect::<Vec<_>>().join(", ")
}

/// Flattens the file's mapping into dotted keys, rejecting unknown keys and non-mappings.
pub(super) fn flatten_file(
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
            plot_dirs::insert(&mut values, def.key, value, origin.clone())?;
        }
    } else if explicit.is_some() {
        return Err(ConfigError::MissingFile { path: file });
    }

    for def in KEYS {
        let var = def.env_var();
        if let Some(raw) = env.var(&var) {
            let origin = Source::Env(var);
            let value = check(def, Raw::Text(raw), &origin, env)?;
            plot_dirs::insert(&mut values, def.key, value, origin)?;
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
        plot_dirs::insert(&mut values, def.key, value, origin)?;
    }
    plot_dirs::resolve(&mut values);

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
            // The other key comes earlier in `KEYS`, so it has its value by now.
            DefaultValue::ListOf(other) => Value::Sequence(
                values
                    .get(other)
                    .map(|(v, _)| v.clone())
                    .into_iter()
                    .collect(),
            ),
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

impl Loaded {
    /// [`check_tcp_security`] with the origin of each value in the message. `minerd` runs
    /// it before serving; `minerd tls-init` does not (it is what fixes the problem).
    pub fn check_tcp_security(&self) -> Result<(), ConfigError> {
        check_tcp_security(&self.config, &|k| {
            self.sources
                .get(k)
                .map_or_else(|| "default".to_owned(), ToString::to_string)
        })
    }
}

/// The TCP listener's transport security: a certificate comes with its key, and a listener
/// reachable from other hosts speaks TLS unless `allowPlaintextTcp` says otherwise (the bearer
/// token would cross the network in clear). `origin` names where a key's value came from.
pub fn check_tcp_security(
    config: &Config,
    origin: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(_), None) | (None, Some(_)) => {
            let (set, missing) = if config.tls_cert_file.is_some() {
                ("tlsCertFile", "tlsKeyFile")
            } else {
                ("tlsKeyFile", "tlsCertFile")
            };
            return Err(ConfigError::Combination {
                message: format!(
                    "`{set}` ({}) is set without `{missing}`: set both (`minerd tls-init` \
                     writes a self-signed pair) or neither",
                    origin(set)
                ),
            });
        }
        _ => {}
    }
    if let Some(addr) = config.listen_tcp {
        if !addr.ip().is_loopback() && config.tls_cert_file.is_none() && !config.allow_plaintext_tcp
        {
            return Err(ConfigError::Combination {
                message: format!(
                    "`listenTcp` {addr} ({}) is reachable from other hosts and the TCP listener \
                     has no TLS: the bearer token would cross the network in clear. Set \
                     `tlsCertFile` and `tlsKeyFile` (`minerd tls-init` writes a self-signed \
                     pair), listen on a loopback address, or set `allowPlaintextTcp: true` to \
                     accept that risk",
                    origin("listenTcp")
                ),
            });
        }
    }
    Ok(())
}

/// With `devnet.enabled`, the miner mines on the embedded node, whose network is
/// [`DEVNET_NETWORK_ID`]: the effective `networkId` becomes that id here, in one place, so
/// that the status, the logs and `minerd config` say what the miner actually uses. A
/// different value set by the user is replaced, with a note for the start-up log.
pub(super) fn apply_devnet_network(
    values: &mut BTreeMap<&'static str, (Value, Source)>,
) -> Vec<String> {
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
