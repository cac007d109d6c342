//! Allocation (jitsi-videobridge's `doc/allocation.md`) end to end through a
//! shard core: three publishers send three simulcast layers each (q 180p,
//! h 360p, f 720p); a receiver with three video slots sends
//! `ReceiverVideoConstraints` and gets what its constraints allow: only its
//! lastN sources, its on-stage source on the top layer and the others on the
//! low one; senders are told (`SenderSourceConstraints`) the tallest video
//! anyone wants of their source, 0 when nobody watches. Real client peers on a
//! virtual clock (see two_peers.rs).

mod support;

use ringbridge_bridge::proto::client::{ClientConfig, VP8_PT};
use ringbridge_bridge::proto::rtp::RtpHeader;
use ringbridge_control::media::{ConferenceId, EndpointId, MediaEvent};
use ringbridge_control::receiver_constraints::ReceiverConstraintsUpdate;
use support::net::*;
use support::simulcast::*;

const LAYERS: [(&str, u32, u16); 3] = [("q", 0x1000, 180), ("h", 0x2000, 360), ("f", 0x3000, 720)];
const PUBLISHERS: [&str; 3] = ["alice", "carol", "dave"];

/// Publishes video, receives nothing.
const PUBLISHER: ClientConfig = ClientConfig {
    audio: false,
    video: true,
    audio_slots: 0,
    video_slots: 0,
    ..EVERYTHING
};

/// Receives up to three videos, publishes one (never sent).
const RECEIVER: ClientConfig = ClientConfig {
    audio: false,
    video: true,
    audio_slots: 0,
    video_slots: 3,
    ..EVERYTHING
};

struct Room {
    net: Net,
    publishers: [usize; 3],
    bob: usize,
    seq: u16,
}

impl Room {
    fn new() -> Room {
        Room::with_video_slots(3)
    }

    /// A room whose receiver has `slots` video slots.
    fn with_video_slots(slots: usize) -> Room {
        let mut net = Net::new();
        let publishers = PUBLISHERS
            .map(|name| net.join_with(name, PUBLISHER, Default::default(), simulcast_offer));
        let receiver = ClientConfig {
            video_slots: slots,
            ..RECEIVER
        };
        let bob = net.join_with("bob", receiver, Default::default(), simulcast_offer);
        net.connect_all();
        net.peers[bob].client.keep_raw_rtp = true;
        Room {
            net,
            publishers,
            bob,
            seq: 1,
        }
    }

    /// One frame on every layer of every publisher, 30 ms of virtual time.
    fn round(&mut self, keyframe: bool) {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        for (p, &peer) in self.publishers.iter().enumerate() {
            for (l, &(rid, ssrc, height)) in LAYERS.iter().enumerate() {
                let tag = (p * 4 + l) as u8;
                let packet = rtp(
                    VP8_PT,
                    seq,
                    3000 * u32::from(seq),
                    ssrc,
                    &[(1, b"0"), (2, rid.as_bytes())],
                    &vp8_tagged(seq % 0x8000, keyframe, height, tag),
                    0,
                );
                self.net.send_raw(peer, &packet);
            }
        }
        self.net.progress(6);
    }

    /// As bob's `ReceiverVideoConstraints` would (the control crate's tests
    /// cover reading the JSON).
    fn constrain(&mut self, update: ReceiverConstraintsUpdate) {
        self.net
            .core
            .set_receiver_constraints(
                &ConferenceId("room".into()),
                &EndpointId("bob".into()),
                &update,
            )
            .expect("bob is in the room");
        // (the core's events are collected as the network steps)
        self.net.progress(1);
    }

    /// (publisher, layer) of each video packet bob got since `from`.
    fn received_since(&self, from: usize) -> Vec<(usize, u8)> {
        self.net.peers[self.bob]
            .client
            .received_raw_rtp
            .iter()
            .skip(from)
            .filter_map(|p| {
                let h = RtpHeader::parse(p).ok()?;
                let tag = *h.payload(p)?.last()?;
                Some((usize::from(tag / 4), tag % 4))
            })
            .collect()
    }

    fn received_count(&self) -> usize {
        self.net.peers[self.bob].client.received_raw_rtp.len()
    }

    /// The last `ForwardedSources` bob was sent.
    fn forwarded(&self) -> Option<Vec<String>> {
        self.net.events.iter().rev().find_map(|e| match e {
            MediaEvent::ForwardedSourcesChanged {
                receiver, sources, ..
            } if receiver.0 == "bob" => Some(sources.iter().map(|s| s.to_string()).collect()),
            _ => None,
        })
    }

    /// The last `SenderSourceConstraints` for `source`.
    fn sender_max_height(&self, source: &str) -> Option<i32> {
        self.net.events.iter().rev().find_map(|e| match e {
            MediaEvent::SenderSourceConstraints {
                source: s,
                max_height,
                ..
            } if s == source => Some(*max_height),
            _ => None,
        })
    }
}

#[test]
fn an_unconstrained_receiver_gets_every_publisher_on_the_top_layer() {
    let mut room = Room::new();
    room.round(true);
    let mark = room.received_count();
    for _ in 0..5 {
        room.round(false);
    }
    let mut got = room.received_since(mark);
    got.sort();
    got.dedup();
    assert_eq!(got, [(0, 2), (1, 2), (2, 2)]);
    assert_eq!(
        room.forwarded(),
        Some(vec!["alice-v0".into(), "carol-v0".into(), "dave-v0".into()])
    );
    assert_eq!(
        room.sender_max_height("alice-v0"),
        Some(-1),
        "someone watches with no limit"
    );
}

