//! Interop with aiortc (tests/interop/client.py): real ICE, DTLS-SRTP, Opus and VP8
//! through a real `ringbridge` process on 127.0.0.1.

use std::time::Duration;

use ringbridge_tests::{AiortcClient, Bridge, ClientOutcome, forge_token_room, http_request};

/// Hard limit for one client.py run; the process is killed after it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Seconds of media each client counts (after its first decoded frame).
const DURATION_S: &str = "6";

fn show(outcome: &ClientOutcome) {
    // One line per client, so the test log shows frames decoded and the profile.
    println!(
        "{}: {}",
        outcome.label,
        outcome
            .json
            .as_ref()
            .map(|j| j.to_string())
            .unwrap_or_else(|| "<no JSON>".to_owned())
    );
}

fn assert_error_status(outcome: &ClientOutcome, want: u64) {
    show(outcome);
    assert_eq!(
        outcome.http_status(),
        Some(want),
        "wanted HTTP {want}\n{}",
        outcome.describe()
    );
    let json = outcome.json();
    for field in ["error", "message"] {
        assert!(
            json.get(field)
                .and_then(|v| v.as_str())
                .is_some_and(|s| !s.is_empty()),
            "the {want} body has no `{field}` string (DESIGN.md: {{\"error\", \"message\"}})\n{}",
            outcome.describe()
        );
    }
}

/// DESIGN.md: the answer BUNDLEs every m-line, and each `recvonly` m-line of the offer
/// (a slot) is answered `sendonly` with a fixed `a=ssrc` and an `a=msid`.
fn assert_answer_has_slots(c: &ClientOutcome) {
    assert_answer_has_slots_answered(c, "sendonly");
}

/// As [`assert_answer_has_slots`], with every slot m-line answered `direction`
/// (`sendrecv` for the m-lines of a client that publishes with `addTrack`).
fn assert_answer_has_slots_answered(c: &ClientOutcome, direction: &str) {
    let json = c.json();
    let answer = &json["answer"];
    let media = answer["media"].as_array().cloned().unwrap_or_default();
    let bundle = answer["bundle"].as_array().cloned().unwrap_or_default();
    let slots = json["slot_mids"].as_array().cloned().unwrap_or_default();
    assert!(
        !slots.is_empty(),
        "client offered no slots\n{}",
        c.describe()
    );
    for m in &media {
        assert!(
            bundle.contains(&m["mid"]),
            "m-line {} is not in the BUNDLE group\n{}",
            m["mid"],
            c.describe()
        );
    }
    for mid in &slots {
        let m = media
            .iter()
            .find(|m| m["mid"] == *mid)
            .unwrap_or_else(|| panic!("answer has no m-line for slot {mid}\n{}", c.describe()));
        assert_eq!(m["direction"], direction, "slot {mid}\n{}", c.describe());
        assert!(
            m["ssrcs"].as_array().is_some_and(|s| !s.is_empty()) && m["msid"] == true,
            "slot {mid} lacks a=ssrc/a=msid\n{}",
            c.describe()
        );
    }
}

