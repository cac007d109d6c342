//! Loss repair for simulcast sources, both hops: each layer of a simulcast
//! publisher has its own packet cache and NACK window, so a packet lost on the
//! way in is NACKed with that layer's SSRC and the publisher's RTX answer goes
//! once to the slots that carry the layer; a receiver's NACK for its slot is
//! answered from the right layer's cache through the slot's mapping history,
//! even for a packet sent before the slot's last layer switch, renumbered as
//! it was forwarded (sequence number, timestamp, VP8 picture id, TL0PICIDX,
//! also after dropped temporal layers); Chrome's RTX probe copies of forwarded
//! packets stay dropped; and none of it allocates per packet. Real client
//! peers on a virtual clock (see two_peers.rs).

mod support;

#[path = "support/alloc_count.rs"]
mod alloc_count;

use std::time::Duration;

use alloc_count::{Counting, counted};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

use ringbridge_bridge::proto::client::{ReceivedRtp, VP8_PT};
use ringbridge_bridge::proto::codec::vp8::Vp8Descriptor;
use ringbridge_bridge::proto::quality::rtx_cache::{RtxCache, RtxCacheConfig};
use ringbridge_bridge::proto::rtcp::{self, NackEntry, RtcpIter, RtcpPacket};
use ringbridge_bridge::proto::rtp::RtpHeader;
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_control::media::{ConferenceId, EndpointId};
use support::net::*;
use support::simulcast::*;

/// Per layer: media SSRC, RTX SSRC, height.
const LAYERS: [(u32, u32, u16); 3] = [
    (0x1000, 0x1001, 180),
    (0x2000, 0x2001, 360),
    (0x3000, 0x3001, 720),
];

fn publisher_offer(offer: String) -> String {
    let pairs: Vec<(u32, u32)> = LAYERS.iter().map(|l| (l.0, l.1)).collect();
    ssrc_simulcast_rtx_offer(offer, &pairs)
}

/// The repaired-rtp-stream-id extension (id 3 in the RID offer).
const REPAIRED_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";

/// Chrome's RID simulcast offer (q, h, f; SSRCs learned from the mid, rid and
/// repaired-rid extensions) with RTX.
fn rid_publisher_offer(offer: String) -> String {
    edit_offer(&with_video_rtx(simulcast_offer(offer)), |_, line| {
        if line.starts_with("a=simulcast:send") {
            format!("a=extmap:3 {REPAIRED_RID}\r\n{line}")
        } else {
            line.to_owned()
        }
    })
}

fn receiver_offer(offer: String) -> String {
    with_mid(with_video_rtx(offer))
}

/// Alice publishes three SSRC-simulcast layers with RTX; Bob receives one
/// slot with RTX.
struct Call {
    net: Net,
    alice: usize,
    bob: usize,
    /// Per layer: next sequence number and picture id.
    next: [(u16, u16); 3],
    rtx_seq: u16,
    /// Layers told apart by RID (media) and repaired RID (RTX) extensions.
    rid: bool,
}

impl Call {
    fn new() -> Call {
        Call::publishing(publisher_offer, false)
    }

    /// Alice publishes with the offer `edit` makes; `rid`: her packets carry
    /// RID and repaired RID extensions.
    fn publishing(edit: fn(String) -> String, rid: bool) -> Call {
        let mut net = Net::new();
        let alice = net.join_with("alice", VIDEO_ONLY, Default::default(), edit);
        let bob = net.join_with("bob", VIDEO_ONLY, Default::default(), receiver_offer);
        net.connect_all();
        Call {
            net,
            alice,
            bob,
            next: [(100, 10), (5000, 2000), (65_530, 30_000)],
            rtx_seq: 1,
            rid,
        }
    }

    /// The next packet (one frame) of `layer`, not sent.
    fn packet(&mut self, layer: usize, keyframe: bool) -> Vec<u8> {
        let (media, _, height) = LAYERS[layer];
        let (seq, pid) = self.next[layer];
        self.next[layer] = (seq.wrapping_add(1), (pid + 1) % 0x8000);
        let payload = vp8_tagged(pid, keyframe, height, layer as u8);
        let rid = [&b"q"[..], b"h", b"f"][layer];
        let exts = if self.rid {
            vec![(1, &b"0"[..]), (2, rid)]
        } else {
            vec![(1, &b"0"[..])]
        };
        rtp(
            VP8_PT,
            seq,
            3000 * u32::from(pid),
            media,
            &exts,
            &payload,
            0,
        )
    }

