//! The shard drivers over real UDP sockets on 127.0.0.1: real client peers
//! (ICE, DTLS, SRTP) join through the shard's command queue and exchange media
//! through the driver's sockets. Every scenario runs against every backend
//! (`mmsg`, `uring`), and with UDP GSO forced off and on.
//!
//! The impaired-receiver tests run in a network namespace of their own (they
//! need CAP_SYS_ADMIN, and `ip` and `tc`; without them they say they were
//! skipped): there one receiver's route is made unreachable, or its socket's
//! buffer is made to fill, while another receiver must still get every packet.
//!
//! The tests of this file hold one lock while they run: they set
//! `RINGBRIDGE_DISABLE_GSO` (process-global), and two shards at once would fight
//! over the machine's two cores.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use ringbridge_bridge::io::{Backend, gso, send};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_control::media::{MediaEvent, ShardSnapshot};
use support::harness::*;

/// Three clients in one conference; the first sends 200 audio packets, then a
/// keyframe and 30 delta frames of three 1200-byte packets; both others must
/// get every packet, in sequence, as individual datagrams.
fn exchange_media(backend: Backend, index: usize, ports: (u16, u16)) -> Harness {
    let mut h = Harness::start(backend, index, ports);
    let a = h.join("alice", EVERYTHING);
    let b = h.join("bob", EVERYTHING);
    let c = h.join("carol", EVERYTHING);
    h.connect_all();

    for k in 0..AUDIO_PACKETS {
        let d = h.clients[a]
            .peer
            .send_rtp(
                MediaKind::Audio,
                1000 + k as u16,
                960 * k as u32,
                false,
                &[0xA0; 160],
            )
            .expect("audio");
        h.send_raw(a, &d);
        if k % 10 == 9 {
            h.pump_for(Duration::from_millis(1));
        }
    }
    for f in 0..FRAMES {
        // A frame's packets leave back to back, as a browser sends them.
        let frame: Vec<Vec<u8>> = (0..PACKETS_PER_FRAME)
            .map(|p| {
                let k = f * PACKETS_PER_FRAME + p;
                h.clients[a]
                    .peer
                    .send_rtp(
                        MediaKind::Video,
                        7000 + k as u16,
                        3000 * f as u32,
                        p + 1 == PACKETS_PER_FRAME,
                        &vp8(f == 0 && p == 0, k as u8, VIDEO_PAYLOAD),
                    )
                    .expect("video")
            })
            .collect();
        for d in &frame {
            h.send_raw(a, d);
        }
        h.pump_for(Duration::from_millis(1));
    }
    let (audio_b, video_b) = (
        h.slot_ssrc(b, MediaKind::Audio),
        h.slot_ssrc(b, MediaKind::Video),
    );
    let (audio_c, video_c) = (
        h.slot_ssrc(c, MediaKind::Audio),
        h.slot_ssrc(c, MediaKind::Video),
    );
    let video_packets = FRAMES * PACKETS_PER_FRAME;
    let complete = h.pump_until(Duration::from_secs(5), |h| {
        h.received(b, audio_b).len() >= AUDIO_PACKETS
            && h.received(c, audio_c).len() >= AUDIO_PACKETS
            && h.received(b, video_b).len() >= video_packets
            && h.received(c, video_c).len() >= video_packets
    });
    for (receiver, audio, video) in [(b, audio_b, video_b), (c, audio_c, video_c)] {
        let got_audio = h.received(receiver, audio);
        let got_video = h.received(receiver, video);
        assert!(
            complete,
            "{backend:?}: receiver {receiver} got {} of {AUDIO_PACKETS} audio and {} of \
             {video_packets} video packets",
            got_audio.len(),
            got_video.len()
        );
        assert_eq!(got_audio.len(), AUDIO_PACKETS, "no duplicates");
        assert_eq!(got_video.len(), video_packets, "no duplicates");
        for got in [&got_audio, &got_video] {
            for w in got.windows(2) {
                assert_eq!(w[1].0, w[0].0.wrapping_add(1), "sequence is continuous");
            }
        }
        assert!(got_video.iter().all(|v| v.2 == VIDEO_PAYLOAD));
        assert_eq!(h.clients[receiver].peer.srtp_failures, 0);
        // GSO, if used, must have been split back into single datagrams: every
        // 1200-byte video packet arrives as a datagram of one size, 1200 bytes
        // plus RTP header and SRTP tag.
        let video_lens: Vec<usize> = h.clients[receiver]
            .rtp_lens
            .iter()
            .copied()
            .filter(|&n| n > VIDEO_PAYLOAD)
            .collect();
        assert_eq!(video_lens.len(), video_packets);
        let overhead = video_lens[0] - VIDEO_PAYLOAD;
        assert!((12..=64).contains(&overhead), "overhead {overhead}");
        assert!(
            video_lens.iter().all(|&n| n == video_lens[0]),
            "{backend:?}: datagram sizes {video_lens:?}"
        );
    }
    assert!(
        h.received(a, h.slot_ssrc(a, MediaKind::Audio)).is_empty(),
        "the sender does not get its own media"
    );
    h
}

