//! Sender reports for every slot, on the source's NTP clock, and the RTT the
//! receivers' reports give back (virtual clock, real client peers).

mod support;

use std::time::Duration;

use ringbridge_bridge::proto::client::VP8_PT;
use ringbridge_bridge::proto::rtcp::{
    self, NackEntry, ReportBlock, RtcpIter, RtcpPacket, SenderInfo,
};
use ringbridge_bridge::proto::sdp::MediaKind;
use support::net::*;

const NTP_SEC: u64 = 1 << 32;

fn send_video(net: &mut Net, a: usize, seq: u16, ts: u32) {
    let ssrc = net.peers[a].client.video_ssrc;
    let p = rtp(VP8_PT, seq, ts, ssrc, &[], &vp8(seq == 1, seq as u8), 0);
    net.send_raw(a, &p);
}

/// The slot SRs peer `i` received: (NTP, RTP timestamp, packet count).
fn slot_srs(net: &Net, i: usize, slot: u32) -> Vec<(u64, u32, u32)> {
    let mut out = Vec::new();
    for c in &net.peers[i].client.received_rtcp {
        for p in RtcpIter::new(c).flatten() {
            if let RtcpPacket::SenderReport(sr) = p
                && sr.sender_ssrc() == slot
            {
                out.push((
                    sr.info.ntp_timestamp,
                    sr.info.rtp_timestamp,
                    sr.info.packet_count,
                ));
            }
        }
    }
    out
}

#[test]
fn slot_sender_reports_map_to_the_source_ntp_clock() {
    let mut net = Net::new();
    let a = net.join("alice", EVERYTHING);
    let b = net.join("bob", EVERYTHING);
    net.connect_all();
    let source_ssrc = net.peers[a].client.video_ssrc;
    // Alice's clock: NTP 5000 s stands for her RTP timestamp 1_000_000 now.
    let (ntp0, ts0) = (5000 * NTP_SEC, 1_000_000u32);
    let sr = SenderInfo {
        ssrc: source_ssrc,
        ntp_timestamp: ntp0,
        rtp_timestamp: ts0,
        packet_count: 1,
        octet_count: 8,
    };
    let mut buf = [0u8; 64];
    let n = rtcp::write_sender_report(&mut buf, &sr, &[]).expect("fits");
    net.send_rtcp(a, &buf[..n]);
    // 10 packets 33 ms apart on the same clock.
    for k in 0..10u16 {
        send_video(&mut net, a, 1 + k, ts0 + 2970 * u32::from(k));
        net.progress(6);
        net.now += Duration::from_millis(3);
    }
    let slot = net.slot_ssrc(b, MediaKind::Video);
    let got = net.received(b, slot);
    assert_eq!(got.len(), 10);
    let offset = got[0].1.wrapping_sub(ts0); // slot ts = source ts + offset
    net.progress(500);
    let srs = slot_srs(&net, b, slot);
    assert!(srs.len() >= 2, "about one per second: {srs:?}");
    for &(ntp, rtp, packets) in &srs {
        assert_eq!(packets, 10);
        // The source's clock moved forward to the SR's NTP time, then shifted
        // onto the slot.
        let elapsed_ticks = ((ntp - ntp0) as u128 * 90_000 / u128::from(NTP_SEC)) as u32;
        let expected = ts0.wrapping_add(elapsed_ticks).wrapping_add(offset);
        assert!(
            rtp.wrapping_sub(expected) <= 1 || expected.wrapping_sub(rtp) <= 1,
            "slot SR rtp {rtp} vs {expected}"
        );
    }
    assert!(net.core.counters().sender_reports_sent >= 2);
}

#[test]
fn receiver_rtt_from_its_reports_sets_how_long_a_resend_is_suppressed() {
    let mut net = Net::new();
    let a = net.join("alice", EVERYTHING);
    let b = net.join("bob", EVERYTHING);
    net.connect_all();
    for k in 0..5u16 {
        send_video(&mut net, a, 1 + k, 3000 * u32::from(k));
    }
    let slot = net.slot_ssrc(b, MediaKind::Video);
    net.progress(220); // the first slot SR
    let srs = slot_srs(&net, b, slot);
    let &(ntp, _, _) = srs.last().expect("a slot SR");
    // Bob answers 100 ms after the SR arrived... but reports DLSR 0: 400 ms RTT
    // measured (net time advanced by then).
    net.progress(80);
    let block = ReportBlock {
        ssrc: slot,
        last_sr: (ntp >> 16) as u32,
        delay_since_last_sr: 0,
        ..ReportBlock::default()
    };
    let bob = net.peers[b].client.video_ssrc;
    let mut buf = [0u8; 64];
    let n = rtcp::write_receiver_report(&mut buf, bob, &[block]).expect("fits");
    net.send_rtcp(b, &buf[..n]);
    let lost = net.received(b, slot)[2].0;
    let nack = |net: &mut Net| {
        let mut buf = [0u8; 16];
        let n = rtcp::write_nack(&mut buf, bob, slot, &[NackEntry { pid: lost, blp: 0 }])
            .expect("fits");
        net.send_rtcp(b, &buf[..n]);
    };
    nack(&mut net);
    net.progress(40); // 200 ms: beyond the default 100 ms, within the measured RTT
    nack(&mut net);
    let c = net.core.counters();
    assert_eq!(
        (c.retransmissions_sent, c.retransmissions_suppressed),
        (1, 1)
    );
}

