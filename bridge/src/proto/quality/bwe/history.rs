//! What the bridge sent one receiver, by transport-wide sequence number: the
//! send time and size of each packet, so the receiver's transport-cc feedback
//! (which reports only sequence numbers and arrival times) can be matched to
//! its sends. A ring that starts empty and doubles, up to its capacity, only
//! while a send it would overwrite is still waiting for its feedback (younger
//! than [`GROW_HORIZON_US`], unreported): it ends as large as the receiver's
//! packet rate times its feedback delay needs, in a few steps, and never
//! allocates again once it holds that (never per packet in steady state).

use std::time::Instant;

/// How many sends the history keeps by default: about 2 s at 1000 packets/s
/// (12 Mbit/s of 1200-byte packets), while feedback arrives every 50-100 ms.
pub const DEFAULT_HISTORY: usize = 2048;

/// The ring's size at the first send (or the capacity, if smaller).
pub const FIRST_HISTORY: usize = 64;

/// A send younger than this that got no feedback yet is worth keeping: the
/// ring grows rather than overwrite it. Feedback comes every 50-100 ms; one
/// missing for a second was lost.
pub const GROW_HORIZON_US: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// Extended sequence number + 1 (0: empty).
    ext: u64,
    /// Send time in µs since the history's first send.
    sent_us: u64,
    size: u16,
    reported: bool,
}

/// One send, as looked up from a feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentPacket {
    /// Extended (unwrapped) transport-wide sequence number.
    pub ext_seq: u64,
    /// Send time in µs since the history's first send.
    pub sent_us: u64,
    /// Its size on the wire (RTP packet, SRTP tag included), bytes.
    pub size: u16,
}

/// A ring of the last sends of one transport.
#[derive(Debug)]
pub struct SendHistory {
    /// Sends by `ext % entries.len()`; empty before the first send.
    entries: Vec<Entry>,
    /// The most entries the ring grows to.
    capacity: usize,
    epoch: Option<Instant>,
    /// Extended sequence number of the last send.
    last_ext: Option<u64>,
}

