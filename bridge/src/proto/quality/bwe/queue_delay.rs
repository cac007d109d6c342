//! The queueing delay on the path toward a receiver, as its transport-cc
//! feedback shows it: each arrived packet's one-way delay up to a constant
//! (`arrival - send`, the two clocks' offset included), less the least of
//! those seen lately (the path's base delay, with the same offset). The least
//! is kept over two epochs of [`EPOCH_US`] on the receiver's clock, so a slow
//! drift between the clocks, or a route that got longer, is forgotten within
//! two epochs. Nothing is allocated.

/// One epoch of the base delay's minimum, µs of the receiver's clock.
pub const EPOCH_US: i64 = 5_000_000;

/// The base delay and the latest one-way delay.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueDelay {
    /// (epoch index, least delay in it) for the current epoch.
    current: Option<(i64, i64)>,
    /// The previous epoch's least delay.
    previous: Option<i64>,
    /// The delay of the latest arrival reported, µs.
    latest: Option<(i64, i64)>,
}

impl QueueDelay {
    /// A packet sent at `send_us` (the sender's clock) arrived at
    /// `arrival_us` (the receiver's clock).
    pub fn add(&mut self, send_us: u64, arrival_us: i64) {
        let delay = arrival_us.saturating_sub(i64::try_from(send_us).unwrap_or(i64::MAX));
        let epoch = arrival_us.div_euclid(EPOCH_US);
        self.current = match self.current {
            Some((e, least)) if e == epoch => Some((e, least.min(delay))),
            Some((e, least)) if e + 1 == epoch => {
                self.previous = Some(least);
                Some((epoch, delay))
            }
            Some((e, _)) if e > epoch => self.current,
            _ => {
                self.previous = None;
                Some((epoch, delay))
            }
        };
        if self.latest.is_none_or(|(at, _)| arrival_us >= at) {
            self.latest = Some((arrival_us, delay));
        }
    }

    /// How much longer than the base delay the latest reported arrival took,
    /// µs (0 before any arrival).
    pub fn queue_us(&self) -> u64 {
        let base = match (self.current, self.previous) {
            (Some((_, c)), Some(p)) => c.min(p),
            (Some((_, c)), None) => c,
            _ => return 0,
        };
        self.latest.map_or(0, |(_, d)| {
            u64::try_from(d.saturating_sub(base)).unwrap_or(0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growing_queue_reads_as_its_delay_over_the_base_and_a_drift_is_forgotten() {
        let mut q = QueueDelay::default();
        assert_eq!(q.queue_us(), 0);
        // Receiver clock 1 s ahead; 20 ms base delay; then a queue of 150 ms.
        for i in 0..100u64 {
            q.add(i * 10_000, 1_000_000 + 20_000 + i as i64 * 10_000);
        }
        assert_eq!(q.queue_us(), 0);
        q.add(1_000_000, 1_000_000 + 20_000 + 1_150_000);
        assert_eq!(q.queue_us(), 150_000);
        // The clocks drift 40 ms apart over three epochs: it no longer reads
        // as a queue once the old minimum is two epochs old.
        let start = 1_100_000u64;
        for i in 0..1_600u64 {
            let send = start + i * 10_000;
            q.add(send, 1_000_000 + 60_000 + send as i64);
        }
        assert_eq!(q.queue_us(), 0);
    }
}
