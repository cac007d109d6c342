//! Loss repair and keyframe requests wired into the shard, on a virtual clock with
//! real client peers (see two_peers.rs): RTX from publishers unwrapped, NACKs
//! toward publishers, receivers' NACKs answered from the packet cache on the slot's
//! RTX SSRC, and keyframe requests throttled.

mod support;

use std::collections::BTreeSet;

use ringbridge_bridge::proto::client::VP8_PT;
use ringbridge_bridge::proto::rtcp::{self, NackEntry, RtcpIter, RtcpPacket};
use ringbridge_bridge::proto::sdp::MediaKind;
use support::net::*;
use support::simulcast::{RTX_PT, with_video_rtx};

/// The publisher's RTX SSRC (announced in a FID group).
const PUB_RTX_SSRC: u32 = 0x0BAD_F00D;

/// Offers RTX for VP8 on every video m-line ([`with_video_rtx`]); the
/// publishing one announces its RTX SSRC in `a=ssrc-group:FID`.
fn with_rtx(offer: String) -> String {
    edit_offer(&with_video_rtx(offer), |kind, line| {
        match line.strip_prefix("a=ssrc:") {
            Some(rest) if kind == "video" => {
                let media: u32 = rest
                    .split(' ')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("ssrc");
                format!(
                    "a=ssrc-group:FID {media} {PUB_RTX_SSRC}\r\n{line}a=ssrc:{PUB_RTX_SSRC} cname:client\r\n"
                )
            }
            _ => line.to_owned(),
        }
    })
}

/// Alice publishes video with RTX, Bob receives with RTX; both connected.
fn alice_to_bob() -> (Net, usize, usize) {
    let mut net = Net::new();
    let a = net.join_with("alice", EVERYTHING, Default::default(), with_rtx);
    let b = net.join_with("bob", EVERYTHING, Default::default(), with_rtx);
    net.connect_all();
    (net, a, b)
}

/// The slot RTX SSRC the answer pairs with `slot` in `a=ssrc-group:FID`.
fn fid_of(answer: &str, slot: u32) -> Option<u32> {
    answer.lines().find_map(|l| {
        let mut it = l.strip_prefix("a=ssrc-group:FID ")?.split_whitespace();
        let primary: u32 = it.next()?.parse().ok()?;
        (primary == slot).then(|| it.next()?.parse().ok()).flatten()
    })
}

/// Sequence numbers the bridge NACKed to peer `i` about `media_ssrc`, with
/// how many NACK packets there were.
fn nacks_to(net: &Net, i: usize, media_ssrc: u32) -> (Vec<u16>, usize) {
    let mut seqs = Vec::new();
    let mut packets = 0;
    for c in &net.peers[i].client.received_rtcp {
        for p in RtcpIter::new(c).flatten() {
            if let RtcpPacket::Nack(n) = p
                && n.media_ssrc == media_ssrc
            {
                packets += 1;
                seqs.extend(n.lost_sequence_numbers());
            }
        }
    }
    (seqs, packets)
}

fn send_video(net: &mut Net, a: usize, seq: u16) {
    let ssrc = net.peers[a].client.video_ssrc;
    let p = rtp(
        VP8_PT,
        seq,
        3000 * u32::from(seq),
        ssrc,
        &[],
        &vp8(seq == 1, seq as u8),
        0,
    );
    net.send_raw(a, &p);
}

/// An RTX packet (RFC 4588) repairing `seq` of Alice's video.
fn send_rtx(net: &mut Net, a: usize, rtx_seq: u16, seq: u16) {
    let mut payload = seq.to_be_bytes().to_vec();
    payload.extend_from_slice(&vp8(seq == 1, seq as u8));
    let p = rtp(
        RTX_PT,
        rtx_seq,
        3000 * u32::from(seq),
        PUB_RTX_SSRC,
        &[],
        &payload,
        0,
    );
    net.send_raw(a, &p);
}