    fn send(&mut self, packet: &[u8]) {
        self.net.send_raw(self.alice, packet);
    }

    /// `packet` of `layer` again, on the layer's RTX SSRC.
    fn send_rtx(&mut self, packet: &[u8], layer: usize) {
        let mut rtx = as_rtx(packet, LAYERS[layer].1, self.rtx_seq);
        if self.rid {
            // Chrome's RTX names its layer by the repaired RID (mid 0).
            let h = RtpHeader::parse(&rtx).expect("rtx");
            let body = h.payload(&rtx).expect("osn").to_vec();
            let rid = [&b"q"[..], b"h", b"f"][layer];
            let exts = [(1, &b"0"[..]), (3, rid)];
            rtx = rtp(
                RTX_PT,
                h.sequence_number,
                h.timestamp,
                h.ssrc,
                &exts,
                &body,
                0,
            );
        }
        self.rtx_seq = self.rtx_seq.wrapping_add(1);
        self.net.send_raw(self.alice, &rtx);
    }

    fn frame(&mut self, layer: usize, keyframe: bool) {
        let p = self.packet(layer, keyframe);
        self.send(&p);
    }

    /// A frame on every layer, then 30 ms on the virtual clock.
    fn round(&mut self, keyframe: bool) {
        for l in 0..3 {
            self.frame(l, keyframe);
        }
        self.net.progress(6);
    }

    fn slot(&self) -> u32 {
        self.net.slot_ssrc(self.bob, MediaKind::Video)
    }

    fn slot_rtx(&self) -> u32 {
        fid_of(&self.net.peers[self.bob].answer, self.slot()).expect("the slot's RTX SSRC")
    }

    /// What Bob got on his slot SSRC, and on its RTX SSRC.
    fn on_slot(&self) -> Vec<ReceivedRtp> {
        self.bob_got(self.slot())
    }

    fn on_slot_rtx(&self) -> Vec<ReceivedRtp> {
        self.bob_got(self.slot_rtx())
    }

    fn bob_got(&self, ssrc: u32) -> Vec<ReceivedRtp> {
        self.net.peers[self.bob]
            .client
            .received_rtp
            .iter()
            .filter(|r| r.ssrc == ssrc)
            .cloned()
            .collect()
    }

    /// Sequence numbers the bridge NACKed to Alice naming `media_ssrc`.
    fn nacked(&self, media_ssrc: u32) -> Vec<u16> {
        let mut seqs = Vec::new();
        for c in &self.net.peers[self.alice].client.received_rtcp {
            for p in RtcpIter::new(c).flatten() {
                if let RtcpPacket::Nack(n) = p
                    && n.media_ssrc == media_ssrc
                {
                    seqs.extend(n.lost_sequence_numbers());
                }
            }
        }
        seqs
    }

    /// Bob NACKs `seqs` of his slot.
    fn bob_nacks(&mut self, seqs: &[u16]) {
        let entries: Vec<NackEntry> = seqs.iter().map(|&pid| NackEntry { pid, blp: 0 }).collect();
        let mut buf = vec![0u8; 16 + 4 * entries.len()];
        let bob_ssrc = self.net.peers[self.bob].client.video_ssrc;
        let n = rtcp::write_nack(&mut buf, bob_ssrc, self.slot(), &entries).expect("fits");
        self.net.send_rtcp(self.bob, &buf[..n]);
    }

    fn set_max_height(&mut self, h: u16) {
        self.net
            .core
            .set_max_height(&ConferenceId("room".into()), &EndpointId("bob".into()), h)
            .expect("bob is in the room");
    }
}

/// The layer tag (last payload byte) and VP8 picture id of a slot packet.
fn tag_and_pid(r: &ReceivedRtp) -> (u8, u16) {
    let d = Vp8Descriptor::parse(&r.payload).expect("vp8");
    (
        *r.payload.last().expect("payload"),
        d.picture_id.expect("pid"),
    )
}

fn seq_of(packet: &[u8]) -> u16 {
    RtpHeader::parse(packet).expect("rtp").sequence_number
}

