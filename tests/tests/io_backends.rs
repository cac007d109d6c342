//! The shards' I/O backends against real clients: aiortc through `io = "uring"`,
//! `io = "mmsg"` and `io = "xdp"` (the bridge in a network namespace behind a
//! veth pair, AF_XDP on the inner end), and what happens when io_uring is not
//! available.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use ringbridge_tests::netns::{self, Netns, NetnsSpec, NsBridge};
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

/// The namespace of the `xdp` test: its own /30 inside issue 14's 10.79/16
/// (the bridge crate's XDP tests use 10.79.0.0/24).
const XDP_SPEC: NetnsSpec = NetnsSpec {
    name: "rbxdpaio",
    host_if: "rbxdp-h",
    inner_if: "rbxdp-i",
    host_addr: "10.79.1.1",
    bridge_addr: "10.79.1.2",
    media_ports: [20000, 20099],
    public_port: 9090,
    private_port: 8080,
};

/// `media.io = "xdp"` with the real binary: the bridge runs in a namespace
/// with AF_XDP natively on its veth, and two aiortc clients on the host side
/// of the pair exchange audio and video through it. The namespace's
/// nftables drop every UDP datagram to or from the media ports in the
/// kernel's stack, which the XDP program and the XSK's TX ring bypass, so
/// media only flows if the AF_XDP path carries it. The control plane's
/// HTTP on the same interface (the TCP the XDP program passes to the
/// kernel) answers the whole time: health before, stats while media flows.
#[test]
fn aiortc_clients_exchange_media_over_af_xdp_with_http_on_the_same_interface() {
    if let Some(why) = netns::unsupported() {
        eprintln!("skipped: {why}");
        return;
    }
    let _lock = XDP_SPEC.lock();
    let ns = Netns::create(XDP_SPEC);
    // Every UDP datagram to or from the media ports in the kernel's stack:
    // counted, then dropped (the layout `Netns::counters` reads).
    let [lo, hi] = XDP_SPEC.media_ports;
    let t = XDP_SPEC.nft_table();
    ns.nft(&format!(
        "add table inet {t}\n\
         add chain inet {t} in {{ type filter hook input priority 0; }}\n\
         add chain inet {t} out {{ type filter hook output priority 0; }}\n\
         add rule inet {t} in udp dport {lo}-{hi} counter\n\
         add rule inet {t} in udp dport {lo}-{hi} counter drop\n\
         add rule inet {t} out udp sport {lo}-{hi} counter\n\
         add rule inet {t} out udp sport {lo}-{hi} counter drop\n"
    ))
    .expect("drop rules");
    // `NsBridge::start` waits for `/about/health` on the veth's address.
    let bridge = NsBridge::start_with_media(
        &XDP_SPEC,
        "io-xdp",
        &format!(
            "io = \"xdp\"\nxdp_interface = \"{}\"\ncores = [0]\n",
            XDP_SPEC.inner_if
        ),
        "",
    );
    let private: SocketAddr = format!("{}:{}", XDP_SPEC.bridge_addr, XDP_SPEC.private_port)
        .parse()
        .expect("addr");
    let stats = || -> serde_json::Value {
        http_request(private, "GET", "/colibri/stats", &[], b"")
            .expect("HTTP to the control port on the XDP interface")
            .json()
            .expect("stats JSON")
    };
    let s = stats();
    assert_eq!(s["io_backend"], "xdp (native, copy)", "{s}");
    let url = XDP_SPEC.public_url();
    let room = "xdp";
    let clients = ["a", "b"].map(|l| {
        AiortcClient::new(l, &url, room, &bridge.token(room))
            .args(["--duration", "4", "--host-address", XDP_SPEC.host_addr])
            .spawn()
    });
    // While the clients run, the control plane keeps answering.
    let mut moving = false;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let s = stats();
        moving |= s["packet_rate_download"].as_f64().unwrap_or(0.0) > 0.0;
    }
    let [a, b] = clients.map(|c| c.wait(CLIENT_TIMEOUT));
    let counters = ns.counters().expect("nftables counters");
    println!("xdp: media datagrams in the kernel's stack: {counters}");
    for c in [&a, &b] {
        check_media("xdp", c);
    }
    assert_eq!(
        (&counters["in"]["seen"], &counters["out"]["seen"]),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "media went through the kernel's stack: {counters}"
    );
    assert!(moving, "the stats never saw media moving");
    // The XDP path's own counters, per shard, in /metrics.
    let metrics = http_request(private, "GET", "/metrics", &[], b"")
        .expect("HTTP /metrics")
        .text();
    let received: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("ringbridge_xdp_received_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    println!("xdp: ringbridge_xdp_received_total {received}");
    assert!(
        received > 100,
        "media arrived through the XSK but /metrics says {received}:\n{metrics}"
    );
    let log = bridge.log();
    assert!(log.contains("AF_XDP data path attached"), "{log}");
}