fn nack(bob_ssrc: u32, slot: u32, seqs: &[u16]) -> Vec<u8> {
    let entries: Vec<NackEntry> = seqs.iter().map(|&pid| NackEntry { pid, blp: 0 }).collect();
    let mut buf = vec![0u8; 16 + 4 * entries.len()];
    let n = rtcp::write_nack(&mut buf, bob_ssrc, slot, &entries).expect("fits");
    buf.truncate(n);
    buf
}

#[test]
fn answer_keeps_the_rtx_payload_type_and_announces_a_slot_rtx_ssrc() {
    let (net, _, b) = alice_to_bob();
    let answer = &net.peers[b].answer;
    assert!(
        answer.contains(&format!("a=rtpmap:{RTX_PT} rtx/90000\r\n")),
        "{answer}"
    );
    assert!(answer.contains(&format!("a=fmtp:{RTX_PT} apt={VP8_PT}\r\n")));
    let slot = net.slot_ssrc(b, MediaKind::Video);
    let rtx = fid_of(answer, slot).expect("a=ssrc-group:FID on the video slot");
    assert_ne!(rtx, slot);
    assert!(answer.contains(&format!("a=ssrc:{rtx} cname:ringbridge\r\n")));
    // The publisher's m-line keeps RTX too (its repair stream is understood).
    let alice = &net.peers[0].answer;
    assert!(alice.contains(&format!("a=fmtp:{RTX_PT} apt={VP8_PT}\r\n")));
}

#[test]
fn lost_video_packets_are_nacked_to_the_publisher_and_the_rtx_answer_is_forwarded() {
    let (mut net, a, b) = alice_to_bob();
    let media = net.peers[a].client.video_ssrc;
    for seq in [1, 2, 4, 5] {
        send_video(&mut net, a, seq);
    }
    // Seq 3 is missing: NACKed within about 20 ms.
    net.progress(4);
    let (seqs, packets) = nacks_to(&net, a, media);
    assert_eq!(seqs, vec![3], "NACKed within 20 ms");
    assert_eq!(packets, 1);
    assert_eq!(net.core.counters().nacks_sent, 1);

    // Alice answers on her RTX stream: the original (seq 3) reaches Bob on his
    // video slot, never as a stream of its own.
    send_rtx(&mut net, a, 500, 3);
    let slot = net.slot_ssrc(b, MediaKind::Video);
    let got = net.received(b, slot);
    assert_eq!(got.len(), 5);
    let base = got[0].0;
    let seqs: BTreeSet<u16> = got.iter().map(|g| g.0.wrapping_sub(base)).collect();
    assert_eq!(
        seqs,
        (0..5).collect::<BTreeSet<u16>>(),
        "slot seqs 1..=5 with 3 repaired"
    );
    assert_eq!(got[4].2, vp8(false, 3), "the OSN is stripped");
    assert!(
        net.peers[b]
            .client
            .received_rtp
            .iter()
            .all(|r| r.ssrc == slot)
    );
    assert_eq!(net.core.counters().rtx_received, 1);

    // Repaired: not NACKed again, even after more than one RTT.
    net.progress(60);
    assert_eq!(nacks_to(&net, a, media).0, vec![3]);

    // A second answer to the same NACK is dropped (Bob has it already), and a
    // padding-only RTX probe too.
    send_rtx(&mut net, a, 501, 3);
    net.send_raw(a, &rtp(RTX_PT, 502, 0, PUB_RTX_SSRC, &[], &[], 200));
    assert_eq!(net.received(b, slot).len(), 5);
    assert_eq!(net.core.counters().dropped_rtx, 1);
    assert_eq!(net.core.counters().dropped_rtx_padding, 1);
}

