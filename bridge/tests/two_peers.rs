//! Two (and three) client peers and one shard core on a virtual clock: no sockets,
//! no sleeps. The clients are real ICE/DTLS/SRTP peers (`proto::client`), so these
//! tests cover the whole path: STUN checks, DTLS handshake and fingerprint check,
//! SRTP both ways, slot mapping and rewriting, PLI, RTCP termination, consent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::shard::{ShardConfig, ShardCore};
use ringbridge_bridge::proto::transmit::TxQueue;
use ringbridge_control::media::{ConferenceId, EndpointId, JoinRequest, MediaEvent};

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
        self.join_with(name, cfg, |offer| offer)
    }

    fn join_with(
        &mut self,
        name: &'static str,
        cfg: ClientConfig,
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
        let answer = self.core.handle_join(self.now, &req, port).expect("join");
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
    assert_eq!(map[0].owner, "ben");
    assert_eq!(map[0].source, "ben-a0");
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
fn dtls_peer_with_a_certificate_that_does_not_match_the_fingerprint_is_refused() {
    let mut net = Net::new();
    net.join("alice", EVERYTHING);
    net.join_with("mallory", EVERYTHING, |offer| {
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
            .and_then(|e| e.negotiated)
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
            net.peers[0]
                .client
                .profile()
                .map(ringbridge_bridge::proto::shard::profile_name)
        );
        // Media flows over that association.
        net.send(0, MediaKind::Audio, 1, 960, &[5]);
        assert_eq!(net.received(1, net.slot_ssrc(1, MediaKind::Audio)).len(), 1);
    }
}
