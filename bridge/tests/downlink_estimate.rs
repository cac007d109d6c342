//! The bandwidth estimate toward each receiver, through the shard on a virtual
//! clock with real SRTP clients: the answer negotiates transport-cc on the
//! receiver's slots, the bridge numbers what it forwards, the receiver's
//! transport-cc feedback (written by the bridge's own feedback writer, as a
//! browser would) moves `Endpoint::downlink_estimate`, and the receiver is told
//! the estimate as `MediaEvent::ConnectionStats`; a simulcast slot carries the
//! layer its share of the estimate fits, and padding probes on its RTX stream
//! lift the estimate when the slot wants more.

mod support;

use std::time::Duration;

use ringbridge_bridge::proto::client::VP8_PT;
use ringbridge_bridge::proto::quality::twcc::{TwccConfig, TwccReceiver};
use ringbridge_bridge::proto::rtcp::{self, NackEntry};
use ringbridge_bridge::proto::rtp::RtpHeader;
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::transport::Transport;
use ringbridge_control::media::{ConferenceId, EndpointId, MediaEvent};
use support::net::*;
use support::simulcast::*;

const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
const TWCC_ID: u8 = 5;
const RTX_PT: u8 = 97;

/// Adds the transport-wide-cc extmap to every m-line and `transport-cc`
/// feedback to every video m-line (publisher and slot), as Chrome offers.
fn with_twcc(offer: String) -> String {
    edit_offer(&offer, |kind, line| {
        let mut out = line.to_owned();
        if line.starts_with("a=rtcp-mux") {
            out.push_str(&format!("a=extmap:{TWCC_ID} {TWCC_URI}\r\n"));
            if kind == "video" {
                out.push_str(&format!("a=rtcp-fb:{VP8_PT} transport-cc\r\n"));
            }
        }
        out
    })
}

/// Endpoint `name`'s transport in the room.
fn transport<'a>(net: &'a Net, name: &str) -> &'a Transport {
    let router = net
        .core
        .router(&ConferenceId("room".into()))
        .expect("router");
    let key = router.find(&EndpointId(name.into())).expect("endpoint");
    router.endpoint(key).expect("endpoint").transport()
}

fn estimate(net: &Net, name: &str) -> Option<u64> {
    let router = net.core.router(&ConferenceId("room".into()))?;
    let key = router.find(&EndpointId(name.into()))?;
    router.endpoint(key)?.downlink_estimate()
}

/// Bob's side of the path: stamps what arrives (plus a queueing delay the
/// test chooses) and sends transport-cc feedback when due.
struct Receiver {
    twcc: TwccReceiver,
    seen: usize,
    feedbacks: u64,
}

impl Receiver {
    fn turn(&mut self, net: &mut Net, b: usize, queue: Duration) {
        let raw = &net.peers[b].client.received_raw_rtp;
        let mut seqs = Vec::new();
        for p in &raw[self.seen..] {
            let h = RtpHeader::parse(p).expect("parses");
            let seq = h.extension_value(p, TWCC_ID).expect("transport-wide seq");
            seqs.push(u16::from_be_bytes([seq[0], seq[1]]));
        }
        self.seen = raw.len();
        for seq in seqs {
            self.twcc.handle_packet(net.now + queue, seq);
        }
        let mut buf = [0u8; 1200];
        while let Ok(Some(n)) = self.twcc.poll_feedback(net.now + queue, &mut buf, 0xB0B, 0) {
            net.send_rtcp(b, &buf[..n]);
            self.feedbacks += 1;
        }
    }
}