#[test]
fn two_aiortc_clients_exchange_audio_and_video() {
    let bridge = Bridge::start("");
    let url = bridge.public_url();
    let alice = AiortcClient::new("alice", &url, "interop", &bridge.token("interop")).args([
        "--duration",
        DURATION_S,
        "--colibri",
    ]);
    let bob = AiortcClient::new("bob", &url, "interop", &bridge.token("interop")).args([
        "--duration",
        DURATION_S,
        "--colibri",
        "--token-in-query",
    ]);

    let (alice, bob) = (alice.spawn(), bob.spawn());

    // While media flows, the operator stats see one conference of two endpoints and
    // packets moving both ways. Polled until seen (clients need a few seconds to
    // start), bounded by the clients' own run time.
    let mut live = None;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(500));
        let Ok(resp) = http_request(bridge.private_addr(), "GET", "/colibri/stats", &[], b"")
        else {
            continue;
        };
        let Ok(stats) = resp.json() else { continue };
        let rate = |k: &str| stats[k].as_f64().unwrap_or(0.0);
        if stats["endpoints"] == 2
            && rate("packet_rate_download") > 0.0
            && rate("packet_rate_upload") > 0.0
        {
            live = Some(stats);
            break;
        }
    }
    let (alice, bob) = (alice.wait(CLIENT_TIMEOUT), bob.wait(CLIENT_TIMEOUT));
    show(&alice);
    show(&bob);
    let live = live.unwrap_or_else(|| {
        panic!(
            "/colibri/stats never showed the call\n{}",
            bridge.log_tail()
        )
    });
    println!("live /colibri/stats: {live}");
    assert_eq!(live["conferences"], 1);
    assert_eq!(live["largest_conference"], 2);
    for key in ["bit_rate_download", "bit_rate_upload"] {
        assert!(
            live[key].as_f64().unwrap_or(0.0) > 0.0,
            "{key} is zero: {live}"
        );
    }

    // Each receives the other's sources: the colibri source map names the other
    // endpoint as owner of `{id}-v0` and `{id}-a0`.
    let id = |c: &ClientOutcome| {
        c.str("location")
            .and_then(|l| l.rsplit('/').next().map(str::to_owned))
            .unwrap_or_default()
    };
    for (me, other) in [(&alice, &bob), (&bob, &alice)] {
        let other_id = id(other);
        let sources = me.json()["colibri_sources"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for suffix in ["-v0", "-a0"] {
            assert!(
                sources.iter().any(|s| s["owner"] == other_id.as_str()
                    && s["source"] == format!("{other_id}{suffix}").as_str()),
                "{} has no mapped source {other_id}{suffix}\n{}",
                me.label,
                me.describe()
            );
        }
    }

    for c in [&alice, &bob] {
        assert_eq!(
            c.http_status(),
            Some(201),
            "signalling failed\n{}",
            c.describe()
        );
        let frames = c.num("video_frames");
        let span = c.num("video_span_s");
        let audio = c.num("audio_frames");
        assert!(
            frames >= 60.0 && span >= 2.0,
            "{} decoded {frames} video frames spanning {span} s (want >= 60 over >= 2 s)\n{}",
            c.label,
            c.describe()
        );
        assert!(
            audio > 0.0,
            "{} decoded no audio\n{}",
            c.label,
            c.describe()
        );
        let answer = &c.json()["answer"];
        assert_eq!(
            answer["ice_lite"],
            true,
            "answer lacks a=ice-lite\n{}",
            c.describe()
        );
        assert_answer_has_slots(c);
        // aiortc offers AES-256-GCM first; the bridge picks its own preference.
        assert_eq!(
            c.str("srtp_profile"),
            Some("SRTP_AEAD_AES_128_GCM"),
            "SRTP profile read from DTLS\n{}",
            c.describe()
        );
        let classes = c.json()["colibri_classes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            classes.iter().any(|v| v == "ServerHello"),
            "{} got no ServerHello on the colibri websocket\n{}",
            c.label,
            c.describe()
        );
    }
}

