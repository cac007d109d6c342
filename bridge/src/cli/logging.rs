//! The log subscriber: `log.level` (overridden by `RUST_LOG`) and `log.format`,
//! to stderr (the journal under systemd).

use std::io::IsTerminal as _;

use ringbridge_bridge::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set and not empty, wins
/// over `log.level`; a `RUST_LOG` that does not parse is reported and
/// `log.level` used instead.
pub(crate) fn init(cfg: &LogConfig) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| EnvFilter::try_new(&v).map_err(|e| (v, e)));
    let (filter, bad_env) = match from_env {
        Some(Ok(f)) => (f, None),
        Some(Err((v, e))) => (level_filter(&cfg.level), Some((v, e.to_string()))),
        None => (level_filter(&cfg.level), None),
    };
    let ansi = std::io::stderr().is_terminal();
    match cfg.format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_env_filter(filter)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init(),
    }
    if let Some((value, error)) = bad_env {
        tracing::warn!(rust_log = %value, %error, level = %cfg.level, "RUST_LOG does not parse; using log.level");
    }
}

fn level_filter(level: &str) -> EnvFilter {
    // `Config::validate` checked the syntax; "info" is a fallback for safety.
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
}