#[test]
fn receiver_feedback_moves_its_estimate_and_reaches_it_as_connection_stats() {
    let mut net = Net::new();
    let a = net.join_with("alice", EVERYTHING, Default::default(), with_twcc);
    let b = net.join_with("bob", EVERYTHING, Default::default(), with_twcc);
    net.connect_all();
    net.peers[b].client.keep_raw_rtp = true;
    let slot_video = {
        let answer = &net.peers[b].answer;
        let start = answer.rfind("m=video").expect("slot video m-line");
        answer[start..].to_owned()
    };
    assert!(
        slot_video.contains(&format!("a=rtcp-fb:{VP8_PT} transport-cc\r\n")),
        "{slot_video}"
    );
    assert_eq!(estimate(&net, "bob"), None, "no estimate before feedback");

    let ssrc = net.peers[a].client.video_ssrc;
    let mut rx = Receiver {
        twcc: TwccReceiver::new(TwccConfig::default()),
        seen: 0,
        feedbacks: 0,
    };
    let mut k = 0u16;
    let mut send = |net: &mut Net| {
        // 1000-byte video packets every 5 ms: 1.6 Mbit/s.
        let mut payload = support::net::vp8(k == 0, k as u8);
        payload.resize(1000, 0x55);
        let p = rtp(VP8_PT, k, 450 * u32::from(k), ssrc, &[], &payload, 0);
        net.send_raw(a, &p);
        k = k.wrapping_add(1);
    };

    // 3 s on a clean path.
    for _ in 0..600 {
        send(&mut net);
        net.progress(1);
        rx.turn(&mut net, b, Duration::ZERO);
    }
    let clean = estimate(&net, "bob").expect("an estimate after feedback");
    assert!(clean > 600_000, "clean path: {clean}");
    assert_eq!(estimate(&net, "alice"), None, "alice receives nothing");

    // 2 s through a bottleneck: each packet waits 1 ms longer than the one
    // before (a queue growing at 200 ms/s: the path carries 1.33 of 1.6 Mbit/s).
    for i in 0..400u64 {
        send(&mut net);
        net.progress(1);
        rx.turn(&mut net, b, Duration::from_millis(i));
    }
    let congested = estimate(&net, "bob").expect("estimate");
    assert!(
        congested < clean * 3 / 4 && congested < 1_600_000,
        "clean {clean}, congested {congested}"
    );

    assert_eq!(net.core.counters().twcc_feedback_received, rx.feedbacks);
    let stats: Vec<(String, u64)> = net
        .events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::ConnectionStats {
                endpoint,
                estimated_downlink_bps,
                ..
            } => Some((endpoint.0.clone(), *estimated_downlink_bps)),
            _ => None,
        })
        .collect();
    assert!(stats.iter().all(|(who, _)| who == "bob"), "{stats:?}");
    // After the first feedback, then every 2 s: at 0, 2 and 4 s of 5.
    assert_eq!(stats.len(), 3, "{stats:?}");
    assert!(stats[0].1 <= 400_000, "starts near 300 kbit/s: {stats:?}");
    assert!(stats[1].1 > stats[0].1, "{stats:?}");
    assert!(stats[2].1 < stats[1].1, "{stats:?}");
}

/// Layers (rid, SSRC, height, packet size): one packet per layer every 30 ms,
/// so about 53, 160 and 320 kbit/s.
const LAYERS: [(&str, u32, u16, usize); 3] = [
    ("q", 0x1000, 180, 200),
    ("h", 0x2000, 360, 600),
    ("f", 0x3000, 720, 1200),
];

/// A publisher of [`LAYERS`]: each round sends one packet of every layer, the
/// RTP timestamps a round (30 ms) apart, each layer's sequence number and
/// picture id continuing.
struct LayeredSender {
    /// Per layer: the next sequence number and picture id.
    next: [(u16, u16); 3],
}

impl Default for LayeredSender {
    fn default() -> Self {
        Self {
            next: [(100, 10), (5000, 2000), (30_000, 30_000)],
        }
    }
}

impl LayeredSender {
    fn send_round(&mut self, net: &mut Net, from: usize, round: u32, keyframe: bool) {
        for (l, (rid, ssrc, height, size)) in LAYERS.into_iter().enumerate() {
            let (seq, pid) = self.next[l];
            self.next[l] = (seq.wrapping_add(1), (pid + 1) % 0x8000);
            let payload = vp8_sized(pid, keyframe, height, l as u8, size);
            let p = rtp(
                VP8_PT,
                seq,
                2700 * round,
                ssrc,
                &[(1, b"0"), (2, rid.as_bytes())],
                &payload,
                0,
            );
            net.send_raw(from, &p);
        }
    }
}

/// Alice publishing [`LAYERS`] and Bob receiving them on one video slot, both
/// connected: the net, their indices, Bob's slot SSRC and his feedback side.
fn simulcast_pair() -> (Net, usize, usize, u32, Receiver) {
    let mut net = Net::new();
    let a = net.join_with("alice", VIDEO_ONLY, Default::default(), simulcast_offer);
    let b = net.join_with("bob", VIDEO_ONLY, Default::default(), receiver_offer);
    net.connect_all();
    net.peers[b].client.keep_raw_rtp = true;
    let slot = net.slot_ssrc(b, MediaKind::Video);
    let rx = Receiver {
        twcc: TwccReceiver::new(TwccConfig::default()),
        seen: 0,
        feedbacks: 0,
    };
    (net, a, b, slot, rx)
}

