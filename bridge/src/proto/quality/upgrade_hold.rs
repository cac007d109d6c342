//! The estimate a receiver's video allocation may spend: a fall of the
//! bandwidth estimate counts at once, a rise only once it has held for
//! [`UPGRADE_HOLD`].
//!
//! Why: a probe cluster is a few packets back to back, and a bottleneck with a
//! token bucket (a `tbf` with a 16 KB burst, a shaping home router) lets such a
//! burst through at line rate, so the probe reads the link as twice what it
//! is. The delay detector pulls the estimate back within a second, but an
//! allocation that followed the spike has by then switched the receiver to a
//! taller layer (a key frame, more bytes into a full queue) and must switch it
//! back: the picture flaps every probe. Measured with Chromium behind a
//! 1 Mbit/s `tbf`: the capped page's stream went 540, 270, 540, 270 lines
//! about every two seconds before this hold. A real rise (the link recovered)
//! lasts, and costs only the hold in reaction time.

use std::time::{Duration, Instant};

/// How long a rise of the estimate must last before the allocation spends it.
pub const UPGRADE_HOLD: Duration = Duration::from_secs(2);

/// See the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpgradeHold {
    /// What the allocation may spend now.
    held: Option<u64>,
    /// Since when every sample was above `held`, and the least of them.
    rising: Option<(Instant, u64)>,
}

impl UpgradeHold {
    /// Takes the estimate `bps` seen at `now` and returns what the allocation
    /// may spend: `bps` when it is not above the held value (or on the first
    /// sample), the held value while a rise is younger than [`UPGRADE_HOLD`],
    /// then the least estimate seen during the rise.
    pub fn update(&mut self, now: Instant, bps: u64) -> u64 {
        let held = match self.held {
            Some(h) if bps > h => h,
            _ => {
                self.held = Some(bps);
                self.rising = None;
                return bps;
            }
        };
        let (since, least) = match self.rising {
            Some((since, least)) => (since, least.min(bps)),
            None => (now, bps),
        };
        if now.saturating_duration_since(since) >= UPGRADE_HOLD {
            self.held = Some(least);
            self.rising = None;
            least
        } else {
            self.rising = Some((since, least));
            held
        }
    }

    /// What the allocation may spend, as of the last [`UpgradeHold::update`].
    pub fn held(&self) -> Option<u64> {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_fall_counts_at_once() {
        let t0 = Instant::now();
        let mut h = UpgradeHold::default();
        assert_eq!(h.update(t0, 2_000_000), 2_000_000, "the first sample");
        assert_eq!(h.update(t0 + 100 * MS, 800_000), 800_000);
        assert_eq!(h.held(), Some(800_000));
    }

    #[test]
    fn a_probe_spike_shorter_than_the_hold_is_not_spent() {
        let t0 = Instant::now();
        let mut h = UpgradeHold::default();
        h.update(t0, 800_000);
        // The probe doubles the estimate; the delay detector pulls it back
        // 800 ms later.
        for k in 1..=8 {
            assert_eq!(h.update(t0 + k * 100 * MS, 1_600_000), 800_000);
        }
        assert_eq!(h.update(t0 + 900 * MS, 750_000), 750_000);
        // The next spike starts its own hold.
        assert_eq!(h.update(t0 + 1000 * MS, 1_500_000), 750_000);
        assert_eq!(h.update(t0 + 2900 * MS, 1_500_000), 750_000);
    }

    #[test]
    fn a_rise_that_lasts_the_hold_is_spent_at_its_least() {
        let t0 = Instant::now();
        let mut h = UpgradeHold::default();
        h.update(t0, 800_000);
        assert_eq!(h.update(t0 + 500 * MS, 2_000_000), 800_000);
        assert_eq!(h.update(t0 + 1500 * MS, 1_800_000), 800_000);
        assert_eq!(h.update(t0 + 2500 * MS, 2_400_000), 1_800_000);
        // From there on, rises wait again, falls do not.
        assert_eq!(h.update(t0 + 2600 * MS, 3_000_000), 1_800_000);
        assert_eq!(h.update(t0 + 2700 * MS, 1_000_000), 1_000_000);
    }
}
