//! Sampled verification: account for every received media packet from its
//! plaintext RTP header, and authenticate, decrypt and check only a sample.
//!
//! In the meeting shape the generator receives about seven packets for each
//! one it sends, and one generator thread that authenticates, decrypts and
//! checksums every one of them saturates before the bridge does (the knee
//! search stopped with bound `generator`). The SRTP header is not encrypted:
//! its SSRC (the receive slot) and sequence number are enough to count the
//! packet, to follow the slot's sequence continuity (gaps, late packets) and,
//! through the slot's *anchor*, to find which packet of which stream it is.
//!
//! The anchor is the last verified packet of the slot: its sequence number and
//! the stream and counter its authenticated payload named ([`crate::payload`]).
//! A later packet of the slot with sequence number `seq` is counter
//! `anchor.counter + (seq - anchor.seq)` of the same stream (the bridge
//! rewrites sequence numbers by a constant offset per slot), and its send time
//! is looked up in the [`SendLog`] the sender filled. Every verified packet
//! checks the previous anchor's prediction: a mismatch (the header does not
//! say what the authenticated payload says, or the bridge changed the slot's
//! offset) is counted in `header_mismatches`.
//!
//! The send log holds the streams receivers get: for a simulcast video, its
//! top layer (the lower ones share its stream id with counters of their own).
//! A slot that carries a lower layer in the window is placed wrongly until its
//! next verified packet, which counts a header mismatch: sampled verification
//! assumes each slot carries one stream through the window.
//!
//! A packet that fails authentication or its checksum when it is sampled is
//! reported exactly as before (`auth_failures`, `corrupt`): a bridge that
//! damages media fails a run as long as the damage reaches the sample. The
//! sample positions are random (every Nth packet on average, [`Sampler`]) so
//! that no periodic pattern of damage slips between them. A bridge that
//! corrupts one packet in a million is only caught by full verification
//! (`--verify-every 1`, the default of `run`).

use crate::payload::{Continuity, Stamp};

/// Entries per stream in the [`SendLog`]: about 13 s of video (156 pkt/s) and
/// 41 s of audio; a packet arriving later than that has no known send time.
pub const SEND_LOG_LEN: usize = 2048;

/// The SSRC and sequence number of a datagram, read from its plaintext RTP
/// header, if it is an RTP packet (version 2, 12 bytes at least, and not
/// RTCP: the same test the client session makes before unprotecting).
pub fn rtp_header(datagram: &[u8]) -> Option<(u32, u16)> {
    let head = datagram.get(..12)?;
    let is_rtp = (128..=191).contains(&head[0]) && !(192..=223).contains(&head[1]);
    is_rtp.then(|| {
        (
            u32::from_be_bytes([head[8], head[9], head[10], head[11]]),
            u16::from_be_bytes([head[2], head[3]]),
        )
    })
}

/// When each packet of each forwarded stream was sent: a ring per stream,
/// indexed by the stream's packet counter, filled by the sender and read by
/// the receiver for packets it does not decrypt. Stream ids index a table
/// directly (no hashing on the per-packet path); everything is allocated once.
#[derive(Debug, Clone)]
pub struct SendLog {
    /// Stream id → ring number (`u32::MAX`: not logged).
    index: Vec<u32>,
    /// `(counter, send_ns)`, [`SEND_LOG_LEN`] per ring.
    entries: Vec<(u32, u64)>,
}

impl SendLog {
    /// A log for the streams `ids` (duplicates are logged once).
    pub fn new(ids: impl IntoIterator<Item = u32>) -> Self {
        let mut index: Vec<u32> = Vec::new();
        let mut rings = 0u32;
        for id in ids {
            let at = id as usize;
            if index.len() <= at {
                index.resize(at + 1, u32::MAX);
            }
            if index[at] == u32::MAX {
                index[at] = rings;
                rings += 1;
            }
        }
        // Counter u32::MAX never matches a first lap's lookup.
        let entries = vec![(u32::MAX, 0); rings as usize * SEND_LOG_LEN];
        Self { index, entries }
    }

    fn slot(&self, stream: u32, counter: u32) -> Option<usize> {
        let ring = *self.index.get(stream as usize)?;
        (ring != u32::MAX).then(|| ring as usize * SEND_LOG_LEN + counter as usize % SEND_LOG_LEN)
    }