fn three_peers_exchange_media_over_real_sockets(backend: Backend, index: usize, ports: (u16, u16)) {
    let _serial = serial();
    let _env = GsoEnv::set(false);
    let h = exchange_media(backend, index, ports);
    let sent = h.shard.stats.snapshot(0, None);
    // 200 audio + 93 video to each of two receivers, plus STUN, DTLS and RTCP.
    assert!(sent.packets_sent >= 2 * (AUDIO_PACKETS + FRAMES * PACKETS_PER_FRAME) as u64);
    assert_eq!(sent.send_errors, 0);
}

fn gso_on_and_off_deliver_the_same_datagrams(backend: Backend, index: usize, ports: (u16, u16)) {
    let _serial = serial();
    let segmenting = gso::kernel_support().is_ok();
    for disable in [true, false] {
        let _env = GsoEnv::set(disable);
        let h = exchange_media(backend, index, ports);
        // Counted per shard, and this shard is new.
        let segmented = h.shard.stats.snapshot(0, None).segmented_sends;
        let want_gso = segmenting && !disable;
        assert_eq!(
            h.shard.stats.gso(),
            want_gso,
            "{backend:?} disable={disable}"
        );
        if want_gso {
            // 31 frames of 3 to each of two receivers: most of them leave as one
            // segmented message each (a frame can straddle two wake-ups).
            assert!(segmented > 0, "{backend:?}: GSO on but no segmented send");
        } else {
            assert_eq!(segmented, 0, "{backend:?}: GSO off but segmented sends");
        }
        drop(h);
        // The next round binds the same ports: let the shard close them.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every join maps sources into the other members' slots and every endpoint
/// connects: with a one-slot event channel most of those events find it full.
/// None may be lost (they carry state the control plane keeps): they wait in
/// the shard's outbox and all arrive, the last map of each receiver included.
fn a_one_slot_event_channel_loses_no_state_event(
    backend: Backend,
    index: usize,
    ports: (u16, u16),
) {
    let _serial = serial();
    let mut h = Harness::start_with(
        backend,
        index,
        ports,
        LOCALHOST,
        tokio::sync::mpsc::channel(1),
    );
    for name in ["alice", "bob", "carol", "dave"] {
        h.join(name, EVERYTHING);
    }
    // Reads events as they come (and asserts four EndpointConnected).
    h.connect_all();
    let s = h.shard.stats.snapshot(0, None);
    assert_eq!(s.events_dropped, 0, "{backend:?}: {s:?}");
    // Each receiver's latest map fills its two slots (one audio, one video).
    for receiver in ["alice", "bob", "carol", "dave"] {
        let last = h.seen.iter().rev().find_map(|e| match e {
            MediaEvent::SourcesMapChanged {
                receiver: r,
                sources,
                ..
            } if r.0 == receiver => Some(sources.len()),
            _ => None,
        });
        assert_eq!(last, Some(2), "{backend:?}: {receiver}: {:?}", h.seen);
    }
}

#[test]
fn a_one_slot_event_channel_loses_no_state_event_mmsg() {
    a_one_slot_event_channel_loses_no_state_event(Backend::Mmsg, 7, (23_140, 23_159));
}

#[test]
fn a_one_slot_event_channel_loses_no_state_event_uring() {
    a_one_slot_event_channel_loses_no_state_event(Backend::Uring, 8, (23_160, 23_179));
}

#[test]
fn three_peers_exchange_media_over_real_sockets_mmsg() {
    three_peers_exchange_media_over_real_sockets(Backend::Mmsg, 1, (23_000, 23_019));
}

#[test]
fn three_peers_exchange_media_over_real_sockets_uring() {
    three_peers_exchange_media_over_real_sockets(Backend::Uring, 3, (23_040, 23_059));
}

#[test]
fn gso_on_and_off_deliver_the_same_datagrams_mmsg() {
    gso_on_and_off_deliver_the_same_datagrams(Backend::Mmsg, 4, (23_060, 23_079));
}

#[test]
fn gso_on_and_off_deliver_the_same_datagrams_uring() {
    gso_on_and_off_deliver_the_same_datagrams(Backend::Uring, 6, (23_100, 23_119));
}

/// The shard's address inside the test's network namespace (on `v0`).
const BRIDGE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 250, 1));

