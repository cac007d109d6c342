//! Simulcast in: a publisher that offers three RID layers (`a=rid:q/h/f send`,
//! `a=simulcast:send q;h;f`, the rtp-stream-id extension, SSRCs learned from
//! packets as Chrome sends them) gets them answered `recv`; each receiver's slot
//! carries one layer: the tallest that fits its `maxHeight`, switched only at a
//! key frame of the new layer, with sequence numbers and VP8 picture ids that
//! continue across the switch; a layer that stops is left for the next one.
//! Real client peers on a virtual clock (see two_peers.rs).

mod support;

use std::time::Duration;

use ringbridge_bridge::proto::client::{ClientConfig, VP8_PT};
use ringbridge_bridge::proto::codec::vp8::Vp8Descriptor;
use ringbridge_bridge::proto::rtcp;
use ringbridge_bridge::proto::rtp::RtpHeader;
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_control::media::{ConferenceId, EndpointId};
use support::net::*;
use support::simulcast::*;

const LAYERS: [(&str, u32, u16); 3] = [("q", 0x1000, 180), ("h", 0x2000, 360), ("f", 0x3000, 720)];

/// The RTX payload type of the SSRC-simulcast offer.
const RTX_PT: u8 = 97;

/// The RTX SSRC of `layer` in the SSRC-simulcast offer.
fn rtx_ssrc(layer: usize) -> u32 {
    LAYERS[layer].1 + 1
}

/// SSRC simulcast as Chrome sends it with a munged offer (and Jitsi's clients
/// did): no RIDs, `a=ssrc-group:SIM` naming the three layers' media SSRCs
/// smallest first, and an FID group pairing each with its RTX SSRC.
fn ssrc_simulcast_offer(offer: String) -> String {
    edit_offer(&offer, |kind, line| {
        if kind == "video" && line.starts_with("a=ssrc:") {
            let mut out = format!(
                "a=rtpmap:{RTX_PT} rtx/90000\r\na=fmtp:{RTX_PT} apt={VP8_PT}\r\n\
                 a=ssrc-group:SIM {} {} {}\r\n",
                LAYERS[0].1, LAYERS[1].1, LAYERS[2].1
            );
            for (l, &(_, media, _)) in LAYERS.iter().enumerate() {
                let rtx = rtx_ssrc(l);
                out.push_str(&format!(
                    "a=ssrc-group:FID {media} {rtx}\r\na=ssrc:{media} cname:client\r\n\
                     a=ssrc:{rtx} cname:client\r\n"
                ));
            }
            return out;
        }
        if line.starts_with("a=rtcp-mux") {
            return format!("{line}a=extmap:1 {MID}\r\n");
        }
        line.to_owned()
    })
}

struct Call {
    net: Net,
    alice: usize,
    bob: usize,
    /// Per layer: next sequence number and picture id.
    next: [(u16, u16); 3],
    /// The layers are told apart by their RID extension (else by SSRC alone).
    rid: bool,
}

impl Call {
    fn new() -> Call {
        Call::publishing(simulcast_offer, true)
    }

    /// Alice publishes with the offer `edit` makes; bob receives.
    fn publishing(edit: fn(String) -> String, rid: bool) -> Call {
        let mut net = Net::new();
        let alice = net.join_with("alice", VIDEO_ONLY, Default::default(), edit);
        let bob = net.join_with("bob", VIDEO_ONLY, Default::default(), with_mid);
        net.connect_all();
        net.peers[bob].client.keep_raw_rtp = true;
        // Each layer numbers its packets and pictures on its own.
        Call {
            net,
            alice,
            bob,
            next: [(100, 10), (5000, 2000), (30_000, 30_000)],
            rid,
        }
    }

    /// One frame (one packet) on `layer`.
    fn frame(&mut self, layer: usize, keyframe: bool) {
        let packet = self.frame_packet(layer, keyframe);
        self.net.send_raw(self.alice, &packet);
    }

    /// The RTP packet of the next frame on `layer`.
    fn frame_packet(&mut self, layer: usize, keyframe: bool) -> Vec<u8> {
        let (rid, ssrc, height) = LAYERS[layer];
        let (seq, pid) = self.next[layer];
        self.next[layer] = (seq.wrapping_add(1), (pid + 1) % 0x8000);
        let payload = vp8_tagged(pid, keyframe, height, layer as u8);
        // mid 0: alice's publishing m-line (the client lists it first).
        let with_rid = [(1, &b"0"[..]), (2, rid.as_bytes())];
        let exts = if self.rid { &with_rid[..] } else { &[] };
        rtp(VP8_PT, seq, 3000 * u32::from(seq), ssrc, exts, &payload, 0)
    }

