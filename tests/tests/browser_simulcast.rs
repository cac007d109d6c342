//! Issue 11 in real browsers: three headless Chromium pages publish simulcast
//! (`sendEncodings` with rids `q`, `h`, `f`, a quarter, half and full size of a
//! fake 1280x720 camera) through a bridge on loopback, and each receives the
//! other two. Two pages are unconstrained and must decode 1280x720 from both
//! senders; the third sends `ReceiverVideoConstraints` with
//! `defaultConstraints.maxHeight = 180` on its colibri websocket and must get
//! at most 180 lines, while still decoding.
//!
//! `tests/browser/simulcast.mjs` drives `/usr/bin/chromium` (playwright-core)
//! and samples `getStats()` once a second for [`WINDOW_S`] seconds from the
//! moment all three peer connections are connected; the test prints what it
//! measured. Run: `cargo test -p ringbridge-tests --test browser_simulcast --
//! --nocapture` (about 40 s).
//!
//! Not covered yet: the third bullet of the browser tests (a receiver
//! behind a 1 Mbit/s cap moved down by the bandwidth estimate), which needs the
//! per-receiver estimator.

use std::time::Duration;

use ringbridge_tests::{Bridge, CHROMIUM, run_browser_script};
use serde_json::{Value, json};

/// Seconds sampled.
const WINDOW_S: u64 = 15;
/// The target: 1280x720 decoded within 10 s of connecting. Margin: stats are
/// sampled once a second, so the sample at 10 s may be up to half a tick late.
const WITHIN_S: f64 = 10.5;
/// The constrained page's `maxHeight`.
const MAX_HEIGHT: u64 = 180;
/// Time the constrained page's slots may take to reach a fitting layer (its
/// constraint travels with the websocket, and the switch waits for a key frame
/// of the smaller layer, which the bridge asks for).
const SETTLE_S: f64 = 3.0;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// One sample of one inbound stream: (t, frameHeight, framesDecoded).
type Row = (f64, f64, f64);

/// Per inbound video stream (by mid) of one page, its rows.
fn inbound(samples: &[Value]) -> Vec<Vec<Row>> {
    let mut streams: Vec<(String, Vec<Row>)> = Vec::new();
    for s in samples {
        let t = num(&s["t"]);
        for r in s["inbound"].as_array().into_iter().flatten() {
            let mid = r["mid"].to_string();
            let row = (t, num(&r["frameHeight"]), num(&r["framesDecoded"]));
            match streams.iter_mut().find(|(m, _)| *m == mid) {
                Some((_, v)) => v.push(row),
                None => streams.push((mid, vec![row])),
            }
        }
    }
    streams.into_iter().map(|(_, v)| v).collect()
}

#[test]
fn simulcast_receivers_get_720p_and_a_180_line_constraint_is_honoured() {
    let bridge = Bridge::start("");
    let room = "simulcast";
    let config = json!({
        "signal": bridge.public_url(),
        "room": room,
        "tokens": [bridge.token(room), bridge.token(room), bridge.token(room)],
        "seconds": WINDOW_S,
        "maxHeight": MAX_HEIGHT,
        "chromium": CHROMIUM,
    });
    let scratch = bridge
        .config_path()
        .parent()
        .expect("the config has a folder")
        .to_owned();
    let raw = run_browser_script("simulcast.mjs", &config, &scratch, Duration::from_secs(120));
    assert!(
        raw["ok"] == true,
        "the browser scenario failed: {}\nbridge log:\n{}",
        serde_json::to_string_pretty(&raw).unwrap_or_default(),
        bridge.log_tail()
    );
    let pages = raw["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), 3);

    let mut report = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        let samples = p["samples"].as_array().cloned().unwrap_or_default();
        assert!(
            p["answerSimulcast"] == true,
            "page {i}: no a=simulcast:recv in the answer"
        );
        let last = samples.last().expect("samples");
        let rids: Vec<(String, f64, f64)> = last["outbound"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                (
                    o["rid"].as_str().unwrap_or("").to_owned(),
                    num(&o["frameHeight"]),
                    num(&o["framesSent"]),
                )
            })
            .collect();
        let streams = inbound(&samples);
        let first_720: Vec<Option<f64>> = streams
            .iter()
            .map(|s| s.iter().find(|r| r.1 >= 720.0).map(|r| r.0))
            .collect();
        let heights_after_settle: Vec<f64> = streams
            .iter()
            .flat_map(|s| s.iter().filter(|r| r.0 >= SETTLE_S).map(|r| r.1))
            .collect();
        let decoded: Vec<f64> = streams
            .iter()
            .map(|s| s.last().map_or(0.0, |r| r.2) - s.first().map_or(0.0, |r| r.2))
            .collect();
        report.push(
            json!({"page": i, "sent_layers": rids, "first_720p_at_s": first_720,
            "max_height_after_settle": heights_after_settle.iter().cloned().fold(0.0, f64::max),
            "frames_decoded": decoded}),
        );

        assert_eq!(
            rids.iter().filter(|r| r.2 > 0.0).count(),
            3,
            "page {i} sends three layers: {rids:?}"
        );
        assert_eq!(
            streams.len(),
            2,
            "page {i} receives two cameras: {streams:?}"
        );
        for (k, d) in decoded.iter().enumerate() {
            assert!(
                *d >= WINDOW_S as f64 * 5.0,
                "page {i} stream {k}: only {d} frames decoded in {WINDOW_S} s"
            );
        }
        if i < 2 {
            for (k, t) in first_720.iter().enumerate() {
                assert!(
                    t.is_some_and(|t| t <= WITHIN_S),
                    "page {i} stream {k}: 1280x720 first decoded at {t:?} s: {:?}",
                    streams[k]
                );
            }
        } else {
            assert!(
                heights_after_settle
                    .iter()
                    .all(|&h| h > 0.0 && h <= MAX_HEIGHT as f64),
                "the constrained page got more than {MAX_HEIGHT} lines: {streams:?}"
            );
        }
    }
    eprintln!(
        "browser_simulcast measured: {}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
}