impl SendHistory {
    /// A history of up to `capacity` sends (at least 16). It allocates
    /// nothing until the first send; see the module documentation.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Vec::new(),
            capacity: capacity.max(16),
            epoch: None,
            last_ext: None,
        }
    }

    /// µs from the first send to `now`.
    pub fn micros(&self, now: Instant) -> u64 {
        self.epoch
            .map_or(0, |e| now.saturating_duration_since(e).as_micros() as u64)
    }

    /// Records a packet with transport-wide sequence number `seq` of `size`
    /// bytes sent at `now`; returns its extended sequence number.
    pub fn record(&mut self, now: Instant, seq: u16, size: usize) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        let ext = self.extend(seq);
        if self.last_ext.is_none_or(|l| ext > l) {
            self.last_ext = Some(ext);
        }
        let sent_us = now.saturating_duration_since(epoch).as_micros() as u64;
        if self.entries.is_empty() {
            self.grow();
        }
        while self.entries.len() < self.capacity {
            let n = self.entries.len() as u64;
            let e = &self.entries[(ext % n) as usize];
            let waiting = e.ext != 0
                && e.ext != ext + 1
                && !e.reported
                && sent_us.saturating_sub(e.sent_us) < GROW_HORIZON_US;
            if !waiting {
                break;
            }
            self.grow();
        }
        let n = self.entries.len() as u64;
        let e = &mut self.entries[(ext % n) as usize];
        *e = Entry {
            ext: ext + 1,
            sent_us,
            size: size.min(usize::from(u16::MAX)) as u16,
            reported: false,
        };
        ext
    }

    /// How many sends the ring holds now (0 before the first send).
    pub fn slots(&self) -> usize {
        self.entries.len()
    }

    /// Doubles the ring ([`FIRST_HISTORY`] the first time), up to the
    /// capacity. Sends keep distinct slots when the size doubles (numbers
    /// apart by a multiple of the doubled size are apart by a multiple of the
    /// old one too); a capacity that is no power of two may make two share
    /// the last step's slot, and the newer stays.
    fn grow(&mut self) {
        let size = (self.entries.len() * 2)
            .max(FIRST_HISTORY)
            .min(self.capacity);
        let old = core::mem::replace(&mut self.entries, vec![Entry::default(); size]);
        let n = size as u64;
        for e in old.into_iter().filter(|e| e.ext != 0) {
            let slot = &mut self.entries[((e.ext - 1) % n) as usize];
            if slot.ext < e.ext {
                *slot = e;
            }
        }
    }

    /// The extended form of `seq`: the one nearest the last send.
    fn extend(&self, seq: u16) -> u64 {
        let Some(last) = self.last_ext else {
            // Start high enough that a step back does not underflow.
            return (1 << 16) + u64::from(seq);
        };
        let diff = seq.wrapping_sub(last as u16) as i16;
        last.saturating_add_signed(i64::from(diff))
    }

    /// The send of `seq` (a sequence number from a feedback), if the ring still
    /// holds it and it was not reported before; marks it reported.
    pub fn take(&mut self, seq: u16) -> Option<SentPacket> {
        self.last_ext?;
        let ext = self.extend(seq);
        let n = self.entries.len().max(1) as u64;
        let e = self.entries.get_mut((ext % n) as usize)?;
        if e.ext != ext + 1 || e.reported {
            return None;
        }
        e.reported = true;
        Some(SentPacket {
            ext_seq: ext,
            sent_us: e.sent_us,
            size: e.size,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_send_is_found_once_by_its_sequence_number() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(64);
        h.record(t0, 10, 1000);
        h.record(t0 + Duration::from_millis(3), 11, 500);
        let p = h.take(11).unwrap();
        assert_eq!((p.sent_us, p.size), (3000, 500));
        assert!(h.take(11).is_none(), "reported twice");
        assert!(h.take(12).is_none(), "never sent");
        assert_eq!(h.take(10).unwrap().size, 1000);
    }

    #[test]
    fn sequence_numbers_wrap_into_increasing_extended_ones() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(64);
        for (i, seq) in [65_534u16, 65_535, 0, 1].into_iter().enumerate() {
            h.record(t0 + Duration::from_millis(i as u64), seq, 100);
        }
        let a = h.take(65_535).unwrap();
        let b = h.take(0).unwrap();
        assert_eq!(b.ext_seq, a.ext_seq + 1);
        assert_eq!(b.sent_us, 2000);
    }

    #[test]
    fn sends_older_than_the_ring_are_forgotten() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(16);
        for seq in 0..40u16 {
            h.record(t0, seq, 100);
        }
        assert!(h.take(5).is_none());
        assert!(h.take(39).is_some());
    }

    #[test]
    fn the_ring_starts_empty_and_grows_only_while_feedback_is_outstanding() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(DEFAULT_HISTORY);
        assert_eq!(h.slots(), 0, "no memory before the first send");
        assert!(h.take(7).is_none());
        // 1000 packets/s, each reported 50 ms later: 64 slots hold that.
        // Send n packets 1 ms apart; feedback reports each `delay` sends later
        // (0: no feedback).
        let (mut sent, mut acked) = (0usize, 0usize);
        let mut t = t0;
        let mut run = |h: &mut SendHistory, n: usize, delay: usize, t: &mut Instant| {
            for _ in 0..n {
                h.record(*t, sent as u16, 1000);
                sent += 1;
                while delay > 0 && acked + delay < sent {
                    assert!(
                        h.take(acked as u16).is_some(),
                        "{acked} kept until its feedback"
                    );
                    acked += 1;
                }
                *t += Duration::from_millis(1);
            }
            sent
        };
        run(&mut h, 1000, 50, &mut t);
        assert_eq!(h.slots(), FIRST_HISTORY);
        // Feedback 200 ms late: the ring doubles twice, and no send is lost.
        run(&mut h, 1000, 200, &mut t);
        assert_eq!(h.slots(), 256);
        // No feedback at all: it grows to hold a second of sends, then stops:
        // older unreported sends are given up.
        let last = (run(&mut h, 3000, 0, &mut t) - 1) as u16;
        assert_eq!(h.slots(), 1024);
        assert!(h.take(last.wrapping_sub(999)).is_some());
        assert!(h.take(last.wrapping_sub(1024)).is_none());
    }
}