    /// A frame on every layer, 33 ms apart on the virtual clock.
    fn round(&mut self, keyframe: bool) {
        for l in 0..3 {
            self.frame(l, keyframe);
        }
        self.net.progress(6);
    }

    /// (sequence number, picture id, layer) of every video packet bob got.
    fn received(&self) -> Vec<(u16, u16, u8)> {
        self.net.peers[self.bob]
            .client
            .received_raw_rtp
            .iter()
            .filter_map(|p| {
                let h = RtpHeader::parse(p).ok()?;
                let payload = h.payload(p)?;
                let d = Vp8Descriptor::parse(payload).ok()?;
                Some((h.sequence_number, d.picture_id?, *payload.last()?))
            })
            .collect()
    }

    fn set_max_height(&mut self, h: u16) {
        self.net
            .core
            .set_max_height(&ConferenceId("room".into()), &EndpointId("bob".into()), h)
            .expect("bob is in the room");
    }
}

fn assert_continuous(got: &[(u16, u16, u8)]) {
    for w in got.windows(2) {
        assert_eq!(
            w[1].0,
            w[0].0.wrapping_add(1),
            "sequence numbers continue: {got:?}"
        );
        assert_eq!(
            w[1].1,
            (w[0].1 + 1) % 0x8000,
            "picture ids continue: {got:?}"
        );
    }
}

#[test]
fn the_answer_receives_every_offered_layer() {
    let call = Call::new();
    let answer = &call.net.peers[call.alice].answer;
    for rid in ["q", "h", "f"] {
        assert!(
            answer.contains(&format!("a=rid:{rid} recv\r\n")),
            "{answer}"
        );
    }
    assert!(answer.contains("a=simulcast:recv q;h;f\r\n"), "{answer}");
    assert!(
        answer.contains(&format!("a=extmap:2 {RID}\r\n")),
        "{answer}"
    );
    // A receiver's slot is one plain stream.
    assert!(!call.net.peers[call.bob].answer.contains("a=simulcast"));
}

#[test]
fn an_unconstrained_receiver_gets_the_top_layer_alone() {
    let mut call = Call::new();
    call.round(true);
    for _ in 0..10 {
        call.round(false);
    }
    let got = call.received();
    let layers: Vec<u8> = got.iter().map(|g| g.2).collect();
    // The first key frames arrive q, h, f: the slot starts on what arrives
    // and climbs within that first frame time, then stays on f alone.
    assert_eq!(layers[..3], [0, 1, 2], "{got:?}");
    assert_eq!(layers[3..], [2; 10], "only layer f: {got:?}");
    assert_continuous(&got);
    let slot = call.net.slot_ssrc(call.bob, MediaKind::Video);
    assert!(
        call.net.peers[call.bob]
            .client
            .received_raw_rtp
            .iter()
            .all(|p| RtpHeader::parse(p).is_ok_and(|h| h.ssrc == slot))
    );
}

#[test]
fn a_max_height_moves_the_slot_down_at_the_next_key_frame_and_back_up() {
    let mut call = Call::new();
    call.round(true);
    call.round(false);
    call.set_max_height(180);
    // Until layer q's key frame, f keeps flowing; q's delta frames are not sent.
    call.round(false);
    call.round(false);
    // (the start-up climb q, h, f, then f)
    assert_eq!(
        call.received().iter().map(|g| g.2).collect::<Vec<_>>(),
        [0, 1, 2, 2, 2, 2]
    );
    call.frame(0, true);
    call.frame(1, false);
    call.frame(2, false);
    call.net.progress(6);
    for _ in 0..3 {
        call.round(false);
    }
    let got = call.received();
    let layers: Vec<u8> = got.iter().map(|g| g.2).collect();
    assert_eq!(layers, [0, 1, 2, 2, 2, 2, 0, 0, 0, 0], "{got:?}");
    assert_continuous(&got);

    // Unconstrained again: up to f at its next key frame.
    call.set_max_height(u16::MAX);
    call.round(false);
    call.frame(0, false);
    call.frame(1, false);
    call.frame(2, true);
    call.net.progress(6);
    call.round(false);
    let got = call.received();
    let layers: Vec<u8> = got.iter().map(|g| g.2).collect();
    assert_eq!(layers[10..], [0, 0, 2, 2], "{got:?}");
    assert_continuous(&got);
}

