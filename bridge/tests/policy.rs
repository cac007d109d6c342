//! Per-endpoint media policy and moderator mutes, enforced by the shard core on
//! every packet: two real client peers on a virtual clock (see two_peers.rs).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::shard::{ShardConfig, ShardCore};
use ringbridge_bridge::proto::transmit::TxQueue;
use ringbridge_control::media::{
    ConferenceId, EndpointId, EndpointPolicy, JoinRequest, MediaEvent, MuteRequest, RefusalReason,
};

const STEP: Duration = Duration::from_millis(5);

struct Peer {
    name: &'static str,
    client: ClientPeer,
    addr: SocketAddr,
    port: u16,
    joined: bool,
    /// DTLS datagrams the client sent before the bridge's first DTLS reply.
    first_flight: usize,
    got_dtls: bool,
}

struct Net {
    core: ShardCore,
    tx: TxQueue,
    now: Instant,
    peers: Vec<Peer>,
    events: Vec<MediaEvent>,
}

const EVERYTHING: ClientConfig = ClientConfig {
    dtls: ClientDtls::Auto,
    dtls_mtu: 1150,
    audio: true,
    video: true,
    audio_slots: 1,
    video_slots: 1,
};

impl Net {
    fn new() -> Self {
        let certificate =
            dimpl::certificate::generate_self_signed_certificate().expect("certificate");
        let now = Instant::now();
        Self {
            core: ShardCore::new(
                ShardConfig {
                    advertise: vec!["127.0.0.1".parse().expect("ip")],
                    certificate,
                },
                now,
            ),
            tx: TxQueue::with_capacity(64),
            now,
            peers: Vec::new(),
            events: Vec::new(),
        }
    }

    fn join(&mut self, name: &'static str, cfg: ClientConfig) -> usize {
        self.join_with(name, cfg, EndpointPolicy::default(), |offer| offer)
    }

    fn join_with(
        &mut self,
        name: &'static str,
        cfg: ClientConfig,
        policy: EndpointPolicy,
        edit: impl FnOnce(String) -> String,
    ) -> usize {
        let i = self.peers.len();
        let port = 10_000 + i as u16;
        let mut client = ClientPeer::new(cfg, self.now).expect("client");
        let req = JoinRequest {
            conference: ConferenceId("room".into()),
            endpoint: EndpointId(name.into()),
            offer_sdp: edit(client.offer()),
        };
        let answer = self
            .core
            .handle_join_with_policy(self.now, &req, port, policy)
            .expect("join");
        client.handle_answer(&answer, self.now).expect("answer");
        self.peers.push(Peer {
            name,
            client,
            addr: SocketAddr::from(([127, 0, 0, 1], 40_000 + i as u16)),
            port,
            joined: true,
            first_flight: 0,
            got_dtls: false,
        });
        i
    }

    /// Runs the network for `steps` virtual 5 ms steps.
    fn progress(&mut self, steps: usize) {
        for _ in 0..steps {
            self.step();
        }
    }

    fn step(&mut self) {
        let now = self.now;
        for p in &mut self.peers {
            if !p.joined {
                continue;
            }
            while let Some(mut d) = p.client.poll_transmit(now) {
                if !p.got_dtls && (20..64).contains(&d[0]) {
                    p.first_flight += 1;
                }
                self.core
                    .handle_receive(now, p.port, p.addr, &mut d, &mut self.tx);
            }
        }
        if self.core.poll_timeout().is_some_and(|t| now >= t) {
            self.core.handle_timeout(now, &mut self.tx);
        }
        self.deliver();
        for p in &mut self.peers {
            p.client.handle_timeout(now);
        }
        while let Some(ev) = self.core.poll_event() {
            self.events.push(ev);
        }
        self.now += STEP;
    }

    fn deliver(&mut self) {
        let now = self.now;
        for (t, data) in self.tx.iter() {
            if let Some(p) = self
                .peers
                .iter_mut()
                .find(|p| p.joined && p.addr == t.to && p.port == t.from_port)
            {
                p.got_dtls |= (20..64).contains(&data[0]);
                p.client.handle_receive(now, data);
            }
        }
        self.tx.clear();
    }

    /// Sends one RTP packet from peer `i` straight into the core.
    fn send(&mut self, i: usize, kind: MediaKind, seq: u16, ts: u32, payload: &[u8]) {
        let p = &mut self.peers[i];
        let mut d = p
            .client
            .send_rtp(kind, seq, ts, false, payload)
            .expect("connected");
        self.core
            .handle_receive(self.now, p.port, p.addr, &mut d, &mut self.tx);
        self.deliver();
    }

    fn connect_all(&mut self) {
        for _ in 0..1000 {
            // The client finishes first (it has the server's Finished); the bridge
            // connects when the client's last flight arrives.
            let bridge_done = self.core.counters().dtls_successes as usize == self.peers.len();
            if bridge_done && self.peers.iter().all(|p| p.client.is_connected()) {
                return;
            }
            self.step();
        }
        let states: Vec<_> = self
            .peers
            .iter()
            .map(|p| {
                (
                    p.name,
                    p.client.is_connected(),
                    p.client.failure().map(str::to_owned),
                )
            })
            .collect();
        panic!("peers did not connect: {states:?}");
    }

    fn slot_ssrc(&self, i: usize, kind: MediaKind) -> u32 {
        self.peers[i]
            .client
            .slots
            .iter()
            .find(|s| s.kind == kind)
            .expect("slot")
            .ssrc
    }

    fn received(&self, i: usize, ssrc: u32) -> Vec<(u16, u32, Vec<u8>)> {
        self.peers[i]
            .client
            .received_rtp
            .iter()
            .filter(|r| r.ssrc == ssrc)
            .map(|r| (r.seq, r.ts, r.payload.clone()))
            .collect()
    }
}

/// A VP8 payload: descriptor (S=1, PID=0) and a frame tag; keyframes carry the
/// start code.
fn vp8(keyframe: bool, n: u8) -> Vec<u8> {
    if keyframe {
        vec![0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, n]
    } else {
        vec![0x10, 0x01, 0x00, 0x00, n, n, n]
    }
}

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
        MediaEvent::SourcesMapChanged { sources, .. } if sources.iter().any(|s| s.source == "alice-v0"))));
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
            if receiver.0 == "bob" && !sources.iter().any(|s| s.source == "alice-v0"))));
    assert!(
        net.core
            .handle_refuse_source(&room, &alice, "alice-v9", RefusalReason::OneVideoSourceOnly)
            .is_err()
    );
}
