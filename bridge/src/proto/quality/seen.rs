//! Which of a stream's recent sequence numbers arrived: a bit per number over
//! the last [`WINDOW`], for deciding whether a retransmission brings anything.
//!
//! Why it exists: Chrome's bandwidth probes with RTX negotiated, the more so
//! with simulcast, are "redundant payloads": RTX copies of media it sent moments
//! ago, often the same packet over and over. Forwarded as originals they are
//! duplicates that each receiver's SRTP replay check drops before its
//! transport-cc accounting, so the receiver's feedback reports them lost: in a
//! three-page Chromium call, 35-47% of the video packets sent to the page
//! watching 180p were such copies of one packet, and its estimate fell to 0.
//! A simulcast layer's packet cache refuses a copy of what it holds too, but
//! the window also covers packets the cache did not keep (too large) and
//! decides before anything else is touched.
//!
//! Per stream: 256 bits and a `u16`, written when a packet arrives; no
//! allocation.

/// How many sequence numbers back the window remembers.
pub const WINDOW: u16 = 256;

/// Whether a sequence number arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// It arrived.
    Yes,
    /// It did not (yet): newer than anything seen, or a hole in the window.
    No,
    /// Older than the window: no longer known (and too late to matter).
    TooOld,
}

/// The arrival bits of one stream's last [`WINDOW`] sequence numbers.
#[derive(Debug, Clone, Default)]
pub struct SeenWindow {
    highest: Option<u16>,
    bits: [u64; 4],
}

impl SeenWindow {
    /// A window that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    fn bit(seq: u16) -> (usize, u64) {
        let i = usize::from(seq % WINDOW);
        (i / 64, 1u64 << (i % 64))
    }

    /// Whether `seq` arrived.
    pub fn contains(&self, seq: u16) -> Seen {
        let Some(highest) = self.highest else {
            return Seen::No;
        };
        let back = highest.wrapping_sub(seq);
        if back >= 0x8000 {
            return Seen::No; // newer than the highest
        }
        if back >= WINDOW {
            return Seen::TooOld;
        }
        let (word, mask) = Self::bit(seq);
        if self.bits.get(word).is_some_and(|w| w & mask != 0) {
            Seen::Yes
        } else {
            Seen::No
        }
    }

    /// Records that `seq` arrived.
    pub fn insert(&mut self, seq: u16) {
        match self.highest {
            None => self.highest = Some(seq),
            Some(highest) => {
                let ahead = seq.wrapping_sub(highest);
                if ahead != 0 && ahead < 0x8000 {
                    // Newer: the numbers skipped over have not arrived.
                    if ahead >= WINDOW {
                        self.bits = [0; 4];
                    } else {
                        for s in 1..=ahead {
                            let (word, mask) = Self::bit(highest.wrapping_add(s));
                            if let Some(w) = self.bits.get_mut(word) {
                                *w &= !mask;
                            }
                        }
                    }
                    self.highest = Some(seq);
                } else if highest.wrapping_sub(seq) >= WINDOW {
                    return; // older than the window
                }
            }
        }
        let (word, mask) = Self::bit(seq);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_of_an_arrived_packet_is_seen_and_a_hole_is_not() {
        let mut w = SeenWindow::new();
        assert_eq!(w.contains(10), Seen::No);
        for s in [10u16, 11, 13] {
            w.insert(s);
        }
        assert_eq!(w.contains(11), Seen::Yes);
        assert_eq!(w.contains(12), Seen::No, "a hole");
        assert_eq!(w.contains(14), Seen::No, "newer than anything");
        w.insert(12);
        assert_eq!(w.contains(12), Seen::Yes, "the hole filled late");
    }

    #[test]
    fn the_window_slides_and_wraps() {
        let mut w = SeenWindow::new();
        w.insert(65_530);
        w.insert(65_535);
        w.insert(3); // wrapped
        assert_eq!(w.contains(65_535), Seen::Yes);
        assert_eq!(w.contains(65_533), Seen::No);
        assert_eq!(w.contains(1), Seen::No);
        w.insert(3 + WINDOW);
        assert_eq!(w.contains(3), Seen::TooOld);
        assert_eq!(w.contains(3 + WINDOW), Seen::Yes);
        // Bits of numbers that slid out are cleared when their slot comes round.
        for s in 4 + WINDOW..=3 + 2 * WINDOW {
            assert_ne!(w.contains(s), Seen::Yes, "{s}");
        }
    }

    #[test]
    fn a_jump_beyond_the_window_forgets_everything_before_it() {
        let mut w = SeenWindow::new();
        for s in 0..100u16 {
            w.insert(s);
        }
        w.insert(1_000);
        assert_eq!(w.contains(99), Seen::TooOld);
        for s in 1_000 - WINDOW + 1..1_000 {
            assert_eq!(w.contains(s), Seen::No, "{s}");
        }
    }
}
