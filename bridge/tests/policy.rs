//! Per-endpoint media policy and moderator mutes, enforced by the shard core on
//! every packet: two real client peers on a virtual clock (see two_peers.rs).

mod support;

use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_control::media::{
    ConferenceId, EndpointId, EndpointPolicy, MediaEvent, MuteRequest, RefusalReason,
};
use support::net::*;

/// Marks the offer's (first) video m-line as a screen: `a=content:slides`.
fn as_screen(offer: String) -> String {
    let mut out = String::new();
    let mut in_video = false;
    let mut done = false;
    for line in offer.split_inclusive("\r\n") {
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video");
        }
        out.push_str(line);
        if in_video && !done && line.starts_with("a=mid:") {
            out.push_str("a=content:slides\r\n");
            done = true;
        }
    }
    assert!(done, "offer has no video m-line");
    out
}

const NO_SCREEN: EndpointPolicy = EndpointPolicy {
    screen_sharing: false,
};

/// Sends `n` video packets (the first a keyframe) and `n` audio packets from
/// `from`; returns what `to` got on its video and audio slots.
fn burst(net: &mut Net, from: usize, to: usize, seq0: u16, n: u16) -> (usize, usize) {
    let (v, a) = (
        net.slot_ssrc(to, MediaKind::Video),
        net.slot_ssrc(to, MediaKind::Audio),
    );
    let (v0, a0) = (net.received(to, v).len(), net.received(to, a).len());
    for k in 0..n {
        let seq = seq0.wrapping_add(k);
        net.send(
            from,
            MediaKind::Video,
            seq,
            u32::from(seq) * 3000,
            &vp8(k == 0, k as u8),
        );
        net.send(
            from,
            MediaKind::Audio,
            seq,
            u32::from(seq) * 960,
            &[0xAA, k as u8],
        );
    }
    net.progress(2);
    (
        net.received(to, v).len() - v0,
        net.received(to, a).len() - a0,
    )
}

#[test]
fn a_screen_without_the_feature_is_not_forwarded_and_reported() {
    let mut net = Net::new();
    let a = net.join_with("alice", EVERYTHING, NO_SCREEN, as_screen);
    let b = net.join("bob", EVERYTHING);
    net.connect_all();
    let (video, audio) = burst(&mut net, a, b, 100, 10);
    assert_eq!(video, 0, "the screen reached bob");
    assert_eq!(audio, 10);
    assert!(net.core.counters().dropped_policy >= 10);
    assert!(net.events.iter().any(|e| matches!(e,
        MediaEvent::ForwardingRefused { endpoint, reason: RefusalReason::ScreenSharingNotGranted, source, .. }
            if endpoint.0 == "alice" && source == "alice-v0")));
    // Bob's map never names alice's screen.
    assert!(!net.events.iter().any(|e| matches!(e,
        MediaEvent::SourcesMapChanged { sources, .. } if sources.iter().any(|s| &*s.source == "alice-v0"))));
    // Bob's own camera (no restriction) reaches alice.
    let (video, _) = burst(&mut net, b, a, 500, 10);
    assert_eq!(video, 10);
}

#[test]
fn a_screen_with_the_feature_and_a_camera_without_it_are_forwarded() {
    let mut net = Net::new();
    let a = net.join_with("alice", EVERYTHING, EndpointPolicy::default(), as_screen);
    let b = net.join_with("bob", EVERYTHING, NO_SCREEN, |o| o);
    net.connect_all();
    assert_eq!(burst(&mut net, a, b, 100, 10), (10, 10));
    assert_eq!(burst(&mut net, b, a, 300, 10), (10, 10));
    assert_eq!(net.core.counters().dropped_policy, 0);
    assert!(
        !net.events
            .iter()
            .any(|e| matches!(e, MediaEvent::ForwardingRefused { .. }))
    );
}

#[test]
fn muted_media_stops_at_once_and_resumes_on_unmute() {
    let mut net = Net::new();
    let a = net.join("alice", EVERYTHING);
    let b = net.join("bob", EVERYTHING);
    net.connect_all();
    assert_eq!(burst(&mut net, a, b, 100, 10), (10, 10));
    let (room, alice) = (ConferenceId("room".into()), EndpointId("alice".into()));
    let audio_only = MuteRequest {
        audio: Some(true),
        video: None,
    };
    net.core
        .handle_mute(&room, &alice, audio_only)
        .expect("mute");
    assert_eq!(burst(&mut net, a, b, 200, 10), (10, 0));
    net.core
        .handle_mute(
            &room,
            &alice,
            MuteRequest {
                audio: Some(false),
                video: Some(true),
            },
        )
        .expect("mute");
    assert_eq!(burst(&mut net, a, b, 300, 10), (0, 10));
    // Unmuted video restarts on the next keyframe, with no sequence gap at bob.
    net.core
        .handle_mute(
            &room,
            &alice,
            MuteRequest {
                audio: None,
                video: Some(false),
            },
        )
        .expect("unmute");
    assert_eq!(burst(&mut net, a, b, 400, 10), (10, 10));
    let v = net.slot_ssrc(b, MediaKind::Video);
    let seqs: Vec<u16> = net.received(b, v).iter().map(|r| r.0).collect();
    // The sender's own numbers jumped (300 -> 400 while muted); bob's do not.
    for w in seqs[seqs.len() - 11..].windows(2) {
        assert_eq!(w[1], w[0].wrapping_add(1), "gap in {seqs:?}");
    }
    // Bob was never muted.
    assert_eq!(burst(&mut net, b, a, 600, 5), (5, 5));
    assert!(matches!(
        net.core
            .handle_mute(&room, &EndpointId("nobody".into()), audio_only),
        Err(ringbridge_control::media::MediaError::NotFound)
    ));
}

#[test]
fn a_source_refused_at_run_time_frees_its_slot() {
    let mut net = Net::new();
    let a = net.join("alice", EVERYTHING);
    let b = net.join("bob", EVERYTHING);
    net.connect_all();
    assert_eq!(burst(&mut net, a, b, 100, 5), (5, 5));
    let (room, alice) = (ConferenceId("room".into()), EndpointId("alice".into()));
    net.core
        .handle_refuse_source(
            &room,
            &alice,
            "alice-v0",
            RefusalReason::ScreenSharingNotGranted,
        )
        .expect("refuse");
    net.progress(1);
    assert_eq!(burst(&mut net, a, b, 200, 5), (0, 5));
    assert!(net.events.iter().any(|e| matches!(e,
        MediaEvent::SourcesMapChanged { receiver, sources, .. }
            if receiver.0 == "bob" && !sources.iter().any(|s| &*s.source == "alice-v0"))));
    assert!(
        net.core
            .handle_refuse_source(&room, &alice, "alice-v9", RefusalReason::OneVideoSourceOnly)
            .is_err()
    );
}