#[test]
fn an_unrepaired_gap_is_retried_about_once_per_rtt_then_becomes_one_keyframe_request() {
    let (mut net, a, _) = alice_to_bob();
    let media = net.peers[a].client.video_ssrc;
    for seq in [1, 2, 4] {
        send_video(&mut net, a, seq);
    }
    let plis_before = net.peers[a].client.received_pli.len();
    // Keep the stream going (one packet every 20 ms) for 1.5 s, never repairing 3.
    for k in 0..75u16 {
        net.progress(4);
        send_video(&mut net, a, 5 + k);
    }
    let (seqs, packets) = nacks_to(&net, a, media);
    assert!(seqs.iter().all(|&s| s == 3), "{seqs:?}");
    assert!(
        (3..=10).contains(&packets),
        "retried about once per 100 ms RTT, bounded: {packets}"
    );
    let plis = net.peers[a].client.received_pli.len() - plis_before;
    assert_eq!(plis, 1, "the gap given up turns into one keyframe request");
}

#[test]
fn receiver_nack_is_answered_from_the_cache_on_the_slot_rtx_ssrc_with_slot_sequence_numbers() {
    let (mut net, a, b) = alice_to_bob();
    for seq in 1..=10 {
        send_video(&mut net, a, seq);
    }
    let slot = net.slot_ssrc(b, MediaKind::Video);
    let rtx_ssrc = fid_of(&net.peers[b].answer, slot).expect("slot rtx ssrc");
    let got = net.received(b, slot);
    assert_eq!(got.len(), 10);
    // Bob "lost" the 4th and 7th slot packets (by slot sequence number).
    let (lost4, lost7) = (got[3].0, got[6].0);
    let bob_ssrc = net.peers[b].client.video_ssrc;
    net.send_rtcp(b, &nack(bob_ssrc, slot, &[lost4, lost7]));
    let rtx: Vec<_> = net.peers[b]
        .client
        .received_rtp
        .iter()
        .filter(|r| r.ssrc == rtx_ssrc)
        .cloned()
        .collect();
    assert_eq!(rtx.len(), 2, "both answered on the slot's RTX SSRC");
    for (r, (lost, orig)) in rtx.iter().zip([(lost4, &got[3]), (lost7, &got[6])]) {
        assert_eq!(r.pt, RTX_PT);
        assert_eq!(&r.payload[..2], &lost.to_be_bytes(), "OSN is the slot seq");
        assert_eq!(&r.payload[2..], &orig.2[..], "the original payload");
        assert_eq!(r.ts, orig.1, "the slot's timestamp");
    }
    assert_eq!(
        rtx[1].seq,
        rtx[0].seq.wrapping_add(1),
        "the slot RTX stream's own seqs"
    );
    let c = net.core.counters();
    assert_eq!(
        (c.nacks_received, c.retransmissions_sent, c.cache_hits),
        (1, 2, 2)
    );
    // A slot seq never sent is a miss.
    net.send_rtcp(b, &nack(bob_ssrc, slot, &[got[9].0.wrapping_add(100)]));
    assert_eq!(net.core.counters().cache_misses, 1);
}

