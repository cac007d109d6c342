//! Issue 13, signalling abuse and overload: per-address rate limits on joins and
//! colibri websocket upgrades (`429` with `Retry-After`), `413` for an offer over
//! the limit, `503 overloaded` for new conferences above `load.max_packet_rate`,
//! and the caps on conferences and endpoints per conference.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ringbridge_control::{ControlSettings, MediaStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fake::*;
use crate::operator::{samples, scrape, value};

/// A harness whose joins and websocket upgrades are limited to `per_second`
/// with a burst of `burst` per address.
async fn limited(per_second: u32, burst: u32, addresses: usize) -> Harness {
    Harness::start_configured(Duration::from_secs(1), auth(), |s: &mut ControlSettings| {
        s.public.join_rate_limit = per_second;
        s.public.join_rate_burst = burst;
        s.public.ws_rate_limit = per_second;
        s.public.ws_rate_burst = burst;
        s.public.rate_limit_addresses = addresses;
    })
    .await
}

/// Polls `GET /about/health` until `stop`; returns every latency seen.
fn poll_health(
    private: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let resp = request(private, "GET", "/about/health", &[], b"").await;
            seen.push(t.elapsed());
            assert_eq!(resp.status, 200, "health: {}", resp.text());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    })
}

/// Checks a `429 rate-limited` answer and returns its `Retry-After` in seconds.
fn retry_after(resp: &HttpResponse) -> u64 {
    resp.assert_error(429, "rate-limited");
    let secs: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    secs
}