#[test]
fn last_n_1_forwards_only_the_selected_source_of_three() {
    let mut room = Room::new();
    room.round(true);
    room.constrain(ReceiverConstraintsUpdate {
        last_n: Some(1),
        selected_sources: Some(vec!["dave-v0".into()]),
        ..Default::default()
    });
    assert_eq!(room.forwarded(), Some(vec!["dave-v0".into()]));
    let mark = room.received_count();
    room.round(true);
    for _ in 0..5 {
        room.round(false);
    }
    let got = room.received_since(mark);
    assert!(!got.is_empty(), "dave's video arrives");
    assert!(got.iter().all(|&(p, _)| p == 2), "only dave's: {got:?}");
    // Nobody else watches alice and carol: their senders may stop.
    assert_eq!(room.sender_max_height("alice-v0"), Some(0));
    assert_eq!(room.sender_max_height("carol-v0"), Some(0));
    assert_eq!(room.sender_max_height("dave-v0"), Some(-1));

    // Back to unlimited: all three again, from their next key frames.
    room.constrain(ReceiverConstraintsUpdate {
        last_n: Some(-1),
        ..Default::default()
    });
    room.round(true);
    let mark = room.received_count();
    room.round(false);
    let mut got = room.received_since(mark);
    got.sort();
    assert_eq!(got, [(0, 2), (1, 2), (2, 2)]);
}

#[test]
fn on_stage_source_gets_the_top_layer_while_the_others_get_the_low_one() {
    let mut room = Room::new();
    room.round(true);
    room.constrain(ReceiverConstraintsUpdate {
        on_stage_sources: Some(vec!["carol-v0".into()]),
        default_max_height: Some(180),
        constraints: Some(vec![("carol-v0".into(), 720)]),
        ..Default::default()
    });
    room.round(true);
    let mark = room.received_count();
    for _ in 0..5 {
        room.round(false);
    }
    let mut got = room.received_since(mark);
    got.sort();
    got.dedup();
    assert_eq!(got, [(0, 0), (1, 2), (2, 0)], "carol on f, the others on q");
    assert_eq!(
        room.forwarded(),
        Some(vec!["carol-v0".into(), "alice-v0".into(), "dave-v0".into()]),
        "on stage first"
    );
}

#[test]
fn senders_are_told_max_height_180_when_receivers_cap_at_180() {
    let mut room = Room::new();
    room.round(true);
    room.constrain(ReceiverConstraintsUpdate {
        default_max_height: Some(180),
        ..Default::default()
    });
    for name in ["alice-v0", "carol-v0", "dave-v0"] {
        assert_eq!(room.sender_max_height(name), Some(180), "{name}");
    }
    // The event goes to the sender of the source.
    assert!(room.net.events.iter().any(|e| matches!(e,
        MediaEvent::SenderSourceConstraints { sender, source, max_height: 180, .. }
            if sender.0 == "carol" && source == "carol-v0")));
    room.round(true);
    let mark = room.received_count();
    room.round(false);
    let got = room.received_since(mark);
    assert!(
        !got.is_empty() && got.iter().all(|&(_, l)| l == 0),
        "{got:?}"
    );
}

#[test]
fn a_selected_source_takes_the_slot_of_a_source_not_forwarded() {
    // One video slot: join order maps alice onto it.
    let mut room = Room::with_video_slots(1);
    room.round(true);
    let mark = room.received_count();
    room.round(false);
    assert!(room.received_since(mark).iter().all(|&(p, _)| p == 0));
    // One slot is a lastN of 1: only alice is said to be forwarded.
    assert_eq!(room.forwarded(), Some(vec!["alice-v0".into()]));
    room.constrain(ReceiverConstraintsUpdate {
        last_n: Some(1),
        selected_sources: Some(vec!["dave-v0".into()]),
        ..Default::default()
    });
    // Bob is told that his slot now carries dave.
    let map = room.net.events.iter().rev().find_map(|e| match e {
        MediaEvent::SourcesMapChanged {
            receiver, sources, ..
        } if receiver.0 == "bob" => Some(sources.clone()),
        _ => None,
    });
    let map = map.expect("a sources map for bob");
    assert_eq!(
        map.iter()
            .filter(|s| s.video)
            .map(|s| &*s.source)
            .collect::<Vec<_>>(),
        ["dave-v0"]
    );
    room.round(true);
    let mark = room.received_count();
    room.round(false);
    let got = room.received_since(mark);
    assert!(
        !got.is_empty() && got.iter().all(|&(p, _)| p == 2),
        "{got:?}"
    );
}

#[test]
fn sources_outside_last_n_are_not_asked_for_key_frames() {
    let mut room = Room::new();
    room.constrain(ReceiverConstraintsUpdate {
        last_n: Some(1),
        selected_sources: Some(vec!["dave-v0".into()]),
        ..Default::default()
    });
    // Delta frames only, for two seconds: every slot still waits for a key frame.
    for _ in 0..66 {
        room.round(false);
    }
    let plis = |i: usize| room.net.peers[room.publishers[i]].client.received_pli.len();
    assert!(plis(2) > 0, "dave, who is watched, is asked");
    assert_eq!((plis(0), plis(1)), (0, 0), "alice and carol are not");
}
