//! The bandwidth estimate toward each receiver, through the shard on a virtual
//! clock with real SRTP clients: the answer negotiates transport-cc on the
//! receiver's slots, the bridge numbers what it forwards, the receiver's
//! transport-cc feedback (written by the bridge's own feedback writer, as a
//! browser would) moves `Endpoint::downlink_estimate`, and the receiver is told
//! the estimate as `MediaEvent::ConnectionStats`.

mod support;

use std::time::Duration;

use ringbridge_bridge::proto::client::VP8_PT;
use ringbridge_bridge::proto::quality::twcc::{TwccConfig, TwccReceiver};
use ringbridge_bridge::proto::rtp::RtpHeader;
use ringbridge_control::media::{ConferenceId, EndpointId, MediaEvent};
use support::net::*;

const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
const TWCC_ID: u8 = 5;

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
        let mut payload = vp8(k == 0, k as u8);
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
