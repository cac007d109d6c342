//! How much a receiver is re-sent while its link is losing what it is sent:
//! a token bucket at [`SHARE_WHILE_LOSING`] of its bandwidth estimate, at most
//! [`DEPTH`] of it saved up.
//!
//! Why: retransmissions toward a receiver leave untracked by its
//! transport-wide sequence numbers, so the send-side estimate does not see
//! them, and behind a bottleneck that is dropping what it is sent they are
//! more of what it drops. Measured with Chromium behind a 1 Mbit/s `tbf` at
//! the onset of the cap: 187 retransmissions in the 1.1 s after the first
//! loss (8-35 per 100 ms, up to 35 KB per 100 ms into a link that carries
//! 12.5), the queue stayed at 250-320 ms for a second after the layers came
//! down, with 30-60% of what was sent lost, key frames of the smaller layers
//! included. libwebrtc limits retransmissions to its target rate the same
//! way (`RateLimiter` on the RTP sender).

use std::time::{Duration, Instant};

/// Share of the estimate retransmissions may take while the link is losing.
pub const SHARE_WHILE_LOSING: f64 = 0.1;

/// The most the bucket saves up, as time at its rate.
pub const DEPTH: Duration = Duration::from_millis(200);

/// One receiver's retransmission budget.
#[derive(Debug, Clone, Copy, Default)]
pub struct RtxBudget {
    /// Bytes that may be re-sent now (negative after a packet larger than
    /// what was left).
    tokens: f64,
    at: Option<Instant>,
}

impl RtxBudget {
    /// Whether a retransmission may leave at `now` toward a link whose
    /// estimate is `estimate_bps` and which is losing what it is sent.
    pub fn allows(&mut self, now: Instant, estimate_bps: u64) -> bool {
        let rate = estimate_bps as f64 * SHARE_WHILE_LOSING / 8.0;
        let depth = rate * DEPTH.as_secs_f64();
        let elapsed = self
            .at
            .replace(now)
            .map_or(DEPTH, |t| now.saturating_duration_since(t));
        self.tokens = (self.tokens + rate * elapsed.as_secs_f64()).min(depth);
        self.tokens > 0.0
    }

    /// `bytes` were re-sent.
    pub fn spend(&mut self, bytes: usize) {
        self.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a 1 Mbit/s estimate, a burst of NACKs for 1,200-byte packets
    /// gets about 200 ms of 100 kbit/s at once, then about 10 a second.
    #[test]
    fn a_losing_link_is_re_sent_at_most_a_tenth_of_its_estimate() {
        let t0 = Instant::now();
        let mut b = RtxBudget::default();
        let mut sent = 0;
        while b.allows(t0, 1_000_000) {
            b.spend(1200);
            sent += 1;
        }
        assert_eq!(
            sent, 3,
            "2,500 bytes saved up: three packets, the last in debt"
        );
        let mut per_s = 0;
        for ms in 1..=1000u64 {
            let now = t0 + Duration::from_millis(ms);
            if b.allows(now, 1_000_000) {
                b.spend(1200);
                per_s += 1;
            }
        }
        assert!((9..=11).contains(&per_s), "{per_s} in a second");
    }
}