/// A receiver's offer: mid, transport-cc and RTX for VP8 on its video m-lines.
fn receiver_offer(offer: String) -> String {
    let offer = edit_offer(&offer, |kind, line| {
        let mut out = line.to_owned();
        if line.starts_with("a=rtcp-mux") {
            out.push_str(&format!("a=extmap:1 {MID}\r\n"));
        }
        if kind == "video" {
            if line.starts_with("m=video") {
                out = line.replace(
                    &format!(" {VP8_PT}\r\n"),
                    &format!(" {VP8_PT} {RTX_PT}\r\n"),
                );
            }
            if line.starts_with("a=rtpmap:") {
                out.push_str(&format!(
                    "a=rtpmap:{RTX_PT} rtx/90000\r\na=fmtp:{RTX_PT} apt={VP8_PT}\r\n"
                ));
            }
        }
        out
    });
    with_twcc(offer)
}

#[test]
fn a_simulcast_slot_follows_the_estimate_and_padding_probes_lift_it() {
    let (mut net, a, b, slot, mut rx) = simulcast_pair();
    let mut alice = LayeredSender::default();
    // Bob's path: clean for 60 rounds (1.8 s), then a queue growing 3 ms
    // per 5 ms for 40 rounds, then steady (no longer growing) to the end.
    let queue = |round: u32, step: u32| {
        let steps = (round * 6 + step).saturating_sub(360).min(240);
        Duration::from_millis(u64::from(steps) * 3)
    };
    // The layer bob's slot carries in each round, from the payload's last byte.
    let mut carried = Vec::new();
    let mut probes_before_recovery = 0;
    // Until 10 s after the queue stops growing (round 100; a round is 30 ms).
    for round in 0..100 + 10_000 / 30 {
        // Key frames on every layer every 10 rounds (300 ms).
        let keyframe = round % 10 == 0;
        let before = net.peers[b].client.received_raw_rtp.len();
        alice.send_round(&mut net, a, round, keyframe);
        for step in 0..6 {
            net.progress(1);
            rx.turn(&mut net, b, queue(round, step));
        }
        let layer = net.peers[b].client.received_raw_rtp[before..]
            .iter()
            .rev()
            .find_map(|p| {
                let h = RtpHeader::parse(p).ok()?;
                if h.ssrc != slot {
                    return None;
                }
                h.payload(p)?.last().copied()
            });
        carried.push(layer);
        if round == 100 {
            probes_before_recovery = net.core.counters().probe_packets_sent;
        }
    }
    // The allocation's budget is the 300 kbit/s start value before feedback,
    // but layers not measured yet cost nothing (as in jvb), so the slot
    // opens on whatever the first allocation saw and is on the top layer
    // while the estimate grows on the clean path.
    assert!(carried[..60].contains(&Some(2)), "{carried:?}");
    // The queue: the estimate falls below the top layer, the slot leaves it.
    // The queue passes 50 ms at round 63 and 100 ms at round 66, and the
    // receiver is re-allocated at once (a queue that grows past 100 ms is
    // congestion, see `SendSideBwe::congested`), not on the 500 ms timer:
    // that left the top layer at round 90.
    let low_at = 60
        + carried[60..]
            .iter()
            .position(|l| *l != Some(2))
            .expect("never left the top layer");
    assert!(
        low_at < 80,
        "left the top layer at round {low_at}: {carried:?}"
    );
    // The path is steady again but the estimate climbs only additively above
    // the rate that congested it: padding probes on bob's RTX stream lift it,
    // and the slot returns to the top layer.
    let padding: Vec<RtpHeader> = net.peers[b]
        .client
        .received_raw_rtp
        .iter()
        .filter_map(|p| RtpHeader::parse(p).ok())
        .filter(|h| h.ssrc != slot)
        .collect();
    assert!(
        net.core.counters().probe_packets_sent > probes_before_recovery,
        "no probe after the queue"
    );
    assert_eq!(net.core.counters().probe_packets_sent, padding.len() as u64);
    let stats = transport(&net, "bob").bwe_stats().expect("an estimator");
    // After the overuse the link is probed by padding up to the estimate
    // (not by clusters, which a token bucket's burst fools).
    assert!(stats.overuses > 0 && stats.padding_bytes > 0, "{stats:?}");
    assert!(
        padding.iter().all(|h| h.payload_type == RTX_PT
            && h.padding_len == 255
            && h.header_len + 255 == h.packet_len),
        "padding-only on RTX"
    );
    let back_at = low_at
        + carried[low_at..]
            .iter()
            .position(|l| *l == Some(2))
            .unwrap_or_else(|| panic!("never back on the top layer: {stats:?} {carried:?}"));
    // Issue 11: back on the top layer within 10 s of the link recovering
    // (the queue stops growing at round 100; a round is 30 ms). The
    // allocation spends a rise only after it held for 2 s (UpgradeHold), so
    // each layer up waits that long.
    assert!(
        back_at < 100 + 10_000 / 30,
        "back on the top layer at round {back_at}: {carried:?}"
    );
    assert_eq!(carried.last(), Some(&Some(2)), "{carried:?}");
    eprintln!(
        "top by round {:?}, left it at {low_at}, back at {back_at}; {} probe packets, {} before round 100",
        carried.iter().position(|l| *l == Some(2)),
        padding.len(),
        probes_before_recovery
    );
}

