//! Transport-wide congestion control feedback
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01): the receive side, which tells
//! a publisher when each of its packets arrived so that its delay-based estimator runs,
//! and a parser for the feedback the bridge receives from its own receivers.
//!
//! [`TwccReceiver`] records (transport-wide sequence number, arrival time) for every
//! packet of one transport and, every [`TwccConfig::interval`], writes RTCP
//! transport-cc feedback (RTPFB, PT 205, FMT 15): base sequence number, status count,
//! 24-bit reference time in 64 ms, feedback packet count, packet status chunks
//! (run-length and 1- and 2-bit status vectors) and receive deltas in 250 µs (one byte
//! for 0 to 63.75 ms, two signed bytes otherwise). What does not fit the caller's buffer,
//! or needs a delta beyond ±8.19 s, goes into the next feedback packet.
//!
//! [`TwccFeedback::parse`] reads a feedback packet's body (as
//! [`rtcp::UnknownPacket`](crate::proto::rtcp::UnknownPacket) yields it) without allocating.

use std::time::{Duration, Instant};

use crate::proto::rtcp::{RtcpError, pt};
use crate::proto::rtp::{RtpHeader, SeqUnwrapper};

/// The header extension URI to negotiate with `a=extmap`.
pub const TWCC_EXTENSION_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// The FMT of transport-cc feedback in an RTPFB packet.
pub const FMT_TWCC: u8 = 15;

/// Receive deltas count in this many microseconds.
pub const DELTA_TICK_US: i64 = 250;

/// The reference time counts in this many microseconds (64 ms).
pub const REFERENCE_TICK_US: i64 = 64_000;

/// Fixed part of a feedback packet: common header, two SSRCs, base sequence number,
/// status count, reference time and feedback packet count.
const FIXED_LEN: usize = 20;

const MAX_RUN: usize = 0x1FFF;

/// The transport-wide sequence number carried with extension `id`, if present.
pub fn transport_sequence_number(header: &RtpHeader, packet: &[u8], id: u8) -> Option<u16> {
    match header.extension_value(packet, id)? {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// The slots the ring of arrivals takes at the first packet (or the capacity, if
/// smaller); it doubles when more packets than it holds wait for feedback.
pub const FIRST_ARRIVALS: usize = 128;

/// Behaviour of a [`TwccReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccConfig {
    /// How often feedback is sent. Default: 50 ms (libwebrtc sends every 50 to 250 ms;
    /// the sender's estimator reacts faster with more frequent feedback).
    pub interval: Duration,
    /// How many packets can wait for feedback: the most slots the ring of arrivals
    /// grows to (from [`FIRST_ARRIVALS`] at the first packet, doubled while more wait).
    /// Default: 4096.
    pub capacity: usize,
}

impl Default for TwccConfig {
    fn default() -> Self {
        TwccConfig {
            interval: Duration::from_millis(50),
            capacity: 4096,
        }
    }
}

/// Counters of one receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TwccStats {
    /// Packets recorded.
    pub packets: u64,
    /// Feedback packets written (jvb `TccGenerator` `num_tcc_packets_sent`).
    pub feedback_sent: u64,
    /// Packets that arrived after the feedback that reported them lost.
    pub late: u64,
    /// Packets never reported because more than `capacity` waited.
    pub overflowed: u64,
    /// Packets seen twice.
    pub duplicates: u64,
}

#[derive(Debug, Clone, Copy)]
struct Arrival {
    ext: u64,
    at_us: i64,
}

/// A status symbol: not received, small delta, large delta.
const NOT_RECEIVED: u8 = 0;
const SMALL: u8 = 1;
const LARGE: u8 = 2;

/// Incremental packet status chunk encoder: collects symbols until one more would not
/// fit the chunk that is forming, then emits it.
#[derive(Debug, Clone, Copy)]
struct ChunkEncoder {
    syms: [u8; 14],
    len: usize,
    all_same: bool,
    has_large: bool,
}

impl ChunkEncoder {
    fn new() -> Self {
        ChunkEncoder {
            syms: [0; 14],
            len: 0,
            all_same: true,
            has_large: false,
        }
    }

    fn can_add(&self, s: u8) -> bool {
        self.len < 7
            || (self.len < 14 && !self.has_large && s != LARGE)
            || (self.all_same && self.syms[0] == s && self.len < MAX_RUN)
    }

    fn add(&mut self, s: u8) {
        if self.len < 14 {
            self.syms[self.len] = s;
        }
        self.all_same &= self.len == 0 || self.syms[0] == s;
        self.has_large |= s == LARGE;
        self.len += 1;
    }

    /// Emits one chunk from the front of what was collected. Vectors shorter than
    /// their 14 or 7 symbols (zero-padded) only end a feedback (`last`): a parser takes
    /// every symbol of a vector as a packet until the status count is reached.
    fn emit(&mut self, last: bool) -> u16 {
        if self.all_same {
            let chunk = (u16::from(self.syms[0]) << 13) | self.len as u16;
            *self = ChunkEncoder::new();
            return chunk;
        }
        // Not all the same: at most 14 symbols were collected.
        if !self.has_large && (self.len >= 14 || (last && self.len > 7)) {
            let mut chunk = 0x8000u16;
            for (i, s) in self.syms[..self.len].iter().enumerate() {
                chunk |= u16::from(*s) << (13 - i);
            }
            *self = ChunkEncoder::new();
            return chunk;
        }
        // Two-bit vector of the first (up to) 7 symbols; the rest stays.
        let take = self.len.min(7);
        let mut chunk = 0xC000u16;
        for (i, s) in self.syms[..take].iter().enumerate() {
            chunk |= u16::from(*s) << (12 - 2 * i);
        }
        let rest = self.len - take;
        let mut next = ChunkEncoder::new();
        for i in 0..rest {
            next.add(self.syms[take + i]);
        }
        *self = next;
        chunk
    }

