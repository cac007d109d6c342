//! What the estimate leaves for retransmissions toward a congested receiver: a
//! byte budget that fills at the estimate and empties by everything sent to the
//! receiver (media, retransmissions, padding), in the manner of libwebrtc's
//! pacer `IntervalBudget`.
//!
//! Media is forwarded whatever the budget says (the allocation keeps it under
//! the estimate); a retransmission goes only while the budget is above zero.
//! Without it, a receiver behind a link that suddenly carried less than it was
//! sent lost a third of its packets for seconds: each loss was NACKed and
//! re-sent on top of the media, so more was sent than the link carried, and
//! more was lost (Chromium behind a 1 Mbit/s `tbf`: 1.5 Mbit/s sent into it
//! for 3 s after the cap, the queue at 300 ms throughout). Nothing is allocated.

use std::time::{Duration, Instant};

/// The most the budget saves up while little is sent: this long at the
/// estimate (libwebrtc's pacer budget keeps 500 ms; a shorter one keeps a burst
/// of retransmissions after a quiet spell small).
pub const MAX_SAVED: Duration = Duration::from_millis(100);

/// The most the budget owes after a burst of media (a key frame): this long at
/// the estimate; retransmissions wait until it is paid back.
pub const MAX_OWED: Duration = Duration::from_millis(500);

/// Bytes the estimate allows toward one receiver, less what was sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendBudget {
    /// Bytes left; negative while a burst is being paid back.
    bytes: f64,
    /// When it was last filled.
    at: Option<Instant>,
}

impl SendBudget {
    /// Fills the budget for the time since the last call, at `rate_bps`, up to
    /// [`MAX_SAVED`] of it.
    fn fill(&mut self, now: Instant, rate_bps: u64) {
        let bytes_per_s = rate_bps as f64 / 8.0;
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.bytes = (self.bytes + bytes_per_s * dt).min(bytes_per_s * MAX_SAVED.as_secs_f64());
        }
        if self.at.is_none_or(|at| now > at) {
            self.at = Some(now);
        }
    }

    /// `size` bytes were sent at `now`, the estimate being `rate_bps`.
    pub fn on_sent(&mut self, now: Instant, size: usize, rate_bps: u64) {
        self.fill(now, rate_bps);
        let floor = -(rate_bps as f64 / 8.0) * MAX_OWED.as_secs_f64();
        self.bytes = (self.bytes - size as f64).max(floor);
    }

    /// Whether anything is left at `now` for a retransmission, the estimate
    /// being `rate_bps`.
    pub fn has_room(&mut self, now: Instant, rate_bps: u64) -> bool {
        self.fill(now, rate_bps);
        self.bytes > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn media_at_the_estimate_leaves_nothing_and_media_under_it_leaves_the_rest() {
        let t0 = Instant::now();
        let mut b = SendBudget::default();
        // 1 Mbit/s estimate: 125 bytes per ms. Media at exactly that rate,
        // one 1,250-byte packet every 10 ms.
        let rate = 1_000_000;
        let mut room = 0;
        for i in 0..200u32 {
            let now = t0 + MS * (i * 10);
            b.on_sent(now, 1_250, rate);
            if b.has_room(now + MS * 5, rate) {
                room += 1;
            }
        }
        assert!(room <= 1, "media at the estimate left room {room} times");
        // Media at 80% of it: a 1,250-byte retransmission fits every 50 ms.
        let mut b = SendBudget::default();
        let mut retransmitted = 0;
        for i in 0..200u32 {
            let now = t0 + MS * (i * 10);
            b.on_sent(now, 1_000, rate);
            if b.has_room(now, rate) {
                b.on_sent(now, 1_250, rate);
                retransmitted += 1;
            }
        }
        assert!(
            (35..=45).contains(&retransmitted),
            "{retransmitted} retransmissions in 2 s at 200 kbit/s of room"
        );
    }

    #[test]
    fn a_quiet_spell_saves_at_most_100_ms_and_a_burst_owes_at_most_500_ms() {
        let t0 = Instant::now();
        let rate = 800_000; // 100 bytes per ms
        let mut b = SendBudget::default();
        b.on_sent(t0, 0, rate);
        // Ten seconds of nothing: 10,000 bytes saved, not 1,000,000.
        let t1 = t0 + Duration::from_secs(10);
        let mut sent = 0;
        while b.has_room(t1, rate) {
            b.on_sent(t1, 1_000, rate);
            sent += 1;
        }
        assert_eq!(sent, 10);
        // A 200 KB key frame owes 50,000 bytes at most: 500 ms to pay back.
        b.on_sent(t1, 200_000, rate);
        assert!(!b.has_room(t1 + MS * 499, rate));
        assert!(b.has_room(t1 + MS * 501, rate));
    }

    #[test]
    fn a_lower_estimate_fills_slower() {
        let t0 = Instant::now();
        let mut b = SendBudget::default();
        b.on_sent(t0, 10_000, 8_000_000);
        // 10,000 bytes owed: 10 ms at 8 Mbit/s, 100 ms at 800 kbit/s.
        assert!(!b.has_room(t0 + MS * 50, 800_000));
        assert!(b.has_room(t0 + MS * 101, 800_000));
    }
}