#[test]
fn receiver_without_rtx_gets_plain_retransmissions_on_the_slot_ssrc() {
    let mut net = Net::new();
    let a = net.join_with("alice", EVERYTHING, Default::default(), with_rtx);
    let b = net.join("bob", EVERYTHING);
    net.connect_all();
    for seq in 1..=5 {
        if seq == 3 {
            // Lost on the way to Bob: the bridge's copy is never delivered.
            let ssrc = net.peers[a].client.video_ssrc;
            let pkt = rtp(VP8_PT, 3, 9000, ssrc, &[], &vp8(false, 3), 0);
            let p = &mut net.peers[a];
            let mut d = p.client.protect_rtp(&pkt).expect("connected");
            net.core
                .handle_receive(net.now, p.port, p.addr, &mut d, &mut net.tx);
            net.tx.clear();
            continue;
        }
        send_video(&mut net, a, seq);
    }
    let slot = net.slot_ssrc(b, MediaKind::Video);
    assert_eq!(fid_of(&net.peers[b].answer, slot), None);
    let got = net.received(b, slot);
    assert_eq!(got.len(), 4);
    let missing = got[1].0.wrapping_add(1);
    let bob_ssrc = net.peers[b].client.video_ssrc;
    net.send_rtcp(b, &nack(bob_ssrc, slot, &[missing]));
    assert_eq!(net.core.counters().retransmissions_sent, 1);
    let again = net.received(b, slot);
    assert_eq!(again.len(), 5);
    assert_eq!(again[4].0, missing, "the slot's own sequence number");
    assert_eq!(
        again[4].1,
        got[1].1.wrapping_add(3000),
        "the slot's timestamp"
    );
    assert_eq!(again[4].2, vp8(false, 3));
    assert_eq!(net.peers[b].client.srtp_failures, 0);
}

#[test]
fn same_packet_is_not_resent_to_the_same_receiver_within_one_rtt() {
    let (mut net, a, b) = alice_to_bob();
    for seq in 1..=5 {
        send_video(&mut net, a, seq);
    }
    let slot = net.slot_ssrc(b, MediaKind::Video);
    let rtx_ssrc = fid_of(&net.peers[b].answer, slot).expect("slot rtx ssrc");
    let lost = net.received(b, slot)[2].0;
    let bob_ssrc = net.peers[b].client.video_ssrc;
    let resent = |net: &Net| {
        net.peers[b]
            .client
            .received_rtp
            .iter()
            .filter(|r| r.ssrc == rtx_ssrc)
            .count()
    };
    net.send_rtcp(b, &nack(bob_ssrc, slot, &[lost]));
    net.progress(4); // 20 ms later: within the RTT
    net.send_rtcp(b, &nack(bob_ssrc, slot, &[lost]));
    assert_eq!(resent(&net), 1);
    assert_eq!(net.core.counters().retransmissions_suppressed, 1);
    net.progress(30); // 150 ms later: a resend may have been lost too
    net.send_rtcp(b, &nack(bob_ssrc, slot, &[lost]));
    assert_eq!(resent(&net), 2);
}

#[test]
fn plis_from_many_receivers_reach_the_publisher_once_per_350ms() {
    let mut net = Net::new();
    let a = net.join_with("alice", EVERYTHING, Default::default(), with_rtx);
    let receivers: Vec<usize> = ["b", "c", "d", "e"]
        .into_iter()
        .map(|n| net.join(n, EVERYTHING))
        .collect();
    net.connect_all();
    send_video(&mut net, a, 1);
    net.progress(100); // past any request for the receivers' first keyframe
    let media = net.peers[a].client.video_ssrc;
    let count = |net: &Net| {
        net.peers[a]
            .client
            .received_pli
            .iter()
            .filter(|&&s| s == media)
            .count()
    };
    let before = count(&net);
    // Every receiver sends a PLI every 50 ms for 1 s: 80 requests.
    for _ in 0..20 {
        for &r in &receivers {
            let slot = net.slot_ssrc(r, MediaKind::Video);
            let mut buf = [0u8; 12];
            let n = rtcp::write_pli(&mut buf, 1, slot).expect("fits");
            net.send_rtcp(r, &buf[..n]);
        }
        net.progress(10);
    }
    let forwarded = count(&net) - before;
    // Per source at most one every 350 ms: 3 in 1 s (the receivers' budgets of
    // 3 per 10 s each would allow 12).
    assert!((2..=3).contains(&forwarded), "{forwarded} PLIs forwarded");
    let c = net.core.counters();
    assert_eq!(c.keyframe_requests_received, 80);
    assert!(c.keyframe_requests_throttled >= 77);
}

