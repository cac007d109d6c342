//! Sender reports (RFC 3550 section 6.4.1) for the bridge's slots.
//!
//! A receiver synchronises a slot's audio and video by the (NTP, RTP timestamp) pair of
//! each slot's SR, and both must be on the *source's* clock: the slot rewrote the
//! source's timestamps by a fixed offset, and the source's own SRs say which NTP time
//! its RTP timestamps stand for. So the slot's SR takes the source's last SR, moves it
//! forward to `now` at the codec's clock rate, and adds the slot's timestamp offset.
//! Before the source sent any SR there is nothing to synchronise with; the slot's SR
//! then uses the bridge's own clock and the last timestamp it sent (still good for RTT).
//!
//! RTT toward the receiver comes back in its report blocks (LSR and DLSR): the slot
//! remembers when it sent each of its last few SRs, so no clock needs to agree.

use std::time::{Duration, Instant};

use crate::proto::rtcp::{self, ReportBlock, RtcpError, SenderInfo};

/// How many sent SRs are remembered for RTT computation.
pub const REMEMBERED_REPORTS: usize = 4;

/// Seconds from 1900 (NTP era 0) to 1970 (Unix epoch).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// A 64-bit NTP timestamp (32.32 fixed point seconds) for a duration since 1900.
pub fn ntp_from_duration(since_1900: Duration) -> u64 {
    (since_1900.as_secs() << 32) + ((u64::from(since_1900.subsec_nanos()) << 32) / 1_000_000_000)
}

fn ntp_add(ntp: u64, d: Duration) -> u64 {
    ntp.wrapping_add(ntp_from_duration(d))
}

/// The bridge's wall clock, anchored once by the driver (the sans-IO core never reads a
/// clock): the NTP time of one `Instant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NtpClock {
    anchor: Instant,
    anchor_ntp: u64,
}

impl NtpClock {
    /// `anchor` was NTP time `anchor_ntp` (e.g. `ntp_from_duration(unix_time +
    /// NTP_UNIX_OFFSET_SECS s)`, read next to `Instant::now()`).
    pub fn new(anchor: Instant, anchor_ntp: u64) -> Self {
        NtpClock { anchor, anchor_ntp }
    }

    /// The NTP time of `at` (not before the anchor).
    pub fn ntp(&self, at: Instant) -> u64 {
        ntp_add(self.anchor_ntp, at.saturating_duration_since(self.anchor))
    }
}

/// A source's clock as its last SR states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceClock {
    /// The SR's NTP timestamp.
    pub ntp: u64,
    /// The SR's RTP timestamp (the source's, before any rewriting).
    pub rtp_timestamp: u32,
    /// When the SR arrived.
    pub received_at: Instant,
    /// The codec's RTP clock rate.
    pub clock_rate: u32,
}

impl SourceClock {
    /// The clock stated by the SR `info`, received at `received_at`.
    pub fn from_sender_report(info: &SenderInfo, received_at: Instant, clock_rate: u32) -> Self {
        SourceClock {
            ntp: info.ntp_timestamp,
            rtp_timestamp: info.rtp_timestamp,
            received_at,
            clock_rate,
        }
    }

    /// The (NTP, source RTP timestamp) pair at `now`, moved forward from the SR.
    pub fn at(&self, now: Instant) -> (u64, u32) {
        let elapsed = now.saturating_duration_since(self.received_at);
        (
            ntp_add(self.ntp, elapsed),
            self.rtp_timestamp
                .wrapping_add(ticks(elapsed, self.clock_rate)),
        )
    }
}

fn ticks(d: Duration, clock_rate: u32) -> u32 {
    // Wrapping: RTP timestamps are modulo 2^32.
    (d.as_micros() * u128::from(clock_rate) / 1_000_000) as u32
}

/// Counters of one slot's reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderReportStats {
    /// SRs written.
    pub sent: u64,
    /// SRs written on the bridge's clock because the source had sent no SR yet.
    pub without_source_clock: u64,
    /// Report blocks that gave an RTT.
    pub rtt_samples: u64,
}

