//! The private listener: health, version, stats, metrics, drain and shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbridge_control::media::ShardSnapshot;
use ringbridge_control::{
    ControlError, ControlSettings, MediaStats, PrivateConfig, PublicConfig, ShutdownHandle,
};
use serde_json::json;
use tokio::task::JoinHandle;

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
        shards: vec![
            ShardSnapshot {
                endpoints_sending_audio: 2,
                endpoints_sending_video: 1,
                ..ShardSnapshot::default()
            },
            ShardSnapshot {
                index: 1,
                endpoints_sending_audio: 1,
                ..ShardSnapshot::default()
            },
        ],
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
    // 25000 packets/s against the default load.max_packet_rate of 50000.
    let stress = s["stress_level"]
        .as_f64()
        .expect("stress_level is a number");
    assert!((stress - 0.5).abs() < 0.08, "stress_level {stress}");
    assert_eq!(s["healthy"], true);
    assert_eq!(s["total_conferences_created"], 0);
    assert_eq!(s["inactive_endpoints"], 0);
    // Summed over the shards.
    assert_eq!(s["endpoints_sending_audio"], 3);
    assert_eq!(s["endpoints_sending_video"], 1);
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

/// A control plane with a given graceful-shutdown timeout, and its handle.
struct Running {
    public: SocketAddr,
    private: SocketAddr,
    media: Arc<FakeMedia>,
    handle: ShutdownHandle,
    task: JoinHandle<Result<(), ControlError>>,
}

async fn start_with_timeout(shutdown_timeout: Duration) -> Running {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut settings = ControlSettings::new(
        SERVER_ID,
        PublicConfig {
            listen: loopback,
            ..PublicConfig::default()
        },
        PrivateConfig { listen: loopback },
        auth(),
        SECRET.into(),
    );
    settings.shutdown_timeout = shutdown_timeout;
    settings.stats_interval = Duration::from_millis(100);
    let media = Arc::new(FakeMedia::default());
    let (_events, rx) = tokio::sync::mpsc::unbounded_channel();
    let control = ringbridge_control::bind(settings, media.clone(), rx)
        .await
        .expect("bind");
    let (public, private) = (control.public_addr(), control.private_addr());
    let handle = control.shutdown_handle();
    // Never completes: only the handle and POST /colibri/shutdown stop it.
    let task = tokio::spawn(control.run(std::future::pending()));
    Running {
        public,
        private,
        media,
        handle,
        task,
    }
}

async fn join(addr: SocketAddr, room: &str) -> String {
    let resp = post_offer(addr, room, &token_for(room), OFFER).await;
    assert_eq!(resp.status, 201, "join {room}: {}", resp.text());
    resp.header("location").expect("Location").to_owned()
}

async fn leave(addr: SocketAddr, location: &str, room: &str) {
    let auth = format!("Bearer {}", token_for(room));
    let resp = request(addr, "DELETE", location, &[("Authorization", &auth)], b"").await;
    assert_eq!(resp.status, 204, "leave: {}", resp.text());
}

async fn stats(addr: SocketAddr) -> serde_json::Value {
    let resp = request(addr, "GET", "/colibri/stats", &[], b"").await;
    assert_eq!(resp.status, 200);
    resp.json()
}