#[test]
fn one_receiver_gets_at_most_3_keyframe_requests_through_per_10s() {
    let mut net = Net::new();
    let a = net.join("alice", EVERYTHING);
    let b = net.join("bob", EVERYTHING);
    net.connect_all();
    send_video(&mut net, a, 1);
    net.progress(100);
    let media = net.peers[a].client.video_ssrc;
    let before = net.peers[a].client.received_pli.len();
    let slot = net.slot_ssrc(b, MediaKind::Video);
    for _ in 0..10 {
        let mut buf = [0u8; 12];
        let n = rtcp::write_pli(&mut buf, 1, slot).expect("fits");
        net.send_rtcp(b, &buf[..n]);
        net.progress(100); // 500 ms apart: the source interval never binds
    }
    let forwarded = net.peers[a].client.received_pli[before..]
        .iter()
        .filter(|&&s| s == media)
        .count();
    assert_eq!(forwarded, 3);
}

/// xorshift64*: a reproducible loss pattern.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Drops 5% at random, and everything during a 60 ms burst every 2 s.
struct Lossy {
    rng: Rng,
    dropped: usize,
}

impl Lossy {
    fn drops(&mut self, step: usize) -> bool {
        let burst = step % 400 >= 200 && step % 400 < 212;
        let drop = burst || self.rng.below(100) < 5;
        self.dropped += usize::from(drop);
        drop
    }
}