    /// Packet `counter` of `stream` was sent at `send_ns`.
    pub fn record(&mut self, stream: u32, counter: u32, send_ns: u64) {
        if let Some(e) = self
            .slot(stream, counter)
            .and_then(|i| self.entries.get_mut(i))
        {
            *e = (counter, send_ns);
        }
    }

    /// When packet `counter` of `stream` was sent, if it is still in the log.
    pub fn lookup(&self, stream: u32, counter: u32) -> Option<u64> {
        let &(c, ns) = self.entries.get(self.slot(stream, counter)?)?;
        (c == counter).then_some(ns)
    }
}

/// Where the next verified packets fall: after a random gap of 1 to
/// `2 × every − 1` packets (every `every`th on average; each one with
/// `every = 1`). xorshift: cheap, and needs no secret.
#[derive(Debug, Clone)]
pub struct Sampler {
    every: u32,
    state: u64,
}

impl Sampler {
    /// Every `every`th packet on average (0 counts as 1), positions drawn
    /// from `seed`.
    pub fn new(every: u32, seed: u64) -> Self {
        Self {
            every: every.max(1),
            state: seed | 1,
        }
    }

    /// The mean gap.
    pub fn every(&self) -> u32 {
        self.every
    }

    /// The gap (≥ 1) from one verified packet of a slot to the next.
    pub fn next_gap(&mut self) -> u32 {
        if self.every == 1 {
            return 1;
        }
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        1 + (x % u64::from(2 * self.every - 1)) as u32
    }
}

/// The last verified packet of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    seq: u16,
    stream: u32,
    counter: u32,
}

/// One receive slot (an SSRC at one receiving leg).
#[derive(Debug, Clone)]
pub struct Slot {
    /// The slot's SSRC.
    pub ssrc: u32,
    /// Sequence continuity of every packet of the slot, verified or not.
    pub continuity: Continuity,
    anchor: Anchor,
    /// Packets until the next verified one.
    until_verify: u32,
}

impl Slot {
    /// A slot opened by its first (verified) packet, `seq` carrying `stamp`.
    pub fn open(ssrc: u32, seq: u16, stamp: &Stamp, sampler: &mut Sampler) -> Self {
        let mut continuity = Continuity::default();
        continuity.push(seq);
        Self {
            ssrc,
            continuity,
            anchor: Anchor {
                seq,
                stream: stamp.stream,
                counter: stamp.counter,
            },
            until_verify: sampler.next_gap(),
        }
    }

    /// Whether the next packet of the slot is to be verified. Call once per
    /// packet, then [`Slot::verified`] or [`Slot::unverified`] (or nothing,
    /// when it failed verification: it is then not counted in the slot).
    pub fn take_turn(&mut self) -> bool {
        self.until_verify = self.until_verify.saturating_sub(1);
        self.until_verify == 0
    }

    /// A packet with sequence number `seq` passed authentication and its
    /// checksum and carried `stamp`: it becomes the anchor. Returns whether it
    /// contradicted the previous anchor's prediction (a header mismatch).
    pub fn verified(&mut self, seq: u16, stamp: &Stamp, sampler: &mut Sampler) -> bool {
        self.continuity.push(seq);
        let mismatch = self.predict(seq) != (stamp.stream, stamp.counter);
        self.anchor = Anchor {
            seq,
            stream: stamp.stream,
            counter: stamp.counter,
        };
        self.until_verify = sampler.next_gap();
        mismatch
    }

    /// A packet with sequence number `seq` accounted from its header: returns
    /// the stream and counter it is, by the anchor.
    pub fn unverified(&mut self, seq: u16) -> (u32, u32) {
        self.continuity.push(seq);
        self.predict(seq)
    }

