//! `plotDirectories` and its one-entry form `plotDirectory`: one setting, two spellings.
//!
//! The highest layer that sets either key decides (flags over the environment over the
//! file), as for any other key: `--plot-dir /x` replaces a `plotDirectories` list of the
//! file. Setting both in the same layer is a configuration error: which one was meant
//! cannot be told. The effective `plotDirectory` is the first entry of the effective
//! `plotDirectories`; `minerd config` prints the list (and `plotDirectory` as a comment, so
//! that its output stays a valid configuration file).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_yaml_ng::Value;

use super::load::{expand_tilde, Raw};
use super::{ConfigError, Env, Source};

/// The one-entry spelling.
pub(super) const ONE: &str = "plotDirectory";
/// The list spelling.
pub(super) const LIST: &str = "plotDirectories";

/// The values collected so far, by key, with their origin.
pub(super) type Values = BTreeMap<&'static str, (Value, Source)>;

/// A `Kind::PathList` value in normalized form (a YAML sequence of strings), or `None` when
/// it is not a non-empty list of distinct non-empty paths.
pub(super) fn check_list(raw: &Raw, env: &dyn Env) -> Result<Option<Value>, ConfigError> {
    let items: Vec<String> = match raw {
        Raw::Yaml(Value::Sequence(seq)) => {
            match seq.iter().map(|v| v.as_str().map(str::to_owned)).collect() {
                Some(items) => items,
                None => return Ok(None),
            }
        }
        Raw::Yaml(Value::String(s)) | Raw::Text(s) => std::env::split_paths(s)
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        Raw::Yaml(_) => return Ok(None),
    };
    let mut paths: Vec<PathBuf> = Vec::with_capacity(items.len());
    for item in items {
        if item.trim().is_empty() {
            return Ok(None);
        }
        let p = expand_tilde(&item, env)?;
        // `Path` equality compares components: `/a/` and `/a` are one directory.
        if paths.contains(&p) {
            return Ok(None);
        }
        paths.push(p);
    }
    if paths.is_empty() {
        return Ok(None);
    }
    Ok(Some(Value::Sequence(
        paths
            .into_iter()
            .map(|p| Value::String(p.to_string_lossy().into_owned()))
            .collect(),
    )))
}

/// The other spelling of `key`, if it is one of the two.
fn partner(key: &str) -> Option<&'static str> {
    match key {
        ONE => Some(LIST),
        LIST => Some(ONE),
        _ => None,
    }
}

/// Whether two origins are the same layer (file, environment or flags).
fn same_layer(a: &Source, b: &Source) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Records `value` for `key` from `origin`, the later layer replacing the earlier: for the
/// two spellings of the plot directories, a value of the other spelling from a lower layer
/// is dropped, and one from the same layer is a [`ConfigError::Conflict`].
pub(super) fn insert(
    values: &mut Values,
    key: &'static str,
    value: Value,
    origin: Source,
) -> Result<(), ConfigError> {
    if let Some(other) = partner(key) {
        if let Some((_, src)) = values.get(other) {
            if same_layer(src, &origin) {
                return Err(ConfigError::Conflict {
                    one: ONE.into(),
                    list: LIST.into(),
                    origins: if *src == origin {
                        origin.to_string()
                    } else {
                        format!("{src} and {origin}")
                    },
                });
            }
            values.remove(other);
        }
    }
    values.insert(key, (value, origin));
    Ok(())
}

/// Once every layer is in, before the defaults: whichever spelling was set gives the other
/// (the first entry, or a one-entry list), with the same origin. When neither was set the
/// defaults apply (`plotDirectory`, then `plotDirectories` = `[plotDirectory]`).
pub(super) fn resolve(values: &mut Values) {
    if let Some((Value::Sequence(seq), src)) = values.get(LIST).cloned() {
        if let Some(first) = seq.first() {
            values.insert(ONE, (first.clone(), src));
        }
    } else if let Some((one, src)) = values.get(ONE).cloned() {
        values.insert(LIST, (Value::Sequence(vec![one]), src));
    }
}

/// A list value on one line, as YAML flow sequence of double-quoted strings.
pub(super) fn render_list(v: &Value) -> Option<String> {
    let Value::Sequence(seq) = v else { return None };
    let items: Vec<String> = seq
        .iter()
        .map(|i| serde_json::to_string(i.as_str().unwrap_or_default()).unwrap_or_default())
        .collect();
    Some(format!("[{}]", items.join(", ")))
}
