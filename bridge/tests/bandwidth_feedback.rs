//! Feedback that lets publishers ramp up, through the shard on a virtual clock:
//! transport-cc feedback where the offer has it (checked with webrtc-rs's
//! parser), REMB from a receive-side estimate for a publisher that offers only
//! abs-send-time and `goog-remb` (as aiortc does).

mod support;

use std::time::Duration;

use ::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, SymbolTypeTcc, TransportLayerCc,
};
use ringbridge_bridge::proto::client::VP8_PT;
use ringbridge_bridge::proto::rtcp::{RtcpIter, RtcpPacket};
use support::net::*;

const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
const ABS_SEND_TIME_URI: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
const TWCC_ID: u8 = 5;
const ABS_ID: u8 = 3;

/// Adds `a=extmap:<id> <uri>` on every m-line and `a=rtcp-fb:<vp8> <fb>` on video.
fn offering(offer: String, id: u8, uri: &str, fb: &str) -> String {
    edit_offer(&offer, |kind, line| {
        let mut out = line.to_owned();
        if line.starts_with("a=rtcp-mux") {
            out.push_str(&format!("a=extmap:{id} {uri}\r\n"));
            if kind == "video" {
                out.push_str(&format!("a=rtcp-fb:{VP8_PT} {fb}\r\n"));
            }
        }
        out
    })
}

/// The publisher's video m-section of an answer (the first video m-line).
fn video_section(answer: &str) -> &str {
    let start = answer.find("m=video").expect("video m-line");
    let rest = &answer[start..];
    let end = rest[1..].find("m=").map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

/// webrtc-rs's statuses of one feedback: (transport seq, received).
fn statuses(fb: &TransportLayerCc) -> Vec<(u16, bool)> {
    let mut symbols = Vec::new();
    for c in &fb.packet_chunks {
        match c {
            PacketStatusChunk::RunLengthChunk(r) => symbols.extend(std::iter::repeat_n(
                r.packet_status_symbol,
                usize::from(r.run_length),
            )),
            PacketStatusChunk::StatusVectorChunk(v) => {
                symbols.extend(v.symbol_list.iter().copied())
            }
        }
    }
    symbols.truncate(usize::from(fb.packet_status_count));
    symbols
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            (
                fb.base_sequence_number.wrapping_add(i as u16),
                s != SymbolTypeTcc::PacketNotReceived,
            )
        })
        .collect()
}

#[test]
fn twcc_feedback_every_50_to_100ms_parses_with_webrtc_rs() {
    let mut net = Net::new();
    let a = net.join_with("alice", EVERYTHING, Default::default(), |o| {
        offering(o, TWCC_ID, TWCC_URI, "transport-cc")
    });
    let _b = net.join("bob", EVERYTHING);
    net.connect_all();
    let pub_video = video_section(&net.peers[a].answer).to_owned();
    assert!(
        pub_video.contains(&format!("a=extmap:{TWCC_ID} {TWCC_URI}\r\n")),
        "{pub_video}"
    );
    assert!(pub_video.contains(&format!("a=rtcp-fb:{VP8_PT} transport-cc\r\n")));
    assert!(!pub_video.contains("goog-remb"));

    let ssrc = net.peers[a].client.video_ssrc;
    let already = net.peers[a].client.received_rtcp.len();
    // 1 s of video, a packet every 10 ms; every 7th transport seq lost on the way.
    let mut arrivals_at = Vec::new();
    let mut sent = Vec::new();
    for k in 0..100u16 {
        let tseq = 65_500u16.wrapping_add(k); // wraps
        if k % 7 != 3 {
            let p = rtp(
                VP8_PT,
                1 + k,
                90 * u32::from(k) * 10,
                ssrc,
                &[(TWCC_ID, &tseq.to_be_bytes())],
                &vp8(k == 0, k as u8),
                0,
            );
            net.send_raw(a, &p);
            sent.push(tseq);
        }
        let before = net.peers[a].client.received_rtcp.len();
        net.progress(2);
        let twcc = net.peers[a].client.received_rtcp[before..].iter().any(|c| {
            RtcpIter::new(c).flatten().any(
                |p| matches!(p, RtcpPacket::Unknown(u) if u.packet_type == 205 && u.count == 15),
            )
        });
        if twcc {
            arrivals_at.push(net.now);
        }
    }
    net.progress(40);
    let mut reported = std::collections::BTreeMap::new();
    let mut feedbacks = 0;
    for c in &net.peers[a].client.received_rtcp[already..] {
        let mut buf: &[u8] = c;
        for p in ::rtcp::packet::unmarshal(&mut buf).expect("webrtc-rs parses the compound") {
            if let Some(fb) = p.as_any().downcast_ref::<TransportLayerCc>() {
                feedbacks += 1;
                let client = &net.peers[a].client;
                assert!([client.audio_ssrc, client.video_ssrc].contains(&fb.media_ssrc));
                for (seq, got) in statuses(fb) {
                    *reported.entry(seq).or_insert(false) |= got;
                }
            }
        }
    }
    assert_eq!(net.core.counters().twcc_feedback_sent, feedbacks);
    let received: Vec<u16> = reported
        .iter()
        .filter(|(_, r)| **r)
        .map(|(&s, _)| s)
        .collect();
    let mut expected = sent.clone();
    expected.sort_unstable();
    assert_eq!(
        received, expected,
        "every packet that arrived is reported received"
    );
    assert!(
        reported.values().filter(|r| !**r).count() >= 10,
        "the lost ones as not received"
    );
    // Feedback keeps coming every 50 to 100 ms while packets flow.
    assert!(
        (9..=21).contains(&feedbacks),
        "{feedbacks} feedbacks in 1 s"
    );
    for w in arrivals_at.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(45) && gap <= Duration::from_millis(105),
            "feedback {gap:?} apart"
        );
    }
}

