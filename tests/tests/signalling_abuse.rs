//! Issue 13, signalling abuse, against the real `ringbridge` binary: bursts of
//! joins with bad tokens and of colibri websocket upgrades with a wrong `pwd`
//! from one address get `429` with `Retry-After` while `/about/health` keeps
//! answering fast, and ten thousand bad requests from as many addresses leave the
//! control plane's memory bounded (its rate limiter keeps at most
//! `public.rate_limit_addresses` addresses).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ringbridge_tests::{Bridge, HttpResponse, TokenRequest, http_request, inert_offer};

/// Polls `GET /about/health` until `stop`; returns every latency seen.
fn poll_health(private: SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<Vec<Duration>> {
    thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let resp = http_request(private, "GET", "/about/health", &[], b"").expect("health");
            seen.push(t.elapsed());
            assert_eq!(resp.status, 200, "health: {}", resp.text());
            thread::sleep(Duration::from_millis(5));
        }
        seen
    })
}

/// Runs `send` from `workers` threads until `n` requests were sent and `min`
/// has passed; returns every answer.
fn burst(
    n: usize,
    min: Duration,
    workers: usize,
    send: impl Fn(usize) -> HttpResponse + Send + Sync + 'static,
) -> Vec<HttpResponse> {
    let send = Arc::new(send);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (send, next) = (send.clone(), next.clone());
            thread::spawn(move || {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n && started.elapsed() >= min {
                        break out;
                    }
                    out.push(send(i));
                }
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("worker"))
        .collect()
}

