//! The media quality mechanisms allocate nothing per packet: after a warm-up in which
//! the growing rings take their size in a few steps, ten seconds of a lossy video
//! source go through the packet cache, NACK generation, NACK
//! answering with RTX (wrap and unwrap), keyframe throttling, TWCC feedback (written,
//! parsed and fed to the send-side estimator), the REMB estimator and slot sender
//! reports with zero heap allocations, counted by a global allocator.

use std::time::{Duration, Instant};

use ringbridge_bridge::proto::quality::bwe::{BweConfig, SendSideBwe};
use ringbridge_bridge::proto::quality::keyframe::{
    KeyframeConfig, KeyframeRequester, ReceiverKeyframeState,
};
use ringbridge_bridge::proto::quality::nack::{NackConfig, NackGenerator};
use ringbridge_bridge::proto::quality::nack_responder::{
    NackResponder, Retransmit, SlotOutput, SlotRewrite, SlotRtx,
};
use ringbridge_bridge::proto::quality::remb::{RembConfig, RembEstimator};
use ringbridge_bridge::proto::quality::rtx::{Unwrapped, unwrap_in_place, wrap_in_place};
use ringbridge_bridge::proto::quality::rtx_cache::{RtxCache, RtxCacheConfig};
use ringbridge_bridge::proto::quality::sender_report::{NtpClock, SlotSenderReport, SourceClock};
use ringbridge_bridge::proto::quality::twcc::{TwccConfig, TwccFeedback, TwccReceiver};
use ringbridge_bridge::proto::rtcp::{self, RtcpPacket, SenderInfo};
use ringbridge_bridge::proto::rtp::SeqUnwrapper;

#[path = "support/alloc_count.rs"]
mod alloc_count;

