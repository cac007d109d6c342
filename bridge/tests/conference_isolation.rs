//! Property test: random join / leave / mute / publish / slot-change sequences
//! across several conferences on one shard never forward a packet (nor announce
//! a source) across conferences, and every relation between routers, endpoints,
//! producers and consumers stays consistent in both directions. Real client
//! peers on a virtual clock, seeded so that a failure names its case.
//!
//! Half of the clients publish with the same SSRCs as every other such client,
//! in every conference: any shard-wide SSRC lookup would mix them up.

mod support;

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringbridge_bridge::proto::client::{ClientConfig, ClientPeer};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::shard::ShardCore;
use ringbridge_control::media::{
    ConferenceId, EndpointId, EndpointPolicy, MediaEvent, MuteRequest, RefusalReason,
};
use support::net::*;

const CONFERENCES: usize = 3;
const CASES: u64 = 24;
const OPERATIONS: usize = 40;

struct Member {
    peer: usize,
    conference: usize,
    name: &'static str,
    seq: u16,
    seen: usize,
}

fn conference(c: usize) -> ConferenceId {
    ConferenceId(format!("room{c}"))
}

/// A payload naming its conference and sender: audio as is, video after a VP8
/// key frame header (so every packet can open a slot).
fn payload(kind: MediaKind, conference: usize, peer: usize) -> Vec<u8> {
    let tag = [0xC0 | conference as u8, peer as u8];
    match kind {
        MediaKind::Audio => tag.to_vec(),
        _ => {
            let mut p = vec![0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a];
            p.extend_from_slice(&tag);
            p
        }
    }
}

/// Every relation inside every router, checked from both sides.
fn assert_consistent(core: &ShardCore, members: &[Member], net: &Net) {
    let mut endpoints = 0;
    for router in core.routers() {
        let members_set: HashSet<_> = router.members().iter().copied().collect();
        assert_eq!(
            members_set.len(),
            router.members().len(),
            "duplicate member"
        );
        endpoints += router.len();
        for &ek in router.members() {
            let ep = router.endpoint(ek).expect("member resolves");
            for &pk in ep.producers() {
                let p = router.producer(pk).expect("endpoint's producer resolves");
                assert_eq!(p.owner, ek, "producer's owner is its endpoint");
            }
            for &ck in ep.consumers() {
                let c = router.consumer(ck).expect("endpoint's consumer resolves");
                assert_eq!(c.receiver, ek, "consumer's receiver is its endpoint");
            }
        }
        for (pk, p) in router.producers() {
            assert!(
                members_set.contains(&p.owner),
                "producer of a gone endpoint"
            );
            let mut seen = HashSet::new();
            for &ck in p.consumers() {
                assert!(seen.insert(ck), "consumer listed twice");
                let c = router.consumer(ck).expect("index names a live consumer");
                assert_eq!(c.source(), Some(pk), "index and source of truth disagree");
            }
        }
        for (ck, c) in router.consumers() {
            assert!(
                members_set.contains(&c.receiver),
                "consumer of a gone endpoint"
            );
            if let Some(pk) = c.source() {
                let p = router.producer(pk).expect("source resolves in this router");
                assert!(p.consumers().contains(&ck), "source missing from the index");
                assert_ne!(p.owner, c.receiver, "an endpoint consumes itself");
                assert_eq!(p.kind, c.kind, "slot of the wrong kind");
                assert!(p.refused.is_none(), "a refused producer is mapped");
            }
        }
        // Every member of this router is one of the test's members of this
        // conference.
        for &ek in router.members() {
            let id = router.endpoint(ek).expect("member").id();
            let m = members
                .iter()
                .find(|m| m.name == id.0 && net.peers[m.peer].joined)
                .expect("a live member");
            assert_eq!(&conference(m.conference), router.id());
        }
    }
    assert_eq!(endpoints, core.endpoint_count());
}