/// Carol's address: local (on `lo`) until the test impairs it; then reached
/// through `v0`, whose peer `v1` answers for nobody.
const CAROL_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 250, 3));

/// Inside the namespace: `lo` up, a veth pair with the bridge's address on
/// `v0`, Carol's address on `lo`.
const NETNS_SETUP: &str = "ip link set lo up
ip link add v0 type veth peer name v1
ip addr add 192.168.250.1/24 dev v0
ip link set v0 up
ip link set v1 up
ip addr add 192.168.250.3/32 dev lo";

/// Carol's address goes away and the route to it is `unreachable`: every send
/// to her fails with `EHOSTUNREACH`.
const CAROL_UNREACHABLE: &str = "ip addr del 192.168.250.3/32 dev lo
ip route add unreachable 192.168.250.3/32";

/// Carol's address goes away; datagrams to her leave through `v0`, whose queue
/// drains at 1 kbit/s and holds 100,000 packets: her socket's send buffer fills
/// (`EAGAIN`) while the kernel drops nothing.
const CAROL_STUCK: &str = "ip addr del 192.168.250.3/32 dev lo
tc qdisc add dev v0 root handle 1: htb default 1
tc class add dev v0 parent 1: classid 1:1 htb rate 1kbit
tc qdisc add dev v0 parent 1:1 handle 10: pfifo limit 100000
ip neigh add 192.168.250.3 lladdr 02:00:00:00:00:03 dev v0 nud permanent";

fn sh(script: &str) {
    let status = Command::new("sh")
        .args(["-ec", script])
        .status()
        .expect("sh runs");
    assert!(status.success(), "failed: {script}");
}

/// Runs `f` on a thread of its own in a new network namespace set up by
/// [`NETNS_SETUP`]; `None` (and a note) when no namespace can be made here.
fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let thread = std::thread::spawn(move || {
        // SAFETY: a plain syscall; it moves only this thread (and the shard
        // thread and processes it starts) into a new network namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            eprintln!(
                "skipped: no network namespace ({})",
                std::io::Error::last_os_error()
            );
            return None;
        }
        sh(NETNS_SETUP);
        Some(f())
    });
    match thread.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Alice publishes video to Bob (127.0.0.1) and Carol ([`CAROL_IP`]), each