/// What happens to bob's slot, round by round, when from round 60 on his
/// path turns bad and alice sends no key frame any more: `carried` is the
/// last layer bob's slot was sent each round, `steps` per millisecond from
/// round 60 the estimate and whether the top layer was sent. A `lossy` path
/// loses two of every three packets; otherwise its queue grows 2 ms per ms
/// (three times what the link carries goes into it), with nothing lost.
struct BadPath {
    carried: Vec<Option<u8>>,
    steps: Vec<(u64, bool)>,
}

fn switch_down_on_a_bad_path(lossy: bool) -> BadPath {
    let (mut net, a, b, slot, mut rx) = simulcast_pair();
    let mut alice = LayeredSender::default();
    let mut carried = Vec::new();
    let mut reported = 0usize;
    let mut steps: Vec<(u64, bool)> = Vec::new();
    for round in 0..200u32 {
        // Key frames every 10 rounds while the path is clean, none after.
        let keyframe = round < 60 && round % 10 == 0;
        // The layers the bridge sent bob's slot this round (before the path
        // loses any).
        let mut sent = Vec::new();
        alice.send_round(&mut net, a, round, keyframe);
        for _ in 0..6 {
            net.progress(1);
            let from = sent.len();
            sent.extend(
                net.peers[b].client.received_raw_rtp[rx.seen..]
                    .iter()
                    .filter_map(|p| {
                        let h = RtpHeader::parse(p).ok()?;
                        if h.ssrc != slot {
                            return None;
                        }
                        h.payload(p)?.last().copied()
                    }),
            );
            let mut queue = Duration::ZERO;
            if round >= 60 {
                steps.push((
                    estimate(&net, "bob").unwrap_or(0),
                    sent[from..].contains(&2),
                ));
                if lossy {
                    // Two of every three packets to bob are lost: taken out
                    // before the receiver sees them.
                    let raw = &mut net.peers[b].client.received_raw_rtp;
                    let mut i = rx.seen;
                    while i < raw.len() {
                        reported += 1;
                        if !reported.is_multiple_of(3) {
                            raw.remove(i);
                        } else {
                            i += 1;
                        }
                    }
                } else {
                    queue = Duration::from_millis(2 * steps.len() as u64);
                }
            }
            rx.turn(&mut net, b, queue);
        }
        carried.push(sent.last().copied());
    }
    assert!(carried[..60].contains(&Some(2)), "{carried:?}");
    BadPath { carried, steps }
}

impl BadPath {
    /// The round the slot left the top layer (and it did not come back with
    /// no key frame).
    fn left_top(&self) -> usize {
        let left = 60
            + self.carried[60..]
                .iter()
                .position(|l| *l != Some(2))
                .unwrap_or_else(|| panic!("the top layer ran on: {:?}", self.carried));
        assert!(
            self.carried[left..].iter().all(|l| *l != Some(2)),
            "the top layer came back with no key frame: {:?}",
            self.carried
        );
        left
    }

    /// The last millisecond the top layer was sent, from round 60.
    fn last_top(&self) -> usize {
        self.steps.iter().rposition(|s| s.1).unwrap_or(0)
    }
}

