//! The operator surface of the real `ringbridge` binary: `config` and `tune`
//! subcommands, `/metrics` and `/colibri/stats`, drain, graceful shutdown on
//! SIGTERM and over HTTP, and systemd's READY notification.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use ringbridge_tests::{
    Bridge, HttpResponse, http_request, random_u64, ringbridge_bin, workspace_root,
};

/// A temporary folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "ringbridge-op-{name}-{}-{:x}",
            std::process::id(),
            random_u64()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ringbridge(args: &[&str]) -> Output {
    Command::new(ringbridge_bin())
        .args(args)
        .output()
        .expect("run ringbridge")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn config_default_prints_the_commented_default_and_check_validates() {
    let out = ringbridge(&["config", "default"]);
    assert!(out.status.success());
    let printed = text(&out.stdout);
    let shipped = std::fs::read_to_string(workspace_root().join("bridge/src/default-config.toml"))
        .expect("default config");
    assert_eq!(printed, shipped);
    for key in [
        "shutdown_timeout_s",
        "max_packet_rate",
        "max_conferences = 0",
        "max_endpoints_per_conference = 500",
        "join_rate_limit = 10",
        "ws_rate_limit = 10",
        "rate_limit_addresses = 10000",
        "port_range",
        "\nport = 0\n",
        "[auth]",
    ] {
        assert!(printed.contains(key), "default config shows {key}");
    }

    let dir = TempDir::new("config");
    // The default has no key: `run --config` would refuse it, and so does check.
    let good = dir.write("default.toml", &printed);
    let out = ringbridge(&["config", "check", good.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "no key: {}", text(&out.stdout));
    assert!(text(&out.stderr).contains("auth.app_secret: not set"));
    let good = dir.write(
        "default.toml",
        &printed.replace(
            "# app_secret = \"...\"",
            "app_secret = \"0123456789abcdef0123\"",
        ),
    );
    let out = ringbridge(&["config", "check", good.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok"));

    let cases = [
        ("[load]\nmax_packet_rate = 0\n", "load.max_packet_rate"),
        ("[load]\nmax_packet_rate = \"fast\"\n", "max_packet_rate"),
        ("[load]\nmax_conferences = -2\n", "load.max_conferences"),
        (
            "[load]\nmax_endpoints_per_conference = 1.5\n",
            "load.max_endpoints_per_conference",
        ),
        ("[public]\njoin_rate_burst = 0\n", "public.join_rate_burst"),
        (
            "[public]\nws_rate_limit = \"fast\"\n",
            "public.ws_rate_limit",
        ),
        (
            "[public]\nrate_limit_addresses = 0\n",
            "public.rate_limit_addresses",
        ),
        ("shutdown_timeout_s = -1\n", "shutdown_timeout_s"),
        ("shutdown_timeout_s = 1000000\n", "shutdown_timeout_s"),
        ("[media]\nport_range = [20000, 10000]\n", "media.port_range"),
        ("[media]\nport = 80\n", "media.port: 0 (a port per endpoint"),
        ("[media]\nio = \"epoll\"\n", "epoll"),
        ("[privte]\nlisten = \"127.0.0.1:1\"\n", "privte"),
        (
            "[private]\nlisten = \"localhost\"\n",
            "private.listen: invalid socket address \"localhost\": expected IP:PORT",
        ),
        (
            "[public]\nlisten = \"0.0.0.0:8080\"\n",
            "private.listen: 127.0.0.1:8080 collides with public.listen 0.0.0.0:8080",
        ),
        ("[log]\nlevel = \"loud\"\n", "log.level"),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[public]\nurl = \"meet.example.com\"\n", "public.url"),
        ("server_id = \"a b\"\n", "server_id"),
        (
            "[media]\nadvertise = [\"a.b\"]\n",
            "media.advertise[0]: invalid IP address",
        ),
        ("not toml at all [\n", "TOML"),
    ];
    for (i, (body, key)) in cases.iter().enumerate() {
        let path = dir.write(&format!("bad{i}.toml"), body);
        let out = ringbridge(&["config", "check", path.to_str().expect("utf-8")]);
        assert!(!out.status.success(), "{body:?} must be refused");
        let err = text(&out.stderr);
        assert!(
            err.to_lowercase().contains(&key.to_lowercase()),
            "error for {body:?} names {key}: {err}"
        );
    }
    let out = ringbridge(&["config", "check", "/nonexistent/ringbridge.toml"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent/ringbridge.toml"));
}

/// A fake host whose sysctls are stock but whose CPUs, cores, memlock and IRQs
/// are as the profile wants.
fn fake_host(dir: &TempDir) {
    for (k, v) in [
        ("net/core/rmem_max", "212992"),
        ("net/core/wmem_max", "212992"),
        ("net/core/rmem_default", "212992"),
        ("net/core/wmem_default", "212992"),
        ("net/core/netdev_max_backlog", "1000"),
        ("net/ipv4/udp_mem", "190000 250000 380000"),
        ("net/ipv4/udp_rmem_min", "4096"),
        ("net/ipv4/ip_local_reserved_ports", ""),
    ] {
        dir.write(&format!("root/proc/sys/{k}"), &format!("{v}\n"));
    }
    for c in 0..2 {
        dir.write(
            &format!("root/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"),
            "performance\n",
        );
    }
    dir.write("root/sys/devices/system/cpu/isolated", "1\n");
    // The shell's own memlock limit is low; the unit's is what counts.
    dir.write(
        "root/proc/self/limits",
        "Max locked memory         65536                65536                bytes\n",
    );
    dir.write(
        "root/lib/systemd/system/ringbridge.service",
        "[Service]\nLimitMEMLOCK=infinity\n",
    );
    dir.write(
        "root/proc/interrupts",
        "           CPU0       CPU1\n 30:   5   0   PCI-MSI 1-edge   virtio0-input.0\n",
    );
    dir.write("root/proc/irq/30/smp_affinity_list", "0\n");
}

#[test]
fn tune_check_and_apply_against_a_fake_root() {
    let dir = TempDir::new("tune");
    fake_host(&dir);
    let root = dir.0.join("root");
    let root_s = root.to_str().expect("utf-8");
    let cfg = dir.write(
        "cfg.toml",
        "[media]\nport_range = [30000, 30999]\ncores = [1]\n",
    );
    let cfg_s = cfg.to_str().expect("utf-8");

    let out = ringbridge(&["tune", "check", "--root", root_s, "--config", cfg_s]);
    assert!(!out.status.success(), "stock sysctls are off");
    let report = text(&out.stdout);
    assert!(report.contains("net.core.rmem_max"), "{report}");
    assert!(report.contains("212992"), "{report}");
    assert!(report.contains(">= 33554432"), "{report}");
    assert!(report.contains("OFF"), "{report}");
    assert!(report.contains("contains 30000-30999"), "{report}");

    let out = ringbridge(&[
        "tune",
        "apply",
        "--root",
        root_s,
        "--config",
        cfg_s,
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("would set net.core.rmem_max = 33554432"));
    assert!(!root.join("etc/sysctl.d/90-ringbridge.conf").exists());

    let out = ringbridge(&["tune", "apply", "--root", root_s, "--config", cfg_s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = std::fs::read_to_string(root.join("etc/sysctl.d/90-ringbridge.conf"))
        .expect("sysctl.d file written inside the root");
    assert!(
        file.contains("net.ipv4.ip_local_reserved_ports = 30000-30999"),
        "{file}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("proc/sys/net/core/rmem_max")).expect("read"),
        "33554432\n"
    );

    let out = ringbridge(&["tune", "check", "--root", root_s, "--config", cfg_s]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(report.contains("all checks passed"));
    // The memlock row is the unit's grant, not this test's own 64 KiB limit.
    assert!(
        report.contains("memlock limit (ringbridge.service)")
            && report.contains("infinity (LimitMEMLOCK=infinity)"),
        "{report}"
    );

    // A NIC interrupt on the shard core: the advice names the free core (0).
    dir.write("root/proc/irq/30/smp_affinity_list", "1\n");
    let out = ringbridge(&["tune", "check", "--root", root_s, "--config", cfg_s]);
    assert!(!out.status.success());
    let report = text(&out.stdout);
    assert!(
        report.contains("echo 0 > /proc/irq/30/smp_affinity_list (virtio0-input.0, now on 1)"),
        "{report}"
    );
}

/// An SDP offer the bridge accepts (see [`ringbridge_tests::inert_offer`]).
fn offer() -> String {
    ringbridge_tests::inert_offer()
}

fn post(addr: SocketAddr, path: &str, body: &[u8]) -> HttpResponse {
    http_request(addr, "POST", path, &[], body).expect("request")
}

/// An owner token: only owners may open a room.
fn owner_token(b: &Bridge, room: &str) -> String {
    b.token_with(&ringbridge_tests::TokenRequest {
        room: room.into(),
        owner: true,
        ..Default::default()
    })
}

/// Joins `room` as an owner; returns the whole response.
fn try_join(b: &Bridge, room: &str) -> HttpResponse {
    let auth = format!("Bearer {}", owner_token(b, room));
    let body = offer();
    http_request(
        b.public_addr(),
        "POST",
        &format!("/conferences/{room}/endpoints"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/sdp"),
        ],
        body.as_bytes(),
    )
    .expect("join request")
}

/// Joins `room`; returns the endpoint's Location and its UDP port.
fn join(b: &Bridge, room: &str) -> (String, u16) {
    let resp = try_join(b, room);
    assert_eq!(resp.status, 201, "join {room}: {}", resp.text());
    let location = resp.header("location").expect("Location").to_owned();
    let answer = resp.text();
    let port = answer
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.strip_prefix("a=candidate:")?.split_whitespace().collect();
            f.get(5)?.parse().ok()
        })
        .expect("a host candidate with a port");
    (location, port)
}

fn leave(b: &Bridge, room: &str, location: &str) {
    let auth = format!("Bearer {}", owner_token(b, room));
    let resp = http_request(
        b.public_addr(),
        "DELETE",
        location,
        &[("Authorization", &auth)],
        b"",
    )
    .expect("leave");
    assert_eq!(resp.status, 204, "leave: {}", resp.text());
}

fn error_code(resp: &HttpResponse) -> String {
    resp.json()
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn stats(b: &Bridge) -> serde_json::Value {
    let resp = http_request(b.private_addr(), "GET", "/colibri/stats", &[], b"").expect("stats");
    assert_eq!(resp.status, 200);
    resp.json().expect("json")
}

type Samples = HashMap<(String, Vec<(String, String)>), f64>;

fn scrape(b: &Bridge) -> Samples {
    let resp = http_request(b.private_addr(), "GET", "/metrics", &[], b"").expect("metrics");
    assert_eq!(resp.status, 200);
    let body = resp.text();
    let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("the scrape parses");
    parsed
        .samples
        .into_iter()
        .filter_map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            Some(((s.metric, labels), v))
        })
        .collect()
}

/// Sum of a metric over all label sets matching `filter`.
fn total(samples: &Samples, name: &str, filter: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|((n, labels), _)| {
            n == name
                && filter
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn metrics_and_stats_move_under_traffic() {
    let b = Bridge::start("[load]\nmax_packet_rate = 1000\n");
    let before = scrape(&b);
    assert!(
        before
            .keys()
            .any(|(n, l)| n == "ringbridge_build_info" && l.iter().any(|(k, _)| k == "io_backend")),
        "build info with io_backend: {before:?}"
    );
    assert_eq!(
        total(&before, "ringbridge_packets_received_total", &[]),
        0.0
    );

    let (_, port) = join(&b, "metrics");
    // Datagrams from an address that passed no ICE check: received, then dropped.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    for i in 0..50u8 {
        sock.send_to(
            &[0x80, 0x60, 0, i, 0, 0, 0, 0, 0, 0, 0, 1],
            ("127.0.0.1", port),
        )
        .expect("send");
    }
    let mut after = scrape(&b);
    for _ in 0..50 {
        if total(&after, "ringbridge_packets_received_total", &[]) >= 50.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        after = scrape(&b);
    }
    assert!(
        total(&after, "ringbridge_packets_received_total", &[]) >= 50.0,
        "{after:?}"
    );
    assert!(total(&after, "ringbridge_bytes_received_total", &[]) >= 600.0);
    assert!(
        total(&after, "ringbridge_packets_dropped_total", &[]) >= 50.0,
        "{after:?}"
    );
    assert_eq!(total(&after, "ringbridge_endpoints", &[]), 1.0);
    assert_eq!(total(&after, "ringbridge_conferences", &[]), 1.0);
    assert_eq!(
        total(&after, "ringbridge_conferences_created_total", &[]),
        1.0
    );
    // The process's own figures, from /proc/self.
    assert!(
        total(&after, "process_cpu_seconds_total", &[]) > 0.0,
        "{after:?}"
    );
    assert!(total(&after, "process_resident_memory_bytes", &[]) > 1e6);
    // Sockets of the listeners and of the shards' ports, at least.
    assert!(total(&after, "process_open_fds", &[]) >= 10.0);
    assert!(total(&after, "process_threads", &[]) >= 2.0);

    // A join with a member token (members cannot open rooms) and one without a
    // token are refused, and counted by code.
    let member = b.member_token("fresh");
    let body = offer();
    for auth in [format!("Bearer {member}"), String::new()] {
        let mut headers = vec![("Content-Type", "application/sdp")];
        if !auth.is_empty() {
            headers.push(("Authorization", auth.as_str()));
        }
        let resp = http_request(
            b.public_addr(),
            "POST",
            "/conferences/fresh/endpoints",
            &headers,
            body.as_bytes(),
        )
        .expect("join");
        assert!(resp.status == 401 || resp.status == 403, "{}", resp.text());
    }
    let refused = scrape(&b);
    assert_eq!(
        total(
            &refused,
            "ringbridge_joins_refused_total",
            &[("code", "owner-required")]
        ),
        1.0
    );
    assert_eq!(
        total(
            &refused,
            "ringbridge_joins_refused_total",
            &[("code", "token-missing")]
        ),
        1.0
    );

    // Nobody in the conference sends media (ICE never even started): jvb counts the
    // conference and its endpoint as inactive. The shard counts at housekeeping
    // (every 100 ms), so give it a moment.
    let mut s = stats(&b);
    for _ in 0..30 {
        if s["inactive_endpoints"] == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        s = stats(&b);
    }
    assert_eq!(s["total_conferences_created"], 1);
    assert_eq!(s["inactive_conferences"], 1, "nobody sends: {s}");
    assert_eq!(s["inactive_endpoints"], 1, "nobody sends: {s}");
    let now = scrape(&b);
    assert_eq!(total(&now, "ringbridge_inactive_endpoints", &[]), 1.0);
    assert_eq!(total(&now, "ringbridge_inactive_conferences", &[]), 1.0);
    assert!(s["total_packets_received"].as_u64().expect("number") >= 50);
    assert_eq!(s["healthy"], true);
    // jvb's keys: one conference of one endpoint, nothing completed yet; scripts
    // doing `.participants - .octo_endpoints` get a number.
    assert_eq!(s["conference_sizes"][1], 1, "{s}");
    assert_eq!(s["total_conferences_completed"], 0);
    assert_eq!(s["octo_endpoints"], 0);
    assert!(s["threads"].as_u64().expect("threads") >= 2, "{s}");
    assert!(s["total_ice_succeeded"].is_u64() && s["total_ice_failed"].is_u64());
    assert!(s["stress_level"].as_f64().is_some(), "{s}");
}

#[test]
fn drain_refuses_new_conferences_but_not_joins_to_running_ones() {
    let b = Bridge::start("");
    join(&b, "running");
    let resp = post(b.private_addr(), "/colibri/drain/enable", b"");
    assert_eq!(resp.status, 200);
    assert_eq!(stats(&b)["drain"], true);

    let refused = try_join(&b, "fresh");
    assert_eq!(refused.status, 503);
    assert_eq!(error_code(&refused), "draining");
    join(&b, "running");

    assert_eq!(
        post(b.private_addr(), "/colibri/drain/disable", b"").status,
        200
    );
    join(&b, "fresh");
    assert_eq!(stats(&b)["drain"], false);
}

#[test]
fn sigterm_waits_for_the_last_conference_then_exits_0() {
    let dir = TempDir::new("notify");
    let sock_path = dir.0.join("notify.sock");
    let notify = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let sock_s = sock_path.to_str().expect("utf-8");
    let mut b = Bridge::start_with_env(
        "shutdown_timeout_s = 60\n",
        &[("NOTIFY_SOCKET", sock_s), ("WATCHDOG_USEC", "400000")],
    );
    let mut buf = [0u8; 128];
    let n = notify.recv(&mut buf).expect("READY=1 from the bridge");
    assert_eq!(&buf[..n], b"READY=1");
    // WATCHDOG_USEC of 0.4 s: a ping every 0.2 s.
    let n = notify.recv(&mut buf).expect("WATCHDOG=1 from the bridge");
    assert_eq!(&buf[..n], b"WATCHDOG=1");

    let (location, _) = join(&b, "last");
    let status = Command::new("kill")
        .args(["-TERM", &b.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(500));
    assert!(b.is_running(), "stopped with a conference running");
    assert_eq!(stats(&b)["graceful_shutdown"], true);
    let refused = try_join(&b, "other");
    assert_eq!(refused.status, 503);
    assert_eq!(error_code(&refused), "shutting-down");
    let mut saw_stopping = false;
    notify
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    // Watchdog pings keep coming; look at what arrived, up to STOPPING=1.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !saw_stopping && std::time::Instant::now() < deadline {
        if let Ok(n) = notify.recv(&mut buf) {
            saw_stopping = &buf[..n] == b"STOPPING=1";
        }
    }
    assert!(saw_stopping, "STOPPING=1 sent when the shutdown began");

    leave(&b, "last", &location);
    let exit = b
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the last conference");
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn http_graceful_shutdown_gives_up_after_the_timeout() {
    let mut b = Bridge::start("shutdown_timeout_s = 1\n");
    join(&b, "stays");
    // As jvb's graceful_shutdown.sh sends it: the flag as a string.
    let resp = post(
        b.private_addr(),
        "/colibri/shutdown",
        br#"{"graceful-shutdown": "true"}"#,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let exit = b
        .wait_exit(Duration::from_secs(10))
        .expect("exits after shutdown_timeout_s");
    assert!(exit.success(), "exit status {exit}");
}

/// The bridge's combined stdout and stderr, once `needle` is in it (5 s at most).
fn log_with(b: &Bridge, needle: &str) -> String {
    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(b.log_path()).expect("log");
        if log.contains(needle) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    log
}

#[test]
fn the_first_log_line_has_the_version_and_log_format_json_is_json() {
    let version = env!("CARGO_PKG_VERSION");
    let b = Bridge::start("");
    let log = log_with(&b, "control plane listening");
    let first = log.lines().next().expect("a first line");
    assert!(
        first.contains(&format!("ringbridge {version} starting"))
            && first.contains(&format!("version=\"{version}\"")),
        "{first}"
    );
    drop(b);

    let b = Bridge::start("[log]\nformat = \"json\"\n");
    let log = log_with(&b, "control plane listening");
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    let first: serde_json::Value =
        serde_json::from_str(log.lines().next().expect("a first line")).expect("json");
    assert_eq!(first["fields"]["version"], version, "{first}");
}

#[test]
fn log_level_is_the_config_key_unless_rust_log_says_otherwise() {
    // Bridge::start sets RUST_LOG=info; an empty one leaves log.level in charge.
    let b = Bridge::start_with_env("[log]\nlevel = \"warn\"\n", &[("RUST_LOG", "")]);
    // The private listener answered; give the log a moment, then look.
    std::thread::sleep(Duration::from_millis(300));
    let log = std::fs::read_to_string(b.log_path()).expect("log");
    assert!(!log.contains(" INFO "), "warn hides info lines: {log}");
    drop(b);

    let b = Bridge::start_with_env("[log]\nlevel = \"warn\"\n", &[("RUST_LOG", "info")]);
    let log = log_with(&b, "control plane listening");
    assert!(
        log.contains(" INFO "),
        "RUST_LOG overrides log.level: {log}"
    );
}

/// The cores thread `tid` of process `pid` may run on (`Cpus_allowed_list`).
fn allowed_cores(pid: u32, tid: &str) -> Vec<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/task/{tid}/status: {e}"));
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim();
    list.split(',')
        .flat_map(|part| {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let lo: usize = lo.parse().expect("core");
            let hi: usize = hi.parse().expect("core");
            lo..=hi
        })
        .collect()
}

#[test]
fn the_control_plane_and_ice_tcp_stay_on_core_0_and_each_shard_on_its_own_core() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        eprintln!("SKIPPED placement: one core");
        return;
    }
    let tcp_port = ringbridge_tests::free_tcp_port();
    let b = Bridge::start(&format!("[media]\ntcp_port = {tcp_port}\n"));
    // A join and a colibri stats request, so the control plane has served.
    let _ = join(&b, "placement");
    let _ = stats(&b);
    let pid = b.pid();
    let mut shards = Vec::new();
    let mut others = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
    {
        let tid = entry.file_name().to_string_lossy().into_owned();
        let name = std::fs::read_to_string(entry.path().join("comm"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let allowed = allowed_cores(pid, &tid);
        if name.starts_with("shard-") {
            shards.push((name, allowed));
        } else {
            others.push((name, allowed));
        }
    }
    eprintln!("shards {shards:?}, others {others:?}");
    // The default placement: core 0 for the control plane, a shard on each
    // other core.
    assert_eq!(shards.len(), cores - 1, "{shards:?}");
    let mut shard_cores: Vec<usize> = shards
        .iter()
        .map(|(name, allowed)| {
            assert_eq!(
                allowed.len(),
                1,
                "{name} is pinned to one core: {allowed:?}"
            );
            allowed[0]
        })
        .collect();
    shard_cores.sort_unstable();
    assert_eq!(shard_cores, (1..cores).collect::<Vec<_>>());
    assert!(
        others.iter().any(|(name, _)| name == "ice-tcp"),
        "the ICE-TCP listener runs: {others:?}"
    );
    for (name, allowed) in &others {
        assert_eq!(allowed, &vec![0], "thread {name} stays on core 0");
    }
}
