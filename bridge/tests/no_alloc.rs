//! The packet path allocates nothing: after warm-up, thousands of audio and video
//! packets from one sender, fanned out to two receivers, pass through a shard core
//! (SRTP unprotect, SSRC demux, routing, rewriting, writing the receivers' header
//! extensions, SRTP protect per receiver, unwrapping RTX, caching video) with zero
//! heap allocations, counted by a global allocator. The run includes a lossy leg:
//! the bridge NACKs the sender's gaps (its timers run as the clock moves), the
//! sender's RTX repairs them, the receivers' NACKs are answered from the cache on
//! their slot RTX SSRCs, and transport-cc feedback goes to the sender.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringbridge_bridge::io::SinglePort;
use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::shard::{ShardConfig, ShardCore, SharedReceive};
use ringbridge_bridge::proto::srtp::SrtpProfile;
use ringbridge_bridge::proto::transmit::TxQueue;
use ringbridge_control::media::{ConferenceId, EndpointId, JoinRequest};

#[path = "support/alloc_count.rs"]
mod alloc_count;

use alloc_count::{Counting, counted};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

struct Peer {
    client: ClientPeer,
    addr: SocketAddr,
    port: u16,
}

/// Extension ids every peer offers on every m-line (BUNDLE).
const EXTMAPS: &str = "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:2 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
a=extmap:4 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n";

/// The sender's RTX SSRC for its video (FID group in its offer).
const RTX_SSRC: u32 = 0x0BAD_F00D;

/// The client's offer with the extmaps and transport-cc feedback on every
/// m-line, RTX on every video m-line and, on the video publisher line, a FID
/// group.
fn edit(offer: String, video_ssrc: u32) -> String {
    let mut out = String::new();
    for line in offer.split_inclusive("\r\n") {
        out.push_str(line);
        if line.starts_with("a=rtcp-mux") {
            out.push_str(EXTMAPS);
        }
        if line.starts_with("a=rtpmap:96 ") {
            out.push_str("a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n");
        }
        if line.starts_with("a=rtpmap:") {
            let pt = &line["a=rtpmap:".len()..line.find(' ').unwrap_or(line.len())];
            out.push_str(&format!("a=rtcp-fb:{pt} transport-cc\r\n"));
        }
        if line.starts_with(&format!("a=ssrc:{video_ssrc} ")) {
            out.push_str(&format!(
                "a=ssrc-group:FID {video_ssrc} {RTX_SSRC}\r\na=ssrc:{RTX_SSRC} cname:client\r\n"
            ));
        }
    }
    out
}

/// One datagram of the run: when it is sent (index of the 5 ms tick), from
/// which peer, and its protected bytes.
struct Sent {
    tick: u32,
    from: usize,
    bytes: Vec<u8>,
}

/// An RTCP generic NACK of `seq` alone.
fn nack(sender: u32, media: u32, seq: u16) -> Vec<u8> {
    let mut buf = [0u8; 16];
    let n = ringbridge_bridge::proto::rtcp::write_nack(
        &mut buf,
        sender,
        media,
        &[ringbridge_bridge::proto::rtcp::NackEntry { pid: seq, blp: 0 }],
    )
    .expect("fits");
    buf[..n].to_vec()
}

/// An RTP packet with a one-byte extension block of `exts` (each 1..=4 bytes).
fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, exts: &[(u8, &[u8])], payload: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for (id, v) in exts {
        block.push((id << 4) | (v.len() as u8 - 1));
        block.extend_from_slice(v);
    }
    while block.len() % 4 != 0 {
        block.push(0);
    }
    let mut p = vec![0x90, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xBE, 0xDE]);
    p.extend_from_slice(&((block.len() / 4) as u16).to_be_bytes());
    p.extend_from_slice(&block);
    p.extend_from_slice(payload);
    p
}

fn vp8(keyframe: bool, fill: u8, len: usize) -> Vec<u8> {
    let mut p = if keyframe {
        vec![0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a]
    } else {
        vec![0x10, 0x01, 0x00, 0x00]
    };
    p.resize(len, fill);
    p
}

