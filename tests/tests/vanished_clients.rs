//! Issue 13 item 5, on the real binary: clients killed without a goodbye
//! (SIGKILL to the process that holds their ICE, DTLS and SRTP state: no
//! DELETE, no DTLS close_notify, no more consent checks) are expired by
//! consent freshness (RFC 7675, 30 s, the bridge's fixed default), and their
//! ports and conference slots are freed, counted in `/metrics`:
//! `ringbridge_endpoints_expired_total{reason="consent-expired"}`,
//! `ringbridge_shard_ports_in_use` / `ringbridge_shard_ports_free`,
//! `ringbridge_shard_endpoints`, and the UDP sockets are closed.
//!
//! The clients are a `ringbridge-bench run --url` process (real endpoints: the
//! bench's sans-IO `ClientPeer`, which sends a consent check every 5 s).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringbridge_devsupport::bench_bin;
use ringbridge_tests::{Bridge, TEST_APP_SECRET, http_request};

/// Endpoints in the call that vanishes.
const ENDPOINTS: u64 = 4;
/// RFC 7675's consent timeout, which the bridge applies (not configurable).
const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Metric name (with the `reason` label when there is one) → value summed over shards.
fn scrape(bridge: &Bridge) -> BTreeMap<String, f64> {
    let body = http_request(bridge.private_addr(), "GET", "/metrics", &[], b"")
        .expect("metrics")
        .text();
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        let key = match series
            .split("reason=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        {
            Some(reason) => format!("{name}:{reason}"),
            None => name.to_owned(),
        };
        *out.entry(key).or_default() += value;
    }
    out
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no {key} in /metrics: {:?}", m.keys().collect::<Vec<_>>()))
}

/// Ports in `range` with a UDP socket bound (`/proc/net/udp`).
fn bound_udp_ports(range: [u16; 2]) -> Vec<u16> {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let mut ports: Vec<u16> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let local = l.split_whitespace().nth(1)?;
            u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
        })
        .filter(|p| (range[0]..=range[1]).contains(p))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[test]
fn clients_killed_without_a_goodbye_are_expired_within_30s_and_their_ports_and_slots_freed() {
    let bridge = Bridge::start("");
    let range = bridge.media_range();
    let before = scrape(&bridge);
    let free_before = get(&before, "ringbridge_shard_ports_free");
    assert_eq!(get(&before, "ringbridge_shard_ports_in_use"), 0.0);
    assert!(bound_udp_ports(range).is_empty(), "no media port bound yet");

    // A four-person meeting in another process, for longer than the test.
    let mut clients = Command::new(bench_bin())
        .args(["run", "--shape", "meeting", "--conferences", "1"])
        .args(["--endpoints", &ENDPOINTS.to_string()])
        .args(["--duration", "600", "--warmup", "0", "--quiet"])
        .args(["--url", &bridge.public_url(), "--secret", TEST_APP_SECRET])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ringbridge-bench runs");

    // Until every endpoint has passed ICE and DTLS and media flows.
    let deadline = Instant::now() + Duration::from_secs(30);
    let connected = loop {
        let m = scrape(&bridge);
        if get(&m, "ringbridge_dtls_successes_total") >= ENDPOINTS as f64
            && get(&m, "ringbridge_packets_sent_total") > 0.0
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the clients did not connect: {m:?}"
        );
        assert!(
            clients.try_wait().expect("wait").is_none(),
            "the bench exited early"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        get(&connected, "ringbridge_shard_endpoints"),
        ENDPOINTS as f64
    );
    assert_eq!(
        get(&connected, "ringbridge_shard_ports_in_use"),
        ENDPOINTS as f64
    );
    assert_eq!(
        get(&connected, "ringbridge_shard_ports_free"),
        free_before - ENDPOINTS as f64
    );
    let ports = bound_udp_ports(range);
    assert_eq!(ports.len() as u64, ENDPOINTS, "one port each: {ports:?}");
    // Let media and consent checks run a little, as a call would.
    std::thread::sleep(Duration::from_secs(2));

    // Gone: no DELETE, no close_notify, no more checks.
    clients.kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = clients.wait();

    let deadline = killed + CONSENT_TIMEOUT + Duration::from_secs(10);
    let (took, after) = loop {
        let m = scrape(&bridge);
        if get(&m, "ringbridge_endpoints_expired_total:consent-expired") >= ENDPOINTS as f64
            && get(&m, "ringbridge_shard_endpoints") == 0.0
        {
            break (killed.elapsed(), m);
        }
        assert!(
            Instant::now() < deadline,
            "not all expired {:?} after the kill: {m:?}",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "vanished clients: all {ENDPOINTS} expired {:.1} s after SIGKILL (consent timeout {} s; \
         the clients checked every 5 s)",
        took.as_secs_f64(),
        CONSENT_TIMEOUT.as_secs()
    );
    assert_eq!(
        get(&after, "ringbridge_endpoints_expired_total:consent-expired"),
        ENDPOINTS as f64
    );
    assert_eq!(
        get(&after, "ringbridge_endpoints_expired_total:dtls-failed"),
        0.0
    );
    assert_eq!(
        get(&after, "ringbridge_ice_failures_total"),
        0.0,
        "all had passed ICE"
    );
    assert_eq!(get(&after, "ringbridge_shard_ports_in_use"), 0.0);
    assert_eq!(get(&after, "ringbridge_shard_ports_free"), free_before);
    assert_eq!(
        get(&after, "ringbridge_shard_conferences"),
        0.0,
        "the room is gone"
    );
    let stats = http_request(bridge.private_addr(), "GET", "/colibri/stats", &[], b"")
        .expect("stats")
        .json()
        .expect("json");
    assert_eq!(stats["endpoints"], 0, "{stats}");
    assert_eq!(stats["conferences"], 0, "{stats}");
    // The sockets are closed (io_uring may take a moment to finish a close).
    let closed_by = Instant::now() + Duration::from_secs(2);
    while !bound_udp_ports(range).is_empty() && Instant::now() < closed_by {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        bound_udp_ports(range).is_empty(),
        "media sockets still bound: {:?}",
        bound_udp_ports(range)
    );
    assert!(
        took <= CONSENT_TIMEOUT + Duration::from_secs(1),
        "expired {took:?} after the kill: over the 30 s consent timeout"
    );
}
