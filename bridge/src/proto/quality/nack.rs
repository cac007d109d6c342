//! Loss tracking on one received video source and the NACKs (RFC 4585 generic NACK)
//! the bridge sends to its sender.
//!
//! Every sequence number skipped by an arriving packet is missing. It is NACKed first
//! after [`NackConfig::reorder_delay`] (a packet overtaken by its successor usually shows
//! up within a few milliseconds), then again about once per RTT, at most
//! [`NackConfig::max_retries`] times. A missing packet that outlives
//! [`NackConfig::max_age`] (the sender's cache), that was asked for
//! `max_retries` times without coming, or that falls out of the tracking window, is
//! given up: the picture cannot be repaired, and the generator asks for one keyframe
//! instead ([`NackGenerator::poll_keyframe_request`]). A jump forward larger than
//! [`NackConfig::max_jump`] is a restart, not a loss burst: tracking starts over and one
//! keyframe is asked for.
//!
//! Call order: [`handle_packet`](NackGenerator::handle_packet) for each packet of the
//! source (after RTX unwrapping), [`poll_nack`](NackGenerator::poll_nack) or
//! [`write_nack`](NackGenerator::write_nack) and
//! [`poll_keyframe_request`](NackGenerator::poll_keyframe_request) when
//! [`poll_timeout`](NackGenerator::poll_timeout) is reached (and after packets).

use std::time::{Duration, Instant};

use crate::proto::rtcp::{self, NackEntry, RtcpError};
use crate::proto::rtp::SeqUnwrapper;

/// How many sequence numbers behind the highest one are tracked: the most slots the
/// ring of missing packets grows to.
pub const WINDOW: usize = 2048;

/// The slots the ring of missing packets takes at the first gap; it doubles from there
/// up to [`WINDOW`] when two missing packets would share a slot.
pub const FIRST_WINDOW: usize = 64;

/// At most this many sequence numbers go into one NACK from [`NackGenerator::write_nack`].
pub const MAX_SEQS_PER_NACK: usize = 128;

/// Behaviour of a [`NackGenerator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackConfig {
    /// Wait this long after a gap appears before the first NACK, for reordering.
    /// Default: 10 ms.
    pub reorder_delay: Duration,
    /// How often a missing packet is asked for, first request included. Default: 10.
    pub max_retries: u8,
    /// A packet missing longer than this cannot be repaired any more (the sender keeps
    /// about a second): give up and ask for a keyframe. Default: 1 s.
    pub max_age: Duration,
    /// The shortest interval between two NACKs of the same packet, whatever the RTT.
    /// Default: 10 ms.
    pub min_retry_interval: Duration,
    /// A forward jump of more than this many sequence numbers resets the tracking
    /// (capped at `WINDOW - 1`). Default: 1000.
    pub max_jump: u16,
    /// The RTT assumed until [`NackGenerator::set_rtt`] is called. Default: 100 ms.
    pub initial_rtt: Duration,
}

impl Default for NackConfig {
    fn default() -> Self {
        NackConfig {
            reorder_delay: Duration::from_millis(10),
            max_retries: 10,
            max_age: Duration::from_secs(1),
            min_retry_interval: Duration::from_millis(10),
            max_jump: 1000,
            initial_rtt: Duration::from_millis(100),
        }
    }
}

/// Counters of one generator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackGeneratorStats {
    /// Sequence numbers found missing (jvb `RetransmissionRequester` `numPacketsLost`-like).
    pub missing: u64,
    /// NACK requests for single sequence numbers, retries included (jvb
    /// `numRetransmissionsRequested` on the requesting side).
    pub requested: u64,
    /// NACK packets written by [`NackGenerator::write_nack`] (jvb `numNacksSent`).
    pub nacks_sent: u64,
    /// Missing packets that arrived after being NACKed.
    pub recovered: u64,
    /// Missing packets that arrived before their first NACK (reordering).
    pub reordered: u64,
    /// Missing packets given up (too old, retries exhausted, or out of the window).
    pub given_up: u64,
    /// Keyframe requests asked for instead of repairs.
    pub keyframe_requests: u64,
    /// Tracking restarts after a large jump.
    pub resets: u64,
    /// Packets that were neither new nor missing (duplicates and very old packets).
    pub duplicates: u64,
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    ext_seq: u64,
    detected: Instant,
    last_sent: Option<Instant>,
    sent: u8,
}