fn run_case(seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut net = Net::new();
    let mut members: Vec<Member> = Vec::new();
    let mut delivered = 0;
    let mut events_seen = 0;
    for _ in 0..OPERATIONS {
        let live: Vec<usize> = (0..members.len())
            .filter(|&m| net.peers[members[m].peer].joined)
            .collect();
        match rng.random_range(0..10) {
            0..=2 if live.len() < 12 => {
                let c = rng.random_range(0..CONFERENCES);
                let mut cfg = ClientConfig {
                    audio: rng.random_bool(0.8),
                    video: rng.random_bool(0.6),
                    audio_slots: rng.random_range(0..3),
                    video_slots: rng.random_range(0..3),
                    ..EVERYTHING
                };
                if !cfg.audio && !cfg.video {
                    cfg.audio_slots = cfg.audio_slots.max(1);
                }
                let mut client = ClientPeer::new(cfg, net.now).expect("client");
                if rng.random_bool(0.5) {
                    client.audio_ssrc = 0x1111_1111;
                    client.video_ssrc = 0x2222_2222;
                }
                let name: &'static str =
                    Box::leak(format!("c{c}-p{}", members.len()).into_boxed_str());
                let policy = EndpointPolicy {
                    screen_sharing: rng.random_bool(0.5),
                };
                let peer = net.join_client(&conference(c).0, name, client, policy, |o| o);
                members.push(Member {
                    peer,
                    conference: c,
                    name,
                    seq: 0,
                    seen: 0,
                });
                net.progress(60);
            }
            3 if !live.is_empty() => {
                let m = &members[live[rng.random_range(0..live.len())]];
                net.core
                    .handle_leave(&conference(m.conference), &EndpointId(m.name.into()))
                    .expect("leave");
                net.peers[m.peer].joined = false;
            }
            4 if !live.is_empty() => {
                let m = &members[live[rng.random_range(0..live.len())]];
                let mute = MuteRequest {
                    audio: rng.random_bool(0.5).then(|| rng.random_bool(0.5)),
                    video: Some(rng.random_bool(0.5)),
                };
                net.core
                    .handle_mute(&conference(m.conference), &EndpointId(m.name.into()), mute)
                    .expect("mute");
            }
            5 if !live.is_empty() => {
                // Slot changes: refuse a source, or change the policy.
                let m = &members[live[rng.random_range(0..live.len())]];
                let (conf, id) = (conference(m.conference), EndpointId(m.name.into()));
                if rng.random_bool(0.5) {
                    let source = format!(
                        "{}-{}0",
                        m.name,
                        if rng.random_bool(0.5) { 'a' } else { 'v' }
                    );
                    let _ = net.core.handle_refuse_source(
                        &conf,
                        &id,
                        &source,
                        RefusalReason::OneVideoSourceOnly,
                    );
                } else {
                    let policy = EndpointPolicy {
                        screen_sharing: rng.random_bool(0.5),
                    };
                    net.core.set_policy(&conf, &id, policy);
                }
            }
            _ if !live.is_empty() => {
                // Publish a burst from a few members.
                for _ in 0..rng.random_range(1..4) {
                    let m = &mut members[live[rng.random_range(0..live.len())]];
                    if !net.peers[m.peer].client.is_connected() {
                        continue;
                    }
                    let (peer, c) = (m.peer, m.conference);
                    // Kinds the member does not publish are sent too: their SSRC
                    // is unknown and they must go nowhere.
                    for kind in [MediaKind::Audio, MediaKind::Video] {
                        m.seq = m.seq.wrapping_add(1);
                        let p = payload(kind, c, peer);
                        net.send(peer, kind, m.seq, u32::from(m.seq) * 960, &p);
                    }
                }
                net.progress(2);
            }
            _ => net.progress(5),
        }

        // No packet crossed a conference, nor came back to its sender.
        for m in members.iter_mut() {
            let got = &net.peers[m.peer].client.received_rtp;
            for r in &got[m.seen..] {
                let tag = &r.payload[r.payload.len().saturating_sub(2)..];
                assert_eq!(
                    tag[0],
                    0xC0 | m.conference as u8,
                    "seed {seed}: {} got a packet of conference {}",
                    m.name,
                    tag[0] & 0x0F
                );
                assert_ne!(usize::from(tag[1]), m.peer, "seed {seed}: own packet");
                delivered += 1;
            }
            m.seen = got.len();
        }
        // No map names a source of another conference.
        for ev in &net.events[events_seen..] {
            if let MediaEvent::SourcesMapChanged {
                conference: conf,
                sources,
                ..
            } = ev
            {
                for s in sources {
                    let owner = members
                        .iter()
                        .find(|m| m.name == &*s.owner)
                        .expect("owner is a member");
                    assert_eq!(&conference(owner.conference), conf, "seed {seed}");
                }
            }
        }
        events_seen = net.events.len();
        assert_consistent(&net.core, &members, &net);
    }
    delivered
}

#[test]
fn random_membership_and_media_never_cross_conferences_and_keep_back_links_consistent() {
    let delivered: usize = (0..CASES).map(|seed| run_case(0x5EED_0000 + seed)).sum();
    // The property is about forwarding, so forwarding must happen.
    assert!(delivered > 300, "only {delivered} packets delivered");
}