/// Checks a `429 rate-limited` JSON answer; returns its `Retry-After`.
fn retry_after(resp: &HttpResponse) -> u64 {
    assert_eq!(resp.status, 429, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json().expect("JSON error");
    assert_eq!(body["error"], "rate-limited", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let secs: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    secs
}

fn report_health(what: &str, latencies: &mut [Duration]) {
    latencies.sort();
    let max = latencies.last().copied().unwrap_or_default();
    let median = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    println!(
        "{what}: /about/health answered {} times, median {:.2} ms, slowest {:.2} ms",
        latencies.len(),
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
    assert!(latencies.len() >= 5, "health was barely polled");
    // Issue 13 asks for 100 ms; a debug build on a busy two-core machine still
    // has to make it.
    assert!(
        max < Duration::from_millis(100),
        "{what}: health took {max:?}"
    );
}

/// A metric's value in a `/metrics` scrape (`name{labels} value`).
fn metric(bridge: &Bridge, series: &str) -> f64 {
    let resp = http_request(bridge.private_addr(), "GET", "/metrics", &[], b"").expect("metrics");
    let text = resp.text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

fn post_join(addr: SocketAddr, room: &str, token: &str, forwarded: Option<&str>) -> HttpResponse {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/sdp"),
    ];
    if let Some(f) = forwarded {
        headers.push(("X-Forwarded-For", f));
    }
    http_request(
        addr,
        "POST",
        &format!("/conferences/{room}/endpoints"),
        &headers,
        inert_offer().as_bytes(),
    )
    .expect("join request")
}

fn upgrade(addr: SocketAddr, path: &str, forwarded: Option<&str>) -> HttpResponse {
    let mut headers = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    if let Some(f) = forwarded {
        headers.push(("X-Forwarded-For", f));
    }
    http_request(addr, "GET", path, &headers, b"").expect("upgrade request")
}

#[test]
fn bursts_of_bad_joins_and_wrong_pwd_upgrades_get_429_while_health_stays_fast() {
    let bridge = Bridge::start(
        "[public]\njoin_rate_limit = 5\njoin_rate_burst = 10\n\
         ws_rate_limit = 5\nws_rate_burst = 10\n",
    );
    let public = bridge.public_addr();
    let owner = bridge.token_with(&TokenRequest {
        room: "abuse".into(),
        owner: true,
        ..Default::default()
    });
    let joined = post_join(public, "abuse", &owner, None);
    assert_eq!(joined.status, 201, "{}", joined.text());
    let link = joined.header("link").expect("Link").to_owned();
    let path = link
        .strip_prefix('<')
        .and_then(|l| l.split_once('>'))
        .map(|(p, _)| p.to_owned())
        .expect("Link target");
    let wrong = format!("{}?pwd=not-the-pwd", path.split_once('?').expect("pwd").0);

    // Bad-token joins from one address, eight at a time, for a second.
    let stop = Arc::new(AtomicBool::new(false));
    let health = poll_health(bridge.private_addr(), stop.clone());
    let started = Instant::now();
    let joins = burst(400, Duration::from_secs(1), 8, move |i| {
        post_join(public, "abuse", &format!("bad.token.{i}"), None)
    });
    let join_secs = started.elapsed().as_secs_f64();
    // Wrong-pwd upgrades from the same address: their own budget.
    let started = Instant::now();
    let upgrades = burst(400, Duration::from_secs(1), 8, move |_| {
        upgrade(public, &wrong, None)
    });
    let upgrade_secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = health.join().expect("health poller");

    let checked = joins.iter().filter(|r| r.status == 401).count();
    let limited: Vec<_> = joins.iter().filter(|r| r.status == 429).collect();
    assert_eq!(checked + limited.len(), joins.len(), "only 401 and 429");
    limited.iter().for_each(|r| {
        retry_after(r);
    });
    println!(
        "{} bad-token joins in {join_secs:.2} s: {checked} reached the token check, {} got 429",
        joins.len(),
        limited.len()
    );
    // The burst of 10, then 5 a second.
    assert!(
        (10..=10 + (join_secs * 5.0).ceil() as usize).contains(&checked),
        "{checked}"
    );

    let bad_pwd = upgrades.iter().filter(|r| r.status == 401).count();
    let ws_limited: Vec<_> = upgrades.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        bad_pwd + ws_limited.len(),
        upgrades.len(),
        "only 401 and 429"
    );
    ws_limited.iter().for_each(|r| {
        retry_after(r);
    });
    println!(
        "{} wrong-pwd upgrades in {upgrade_secs:.2} s: {bad_pwd} reached the pwd check, {} got 429",
        upgrades.len(),
        ws_limited.len()
    );
    assert!(
        (10..=10 + (upgrade_secs * 5.0).ceil() as usize).contains(&bad_pwd),
        "{bad_pwd}"
    );
    report_health("during the bursts", &mut latencies);

    assert_eq!(
        metric(&bridge, "ringbridge_rate_limited_total{kind=\"join\"}"),
        limited.len() as f64
    );
    assert_eq!(
        metric(&bridge, "ringbridge_rate_limited_total{kind=\"websocket\"}"),
        ws_limited.len() as f64
    );
    assert_eq!(
        metric(
            &bridge,
            "ringbridge_joins_refused_total{code=\"rate-limited\"}"
        ),
        limited.len() as f64
    );
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// `count` bad requests, half joins and half upgrades, each from its own
/// forwarded address starting at `first`.
fn flood(public: SocketAddr, first: u32, count: usize) -> Vec<HttpResponse> {
    burst(count, Duration::ZERO, 4, move |i| {
        let client = Ipv4Addr::from(first + i as u32).to_string();
        let forwarded = Some(client.as_str());
        if i % 2 == 0 {
            post_join(public, "flood", "bad.token.x", forwarded)
        } else {
            upgrade(public, "/colibri-ws/test/flood/abcd0123?pwd=x", forwarded)
        }
    })
}

#[test]
fn ten_thousand_bad_requests_from_as_many_addresses_leave_memory_bounded() {
    let bridge = Bridge::start("[public]\nrate_limit_addresses = 1000\n");
    let public = bridge.public_addr();
    // Warm up (allocator pools, lazy statics), then measure.
    flood(public, 0x0A00_0000, 500);
    let before = rss_kib(bridge.pid());
    let started = Instant::now();
    let first = flood(public, 0xC000_0000, 10_000);
    let secs = started.elapsed().as_secs_f64();
    let after_first = rss_kib(bridge.pid());
    let second = flood(public, 0xC100_0000, 10_000);
    let after_second = rss_kib(bridge.pid());
    println!(
        "10,000 bad requests from 10,000 addresses in {secs:.1} s ({:.0}/s); RSS {before} KiB \
         before, {after_first} KiB after, {after_second} KiB after 10,000 more",
        10_000.0 / secs
    );
    for r in first.iter().chain(&second) {
        // Joins: 401 for the bad token; upgrades: 404 (no such endpoint). Each
        // address sends one request: none is over its limit.
        assert!(matches!(r.status, 401 | 404), "{} {}", r.status, r.text());
    }
    // Each limiter keeps at most 1,000 addresses: 2,000 together.
    let tracked = metric(&bridge, "ringbridge_rate_limit_addresses");
    println!("addresses tracked by the rate limits: {tracked}");
    assert_eq!(tracked, 2000.0);
    let grown = after_second.saturating_sub(after_first);
    assert!(
        grown < 4 * 1024,
        "RSS grew {grown} KiB over the second 10,000 requests"
    );
    assert!(
        after_second.saturating_sub(before) < 32 * 1024,
        "RSS grew from {before} KiB to {after_second} KiB"
    );
    // The health check still answers, and a real client still joins.
    let resp =
        http_request(bridge.private_addr(), "GET", "/about/health", &[], b"").expect("health");
    assert_eq!(resp.status, 200);
    let owner = bridge.token_with(&TokenRequest {
        room: "flood".into(),
        owner: true,
        ..Default::default()
    });
    let joined = post_join(public, "flood", &owner, None);
    assert_eq!(joined.status, 201, "{}", joined.text());
}
