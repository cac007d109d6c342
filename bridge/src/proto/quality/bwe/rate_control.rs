//! The delay-based rate controller (draft-ietf-rmcat-gcc-02 §5.5): a state
//! machine driven by the overuse detector. Overuse: decrease to 0.85 x the
//! acknowledged bitrate (and remember that rate as the link's capacity).
//! Normal: increase; additively (about one packet per response time) while a
//! capacity learned at a decrease stands, multiplicatively when there is none
//! or the estimate is far below it (under [`BETA`] times its lower bound, the
//! bounds being three standard deviations off: after a loss-based cut, say).
//! As in WebRTC, the capacity is forgotten when the acknowledged bitrate goes
//! above its upper bound (the link got better), not when the estimate does: a
//! receiver whose layers do not fill the link climbs only additively above
//! the rate that congested it, so it does not retry a too-large layer every
//! few seconds. Underuse: hold (the queue drains first).
//!
//! Deviation from WebRTC, deliberate: the estimate is not capped at 1.5 x the
//! acknowledged bitrate. The bridge sends what its layers produce, not what the
//! estimate allows, and it does not probe with padding yet; with the cap a
//! receiver on a low layer could never be estimated above it. Without it the
//! estimate grows until a higher layer is tried, and overuse brings it back to
//! what got through. The multiplicative increase is faster than GCC's 8%/s for
//! the same reason (it stands in for WebRTC's exponential start-up probes):
//! [`STARTUP_INCREASE`] per second until the first overuse, [`FAR_INCREASE`]
//! per second after it when far from the learned capacity.

/// Multiplicative increase per second before any overuse was seen.
pub const STARTUP_INCREASE: f64 = 2.0;
/// Multiplicative increase per second when far from the learned capacity.
pub const FAR_INCREASE: f64 = 1.5;
/// Decrease factor on overuse, of the acknowledged bitrate.
pub const BETA: f64 = 0.85;
/// Response time assumed for the additive increase (100 ms + an RTT of 100 ms).
const RESPONSE_TIME_S: f64 = 0.2;
/// Least additive increase, bits per second per second.
const MIN_ADDITIVE_BPS: f64 = 4_000.0;
/// Packet size assumed for the additive increase, bits.
const PACKET_BITS: f64 = 1200.0 * 8.0;
/// No second decrease within this long of one (µs): the first has to take effect.
const DECREASE_HOLDOFF_US: u64 = 200_000;

/// Where the rate controller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Hold,
    Increase,
    Decrease,
}

/// The link capacity as the acknowledged bitrate at overuse shows it (kbps),
/// with its normalised variance (WebRTC's `LinkCapacityEstimator`).
#[derive(Debug, Clone, Copy)]
struct Capacity {
    kbps: f64,
    var: f64,
}

impl Capacity {
    fn upper_kbps(&self) -> f64 {
        self.kbps + 3.0 * (self.var * self.kbps).sqrt()
    }
    fn lower_kbps(&self) -> f64 {
        self.kbps - 3.0 * (self.var * self.kbps).sqrt()
    }
}

/// AIMD over the detector's signal.
#[derive(Debug, Clone)]
pub struct RateControl {
    estimate: f64,
    min_bps: f64,
    max_bps: f64,
    state: State,
    capacity: Option<Capacity>,
    seen_overuse: bool,
    last_update_us: Option<u64>,
    last_decrease_us: Option<u64>,
}

impl RateControl {
    /// A controller starting at `start_bps`, kept within `min_bps..=max_bps`.
    pub fn new(start_bps: u64, min_bps: u64, max_bps: u64) -> Self {
        Self {
            estimate: start_bps as f64,
            min_bps: min_bps as f64,
            max_bps: max_bps as f64,
            state: State::Hold,
            capacity: None,
            seen_overuse: false,
            last_update_us: None,
            last_decrease_us: None,
        }
    }

    /// The estimate, bits per second.
    pub fn estimate(&self) -> u64 {
        self.estimate as u64
    }

    /// Sets the estimate (the loss controller lowered it).
    pub fn lower_to(&mut self, bps: u64) {
        self.estimate = self.estimate.min(bps as f64).max(self.min_bps);
    }

    /// Raises the estimate to what a probe measured (within the ceiling); a
    /// capacity learned below it no longer holds.
    pub fn raise_to(&mut self, bps: u64) {
        let bps = bps as f64;
        if bps > self.estimate {
            self.estimate = bps.min(self.max_bps);
            if self.capacity.is_some_and(|c| bps / 1000.0 > c.upper_kbps()) {
                self.capacity = None;
            }
        }
    }

    /// Whether a capacity learned at an overuse holds the estimate to additive
    /// increase (rather than still searching upward).
    pub fn near_capacity(&self) -> bool {
        let kbps = self.estimate / 1000.0;
        self.capacity.is_some_and(|c| kbps >= BETA * c.lower_kbps())
    }