#[derive(Debug, Clone, Copy)]
struct LastSent {
    slot_ts: u32,
    at: Instant,
}

/// Sender report state of one slot: counts and the SRs it sent.
#[derive(Debug, Clone)]
pub struct SlotSenderReport {
    ssrc: u32,
    clock_rate: u32,
    packets: u32,
    octets: u32,
    last_packet: Option<LastSent>,
    sent: [Option<(u32, Instant)>; REMEMBERED_REPORTS],
    next_sent: usize,
    stats: SenderReportStats,
}

impl SlotSenderReport {
    /// Reports for the slot `ssrc` whose codec runs at `clock_rate`.
    pub fn new(ssrc: u32, clock_rate: u32) -> Self {
        SlotSenderReport {
            ssrc,
            clock_rate,
            packets: 0,
            octets: 0,
            last_packet: None,
            sent: [None; REMEMBERED_REPORTS],
            next_sent: 0,
            stats: SenderReportStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> SenderReportStats {
        self.stats
    }

    /// Packets sent on the slot (wrapping, as the SR field).
    pub fn packet_count(&self) -> u32 {
        self.packets
    }

    /// Payload octets sent on the slot (wrapping, as the SR field).
    pub fn octet_count(&self) -> u32 {
        self.octets
    }

    /// Records a packet sent on the slot at `now` with rewritten timestamp `slot_ts` and
    /// `payload_len` payload bytes (header and padding excluded, as RFC 3550 counts).
    /// Retransmissions are not counted.
    pub fn handle_sent(&mut self, now: Instant, slot_ts: u32, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        self.last_packet = Some(LastSent { slot_ts, at: now });
    }

    /// The sender information for an SR at `now`: on the current source's clock
    /// (`source`, from its last SR) shifted by the slot's `ts_offset` (the slot's
    /// timestamp is the source's plus the offset), or else on `bridge` with the last sent
    /// timestamp moved forward.
    /// `None` before the slot sent anything.
    pub fn sender_info(
        &self,
        now: Instant,
        source: Option<&SourceClock>,
        ts_offset: u32,
        bridge: &NtpClock,
    ) -> Option<SenderInfo> {
        let last = self.last_packet?;
        let (ntp_timestamp, rtp_timestamp) = match source {
            Some(clock) => {
                let (ntp, ts) = clock.at(now);
                (ntp, ts.wrapping_add(ts_offset))
            }
            None => (
                bridge.ntp(now),
                last.slot_ts.wrapping_add(ticks(
                    now.saturating_duration_since(last.at),
                    self.clock_rate,
                )),
            ),
        };
        Some(SenderInfo {
            ssrc: self.ssrc,
            ntp_timestamp,
            rtp_timestamp,
            packet_count: self.packets,
            octet_count: self.octets,
        })
    }

    /// Writes the slot's SR at `now` into `buf` (see [`sender_info`](Self::sender_info))
    /// and remembers it for RTT; `Ok(0)` before the slot sent anything.
    pub fn write_sender_report(
        &mut self,
        now: Instant,
        source: Option<&SourceClock>,
        ts_offset: u32,
        bridge: &NtpClock,
        buf: &mut [u8],
    ) -> Result<usize, RtcpError> {
        let Some(info) = self.sender_info(now, source, ts_offset, bridge) else {
            return Ok(0);
        };
        let n = rtcp::write_sender_report(buf, &info, &[])?;
        self.sent[self.next_sent] = Some(((info.ntp_timestamp >> 16) as u32, now));
        self.next_sent = (self.next_sent + 1) % REMEMBERED_REPORTS;
        self.stats.sent += 1;
        if source.is_none() {
            self.stats.without_source_clock += 1;
        }
        Ok(n)
    }

    /// The RTT from the receiver's report block about this slot, received at `now`
    /// (RFC 3550 section 6.4.1: arrival minus the SR's send time minus DLSR).
    pub fn handle_report_block(&mut self, now: Instant, block: &ReportBlock) -> Option<Duration> {
        if block.ssrc != self.ssrc || block.last_sr == 0 {
            return None;
        }
        let (_, sent_at) = self
            .sent
            .iter()
            .flatten()
            .find(|(lsr, _)| *lsr == block.last_sr)?;
        let dlsr = Duration::from_micros(u64::from(block.delay_since_last_sr) * 1_000_000 / 65_536);
        let rtt = now.saturating_duration_since(*sent_at).saturating_sub(dlsr);
        self.stats.rtt_samples += 1;
        Some(rtt)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::rtcp::{ReceiveStats, RtcpPacket};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const NTP_SEC: u64 = 1 << 32;

    #[test]
    fn ntp_conversion() {
        assert_eq!(ntp_from_duration(Duration::from_secs(3)), 3 << 32);
        assert_eq!(ntp_from_duration(ms(500)), 1 << 31);
        assert_eq!(ntp_from_duration(ms(250)), 1 << 30);
        let t0 = Instant::now();
        let c = NtpClock::new(t0, 100 * NTP_SEC);
        assert_eq!(c.ntp(t0 + ms(1500)), 101 * NTP_SEC + (1 << 31));
    }

    #[test]
    fn slot_sr_maps_rewritten_timestamps_to_the_source_ntp_clock() {
        let t0 = Instant::now();
        // The source's SR: NTP 5000 s is its RTP timestamp 90_000 (video, 90 kHz).
        let sr = SenderInfo {
            ssrc: 0x5,
            ntp_timestamp: 5000 * NTP_SEC,
            rtp_timestamp: 90_000,
            packet_count: 10,
            octet_count: 1000,
        };
        let source = SourceClock::from_sender_report(&sr, t0, 90_000);
        let mut slot = SlotSenderReport::new(0xABC, 90_000);
        // The slot forwards with ts_offset = -90_000 + 7 (wrapping).
        let offset = 7u32.wrapping_sub(90_000);
        for i in 0..30u32 {
            slot.handle_sent(t0 + ms(u64::from(i) * 33), 7 + i * 3000, 1000 + i as usize);
        }
        let bridge = NtpClock::new(t0, 9_999 * NTP_SEC);
        let mut buf = [0u8; 64];
        let now = t0 + ms(2000);
        let n = slot
            .write_sender_report(now, Some(&source), offset, &bridge, &mut buf)
            .unwrap();
        let Some(Ok(RtcpPacket::SenderReport(out))) = rtcp::packets(&buf[..n]).next() else {
            panic!()
        };
        assert_eq!(out.info.ssrc, 0xABC);
        // 2 s after the SR: NTP 5002 s on the source's clock, RTP 90_000 + 180_000 on
        // the source's timeline, which is 7 + 180_000 on the slot's.
        assert_eq!(out.info.ntp_timestamp, 5002 * NTP_SEC);
        assert_eq!(out.info.rtp_timestamp, 7 + 180_000);
        assert_eq!(out.info.packet_count, 30);
        assert_eq!(out.info.octet_count, (0..30).map(|i| 1000 + i).sum::<u32>());
        // The receiver's RR echoes LSR; 30 ms later with DLSR 10 ms: RTT 20 ms.
        let block = ReportBlock {
            ssrc: 0xABC,
            last_sr: out.ntp_middle(),
            delay_since_last_sr: 655, // 10 ms in 1/65536 s (9.99 ms)
            ..ReportBlock::default()
        };
        let rtt = slot.handle_report_block(now + ms(30), &block).unwrap();
        assert!(rtt >= ms(20) && rtt < ms(21), "{rtt:?}");
        // Unknown LSR or another SSRC: no sample.
        let other = ReportBlock {
            last_sr: 1,
            ..block
        };
        assert_eq!(slot.handle_report_block(now, &other), None);
        assert_eq!(slot.stats().rtt_samples, 1);
    }

    #[test]
    fn without_source_sr_the_bridge_clock_and_last_timestamp_are_used() {
        let t0 = Instant::now();
        let mut slot = SlotSenderReport::new(1, 48_000);
        let bridge = NtpClock::new(t0, 100 * NTP_SEC);
        let mut buf = [0u8; 64];
        assert_eq!(
            slot.write_sender_report(t0, None, 0, &bridge, &mut buf)
                .unwrap(),
            0
        );
        slot.handle_sent(t0 + ms(100), 960_000, 160);
        let info = slot.sender_info(t0 + ms(600), None, 0, &bridge).unwrap();
        assert_eq!(ntp_from_duration(ms(600)), 2_576_980_377);
        assert_eq!(info.ntp_timestamp, 100 * NTP_SEC + 2_576_980_377);
        // 500 ms at 48 kHz after the last packet's timestamp.
        assert_eq!(info.rtp_timestamp, 960_000 + 24_000);
        let n = slot
            .write_sender_report(t0 + ms(600), None, 0, &bridge, &mut buf)
            .unwrap();
        assert_eq!(n, 28);
        assert_eq!(slot.stats().without_source_clock, 1);
    }

    #[test]
    fn receive_stats_jitter_follows_rfc3550_a8() {
        // Transit times 0, 10, 30, 30, 0 (ticks): |D| = 10, 20, 0, 30. RFC 3550 A.8:
        // J += (|D| - J) / 16 -> 0.625, 1.836, 1.721, 3.489; the integer form of A.8
        // keeps J * 16: 10, 29, 27, 55 -> reported 0, 1, 1, 3.
        let mut s = ReceiveStats::new(1);
        let transits = [0u64, 10, 30, 30, 0];
        let mut reported = Vec::new();
        for (i, t) in transits.into_iter().enumerate() {
            let ts = 1000 * i as u32;
            s.handle_packet(65_536 + i as u64, ts, u64::from(ts) + t);
            reported.push(s.jitter());
        }
        assert_eq!(reported, [0, 0, 1, 1, 3]);
        // Random transits: the integer form stays close to the real-valued one. Its
        // rounding of J / 16 errs by at most half a sixteenth a step, which the 15/16
        // decay bounds to half a tick, and the report truncates: under 1.5 ticks.
        let mut s = ReceiveStats::new(1);
        let mut j = 0f64;
        let mut last: Option<i64> = None;
        let mut x = 0x1234_5678u64;
        for i in 0..5000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let transit = (x % 400) as i64;
            let ts = (i * 3000) as u32;
            s.handle_packet(65_536 + i, ts, u64::from(ts) + transit as u64);
            if let Some(l) = last {
                j += (((transit - l).abs() as f64) - j) / 16.0;
            }
            last = Some(transit);
            assert!(
                (f64::from(s.jitter()) - j).abs() < 1.5,
                "{i}: {} vs {j}",
                s.jitter()
            );
        }
    }

    #[test]
    fn receive_stats_loss_fraction_and_cumulative_follow_rfc3550_a3() {
        // 100 expected, 90 received in the first interval: fraction 10/100 * 256 = 25;
        // then 50 expected, 50 received plus 2 duplicates: fraction 0, cumulative 8.
        let mut s = ReceiveStats::new(9);
        for i in 0..100u64 {
            if i % 10 != 5 {
                s.handle_packet(65_536 + i, 0, 0);
            }
        }
        let b = s.poll_report_block(0).unwrap();
        assert_eq!((b.fraction_lost, b.cumulative_lost), (25, 10));
        assert_eq!(b.extended_highest_seq, 99);
        for i in 100..150u64 {
            s.handle_packet(65_536 + i, 0, 0);
        }
        s.handle_packet(65_536 + 120, 0, 0);
        s.handle_packet(65_536 + 121, 0, 0);
        let b = s.poll_report_block(0).unwrap();
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 8));
        assert_eq!(b.extended_highest_seq, 149);
    }
}