#[tokio::test]
async fn drain_refuses_new_conferences_only() {
    let h = Harness::start().await;
    let (_, _) = h.join("running").await;
    let s = stats(h.private).await;
    assert_eq!(s["drain"], false);
    assert_eq!(s["total_conferences_created"], 1);

    let resp = request(h.private, "POST", "/colibri/drain/enable", &[], b"").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"drain": true}));
    assert_eq!(stats(h.private).await["drain"], true);

    post_offer(h.public, "fresh", &token_for("fresh"), OFFER)
        .await
        .assert_error(503, "draining");
    // The running conference still takes joins, under any spelling of its name
    // that canonicalises to it.
    h.join("running").await;
    assert_eq!(h.media.joins.lock().expect("lock").len(), 2);
    let resp = post_offer(h.public, "RUNNING", &token_for("running"), OFFER).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(h.media.joins.lock().expect("lock").len(), 3);

    request(h.private, "GET", "/colibri/drain/enable", &[], b"")
        .await
        .assert_error(405, "method-not-allowed");
    let resp = request(h.private, "POST", "/colibri/drain/disable", &[], b"").await;
    assert_eq!(resp.status, 200);
    assert_eq!(stats(h.private).await["drain"], false);
    h.join("fresh").await;
    assert_eq!(stats(h.private).await["total_conferences_created"], 2);
    h.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn graceful_shutdown_waits_for_the_last_conference() {
    let r = start_with_timeout(Duration::from_secs(30)).await;
    let a = join(r.public, "a").await;
    let b = join(r.public, "b").await;

    let bad_bodies: [&[u8]; 4] = [b"", b"{", b"{\"graceful-shutdown\": \"yes\"}", b"[]"];
    for bad in bad_bodies {
        request(r.private, "POST", "/colibri/shutdown", &[], bad)
            .await
            .assert_error(400, "bad-request");
    }
    let resp = request(
        r.private,
        "POST",
        "/colibri/shutdown",
        &[("Content-Type", "application/json")],
        br#"{"graceful-shutdown": true}"#,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(stats(r.private).await["graceful_shutdown"], true);

    // No new joins, not even to a running conference.
    post_offer(r.public, "a", &token_for("a"), OFFER)
        .await
        .assert_error(503, "shutting-down");
    post_offer(r.public, "c", &token_for("c"), OFFER)
        .await
        .assert_error(503, "shutting-down");

    // Still serving while conferences run.
    leave(r.public, &a, "a").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !r.task.is_finished(),
        "stopped with conference b still running"
    );
    assert_eq!(stats(r.private).await["graceful_shutdown"], true);

    let started = Instant::now();
    leave(r.public, &b, "b").await;
    let result = tokio::time::timeout(Duration::from_secs(5), r.task)
        .await
        .expect("run returns once the last conference ended")
        .expect("no panic");
    result.expect("clean stop");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(r.media.leaves.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn graceful_shutdown_gives_up_after_the_timeout() {
    let r = start_with_timeout(Duration::from_millis(600)).await;
    join(r.public, "stays").await;
    let started = Instant::now();
    r.handle.graceful();
    let result = tokio::time::timeout(Duration::from_secs(5), r.task)
        .await
        .expect("run returns after the timeout")
        .expect("no panic");
    result.expect("clean stop");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn immediate_shutdown_cuts_a_graceful_one_short() {
    let r = start_with_timeout(Duration::from_secs(60)).await;
    join(r.public, "stays").await;
    r.handle.graceful();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!r.task.is_finished());
    let resp = request(
        r.private,
        "POST",
        "/colibri/shutdown",
        &[],
        br#"{"graceful-shutdown": false}"#,
    )
    .await;
    assert_eq!(resp.status, 200);
    tokio::time::timeout(Duration::from_secs(5), r.task)
        .await
        .expect("run returns at once")
        .expect("no panic")
        .expect("clean stop");
}

/// Samples of one metric, by their label sets, from a parsed scrape.
pub(crate) fn samples(
    scrape: &prometheus_parse::Scrape,
    name: &str,
) -> Vec<(HashMap<String, String>, f64)> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{name}: unexpected value {other:?}"),
            };
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (labels, value)
        })
        .collect()
}