/// Receive-side loss tracking of one source. See the module documentation.
#[derive(Debug)]
pub struct NackGenerator {
    config: NackConfig,
    unwrapper: SeqUnwrapper,
    highest: Option<u64>,
    /// No missing packet is below this.
    scan_from: u64,
    /// Missing packets by `ext_seq % missing.len()`: empty until the first gap, then
    /// [`FIRST_WINDOW`] slots doubled on demand up to [`WINDOW`] (48 bytes a slot).
    missing: Vec<Option<Missing>>,
    missing_count: usize,
    rtt: Duration,
    keyframe_pending: bool,
    /// Consecutive packets far behind the window: a sender that restarted lower.
    far_behind: u8,
    stats: NackGeneratorStats,
}

impl NackGenerator {
    /// A generator that has seen nothing. It allocates nothing until the first gap;
    /// its ring of missing packets then grows in at most seven steps (64 slots, doubled
    /// whenever two missing packets would share a slot) up to [`WINDOW`] slots, and never
    /// shrinks: a source that loses packets stops allocating once its ring holds its
    /// worst gap span, and one that never loses any costs no ring at all (a ring of
    /// [`WINDOW`] slots is 96 KiB, most of an endpoint's memory if taken at join).
    pub fn new(config: NackConfig) -> Self {
        NackGenerator {
            config,
            unwrapper: SeqUnwrapper::new(),
            highest: None,
            scan_from: 0,
            missing: Vec::new(),
            missing_count: 0,
            rtt: config.initial_rtt,
            keyframe_pending: false,
            far_behind: 0,
            stats: NackGeneratorStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> NackGeneratorStats {
        self.stats
    }

    /// Updates the round-trip time to the sender (from its RR/SR exchange).
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
    }

    /// How many packets are currently missing.
    pub fn missing_count(&self) -> usize {
        self.missing_count
    }

    /// The slots the ring of missing packets holds now (0 before the first gap).
    pub fn window_slots(&self) -> usize {
        self.missing.len()
    }

    /// The slot of `ext` in the ring; only called with a non-empty ring.
    fn slot(&self, ext: u64) -> usize {
        (ext % self.missing.len().max(1) as u64) as usize
    }

    /// The missing packet `ext`, if it is tracked.
    fn get(&self, ext: u64) -> Option<Missing> {
        self.missing
            .get(self.slot(ext))
            .copied()
            .flatten()
            .filter(|m| m.ext_seq == ext)
    }

    /// Doubles the ring (the first time: [`FIRST_WINDOW`] slots), up to [`WINDOW`].
    /// Tracked packets keep distinct slots: two numbers apart by a multiple of the
    /// doubled size are also apart by a multiple of the old one.
    fn grow(&mut self) {
        let size = (self.missing.len() * 2).clamp(FIRST_WINDOW, WINDOW);
        let old = core::mem::replace(&mut self.missing, vec![None; size]);
        for m in old.into_iter().flatten() {
            let slot = self.slot(m.ext_seq);
            self.missing[slot] = Some(m);
        }
    }

    fn retry_interval(&self) -> Duration {
        self.rtt.max(self.config.min_retry_interval)
    }

    fn give_up(&mut self, slot: usize) {
        self.missing[slot] = None;
        self.missing_count -= 1;
        self.stats.given_up += 1;
        self.keyframe_pending = true;
    }

    fn reset(&mut self, ext: u64) {
        self.missing.iter_mut().for_each(|m| *m = None);
        self.missing_count = 0;
        self.highest = Some(ext);
        self.scan_from = ext + 1;
        self.far_behind = 0;
        self.stats.resets += 1;
    }

    /// Records a received packet of the source (original or unwrapped RTX).
    pub fn handle_packet(&mut self, now: Instant, seq: u16) {
        let ext = self.unwrapper.extend(seq);
        let Some(highest) = self.highest else {
            self.highest = Some(ext);
            self.scan_from = ext + 1;
            return;
        };
        if ext > highest {
            self.far_behind = 0;
            let max_jump = u64::from(self.config.max_jump).min(WINDOW as u64 - 1);
            if ext - highest > max_jump {
                self.reset(ext);
                self.keyframe_pending = true;
                return;
            }
            for s in highest + 1..ext {
                if self.missing.is_empty() {
                    self.grow();
                }
                while self.missing.len() < WINDOW && self.missing[self.slot(s)].is_some() {
                    self.grow();
                }
                let slot = self.slot(s);
                if self.missing[slot].is_some() {
                    // Still missing WINDOW packets later: out of the window.
                    self.give_up(slot);
                }
                self.missing[slot] = Some(Missing {
                    ext_seq: s,
                    detected: now,
                    last_sent: None,
                    sent: 0,
                });
                self.missing_count += 1;
                self.stats.missing += 1;
            }
            self.highest = Some(ext);
            return;
        }
        if highest - ext >= WINDOW as u64 {
            self.stats.duplicates += 1;
            self.far_behind = self.far_behind.saturating_add(1);
            if self.far_behind > 16 {
                // The sender restarted below: follow it.
                self.unwrapper = SeqUnwrapper::new();
                let ext = self.unwrapper.extend(seq);
                self.reset(ext);
                self.keyframe_pending = true;
            }
            return;
        }
        match self.get(ext) {
            Some(m) => {
                let slot = self.slot(ext);
                if m.last_sent.is_some() {
                    self.stats.recovered += 1;
                } else {
                    self.stats.reordered += 1;
                }
                self.missing[slot] = None;
                self.missing_count -= 1;
            }
            _ => self.stats.duplicates += 1,
        }
    }

    /// Gives up what is too old, and with `out` collects what is due for a NACK.
    fn scan(&mut self, now: Instant, mut out: Option<&mut [u16]>) -> usize {
        let Some(highest) = self.highest else {
            return 0;
        };
        let interval = self.retry_interval();
        let mut n = 0;
        let mut first_missing = None;
        let start = self
            .scan_from
            .max((highest + 1).saturating_sub(WINDOW as u64));
        for ext in start..=highest {
            if self.missing_count == 0 {
                break;
            }
            let Some(mut m) = self.get(ext) else {
                continue;
            };
            let slot = self.slot(ext);
            let since_sent = m.last_sent.map(|t| now.saturating_duration_since(t));
            let exhausted = m.sent >= self.config.max_retries;
            if now.saturating_duration_since(m.detected) >= self.config.max_age
                || (exhausted && since_sent.is_none_or(|d| d >= interval))
            {
                self.give_up(slot);
                continue;
            }
            first_missing.get_or_insert(ext);
            let Some(out) = out.as_deref_mut() else {
                continue;
            };
            let due = !exhausted
                && match since_sent {
                    None => now.saturating_duration_since(m.detected) >= self.config.reorder_delay,
                    Some(d) => d >= interval,
                };
            if due && let Some(o) = out.get_mut(n) {
                *o = ext as u16;
                n += 1;
                m.last_sent = Some(now);
                m.sent += 1;
                self.missing[slot] = Some(m);
                self.stats.requested += 1;
            }
        }
        self.scan_from = first_missing.unwrap_or(highest + 1);
        n
    }

    /// Writes into `out` the sequence numbers due for a NACK at `now` (oldest first) and
    /// returns how many; at most `out.len()`, the rest stay due.
    pub fn poll_nack(&mut self, now: Instant, out: &mut [u16]) -> usize {
        self.scan(now, Some(out))
    }

    /// Writes an RTCP generic NACK for what is due at `now` into `buf` (`sender_ssrc` is
    /// the bridge's, `media_ssrc` the source's). Returns 0 when nothing is due.
    pub fn write_nack(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        sender_ssrc: u32,
        media_ssrc: u32,
    ) -> Result<usize, RtcpError> {
        let mut seqs = [0u16; MAX_SEQS_PER_NACK];
        // Each entry takes 4 bytes after a 12-byte header: never ask for more than fits.
        let fit = (buf.len().saturating_sub(12) / 4).min(MAX_SEQS_PER_NACK);
        let n = self.scan(now, Some(&mut seqs[..fit]));
        if n == 0 {
            return Ok(0);
        }
        let mut entries = [NackEntry { pid: 0, blp: 0 }; MAX_SEQS_PER_NACK];
        let mut count = 0usize;
        for &seq in &seqs[..n] {
            let d = count
                .checked_sub(1)
                .map(|last| seq.wrapping_sub(entries[last].pid));
            match d {
                Some(d @ 1..=16) => entries[count - 1].blp |= 1 << (d - 1),
                _ => {
                    entries[count] = NackEntry { pid: seq, blp: 0 };
                    count += 1;
                }
            }
        }
        let len = rtcp::write_nack(buf, sender_ssrc, media_ssrc, &entries[..count])?;
        self.stats.nacks_sent += 1;
        Ok(len)
    }

    /// Whether a keyframe should be requested from the sender instead of repairs (a gap
    /// given up, or a restart); `true` once per occurrence.
    pub fn poll_keyframe_request(&mut self, now: Instant) -> bool {
        self.scan(now, None);
        let pending = core::mem::take(&mut self.keyframe_pending);
        if pending {
            self.stats.keyframe_requests += 1;
        }
        pending
    }

    /// When the generator next needs [`poll_nack`](Self::poll_nack) (or
    /// [`poll_keyframe_request`](Self::poll_keyframe_request)): the earliest first NACK,
    /// retry or give-up; `None` with nothing missing.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let highest = self.highest?;
        if self.missing_count == 0 {
            return None;
        }
        let interval = self.retry_interval();
        let start = self
            .scan_from
            .max((highest + 1).saturating_sub(WINDOW as u64));
        (start..=highest)
            .filter_map(|ext| self.get(ext))
            .map(|m| {
                let give_up = m.detected + self.config.max_age;
                let next = match m.last_sent {
                    None => m.detected + self.config.reorder_delay,
                    Some(t) => t + interval,
                };
                next.min(give_up)
            })
            .min()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::rtcp::RtcpPacket;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn poll(g: &mut NackGenerator, now: Instant) -> Vec<u16> {
        let mut out = [0u16; 64];
        let n = g.poll_nack(now, &mut out);
        out[..n].to_vec()
    }

    #[test]
    fn default_config() {
        let c = NackConfig::default();
        assert_eq!(c.reorder_delay, ms(10));
        assert_eq!(c.max_retries, 10);
        assert_eq!(c.max_age, ms(1000));
        assert_eq!(c.min_retry_interval, ms(10));
        assert_eq!(c.max_jump, 1000);
        assert_eq!(c.initial_rtt, ms(100));
    }

    #[test]
    fn gap_is_nacked_after_reorder_delay_then_once_per_rtt_then_keyframe() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        g.set_rtt(ms(50));
        for s in [1u16, 2, 3, 5] {
            g.handle_packet(t0, s);
        }
        assert_eq!(g.missing_count(), 1);
        assert_eq!(poll(&mut g, t0), Vec::<u16>::new(), "waits for reordering");
        assert_eq!(g.poll_timeout(), Some(t0 + ms(10)));
        assert_eq!(poll(&mut g, t0 + ms(10)), [4]);
        assert_eq!(g.poll_timeout(), Some(t0 + ms(60)));
        assert_eq!(poll(&mut g, t0 + ms(59)), Vec::<u16>::new());
        assert_eq!(poll(&mut g, t0 + ms(60)), [4]);
        // Eight more retries, one per RTT: ten in all.
        let mut t = t0 + ms(60);
        for _ in 0..8 {
            t += ms(50);
            assert_eq!(poll(&mut g, t), [4]);
        }
        assert_eq!(g.stats().requested, 10);
        assert!(!g.poll_keyframe_request(t));
        // One RTT after the tenth request: given up, exactly one keyframe request.
        t += ms(50);
        assert_eq!(poll(&mut g, t), Vec::<u16>::new());
        assert!(g.poll_keyframe_request(t));
        assert!(!g.poll_keyframe_request(t + ms(1)));
        assert_eq!(g.poll_timeout(), None);
        // The packet arriving now is merely a late duplicate.
        g.handle_packet(t, 4);
        let s = g.stats();
        assert_eq!((s.given_up, s.keyframe_requests, s.recovered), (1, 1, 0));
    }