/// Hands `d` from peer `p` to the core: on its own port, or (single-port
/// mode) on the shared port, demultiplexed by source address.
fn receive(
    core: &mut ShardCore,
    single_port: bool,
    now: Instant,
    p: &Peer,
    d: &mut [u8],
    tx: &mut TxQueue,
) {
    if single_port {
        let r = core.handle_shared_receive(now, now, p.addr, d, tx, false);
        assert_eq!(
            r,
            SharedReceive::Handled,
            "one shard: everything is its own"
        );
    } else {
        core.handle_receive(now, p.port, p.addr, d, tx);
    }
}

#[test]
fn forwarding_audio_and_video_to_two_receivers_allocates_nothing() {
    forwarding_allocates_nothing(false);
}

/// The same with every endpoint on one shared port (`media.port`): the
/// datagrams are demultiplexed by their validated source address.
#[test]
fn forwarding_on_a_shared_port_allocates_nothing() {
    forwarding_allocates_nothing(true);
}

/// Passing datagrams between shards (single-port mode, a datagram that landed
/// on the wrong shard's socket) allocates nothing either.
#[test]
fn handing_datagrams_between_shards_allocates_nothing() {
    let sp = SinglePort::bind("127.0.0.1".parse().expect("ip"), 0, 2, false).expect("bind");
    let from = SocketAddr::from(([127, 0, 0, 1], 40_000));
    sp.steer(from, 1);
    let datagram = [0x80u8; 1200];
    // Warm-up: the queue's slots are allocated at bind; nothing grows.
    sp.hand_off(1, from, &datagram).expect("room");
    assert!(sp.take_handed(1).is_some());
    let ((), allocations) = counted(|| {
        for _ in 0..10_000 {
            let owner = sp.owner_of(from).expect("steered");
            sp.hand_off(owner, from, &datagram).expect("room");
            let mut h = sp.take_handed(owner).expect("queued");
            assert_eq!(h.datagram().len(), datagram.len());
        }
    });
    assert_eq!(allocations, 0, "heap allocations handing datagrams over");
    assert_eq!(sp.handoffs(), 10_001);
}