#[test]
fn a_stopped_top_layer_is_replaced_by_the_next_one_at_its_key_frame() {
    let mut call = Call::new();
    call.round(true);
    call.round(false);
    // Chrome suspends f: only q and h arrive for over a second.
    for _ in 0..40 {
        call.frame(0, false);
        call.frame(1, false);
        call.net.progress(6);
    }
    call.frame(1, true);
    call.net.progress(6);
    call.frame(1, false);
    call.net.progress(6);
    let got = call.received();
    let layers: Vec<u8> = got.iter().map(|g| g.2).collect();
    assert_eq!(layers, [0, 1, 2, 2, 1, 1], "{got:?}");
    assert_continuous(&got);
    // The bridge asked alice for a key frame of h while the switch waited.
    let h_ssrc = LAYERS[1].1;
    assert!(
        call.net.peers[call.alice]
            .client
            .received_pli
            .contains(&h_ssrc),
        "a PLI for layer h reached the publisher: {:?}",
        call.net.peers[call.alice].client.received_pli
    );
}

#[test]
fn an_ssrc_sim_group_publisher_is_forwarded_like_a_rid_one() {
    let mut call = Call::publishing(ssrc_simulcast_offer, false);
    // Nothing to answer for SSRC simulcast: the layers are plain SSRCs.
    assert!(!call.net.peers[call.alice].answer.contains("a=simulcast"));
    call.round(true);
    for _ in 0..3 {
        call.round(false);
    }
    let got = call.received();
    let layers: Vec<u8> = got.iter().map(|g| g.2).collect();
    // The SIM group's order ranks the layers before their key frames tell
    // their heights: the slot climbs to the third SSRC and stays there.
    assert_eq!(layers, [0, 1, 2, 2, 2, 2], "{got:?}");
    assert_continuous(&got);

    // Constrained to 180 lines: down to the first SSRC at its key frame.
    call.set_max_height(180);
    call.round(false);
    call.frame(0, true);
    call.frame(1, false);
    call.frame(2, false);
    call.net.progress(6);
    call.round(false);
    let got = call.received();
    let layers: Vec<u8> = got.iter().map(|g| g.2).collect();
    assert_eq!(layers[6..], [2, 0, 0], "{got:?}");
    assert_continuous(&got);
    assert!(
        call.net.peers[call.alice]
            .client
            .received_pli
            .contains(&LAYERS[0].1),
        "the bridge asked for the key frame: {:?}",
        call.net.peers[call.alice].client.received_pli
    );

    // Unconstrained again; layer f's key frame comes as a retransmission on
    // its FID-paired RTX SSRC: restored onto layer f, and the slot switches.
    call.set_max_height(u16::MAX);
    let media = call.frame_packet(2, true);
    let header = RtpHeader::parse(&media).expect("rtp");
    let payload = header.payload(&media).expect("payload");
    let mut osn = header.sequence_number.to_be_bytes().to_vec();
    osn.extend_from_slice(payload);
    let repair = rtp(RTX_PT, 7, header.timestamp, rtx_ssrc(2), &[], &osn, 0);
    call.frame(0, false);
    call.net.send_raw(call.alice, &repair);
    call.net.progress(6);
    call.round(false);
    let got = call.received();
    let layers: Vec<u8> = got.iter().map(|g| g.2).collect();
    assert_eq!(layers[9..], [0, 2, 2], "{got:?}");
    assert_continuous(&got);
    assert_eq!(call.net.core.counters().rtx_received, 1);
    assert_eq!(call.net.core.counters().dropped_unknown_ssrc, 0);
}

