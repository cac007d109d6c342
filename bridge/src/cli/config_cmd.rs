//! `ringbridge config default` and `ringbridge config check FILE`.

use std::path::PathBuf;

use clap::Subcommand;
use ringbridge_bridge::config::{Config, DEFAULT_CONFIG};

/// `ringbridge config ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the default configuration, every key commented with its meaning.
    Default,
    /// Validate a configuration file: exit 0 when `run` would accept it, else
    /// print the offending key and what it expects, and exit 1.
    Check {
        /// The configuration file (TOML).
        file: PathBuf,
    },
}

/// Runs a `config` subcommand.
pub(crate) fn run(cmd: ConfigCommand) -> Result<(), String> {
    match cmd {
        ConfigCommand::Default => {
            print!("{DEFAULT_CONFIG}");
            Ok(())
        }
        ConfigCommand::Check { file } => {
            Config::load(&file).map_err(|e| format!("config {}: {e}", file.display()))?;
            println!("{}: ok", file.display());
            Ok(())
        }
    }
}