/// Issue 10, item 1: most apps publish with `pc.addTrack()`, which offers `sendrecv`
/// m-lines. The bridge answers them `sendrecv` (a source and a slot on one m-line),
/// so two such clients, with no `recvonly` m-line at all, see and hear each other;
/// a client that publishes with `addTransceiver(sendonly)` and receives on
/// `recvonly` slots gets the same media from them.
#[test]
fn aiortc_clients_publishing_with_add_track_exchange_audio_and_video() {
    let bridge = Bridge::start("");
    let url = bridge.public_url();
    let token = bridge.token("addtrack");
    let add_track = |label: &str| {
        AiortcClient::new(label, &url, "addtrack", &token).args([
            "--duration",
            DURATION_S,
            "--add-track",
            "--slots",
            "0",
        ])
    };
    // Two addTrack publishers fill each other's one audio and one video m-line; the
    // third client (sendonly + recvonly) needs slots for both of them.
    let alice = add_track("alice").spawn();
    let bob = add_track("bob").spawn();
    let carol = AiortcClient::new("carol", &url, "addtrack", &token)
        .args(["--duration", DURATION_S, "--slots", "2"])
        .spawn();
    let (alice, bob, carol) = (
        alice.wait(CLIENT_TIMEOUT),
        bob.wait(CLIENT_TIMEOUT),
        carol.wait(CLIENT_TIMEOUT),
    );
    for c in [&alice, &bob, &carol] {
        show(c);
        assert_eq!(c.http_status(), Some(201), "signalling\n{}", c.describe());
    }
    for c in [&alice, &bob] {
        assert_answer_has_slots_answered(c, "sendrecv");
        let frames = c.num("video_frames");
        assert!(
            frames >= 60.0 && c.num("audio_frames") > 0.0,
            "{} (addTrack) decoded {frames} video frames and {} audio frames\n{}",
            c.label,
            c.num("audio_frames"),
            c.describe()
        );
    }
    // Carol's slots carry both addTrack publishers: two video streams decoded.
    assert_answer_has_slots(&carol);
    let decoding = carol.json()["slots"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|s| s["kind"] == "video" && s["frames"].as_f64().unwrap_or(0.0) >= 30.0)
        .count();
    assert_eq!(
        decoding,
        2,
        "carol decodes both addTrack publishers' video\n{}",
        carol.describe()
    );
}

#[test]
fn aiortc_offering_only_aes_cm_sha1_exchanges_media_with_a_gcm_client() {
    // The bridge decrypts with one profile and re-encrypts with the other.
    let bridge = Bridge::start("");
    let url = bridge.public_url();
    let cm = AiortcClient::new("cm", &url, "profiles", &bridge.token("profiles")).args([
        "--duration",
        "3",
        "--srtp-profiles",
        "SRTP_AES128_CM_SHA1_80",
    ]);
    let gcm = AiortcClient::new("gcm", &url, "profiles", &bridge.token("profiles"))
        .args(["--duration", "3"]);
    let (cm, gcm) = (cm.spawn(), gcm.spawn());
    let (cm, gcm) = (cm.wait(CLIENT_TIMEOUT), gcm.wait(CLIENT_TIMEOUT));
    show(&cm);
    show(&gcm);
    for (c, want) in [
        (&cm, "SRTP_AES128_CM_SHA1_80"),
        (&gcm, "SRTP_AEAD_AES_128_GCM"),
    ] {
        assert_eq!(c.str("srtp_profile"), Some(want), "{}", c.describe());
        let frames = c.num("video_frames");
        assert!(
            frames >= 30.0 && c.num("audio_frames") > 0.0,
            "{} decoded {frames} video frames and {} audio frames\n{}",
            c.label,
            c.num("audio_frames"),
            c.describe()
        );
    }
}

#[test]
fn client_with_token_for_other_room_gets_403() {
    let bridge = Bridge::start("");
    let token = bridge.token("elsewhere");
    let outcome = AiortcClient::new("eve", &bridge.public_url(), "interop", &token)
        .args(["--expect-status", "403"])
        .run(CLIENT_TIMEOUT);
    assert_error_status(&outcome, 403);
    println!(
        "403 error code: {:?} (room-mismatch expected by convention)",
        outcome.str("error")
    );
}

#[test]
fn forged_token_gets_401() {
    let bridge = Bridge::start("");
    let forged = forge_token_room(&bridge.token("elsewhere"), "interop");
    let outcome = AiortcClient::new("mallory", &bridge.public_url(), "interop", &forged)
        .args(["--expect-status", "401"])
        .run(CLIENT_TIMEOUT);
    assert_error_status(&outcome, 401);
}

#[test]
fn missing_token_gets_401() {
    let bridge = Bridge::start("");
    let outcome = AiortcClient::new("anonymous", &bridge.public_url(), "interop", "")
        .args(["--expect-status", "401"])
        .run(CLIENT_TIMEOUT);
    assert_error_status(&outcome, 401);
}