#[test]
fn a_packet_lost_on_a_layer_is_nacked_with_its_ssrc_and_the_rtx_answer_reaches_its_slot_once() {
    let mut call = Call::new();
    call.round(true);
    for _ in 0..3 {
        call.round(false);
    }
    // Bob's slot climbed q, h, f at the first key frames and stays on f.
    let before = call.on_slot();
    let tags: Vec<u8> = before.iter().map(|r| tag_and_pid(r).0).collect();
    assert_eq!(tags, [0, 1, 2, 2, 2, 2]);

    // A packet of layer f (its sequence numbers wrap here) is lost on the way in.
    let lost = call.packet(2, false);
    let next = call.packet(2, false);
    call.send(&next);
    call.net.progress(4); // 20 ms
    let f_media = LAYERS[2].0;
    assert_eq!(
        call.nacked(f_media),
        vec![seq_of(&lost)],
        "NACKed within 20 ms"
    );
    assert!(call.nacked(LAYERS[0].0).is_empty() && call.nacked(LAYERS[1].0).is_empty());
    assert_eq!(call.net.core.counters().nacks_sent, 1);

    // Alice answers on f's RTX SSRC: restored onto f and forwarded once on
    // Bob's slot, in the place the loss left.
    call.send_rtx(&lost, 2);
    call.net.progress(1);
    let got = call.on_slot();
    assert_eq!(got.len(), before.len() + 2, "{got:?}");
    let (after_gap, repaired) = (&got[got.len() - 2], &got[got.len() - 1]);
    assert_eq!(repaired.seq, after_gap.seq.wrapping_sub(1));
    assert_eq!(tag_and_pid(repaired).0, 2);
    assert_eq!(
        tag_and_pid(repaired).1,
        (tag_and_pid(after_gap).1 + 0x7FFF) % 0x8000,
        "renumbered like its layer's other packets"
    );
    assert!(
        call.on_slot_rtx().is_empty(),
        "nothing resent on the slot's RTX"
    );
    // Repaired: not NACKed again.
    call.net.progress(40);
    assert_eq!(call.nacked(f_media), vec![seq_of(&lost)]);

    // A second answer, and Chrome's RTX probe copies of forwarded packets,
    // are not forwarded again.
    call.send_rtx(&lost, 2);
    call.send_rtx(&next, 2);
    call.send_rtx(&next, 2);
    call.net.progress(1);
    assert_eq!(call.on_slot().len(), before.len() + 2);
    assert_eq!(call.net.core.counters().dropped_rtx, 3);

    // A loss on layer q, which Bob does not get: NACKed with q's SSRC, and
    // the answer fills q's cache but reaches no one.
    let lost_q = call.packet(0, false);
    let next_q = call.packet(0, false);
    call.send(&next_q);
    call.net.progress(4);
    assert_eq!(call.nacked(LAYERS[0].0), vec![seq_of(&lost_q)]);
    call.send_rtx(&lost_q, 0);
    call.net.progress(1);
    assert_eq!(call.on_slot().len(), before.len() + 2);
    assert_eq!(call.net.core.counters().rtx_received, 2);
    assert_eq!(call.net.core.counters().dropped_unknown_ssrc, 0);
}

#[test]
fn a_rid_publishers_layer_loss_is_nacked_and_its_repaired_rid_rtx_fills_the_slot_once() {
    // Chrome's own form: layers by RID, RTX streams learned by repaired RID.
    let mut call = Call::publishing(rid_publisher_offer, true);
    assert!(call.net.peers[call.alice].answer.contains(REPAIRED_RID));
    call.round(true);
    for _ in 0..3 {
        call.round(false);
    }
    let before = call.on_slot().len();
    let lost = call.packet(2, false);
    let next = call.packet(2, false);
    call.send(&next);
    call.net.progress(4);
    assert_eq!(
        call.nacked(LAYERS[2].0),
        vec![seq_of(&lost)],
        "f's SSRC, learned by RID"
    );
    call.send_rtx(&lost, 2);
    call.send_rtx(&lost, 2);
    call.send_rtx(&next, 2);
    call.net.progress(1);
    let got = call.on_slot();
    assert_eq!(got.len(), before + 2, "the hole filled once: {got:?}");
    assert_eq!(
        got[got.len() - 1].seq,
        got[got.len() - 2].seq.wrapping_sub(1)
    );
    let c = call.net.core.counters();
    assert_eq!(
        (c.rtx_received, c.dropped_rtx, c.dropped_unknown_ssrc),
        (1, 2, 0)
    );
    // Bob's NACK for that slot packet is answered from f's cache.
    let repaired = got[got.len() - 1].clone();
    call.bob_nacks(&[repaired.seq]);
    let rtx = call.on_slot_rtx();
    assert_eq!(rtx.len(), 1);
    assert_eq!(&rtx[0].payload[2..], &repaired.payload[..]);
}

