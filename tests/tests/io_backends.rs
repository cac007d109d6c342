//! The shards' I/O backends against real clients: aiortc through `io = "uring"`
//! and `io = "mmsg"`, and what happens when io_uring is not available.

use std::process::Command;
use std::time::Duration;

use ringbridge_tests::{AiortcClient, Bridge, ClientOutcome, http_request, ringbridge_bin};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

fn stats(bridge: &Bridge) -> serde_json::Value {
    http_request(bridge.private_addr(), "GET", "/colibri/stats", &[], b"")
        .expect("stats request")
        .json()
        .expect("stats JSON")
}

fn two_clients_through(io: &str) {
    let bridge = Bridge::start(&format!("[media]\nio = \"{io}\"\n"));
    let s = stats(&bridge);
    assert_eq!(s["io_backend"], io, "{s}");
    println!(
        "{io}: /colibri/stats says io_backend={} gso={} shards={} cores={}",
        s["io_backend"], s["gso"], s["shards"], s["shard_cores"]
    );
    let url = bridge.public_url();
    let a = AiortcClient::new("a", &url, "io", &bridge.token("io"))
        .args(["--duration", "4"])
        .spawn();
    let b = AiortcClient::new("b", &url, "io", &bridge.token("io"))
        .args(["--duration", "4"])
        .spawn();
    let (a, b) = (a.wait(CLIENT_TIMEOUT), b.wait(CLIENT_TIMEOUT));
    for c in [&a, &b] {
        check_media(io, c);
    }
}

fn check_media(io: &str, c: &ClientOutcome) {
    println!(
        "{io} {}: video_frames={} audio_frames={} packets_lost={}",
        c.label,
        c.num("video_frames"),
        c.num("audio_frames"),
        c.num("packets_lost")
    );
    assert_eq!(c.http_status(), Some(201), "{}", c.describe());
    assert!(
        c.num("video_frames") >= 60.0 && c.num("video_span_s") >= 2.0,
        "{io}: {} decoded too little video\n{}",
        c.label,
        c.describe()
    );
    assert!(c.num("audio_frames") > 0.0, "{}", c.describe());
}

#[test]
fn aiortc_clients_exchange_media_with_io_uring() {
    two_clients_through("uring");
}

#[test]
fn aiortc_clients_exchange_media_with_recvmmsg_sendmmsg() {
    two_clients_through("mmsg");
}

#[test]
fn uring_without_io_uring_refuses_to_start_and_auto_falls_back() {
    let dir = std::env::temp_dir().join(format!("rb-io-{}", ringbridge_tests::random_u64()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "[public]\nlisten = \"127.0.0.1:0\"\n[private]\nlisten = \"127.0.0.1:0\"\n\
         [media]\nio = \"uring\"\nport_range = [29900, 29909]\nadvertise = [\"127.0.0.1\"]\ntcp_port = 0\n\
         [auth]\napp_secret = \"0123456789abcdef0123\"\n",
    )
    .expect("config");
    let out = Command::new(ringbridge_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RINGBRIDGE_DISABLE_URING", "1")
        .output()
        .expect("run");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "io = uring must not start without io_uring"
    );
    assert!(
        stderr.contains("media.io") && stderr.contains("RINGBRIDGE_DISABLE_URING"),
        "the refusal names the key and the reason: {stderr}"
    );

    let bridge = Bridge::start_with_env(
        "[media]\nio = \"auto\"\n",
        &[("RINGBRIDGE_DISABLE_URING", "1")],
    );
    let s = stats(&bridge);
    assert_eq!(s["io_backend"], "mmsg", "{s}");
    let log = bridge.log_tail();
    assert_eq!(
        log.matches("io_uring unavailable").count(),
        1,
        "one log line says why: {log}"
    );
    assert!(log.contains("RINGBRIDGE_DISABLE_URING"), "{log}");
}
