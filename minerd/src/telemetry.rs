//! Logging: one `tracing` subscriber for the whole process, writing to stderr.
//!
//! The filter is `RUST_LOG` when set, else the configured `logLevel`. Text lines by default,
//! one JSON object per line with `logFormat: json`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls are ignored), so
/// tests running the daemon in-process do not fail.
pub fn init(level: &str, format: LogFormat, rust_log: Option<&str>) {
    let filter = rust_log
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| EnvFilter::try_new(s).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true);
    // try_init fails only when a subscriber is already installed: keep the first one.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
