//! Both hops repaired, on a virtual clock: a publisher sends video to the bridge over a
//! lossy link (random loss and bursts, both directions); the bridge unwraps the
//! publisher's RTX, NACKs its gaps, caches every packet and forwards it onto a slot; a
//! receiver behind a second lossy link NACKs the slot's gaps and the bridge answers
//! from its cache on the slot's RTX stream. Every slot packet reaches the receiver,
//! almost all within a few round trips.
//!
//! The publisher's and the receiver's NACK logic is played by the same
//! [`NackGenerator`] the bridge uses (standing in for the browser's).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use ringbridge_bridge::proto::quality::nack::{NackConfig, NackGenerator};
use ringbridge_bridge::proto::quality::nack_responder::{
    NackResponder, Retransmit, SlotOutput, SlotRewrite, SlotRtx,
};
use ringbridge_bridge::proto::quality::rtx::{
    RetransmissionFields, Unwrapped, unwrap_in_place, wrap_in_place, write_retransmission,
};
use ringbridge_bridge::proto::quality::rtx_cache::{RtxCache, RtxCacheConfig};
use ringbridge_bridge::proto::rtcp::{self, RtcpPacket};
use ringbridge_bridge::proto::rtp::{RtpHeader, SeqUnwrapper};

const SOURCE_SSRC: u32 = 0x5000;
const SOURCE_RTX_SSRC: u32 = 0x5001;
const SOURCE_PT: u8 = 96;
const SOURCE_RTX_PT: u8 = 97;
const SLOT: SlotOutput = SlotOutput {
    pt: 100,
    ssrc: 0xA000,
    rtx: Some(SlotRtx {
        pt: 101,
        ssrc: 0xA001,
    }),
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// One direction of a path: fixed delay, random loss, and now and then a burst.
struct Link {
    delay: Duration,
    loss_percent: u64,
    burst_left: u32,
    in_flight: BTreeMap<(Instant, u64), Vec<u8>>,
    n: u64,
    dropped: u64,
}

impl Link {
    fn new(delay_ms: u64, loss_percent: u64) -> Self {
        Link {
            delay: Duration::from_millis(delay_ms),
            loss_percent,
            burst_left: 0,
            in_flight: BTreeMap::new(),
            n: 0,
            dropped: 0,
        }
    }

    fn send(&mut self, now: Instant, bytes: &[u8], rng: &mut Rng) {
        if self.burst_left == 0 && rng.next() % 1000 < 2 {
            self.burst_left = 3 + (rng.next() % 8) as u32; // 3 to 10 in a row
        }
        if self.burst_left > 0 {
            self.burst_left -= 1;
            self.dropped += 1;
            return;
        }
        if rng.next() % 100 < self.loss_percent {
            self.dropped += 1;
            return;
        }
        self.n += 1;
        self.in_flight
            .insert((now + self.delay, self.n), bytes.to_vec());
    }

    fn deliver(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let later = self
            .in_flight
            .split_off(&(now + Duration::from_nanos(1), 0));
        std::mem::replace(&mut self.in_flight, later)
            .into_values()
            .collect()
    }
}

fn media_packet(seq: u16, ts: u32) -> Vec<u8> {
    let mut p = vec![0x80, SOURCE_PT];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&SOURCE_SSRC.to_be_bytes());
    p.extend(std::iter::repeat_n(seq as u8, 300 + usize::from(seq % 700)));
    p
}