/// Issue 11's capped receiver: when the link drops most of what a receiver is
/// sent and the allocation moves its slot down, the taller layer stops at
/// once instead of running on until the smaller layer's key frame (behind a
/// full bottleneck its frames are lost anyway, and they keep the queue full
/// for that key frame: measured with Chromium behind a 1 Mbit/s `tbf`, 54-76%
/// lost for a second after the switch was decided, both streams frozen 2 s).
/// Here the publisher sends no key frame after the path turns lossy, so the
/// slot can only leave the top layer by dropping it.
#[test]
fn a_switch_down_on_a_lossy_link_stops_the_taller_layer_before_the_key_frame() {
    let path = switch_down_on_a_bad_path(true);
    let left = path.left_top();
    // It stops at the first feedback after the estimate no longer pays for
    // it, not at the allocation timer's next check (every 500 ms): measured
    // 125 ms after the estimate went below 300 kbit/s (the allocation keeps
    // the current layers down to 0.85 x their cost), 173 ms when only the
    // timer re-allocated.
    let fell = path
        .steps
        .iter()
        .position(|s| s.0 < 300_000)
        .expect("the estimate fell");
    let last_top = path.last_top();
    eprintln!(
        "left the top layer at round {left} (lossy from 60); estimate below 300k at step {fell}, \
         last top-layer packet at step {last_top}: {:?}",
        path.carried
    );
    assert!(
        last_top <= fell + 150,
        "top layer sent until {last_top} ms, the estimate fell below it at {fell} ms"
    );
}

/// The same before any loss: a queue that grows past 100 ms is congestion
/// too (`SendSideBwe::congested`), and the switch down it decides stops the
/// taller layer at once as well. Measured with Chromium behind a 1 Mbit/s
/// `tbf` (330 ms of queue): with the taller layers running on until the
/// smaller layers' key frames, those key frames (sent 120-160 ms after the
/// decision) met a full queue, and the capped page's longest freeze was a
/// median of 980 ms over 12 runs; stopping them at the decision, 732 ms over
/// 12 runs.
#[test]
fn a_switch_down_on_a_queueing_link_stops_the_taller_layer_before_any_loss() {
    let path = switch_down_on_a_bad_path(false);
    let left = path.left_top();
    let last_top = path.last_top();
    eprintln!(
        "left the top layer at round {left} (queueing from 60), last top-layer packet at step \
         {last_top}: {:?}",
        path.carried
    );
    // The queue passes 100 ms 50 ms in; the feedback that shows it comes
    // within a feedback interval or two of that.
    assert!(
        last_top <= 250,
        "top layer sent until {last_top} ms into the queue's growth"
    );
}

#[test]
fn a_retransmission_carries_the_next_transport_wide_number_and_reads_as_no_loss() {
    let (mut net, a, b, slot, mut rx) = simulcast_pair();
    let mut alice = LayeredSender::default();
    for round in 0..20u32 {
        alice.send_round(&mut net, a, round, round % 10 == 0);
        for _ in 0..6 {
            net.progress(1);
            rx.turn(&mut net, b, Duration::ZERO);
        }
    }
    let twcc_seq = |p: &[u8]| {
        let h = RtpHeader::parse(p).expect("parses");
        let v = h.extension_value(p, TWCC_ID)?;
        Some((h.ssrc, h.sequence_number, u16::from_be_bytes([v[0], v[1]])))
    };
    let raw = &net.peers[b].client.received_raw_rtp;
    let lost = raw
        .iter()
        .rev()
        .filter_map(|p| twcc_seq(p))
        .find(|(ssrc, _, _)| *ssrc == slot)
        .expect("a slot packet")
        .1;
    // Sent in order: the last packet bob got holds the newest number.
    let newest_twcc = raw
        .iter()
        .rev()
        .find_map(|p| twcc_seq(p))
        .expect("numbered")
        .2;
    let before = raw.len();
    // Bob NACKs the slot's latest packet: it comes back on his RTX SSRC,
    // numbered right after the last packet the bridge sent him.
    let mut buf = [0u8; 64];
    let n =
        rtcp::write_nack(&mut buf, 0xB0B, slot, &[NackEntry { pid: lost, blp: 0 }]).expect("fits");
    net.send_rtcp(b, &buf[..n]);
    net.progress(1);
    let rtx: Vec<_> = net.peers[b].client.received_raw_rtp[before..]
        .iter()
        .filter_map(|p| Some((RtpHeader::parse(p).ok()?.payload_type, twcc_seq(p))))
        .filter(|(pt, _)| *pt == RTX_PT)
        .collect();
    assert_eq!(rtx.len(), 1, "one retransmission: {rtx:?}");
    let (_, _, rtx_twcc) = rtx[0]
        .1
        .expect("the retransmission carries a transport-wide number");
    // Everything bob got since (the retransmission and whatever else left in
    // that millisecond) is numbered on from the newest number before, with no
    // gap and no number twice.
    let mut since: Vec<u16> = net.peers[b].client.received_raw_rtp[before..]
        .iter()
        .filter_map(|p| twcc_seq(p))
        .map(|(_, _, t)| t.wrapping_sub(newest_twcc))
        .collect();
    since.sort_unstable();
    assert_eq!(since, (1..=since.len() as u16).collect::<Vec<_>>());
    assert_eq!(rtx_twcc, newest_twcc.wrapping_add(1));
    assert_eq!(net.core.counters().retransmissions_sent, 1);
    // Bob's feedback reports it like any other packet: nothing reads as lost.
    for _ in 0..200 {
        net.progress(1);
        rx.turn(&mut net, b, Duration::ZERO);
    }
    let stats = transport(&net, "bob").bwe_stats().expect("an estimator");
    assert_eq!(stats.lost, 0, "{stats:?}");
    assert!(stats.matched > 0, "{stats:?}");
}

