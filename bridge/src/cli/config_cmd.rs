//! `ringbridge config default`, `config check FILE` and `config init-secret FILE`.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use ringbridge_bridge::config::{Config, DEFAULT_CONFIG};
use ringbridge_control::random_secret;

/// `ringbridge config ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the default configuration, every key commented with its meaning.
    Default,
    /// Validate a configuration file: exit 0 when `run --config FILE` would
    /// accept it, else print the offending dotted key and the reason, and exit 1.
    Check {
        /// The configuration file (TOML).
        file: PathBuf,
    },
    /// Write a random `auth.app_secret` into a configuration file that sets
    /// none (replacing its commented `# app_secret = ...` line, or under
    /// `[auth]`). The file keeps its owner and mode; the secret is never printed.
    /// Does nothing when the file already sets one.
    InitSecret {
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
            let cfg = Config::load(&file).map_err(|e| format!("config {}: {e}", file.display()))?;
            cfg.require_key()
                .map_err(|e| format!("config {}: {e}", file.display()))?;
            println!("{}: ok", file.display());
            Ok(())
        }
        ConfigCommand::InitSecret { file } => {
            if init_secret(&file)? {
                println!(
                    "{}: wrote a random auth.app_secret (not shown; `ringbridge token --config {}` \
                     makes tokens with it)",
                    file.display(),
                    file.display()
                );
            } else {
                println!(
                    "{}: auth.app_secret is already set; unchanged",
                    file.display()
                );
            }
            Ok(())
        }
    }
}

/// Writes a random secret into `file` if it sets none; `Ok(false)` if it does.
fn init_secret(file: &Path) -> Result<bool, String> {
    let shown = file.display();
    let text = fs::read_to_string(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let cfg = Config::parse(&text).map_err(|e| format!("config {shown}: {e}"))?;
    if cfg.auth.app_secret.is_some() {
        return Ok(false);
    }
    let secret = random_secret();
    let edited = with_secret(&text, &secret);
    let placed = Config::parse(&edited)
        .ok()
        .and_then(|c| c.auth.app_secret)
        .is_some_and(|s| s == secret);
    if !placed {
        return Err(format!(
            "cannot place auth.app_secret in {shown} automatically; add \
             `app_secret = \"<at least 16 characters>\"` under [auth] by hand"
        ));
    }
    replace_file(file, &edited).map_err(|e| format!("cannot write {shown}: {e}"))?;
    Ok(true)
}

/// `text` with `app_secret = "<secret>"` in its `[auth]` table: in place of a
/// commented `# app_secret = ...` line there, else right under the header, else
/// in a new `[auth]` table at the end.
fn with_secret(text: &str, secret: &str) -> String {
    let line = format!("app_secret = \"{secret}\"");
    let lines: Vec<&str> = text.lines().collect();
    let is_header = |l: &str| l.trim_start().starts_with('[');
    let Some(auth) = lines.iter().position(|l| {
        let t = l.trim();
        t == "[auth]"
            || (t.starts_with("[auth]") && t["[auth]".len()..].trim_start().starts_with('#'))
    }) else {
        let mut out = text.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("\n[auth]\n{line}\n"));
        return out;
    };
    let end = lines[auth + 1..]
        .iter()
        .position(|l| is_header(l))
        .map_or(lines.len(), |i| auth + 1 + i);
    let template = (auth + 1..end).find(|&i| {
        let t = lines[i].trim_start().trim_start_matches('#').trim_start();
        lines[i].trim_start().starts_with('#')
            && t.strip_prefix("app_secret")
                .is_some_and(|r| r.trim_start().starts_with('='))
    });
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    match template {
        Some(i) => out[i] = line,
        None => out.insert(auth + 1, line),
    }
    let mut joined = out.join("\n");
    if text.ends_with('\n') {
        joined.push('\n');
    }
    joined
}

/// Replaces `file` atomically with `text`, keeping its mode and (when allowed)
/// its owner and group. The new file is created readable by its owner only, so
/// the secret is never readable by others, not even for a moment.
fn replace_file(file: &Path, text: &str) -> std::io::Result<()> {
    let meta = fs::metadata(file)?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .map_or("config".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        // Owner first (only root may give a file away), then the old mode.
        let _ = std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()));
        f.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        f.sync_all()?;
        fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-s3cr3t-s3cr3t";

    fn secret_of(text: &str) -> Option<String> {
        Config::parse(text).expect("parses").auth.app_secret
    }

    #[test]
    fn the_default_config_gets_its_commented_line_replaced() {
        let out = with_secret(DEFAULT_CONFIG, SECRET);
        assert_eq!(secret_of(&out).as_deref(), Some(SECRET));
        assert!(!out.contains("# app_secret = \"...\""), "template replaced");
        assert_eq!(out.lines().count(), DEFAULT_CONFIG.lines().count());
        // Everything else is kept, comments included.
        assert!(out.contains("# HMAC secret"));
        assert!(out.ends_with('\n'));
    }

    #[test]
    fn files_without_a_template_or_an_auth_table() {
        let out = with_secret("[auth]\napp_id = \"x\"\n[media]\nio = \"mmsg\"\n", SECRET);
        assert_eq!(secret_of(&out).as_deref(), Some(SECRET));
        assert!(out.starts_with("[auth]\napp_secret = "), "{out}");

        let out = with_secret("[media]\nio = \"mmsg\"", SECRET);
        assert_eq!(secret_of(&out).as_deref(), Some(SECRET));
        assert!(out.contains("io = \"mmsg\"\n\n[auth]\n"), "{out}");

        // A commented app_secret under another table is not [auth]'s.
        let out = with_secret("[media]\n# app_secret = \"x\"\n[auth]\n", SECRET);
        assert_eq!(secret_of(&out).as_deref(), Some(SECRET));
        assert!(out.contains("[media]\n# app_secret"), "{out}");
    }
}
