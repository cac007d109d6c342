//! Two (and three) client peers and one shard core on a virtual clock: no sockets,
//! no sleeps. The clients are real ICE/DTLS/SRTP peers (`proto::client`), so these
//! tests cover the whole path: STUN checks, DTLS handshake and fingerprint check,
//! SRTP both ways, slot mapping and rewriting, PLI, RTCP termination, consent.

mod support;

use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::shard::Activity;
use ringbridge_control::media::{ConferenceId, EndpointId, EndpointPolicy, MediaEvent};
use support::net::*;

#[test]
fn two_peers_exchange_audio_and_video_through_their_slots() {
    let mut net = Net::new();
    let a = net.join("alice", EVERYTHING);
    let b = net.join("bob", EVERYTHING);
    net.connect_all();
    let connected = net
        .events
        .iter()
        .filter(|e| matches!(e, MediaEvent::EndpointConnected { .. }))
        .count();
    assert_eq!(connected, 2);

    // Audio A -> B: arrives on B's audio slot, SSRC rewritten, numbering continuous.
    for k in 0..50u16 {
        net.send(
            a,
            MediaKind::Audio,
            1000 + k,
            48_000 + 960 * u32::from(k),
            &[0xAA, k as u8],
        );
    }
    let got = net.received(b, net.slot_ssrc(b, MediaKind::Audio));
    assert_eq!(got.len(), 50, "every audio packet reaches the other peer");
    for w in got.windows(2) {
        assert_eq!(w[1].0, w[0].0.wrapping_add(1));
        assert_eq!(w[1].1, w[0].1.wrapping_add(960));
    }
    assert_eq!(got[7].2, vec![0xAA, 7]);
    assert!(
        net.received(a, net.slot_ssrc(a, MediaKind::Audio))
            .is_empty(),
        "a sender never gets its own audio back"
    );

    // Video A -> B: delta frames are held back until a keyframe, and the bridge
    // asks A for one with a PLI on A's video SSRC.
    let video_slot = net.slot_ssrc(b, MediaKind::Video);
    net.send(a, MediaKind::Video, 500, 9000, &vp8(false, 1));
    assert!(net.received(b, video_slot).is_empty());
    assert!(
        net.peers[a]
            .client
            .received_pli
            .contains(&net.peers[a].client.video_ssrc),
        "the sender is asked for a keyframe when a receiver starts on its video"
    );
    net.send(a, MediaKind::Video, 501, 12_000, &vp8(true, 2));
    net.send(a, MediaKind::Video, 502, 15_000, &vp8(false, 3));
    let got = net.received(b, video_slot);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].2, vp8(true, 2));
    assert_eq!(got[1].0, got[0].0.wrapping_add(1));

    // And B -> A the same way.
    net.send(b, MediaKind::Video, 7, 100, &vp8(true, 9));
    net.send(b, MediaKind::Audio, 3, 960, &[0xBB]);
    assert_eq!(net.received(a, net.slot_ssrc(a, MediaKind::Video)).len(), 1);
    assert_eq!(net.received(a, net.slot_ssrc(a, MediaKind::Audio)).len(), 1);

    // RTCP is terminated: the bridge sends its own receiver reports to publishers.
    net.progress(250);
    assert!(net.peers[a].client.received_rr > 0);
    assert!(net.peers[b].client.received_rr > 0);
    assert_eq!(net.peers[a].client.srtp_failures, 0);
    assert_eq!(net.peers[b].client.srtp_failures, 0);
}

#[test]
fn slot_switches_to_another_source_without_a_gap_when_a_sender_leaves() {
    let mut net = Net::new();
    let listen = ClientConfig {
        audio: false,
        video: false,
        audio_slots: 1,
        video_slots: 1,
        ..EVERYTHING
    };
    let speak = ClientConfig {
        audio: true,
        video: false,
        audio_slots: 0,
        video_slots: 0,
        ..EVERYTHING
    };
    let a = net.join("anna", speak);
    let b = net.join("ben", speak);
    let c = net.join("carl", listen);
    net.connect_all();
    let slot = net.slot_ssrc(c, MediaKind::Audio);

    // C's only audio slot carries A (first to join); B has no free slot at C.
    for k in 0..10u16 {
        net.send(a, MediaKind::Audio, 100 + k, 960 * u32::from(k), &[1]);
        net.send(
            b,
            MediaKind::Audio,
            60_000 + k,
            5_000_000 + 960 * u32::from(k),
            &[2],
        );
    }
    let got = net.received(c, slot);
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|r| r.2 == vec![1]));
    let (last_seq, last_ts) = (got[9].0, got[9].1);

    net.core
        .handle_leave(&ConferenceId("room".into()), &EndpointId("anna".into()))
        .expect("leave");
    net.peers[a].joined = false;
    let map = net
        .core
        .poll_event()
        .into_iter()
        .chain(std::iter::from_fn(|| net.core.poll_event()))
        .filter_map(|e| match e {
            MediaEvent::SourcesMapChanged {
                receiver, sources, ..
            } if receiver.0 == "carl" => Some(sources),
            _ => None,
        })
        .last()
        .expect("carl's map changed");
    assert_eq!(map.len(), 1);
    assert_eq!(&*map[0].owner, "ben");
    assert_eq!(&*map[0].source, "ben-a0");
    assert_eq!(map[0].ssrc, slot, "the slot SSRC never changes");

    net.progress(20); // 100 ms pass
    for k in 10..13u16 {
        net.send(
            b,
            MediaKind::Audio,
            60_000 + k,
            5_000_000 + 960 * u32::from(k),
            &[2],
        );
    }
    let got = net.received(c, slot);
    assert_eq!(got.len(), 13);
    assert_eq!(got[10].2, vec![2]);
    assert_eq!(got[10].0, last_seq.wrapping_add(1), "sequence continues");
    assert!(got[10].1 > last_ts, "timestamp moves forward");
    assert_eq!(got[11].0, last_seq.wrapping_add(2));
    assert_eq!(got[11].1, got[10].1.wrapping_add(960));
}