#[test]
fn on_a_congested_link_a_layer_the_slot_left_is_not_re_sent_but_its_current_one_is() {
    let (mut net, a, b, slot, mut rx) = simulcast_pair();
    let mut alice = LayeredSender::default();
    // The slot sequence number of the latest packet bob got from `layer`.
    let last_on = |net: &Net, layer: u8| {
        net.peers[b]
            .client
            .received_raw_rtp
            .iter()
            .rev()
            .find_map(|p| {
                let h = RtpHeader::parse(p).ok()?;
                (h.ssrc == slot && *h.payload(p)?.last()? == layer).then_some(h.sequence_number)
            })
    };
    let mut round = 0u32;
    let mut run = |net: &mut Net, rx: &mut Receiver, rounds: u32, queue: Duration, key: bool| {
        for _ in 0..rounds {
            alice.send_round(net, a, round, key && round.is_multiple_of(10));
            round += 1;
            for _ in 0..6 {
                net.progress(1);
                rx.turn(net, b, queue);
            }
        }
    };
    run(&mut net, &mut rx, 20, Duration::ZERO, true);
    let f_seq = last_on(&net, 2).expect("the slot carried f");
    // The path's queue jumps to 200 ms; the slot is constrained to q and
    // switches at q's next key frame.
    run(&mut net, &mut rx, 10, Duration::from_millis(200), false);
    net.core
        .set_max_height(&ConferenceId("room".into()), &EndpointId("bob".into()), 180)
        .expect("bob is in the room");
    run(&mut net, &mut rx, 5, Duration::from_millis(200), true);
    let q_seq = last_on(&net, 0).expect("the slot switched to q");
    let queue = transport(&net, "bob").downlink_queue_delay();
    assert!(queue >= Duration::from_millis(150), "queue {queue:?}");
    let nack = |net: &mut Net, seq: u16| {
        let before = net.peers[b].client.received_raw_rtp.len();
        let mut buf = [0u8; 64];
        let n = rtcp::write_nack(&mut buf, 0xB0B, slot, &[NackEntry { pid: seq, blp: 0 }])
            .expect("fits");
        net.send_rtcp(b, &buf[..n]);
        net.progress(1);
        net.peers[b].client.received_raw_rtp[before..]
            .iter()
            .filter(|p| {
                RtpHeader::parse(p).is_ok_and(|h| h.payload_type == RTX_PT && h.padding_len == 0)
            })
            .count()
    };
    // f's packet: the slot left f, and the link is congested: held.
    assert_eq!(nack(&mut net, f_seq), 0, "f re-sent");
    assert_eq!(net.core.counters().retransmissions_held, 1);
    // q's packet: what the receiver decodes now: re-sent.
    assert_eq!(nack(&mut net, q_seq), 1, "q not re-sent");
    assert_eq!(net.core.counters().retransmissions_sent, 1);
}