    /// Chunks still to emit to end a feedback with what was collected.
    fn pending_chunks(&self) -> usize {
        let mut e = *self;
        let mut n = 0;
        while e.len > 0 {
            e.emit(true);
            n += 1;
        }
        n
    }
}

/// Transport-wide CC receive side of one transport. See the module documentation.
#[derive(Debug)]
pub struct TwccReceiver {
    config: TwccConfig,
    unwrapper: SeqUnwrapper,
    epoch: Option<Instant>,
    /// By `ext % arrivals.len()`: empty before the first packet, then
    /// [`FIRST_ARRIVALS`] slots doubled on demand up to `capacity`.
    arrivals: Vec<Option<Arrival>>,
    capacity: usize,
    next_base: Option<u64>,
    highest: Option<u64>,
    fb_count: u8,
    next_feedback: Option<Instant>,
    stats: TwccStats,
}

/// How one feedback packet is laid out, decided before writing it.
#[derive(Debug, Clone, Copy)]
struct Plan {
    base: u64,
    count: usize,
    reference: i64,
    chunks: usize,
    delta_bytes: usize,
}

impl TwccReceiver {
    /// A receiver that has seen nothing. It allocates nothing until the first packet;
    /// its ring of arrivals then takes [`FIRST_ARRIVALS`] slots and doubles, up to the
    /// capacity, whenever more packets wait for feedback than it holds: at a steady
    /// packet rate it stops growing at rate x feedback interval (a few steps, never
    /// per packet). The full 4096 slots are 96 KiB, most of a publisher's memory if
    /// taken at join.
    pub fn new(config: TwccConfig) -> Self {
        let capacity = config.capacity.clamp(16, 1 << 15);
        TwccReceiver {
            config,
            unwrapper: SeqUnwrapper::new(),
            epoch: None,
            arrivals: Vec::new(),
            capacity,
            next_base: None,
            highest: None,
            fb_count: 0,
            next_feedback: None,
            stats: TwccStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> TwccStats {
        self.stats
    }

    fn slot(&self, ext: u64) -> usize {
        (ext % self.arrivals.len().max(1) as u64) as usize
    }

    fn arrival(&self, ext: u64) -> Option<i64> {
        self.arrivals
            .get(self.slot(ext))
            .copied()
            .flatten()
            .filter(|a| a.ext == ext)
            .map(|a| a.at_us)
    }

    /// The slots the ring of arrivals holds now (0 before the first packet).
    pub fn slots(&self) -> usize {
        self.arrivals.len()
    }

    /// Doubles the ring ([`FIRST_ARRIVALS`] the first time), up to the capacity,
    /// keeping the arrivals still to report (from `next_base` on). When the size
    /// doubles they keep distinct slots; a capacity that is no power of two may make
    /// two share the last step's slot, and the newer stays.
    fn grow(&mut self, next_base: u64) {
        let size = (self.arrivals.len() * 2)
            .max(FIRST_ARRIVALS)
            .min(self.capacity);
        let old = core::mem::replace(&mut self.arrivals, vec![None; size]);
        for a in old.into_iter().flatten().filter(|a| a.ext >= next_base) {
            let slot = self.slot(a.ext);
            if self.arrivals[slot].is_none_or(|b| b.ext < a.ext) {
                self.arrivals[slot] = Some(a);
            }
        }
    }

    /// Records a packet with transport-wide sequence number `seq` arriving at `now`.
    pub fn handle_packet(&mut self, now: Instant, seq: u16) {
        let ext = self.unwrapper.extend(seq);
        let epoch = *self.epoch.get_or_insert(now);
        let at_us =
            i64::try_from(now.saturating_duration_since(epoch).as_micros()).unwrap_or(i64::MAX);
        let next_base = *self.next_base.get_or_insert(ext);
        if ext < next_base {
            self.stats.late += 1;
            return;
        }
        if self.arrival(ext).is_some() {
            self.stats.duplicates += 1;
            return;
        }
        if self.arrivals.is_empty() {
            self.grow(next_base);
        }
        while self.arrivals.len() < self.capacity
            && ext.max(self.highest.unwrap_or(ext)) - next_base >= self.arrivals.len() as u64
        {
            self.grow(next_base);
        }
        let slot = self.slot(ext);
        self.arrivals[slot] = Some(Arrival { ext, at_us });
        self.stats.packets += 1;
        let highest = self.highest.map_or(ext, |h| h.max(ext));
        self.highest = Some(highest);
        let cap = self.arrivals.len() as u64;
        if highest - next_base >= cap {
            let base = highest + 1 - cap;
            self.stats.overflowed += base - next_base;
            self.next_base = Some(base);
        }
        if self.next_feedback.is_none() {
            self.next_feedback = Some(now + self.config.interval);
        }
    }

    /// When [`poll_feedback`](Self::poll_feedback) has something to write; `None` while
    /// every recorded packet was reported.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (base, highest) = (self.next_base?, self.highest?);
        (highest >= base).then_some(self.next_feedback).flatten()
    }

    fn plan(&self, max_len: usize) -> Option<Plan> {
        let (base, highest) = (self.next_base?, self.highest?);
        if highest < base {
            return None;
        }
        let first_rx = (base..=highest).find_map(|e| self.arrival(e))?;
        let reference = first_rx.div_euclid(REFERENCE_TICK_US);
        let mut last_us = reference * REFERENCE_TICK_US;
        let mut enc = ChunkEncoder::new();
        let mut emitted = 0usize;
        let mut delta_bytes = 0usize;
        let mut count = 0usize;
        for ext in base..=highest {
            if count == usize::from(u16::MAX) {
                break;
            }
            let (sym, bytes, next_last) = match self.arrival(ext) {
                None => (NOT_RECEIVED, 0, last_us),
                Some(at) => {
                    let ticks = (at - last_us + DELTA_TICK_US / 2).div_euclid(DELTA_TICK_US);
                    let sym = match ticks {
                        0..=255 => SMALL,
                        -32768..=32767 => LARGE,
                        // Needs a new reference time: the next feedback.
                        _ => break,
                    };
                    (sym, usize::from(sym), last_us + ticks * DELTA_TICK_US)
                }
            };
            let mut e = enc;
            let mut em = emitted;
            if !e.can_add(sym) {
                e.emit(false);
                em += 1;
            }
            e.add(sym);
            let len = FIXED_LEN + 2 * (em + e.pending_chunks()) + delta_bytes + bytes;
            if len.next_multiple_of(4) > max_len {
                break;
            }
            enc = e;
            emitted = em;
            delta_bytes += bytes;
            last_us = next_last;
            count += 1;
        }
        // A feedback ends with a received packet (trailing losses wait for the next one,
        // when the packets may still come).
        while count > 0 && self.arrival(base + count as u64 - 1).is_none() {
            count -= 1;
        }
        if count == 0 {
            return None;
        }
        // The exact layout of those `count` packets.
        let mut enc = ChunkEncoder::new();
        let mut chunks = 0;
        let mut delta_bytes = 0;
        let mut last = reference * REFERENCE_TICK_US;
        for ext in base..base + count as u64 {
            let (sym, _) = self.symbol_and_delta(ext, &mut last);
            delta_bytes += usize::from(sym);
            if !enc.can_add(sym) {
                enc.emit(false);
                chunks += 1;
            }
            enc.add(sym);
        }
        chunks += enc.pending_chunks();
        Some(Plan {
            base,
            count,
            reference,
            chunks,
            delta_bytes,
        })
    }

    /// The symbol of `ext` and its delta in ticks from `last`, the time reported so far
    /// (advanced by the delta).
    fn symbol_and_delta(&self, ext: u64, last: &mut i64) -> (u8, i64) {
        match self.arrival(ext) {
            None => (NOT_RECEIVED, 0),
            Some(at) => {
                let ticks = (at - *last + DELTA_TICK_US / 2).div_euclid(DELTA_TICK_US);
                *last += ticks * DELTA_TICK_US;
                (
                    if (0..=255).contains(&ticks) {
                        SMALL
                    } else {
                        LARGE
                    },
                    ticks,
                )
            }
        }
    }

    /// Writes one transport-cc feedback packet into `buf` if feedback is due at `now`
    /// and returns its length; `Ok(None)` when nothing is due. Call again while it
    /// returns `Some`: what did not fit `buf` follows in further packets.
    /// `sender_ssrc` is the bridge's, `media_ssrc` one of the publisher's sources.
    pub fn poll_feedback(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        sender_ssrc: u32,
        media_ssrc: u32,
    ) -> Result<Option<usize>, RtcpError> {
        if self.poll_timeout().is_none_or(|t| now < t) {
            return Ok(None);
        }
        if buf.len() < FIXED_LEN + 4 {
            return Err(RtcpError::BufferTooSmall);
        }
        let Some(plan) = self.plan(buf.len()) else {
            if self.plan(usize::MAX).is_some() {
                return Err(RtcpError::BufferTooSmall);
            }
            self.next_feedback = Some(now + self.config.interval);
            return Ok(None);
        };
        let raw = FIXED_LEN + 2 * plan.chunks + plan.delta_bytes;
        let len = raw.next_multiple_of(4);
        let buf = buf.get_mut(..len).ok_or(RtcpError::BufferTooSmall)?;
        buf.fill(0);
        let padding = len - raw;
        buf[0] = 0x80 | if padding > 0 { 0x20 } else { 0 } | FMT_TWCC;
        buf[1] = pt::RTPFB;
        buf[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
        buf[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
        buf[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
        buf[12..14].copy_from_slice(&(plan.base as u16).to_be_bytes());
        buf[14..16].copy_from_slice(&(plan.count as u16).to_be_bytes());
        let reference = (plan.reference as u32) & 0x00FF_FFFF;
        buf[16..19].copy_from_slice(&reference.to_be_bytes()[1..]);
        buf[19] = self.fb_count;
        let mut at = FIXED_LEN;
        let mut delta_at = FIXED_LEN + 2 * plan.chunks;
        let mut enc = ChunkEncoder::new();
        let mut last = plan.reference * REFERENCE_TICK_US;
        let put_chunk = |buf: &mut [u8], chunk: u16, at: &mut usize| {
            buf[*at..*at + 2].copy_from_slice(&chunk.to_be_bytes());
            *at += 2;
        };
        for ext in plan.base..plan.base + plan.count as u64 {
            let (sym, ticks) = self.symbol_and_delta(ext, &mut last);
            match sym {
                SMALL => {
                    buf[delta_at] = ticks as u8;
                    delta_at += 1;
                }
                LARGE => {
                    buf[delta_at..delta_at + 2].copy_from_slice(&(ticks as i16).to_be_bytes());
                    delta_at += 2;
                }
                _ => {}
            }
            if !enc.can_add(sym) {
                put_chunk(buf, enc.emit(false), &mut at);
            }
            enc.add(sym);
        }
        while enc.len > 0 {
            put_chunk(buf, enc.emit(true), &mut at);
        }
        debug_assert_eq!(at, FIXED_LEN + 2 * plan.chunks);
        debug_assert_eq!(delta_at, raw);
        if padding > 0 {
            buf[len - 1] = padding as u8;
        }
        self.fb_count = self.fb_count.wrapping_add(1);
        self.next_base = Some(plan.base + plan.count as u64);
        self.stats.feedback_sent += 1;
        if self.poll_timeout().is_some() && self.plan(usize::MAX).is_some() {
            // More to report than fitted: stay due.
            self.next_feedback = Some(now);
        } else {
            self.next_feedback = Some(now + self.config.interval);
        }
        Ok(Some(len))
    }
}

/// Why a transport-cc feedback packet could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TwccError {
    /// Shorter than its fixed fields, chunks or deltas announce.
    #[error("transport-cc feedback truncated")]
    Truncated,
    /// A status symbol 3 (reserved) or a run of length 0.
    #[error("transport-cc feedback has an invalid packet status chunk")]
    BadChunk,
}

/// A received transport-cc feedback packet, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccFeedback<'a> {
    /// SSRC of the feedback's sender.
    pub sender_ssrc: u32,
    /// The media SSRC field.
    pub media_ssrc: u32,
    /// Transport-wide sequence number of the first packet reported.
    pub base_seq: u16,
    /// How many packets are reported.
    pub status_count: u16,
    /// Reference time in 64 ms units (24-bit signed, sign-extended).
    pub reference_time: i32,
    /// The feedback packet count.
    pub fb_pkt_count: u8,
    chunks: &'a [u8],
    deltas: &'a [u8],
}

/// One packet's line in a feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccPacketStatus {
    /// Its transport-wide sequence number.
    pub seq: u16,
    /// When it arrived, if it did.
    pub arrival: Option<TwccArrival>,
}

/// When a reported packet arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccArrival {
    /// Its receive delta in µs (from the previous received packet, or from the
    /// reference time for the first).
    pub delta_us: i64,
    /// Its arrival in µs on the receiver's clock: reference time plus the deltas so far.
    pub at_us: i64,
}