#[test]
fn endpoint_expires_thirty_seconds_after_consent_checks_stop() {
    let mut net = Net::new();
    net.join("alice", EVERYTHING);
    let b = net.join("bob", EVERYTHING);
    net.connect_all();
    let now = net.now;
    net.peers[b].client.stop_checks(now);
    net.progress(29_000 / 5);
    assert!(
        !net.events
            .iter()
            .any(|e| matches!(e, MediaEvent::EndpointExpired { .. })),
        "still alive before 30 s"
    );
    net.progress(2_000 / 5);
    let expired: Vec<_> = net
        .events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::EndpointExpired {
                endpoint, reason, ..
            } => Some((endpoint.0.clone(), *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(expired, vec![("bob".to_owned(), "consent-expired")]);
    assert_eq!(
        net.core.endpoint_count(),
        1,
        "alice keeps her consent fresh"
    );
    assert_eq!(net.core.poll_released_port(), Some(10_001));
}

#[test]
fn endpoint_that_never_sends_a_packet_expires_and_frees_its_port() {
    // A client that signals and then never reaches the media port (blocked UDP, a
    // crashed tab) must not hold its port and its conference for ever: no datagram
    // ever arrives to start the shard's housekeeping.
    let mut net = Net::new();
    let ghost = net.join("ghost", EVERYTHING);
    net.peers[ghost].joined = false; // its datagrams never reach the core
    net.progress(31_000 / 5);
    let expired: Vec<_> = net
        .events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::EndpointExpired {
                endpoint, reason, ..
            } => Some((endpoint.0.clone(), *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(expired, vec![("ghost".to_owned(), "consent-expired")]);
    assert_eq!(net.core.endpoint_count(), 0);
    assert_eq!(net.core.poll_released_port(), Some(10_000));
    assert_eq!(
        net.core.poll_timeout(),
        None,
        "an empty shard has nothing to do"
    );
}

#[test]
fn dtls_peer_with_a_certificate_that_does_not_match_the_fingerprint_is_refused() {
    let mut net = Net::new();
    net.join("alice", EVERYTHING);
    net.join_with("mallory", EVERYTHING, EndpointPolicy::default(), |offer| {
        // Same length, different digest.
        let i = offer.find("sha-256 ").expect("fingerprint") + 8;
        let mut o = offer.into_bytes();
        o[i] = if o[i] == b'0' { b'1' } else { b'0' };
        String::from_utf8(o).expect("utf8")
    });
    net.progress(400);
    assert!(!net.peers[1].client.is_connected() || net.core.endpoint_count() == 1);
    assert!(net.events.iter().any(|e| matches!(
        e,
        MediaEvent::EndpointExpired { endpoint, reason: "dtls-failed", .. } if endpoint.0 == "mallory"
    )));
}

#[test]
fn dtls_1_2_and_1_3_both_connect_even_with_a_client_hello_split_across_datagrams() {
    let cases = [
        (ClientDtls::V12, 1150, "1.2"),
        (ClientDtls::V13, 1150, "1.3"),
        // A 100-byte MTU splits the ClientHello into several records in several
        // datagrams, as Chrome's and Firefox's ML-KEM key shares do.
        (ClientDtls::V13, 100, "1.3"),
        (ClientDtls::V12, 100, "1.2"),
        (ClientDtls::Auto, 1150, "1.3"),
    ];
    for (dtls, dtls_mtu, want) in cases {
        let mut net = Net::new();
        let cfg = ClientConfig {
            dtls,
            dtls_mtu,
            ..EVERYTHING
        };
        net.join("alice", cfg);
        net.join("bob", cfg);
        net.connect_all();
        let negotiated = net
            .core
            .endpoint_by_port(10_000)
            .and_then(|t| t.negotiated())
            .expect("bridge side connected");
        assert_eq!(negotiated.1, want, "{dtls:?} mtu {dtls_mtu}");
        if dtls_mtu < 1000 {
            assert!(
                net.peers[0].first_flight > 1,
                "the ClientHello went out in {} datagram(s)",
                net.peers[0].first_flight
            );
        }
        assert_eq!(
            Some(negotiated.0),
            net.peers[0].client.profile().map(|p| p.name())
        );
        // Media flows over that association.
        net.send(0, MediaKind::Audio, 1, 960, &[5]);
        assert_eq!(net.received(1, net.slot_ssrc(1, MediaKind::Audio)).len(), 1);
    }
}

/// What `/colibri/stats` shows as `endpoints_sending_*` and (jitsi-videobridge's)
/// `inactive_conferences` / `inactive_endpoints`.
#[test]
fn endpoints_and_conferences_count_as_active_while_media_is_recent() {
    let mut net = Net::new();
    let a = net.join("alice", EVERYTHING);
    net.join("bob", EVERYTHING);
    net.connect_all();
    net.progress(30);
    let silent = Activity {
        audio: 0,
        video: 0,
        inactive_conferences: 1,
        inactive_endpoints: 2,
    };
    assert_eq!(net.core.activity(), silent, "connected but silent");

    net.send(a, MediaKind::Audio, 1, 960, &[1]);
    net.progress(30);
    assert_eq!(
        net.core.activity(),
        Activity {
            audio: 1,
            video: 0,
            inactive_conferences: 0,
            inactive_endpoints: 0,
        },
        "alice sends audio, which makes the whole conference active"
    );
    net.send(a, MediaKind::Video, 1, 3000, &vp8(true, 1));
    net.progress(30);
    let activity = net.core.activity();
    assert_eq!((activity.audio, activity.video), (1, 1), "and video");

    // Silence: after the 3 s window nothing counts, and the conference is inactive.
    net.progress(3_200 / 5);
    assert_eq!(net.core.activity(), silent);
}

/// The router's keyframe timer: a video slot mapped onto a source that has sent
/// no keyframe yet keeps asking the publisher, every 500 ms, with no packet to
/// trigger it; once the keyframe came, it stops.
#[test]
fn a_waiting_video_slot_asks_its_publisher_for_a_keyframe_on_a_timer() {
    let mut net = Net::new();
    let a = net.join("alice", EVERYTHING);
    let b = net.join("bob", EVERYTHING);
    net.connect_all();
    let video = net.peers[a].client.video_ssrc;
    let plis = |net: &Net| {
        net.peers[a]
            .client
            .received_pli
            .iter()
            .filter(|&&s| s == video)
            .count()
    };
    let before = plis(&net);
    net.progress(2_000 / 5);
    let asked = plis(&net) - before;
    assert!((3..=5).contains(&asked), "{asked} PLIs in 2 s");
    net.send(a, MediaKind::Video, 1, 3000, &vp8(true, 1));
    assert_eq!(net.received(b, net.slot_ssrc(b, MediaKind::Video)).len(), 1);
    let after_keyframe = plis(&net);
    net.progress(2_000 / 5);
    assert_eq!(
        plis(&net),
        after_keyframe,
        "no more PLIs once the slot runs"
    );
}

/// A slot waiting on a source whose publisher has not connected yet keeps no
/// keyframe timer (nothing could be asked: each turn would only poll again);
/// the publisher's connection arms it, and the publisher is then asked.
#[test]
fn a_source_whose_publisher_has_not_connected_arms_no_keyframe_timer() {
    let mut net = Net::new();
    let a = net.join("alice", EVERYTHING);
    let _b = net.join("bob", EVERYTHING);
    let room = ConferenceId("room".into());
    // The joins mapped each video onto the other's slot: one timer turn, and
    // with no publisher connected nothing is left armed.
    let now = net.now;
    net.core.handle_timeout(now, &mut net.tx);
    let router = net.core.router(&room).expect("room");
    assert_eq!(router.keyframe_retry_at(), None);
    net.now += std::time::Duration::from_millis(300);
    let now = net.now;
    net.core.handle_timeout(now, &mut net.tx);
    assert_eq!(
        net.core.router(&room).expect("room").keyframe_retry_at(),
        None
    );

    net.connect_all();
    let video = net.peers[a].client.video_ssrc;
    net.progress(1_000 / 5);
    assert!(
        net.peers[a].client.received_pli.contains(&video),
        "once connected, the publisher is asked for the keyframe the slot waits for"
    );
    assert!(
        net.core
            .router(&room)
            .expect("room")
            .keyframe_retry_at()
            .is_some(),
        "and asked again while the slot waits"
    );
}