#[test]
fn a_receiver_nack_is_answered_from_the_right_layer_even_across_a_layer_switch() {
    let mut call = Call::new();
    call.round(true);
    call.round(false);
    call.round(false);
    // Constrained to 180 lines: to layer q at its next key frame.
    call.set_max_height(180);
    call.round(false);
    call.frame(0, true);
    call.frame(1, false);
    call.frame(2, false);
    call.net.progress(6);
    call.round(false);
    call.round(false);
    let got = call.on_slot();
    let tags: Vec<u8> = got.iter().map(|r| tag_and_pid(r).0).collect();
    assert_eq!(tags, [0, 1, 2, 2, 2, 2, 0, 0, 0], "{got:?}");

    // Bob lost slot packets from every layer the slot carried: h and f from
    // before the switch (the start-up climb), q from after it.
    let lost = [&got[1], &got[4], &got[5], &got[7]];
    let seqs: Vec<u16> = lost.iter().map(|r| r.seq).collect();
    call.bob_nacks(&seqs);
    let rtx = call.on_slot_rtx();
    assert_eq!(
        rtx.len(),
        lost.len(),
        "each answered on the slot's RTX SSRC"
    );
    for (r, orig) in rtx.iter().zip(lost) {
        assert_eq!(r.pt, RTX_PT);
        assert_eq!(
            &r.payload[..2],
            &orig.seq.to_be_bytes(),
            "OSN: the slot seq"
        );
        assert_eq!(r.ts, orig.ts, "the slot's timestamp");
        assert_eq!(
            &r.payload[2..],
            &orig.payload[..],
            "the payload as forwarded, picture id renumbered the same"
        );
    }
    for w in rtx.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "the slot RTX stream's seqs"
        );
    }
    let c = call.net.core.counters();
    assert_eq!(
        (
            c.nacks_received,
            c.retransmissions_sent,
            c.cache_hits,
            c.cache_misses
        ),
        (1, 4, 4, 0)
    );
    // Asked again within one RTT: suppressed; a slot seq never sent: a miss.
    let never = got[got.len() - 1].seq.wrapping_add(50);
    call.bob_nacks(&[got[7].seq, never]);
    let c = call.net.core.counters();
    assert_eq!((c.retransmissions_suppressed, c.cache_misses), (1, 1));
    assert_eq!(call.on_slot_rtx().len(), lost.len());
}

/// A VP8 payload as Chrome sends L1T3 (15-bit picture id, TL0PICIDX, TID,
/// KEYIDX; one packet per frame), tagged with its layer in its last byte.
fn vp8_l1t3(pid: u16, tl0: u8, tid: u8, keyframe: bool, layer: usize) -> Vec<u8> {
    let key_idx = [5u8, 9, 20][layer];
    let mut p = vec![
        0x90,
        0xF0,
        0x80 | (pid >> 8) as u8,
        pid as u8,
        tl0,
        (tid << 6) | key_idx,
    ];
    if keyframe {
        let height = LAYERS[layer].2;
        p.extend_from_slice(&[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a]);
        p.extend_from_slice(&(height * 16 / 9).to_le_bytes());
        p.extend_from_slice(&height.to_le_bytes());
    } else {
        p.extend_from_slice(&[0x01, 0x00, 0x00]);
    }
    p.push(layer as u8);
    p
}