use alloc_count::{Counting, counted};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Writes a VP8-ish RTP packet with a one-byte extension block (transport-wide seq on
/// id 3, abs-send-time on id 2) into `buf`; returns its length.
fn write_packet(buf: &mut [u8], seq: u16, ts: u32, twcc: u16, abs: u32, len: usize) -> usize {
    buf[..12].copy_from_slice(&[0x90, 96, 0, 0, 0, 0, 0, 0, 0x50, 0, 0, 1]);
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    let a = abs.to_be_bytes();
    let t = twcc.to_be_bytes();
    buf[12..24].copy_from_slice(&[
        0xBE, 0xDE, 0, 2, 0x31, t[0], t[1], 0x22, a[1], a[2], a[3], 0,
    ]);
    for (i, b) in buf[24..len].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    len
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn quality_mechanisms_allocate_nothing_per_packet() {
    let t0 = Instant::now();
    // Everything the packet path needs, built up front.
    let mut cache = RtxCache::new(RtxCacheConfig::default());
    let mut nack_gen = NackGenerator::new(NackConfig::default());
    let slot = SlotOutput {
        pt: 100,
        ssrc: 0xA1,
        rtx: Some(SlotRtx {
            pt: 101,
            ssrc: 0xA2,
        }),
    };
    let mut responder = NackResponder::new(slot, 1000);
    let mut keyframes = KeyframeRequester::new(KeyframeConfig::default());
    let mut receiver_kf = ReceiverKeyframeState::new();
    let mut twcc = TwccReceiver::new(TwccConfig::default());
    let mut remb = RembEstimator::new(RembConfig::default());
    let mut bwe = SendSideBwe::new(BweConfig::default());
    let mut sr = SlotSenderReport::new(0xA1, 90_000);
    let bridge_clock = NtpClock::new(t0, 1 << 40);
    let source_clock = SourceClock::from_sender_report(
        &SenderInfo {
            ssrc: 0x50,
            ntp_timestamp: 7 << 32,
            rtp_timestamp: 0,
            packet_count: 0,
            octet_count: 0,
        },
        t0,
        90_000,
    );
    let rewrite = SlotRewrite {
        seq_offset: 500,
        ts_offset: 9,
        first_slot_seq: 500u16.wrapping_add(65_000),
    };
    let mut unwrapper = SeqUnwrapper::new();
    let mut rng = Rng(42);
    let mut packet = [0u8; 1500];
    let mut out = [0u8; 1500];
    let mut rtcp_buf = [0u8; 1500];
    let mut lost = [0u16; 64];

    let mut step = |k: u32, counters: &mut [u64; 6]| {
        let now = t0 + Duration::from_micros(u64::from(k) * 3_333);
        let seq = (k as u16).wrapping_add(65_000); // crosses the 16-bit wrap
        let len = write_packet(
            &mut packet,
            seq,
            k / 3 * 3000,
            k as u16,
            ((u64::from(k) * 3_333 * 262_144 / 1_000_000) % (1 << 24)) as u32,
            200 + (k as usize * 37) % 1000,
        );
        // The feedback below goes to the estimator, as a receiver's would.
        bwe.on_packet_sent(now, k as u16, len);
        // 5% of the packets are lost on the way to the bridge.
        if rng.next() % 100 >= 5 {
            twcc.handle_packet(now, k as u16);
            remb.handle_packet(
                now,
                ((u64::from(k) * 3_333 * 262_144 / 1_000_000) % (1 << 24)) as u32,
                len,
            );
            nack_gen.handle_packet(now, seq);
            cache
                .insert(now, unwrapper.extend(seq), &packet[..len])
                .expect("cached");
            sr.handle_sent(now, (k / 3 * 3000).wrapping_add(9), len - 24);
        }
        let n = nack_gen.poll_nack(now, &mut lost);
        counters[0] += n as u64;
        if nack_gen.poll_keyframe_request(now) {
            keyframes.handle_bridge_request(now);
        }
        let _ = nack_gen.poll_timeout();
        if k.is_multiple_of(7) {
            // A receiver NACKs a slot packet it missed; the RTX answer unwraps.
            let slot_seq = seq.wrapping_add(rewrite.seq_offset).wrapping_sub(3);
            responder.handle_nack();
            if let Ok(Retransmit::Sent(m)) = responder.retransmit(
                now,
                slot_seq,
                &rewrite,
                &cache,
                Duration::from_millis(50),
                &mut out,
            ) {
                counters[1] += 1;
                if let Ok(Unwrapped::Original { len, .. }) =
                    unwrap_in_place(&mut out[..m], 100, 0xA1)
                {
                    let _ = wrap_in_place(&mut out, len, 101, 0xA2, 7);
                }
            }
        }
        if k.is_multiple_of(50) {
            let _ = keyframes.handle_receiver_request(now, &mut receiver_kf);
        }
        while let Ok(Some(m)) = twcc.poll_feedback(now, &mut rtcp_buf[..300], 1, 0x50) {
            counters[2] += 1;
            for p in rtcp::packets(&rtcp_buf[..m]).flatten() {
                if let RtcpPacket::Unknown(u) = p
                    && let Ok(fb) = TwccFeedback::parse(u.body)
                {
                    counters[3] += fb.packets().filter(|p| p.arrival.is_some()).count() as u64;
                    bwe.handle_feedback(now, &fb);
                }
            }
        }
        if let Ok(m) = remb.write_remb(now, &mut rtcp_buf, 1, &[0x50])
            && m > 0
        {
            counters[4] += 1;
        }
        if k.is_multiple_of(300)
            && let Ok(m) =
                sr.write_sender_report(now, Some(&source_clock), 9, &bridge_clock, &mut rtcp_buf)
            && m > 0
        {
            counters[5] += 1;
            let _ = sr.sender_info(now, None, 0, &bridge_clock);
        }
    };

    // Warm-up: the first two seconds. The packet cache takes its ring at the first
    // packet, the NACK window and the send history grow in a few doubling steps to
    // what the loss and the feedback delay need (3 allocations in the second second
    // here), never one per packet.
    let mut counters = [0u64; 6];
    let ((), warm_up) = counted(|| {
        for k in 0..600 {
            step(k, &mut counters);
        }
    });
    assert!(
        warm_up <= 16,
        "{warm_up} allocations in 600 packets: growth steps only"
    );
    let mut measured = [0u64; 6];
    let ((), allocations) = counted(|| {
        for k in 600..3600 {
            step(k, &mut measured);
        }
    });
    assert!(measured[0] > 50, "NACKs generated: {measured:?}");
    assert!(measured[1] > 50, "retransmissions: {measured:?}");
    assert!(measured[2] > 150, "TWCC feedback packets: {measured:?}");
    assert!(measured[3] > 2500, "TWCC arrivals reported: {measured:?}");
    assert!(measured[4] >= 9, "REMBs: {measured:?}");
    assert!(measured[5] >= 9, "SRs: {measured:?}");
    assert_eq!(allocations, 0, "heap allocations on the packet path");
    assert!(bwe.stats().matched > 2500, "{:?}", bwe.stats());
    assert!(bwe.estimate().is_some());

    // The allocator does count.
    let (_, control) = counted(|| format!("{t0:?}").len());
    assert!(control > 0, "the counting allocator counts");
}

#[test]
fn dominant_speaker_identification_allocates_nothing_per_level_nor_per_decision() {
    use ringbridge_bridge::proto::quality::dominant_speaker::{DominantSpeaker, SpeakerActivity};
    const SPEAKERS: usize = 12;
    let mut speakers: Vec<SpeakerActivity> =
        (0..SPEAKERS).map(|_| SpeakerActivity::new()).collect();
    let mut ds = DominantSpeaker::<usize>::new();
    let start = Instant::now();
    let mut now = start;
    // 40 s: each speaker in turn talks for 3 s (the others quiet, one of them
    // silent), so the dominant speaker changes and the list of previous
    // speakers fills up and rolls over.
    let ((), allocations) = counted(|| {
        for step in 0..2000u64 {
            let t = step * 20;
            let turn = (t / 3000) as usize % SPEAKERS;
            for (i, s) in speakers.iter_mut().enumerate() {
                let level = match i {
                    _ if i == turn && t % 400 >= 20 => 20 + (step % 4) as u8 * 2,
                    _ if i == (turn + 1) % SPEAKERS => 127,
                    _ => 70,
                };
                s.handle_level(now, level);
                ds.handle_level(now);
            }
            if ds.poll_timeout().is_some_and(|at| now >= at) {
                ds.handle_timeout(now, speakers.iter().enumerate());
            }
            now += Duration::from_millis(20);
        }
    });
    assert!(ds.changes() >= 12, "{} changes", ds.changes());
    assert_eq!(ds.previous().len(), 10, "the list rolled over");
    assert_eq!(allocations, 0, "allocations per level or decision");
}
