//! Dev mode's join link: printed when stdout is a terminal; otherwise written
//! to a file only the user can read (stdout may be a journal or a log file,
//! and the link holds an owner token), and only that file's path is printed.

use std::fs;
use std::io::{IsTerminal as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

/// The file a non-terminal dev run wrote its link to; removed on drop.
#[derive(Debug)]
pub(crate) struct LinkFile(PathBuf);

impl Drop for LinkFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// What the banner says about where the secret came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretSource {
    /// A random secret made for this run.
    Random,
    /// The configured `auth.app_secret` (`run --dev --config FILE`).
    Configured,
}

/// Announces dev mode: `link` (the room page with an owner token for room
/// `room`) and a `curl` line when stdout is a terminal, else the path of a
/// new 0600 file holding the link (in `$RUNTIME_DIRECTORY`, or the temp dir).
pub(crate) fn announce(
    source: SecretSource,
    room: &str,
    link: &str,
    jwt: &str,
    join_url: &str,
) -> Result<Option<LinkFile>, String> {
    let why = match source {
        SecretSource::Random => {
            "no --config was given, so auth.app_secret is a random secret made for this run"
        }
        SecretSource::Configured => "--dev was given; tokens are signed with auth.app_secret",
    };
    if std::io::stdout().is_terminal() {
        println!(
            "\nringbridge is running in dev mode: {why}.\n\n\
             Open this link in a browser to join room \"{room}\" (an owner token, valid 24 h):\n\n  \
             {link}\n\n\
             Or join with any WebRTC client by POSTing an SDP offer with the token:\n\n  \
             curl -i -H 'Content-Type: application/sdp' -H 'Authorization: Bearer {jwt}' \\\n    \
             --data-binary @offer.sdp {join_url}\n"
        );
        return Ok(None);
    }
    let file = write_private(link)?;
    println!(
        "ringbridge is running in dev mode: {why}.\n\
         stdout is not a terminal, so the join link for room \"{room}\" (it holds a 24-hour \
         owner token) is not printed: it is in {}, readable only by you.",
        file.0.display()
    );
    tracing::info!(file = %file.0.display(), "dev mode: join link written");
    Ok(Some(file))
}

/// Creates a fresh file readable by its owner only and writes `link` into it.
fn write_private(link: &str) -> Result<LinkFile, String> {
    let dir = std::env::var_os("RUNTIME_DIRECTORY")
        .and_then(|d| {
            // systemd lists one folder per RuntimeDirectory=, colon-separated.
            let first = d.to_string_lossy().split(':').next()?.to_owned();
            (!first.is_empty()).then(|| PathBuf::from(first))
        })
        .unwrap_or_else(std::env::temp_dir);
    for _ in 0..8 {
        let path = dir.join(format!(
            "ringbridge-dev-link.{:016x}",
            rand::random::<u64>()
        ));
        let opened = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path);
        match opened {
            Ok(mut f) => {
                f.write_all(format!("{link}\n").as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                return Ok(LinkFile(path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
        }
    }
    Err(format!("cannot create a link file in {}", dir.display()))
}