#[test]
fn nacks_after_dropped_temporal_layers_are_answered_with_the_numbering_the_receiver_saw() {
    let mut call = Call::new();
    // Per layer: picture id and TL0PICIDX of the next frame.
    let mut next = [(10u16, 100u8), (2000, 50), (30_000, 200)];
    let mut frame = |call: &mut Call, layer: usize, tid: u8, keyframe: bool| {
        let (pid, tl0) = next[layer];
        let tl0 = if tid == 0 { tl0.wrapping_add(1) } else { tl0 };
        next[layer] = ((pid + 1) % 0x8000, tl0);
        let (media, _, _) = LAYERS[layer];
        let seq = call.next[layer].0;
        call.next[layer].0 = seq.wrapping_add(1);
        let payload = vp8_l1t3(pid, tl0, tid, keyframe, layer);
        let p = rtp(
            VP8_PT,
            seq,
            3000 * u32::from(pid),
            media,
            &[(1, b"0")],
            &payload,
            0,
        );
        call.send(&p);
        call.net.progress(6);
    };
    for l in 0..3 {
        frame(&mut call, l, 0, true);
    }
    let start = call.on_slot().len();
    // TL0 alone (7.5 fps): the TL1 and TL2 frames between are dropped, the
    // slot's sequence numbers, picture ids and TL0PICIDX closing over them,
    // so every TL0 frame goes out with other offsets than the one before.
    call.net
        .core
        .set_temporal_target(
            &ConferenceId("room".into()),
            &EndpointId("bob".into()),
            Some(0),
        )
        .expect("bob is in the room");
    for tid in [2, 1, 2, 0, 2, 1, 2, 0, 2, 1, 2, 0, 2, 1, 2, 0] {
        frame(&mut call, 2, tid, false);
    }
    let got = call.on_slot();
    let sent = &got[start..];
    assert_eq!(sent.len(), 4, "the TL0 frames alone: {got:?}");
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "{got:?}");
    }
    // Bob lost all four: each answered as he would have got it.
    let seqs: Vec<u16> = sent.iter().map(|r| r.seq).collect();
    call.bob_nacks(&seqs);
    let rtx = call.on_slot_rtx();
    assert_eq!(rtx.len(), 4);
    for (r, orig) in rtx.iter().zip(sent) {
        assert_eq!(&r.payload[..2], &orig.seq.to_be_bytes());
        assert_eq!(r.ts, orig.ts);
        assert_eq!(
            &r.payload[2..],
            &orig.payload[..],
            "picture id, TL0PICIDX as sent"
        );
    }
    assert_eq!(call.net.core.counters().cache_misses, 0);
}

#[test]
fn a_gap_given_up_on_one_layer_becomes_one_keyframe_request_for_that_layer() {
    let mut call = Call::new();
    call.round(true);
    for _ in 0..3 {
        call.round(false);
    }
    let plis_before = call.net.peers[call.alice].client.received_pli.len();
    let _lost = call.packet(1, false);
    // 1.5 s of every layer, the h packet never repaired.
    for _ in 0..50 {
        call.round(false);
    }
    let nacks = call.nacked(LAYERS[1].0).len();
    assert!(
        (3..=10).contains(&nacks),
        "retried about once per RTT: {nacks}"
    );
    let plis = &call.net.peers[call.alice].client.received_pli[plis_before..];
    let count = |ssrc: u32| plis.iter().filter(|&&s| s == ssrc).count();
    assert_eq!(
        (count(LAYERS[0].0), count(LAYERS[1].0), count(LAYERS[2].0)),
        (0, 1, 0),
        "{plis:?}"
    );
}

#[test]
fn each_layers_cache_is_counted_when_it_takes_its_memory_and_released_with_its_source() {
    let one = RtxCache::new(RtxCacheConfig::default()).memory_bytes() as u64;
    let mut call = Call::new();
    assert_eq!(
        call.net.core.counters().cache_memory_bytes,
        0,
        "nothing before media"
    );
    call.frame(2, true);
    assert_eq!(call.net.core.counters().cache_memory_bytes, one);
    call.frame(2, false);
    call.frame(0, true);
    call.frame(1, true);
    assert_eq!(call.net.core.counters().cache_memory_bytes, 3 * one);
    call.net
        .core
        .handle_leave(&ConferenceId("room".into()), &EndpointId("alice".into()))
        .expect("alice leaves");
    assert_eq!(call.net.core.counters().cache_memory_bytes, 0);
}

/// Packet `n` of `layer` in [`repairing_three_layers_allocates_nothing_per_packet`]:
/// each layer numbers its packets and pictures on its own, and the sequence
/// numbers of layer f cross the 16-bit wrap.
fn layer_packet(layer: usize, n: u32) -> Vec<u8> {
    let (media, _, height) = LAYERS[layer];
    let seq = [100u16, 5000, 65_000][layer].wrapping_add(n as u16);
    let pid = ([10u32, 2000, 30_000][layer] + n) as u16 % 0x8000;
    let payload = vp8_sized(pid, n == 0, height, layer as u8, 1000);
    rtp(VP8_PT, seq, 3000 * n, media, &[(1, b"0")], &payload, 0)
}