#[test]
fn random_and_burst_loss_on_both_hops_is_repaired_end_to_end() {
    for seed in 1..=6u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let t0 = Instant::now();
        let rtt = Duration::from_millis(2 * 20);
        let (mut up, mut up_back) = (Link::new(20, 5), Link::new(20, 5));
        let (mut down, mut down_back) = (Link::new(15, 5), Link::new(15, 5));

        // Publisher: its own cache and RTX stream.
        let mut pub_cache = RtxCache::new(RtxCacheConfig::default());
        let mut pub_seq_ext = SeqUnwrapper::new();
        let mut pub_rtx_seq = 0u16;

        // Bridge: per source NACK generator and cache; per slot responder.
        let mut bridge_nack = NackGenerator::new(NackConfig::default());
        bridge_nack.set_rtt(rtt);
        let mut bridge_cache = RtxCache::new(RtxCacheConfig::default());
        let mut bridge_ext = SeqUnwrapper::new();
        let mut forwarded: HashSet<u64> = HashSet::new();
        let first_source_seq = 60_000u16;
        let rewrite = SlotRewrite {
            seq_offset: 1000u16.wrapping_sub(first_source_seq),
            ts_offset: 12_345,
            first_slot_seq: 1000,
        };
        let mut responder = NackResponder::new(SLOT, 30_000);
        let mut rtx_unwrapped = 0u64;

        // Receiver: NACKs the slot's gaps toward the bridge.
        let mut recv_nack = NackGenerator::new(NackConfig::default());
        recv_nack.set_rtt(Duration::from_millis(30));
        let mut received: HashSet<u16> = HashSet::new();
        let mut repaired_after: Vec<Duration> = Vec::new();
        let mut sent_at: BTreeMap<u16, Instant> = BTreeMap::new();

        let packets = 6000u32; // 20 s at 300 packets a second
        let mut buf = [0u8; 1500];
        let mut k = 0u32;
        let mut now = t0;
        let end = t0 + Duration::from_secs(23);
        while now < end {
            // The publisher sends on schedule; the first and last few always arrive
            // (nobody can NACK what comes before the first or after the last packet).
            while k < packets && t0 + Duration::from_micros(3_333 * u64::from(k)) <= now {
                let seq = first_source_seq.wrapping_add(k as u16);
                let p = media_packet(seq, 3000 * (k / 3));
                pub_cache.insert(now, pub_seq_ext.extend(seq), &p).unwrap();
                sent_at.insert(1000u16.wrapping_add(k as u16), now);
                if k < 5 || k >= packets - 10 {
                    up.in_flight
                        .insert((now + up.delay, u64::MAX - u64::from(k)), p);
                } else {
                    up.send(now, &p, &mut rng);
                }
                k += 1;
            }

            // Bridge receives from the publisher.
            for mut p in up.deliver(now) {
                let h = RtpHeader::parse(&p).unwrap();
                let len = if h.ssrc == SOURCE_RTX_SSRC {
                    match unwrap_in_place(&mut p, SOURCE_PT, SOURCE_SSRC).unwrap() {
                        Unwrapped::Original { len, .. } => {
                            rtx_unwrapped += 1;
                            len
                        }
                        Unwrapped::Padding => continue,
                    }
                } else {
                    p.len()
                };
                let p = &p[..len];
                let h = RtpHeader::parse(p).unwrap();
                assert_eq!((h.ssrc, h.payload_type), (SOURCE_SSRC, SOURCE_PT));
                bridge_nack.handle_packet(now, h.sequence_number);
                let ext = bridge_ext.extend(h.sequence_number);
                let _ = bridge_cache.insert(now, ext, p);
                if forwarded.insert(ext) {
                    // Forward onto the slot (late repaired packets too).
                    let slot_seq = h.sequence_number.wrapping_add(rewrite.seq_offset);
                    let fields = RetransmissionFields {
                        pt: SLOT.pt,
                        seq: slot_seq,
                        ts: h.timestamp.wrapping_add(rewrite.ts_offset),
                        ssrc: SLOT.ssrc,
                        osn: None,
                    };
                    let n = write_retransmission(&mut buf, p, &fields).unwrap();
                    down.send(now, &buf[..n], &mut rng);
                }
            }
            // Bridge NACKs its gaps toward the publisher.
            let n = bridge_nack
                .write_nack(now, &mut buf, 0xB000, SOURCE_SSRC)
                .unwrap();
            if n > 0 {
                up_back.send(now, &buf[..n], &mut rng);
            }
            assert!(
                !bridge_nack.poll_keyframe_request(now),
                "seed {seed}: the bridge gave up a gap"
            );

            // Publisher answers NACKs with RTX.
            for nack in up_back.deliver(now) {
                for p in rtcp::packets(&nack).flatten() {
                    let RtcpPacket::Nack(nack) = p else { continue };
                    assert_eq!(nack.media_ssrc, SOURCE_SSRC);
                    for seq in nack.lost_sequence_numbers() {
                        let ext = pub_cache.extend(seq).unwrap();
                        let original = pub_cache.get(ext).unwrap();
                        let mut out = original.to_vec();
                        out.extend_from_slice(&[0, 0]);
                        let len = original.len();
                        let n = wrap_in_place(
                            &mut out,
                            len,
                            SOURCE_RTX_PT,
                            SOURCE_RTX_SSRC,
                            pub_rtx_seq,
                        )
                        .unwrap();
                        pub_rtx_seq = pub_rtx_seq.wrapping_add(1);
                        up.send(now, &out[..n], &mut rng);
                    }
                }
            }

            // Receiver gets slot packets (plain, or RTX from the bridge's cache).
            for mut p in down.deliver(now) {
                let h = RtpHeader::parse(&p).unwrap();
                let (len, seq) = if h.ssrc == SLOT.rtx.unwrap().ssrc {
                    assert_eq!(h.payload_type, SLOT.rtx.unwrap().pt);
                    match unwrap_in_place(&mut p, SLOT.pt, SLOT.ssrc).unwrap() {
                        Unwrapped::Original { len, seq } => (len, seq),
                        Unwrapped::Padding => continue,
                    }
                } else {
                    (p.len(), h.sequence_number)
                };
                let h = RtpHeader::parse(&p[..len]).unwrap();
                assert_eq!((h.ssrc, h.payload_type), (SLOT.ssrc, SLOT.pt));
                // The payload is the source packet's, whichever way it came.
                let source_seq = seq.wrapping_sub(rewrite.seq_offset);
                assert_eq!(
                    &p[12..len],
                    &media_packet(source_seq, 0)[12..],
                    "seed {seed}: slot packet {seq} carries source packet {source_seq}"
                );
                assert_eq!(
                    h.timestamp,
                    (3000 * (u32::from(source_seq.wrapping_sub(first_source_seq)) / 3))
                        .wrapping_add(rewrite.ts_offset)
                );
                recv_nack.handle_packet(now, seq);
                if received.insert(seq) {
                    repaired_after.push(now - sent_at[&seq]);
                }
            }
            let n = recv_nack
                .write_nack(now, &mut buf, 0xC000, SLOT.ssrc)
                .unwrap();
            if n > 0 {
                down_back.send(now, &buf[..n], &mut rng);
            }
            assert!(
                !recv_nack.poll_keyframe_request(now),
                "seed {seed}: the receiver gave up a gap"
            );

            // Bridge answers the receiver's NACKs from its cache.
            for nack in down_back.deliver(now) {
                for p in rtcp::packets(&nack).flatten() {
                    let RtcpPacket::Nack(nack) = p else { continue };
                    assert_eq!(nack.media_ssrc, SLOT.ssrc);
                    responder.handle_nack();
                    for seq in nack.lost_sequence_numbers() {
                        if let Retransmit::Sent(n) = responder
                            .retransmit(
                                now,
                                seq,
                                &rewrite,
                                &bridge_cache,
                                Duration::from_millis(30),
                                &mut buf,
                            )
                            .unwrap()
                        {
                            down.send(now, &buf[..n], &mut rng);
                        }
                    }
                }
            }
            now += Duration::from_millis(1);
        }

        assert_eq!(
            received.len(),
            packets as usize,
            "seed {seed}: every slot packet arrived"
        );
        assert!(
            up.dropped > 300 && down.dropped > 300,
            "seed {seed}: the links were lossy"
        );
        assert!(
            rtx_unwrapped > 200,
            "seed {seed}: {rtx_unwrapped} RTX unwrapped"
        );
        let s = responder.stats();
        assert!(s.retransmitted_rtx > 200, "seed {seed}: {s:?}");
        // Direct arrivals take 35 ms; a repair about one round trip per hop more.
        repaired_after.sort();
        let p99 = repaired_after[repaired_after.len() * 99 / 100];
        assert!(
            p99 <= Duration::from_millis(250),
            "seed {seed}: 99th percentile {p99:?}"
        );
    }
}
