//! `ringbridge tune check|apply`, and the start-up warning of `run`.

use std::path::PathBuf;

use clap::Subcommand;
use ringbridge_bridge::config::Config;
use ringbridge_tuning::{Host, Profile};

/// `ringbridge tune ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum TuneCommand {
    /// Compare the host with the sysctl profile and check the CPU governor,
    /// shard core isolation, the memlock limit and NIC interrupt placement.
    /// Prints key, current value, wanted value and a verdict; exits 1 when
    /// something is off.
    Check {
        /// Root of the host to check (a fake tree in tests). Default `/`.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Configuration file (TOML): its `media.port_range` and `media.cores`
        /// are what the profile and the core checks are for.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write `<root>/etc/sysctl.d/90-ringbridge.conf` and raise every running
    /// sysctl below the profile (values above it are kept).
    Apply {
        /// Root of the host to tune; with anything but `/`, nothing outside it
        /// is touched. Default `/`.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Configuration file (TOML), for `media.port_range`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Show what would be written; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn profile(cfg: &Config) -> Result<Profile, String> {
    Profile::embedded(cfg.media.port_range).map_err(|e| format!("tuning profile: {e}"))
}

/// Runs a `tune` subcommand.
pub(crate) fn run(cmd: TuneCommand) -> Result<(), String> {
    match cmd {
        TuneCommand::Check { root, config } => {
            let cfg = crate::load_config(config)?;
            let cores: Vec<usize> = crate::shard_cores(&cfg).into_iter().flatten().collect();
            let report = ringbridge_tuning::check(&Host::new(&root), &profile(&cfg)?, &cores);
            print!("{}", report.render());
            if report.is_ok() {
                Ok(())
            } else {
                Err("the host is not tuned as the profile wants (see OFF above)".into())
            }
        }
        TuneCommand::Apply {
            root,
            config,
            dry_run,
        } => {
            let cfg = crate::load_config(config)?;
            let report = ringbridge_tuning::apply(&Host::new(&root), &profile(&cfg)?, dry_run)
                .map_err(|e| format!("tune apply: {e}"))?;
            let verb = if dry_run { "would write" } else { "wrote" };
            println!("{verb} {}", report.file.display());
            if dry_run {
                print!("{}", report.file_text);
            }
            if report.writes.is_empty() {
                println!("every running value already meets the profile");
            }
            for w in &report.writes {
                let verb = if dry_run { "would set" } else { "set" };
                println!(
                    "{verb} {} = {} (was {})",
                    w.key,
                    w.to,
                    match w.from.as_deref() {
                        None => "unreadable",
                        Some("") => "empty",
                        Some(v) => v,
                    }
                );
            }
            Ok(())
        }
    }
}

/// Logs a warning for each sysctl of the live host below the profile. Never
/// fails: an untuned host still runs, just with more drops under load.
pub(crate) fn warn_below_profile(cfg: &Config) {
    let Ok(profile) = Profile::embedded(cfg.media.port_range) else {
        return;
    };
    for line in ringbridge_tuning::below_profile(&Host::live(), &profile) {
        tracing::warn!("{line}; run `ringbridge tune apply`");
    }
}