/// Sends requests from `workers` concurrent clients until at least `n` were sent
/// and `min` has passed (so that the health poller sees the whole burst);
/// returns the answers.
async fn burst<F, Fut>(n: usize, min: Duration, workers: usize, send: F) -> Vec<HttpResponse>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send,
{
    let send = Arc::new(send);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (send, next) = (send.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n && started.elapsed() >= min {
                    break;
                }
                out.push(send(i).await);
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    all
}

fn report_health(what: &str, latencies: &[Duration]) -> Duration {
    let max = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "{what}: /about/health answered {} times during the burst, slowest {:.1} ms",
        latencies.len(),
        max.as_secs_f64() * 1000.0
    );
    assert!(latencies.len() >= 3, "health was barely polled");
    assert!(
        max < Duration::from_millis(100),
        "{what}: /about/health took {max:?}"
    );
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_bad_token_joins_gets_429_with_retry_after_and_health_keeps_answering() {
    let h = limited(5, 10, 1000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let health = poll_health(h.private, stop.clone());
    let started = Instant::now();
    let public = h.public;
    let answers = burst(300, Duration::from_millis(600), 8, move |i| async move {
        post_offer(public, "room1", &format!("not-a-token-{i}"), OFFER).await
    })
    .await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let latencies = health.await.expect("health poller");

    let refused_by_token = answers.iter().filter(|r| r.status == 401).count();
    let limited: Vec<&HttpResponse> = answers.iter().filter(|r| r.status == 429).collect();
    let total = answers.len();
    assert_eq!(refused_by_token + limited.len(), total, "only 401 and 429");
    for r in &limited {
        retry_after(r);
    }
    // The burst of 10 passes, then 5 a second at most.
    let allowed = 10 + (elapsed.as_secs_f64() * 5.0).ceil() as usize;
    println!(
        "{total} bad-token joins in {:.0} ms: {refused_by_token} reached the token check (401), {} got 429",
        elapsed.as_secs_f64() * 1000.0,
        limited.len()
    );
    assert!(
        (10..=allowed).contains(&refused_by_token),
        "{refused_by_token} joins reached the token check, at most {allowed} should"
    );
    report_health("bad-token joins", &latencies);

    let m = scrape(h.private).await;
    let n = limited.len() as f64;
    assert_eq!(
        value(&m, "ringbridge_rate_limited_total", &[("kind", "join")]),
        n
    );
    assert_eq!(
        value(
            &m,
            "ringbridge_rate_limited_total",
            &[("kind", "websocket")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &m,
            "ringbridge_joins_refused_total",
            &[("code", "rate-limited")]
        ),
        n
    );
    assert_eq!(value(&m, "ringbridge_rate_limit_addresses", &[]), 1.0);

    // Waiting Retry-After makes a join possible again.
    let wait = retry_after(limited.last().expect("some were limited"));
    tokio::time::sleep(Duration::from_secs(wait)).await;
    post_offer(h.public, "room1", &token_for("room1"), OFFER)
        .await
        .assert_error_or(201);
    h.shutdown().await.expect("clean shutdown");
}

fn upgrade_headers() -> [(&'static str, &'static str); 4] {
    [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_websocket_upgrades_with_a_wrong_pwd_gets_429_and_the_right_pwd_later_works() {
    let h = limited(5, 10, 1000).await;
    let (_id, path) = h.join("room1").await;
    let (base, _pwd) = path.split_once("?pwd=").expect("pwd in the link");
    let wrong = format!("{base}?pwd=wrong-pwd");
    let stop = Arc::new(AtomicBool::new(false));
    let health = poll_health(h.private, stop.clone());
    let started = Instant::now();
    let public = h.public;
    let answers = burst(300, Duration::from_millis(600), 8, move |_| {
        let wrong = wrong.clone();
        async move { request(public, "GET", &wrong, &upgrade_headers(), b"").await }
    })
    .await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let latencies = health.await.expect("health poller");

    let bad_pwd: Vec<_> = answers.iter().filter(|r| r.status == 401).collect();
    let limited: Vec<_> = answers.iter().filter(|r| r.status == 429).collect();
    let total = answers.len();
    assert_eq!(bad_pwd.len() + limited.len(), total, "only 401 and 429");
    for r in &bad_pwd {
        r.assert_error(401, "bad-pwd");
    }
    let mut longest = 0;
    for r in &limited {
        longest = longest.max(retry_after(r));
    }
    let allowed = 10 + (elapsed.as_secs_f64() * 5.0).ceil() as usize;
    println!(
        "{total} wrong-pwd upgrades in {:.0} ms: {} checked (401), {} got 429",
        elapsed.as_secs_f64() * 1000.0,
        bad_pwd.len(),
        limited.len()
    );
    assert!((10..=allowed).contains(&bad_pwd.len()), "{}", bad_pwd.len());
    report_health("wrong-pwd upgrades", &latencies);
    let m = scrape(h.private).await;
    assert_eq!(
        value(
            &m,
            "ringbridge_rate_limited_total",
            &[("kind", "websocket")]
        ),
        limited.len() as f64
    );
    // Joins have their own budget: the limit on upgrades does not stop them.
    h.join("room1").await;

    // After Retry-After, the right pwd opens the socket.
    tokio::time::sleep(Duration::from_secs(longest)).await;
    let _ws = open(&h, &path).await;
    h.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn each_forwarded_client_has_its_own_budget_and_the_table_stays_capped() {
    let h = limited(1, 2, 50).await;
    // A local reverse proxy forwards 1,000 different clients, two joins each:
    // none is limited, and the limiter never tracks more than 50 addresses.
    for i in 0..1000u32 {
        let client = std::net::Ipv4Addr::from(0xC633_0000 + i).to_string(); // 198.51.x.y
        for _ in 0..2 {
            let resp = request(
                h.public,
                "POST",
                "/conferences/room1/endpoints",
                &[
                    ("X-Forwarded-For", &format!("203.0.113.1, {client}")),
                    ("Content-Type", "application/sdp"),
                ],
                OFFER.as_bytes(),
            )
            .await;
            resp.assert_error(401, "token-missing");
        }
        if i % 100 == 99 {
            let m = scrape(h.private).await;
            let tracked = value(&m, "ringbridge_rate_limit_addresses", &[]);
            assert!(tracked <= 50.0, "{tracked} addresses tracked after {i}");
        }
    }
    let m = scrape(h.private).await;
    assert_eq!(value(&m, "ringbridge_rate_limit_addresses", &[]), 50.0);
    assert_eq!(
        value(&m, "ringbridge_rate_limited_total", &[("kind", "join")]),
        0.0
    );
    // The same client a third time is limited; the proxy itself is not the client.
    let resp = request(
        h.public,
        "POST",
        "/conferences/room1/endpoints",
        &[
            ("X-Forwarded-For", "198.51.3.231"),
            ("Content-Type", "application/sdp"),
        ],
        OFFER.as_bytes(),
    )
    .await;
    retry_after(&resp);
    h.join("room1").await;
    h.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn rate_limits_of_zero_are_off() {
    let h = limited(0, 0, 10).await;
    for i in 0..120 {
        post_offer(h.public, "room1", &format!("bad-{i}"), OFFER)
            .await
            .assert_error(401, "token-malformed");
    }
    let m = scrape(h.private).await;
    assert_eq!(value(&m, "ringbridge_rate_limit_addresses", &[]), 0.0);
    h.shutdown().await.expect("clean shutdown");
}

/// A join whose offer is sent chunked (no `Content-Length`), `size` bytes.
async fn post_chunked(addr: SocketAddr, room: &str, size: usize) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /conferences/{room}/endpoints HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/sdp\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        token_for(room)
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b'a'; 8192];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        let mut frame = format!("{n:x}\r\n").into_bytes();
        frame.extend_from_slice(&chunk[..n]);
        frame.extend_from_slice(b"\r\n");
        // The server may answer and close before the last chunk: stop writing then.
        if stream.write_all(&frame).await.is_err() {
            break;
        }
        left -= n;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    parse_raw(&raw)
}

fn parse_raw(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(raw.len() - split - 4);
    HttpResponse {
        status,
        headers,
        body: raw[split + 4..][..len].to_vec(),
    }
}

#[tokio::test]
async fn an_offer_over_the_limit_gets_413_with_the_json_error_declared_or_chunked() {
    let h = Harness::start().await;
    let limit = ringbridge_control::signalling::MAX_OFFER_SIZE;
    // Declared too large: refused on the header.
    let auth = format!("Bearer {}", token_for("big"));
    request(
        h.public,
        "POST",
        "/conferences/big/endpoints",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/sdp"),
        ],
        &vec![b'a'; limit + 1],
    )
    .await
    .assert_error(413, "offer-too-large");
    // Chunked, no length declared: refused once the limit is passed.
    post_chunked(h.public, "big", 4 * limit)
        .await
        .assert_error(413, "offer-too-large");
    // Chunked within the limit is a join.
    post_chunked(h.public, "big", limit)
        .await
        .assert_error_or(201);
    assert_eq!(h.media.joins.lock().expect("lock").len(), 1);
    let m = scrape(h.private).await;
    assert_eq!(
        value(
            &m,
            "ringbridge_joins_refused_total",
            &[("code", "offer-too-large")]
        ),
        2.0
    );
    h.shutdown().await.expect("clean shutdown");
}

async fn stress(private: SocketAddr) -> f64 {
    let resp = request(private, "GET", "/colibri/stats", &[], b"").await;
    resp.json()["stress_level"].as_f64().expect("stress_level")
}

#[tokio::test]
async fn above_max_packet_rate_new_conferences_get_503_overloaded_and_running_ones_go_on() {
    let h = Harness::start_configured(Duration::from_millis(50), auth(), |s| {
        s.load.max_packet_rate = 1000;
    })
    .await;
    h.join("running").await;
    // 5,000 packets a second each way: stress level 10.
    *h.media.per_sec.lock().expect("lock") = Some((
        Instant::now(),
        MediaStats {
            packets_received: 5000,
            packets_sent: 5000,
            ..MediaStats::default()
        },
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while stress(h.private).await <= 1.0 {
        assert!(Instant::now() < deadline, "stress level never rose");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = stress(h.private).await;
    println!("stress level {s:.2}");
    assert!(s > 1.0, "{s}");
    post_offer(h.public, "fresh", &token_for("fresh"), OFFER)
        .await
        .assert_error(503, "overloaded");
    // The running conference still takes joins.
    h.join("running").await;
    h.join("running").await;
    let m = scrape(h.private).await;
    assert_eq!(
        value(
            &m,
            "ringbridge_joins_refused_total",
            &[("code", "overloaded")]
        ),
        1.0
    );
    assert_eq!(h.media.joins.lock().expect("lock").len(), 3);

    // The load goes away: new conferences are welcome again.
    *h.media.per_sec.lock().expect("lock") = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while stress(h.private).await > 1.0 {
        assert!(Instant::now() < deadline, "stress level never fell");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.join("fresh").await;
    h.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_full_conference_gets_403_conference_full() {
    let h = Harness::start_configured(Duration::from_secs(1), auth(), |s| {
        s.load.max_endpoints_per_conference = 2;
    })
    .await;
    let (a, _) = h.join("pair").await;
    h.join("pair").await;
    post_offer(h.public, "pair", &token_for("pair"), OFFER)
        .await
        .assert_error(403, "conference-full");
    // Other rooms are not affected; a leave makes room.
    h.join("other").await;
    let auth = format!("Bearer {}", token_for("pair"));
    let resp = request(
        h.public,
        "DELETE",
        &format!("/conferences/pair/endpoints/{a}"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    h.join("pair").await;
    let m = scrape(h.private).await;
    assert_eq!(
        value(
            &m,
            "ringbridge_joins_refused_total",
            &[("code", "conference-full")]
        ),
        1.0
    );
    // The media plane never heard of the refused join.
    assert_eq!(h.media.joins.lock().expect("lock").len(), 4);
    h.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn one_conference_too_many_gets_503_too_many_conferences() {
    let h = Harness::start_configured(Duration::from_secs(1), auth(), |s| {
        s.load.max_conferences = 2;
    })
    .await;
    let (a, _) = h.join("one").await;
    h.join("two").await;
    post_offer(h.public, "three", &token_for("three"), OFFER)
        .await
        .assert_error(503, "too-many-conferences");
    // Running conferences still take joins.
    let (b, _) = h.join("one").await;
    h.join("two").await;
    // Room "one" loses one endpoint: still two conferences.
    let auth = format!("Bearer {}", token_for("one"));
    let leave = |id: String| {
        let auth = auth.clone();
        async move {
            let path = format!("/conferences/one/endpoints/{id}");
            let resp = request(h.public, "DELETE", &path, &[("Authorization", &auth)], b"").await;
            assert_eq!(resp.status, 204, "{}", resp.text());
        }
    };
    leave(a).await;
    post_offer(h.public, "three", &token_for("three"), OFFER)
        .await
        .assert_error(503, "too-many-conferences");
    // Its last endpoint leaves: the conference ends and a new one fits.
    leave(b).await;
    h.join("three").await;
    let m = scrape(h.private).await;
    assert_eq!(
        value(
            &m,
            "ringbridge_joins_refused_total",
            &[("code", "too-many-conferences")]
        ),
        2.0
    );
    assert_eq!(samples(&m, "ringbridge_joins_refused_total").len(), 1);
    h.shutdown().await.expect("clean shutdown");
}