fn forwarding_allocates_nothing(single_port: bool) {
    let mut now = Instant::now();
    let certificate = dimpl::certificate::generate_self_signed_certificate().expect("cert");
    let mut core = ShardCore::new(
        ShardConfig {
            advertise: vec!["127.0.0.1".parse().expect("ip")],
            certificate,
            srtp_profiles: SrtpProfile::PREFERRED.to_vec(),
            video_start_bitrate_kbps: 1500,
            index: 0,
            tcp_port: None,
            single_port: single_port.then_some(10_000),
            audio_last_n: 0,
            drop_silence: false,
        },
        now,
    );
    let mut tx = TxQueue::with_capacity(256);
    let cfg = ClientConfig {
        dtls: ClientDtls::Auto,
        dtls_mtu: 1150,
        srtp_profiles: SrtpProfile::BROWSER_OFFER,
        audio: true,
        video: true,
        audio_slots: 2,
        video_slots: 2,
    };
    let mut peers: Vec<Peer> = (0..3u16)
        .map(|i| {
            let mut client = ClientPeer::new(cfg, now).expect("client");
            let req = JoinRequest {
                conference: ConferenceId("room".into()),
                endpoint: EndpointId(format!("p{i}")),
                offer_sdp: edit(client.offer(), client.video_ssrc),
            };
            let answer = core.handle_join(now, &req, 10_000 + i).expect("join");
            client.handle_answer(&answer, now).expect("answer");
            Peer {
                client,
                addr: SocketAddr::from(([127, 0, 0, 1], 40_000 + i)),
                port: 10_000 + i,
            }
        })
        .collect();

    let pump = |core: &mut ShardCore, peers: &mut [Peer], tx: &mut TxQueue, now: Instant| {
        for p in peers.iter_mut() {
            while let Some(mut d) = p.client.poll_transmit(now) {
                receive(core, single_port, now, p, &mut d, tx);
            }
        }
        if core.poll_timeout().is_some_and(|t| now >= t) {
            core.handle_timeout(now, tx);
        }
        for (t, data) in tx.iter() {
            if single_port {
                assert_eq!(t.from_port, 10_000, "everything leaves the shared port");
            }
            if let Some(p) = peers.iter_mut().find(|p| p.addr == t.to) {
                p.client.handle_receive(now, data);
            }
        }
        tx.clear();
        for p in peers.iter_mut() {
            p.client.handle_timeout(now);
        }
        while core.poll_event().is_some() {}
    };
    for _ in 0..1000 {
        if core.counters().dtls_successes == 3 && peers.iter().all(|p| p.client.is_connected()) {
            break;
        }
        pump(&mut core, &mut peers, &mut tx, now);
        now += Duration::from_millis(5);
    }
    assert_eq!(core.counters().dtls_successes, 3, "all three connected");

    // Sender p0 publishes; p1 and p2 receive. Packets are protected up front so
    // that only the bridge's work is counted; one k is one 5 ms tick.
    let slot = |p: &Peer| {
        p.client
            .slots
            .iter()
            .find(|s| s.kind == MediaKind::Video)
            .expect("video slot")
            .ssrc
    };
    let slots = [slot(&peers[1]), slot(&peers[2])];
    let receiver_ssrcs = [peers[1].client.video_ssrc, peers[2].client.video_ssrc];
    // The slots' sequence numbers follow the source's by a fixed offset, learnt
    // from the first forwarded packet (the warm-up delivers to the clients).
    let mut offsets: [Option<u16>; 2] = [None, None];
    let lost = |k: u32| k % 20 == 7;
    let make = |peers: &mut [Peer], offsets: &[Option<u16>; 2], k: u32| -> Vec<Sent> {
        let seq = (k as u16).wrapping_add(65_000); // crosses the 16-bit wrap
        let client = &mut peers[0].client;
        // Audio with its level, mid and transport-wide seq (the level is copied
        // to the receivers under their ids, with mid, abs-send-time and their own
        // transport-wide seq).
        let level = [0x80 | (k % 127) as u8];
        let tseq = (2 * k as u16).to_be_bytes();
        let audio = rtp(
            111,
            seq,
            960 * k,
            client.audio_ssrc,
            &[(1, &level), (2, b"0"), (4, &tseq)],
            &[0xA0; 160],
        );
        let mut out = vec![Sent {
            tick: k,
            from: 0,
            bytes: client.protect_rtp(&audio).expect("audio"),
        }];
        let v = client
            .send_rtp(
                MediaKind::Video,
                seq,
                3000 * (k / 4),
                k % 4 == 3,
                &vp8(k == 0, k as u8, 1200),
            )
            .expect("video");
        if !lost(k) {
            out.push(Sent {
                tick: k,
                from: 0,
                bytes: v,
            });
        }
        let rtx_of = |client: &mut ClientPeer, of: u32, rtx_seq: u16| {
            let seq = (of as u16).wrapping_add(65_000);
            let mut osn = seq.to_be_bytes().to_vec();
            osn.extend_from_slice(&vp8(false, of as u8, 1200));
            let tseq = (2 * k as u16 + 1).to_be_bytes();
            let rtx = rtp(
                97,
                rtx_seq,
                3000 * (of / 4),
                RTX_SSRC,
                &[(2, b"1"), (4, &tseq)],
                &osn,
            );
            client.protect_rtp(&rtx).expect("rtx")
        };
        if k % 10 == 5 {
            // A repair of a packet the bridge has: recognised, dropped.
            let bytes = rtx_of(client, k, seq);
            out.push(Sent {
                tick: k,
                from: 0,
                bytes,
            });
        }
        if k >= 3 && lost(k - 3) {
            // The sender answers the bridge's NACK 15 ms after the loss.
            let bytes = rtx_of(client, k - 3, seq.wrapping_add(1));
            out.push(Sent {
                tick: k,
                from: 0,
                bytes,
            });
        }
        if k % 20 == 12 {
            // Each receiver lost the video packet of 2 ticks ago and NACKs it.
            for r in 0..2 {
                if let Some(off) = offsets[r] {
                    let slot_seq = seq.wrapping_sub(2).wrapping_add(off);
                    let n = nack(receiver_ssrcs[r], slots[r], slot_seq);
                    let bytes = peers[1 + r].client.send_rtcp(&n).expect("nack");
                    out.push(Sent {
                        tick: k,
                        from: 1 + r,
                        bytes,
                    });
                }
            }
        }
        out
    };
    let t0 = now;
    let at = |tick: u32| t0 + Duration::from_millis(5 * u64::from(tick));
    let run = |core: &mut ShardCore, peers: &[Peer], tx: &mut TxQueue, d: &mut Sent| {
        let now = at(d.tick);
        if core.poll_timeout().is_some_and(|t| now >= t) {
            core.handle_timeout(now, tx);
        }
        let p = &peers[d.from];
        receive(core, single_port, now, p, &mut d.bytes, tx);
    };

    // Warm-up: first packets create SRTP per-SSRC state, the keyframe opens the
    // video slots, the first NACK, RTX and feedback are sent, and the queue
    // reaches its working size; 1.5 s, so that every periodic timer (reports,
    // sender reports) ran once. Its output reaches the clients.
    for k in 0..300 {
        for mut d in make(&mut peers, &offsets, k) {
            run(&mut core, &peers, &mut tx, &mut d);
            for (t, data) in tx.iter() {
                if let Some(p) = peers.iter_mut().find(|p| p.addr == t.to) {
                    p.client.handle_receive(at(k), data);
                }
            }
            tx.clear();
        }
        for r in 0..2 {
            if offsets[r].is_none()
                && let Some(first) = peers[1 + r]
                    .client
                    .received_rtp
                    .iter()
                    .find(|p| p.ssrc == slots[r])
            {
                offsets[r] = Some(first.seq.wrapping_sub(65_000));
            }
        }
    }
    assert!(
        offsets.iter().all(Option::is_some),
        "both receivers got video"
    );
    let before = *core.counters();
    assert!(
        before.rtp_forwarded >= 190,
        "warm-up packets reached both receivers"
    );
    assert!(before.retransmissions_sent > 0 && before.nacks_sent > 0);

    let mut datagrams: Vec<Sent> = (300..2800)
        .flat_map(|k| make(&mut peers, &offsets, k))
        .collect();
    let ((), allocations) = counted(|| {
        for d in datagrams.iter_mut() {
            run(&mut core, &peers, &mut tx, d);
            if tx.len() >= 128 {
                tx.clear();
            }
        }
        tx.clear();
    });
    let c = *core.counters();
    let forwarded = c.rtp_forwarded - before.rtp_forwarded;
    assert_eq!(forwarded, 2 * 5000, "5000 packets to each of two receivers");
    assert_eq!(c.dropped_auth + c.dropped_replay, 0, "nothing dropped");
    assert_eq!(
        c.dropped_rtx - before.dropped_rtx,
        250,
        "repairs of packets the bridge had are dropped"
    );
    assert_eq!(
        c.rtx_received - before.rtx_received,
        125 + 250,
        "every RTX unwrapped"
    );
    assert!(c.nacks_sent - before.nacks_sent >= 125, "every gap NACKed");
    assert_eq!(
        c.retransmissions_sent - before.retransmissions_sent,
        2 * 125
    );
    assert!(
        c.twcc_feedback_sent - before.twcc_feedback_sent >= 200,
        "feedback every 50 ms"
    );
    assert_eq!(allocations, 0, "heap allocations on the packet path");

    // The allocator does count: a control operation allocates.
    let (_, control_allocs) = counted(|| core.endpoint_count() + format!("{now:?}").len());
    assert!(control_allocs > 0, "the counting allocator counts");
}
