//! `minerd config`: the effective configuration as YAML, each value with its origin.

use serde_yaml_ng::Value;

use super::{Loaded, KEYS};

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
                .and_then(|v| {
                    super::plot_dirs::render_list(v).or_else(|| serde_yaml_ng::to_string(v).ok())
                })
                .map(|s| s.trim_end().to_owned())
                .unwrap_or_else(|| "null".into());
            let indent = if sect.is_empty() { "" } else { "  " };
            let src = self
                .sources
                .get(def.key)
                .map(ToString::to_string)
                .unwrap_or_default();
            // The one-entry spelling as a comment: with the list beside it, the output
            // would not load (both spellings in one file are refused).
            let comment = if def.key == super::plot_dirs::ONE {
                "# "
            } else {
                ""
            };
            let line = format!("{indent}{comment}{leaf}: {text}");
            out.push_str(&format!("{line:<60} # {src}; env {}\n", def.env_var()));
        }
        out
    }
}