pub(crate) fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(scrape, name)
        .into_iter()
        .find(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

pub(crate) async fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let resp = request(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(resp.status, 200);
    let ct = resp.header("content-type").expect("content type");
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = resp.text();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

fn shard(index: usize, scale: u64) -> ShardSnapshot {
    ShardSnapshot {
        index,
        core: Some(index + 1),
        endpoints: 2,
        conferences: 1,
        packets_received: 100 * scale,
        bytes_received: 10_000 * scale,
        packets_sent: 200 * scale,
        bytes_sent: 20_000 * scale,
        dropped_auth: scale,
        dropped_replay: 2 * scale,
        dropped_unknown_source: 3 * scale,
        dropped_unknown_ssrc: 4 * scale,
        dropped_malformed: 5 * scale,
        stun_refused: 6 * scale,
        ice_successes: 7 * scale,
        ice_failures: scale,
        dtls_successes: 7 * scale,
        dtls_failures: scale,
        send_errors: scale,
        endpoints_sending_audio: 1,
        endpoints_sending_video: 1,
        inactive_conferences: 0,
        inactive_endpoints: 0,
        dropped_silence: 8 * scale,
        dominant_speaker_changes: 9 * scale,
        ..ShardSnapshot::default()
    }
}

#[tokio::test]
async fn metrics_scrape_parses_and_counters_move() {
    let h = Harness::start().await;
    let set = |scale: u64| {
        *h.media.base.lock().expect("lock") = MediaStats {
            conferences: 2,
            endpoints: 4,
            largest_conference: 2,
            io_backend: "mmsg",
            gso: true,
            shards: vec![shard(0, scale), shard(1, 10 * scale)],
            ..MediaStats::default()
        };
    };
    set(1);
    let first = scrape(h.private).await;
    assert_eq!(
        value(
            &first,
            "ringbridge_packets_received_total",
            &[("shard", "0")]
        ),
        100.0
    );
    assert_eq!(
        value(
            &first,
            "ringbridge_packets_received_total",
            &[("shard", "1")]
        ),
        1000.0
    );
    for (reason, per_scale) in [
        ("auth", 1.0),
        ("replay", 2.0),
        ("unknown_source", 3.0),
        ("unknown_ssrc", 4.0),
        ("malformed", 5.0),
        ("silence", 8.0),
    ] {
        assert_eq!(
            value(
                &first,
                "ringbridge_packets_dropped_total",
                &[("shard", "0"), ("reason", reason)]
            ),
            per_scale
        );
    }
    assert_eq!(value(&first, "ringbridge_endpoints", &[]), 4.0);
    assert_eq!(value(&first, "ringbridge_conferences", &[]), 2.0);
    assert_eq!(value(&first, "ringbridge_stress_level", &[]), 0.0);
    assert_eq!(
        value(
            &first,
            "ringbridge_build_info",
            &[("io_backend", "mmsg"), ("gso", "true")]
        ),
        1.0
    );
    for name in [
        "ringbridge_bytes_received_total",
        "ringbridge_packets_sent_total",
        "ringbridge_bytes_sent_total",
        "ringbridge_ice_successes_total",
        "ringbridge_ice_failures_total",
        "ringbridge_dtls_successes_total",
        "ringbridge_dtls_failures_total",
        "ringbridge_stun_refused_total",
        "ringbridge_send_errors_total",
        "ringbridge_shard_endpoints",
        "ringbridge_shard_conferences",
        "ringbridge_shard_ports_in_use",
        "ringbridge_shard_ports_free",
    ] {
        assert_eq!(
            samples(&first, name).len(),
            2,
            "{name}: one sample per shard"
        );
    }

    assert_eq!(
        samples(&first, "ringbridge_endpoints_expired_total").len(),
        4,
        "one sample per shard and reason (consent-expired, dtls-failed)"
    );

    // The media plane's counters move; so does the scrape.
    set(3);
    let second = scrape(h.private).await;
    assert_eq!(
        value(
            &second,
            "ringbridge_packets_received_total",
            &[("shard", "0")]
        ),
        300.0
    );
    assert_eq!(
        value(
            &second,
            "ringbridge_packets_dropped_total",
            &[("shard", "1"), ("reason", "replay")]
        ),
        60.0
    );
    assert_eq!(
        value(
            &second,
            "ringbridge_dtls_successes_total",
            &[("shard", "1")]
        ),
        210.0
    );
    assert_eq!(
        value(
            &second,
            "ringbridge_dominant_speaker_changes_total",
            &[("shard", "1")]
        ),
        270.0
    );

    // Drain shows up too.
    request(h.private, "POST", "/colibri/drain/enable", &[], b"").await;
    assert_eq!(
        value(&scrape(h.private).await, "ringbridge_drain", &[]),
        1.0
    );
    request(h.private, "POST", "/metrics", &[], b"")
        .await
        .assert_error(405, "method-not-allowed");
    h.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn jvb_graceful_shutdown_script_sends_a_string() {
    // jvb's graceful_shutdown.sh posts {"graceful-shutdown": "true"}.
    let r = start_with_timeout(Duration::from_secs(30)).await;
    let location = join(r.public, "room").await;
    let resp = request(
        r.private,
        "POST",
        "/colibri/shutdown",
        &[("Content-Type", "application/json")],
        br#"{"graceful-shutdown": "true"}"#,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json(), json!({"graceful-shutdown": true}));
    assert_eq!(stats(r.private).await["graceful_shutdown"], true);
    post_offer(r.public, "other", &token_for("other"), OFFER)
        .await
        .assert_error(503, "shutting-down");
    // Still waiting for "room" to end.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!r.task.is_finished());
    leave(r.public, &location, "room").await;
    tokio::time::timeout(Duration::from_secs(5), r.task)
        .await
        .expect("run returns once the last conference ended")
        .expect("no panic")
        .expect("clean stop");
}

#[tokio::test]
async fn jvb_graceful_shutdown_string_false_stops_at_once() {
    let r = start_with_timeout(Duration::from_secs(60)).await;
    join(r.public, "stays").await;
    let resp = request(
        r.private,
        "POST",
        "/colibri/shutdown",
        &[],
        br#"{"graceful-shutdown": "false"}"#,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    tokio::time::timeout(Duration::from_secs(5), r.task)
        .await
        .expect("run returns at once")
        .expect("no panic")
        .expect("clean stop");
}

#[tokio::test]
async fn refused_joins_are_counted_by_error_code() {
    let h = Harness::start().await;
    let before = scrape(h.private).await;
    assert!(samples(&before, "ringbridge_joins_refused_total").is_empty());

    // 401 token-missing, twice.
    for _ in 0..2 {
        request(
            h.public,
            "POST",
            "/conferences/r1/endpoints",
            &[("Content-Type", "application/sdp")],
            OFFER.as_bytes(),
        )
        .await
        .assert_error(401, "token-missing");
    }
    // 403 room-mismatch.
    post_offer(h.public, "r1", &token_for("elsewhere"), OFFER)
        .await
        .assert_error(403, "room-mismatch");
    // 503 overloaded, from the media plane.
    *h.media.next_error.lock().expect("lock") = Some(ringbridge_control::MediaError::Overloaded(
        "no free media port".into(),
    ));
    post_offer(h.public, "r1", &token_for("r1"), OFFER)
        .await
        .assert_error(503, "overloaded");
    // 503 draining, from the gate in front of signalling.
    request(h.private, "POST", "/colibri/drain/enable", &[], b"").await;
    post_offer(h.public, "r2", &token_for("r2"), OFFER)
        .await
        .assert_error(503, "draining");
    // A successful join, and a refused leave, count nothing.
    request(h.private, "POST", "/colibri/drain/disable", &[], b"").await;
    h.join("r3").await;
    request(
        h.public,
        "DELETE",
        "/conferences/r3/endpoints/nope",
        &[],
        b"",
    )
    .await;

    let after = scrape(h.private).await;
    for (code, n) in [
        ("token-missing", 2.0),
        ("room-mismatch", 1.0),
        ("overloaded", 1.0),
        ("draining", 1.0),
    ] {
        assert_eq!(
            value(&after, "ringbridge_joins_refused_total", &[("code", code)]),
            n,
            "{code}"
        );
    }
    assert_eq!(samples(&after, "ringbridge_joins_refused_total").len(), 4);
    h.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn stats_have_jvb_conference_lifetimes_sizes_and_ice_outcomes() {
    let h = Harness::start().await;
    *h.media.base.lock().expect("lock") = MediaStats {
        shards: vec![
            ShardSnapshot {
                ice_successes: 5,
                ice_failures: 1,
                dominant_speaker_changes: 4,
                ..ShardSnapshot::default()
            },
            ShardSnapshot {
                index: 1,
                ice_successes: 2,
                ice_failures: 2,
                dominant_speaker_changes: 1,
                ..ShardSnapshot::default()
            },
        ],
        endpoints: 3,
        ..MediaStats::default()
    };
    let s = stats(h.private).await;
    assert_eq!(s["total_conferences_completed"], 0);
    assert_eq!(s["total_conference_seconds"], 0);
    assert_eq!(s["conference_sizes"], json!(vec![0u64; 22]));

    let auth = format!("Bearer {}", token_for("pair"));
    let a = join(h.public, "pair").await;
    join(h.public, "pair").await;
    let solo = join(h.public, "solo").await;
    let s = stats(h.private).await;
    let mut sizes = [0u64; 22];
    sizes[1] = 1;
    sizes[2] = 1;
    assert_eq!(s["conference_sizes"], json!(sizes));
    assert_eq!(s["total_participants"], 3);
    assert_eq!(s["total_ice_succeeded"], 7);
    assert_eq!(s["total_ice_failed"], 3);
    assert_eq!(s["total_dominant_speaker_changes"], 5);
    // jq '.participants - .octo_endpoints' works, as on jvb.
    assert_eq!(
        s["participants"].as_u64().expect("number") - s["octo_endpoints"].as_u64().expect("number"),
        3
    );
    assert!(s["relay_id"].is_null(), "{s}");
    assert!(s["region"].is_null(), "{s}");
    assert!(s["threads"].as_u64().expect("threads") >= 1, "{s}");
    for key in ["rtt_aggregate", "loss_rate_download", "loss_rate_upload"] {
        assert_eq!(s[key].as_f64(), Some(0.0), "{key}: {s}");
    }

    // One endpoint of "pair" leaving ends nothing; "solo" leaving ends it.
    let resp = request(h.public, "DELETE", &a, &[("Authorization", &auth)], b"").await;
    assert_eq!(resp.status, 204);
    assert_eq!(stats(h.private).await["total_conferences_completed"], 0);
    leave(h.public, &solo, "solo").await;
    let s = stats(h.private).await;
    assert_eq!(s["total_conferences_completed"], 1);
    assert!(s["total_conference_seconds"].as_u64().is_some(), "{s}");
    let mut sizes = [0u64; 22];
    sizes[1] = 1;
    assert_eq!(s["conference_sizes"], json!(sizes));

    let m = scrape(h.private).await;
    assert_eq!(
        value(&m, "ringbridge_conferences_completed_total", &[]),
        1.0
    );
    assert_eq!(value(&m, "ringbridge_endpoints_created_total", &[]), 3.0);
    assert!(value(&m, "process_cpu_seconds_total", &[]) > 0.0);
    assert!(value(&m, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(value(&m, "process_open_fds", &[]) >= 3.0);
    assert!(value(&m, "process_threads", &[]) >= 1.0);
    h.shutdown().await.expect("clean shutdown");
}