#[test]
fn every_packet_reaches_the_receiver_through_random_and_burst_loss_on_both_hops() {
    use ringbridge_bridge::proto::quality::nack::{NackConfig, NackGenerator};

    let (mut net, a, b) = alice_to_bob();
    let media = net.peers[a].client.video_ssrc;
    let slot = net.slot_ssrc(b, MediaKind::Video);
    let slot_rtx = fid_of(&net.peers[b].answer, slot).expect("slot rtx ssrc");
    let bob_ssrc = net.peers[b].client.video_ssrc;
    let mut up = Lossy {
        rng: Rng(0x5EED_1234_5678_9ABD),
        dropped: 0,
    };
    let mut down = Lossy {
        rng: Rng(0x0DDB_A11C_AFE0_0001),
        dropped: 0,
    };
    // Bob's browser: a NACK generator over the slot's sequence numbers.
    let mut bob_nack = NackGenerator::new(NackConfig::default());
    let mut bob_got: BTreeSet<u16> = BTreeSet::new();
    let (mut bob_seen_rtp, mut alice_seen_rtcp) = (0, net.peers[a].client.received_rtcp.len());
    let mut rtx_seq = 0u16;
    let sent_packets = 1000u16; // 10 s at 100 packets/s
    let mut steps = 0usize;
    while steps < 2 * usize::from(sent_packets) + 600 {
        let now = net.now;
        // Alice sends a packet every other 5 ms step; the first few get through.
        if steps.is_multiple_of(2) && steps / 2 < usize::from(sent_packets) {
            let seq = 1 + (steps / 2) as u16;
            let p = rtp(
                VP8_PT,
                seq,
                3000 * u32::from(seq),
                media,
                &[],
                &vp8(seq == 1, seq as u8),
                0,
            );
            let peer = &mut net.peers[a];
            let mut d = peer.client.protect_rtp(&p).expect("connected");
            if seq <= 3 || !up.drops(steps) {
                net.core
                    .handle_receive(now, peer.port, peer.addr, &mut d, &mut net.tx);
            }
        }
        // Alice answers the bridge's NACKs on her RTX stream (over the lossy hop).
        let fresh: Vec<Vec<u8>> = net.peers[a].client.received_rtcp[alice_seen_rtcp..].to_vec();
        alice_seen_rtcp = net.peers[a].client.received_rtcp.len();
        for c in fresh {
            for p in RtcpIter::new(&c).flatten() {
                let RtcpPacket::Nack(n) = p else { continue };
                for seq in n.lost_sequence_numbers() {
                    let mut payload = seq.to_be_bytes().to_vec();
                    payload.extend_from_slice(&vp8(seq == 1, seq as u8));
                    rtx_seq = rtx_seq.wrapping_add(1);
                    let p = rtp(
                        RTX_PT,
                        rtx_seq,
                        3000 * u32::from(seq),
                        PUB_RTX_SSRC,
                        &[],
                        &payload,
                        0,
                    );
                    let peer = &mut net.peers[a];
                    let mut d = peer.client.protect_rtp(&p).expect("connected");
                    if !up.drops(steps) {
                        net.core
                            .handle_receive(now, peer.port, peer.addr, &mut d, &mut net.tx);
                    }
                }
            }
        }
        // Bob NACKs what he misses (over the lossy hop).
        let mut buf = [0u8; 600];
        let n = bob_nack
            .write_nack(now, &mut buf, bob_ssrc, slot)
            .expect("fits");
        if n > 0 {
            let peer = &mut net.peers[b];
            let mut d = peer.client.send_rtcp(&buf[..n]).expect("connected");
            if !up.drops(steps) {
                net.core
                    .handle_receive(now, peer.port, peer.addr, &mut d, &mut net.tx);
            }
        }
        if net.core.poll_timeout().is_some_and(|t| now >= t) {
            net.core.handle_timeout(now, &mut net.tx);
        }
        // The bridge's output, through the lossy downlinks.
        let out: Vec<(std::net::SocketAddr, u16, Vec<u8>)> = net
            .tx
            .iter()
            .map(|(t, d)| (t.to, t.from_port, d.to_vec()))
            .collect();
        net.tx.clear();
        for (to, port, d) in out {
            if down.drops(steps) {
                continue;
            }
            if let Some(p) = net
                .peers
                .iter_mut()
                .find(|p| p.addr == to && p.port == port)
            {
                p.client.handle_receive(now, &d);
            }
        }
        for r in &net.peers[b].client.received_rtp[bob_seen_rtp..] {
            let seq = if r.ssrc == slot {
                Some(r.seq)
            } else if r.ssrc == slot_rtx && r.payload.len() >= 2 {
                Some(u16::from_be_bytes([r.payload[0], r.payload[1]]))
            } else {
                None
            };
            if let Some(seq) = seq {
                bob_nack.handle_packet(now, seq);
                bob_got.insert(seq);
            }
        }
        bob_seen_rtp = net.peers[b].client.received_rtp.len();
        for p in &mut net.peers {
            p.client.handle_timeout(now);
        }
        net.now += STEP;
        steps += 1;
    }
    let c = *net.core.counters();
    println!(
        "dropped up {} down {}; bridge: nacks sent {}, rtx received {}, nacks received {}, \
         retransmissions {}, suppressed {}, misses {}, keyframe requests {}",
        up.dropped,
        down.dropped,
        c.nacks_sent,
        c.rtx_received,
        c.nacks_received,
        c.retransmissions_sent,
        c.retransmissions_suppressed,
        c.cache_misses,
        c.keyframe_requests_sent
    );
    assert!(up.dropped > 50 && down.dropped > 50, "both hops were lossy");
    assert!(c.rtx_received > 40 && c.retransmissions_sent > 40);
    let first = *bob_got.first().expect("bob got video");
    let expected: BTreeSet<u16> = (0..sent_packets).map(|k| first.wrapping_add(k)).collect();
    let missing: Vec<u16> = expected.difference(&bob_got).copied().collect();
    assert!(
        missing.is_empty(),
        "slot packets never received: {missing:?}"
    );
    // Every gap was repaired: no keyframe request went to Alice beyond the first
    // (Bob's own video source, never sent, is asked for its keyframe throughout).
    let to_alice = net.peers[a]
        .client
        .received_pli
        .iter()
        .filter(|&&s| s == media)
        .count();
    assert!(to_alice <= 2, "{to_alice} keyframe requests to Alice");
}