    #[test]
    fn reordered_packet_is_never_nacked() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        for s in [10u16, 11, 13] {
            g.handle_packet(t0, s);
        }
        g.handle_packet(t0 + ms(4), 12);
        assert_eq!(poll(&mut g, t0 + ms(100)), Vec::<u16>::new());
        assert_eq!(g.stats().reordered, 1);
        assert_eq!(g.poll_timeout(), None);
    }

    #[test]
    fn recovered_packet_stops_retries_and_duplicates_change_nothing() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        for s in [10u16, 11, 14, 14, 11] {
            g.handle_packet(t0, s);
        }
        assert_eq!(poll(&mut g, t0 + ms(10)), [12, 13]);
        g.handle_packet(t0 + ms(30), 12);
        assert_eq!(poll(&mut g, t0 + ms(110)), [13]);
        let s = g.stats();
        assert_eq!((s.recovered, s.duplicates, s.missing), (1, 2, 2));
    }

    #[test]
    fn gaps_across_the_sequence_wrap() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        for s in [65533u16, 65534, 1, 2] {
            g.handle_packet(t0, s);
        }
        assert_eq!(poll(&mut g, t0 + ms(10)), [65535, 0]);
        // As an RTCP NACK: one PID/BLP pair across the wrap.
        let mut buf = [0u8; 64];
        let n = g.write_nack(t0 + ms(200), &mut buf, 7, 0xABCD).unwrap();
        let Some(Ok(RtcpPacket::Nack(nack))) = rtcp::packets(&buf[..n]).next() else {
            panic!()
        };
        assert_eq!(nack.media_ssrc, 0xABCD);
        assert_eq!(nack.entries().count(), 1);
        assert_eq!(nack.lost_sequence_numbers().collect::<Vec<_>>(), [65535, 0]);
        assert_eq!(g.write_nack(t0 + ms(201), &mut buf, 7, 0xABCD).unwrap(), 0);
        assert_eq!(g.stats().nacks_sent, 1);
    }

    #[test]
    fn nack_packs_many_gaps_into_pid_blp_pairs() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        // Lost: 101..=120 except every fifth, and 200.
        for s in 100u16..=201 {
            if (101..=120).contains(&s) && s % 5 != 0 || s == 200 {
                continue;
            }
            g.handle_packet(t0, s);
        }
        let mut buf = [0u8; 256];
        let n = g.write_nack(t0 + ms(10), &mut buf, 1, 2).unwrap();
        let Some(Ok(RtcpPacket::Nack(nack))) = rtcp::packets(&buf[..n]).next() else {
            panic!()
        };
        let expected: Vec<u16> = (101u16..=120).filter(|s| s % 5 != 0).chain([200]).collect();
        assert_eq!(nack.lost_sequence_numbers().collect::<Vec<_>>(), expected);
        assert_eq!(nack.entries().count(), 3); // 101+16, 118..120, 200
        // A buffer with room for one entry asks for one sequence number, the rest later.
        let mut g2 = NackGenerator::new(NackConfig::default());
        for s in [1u16, 5] {
            g2.handle_packet(t0, s);
        }
        let n = g2.write_nack(t0 + ms(10), &mut buf[..16], 1, 2).unwrap();
        assert_eq!(n, 16);
        assert_eq!(poll(&mut g2, t0 + ms(10)), [3, 4]);
    }

    #[test]
    fn old_gap_becomes_one_keyframe_request() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        // An RTT so long that retries never run out before the gap gets too old.
        g.set_rtt(ms(400));
        for s in [1u16, 2, 6] {
            g.handle_packet(t0, s);
        }
        assert_eq!(poll(&mut g, t0 + ms(10)), [3, 4, 5]);
        assert_eq!(poll(&mut g, t0 + ms(410)), [3, 4, 5]);
        assert_eq!(poll(&mut g, t0 + ms(810)), [3, 4, 5]);
        assert_eq!(g.poll_timeout(), Some(t0 + ms(1000)));
        assert!(!g.poll_keyframe_request(t0 + ms(999)));
        assert!(g.poll_keyframe_request(t0 + ms(1000)));
        assert!(!g.poll_keyframe_request(t0 + ms(1001)));
        assert_eq!(g.stats().given_up, 3);
        assert_eq!(g.stats().keyframe_requests, 1);
    }

    #[test]
    fn huge_jump_resets_instead_of_nacking_thousands() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        for s in 0u16..10 {
            g.handle_packet(t0, s);
        }
        g.handle_packet(t0, 5000);
        g.handle_packet(t0, 5002);
        assert_eq!(poll(&mut g, t0 + ms(10)), [5001]);
        assert!(g.poll_keyframe_request(t0 + ms(10)));
        assert_eq!(g.stats().resets, 1);
        // A sender that restarts far below the window is followed after a few packets.
        let mut g = NackGenerator::new(NackConfig::default());
        for s in 30000u16..30010 {
            g.handle_packet(t0, s);
        }
        for s in 20000u16..20017 {
            g.handle_packet(t0, s);
        }
        assert_eq!(g.stats().resets, 1);
        g.handle_packet(t0, 20018);
        assert_eq!(poll(&mut g, t0 + ms(10)), [20017]);
    }

    #[test]
    fn no_ring_without_loss_then_it_grows_and_keeps_every_gap() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        for s in 0u16..500 {
            g.handle_packet(t0, s);
        }
        assert_eq!(g.window_slots(), 0, "a lossless source takes no ring");
        // 501 missing: the first ring.
        g.handle_packet(t0, 500);
        g.handle_packet(t0, 502);
        assert_eq!(g.window_slots(), FIRST_WINDOW);
        // 565 would share 501's slot in 64: the ring doubles, both stay tracked;
        // the same again with 629 in 128.
        for s in 503u16..565 {
            g.handle_packet(t0, s);
        }
        g.handle_packet(t0, 566);
        assert_eq!(g.window_slots(), 128);
        for s in 567u16..629 {
            g.handle_packet(t0, s);
        }
        g.handle_packet(t0, 630);
        assert_eq!(g.window_slots(), 256);
        assert_eq!(g.missing_count(), 3);
        assert_eq!(poll(&mut g, t0 + ms(10)), [501, 565, 629]);
        // Recovered after the growth: found in their new slots.
        g.handle_packet(t0 + ms(20), 565);
        assert_eq!(g.stats().recovered, 1);
        assert_eq!(poll(&mut g, t0 + ms(110)), [501, 629]);
        assert_eq!(g.stats().given_up, 0);
    }

    #[test]
    fn a_gap_still_missing_a_full_window_later_is_given_up_at_the_largest_ring() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        g.handle_packet(t0, 0);
        // 1 stays missing; 2049 = 1 + WINDOW shares its slot in every ring size.
        for s in 2u16..=2048 {
            g.handle_packet(t0, s);
        }
        assert_eq!(g.window_slots(), FIRST_WINDOW, "one gap needs no more");
        g.handle_packet(t0, 2050);
        assert_eq!(g.window_slots(), WINDOW);
        assert_eq!(g.stats().given_up, 1);
        assert!(g.poll_keyframe_request(t0));
        assert_eq!(poll(&mut g, t0 + ms(10)), [2049]);
    }

    /// A tiny deterministic generator for the loss scenarios.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    #[test]
    fn random_loss_is_repaired_through_nacks_with_first_nack_within_20ms() {
        // 300 packets/s for 20 s through a link losing 5% each way (media, NACKs and
        // retransmissions alike), one-way delay 20 ms; the sender answers every NACK.
        for seed in 1..=8u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let t0 = Instant::now();
            let delay = ms(20);
            let mut g = NackGenerator::new(NackConfig::default());
            g.set_rtt(2 * delay);
            // (arrival time at the bridge, seq)
            let mut in_flight: Vec<(Instant, u16)> = Vec::new();
            let mut received = std::collections::HashSet::new();
            let mut lost_at: std::collections::HashMap<u16, Instant> = Default::default();
            let mut worst_first_nack = Duration::ZERO;
            let packets = 6000u32;
            let mut now = t0;
            let end = t0 + ms(20_000 + 2000);
            let mut next_send = 0u32;
            while now < end {
                while next_send < packets
                    && t0 + Duration::from_micros(3333 * u64::from(next_send)) <= now
                {
                    let seq = (next_send as u16).wrapping_add(60000);
                    // The first and last few always arrive: a receiver cannot know of
                    // packets before the first one, nor of losses after the last.
                    if next_send < 5 || next_send >= packets - 10 || !rng.chance(5) {
                        in_flight.push((now + delay, seq));
                    } else {
                        lost_at.insert(seq, now + delay);
                    }
                    next_send += 1;
                }
                in_flight.sort_by_key(|p| p.0);
                while in_flight.first().is_some_and(|p| p.0 <= now) {
                    let (_, seq) = in_flight.remove(0);
                    g.handle_packet(now, seq);
                    received.insert(seq);
                }
                let mut out = [0u16; 64];
                let n = g.poll_nack(now, &mut out);
                for &seq in &out[..n] {
                    if let Some(at) = lost_at.remove(&seq) {
                        worst_first_nack = worst_first_nack.max(now - at);
                    }
                    // The NACK and the retransmission each cross the lossy link.
                    if !rng.chance(5) && !rng.chance(5) {
                        in_flight.push((now + 2 * delay, seq));
                    }
                }
                assert!(
                    !g.poll_keyframe_request(now),
                    "seed {seed}: gave up at {:?}",
                    now - t0
                );
                now += ms(1);
            }
            assert_eq!(
                received.len(),
                packets as usize,
                "seed {seed}: all repaired"
            );
            // The first NACK of a gap leaves at most reorder delay plus the gap's
            // detection (the next packet, 3.3 ms later) plus a 1 ms tick after the loss.
            assert!(
                worst_first_nack <= ms(20),
                "seed {seed}: {worst_first_nack:?}"
            );
            assert_eq!(g.missing_count(), 0);
        }
    }

    #[test]
    fn random_sequences_keep_the_books_straight() {
        // Arbitrary arrival orders (jumps both ways, duplicates, wraps, restarts) and
        // polls: no panic, and the missing count always matches the ring.
        for seed in 1..=50u64 {
            let mut rng = Rng(seed.wrapping_mul(0xA076_1D64_78BD_642F));
            let t0 = Instant::now();
            let mut g = NackGenerator::new(NackConfig::default());
            g.set_rtt(ms(rng.next() % 200));
            let mut seq = rng.next() as u16;
            let mut now = t0;
            for _ in 0..3000 {
                seq = match rng.next() % 100 {
                    0 => rng.next() as u16,
                    1..=5 => seq.wrapping_sub((rng.next() % 3000) as u16),
                    6..=10 => seq,
                    11..=20 => seq.wrapping_add((rng.next() % 40) as u16),
                    _ => seq.wrapping_add(1),
                };
                g.handle_packet(now, seq);
                now += ms(rng.next() % 8);
                if rng.chance(30) {
                    let mut out = [0u16; 16];
                    let n = g.poll_nack(now, &mut out);
                    assert!(n <= 16);
                    let _ = g.poll_keyframe_request(now);
                    if let Some(t) = g.poll_timeout() {
                        assert!(
                            t + g.config.max_age >= now,
                            "seed {seed}: timeout far in the past"
                        );
                    }
                }
                if rng.chance(2) {
                    let in_ring = g.missing.iter().flatten().count();
                    assert_eq!(g.missing_count(), in_ring, "seed {seed}");
                }
            }
        }
    }
}
