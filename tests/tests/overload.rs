//! Issue 13, overload, against the real `ringbridge` binary: datagrams thrown at
//! a media port push the packet rate over `load.max_packet_rate`, so
//! `stress_level` exceeds 1 and a join that would open a new conference gets
//! `503 overloaded`, while the running conference still takes joins. The flood
//! itself is dropped and counted in `/metrics` by reason.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ringbridge_tests::{Bridge, HttpResponse, TokenRequest, http_request, inert_offer};

fn join(bridge: &Bridge, room: &str) -> HttpResponse {
    let token = bridge.token_with(&TokenRequest {
        room: room.into(),
        owner: true,
        ..Default::default()
    });
    let auth = format!("Bearer {token}");
    http_request(
        bridge.public_addr(),
        "POST",
        &format!("/conferences/{room}/endpoints"),
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/sdp"),
        ],
        inert_offer().as_bytes(),
    )
    .expect("join request")
}

/// The UDP port of the answer's host candidate.
fn media_port(answer: &str) -> u16 {
    answer
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.strip_prefix("a=candidate:")?.split_whitespace().collect();
            f.get(5)?.parse().ok()
        })
        .expect("a host candidate with a port")
}

fn stress_level(bridge: &Bridge) -> f64 {
    let resp =
        http_request(bridge.private_addr(), "GET", "/colibri/stats", &[], b"").expect("stats");
    resp.json().expect("JSON")["stress_level"]
        .as_f64()
        .expect("stress_level")
}

/// Sum of a metric's samples whose line contains every one of `parts`.
fn metric_sum(bridge: &Bridge, parts: &[&str]) -> f64 {
    let resp = http_request(bridge.private_addr(), "GET", "/metrics", &[], b"").expect("metrics");
    resp.text()
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn above_max_packet_rate_new_conferences_get_503_overloaded_and_running_ones_take_joins() {
    let bridge = Bridge::start("[load]\nmax_packet_rate = 200\n");
    let running = join(&bridge, "running");
    assert_eq!(running.status, 201, "{}", running.text());
    let port = media_port(&running.text());

    // About 2,000 datagrams a second of garbage at the endpoint's port, from
    // another thread, until the test is done.
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
            let to = SocketAddr::from(([127, 0, 0, 1], port));
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    let _ = sock.send_to(&[0x42; 200], to);
                    sent += 1;
                }
                thread::sleep(Duration::from_millis(10));
            }
            sent
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let stress = loop {
        let s = stress_level(&bridge);
        if s > 1.0 || Instant::now() > deadline {
            break s;
        }
        thread::sleep(Duration::from_millis(200));
    };
    println!("stress level under the flood: {stress:.2}");
    assert!(stress > 1.0, "stress level {stress}");

    let fresh = join(&bridge, "fresh");
    assert_eq!(fresh.status, 503, "{}", fresh.text());
    let body = fresh.json().expect("JSON error");
    assert_eq!(body["error"], "overloaded", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("stress"))
    );
    let again = join(&bridge, "running");
    assert_eq!(again.status, 201, "{}", again.text());

    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().expect("flood thread");
    thread::sleep(Duration::from_millis(300));
    let garbage = metric_sum(
        &bridge,
        &["ringbridge_packets_dropped_total{", "reason=\"garbage\""],
    );
    println!("flood: {sent} datagrams sent, {garbage} counted as garbage");
    assert!(
        garbage > 0.0 && garbage <= sent as f64,
        "{garbage} of {sent}"
    );
    assert_eq!(
        metric_sum(
            &bridge,
            &["ringbridge_joins_refused_total{", "code=\"overloaded\""]
        ),
        1.0
    );

    // The flood over, the rate falls back and new conferences are welcome.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stress_level(&bridge) > 1.0 {
        assert!(Instant::now() < deadline, "stress level never fell");
        thread::sleep(Duration::from_millis(200));
    }
    let later = join(&bridge, "fresh");
    assert_eq!(later.status, 201, "{}", later.text());
}