    /// One update at `now_us` (the sender's clock) with the detector's signal
    /// and the acknowledged bitrate.
    pub fn update(&mut self, now_us: u64, usage: super::BandwidthUsage, acked: Option<u64>) {
        use super::BandwidthUsage::*;
        let last = self.last_update_us.replace(now_us).unwrap_or(now_us);
        let dt_s = (now_us.saturating_sub(last) as f64 / 1e6).min(1.0);
        self.state = match (usage, self.state) {
            (Overusing, _) => State::Decrease,
            (Underusing, _) => State::Hold,
            (Normal, State::Decrease) => State::Hold,
            (Normal, _) => State::Increase,
        };
        if let (Some(a), Some(c)) = (acked, self.capacity)
            && (a as f64 / 1000.0) > c.upper_kbps()
        {
            // More got through than the capacity learned: the link changed.
            self.capacity = None;
        }
        match self.state {
            State::Hold => {}
            State::Increase => {
                if self.near_capacity() {
                    let per_s = (PACKET_BITS / RESPONSE_TIME_S).max(MIN_ADDITIVE_BPS);
                    self.estimate += per_s * dt_s;
                } else {
                    let factor = if self.seen_overuse {
                        FAR_INCREASE
                    } else {
                        STARTUP_INCREASE
                    };
                    self.estimate *= factor.powf(dt_s);
                }
            }
            State::Decrease => {
                let held = self
                    .last_decrease_us
                    .is_some_and(|t| now_us.saturating_sub(t) < DECREASE_HOLDOFF_US);
                if !held {
                    let basis = acked.map_or(self.estimate, |a| a as f64);
                    let lowered = (BETA * basis).min(self.estimate);
                    self.estimate = lowered;
                    self.learn_capacity(basis / 1000.0);
                    self.seen_overuse = true;
                    self.last_decrease_us = Some(now_us);
                }
                self.state = State::Hold;
            }
        }
        self.estimate = self.estimate.clamp(self.min_bps, self.max_bps);
    }

    fn learn_capacity(&mut self, sample_kbps: f64) {
        let c = match self.capacity {
            Some(c) if sample_kbps >= c.lower_kbps() => {
                let kbps = 0.95 * c.kbps + 0.05 * sample_kbps;
                let norm = kbps.max(1.0);
                let var =
                    (0.95 * c.var + 0.05 * (kbps - sample_kbps).powi(2) / norm).clamp(0.4, 2.5);
                Capacity { kbps, var }
            }
            // First sample, or far below the last: start over from it.
            _ => Capacity {
                kbps: sample_kbps,
                var: 0.4,
            },
        };
        self.capacity = Some(c);
    }
}

#[cfg(test)]
mod tests {
    use super::super::BandwidthUsage;
    use super::*;

    #[test]
    fn overuse_decreases_to_beta_times_acked_and_holds_off_a_second_decrease() {
        let mut r = RateControl::new(1_000_000, 30_000, 10_000_000);
        r.update(0, BandwidthUsage::Overusing, Some(800_000));
        assert_eq!(r.estimate(), 680_000);
        r.update(50_000, BandwidthUsage::Overusing, Some(600_000));
        assert_eq!(r.estimate(), 680_000);
    }

    #[test]
    fn increase_is_multiplicative_far_from_capacity_and_additive_near_it() {
        let mut r = RateControl::new(300_000, 30_000, 10_000_000);
        for i in 0..=10 {
            r.update(i * 100_000, BandwidthUsage::Normal, None);
        }
        // Start-up: about doubled in one second.
        assert!(
            (550_000..=650_000).contains(&r.estimate()),
            "{}",
            r.estimate()
        );
        r.update(1_100_000, BandwidthUsage::Overusing, Some(600_000));
        let after = r.estimate();
        for i in 12..=21 {
            r.update(i * 100_000, BandwidthUsage::Normal, Some(500_000));
        }
        let gained = r.estimate() - after;
        // Additive: about 48 kbit/s in the second after the decrease.
        assert!((20_000..=60_000).contains(&gained), "{gained}");
    }

    #[test]
    fn a_sender_that_does_not_fill_the_link_climbs_only_additively_after_an_overuse() {
        let mut r = RateControl::new(1_000_000, 30_000, 10_000_000);
        r.update(0, BandwidthUsage::Overusing, Some(1_000_000));
        assert_eq!(r.estimate(), 850_000);
        // Its layers send 500 kbit/s: the acknowledged rate never passes the
        // capacity, so 5 s of a clean path add about 5 x 48 kbit/s.
        for i in 1..=50 {
            r.update(i * 100_000, BandwidthUsage::Normal, Some(500_000));
        }
        assert!(
            (1_000_000..=1_200_000).contains(&r.estimate()),
            "{}",
            r.estimate()
        );
        // Once more gets through than the capacity, it searches again.
        for i in 51..=60 {
            r.update(i * 100_000, BandwidthUsage::Normal, Some(1_200_000));
        }
        assert!(r.estimate() > 1_250_000, "{}", r.estimate());
    }
}
