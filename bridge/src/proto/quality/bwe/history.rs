//! What the bridge sent one receiver, by transport-wide sequence number: the
//! send time and size of each packet, so the receiver's transport-cc feedback
//! (which reports only sequence numbers and arrival times) can be matched to
//! its sends. A fixed ring, allocated once; nothing per packet.

use std::time::Instant;

/// How many sends the history keeps by default: about 2 s at 1000 packets/s
/// (12 Mbit/s of 1200-byte packets), while feedback arrives every 50-100 ms.
pub const DEFAULT_HISTORY: usize = 2048;

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
    entries: Box<[Entry]>,
    epoch: Option<Instant>,
    /// Extended sequence number of the last send.
    last_ext: Option<u64>,
}

impl SendHistory {
    /// A history of `capacity` sends (at least 16).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: vec![Entry::default(); capacity.max(16)].into_boxed_slice(),
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
        let n = self.entries.len() as u64;
        let e = &mut self.entries[(ext % n) as usize];
        *e = Entry {
            ext: ext + 1,
            sent_us: now.saturating_duration_since(epoch).as_micros() as u64,
            size: size.min(usize::from(u16::MAX)) as u16,
            reported: false,
        };
        ext
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
        let n = self.entries.len() as u64;
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
}