/// with a socket of their own on the shard. Once all are connected, `impair`
/// breaks the way to Carol; Alice then sends frames until `enough` holds for
/// the shard's counters (at most `max_packets`), and 30 frames more. Bob must
/// get every packet, in order, and the shard's loop must keep turning.
fn bob_gets_everything_while_carol_is_impaired(
    backend: Backend,
    ports: (u16, u16),
    impair: &'static str,
    max_packets: usize,
    enough: fn(&ShardSnapshot) -> bool,
) -> Option<ShardSnapshot> {
    in_new_netns(move || {
        let mut h = Harness::start_at(backend, 40, ports, BRIDGE_IP);
        let a = h.join("alice", EVERYTHING);
        let b = h.join("bob", EVERYTHING);
        h.join_at("carol", EVERYTHING, CAROL_IP);
        h.connect_all();
        sh(impair);
        let video_b = h.slot_ssrc(b, MediaKind::Video);
        let stats = h.shard.stats.clone();
        let snap = || stats.snapshot(0, None);
        let received0 = snap().packets_received;
        let mut sent = 0usize;
        let mut last_frame = None;
        for f in 0.. {
            if last_frame.is_none() && (enough(&snap()) || sent >= max_packets) {
                last_frame = Some(f + 30);
            }
            if last_frame == Some(f) {
                break;
            }
            // Flow control: at most ~256 datagrams ahead of the shard, so its
            // own socket drops nothing.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while sent as u64 > snap().packets_received - received0 + 256 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the shard stopped reading"
                );
                h.pump();
            }
            for p in 0..PACKETS_PER_FRAME {
                let k = f * PACKETS_PER_FRAME + p;
                let d = h.clients[a]
                    .peer
                    .send_rtp(
                        MediaKind::Video,
                        k as u16,
                        3000 * f as u32,
                        p + 1 == PACKETS_PER_FRAME,
                        &vp8(f == 0 && p == 0, k as u8, VIDEO_PAYLOAD),
                    )
                    .expect("video");
                h.send_raw(a, &d);
                sent += 1;
            }
            h.pump();
        }
        let complete = h.pump_until(Duration::from_secs(10), |h| {
            h.received(b, video_b).len() >= sent
        });
        let got = h.received(b, video_b);
        assert!(
            complete,
            "{backend:?}: Bob got {} of {sent} packets",
            got.len()
        );
        assert_eq!(got.len(), sent, "no duplicates");
        for w in got.windows(2) {
            assert_eq!(w[1].0, w[0].0.wrapping_add(1), "in order");
        }
        let beat = stats.heartbeat();
        std::thread::sleep(Duration::from_millis(400));
        assert!(
            stats.heartbeat() > beat,
            "{backend:?}: the shard loop stalled"
        );
        snap()
    })
}

fn sends_to_an_unreachable_receiver_are_counted_and_others_flow(
    backend: Backend,
    ports: (u16, u16),
) {
    let _serial = serial();
    let _env = GsoEnv::set(false);
    let Some(s) = bob_gets_everything_while_carol_is_impaired(
        backend,
        ports,
        CAROL_UNREACHABLE,
        3_000,
        |s| s.send_failed_unreachable >= 90,
    ) else {
        return;
    };
    // Every video packet to Carol after the route went: counted, by reason.
    assert!(s.send_failed_unreachable >= 90, "{backend:?}: {s:?}");
    assert_eq!(s.send_failed_backlog_full, 0, "{backend:?}: {s:?}");
    assert_eq!(
        s.send_failed_other + s.send_failed_permission + s.send_failed_too_big,
        0
    );
    assert_eq!(s.send_errors, s.send_failed_unreachable);
}

fn a_full_socket_keeps_a_bounded_backlog_and_others_flow(backend: Backend, ports: (u16, u16)) {
    let _serial = serial();
    let _env = GsoEnv::set(false);
    let Some(s) =
        bob_gets_everything_while_carol_is_impaired(backend, ports, CAROL_STUCK, 30_000, |s| {
            s.send_failed_backlog_full > 0
        })
    else {
        return;
    };
    // Carol's socket filled up, kept at most its bound and counted the rest;
    // nothing else failed.
    assert!(
        s.send_failed_backlog_full > 0,
        "{backend:?}: never EAGAIN: {s:?}"
    );
    assert!(s.send_backlog <= send::SOCKET_BACKLOG as u64, "{s:?}");
    assert_eq!(
        s.send_errors, s.send_failed_backlog_full,
        "{backend:?}: {s:?}"
    );
}

#[test]
fn sends_to_an_unreachable_receiver_are_counted_and_others_flow_mmsg() {
    sends_to_an_unreachable_receiver_are_counted_and_others_flow(Backend::Mmsg, (23_200, 23_209));
}

#[test]
fn sends_to_an_unreachable_receiver_are_counted_and_others_flow_uring() {
    sends_to_an_unreachable_receiver_are_counted_and_others_flow(Backend::Uring, (23_210, 23_219));
}

#[test]
fn a_full_socket_keeps_a_bounded_backlog_and_others_flow_mmsg() {
    a_full_socket_keeps_a_bounded_backlog_and_others_flow(Backend::Mmsg, (23_220, 23_229));
}

#[test]
fn a_full_socket_keeps_a_bounded_backlog_and_others_flow_uring() {
    a_full_socket_keeps_a_bounded_backlog_and_others_flow(Backend::Uring, (23_230, 23_239));
}
