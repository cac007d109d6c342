//! The private listener: health, version, stats.

use std::time::{Duration, Instant};

use ringbridge_control::MediaStats;
use serde_json::json;

use crate::fake::*;

#[tokio::test]
async fn health_and_version() {
    let h = Harness::start().await;
    let resp = request(h.private, "GET", "/about/health", &[], b"").await;
    assert_eq!(resp.status, 200);
    assert!(resp.body.is_empty());

    let resp = request(h.private, "GET", "/about/version", &[], b"").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(
        resp.json(),
        json!({"name": "ringbridge", "version": env!("CARGO_PKG_VERSION"), "os": "linux"})
    );

    request(h.private, "POST", "/about/health", &[], b"")
        .await
        .assert_error(405, "method-not-allowed");
    request(h.private, "GET", "/nope", &[], b"")
        .await
        .assert_error(404, "not-found");
    // Operator paths are not on the public listener, nor signalling on the private one.
    request(h.public, "GET", "/about/health", &[], b"")
        .await
        .assert_error(404, "not-found");
    post_offer(h.private, "room1", &token_for("room1"), OFFER)
        .await
        .assert_error(404, "not-found");
    h.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn stats_reflect_the_media_plane() {
    let h = Harness::start_with(Duration::from_millis(100)).await;
    *h.media.base.lock().expect("lock") = MediaStats {
        conferences: 3,
        endpoints: 7,
        largest_conference: 4,
        packets_received: 1000,
        packets_sent: 2000,
        bytes_received: 100_000,
        bytes_sent: 200_000,
        ..MediaStats::default()
    };
    // Counters grow at a known rate from now on.
    *h.media.per_sec.lock().expect("lock") = Some((
        Instant::now(),
        MediaStats {
            packets_received: 5_000,
            packets_sent: 20_000,
            bytes_received: 1_250_000, // 10 Mbit/s = 10000 kbit/s
            bytes_sent: 5_000_000,     // 40000 kbit/s
            ..MediaStats::default()
        },
    ));
    // Let the sampler take a few samples.
    tokio::time::sleep(Duration::from_millis(450)).await;

    let resp = request(h.private, "GET", "/colibri/stats", &[], b"").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let s = resp.json();
    assert_eq!(s["conferences"], 3);
    assert_eq!(s["endpoints"], 7);
    assert_eq!(s["participants"], 7);
    assert_eq!(s["largest_conference"], 4);
    assert_eq!(s["stress_level"], 0.0);
    assert_eq!(s["drain"], false);
    assert_eq!(s["graceful_shutdown"], false);
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    let ts = s["current_timestamp"].as_str().expect("timestamp");
    assert_eq!(ts.len(), "2024-01-31 12:34:56.789".len(), "{ts}");
    assert!(s["total_packets_received"].as_u64().expect("number") >= 1000);

    let near = |key: &str, want: f64| {
        let got = s[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} is a number: {s}")) as f64;
        assert!(
            (got - want).abs() <= want * 0.15,
            "{key}: got {got}, want about {want}"
        );
    };
    near("packet_rate_download", 5_000.0);
    near("packet_rate_upload", 20_000.0);
    near("bit_rate_download", 10_000.0);
    near("bit_rate_upload", 40_000.0);
}