/// A VP8 payload as Chrome sends L1T3: 15-bit picture id, TL0PICIDX, TID, Y
/// and KEYIDX (RFC 7741 I, L, T, K), the frame's first packet (S = 1) or a
/// continuation; tagged with its layer in its last byte.
#[allow(clippy::too_many_arguments)]
fn vp8_l1t3(
    pid: u16,
    tl0: u8,
    tid: u8,
    sync: bool,
    key_idx: u8,
    keyframe: bool,
    start: bool,
    layer: u8,
) -> Vec<u8> {
    let tyk = (tid << 6) | (u8::from(sync) << 5) | (key_idx & 0x1F);
    let s = if start { 0x10 } else { 0x00 };
    let mut p = vec![0x80 | s, 0xF0, 0x80 | (pid >> 8) as u8, pid as u8, tl0, tyk];
    if !start {
        p.extend_from_slice(&[0xAA, 0xBB]);
    } else if keyframe {
        let height = LAYERS[usize::from(layer)].2;
        p.extend_from_slice(&[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a]);
        p.extend_from_slice(&(height * 16 / 9).to_le_bytes());
        p.extend_from_slice(&height.to_le_bytes());
    } else {
        p.extend_from_slice(&[0x01, 0x00, 0x00]);
    }
    p.push(layer);
    p
}

/// Per layer: (picture id, TL0PICIDX) of the next frame.
struct L1t3 {
    next: [(u16, u8); 3],
}

impl L1t3 {
    /// One frame on `layer` of temporal layer `tid`, in `packets` packets.
    fn frame(
        &mut self,
        call: &mut Call,
        layer: usize,
        tid: u8,
        sync: bool,
        key: bool,
        packets: u8,
    ) {
        let (pid, tl0) = self.next[layer];
        let tl0 = if tid == 0 { tl0.wrapping_add(1) } else { tl0 };
        self.next[layer] = ((pid + 1) % 0x8000, tl0);
        // Each layer keys its own KEYIDX: 5, 9, 20.
        let key_idx = [5, 9, 20][layer];
        let (rid, ssrc, _) = LAYERS[layer];
        for k in 0..packets {
            let (seq, _) = call.next[layer];
            call.next[layer].0 = seq.wrapping_add(1);
            let payload = vp8_l1t3(pid, tl0, tid, sync, key_idx, key, k == 0, layer as u8);
            let packet = rtp(
                VP8_PT,
                seq,
                3000 * u32::from(pid),
                ssrc,
                &[(1, b"0"), (2, rid.as_bytes())],
                &payload,
                0,
            );
            call.net.send_raw(call.alice, &packet);
        }
        call.net.progress(6);
    }
}

/// (sequence number, picture id, TL0PICIDX, TID, KEYIDX) of every packet bob got.
fn received_l1t3(call: &Call) -> Vec<(u16, u16, u8, u8, u8)> {
    call.net.peers[call.bob]
        .client
        .received_raw_rtp
        .iter()
        .filter_map(|p| {
            let h = RtpHeader::parse(p).ok()?;
            let d = Vp8Descriptor::parse(h.payload(p)?).ok()?;
            Some((
                h.sequence_number,
                d.picture_id?,
                d.tl0_pic_idx?,
                d.temporal_id?,
                d.key_idx?,
            ))
        })
        .collect()
}

#[test]
fn a_temporal_target_drops_upper_layers_and_the_receiver_sees_one_continuous_stream() {
    let mut call = Call::new();
    let mut t = L1t3 {
        next: [(10, 100), (2000, 50), (30_000, 200)],
    };
    // Key frames on every layer (the slot climbs q, h, f), then f alone at 30 fps.
    for l in 0..3 {
        t.frame(&mut call, l, 0, false, true, 1);
    }
    for (tid, sync) in [(2, true), (1, true), (2, false)] {
        t.frame(&mut call, 2, tid, sync, false, 1);
    }
    let start = received_l1t3(&call).len();
    assert_eq!(start, 6, "every layer while unconstrained");

    // 7.5 fps: TL0 alone. The two-packet TL2 frames are dropped whole.
    call.net
        .core
        .set_temporal_target(
            &ConferenceId("room".into()),
            &EndpointId("bob".into()),
            Some(0),
        )
        .expect("bob is in the room");
    for (tid, sync) in [(0, false), (2, false), (1, false), (2, false), (0, false)] {
        t.frame(&mut call, 2, tid, sync, false, 2);
    }
    // 15 fps: up only at a TL1 frame with the layer sync bit.
    call.net
        .core
        .set_temporal_target(
            &ConferenceId("room".into()),
            &EndpointId("bob".into()),
            Some(1),
        )
        .expect("bob is in the room");
    for (tid, sync) in [
        (2, false),
        (1, false),
        (2, false),
        (0, false),
        (2, true),
        (1, true),
        (2, false),
        (1, false),
    ] {
        t.frame(&mut call, 2, tid, sync, false, 1);
    }
    let got = received_l1t3(&call);
    let tids: Vec<u8> = got[start..].iter().map(|g| g.3).collect();
    // TL0 (2 packets), TL0 (2), then TL0, the synced TL1 and the next TL1.
    assert_eq!(tids, [0, 0, 0, 0, 0, 1, 1], "{got:?}");
    for w in got.windows(2) {
        let (a, b) = (w[0], w[1]);
        assert_eq!(
            b.0,
            a.0.wrapping_add(1),
            "sequence numbers close over drops: {got:?}"
        );
        let same_picture = b.1 == a.1;
        assert!(
            same_picture || b.1 == (a.1 + 1) % 0x8000,
            "picture ids leave no gap: {got:?}"
        );
        if b.3 == 0 && !same_picture {
            assert_eq!(b.2, a.2.wrapping_add(1), "TL0PICIDX continues: {got:?}");
        } else {
            assert_eq!(b.2, a.2, "TL0PICIDX continues: {got:?}");
        }
    }
    // KEYIDX continued across the start-up layer switches: q's 5, then 6, 7.
    let keys: Vec<u8> = got.iter().map(|g| g.4).collect();
    assert_eq!(keys[..3], [5, 6, 7], "{got:?}");
    assert!(keys[3..].iter().all(|&k| k == 7), "{got:?}");
}

