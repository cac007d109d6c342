//! The loss-based controller (draft-ietf-rmcat-gcc-02 §6): over each
//! reporting interval, more than 10% of packets lost lowers the cap to
//! `estimate * (1 - 0.5 * loss)`; less than 2% lets it grow 5% per interval
//! until it no longer limits; in between it holds.

/// Loss above which the estimate is lowered.
pub const HIGH_LOSS: f64 = 0.10;
/// Loss below which the cap grows.
pub const LOW_LOSS: f64 = 0.02;
/// Packets in one reporting interval, at least.
const MIN_PACKETS: u32 = 20;
/// One reporting interval lasts at least this long, µs of send time.
const MIN_INTERVAL_US: u64 = 300_000;

/// Loss-based cap on a receiver's estimate.
#[derive(Debug, Clone, Default)]
pub struct LossController {
    start_us: Option<u64>,
    sent: u32,
    lost: u32,
    cap: Option<u64>,
    last_loss: f64,
    floor: u64,
}

impl LossController {
    /// A controller whose cap never goes below `floor_bps` (the estimator's
    /// floor: a cap of 0 could never grow back by its 5% steps).
    pub fn new(floor_bps: u64) -> Self {
        Self {
            floor: floor_bps,
            ..Self::default()
        }
    }

    /// One reported packet, sent at `send_us`, arrived or not. `estimate` is the
    /// delay-based estimate, `acked` the acknowledged bitrate (what the
    /// receiver's feedback says arrived lately). Returns the new cap when it
    /// changed.
    pub fn add(
        &mut self,
        send_us: u64,
        arrived: bool,
        estimate: u64,
        acked: Option<u64>,
    ) -> Option<u64> {
        let start = *self.start_us.get_or_insert(send_us);
        self.sent += 1;
        if !arrived {
            self.lost += 1;
        }
        if self.sent < MIN_PACKETS || send_us.saturating_sub(start) < MIN_INTERVAL_US {
            return None;
        }
        let loss = f64::from(self.lost) / f64::from(self.sent);
        self.last_loss = loss;
        self.start_us = None;
        self.sent = 0;
        self.lost = 0;
        let before = self.cap;
        if loss > HIGH_LOSS {
            let base = self.cap.map_or(estimate, |c| c.min(estimate));
            let cut = (base as f64 * (1.0 - 0.5 * loss)) as u64;
            // Not below what the link is delivering (libwebrtc's loss-based
            // estimator has the same bound, `LowerBoundByAckedRateFactor`):
            // loss at a sending rate above the link's says the link carries
            // what arrived, not less. Without it the loss of what was sent
            // before the layers came down (a switch waits for key frames, 0.5
            // to 2 s) cut the estimate again every interval: measured behind
            // a 1 Mbit/s bucket, 3 Mbit/s of layers, 930 kbit/s acknowledged,
            // six cuts in 2 s to 46 kbit/s, and a stream was suspended.
            let delivered = acked.unwrap_or(0).min(base);
            self.cap = Some(cut.max(delivered).max(self.floor));
        } else if loss < LOW_LOSS {
            self.cap = self
                .cap
                .map(|c| (c as f64 * 1.05) as u64)
                .filter(|&c| c < estimate);
        }
        (self.cap != before).then_some(self.cap.unwrap_or(estimate))
    }

    /// The cap, while loss limits the estimate.
    pub fn cap(&self) -> Option<u64> {
        self.cap
    }

    /// Loss fraction of the last complete interval.
    pub fn last_loss(&self) -> f64 {
        self.last_loss
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 100 packets 4 ms apart from `base` µs, every `lost_every`th lost.
    fn interval(l: &mut LossController, base: u64, lost_every: u32, estimate: u64) {
        for i in 0..100u32 {
            let t = base + u64::from(i) * 4_000;
            l.add(t, lost_every == 0 || i % lost_every != 0, estimate, None);
        }
    }

    #[test]
    fn the_cap_stops_at_the_floor_and_grows_back_from_it() {
        let mut l = LossController::new(30_000);
        for k in 0..40 {
            interval(&mut l, k * 400_000, 2, 1_000_000);
        }
        assert_eq!(
            l.cap(),
            Some(30_000),
            "half lost for 16 s: down to the floor"
        );
        for k in 40..50 {
            interval(&mut l, k * 400_000, 0, 1_000_000);
        }
        assert!(l.cap().is_some_and(|c| c > 30_000), "{:?}", l.cap());
    }

    #[test]
    fn a_fifth_lost_lowers_and_a_clean_link_lifts_the_cap() {
        let mut l = LossController::default();
        interval(&mut l, 0, 5, 1_000_000);
        let low = l.cap().unwrap();
        assert!(low <= 900_000, "{low}");
        for k in 1..4 {
            interval(&mut l, k * 400_000, 0, 1_000_000);
        }
        assert!(l.cap().is_none_or(|c| c > low));
    }

    #[test]
    fn five_percent_holds() {
        let mut l = LossController::default();
        interval(&mut l, 0, 20, 1_000_000);
        interval(&mut l, 400_000, 20, 1_000_000);
        assert_eq!(l.cap(), None);
    }
}