fn chunk_len(chunk: u16) -> usize {
    match chunk >> 14 {
        0 | 1 => usize::from(chunk & 0x1FFF),
        2 => 14,
        _ => 7,
    }
}

fn chunk_symbol(chunk: u16, i: usize) -> u8 {
    match chunk >> 14 {
        0 | 1 => ((chunk >> 13) & 0x3) as u8,
        2 => ((chunk >> (13 - i)) & 1) as u8,
        _ => ((chunk >> (12 - 2 * i)) & 0x3) as u8,
    }
}

impl<'a> TwccFeedback<'a> {
    /// Parses the body of an RTPFB FMT 15 packet: everything after the 4-byte common
    /// header, padding removed (the `body` of [`rtcp::UnknownPacket`](crate::proto::rtcp::UnknownPacket)).
    pub fn parse(body: &'a [u8]) -> Result<Self, TwccError> {
        let fixed: &[u8; 16] = body.first_chunk().ok_or(TwccError::Truncated)?;
        let status_count = u16::from_be_bytes([fixed[10], fixed[11]]);
        // Sign-extend the 24-bit reference time.
        let reference_time = i32::from_be_bytes([fixed[12], fixed[13], fixed[14], 0]) >> 8;
        let rest = &body[16..];
        let mut covered = 0usize;
        let mut chunk_bytes = 0usize;
        let mut delta_bytes = 0usize;
        while covered < usize::from(status_count) {
            let c = rest
                .get(chunk_bytes..chunk_bytes + 2)
                .ok_or(TwccError::Truncated)?;
            let chunk = u16::from_be_bytes([c[0], c[1]]);
            let n = chunk_len(chunk);
            if n == 0 {
                return Err(TwccError::BadChunk);
            }
            let take = n.min(usize::from(status_count) - covered);
            for i in 0..take {
                match chunk_symbol(chunk, i) {
                    3 => return Err(TwccError::BadChunk),
                    s => delta_bytes += usize::from(s),
                }
            }
            covered += take;
            chunk_bytes += 2;
        }
        let chunks = &rest[..chunk_bytes];
        let deltas = rest
            .get(chunk_bytes..chunk_bytes + delta_bytes)
            .ok_or(TwccError::Truncated)?;
        Ok(TwccFeedback {
            sender_ssrc: u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]),
            media_ssrc: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            base_seq: u16::from_be_bytes([fixed[8], fixed[9]]),
            status_count,
            reference_time,
            fb_pkt_count: fixed[15],
            chunks,
            deltas,
        })
    }

    /// The reference time in µs.
    pub fn reference_time_us(&self) -> i64 {
        i64::from(self.reference_time) * REFERENCE_TICK_US
    }

    /// Every reported packet in order.
    pub fn packets(&self) -> TwccPackets<'a> {
        TwccPackets {
            chunks: self.chunks,
            deltas: self.deltas,
            seq: self.base_seq,
            left: usize::from(self.status_count),
            in_chunk: 0,
            at_us: self.reference_time_us(),
        }
    }
}