/// `media` as an RTX packet on its layer's FID-paired SSRC (RFC 4588: the
/// original sequence number, then the payload), numbered `rtx_seq`.
fn as_rtx(media: &[u8], layer: usize, rtx_seq: u16) -> Vec<u8> {
    let header = RtpHeader::parse(media).expect("rtp");
    let payload = header.payload(media).expect("payload");
    let mut osn = header.sequence_number.to_be_bytes().to_vec();
    osn.extend_from_slice(payload);
    rtp(
        RTX_PT,
        rtx_seq,
        header.timestamp,
        rtx_ssrc(layer),
        &[],
        &osn,
        0,
    )
}

#[test]
fn chromes_rtx_probe_copies_of_forwarded_layer_packets_are_not_forwarded_again() {
    // Chrome probes its uplink with RTX copies of media it just sent, often
    // the same packet several times. Each copy forwarded would be a duplicate
    // that the receiver's SRTP replay check drops, read as a loss in its
    // transport-cc feedback (measured with Chromium: 35-47% of a 180p page's
    // video packets, and its estimate fell to 0).
    let mut call = Call::publishing(ssrc_simulcast_offer, false);
    call.round(true);
    for _ in 0..3 {
        call.round(false);
    }
    let before = call.received().len();
    let top = call.frame_packet(2, false);
    call.net.send_raw(call.alice, &top);
    call.net.progress(6);
    assert_eq!(call.received().len(), before + 1);
    for k in 0..5 {
        let copy = as_rtx(&top, 2, 100 + k);
        call.net.send_raw(call.alice, &copy);
    }
    call.net.progress(6);
    assert_eq!(
        call.received().len(),
        before + 1,
        "copies of a forwarded packet are not forwarded: {:?}",
        call.received()
    );
    assert_eq!(call.net.core.counters().dropped_rtx, 5);

    // A packet lost on the way in and then carried by such a copy fills the
    // hole once; its second copy is dropped too.
    let lost = call.frame_packet(2, false);
    let next = call.frame_packet(2, false);
    call.net.send_raw(call.alice, &next);
    call.net.send_raw(call.alice, &as_rtx(&lost, 2, 200));
    call.net.send_raw(call.alice, &as_rtx(&lost, 2, 201));
    call.net.progress(6);
    let got = call.received();
    assert_eq!(got.len(), before + 3, "{got:?}");
    let lost_seq = RtpHeader::parse(&lost).expect("rtp").sequence_number;
    let next_seq = RtpHeader::parse(&next).expect("rtp").sequence_number;
    assert_eq!(next_seq, lost_seq.wrapping_add(1));
    // The slot's numbering keeps the order the source gave them.
    let tail: Vec<u16> = got[before + 1..].iter().map(|g| g.0).collect();
    assert_eq!(tail[1], tail[0].wrapping_sub(1), "{got:?}");
    assert_eq!(call.net.core.counters().rtx_received, 1);
    assert_eq!(call.net.core.counters().dropped_rtx, 6);
}