/// A shard that was busy reads a burst of queued datagrams at one `now`; the
/// feedback must carry the arrival times the kernel stamped (10 ms apart
/// here), not that one `now` for all (which a sender's delay-based estimator
/// reads as a queue draining, and its probe logic as an impossible receive
/// rate).
#[test]
fn twcc_feedback_reports_kernel_arrival_spacing_not_the_batch_time() {
    let mut net = Net::new();
    let a = net.join_with("alice", EVERYTHING, Default::default(), |o| {
        offering(o, TWCC_ID, TWCC_URI, "transport-cc")
    });
    let _b = net.join("bob", EVERYTHING);
    net.connect_all();
    let ssrc = net.peers[a].client.video_ssrc;
    let already = net.peers[a].client.received_rtcp.len();
    let batch = net.now;
    const SPACING: Duration = Duration::from_millis(10);
    for k in 0..5u16 {
        let tseq = 100 + k;
        let p = rtp(
            VP8_PT,
            1 + k,
            900 * u32::from(k),
            ssrc,
            &[(TWCC_ID, &tseq.to_be_bytes())],
            &vp8(k == 0, k as u8),
            0,
        );
        let arrival = batch - SPACING * u32::from(4 - k);
        net.send_raw_arrived(a, &p, arrival);
    }
    net.progress(40);
    let mut deltas = Vec::new();
    for c in &net.peers[a].client.received_rtcp[already..] {
        let mut buf: &[u8] = c;
        for p in ::rtcp::packet::unmarshal(&mut buf).expect("webrtc-rs parses the compound") {
            if let Some(fb) = p.as_any().downcast_ref::<TransportLayerCc>() {
                deltas.extend(fb.recv_deltas.iter().map(|d| d.delta));
            }
        }
    }
    assert_eq!(deltas.len(), 5, "one receive delta per packet: {deltas:?}");
    for (i, d) in deltas.iter().enumerate().skip(1) {
        assert_eq!(
            *d,
            SPACING.as_micros() as i64,
            "packet {i} reported {d} us after the one before (all {deltas:?})"
        );
    }
}

#[test]
fn remb_only_publisher_gets_remb() {
    let mut net = Net::new();
    let a = net.join_with("alice", EVERYTHING, Default::default(), |o| {
        offering(o, ABS_ID, ABS_SEND_TIME_URI, "goog-remb")
    });
    let _b = net.join("bob", EVERYTHING);
    net.connect_all();
    let pub_video = video_section(&net.peers[a].answer).to_owned();
    assert!(
        pub_video.contains(&format!("a=extmap:{ABS_ID} {ABS_SEND_TIME_URI}\r\n")),
        "{pub_video}"
    );
    assert!(pub_video.contains(&format!("a=rtcp-fb:{VP8_PT} goog-remb\r\n")));
    assert!(!pub_video.contains("transport-cc"));

    let ssrc = net.peers[a].client.video_ssrc;
    // 2 s at 100 packets/s of 1000 bytes, abs-send-time as sent (6.18 fixed point, 24 bits).
    for k in 0..200u32 {
        let abs = (((u64::from(k) * 10) << 18) / 1000) as u32 & 0x00FF_FFFF;
        let p = rtp(
            VP8_PT,
            1 + k as u16,
            900 * k,
            ssrc,
            &[(ABS_ID, &abs.to_be_bytes()[1..])],
            &[0x10, 0x01, 0, 0].repeat(250),
            0,
        );
        net.send_raw(a, &p);
        net.progress(2);
    }
    let mut rembs = Vec::new();
    for c in &net.peers[a].client.received_rtcp {
        for p in RtcpIter::new(c).flatten() {
            if let RtcpPacket::Remb(r) = p {
                assert!(r.ssrcs().any(|s| s == ssrc), "names the video source");
                rembs.push(r.bitrate_bps);
            }
        }
    }
    assert!(!rembs.is_empty(), "REMB sent");
    assert!(rembs.len() <= 6, "about once a second: {}", rembs.len());
    assert!(rembs.iter().all(|&b| b > 0));
    assert_eq!(net.core.counters().remb_sent, rembs.len() as u64);
    assert_eq!(net.core.counters().twcc_feedback_sent, 0);
}