#[test]
fn repairing_three_layers_allocates_nothing_per_packet() {
    // One 5 ms tick carries one packet of one layer in turn (each layer every
    // 15 ms): every 20th packet of each layer is lost on the way in and
    // answered on the layer's RTX SSRC 30 ms later, Chrome's probe copies of
    // forwarded packets come along, and Bob NACKs a packet of his slot every
    // 300 ms. After a 3 s warm-up (every layer's cache and NACK window taken,
    // the slot's first retransmission, the timers' heaps at size), 12 s more
    // go through the bridge with no heap allocation.
    let mut call = Call::new();
    let (alice, bob) = (call.alice, call.bob);
    let slot = call.slot();
    let bob_ssrc = call.net.peers[bob].client.video_ssrc;
    // Layer f's slot sequence number = its source sequence number + offset
    // (learnt from the first f packet Bob gets: the slot climbs to f at once).
    let mut offset: Option<u16> = None;
    let schedule = |k: u32, offset: Option<u16>| -> Vec<(usize, Vec<u8>)> {
        let (layer, n) = ((k % 3) as usize, k / 3);
        let mut out = Vec::new();
        if n % 20 != 7 {
            out.push((alice, layer_packet(layer, n)));
        }
        if n >= 2 && (n - 2) % 20 == 7 {
            out.push((
                alice,
                as_rtx(&layer_packet(layer, n - 2), LAYERS[layer].1, n as u16),
            ));
        }
        if n % 10 == 5 {
            let copy = as_rtx(&layer_packet(layer, n - 1), LAYERS[layer].1, n as u16 + 1);
            out.push((alice, copy));
        }
        if layer == 2
            && n % 20 == 12
            && let Some(off) = offset
        {
            let seq = RtpHeader::parse(&layer_packet(2, n - 2))
                .expect("rtp")
                .sequence_number;
            let mut buf = [0u8; 16];
            let entry = NackEntry {
                pid: seq.wrapping_add(off),
                blp: 0,
            };
            let len = rtcp::write_nack(&mut buf, bob_ssrc, slot, &[entry]).expect("fits");
            out.push((bob, buf[..len].to_vec()));
        }
        out
    };
    for k in 0..600 {
        for (from, p) in schedule(k, offset) {
            if from == bob {
                call.net.send_rtcp(bob, &p);
            } else {
                call.net.send_raw(alice, &p);
            }
        }
        call.net.step();
        if offset.is_none()
            && let Some(first) = call.on_slot().iter().find(|r| tag_and_pid(r).0 == 2)
        {
            offset = Some(first.seq.wrapping_sub(65_000));
        }
    }
    let before = *call.net.core.counters();
    assert!(
        before.nacks_sent > 0 && before.retransmissions_sent > 0,
        "{before:?}"
    );

    let t0 = call.net.now;
    let mut datagrams: Vec<(u32, usize, Vec<u8>)> = Vec::new();
    for k in 600..3000u32 {
        for (from, p) in schedule(k, offset) {
            let client = &mut call.net.peers[from].client;
            let bytes = if from == bob {
                client.send_rtcp(&p).expect("rtcp")
            } else {
                client.protect_rtp(&p).expect("rtp")
            };
            datagrams.push((k - 600, from, bytes));
        }
    }
    let net = &mut call.net;
    let ((), allocations) = counted(|| {
        for (tick, from, bytes) in datagrams.iter_mut() {
            let now = t0 + Duration::from_millis(5 * u64::from(*tick));
            if net.core.poll_timeout().is_some_and(|t| now >= t) {
                net.core.handle_timeout(now, &mut net.tx);
            }
            let p = &net.peers[*from];
            net.core
                .handle_receive(now, p.port, p.addr, bytes, &mut net.tx);
            net.tx.clear();
        }
    });
    let c = *net.core.counters();
    let lost = 3 * 40; // 2400 ticks: 800 packets a layer, every 20th lost
    assert_eq!(
        c.rtx_received - before.rtx_received,
        lost,
        "every loss repaired"
    );
    assert!(
        c.nacks_sent - before.nacks_sent >= lost,
        "every loss NACKed: {c:?}"
    );
    assert!(
        c.dropped_rtx - before.dropped_rtx >= 3 * 80,
        "probe copies dropped"
    );
    assert_eq!(
        c.retransmissions_sent - before.retransmissions_sent,
        40,
        "Bob's NACKs answered"
    );
    assert_eq!(c.cache_misses, before.cache_misses);
    assert_eq!(allocations, 0, "heap allocations on the packet path");
    let (_, control) = counted(|| format!("{t0:?}").len());
    assert!(control > 0, "the counting allocator counts");
}