#[test]
fn a_publishers_rtt_from_its_reports_paces_the_nack_retries_toward_it() {
    let mut net = Net::new();
    let a = net.join("alice", EVERYTHING);
    let b = net.join("bob", EVERYTHING);
    net.connect_all();
    // Bob's video reaches Alice's slot, so that slot sends sender reports.
    send_video(&mut net, b, 1, 0);
    let slot = net.slot_ssrc(a, MediaKind::Video);
    net.progress(220);
    let &(ntp, _, _) = slot_srs(&net, a, slot).last().expect("a slot SR");
    // Alice's report comes back 400 ms after the SR, with DLSR 0.
    net.progress(80);
    let block = ReportBlock {
        ssrc: slot,
        last_sr: (ntp >> 16) as u32,
        delay_since_last_sr: 0,
        ..ReportBlock::default()
    };
    let mut buf = [0u8; 64];
    let n = rtcp::write_receiver_report(&mut buf, net.peers[a].client.video_ssrc, &[block])
        .expect("fits");
    net.send_rtcp(a, &buf[..n]);

    // Alice's own video loses seq 3 for good: NACKed about once per 400 ms.
    let media = net.peers[a].client.video_ssrc;
    let before = net.peers[a].client.received_rtcp.len();
    for (k, seq) in [1u16, 2, 4].into_iter().enumerate() {
        send_video(&mut net, a, seq, 3000 * k as u32);
    }
    for k in 0..50u16 {
        net.progress(4);
        send_video(&mut net, a, 5 + k, 3000 * u32::from(5 + k));
    }
    let nacks = net.peers[a].client.received_rtcp[before..]
        .iter()
        .flat_map(|c| RtcpIter::new(c).flatten().collect::<Vec<_>>())
        .filter(|p| matches!(p, RtcpPacket::Nack(n) if n.media_ssrc == media))
        .count();
    // 1 s: the first NACK and two or three retries (10 with the default 100 ms).
    assert!(
        (2..=4).contains(&nacks),
        "{nacks} NACKs in 1 s at a 400 ms RTT"
    );
}

/// Sender reports every peer has received so far (all slots).
fn srs_received(net: &Net, i: usize) -> usize {
    net.peers[i]
        .client
        .received_rtcp
        .iter()
        .flat_map(|c| RtcpIter::new(c).flatten())
        .filter(|p| matches!(p, RtcpPacket::SenderReport(_)))
        .count()
}

#[test]
fn due_timers_stop_at_the_batch_size_and_the_rest_run_on_the_next_call() {
    let mut net = Net::new();
    for name in ["alice", "bob", "carol", "dave"] {
        net.join(name, EVERYTHING);
    }
    net.connect_all();
    for seq in 1..=5u16 {
        for i in 0..4 {
            send_video(&mut net, i, seq, u32::from(seq) * 3000);
        }
        net.progress(1);
    }
    net.progress(20);
    let before: Vec<usize> = (0..4).map(|i| srs_received(&net, i)).collect();
    // No turn for 2 s: every report, feedback and keep-alive timer is due at once.
    net.now += Duration::from_secs(2);
    let now = net.now;
    net.core.set_timer_batch(2);

    net.core.handle_timeout(now, &mut net.tx);
    let first = net.tx.len();
    assert!(
        first >= 2,
        "the first call ran timers until the batch: {first}"
    );
    assert!(
        net.core.poll_timeout().is_some_and(|t| t <= now),
        "timers beyond the batch stay due"
    );
    net.deliver();

    let (mut calls, mut total) = (1, first);
    while net.core.poll_timeout().is_some_and(|t| t <= now) {
        assert!(calls < 10_000, "the due timers drain");
        net.core.handle_timeout(now, &mut net.tx);
        assert!(!net.tx.is_empty(), "every call makes progress");
        total += net.tx.len();
        calls += 1;
        net.deliver();
    }
    assert!(calls >= 2, "{calls} calls for {total} datagrams");
    for (i, b) in before.iter().enumerate() {
        assert!(
            srs_received(&net, i) > *b,
            "peer {i} got its slots' sender reports through the later calls"
        );
    }
}