    fn predict(&self, seq: u16) -> (u32, u32) {
        // Signed distance: a packet from before the anchor (reordered) too.
        let delta = seq.wrapping_sub(self.anchor.seq) as i16;
        (
            self.anchor.stream,
            self.anchor.counter.wrapping_add_signed(i32::from(delta)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(stream: u32, counter: u32) -> Stamp {
        Stamp {
            stream,
            counter,
            send_ns: u64::from(counter) * 1000,
        }
    }

    #[test]
    fn the_header_gives_ssrc_and_sequence_and_rtcp_and_control_are_not_media() {
        let mut p = [0u8; 40];
        p[0] = 0x80;
        p[1] = 96;
        p[2..4].copy_from_slice(&65_535u16.to_be_bytes());
        p[8..12].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        assert_eq!(rtp_header(&p), Some((0xdead_beef, 65_535)));
        assert_eq!(rtp_header(&p[..11]), None, "shorter than a header");
        p[1] = 200; // SRTCP sender report
        assert_eq!(rtp_header(&p), None);
        p[1] = 96;
        p[0] = 0x16; // DTLS handshake
        assert_eq!(rtp_header(&p), None);
        p[0] = 0x00; // STUN
        assert_eq!(rtp_header(&p), None);
    }

    #[test]
    fn the_send_log_answers_for_the_packets_it_still_holds() {
        let mut log = SendLog::new([3, 5, 3]);
        for c in 0..3000u32 {
            log.record(5, c, u64::from(c) * 10);
        }
        assert_eq!(log.lookup(5, 2999), Some(29_990));
        assert_eq!(log.lookup(5, 2999 - SEND_LOG_LEN as u32 + 1), Some(9520));
        assert_eq!(log.lookup(5, 100), None, "overwritten a lap later");
        assert_eq!(log.lookup(3, 0), None, "never sent");
        assert_eq!(log.lookup(4, 0), None, "not logged");
        assert_eq!(log.lookup(1000, 0), None, "beyond the table");
        log.record(1000, 0, 1); // ignored, not a panic
    }

    #[test]
    fn the_sampler_verifies_every_packet_at_one_and_about_one_in_n_otherwise() {
        let mut s = Sampler::new(1, 7);
        assert!((0..100).all(|_| s.next_gap() == 1));
        let mut s = Sampler::new(16, 7);
        let gaps: Vec<u32> = (0..10_000).map(|_| s.next_gap()).collect();
        assert!(gaps.iter().all(|&g| (1..=31).contains(&g)));
        let mean = gaps.iter().map(|&g| f64::from(g)).sum::<f64>() / gaps.len() as f64;
        assert!((15.0..17.0).contains(&mean), "mean gap {mean}");
        assert!(gaps.windows(2).any(|w| w[0] != w[1]), "not periodic");
    }

    /// Unverified packets are placed by the anchor across the sequence
    /// number's wrap, and a reordered one from before the anchor too.
    #[test]
    fn unverified_packets_are_attributed_across_wrap_and_reorder() {
        let mut sampler = Sampler::new(1000, 1);
        let mut slot = Slot::open(9, 65_534, &stamp(7, 100), &mut sampler);
        assert_eq!(slot.unverified(65_535), (7, 101));
        assert_eq!(slot.unverified(1), (7, 103), "0 lost, wrapped");
        assert_eq!(slot.unverified(0), (7, 102), "0 came late");
        assert_eq!(slot.continuity.gaps, 1);
        assert_eq!(slot.continuity.late, 1);
        assert!(!slot.verified(2, &stamp(7, 104), &mut sampler));
        // Anchored at 2 now: one from before it.
        assert_eq!(slot.unverified(65_535), (7, 101));
        assert_eq!(slot.continuity.received, 6);
    }

    /// A header that does not say what its authenticated payload says (the
    /// sequence number moved, or another stream's packet in the slot) is a
    /// header mismatch when the next sample is verified.
    #[test]
    fn a_verified_packet_that_contradicts_the_header_is_a_mismatch() {
        let mut sampler = Sampler::new(4, 1);
        let mut slot = Slot::open(9, 10, &stamp(7, 100), &mut sampler);
        assert!(!slot.verified(14, &stamp(7, 104), &mut sampler));
        assert!(slot.verified(15, &stamp(7, 200), &mut sampler), "counter");
        assert!(slot.verified(16, &stamp(8, 201), &mut sampler), "stream");
        assert!(
            !slot.verified(17, &stamp(8, 202), &mut sampler),
            "re-anchored"
        );
    }

    /// With `every` N, a slot verifies its packets at gaps of 1 to 2N−1.
    #[test]
    fn a_slot_takes_turns_by_the_sampler() {
        let mut sampler = Sampler::new(8, 3);
        let mut slot = Slot::open(9, 0, &stamp(1, 0), &mut sampler);
        let mut since = 0u32;
        let mut verified = 0;
        for seq in 1..5000u16 {
            since += 1;
            if slot.take_turn() {
                assert!((1..=15).contains(&since), "gap {since}");
                since = 0;
                verified += 1;
                slot.verified(seq, &stamp(1, u32::from(seq)), &mut sampler);
            } else {
                slot.unverified(seq);
            }
        }
        assert!((500..750).contains(&verified), "{verified} of 4999");
        assert_eq!(slot.continuity.gaps, 0);
    }
}
