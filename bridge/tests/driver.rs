//! The shard drivers over real UDP sockets on 127.0.0.1: real client peers
//! (ICE, DTLS, SRTP) join through the shard's command queue and exchange media
//! through the driver's sockets. Every scenario runs against every backend
//! (`mmsg`, `uring`), and with UDP GSO forced off and on.
//!
//! The tests of this file hold one lock while they run: they set
//! `RINGBRIDGE_DISABLE_GSO` (process-global), and two shards at once would fight
//! over the machine's two cores.

mod support;

use std::time::Duration;

use ringbridge_bridge::io::{Backend, gso};
use ringbridge_bridge::proto::sdp::MediaKind;
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