/// Iterator over the packets of a [`TwccFeedback`].
#[derive(Debug, Clone)]
pub struct TwccPackets<'a> {
    chunks: &'a [u8],
    deltas: &'a [u8],
    seq: u16,
    left: usize,
    in_chunk: usize,
    at_us: i64,
}

impl Iterator for TwccPackets<'_> {
    type Item = TwccPacketStatus;

    fn next(&mut self) -> Option<TwccPacketStatus> {
        if self.left == 0 {
            return None;
        }
        let chunk = match self.chunks {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => return None,
        };
        let sym = chunk_symbol(chunk, self.in_chunk);
        self.in_chunk += 1;
        if self.in_chunk >= chunk_len(chunk) {
            self.in_chunk = 0;
            self.chunks = self.chunks.get(2..).unwrap_or_default();
        }
        let delta_ticks = match (sym, self.deltas) {
            (SMALL, [d, rest @ ..]) => {
                self.deltas = rest;
                Some(i64::from(*d))
            }
            (LARGE, [a, b, rest @ ..]) => {
                self.deltas = rest;
                Some(i64::from(i16::from_be_bytes([*a, *b])))
            }
            _ => None,
        };
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        self.left -= 1;
        let arrival = delta_ticks.map(|t| {
            let delta_us = t * DELTA_TICK_US;
            self.at_us += delta_us;
            TwccArrival {
                delta_us,
                at_us: self.at_us,
            }
        });
        Some(TwccPacketStatus { seq, arrival })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::rtcp::{self, RtcpPacket};

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn parse(buf: &[u8]) -> TwccFeedback<'_> {
        let mut it = rtcp::packets(buf);
        let Some(Ok(RtcpPacket::Unknown(u))) = it.next() else {
            panic!("not one RTPFB packet: {buf:02x?}")
        };
        assert!(it.next().is_none());
        assert_eq!((u.packet_type, u.count), (pt::RTPFB, FMT_TWCC));
        TwccFeedback::parse(u.body).unwrap()
    }

    #[test]
    fn default_config() {
        let c = TwccConfig::default();
        assert_eq!(c.interval, Duration::from_millis(50));
        assert_eq!(c.capacity, 4096);
    }

    #[test]
    fn reads_the_transport_sequence_number_extension() {
        // One-byte extension id 3 carrying 0x1234.
        let p = [
            0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xBE, 0xDE, 0, 1, 0x31, 0x12, 0x34, 0, 0xAA,
        ];
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(transport_sequence_number(&h, &p, 3), Some(0x1234));
        assert_eq!(transport_sequence_number(&h, &p, 4), None);
    }

    /// The draft's example shapes by hand: packets 100..=107 with 102 and 103 lost, one
    /// arriving before its predecessor (a negative delta: a large-delta symbol).
    #[test]
    fn writes_a_known_feedback_packet() {
        let t0 = Instant::now();
        let mut r = TwccReceiver::new(TwccConfig::default());
        // Arrival offsets in µs from the first packet.
        let arrivals: [(u16, u64); 6] = [
            (100, 0),
            (101, 1_000),
            (104, 5_000),
            (105, 4_000),  // reordered: 1 ms before 104
            (106, 70_000), // 66 ms after 105: does not fit a byte
            (107, 70_250),
        ];
        for (seq, at) in arrivals {
            r.handle_packet(t0 + us(at), seq);
        }
        let now = t0 + Duration::from_millis(80);
        let mut buf = [0u8; 256];
        let n = r
            .poll_feedback(now, &mut buf, 0x0A0B_0C0D, 0x0102_0304)
            .unwrap()
            .unwrap();
        // 20 fixed + one 2-bit vector (7 symbols) + one 1-symbol run + deltas
        // 0, 4, 16, -4, 264, 1 (1+1+1+2+2+1 bytes) = 32, padded to 32.
        let expected: [u8; 32] = [
            0x80 | FMT_TWCC,
            205,
            0,
            7, // header, 8 words
            0x0A,
            0x0B,
            0x0C,
            0x0D,
            0x01,
            0x02,
            0x03,
            0x04, // SSRCs
            0,
            100,
            0,
            8, // base 100, 8 packets
            0,
            0,
            0,
            0, // reference time 0, feedback count 0
            // 2-bit vector of 1 1 0 0 1 2 2: 11 01 01 00 00 01 10 10
            0b1101_0100,
            0b0001_1010,
            // a run of one "small" symbol: 0 01 0000000000001
            0b0010_0000,
            0b0000_0001,
            // deltas in 250 µs: 0, 4, 16, -4 (two bytes), 264 (two bytes), 1
            0,
            4,
            16,
            0xFF,
            0xFC,
            0x01,
            0x08,
            1,
        ];
        assert_eq!(&buf[..n], &expected);
        let fb = parse(&buf[..n]);
        let got: Vec<(u16, Option<i64>)> = fb
            .packets()
            .map(|p| (p.seq, p.arrival.map(|a| a.at_us)))
            .collect();
        assert_eq!(
            got,
            [
                (100, Some(0)),
                (101, Some(1000)),
                (102, None),
                (103, None),
                (104, Some(5000)),
                (105, Some(4000)),
                (106, Some(70_000)),
                (107, Some(70_250)),
            ]
        );
        assert_eq!(r.stats().feedback_sent, 1);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(
            r.poll_feedback(now + Duration::from_secs(1), &mut buf, 1, 2)
                .unwrap(),
            None
        );
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    use ::rtcp::transport_feedbacks::transport_layer_cc::{
        PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, StatusVectorChunk,
        SymbolSizeTypeTcc, SymbolTypeTcc, TransportLayerCc,
    };
    use webrtc_util::marshal::{Marshal, Unmarshal};

    /// webrtc-rs's reading of a feedback: per packet, received or not and its delta.
    fn webrtc_rs_statuses(fb: &TransportLayerCc) -> Vec<Option<i64>> {
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
        let mut deltas = fb.recv_deltas.iter();
        symbols
            .into_iter()
            .map(|s| match s {
                SymbolTypeTcc::PacketNotReceived => None,
                _ => Some(deltas.next().expect("a delta per received packet").delta),
            })
            .collect()
    }

    /// Random arrival patterns (loss, reordering, bursts, stalls, seq wrap), feedback in
    /// buffers of random sizes: every feedback parses with webrtc-rs's
    /// `TransportLayerCc` and with ours to the same statuses and deltas, and both agree
    /// with what really arrived.
    #[test]
    fn feedback_matches_webrtc_rs_on_random_arrivals() {
        // What the patterns exercised, over all seeds: run-length, 1-bit and 2-bit
        // chunks, large and negative deltas, split feedbacks, new reference times.
        let (mut runs, mut one_bit, mut two_bit, mut large, mut negative, mut full) =
            (0, 0, 0, 0, 0, 0);
        for seed in 0..300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let loss = rng.below(25);
            let reorder = rng.below(10);
            let first_seq = rng.next() as u16;
            let t0 = Instant::now();
            // Send times, then arrival = send + 20 ms + jitter; some lost.
            let mut arrivals: Vec<(u64, u16)> = Vec::new(); // (arrival µs, seq)
            let mut send_us = 0u64;
            let count = 200 + rng.below(800) as u16;
            for i in 0..count {
                send_us += match rng.below(100) {
                    0 => 100_000 + rng.below(300_000), // a stall
                    1..=30 => 0,                       // a burst
                    _ => rng.below(12_000),
                };
                if seed % 50 == 7 && i == count / 2 {
                    send_us += 9_000_000; // beyond a large delta: a new reference time
                }
                if rng.below(100) < loss {
                    continue;
                }
                let jitter = if rng.below(100) < reorder {
                    rng.below(30_000)
                } else {
                    rng.below(300)
                };
                arrivals.push((send_us + 20_000 + jitter, first_seq.wrapping_add(i)));
            }
            arrivals.sort_by_key(|a| a.0);
            let first_at = arrivals[0].0;
            // When each seq arrived (relative to the first arrival, the receiver's epoch).
            let mut arrived_at: std::collections::HashMap<u16, i64> = Default::default();
            let mut r = TwccReceiver::new(TwccConfig::default());
            let mut reported_received = std::collections::HashSet::new();
            let mut expected_base: Option<u16> = None;
            let mut expected_fb_count = 0u8;
            let mut late = 0;
            let mut buf = [0u8; 1500];
            let end_us = arrivals.last().unwrap().0 + 200_000;
            let mut next = 0;
            let mut now_us = first_at;
            while now_us <= end_us {
                while next < arrivals.len() && arrivals[next].0 <= now_us {
                    let (at, seq) = arrivals[next];
                    let before = r.stats().late;
                    r.handle_packet(t0 + us(at - first_at), seq);
                    if r.stats().late == before {
                        arrived_at.insert(seq, (at - first_at) as i64);
                    } else {
                        late += 1;
                    }
                    next += 1;
                }
                let now = t0 + us(now_us - first_at);
                let size = [40usize, 64, 100, 300, 1200][rng.below(5) as usize];
                while let Some(n) = r
                    .poll_feedback(now, &mut buf[..size], 0x1111, 0x2222)
                    .unwrap()
                {
                    assert!(n <= size && n % 4 == 0);
                    let bytes = &buf[..n];
                    let theirs = TransportLayerCc::unmarshal(&mut &bytes[..]).unwrap_or_else(|e| {
                        panic!("seed {seed}: webrtc-rs refused {bytes:02x?}: {e}")
                    });
                    let ours = parse(bytes);
                    assert_eq!(theirs.base_sequence_number, ours.base_seq);
                    assert_eq!(theirs.packet_status_count, ours.status_count);
                    assert_eq!(theirs.fb_pkt_count, ours.fb_pkt_count);
                    assert_eq!(ours.fb_pkt_count, expected_fb_count, "seed {seed}");
                    expected_fb_count = expected_fb_count.wrapping_add(1);
                    assert_eq!(
                        i64::from(theirs.reference_time),
                        i64::from(ours.reference_time)
                    );
                    if let Some(b) = expected_base {
                        assert_eq!(ours.base_seq, b, "seed {seed}: feedbacks are contiguous");
                    }
                    expected_base = Some(ours.base_seq.wrapping_add(ours.status_count));
                    for c in &theirs.packet_chunks {
                        match c {
                            PacketStatusChunk::RunLengthChunk(_) => runs += 1,
                            PacketStatusChunk::StatusVectorChunk(v)
                                if v.symbol_size == SymbolSizeTypeTcc::OneBit =>
                            {
                                one_bit += 1
                            }
                            PacketStatusChunk::StatusVectorChunk(_) => two_bit += 1,
                        }
                    }
                    large += theirs
                        .recv_deltas
                        .iter()
                        .filter(|d| d.type_tcc_packet == SymbolTypeTcc::PacketReceivedLargeDelta)
                        .count();
                    negative += theirs.recv_deltas.iter().filter(|d| d.delta < 0).count();
                    if n + 8 > size {
                        full += 1;
                    }
                    let statuses = webrtc_rs_statuses(&theirs);
                    let mine: Vec<TwccPacketStatus> = ours.packets().collect();
                    assert_eq!(statuses.len(), mine.len());
                    for (their, my) in statuses.iter().zip(&mine) {
                        assert_eq!(*their, my.arrival.map(|a| a.delta_us), "seed {seed}");
                        match (my.arrival, arrived_at.get(&my.seq)) {
                            (Some(a), Some(&truth)) => {
                                assert!(
                                    (a.at_us - truth).abs() <= DELTA_TICK_US / 2,
                                    "seed {seed}: {} vs {truth}",
                                    a.at_us
                                );
                                assert!(
                                    reported_received.insert(my.seq),
                                    "seed {seed}: reported twice"
                                );
                            }
                            (None, None) => {}
                            (got, truth) => panic!(
                                "seed {seed} seq {}: reported {got:?}, arrived {truth:?}",
                                my.seq
                            ),
                        }
                    }
                    // The last packet of a feedback is a received one.
                    assert!(mine.last().unwrap().arrival.is_some());
                }
                now_us += 1_000 + rng.below(9_000);
            }
            assert_eq!(
                reported_received.len(),
                arrived_at.len(),
                "seed {seed}: every arrival reported"
            );
            assert_eq!(r.stats().late, late);
        }
        assert!(
            runs > 100
                && one_bit > 100
                && two_bit > 100
                && large > 100
                && negative > 100
                && full > 100,
            "{runs} {one_bit} {two_bit} {large} {negative} {full}"
        );
    }

    fn symbol(s: u8) -> SymbolTypeTcc {
        match s {
            0 => SymbolTypeTcc::PacketNotReceived,
            1 => SymbolTypeTcc::PacketReceivedSmallDelta,
            _ => SymbolTypeTcc::PacketReceivedLargeDelta,
        }
    }

    /// Feedback built and marshalled by webrtc-rs (run-length chunks, 1- and 2-bit
    /// vectors, small and large deltas, padding) parses to the same packets with ours.
    #[test]
    fn parser_reads_feedback_marshalled_by_webrtc_rs() {
        for seed in 0..500u64 {
            let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
            let n = 1 + rng.below(300) as usize;
            // Symbols in runs, so that run-length chunks have something to do.
            let mut syms = Vec::with_capacity(n);
            while syms.len() < n {
                let s = rng.below(3) as u8;
                let long = rng.below(4) == 0;
                let run = 1 + rng.below(if long { 40 } else { 3 }) as usize;
                syms.extend(std::iter::repeat_n(s, run.min(n - syms.len())));
            }
            let mut chunks = Vec::new();
            let mut i = 0;
            while i < n {
                let run = syms[i..].iter().take_while(|s| **s == syms[i]).count();
                let no_large_14 = !syms[i..(i + 14).min(n)].contains(&2);
                match rng.below(3) {
                    0 => {
                        chunks.push(PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                            type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                            packet_status_symbol: symbol(syms[i]),
                            run_length: run as u16,
                        }));
                        i += run;
                    }
                    1 if no_large_14 => {
                        let mut list: Vec<_> = syms[i..(i + 14).min(n)]
                            .iter()
                            .map(|s| symbol(*s))
                            .collect();
                        list.resize(14, SymbolTypeTcc::PacketNotReceived);
                        chunks.push(PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                            type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                            symbol_size: SymbolSizeTypeTcc::OneBit,
                            symbol_list: list,
                        }));
                        i += 14;
                    }
                    _ => {
                        let mut list: Vec<_> =
                            syms[i..(i + 7).min(n)].iter().map(|s| symbol(*s)).collect();
                        list.resize(7, SymbolTypeTcc::PacketNotReceived);
                        chunks.push(PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                            type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                            symbol_size: SymbolSizeTypeTcc::TwoBit,
                            symbol_list: list,
                        }));
                        i += 7;
                    }
                }
            }
            let deltas: Vec<RecvDelta> = syms
                .iter()
                .filter(|s| **s != 0)
                .map(|s| RecvDelta {
                    type_tcc_packet: symbol(*s),
                    delta: DELTA_TICK_US
                        * if *s == 1 {
                            rng.below(256) as i64
                        } else {
                            i64::from(rng.next() as i16)
                        },
                })
                .collect();
            let fb = TransportLayerCc {
                sender_ssrc: rng.next() as u32,
                media_ssrc: rng.next() as u32,
                base_sequence_number: rng.next() as u16,
                packet_status_count: n as u16,
                reference_time: (rng.next() as u32) & 0x00FF_FFFF,
                fb_pkt_count: rng.next() as u8,
                packet_chunks: chunks,
                recv_deltas: deltas.clone(),
            };
            let bytes = fb.marshal().unwrap();
            let ours = parse(&bytes);
            assert_eq!(
                (
                    ours.sender_ssrc,
                    ours.media_ssrc,
                    ours.base_seq,
                    ours.status_count,
                    ours.fb_pkt_count
                ),
                (
                    fb.sender_ssrc,
                    fb.media_ssrc,
                    fb.base_sequence_number,
                    fb.packet_status_count,
                    fb.fb_pkt_count
                )
            );
            // 24-bit two's complement.
            let reference = ((fb.reference_time << 8) as i32) >> 8;
            assert_eq!(ours.reference_time, reference);
            let mut at = i64::from(reference) * REFERENCE_TICK_US;
            let mut d = deltas.iter();
            for (k, p) in ours.packets().enumerate() {
                assert_eq!(p.seq, fb.base_sequence_number.wrapping_add(k as u16));
                if syms[k] == 0 {
                    assert_eq!(p.arrival, None, "seed {seed} packet {k}");
                } else {
                    let delta = d.next().unwrap().delta;
                    at += delta;
                    assert_eq!(
                        p.arrival,
                        Some(TwccArrival {
                            delta_us: delta,
                            at_us: at
                        }),
                        "seed {seed} packet {k}"
                    );
                }
            }
            assert_eq!(ours.packets().count(), n);
        }
    }

    #[test]
    fn malformed_feedback_is_an_error_not_a_panic() {
        assert_eq!(TwccFeedback::parse(&[0; 15]), Err(TwccError::Truncated));
        // 3 packets announced, no chunk.
        let mut body = [0u8; 16];
        body[11] = 3;
        assert_eq!(TwccFeedback::parse(&body), Err(TwccError::Truncated));
        // A run of length 0, and a reserved symbol.
        let mut b = body.to_vec();
        b.extend_from_slice(&[0x20, 0x00]);
        assert_eq!(TwccFeedback::parse(&b), Err(TwccError::BadChunk));
        let mut b = body.to_vec();
        b.extend_from_slice(&[0x60, 0x03]);
        assert_eq!(TwccFeedback::parse(&b), Err(TwccError::BadChunk));
        // Three small deltas announced, two present.
        let mut b = body.to_vec();
        b.extend_from_slice(&[0x20, 0x03, 1, 2]);
        assert_eq!(TwccFeedback::parse(&b), Err(TwccError::Truncated));
        b.push(3);
        assert_eq!(TwccFeedback::parse(&b).unwrap().packets().count(), 3);
        let mut rng = Rng(99);
        for _ in 0..20_000 {
            let len = rng.below(64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Ok(fb) = TwccFeedback::parse(&bytes) {
                assert_eq!(fb.packets().count(), usize::from(fb.status_count));
            }
        }
    }

    #[test]
    fn feedback_every_interval_and_long_loss_runs_use_run_length() {
        let t0 = Instant::now();
        let mut r = TwccReceiver::new(TwccConfig::default());
        assert_eq!(r.poll_timeout(), None);
        r.handle_packet(t0, 10);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_millis(50)));
        let mut buf = [0u8; 1200];
        assert_eq!(
            r.poll_feedback(t0 + Duration::from_millis(49), &mut buf, 1, 2)
                .unwrap(),
            None
        );
        // 3000 packets lost, then one: one run-length chunk of 3000 "not received".
        r.handle_packet(t0 + Duration::from_millis(20), 3011);
        let n = r
            .poll_feedback(t0 + Duration::from_millis(50), &mut buf, 1, 2)
            .unwrap()
            .unwrap();
        let fb = parse(&buf[..n]);
        assert_eq!(fb.status_count, 3002);
        assert!(n <= 20 + 3 * 2 + 2 + 4, "{n}");
        assert_eq!(fb.packets().filter(|p| p.arrival.is_some()).count(), 2);
        assert_eq!(
            r.poll_feedback(t0 + Duration::from_millis(50), &mut buf, 1, 2)
                .unwrap(),
            None
        );
        assert_eq!(r.poll_timeout(), None);
        r.handle_packet(t0 + Duration::from_millis(60), 3012);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_millis(100)));
        // A buffer too small for the fixed part is API misuse.
        assert_eq!(
            r.poll_feedback(t0 + Duration::from_millis(100), &mut buf[..20], 1, 2),
            Err(RtcpError::BufferTooSmall)
        );
        // The reference time counts in 64 ms from the first packet.
        r.handle_packet(t0 + Duration::from_millis(200), 3013);
        let n = r
            .poll_feedback(t0 + Duration::from_millis(200), &mut buf, 1, 2)
            .unwrap()
            .unwrap();
        let fb = parse(&buf[..n]);
        assert_eq!(fb.reference_time, 0);
        assert_eq!(fb.status_count, 2);
        let n = {
            r.handle_packet(t0 + Duration::from_millis(300), 3014);
            r.poll_feedback(t0 + Duration::from_millis(300), &mut buf, 1, 2)
                .unwrap()
                .unwrap()
        };
        let fb = parse(&buf[..n]);
        assert_eq!(fb.reference_time, 4); // 300 ms -> 4 * 64 ms
        assert_eq!(fb.packets().next().unwrap().arrival.unwrap().at_us, 300_000);
        assert_eq!(fb.fb_pkt_count, 2);
    }

    #[test]
    fn the_ring_starts_empty_and_grows_to_what_waits_without_losing_a_packet() {
        let t0 = Instant::now();
        let mut r = TwccReceiver::new(TwccConfig::default());
        assert_eq!(r.slots(), 0, "no memory before the first packet");
        let mut buf = [0u8; 1200];
        let mut reported = 0usize;
        let mut drain = |r: &mut TwccReceiver, now: Instant, reported: &mut usize| {
            while let Some(n) = r.poll_feedback(now, &mut buf, 1, 2).unwrap() {
                *reported += parse(&buf[..n])
                    .packets()
                    .filter(|p| p.arrival.is_some())
                    .count();
            }
        };
        // 1000 packets/s with feedback every 50 ms: 50 wait at most, 128 slots hold them.
        let mut seq = 65_000u16; // crosses the 16-bit wrap
        for k in 0..1000u64 {
            let now = t0 + Duration::from_millis(k);
            r.handle_packet(now, seq);
            seq = seq.wrapping_add(1);
            if k % 50 == 49 {
                drain(&mut r, now, &mut reported);
            }
        }
        assert_eq!(r.slots(), FIRST_ARRIVALS);
        assert_eq!(reported, 1000);
        // 1000 packets in one burst before the next feedback: the ring doubles to 1024
        // and every one is reported.
        let t1 = t0 + Duration::from_millis(1000);
        for k in 0..1000u64 {
            r.handle_packet(t1 + us(k), seq);
            seq = seq.wrapping_add(1);
        }
        assert_eq!(r.slots(), 1024);
        drain(&mut r, t1 + Duration::from_millis(50), &mut reported);
        assert_eq!(reported, 2000);
        assert_eq!(r.stats().overflowed, 0);
    }
}