/// A publisher that declares no SSRC (its stream is learned from the mid
/// extension of its first packet): until that packet there is nothing to ask
/// for a key frame, and the router keeps no keyframe timer for it; the first
/// packet arms the timer, and the publisher is asked again, about every
/// 500 ms, while bob's slot still waits.
#[test]
fn a_source_without_a_declared_ssrc_is_asked_for_key_frames_from_its_first_packet_on() {
    let mut sending = false;
    let no_ssrc = |offer: String| {
        edit_offer(&with_mid(offer), |kind, line| {
            if line.starts_with("a=sendonly") || line.starts_with("a=recvonly") {
                sending = line.starts_with("a=sendonly");
            }
            if kind == "video" && sending && line.starts_with("a=ssrc") {
                return String::new();
            }
            line.to_owned()
        })
    };
    // Bob only receives: alice's source is the only one a slot waits on.
    let mut net = Net::new();
    let alice = net.join_with("alice", VIDEO_ONLY, Default::default(), no_ssrc);
    let listener = ClientConfig {
        video: false,
        ..VIDEO_ONLY
    };
    let bob = net.join_with("bob", listener, Default::default(), with_mid);
    net.connect_all();
    net.progress(1_000 / 5);
    let room = ConferenceId("room".into());
    let router = net.core.router(&room).expect("room");
    assert_eq!(router.keyframe_retry_at(), None, "no timer: nothing to ask");
    let ssrc = 0x4000;
    let plis = |net: &Net| {
        net.peers[alice]
            .client
            .received_pli
            .iter()
            .filter(|&&s| s == ssrc)
            .count()
    };
    // Delta frames only, for about 1.5 s: the slot keeps waiting.
    for k in 0..45u16 {
        let payload = vp8_tagged(k, false, 180, 0);
        let packet = rtp(
            VP8_PT,
            k,
            3000 * u32::from(k),
            ssrc,
            &[(1, &b"0"[..])],
            &payload,
            0,
        );
        net.send_raw(alice, &packet);
        net.progress(6);
    }
    assert!(
        plis(&net) >= 3,
        "asked at the first packet and again on the timer: {} asks",
        plis(&net)
    );
    assert!(
        net.received(bob, net.slot_ssrc(bob, MediaKind::Video))
            .is_empty(),
        "nothing before a key frame"
    );
}

#[test]
fn a_switch_asked_right_after_another_key_frame_request_is_asked_again_as_the_throttle_opens() {
    let mut call = Call::new();
    call.round(true);
    for _ in 0..3 {
        call.round(false);
    }
    let plis = |call: &Call| call.net.peers[call.alice].client.received_pli.len();
    // Bob asks for a key frame of the slot's layer f: it reaches alice.
    let slot = call.net.slot_ssrc(call.bob, MediaKind::Video);
    let mut buf = [0u8; 12];
    let n = rtcp::write_pli(&mut buf, 0xB0B, slot).expect("fits");
    let before = plis(&call);
    call.net.send_rtcp(call.bob, &buf[..n]);
    call.net.progress(1);
    let asked = plis(&call);
    assert!(asked > before, "bob's PLI reached alice");
    let asked_at = call.net.now;
    // 100 ms later the slot is constrained to 180 lines: its switch to q
    // needs a key frame of q, and the request is within the source's
    // throttle (libwebrtc drops a request 300 ms after its last one).
    while call.net.now < asked_at + Duration::from_millis(100) {
        call.net.progress(1);
    }
    call.set_max_height(180);
    while call.net.now < asked_at + Duration::from_millis(340) {
        call.net.progress(1);
        assert_eq!(plis(&call), asked, "asked again inside the throttle");
    }
    // Asked as the throttle opens (350 ms), not a whole retry interval
    // (500 ms) after the last request.
    while call.net.now < asked_at + Duration::from_millis(380) {
        call.net.progress(1);
    }
    assert!(
        plis(&call) > asked,
        "no request for q's key frame by 380 ms: {:?}",
        call.net.peers[call.alice].client.received_pli
    );
    assert!(
        call.net.peers[call.alice].client.received_pli[asked..].contains(&LAYERS[0].1),
        "{:?}",
        call.net.peers[call.alice].client.received_pli
    );
}
