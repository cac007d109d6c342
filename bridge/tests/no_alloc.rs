//! The packet path allocates nothing: after warm-up, thousands of audio and video
//! packets from one sender, fanned out to two receivers, pass through a shard core
//! (SRTP unprotect, SSRC demux, routing, rewriting, writing the receivers' header
//! extensions, SRTP protect per receiver, recognising and dropping RTX) with zero
//! heap allocations, counted by a global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::shard::{ShardConfig, ShardCore};
use ringbridge_bridge::proto::srtp::SrtpProfile;
use ringbridge_bridge::proto::transmit::TxQueue;
use ringbridge_control::media::{ConferenceId, EndpointId, JoinRequest};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    let out = f();
    COUNTING.with(|on| on.set(false));
    (out, COUNT.with(Cell::get))
}

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

/// The client's offer with the extmaps on every m-line and, on the video
/// publisher line, RTX and a FID group.
fn edit(offer: String, video_ssrc: u32) -> String {
    let mut out = String::new();
    for line in offer.split_inclusive("\r\n") {
        out.push_str(line);
        if line.starts_with("a=rtcp-mux") {
            out.push_str(EXTMAPS);
        }
        if line.starts_with(&format!("a=ssrc:{video_ssrc} ")) {
            out.push_str(&format!(
                "a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
                 a=ssrc-group:FID {video_ssrc} {RTX_SSRC}\r\na=ssrc:{RTX_SSRC} cname:client\r\n"
            ));
        }
    }
    out
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

#[test]
fn forwarding_audio_and_video_to_two_receivers_allocates_nothing() {
    let mut now = Instant::now();
    let certificate = dimpl::certificate::generate_self_signed_certificate().expect("cert");
    let mut core = ShardCore::new(
        ShardConfig {
            advertise: vec!["127.0.0.1".parse().expect("ip")],
            certificate,
            srtp_profiles: SrtpProfile::PREFERRED.to_vec(),
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
                core.handle_receive(now, p.port, p.addr, &mut d, tx);
            }
        }
        if core.poll_timeout().is_some_and(|t| now >= t) {
            core.handle_timeout(now, tx);
        }
        for (t, data) in tx.iter() {
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
    // that only the bridge's work is counted.
    let make = |client: &mut ClientPeer, k: u32| -> Vec<Vec<u8>> {
        let seq = (k as u16).wrapping_add(65_000); // crosses the 16-bit wrap
        // Audio with its level and mid (the level is copied to the receivers
        // under their ids, with mid, abs-send-time and transport-wide seq).
        let level = [0x80 | (k % 127) as u8];
        let audio = rtp(
            111,
            seq,
            960 * k,
            client.audio_ssrc,
            &[(1, &level), (2, b"0")],
            &[0xA0; 160],
        );
        let a = client.protect_rtp(&audio).expect("audio");
        let v = client
            .send_rtp(
                MediaKind::Video,
                seq,
                3000 * (k / 4),
                k % 4 == 3,
                &vp8(k == 0, k as u8, 1200),
            )
            .expect("video");
        let mut out = vec![a, v];
        if k % 10 == 5 {
            // A repair packet on the announced RTX SSRC: recognised, dropped.
            let mut osn = seq.to_be_bytes().to_vec();
            osn.extend_from_slice(&vp8(false, 1, 100));
            let rtx = rtp(97, seq, 3000 * (k / 4), RTX_SSRC, &[(2, b"1")], &osn);
            out.push(client.protect_rtp(&rtx).expect("rtx"));
        }
        out
    };
    let warmup: Vec<Vec<u8>> = (0..50)
        .flat_map(|k| make(&mut peers[0].client, k))
        .collect();
    let measured: Vec<Vec<u8>> = (50..2550)
        .flat_map(|k| make(&mut peers[0].client, k))
        .collect();
    let (sender_port, sender_addr) = (peers[0].port, peers[0].addr);

    // Warm-up: first packets create SRTP per-SSRC state, the keyframe opens the
    // video slots, and the queue reaches its working size.
    for mut d in warmup {
        core.handle_receive(now, sender_port, sender_addr, &mut d, &mut tx);
        tx.clear();
    }
    let forwarded_before = core.counters().rtp_forwarded;
    assert_eq!(
        forwarded_before, 200,
        "warm-up packets reached both receivers"
    );

    let mut datagrams = measured;
    let ((), allocations) = counted(|| {
        for d in datagrams.iter_mut() {
            core.handle_receive(now, sender_port, sender_addr, d, &mut tx);
            if tx.len() >= 128 {
                tx.clear();
            }
        }
        tx.clear();
    });
    let forwarded = core.counters().rtp_forwarded - forwarded_before;
    assert_eq!(forwarded, 2 * 5000, "5000 packets to each of two receivers");
    assert_eq!(
        core.counters().dropped_auth + core.counters().dropped_replay,
        0,
        "nothing dropped"
    );
    assert_eq!(
        core.counters().dropped_rtx,
        255,
        "the RTX packets went down their own path (5 warm-up, 250 measured)"
    );
    assert_eq!(allocations, 0, "heap allocations on the packet path");

    // The allocator does count: a control operation allocates.
    let (_, control_allocs) = counted(|| core.endpoint_count() + format!("{now:?}").len());
    assert!(control_allocs > 0, "the counting allocator counts");
}
