//! The delay trend and the overuse detector (draft-ietf-rmcat-gcc-02 §5.3-5.4,
//! with WebRTC's trendline filter in place of the draft's Kalman filter): the
//! accumulated delay variation, smoothed, is fitted by least squares against
//! arrival time over a window of groups; the slope, scaled, is compared with an
//! adaptive threshold.

/// Groups in the regression window.
pub const WINDOW: usize = 20;
/// Smoothing of the accumulated delay.
const SMOOTHING: f64 = 0.9;
/// Gain on the slope before it is compared with the threshold.
const GAIN: f64 = 4.0;
/// Threshold at the start, ms.
pub const INITIAL_THRESHOLD_MS: f64 = 12.5;
/// Threshold adaptation when the trend is above it (up) and below (down).
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
/// Overuse is signalled after the trend stayed above the threshold this long.
const OVERUSE_TIME_MS: f64 = 10.0;

/// What the detector concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BandwidthUsage {
    /// The queue neither grows nor drains.
    #[default]
    Normal,
    /// The queue grows: the link is over-used.
    Overusing,
    /// The queue drains.
    Underusing,
}

/// The trendline filter and overuse detector of one receiver's path.
#[derive(Debug, Clone)]
pub struct Trendline {
    /// (arrival ms since the first sample, smoothed delay ms), a ring.
    samples: [(f64, f64); WINDOW],
    len: usize,
    next: usize,
    first_arrival_us: Option<i64>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    deltas: u32,
    threshold_ms: f64,
    last_threshold_update_us: Option<i64>,
    time_over_ms: Option<f64>,
    overuse_count: u32,
    prev_trend: f64,
    /// The last trend as compared with the threshold (ms).
    modified_ms: f64,
    state: BandwidthUsage,
}

impl Default for Trendline {
    fn default() -> Self {
        Self {
            samples: [(0.0, 0.0); WINDOW],
            len: 0,
            next: 0,
            first_arrival_us: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            deltas: 0,
            threshold_ms: INITIAL_THRESHOLD_MS,
            last_threshold_update_us: None,
            time_over_ms: None,
            overuse_count: 0,
            prev_trend: 0.0,
            modified_ms: 0.0,
            state: BandwidthUsage::Normal,
        }
    }
}

impl Trendline {
    /// The current conclusion.
    pub fn state(&self) -> BandwidthUsage {
        self.state
    }

    /// The adaptive threshold, ms.
    pub fn threshold_ms(&self) -> f64 {
        self.threshold_ms
    }

    /// The last trend, scaled as it is compared with the threshold, ms.
    pub fn modified_ms(&self) -> f64 {
        self.modified_ms
    }

    /// One group delay variation sample: `delay_delta_us` at `arrival_us`,
    /// the groups `send_delta_us` apart.
    pub fn update(&mut self, arrival_us: i64, send_delta_us: i64, delay_delta_us: i64) {
        let first = *self.first_arrival_us.get_or_insert(arrival_us);
        self.deltas = self.deltas.saturating_add(1).min(1000);
        self.accumulated_ms += delay_delta_us as f64 / 1000.0;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        let x = (arrival_us - first) as f64 / 1000.0;
        self.samples[self.next] = (x, self.smoothed_ms);
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
        let trend = if self.len == WINDOW {
            self.slope().unwrap_or(self.prev_trend)
        } else {
            self.prev_trend
        };
        self.detect(trend, send_delta_us as f64 / 1000.0, arrival_us);
    }

    /// Least-squares slope of the window.
    fn slope(&self) -> Option<f64> {
        let n = self.len as f64;
        let samples = &self.samples[..self.len];
        let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
        let my = samples.iter().map(|s| s.1).sum::<f64>() / n;
        let (num, den) = samples.iter().fold((0.0, 0.0), |(num, den), &(x, y)| {
            (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
        });
        (den > 0.0).then(|| num / den)
    }

    fn detect(&mut self, trend: f64, send_delta_ms: f64, now_us: i64) {
        let modified = f64::from(self.deltas.min(60)) * trend * GAIN;
        self.modified_ms = modified;
        if modified > self.threshold_ms {
            let over = match self.time_over_ms {
                None => send_delta_ms / 2.0,
                Some(t) => t + send_delta_ms,
            };
            self.time_over_ms = Some(over);
            self.overuse_count += 1;
            if over > OVERUSE_TIME_MS && self.overuse_count > 1 && trend >= self.prev_trend {
                self.time_over_ms = Some(0.0);
                self.overuse_count = 0;
                self.state = BandwidthUsage::Overusing;
            }
        } else if modified < -self.threshold_ms {
            self.time_over_ms = None;
            self.overuse_count = 0;
            self.state = BandwidthUsage::Underusing;
        } else {
            self.time_over_ms = None;
            self.overuse_count = 0;
            self.state = BandwidthUsage::Normal;
        }
        self.prev_trend = trend;
        self.adapt_threshold(modified, now_us);
    }

    fn adapt_threshold(&mut self, modified: f64, now_us: i64) {
        let last = *self.last_threshold_update_us.get_or_insert(now_us);
        self.last_threshold_update_us = Some(now_us);
        if modified.abs() > self.threshold_ms + 15.0 {
            // A spike (a sudden route change): not a reason to move.
            return;
        }
        let k = if modified.abs() < self.threshold_ms {
            K_DOWN
        } else {
            K_UP
        };
        let dt_ms = ((now_us - last) as f64 / 1000.0).clamp(0.0, 100.0);
        self.threshold_ms += k * (modified.abs() - self.threshold_ms) * dt_ms;
        self.threshold_ms = self.threshold_ms.clamp(6.0, 600.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(t: &mut Trendline, groups: i64, delay_step_us: i64) -> BandwidthUsage {
        for g in 0..groups {
            t.update(g * 20_000, 20_000, delay_step_us);
        }
        t.state()
    }

    #[test]
    fn a_steadily_growing_delay_is_overuse() {
        let mut t = Trendline::default();
        assert_eq!(feed(&mut t, 40, 2_000), BandwidthUsage::Overusing);
    }

    #[test]
    fn a_flat_delay_is_normal_and_a_draining_one_underuse() {
        let mut t = Trendline::default();
        assert_eq!(feed(&mut t, 40, 0), BandwidthUsage::Normal);
        let mut t = Trendline::default();
        assert_eq!(feed(&mut t, 40, -2_000), BandwidthUsage::Underusing);
    }
}
