//! The `ringbridge` binary's command line: bad configuration is refused with the
//! key's name, and tokens it mints are accepted by a bridge with the same secret.

use std::process::Command;

use ringbridge_tests::{Bridge, ringbridge_bin, token_claims};

fn run_with_config(text: &str) -> (bool, String) {
    let dir =
        std::env::temp_dir().join(format!("ringbridge-cli-{}", ringbridge_tests::random_u64()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.toml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(ringbridge_bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("run ringbridge");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_is_refused_at_start_naming_the_key() {
    let cases = [
        ("[media]\nport_range = [20000, 10000]\n", "media.port_range"),
        ("[media]\nportrange = [1, 2]\n", "portrange"),
        ("[auth]\napp_secret = \"short\"\n", "auth.app_secret"),
        ("[public]\nlisten = \"not an address\"\n", "listen"),
    ];
    for (text, key) in cases {
        let (ok, stderr) = run_with_config(text);
        assert!(!ok, "{text:?} must be refused");
        assert!(
            stderr.contains(key),
            "error for {text:?} names {key}: {stderr}"
        );
    }
}

#[test]
fn token_subcommand_needs_a_secret_and_mints_the_requested_claims() {
    let out = Command::new(ringbridge_bin())
        .args(["token", "--room", "x"])
        .output()
        .expect("run ringbridge token");
    assert!(!out.status.success(), "no secret configured: refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.app_secret"));

    let bridge = Bridge::start("");
    let out = bridge
        .command(&[
            "token", "--room", "standup", "--owner", "--name", "Ada", "--ttl", "2h",
        ])
        .output()
        .expect("run ringbridge token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwt = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let claims = token_claims(&jwt);
    assert_eq!(claims["room"], "standup");
    assert_eq!(claims["context"]["user"]["name"], "Ada");
    assert_eq!(claims["context"]["user"]["affiliation"], "owner");
    let exp = claims["exp"].as_u64().expect("exp");
    let iat = claims["iat"].as_u64().expect("iat");
    assert_eq!(exp - iat, 7200);
}
