//! What the bottleneck carries while its queue stands: packets that each
//! waited at least [`QUEUED_US`] in the path's queue left it back to back
//! (the link never idled between them), so their bytes over the span of
//! their arrivals are the link's rate, whatever was sent into it.
//!
//! Why: a decrease goes to 0.85 x the acknowledged bitrate ([`super::acked`]),
//! a 500 ms window of arrivals. At a sudden bottleneck that window is still
//! mostly what arrived before it. Measured with Chromium behind a 1 Mbit/s
//! `tbf` (200 ms latency): the first overuse, at 124 ms of queue, read
//! 4.06 Mbit/s acknowledged, the estimate fell to 2.45 Mbit/s and the
//! allocation kept a 720p layer; the streams came down to what the link
//! carried 500 ms later, after the bucket had dropped 27 of 40 packets in
//! one feedback. The queued arrivals of that first feedback already came at
//! the bucket's rate.
//!
//! The run of queued arrivals restarts at any packet that queued less
//! (the link may have idled before it). Nothing is allocated.

/// The queue a packet must have waited in to count: the queue past which a
/// link counts as congested ([`super::CONGESTED_QUEUE`]), far above what
/// receiver-side jitter reads on an idle path (0-14 ms).
pub const QUEUED_US: u64 = super::CONGESTED_QUEUE.as_micros() as u64;

/// The least arrival span that gives a rate, µs (at 1 Mbit/s, four
/// 1,200-byte packets).
pub const MIN_SPAN_US: i64 = 30_000;

/// The least queued packets that give a rate.
pub const MIN_PACKETS: u32 = 4;

/// The current run of queued arrivals.
#[derive(Debug, Clone, Copy, Default)]
pub struct BottleneckRate {
    /// Arrival of the run's first packet, µs of the receiver's clock.
    first_us: Option<i64>,
    /// Its latest arrival.
    last_us: i64,
    /// Bytes of the run after its first packet (those arrived within the
    /// span).
    bytes: u64,
    packets: u32,
}

impl BottleneckRate {
    /// A packet of `bytes` arrived at `arrival_us` after waiting `queue_us`
    /// in the path's queue.
    pub fn add(&mut self, arrival_us: i64, bytes: u64, queue_us: u64) {
        if queue_us < QUEUED_US {
            *self = Self::default();
            return;
        }
        match self.first_us {
            None => {
                *self = Self {
                    first_us: Some(arrival_us),
                    last_us: arrival_us,
                    bytes: 0,
                    packets: 1,
                };
            }
            Some(_) => {
                self.bytes += bytes;
                self.packets += 1;
                self.last_us = self.last_us.max(arrival_us);
            }
        }
    }

    /// The link's rate in bits per second, while its queue stands and the
    /// run is long enough to tell.
    pub fn bitrate(&self) -> Option<u64> {
        let span = self.last_us - self.first_us?;
        (span >= MIN_SPAN_US && self.packets >= MIN_PACKETS)
            .then(|| self.bytes * 8 * 1_000_000 / span as u64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn queued_arrivals_read_as_the_links_rate_whatever_was_sent() {
        let mut b = BottleneckRate::default();
        // 1,250-byte packets sent every 2.5 ms (4 Mbit/s) into a 1 Mbit/s
        // link: they leave it every 10 ms, queueing 7.5 ms more each.
        let mut queue = 0;
        for i in 0..40i64 {
            b.add(i * 10_000, 1250, queue);
            queue += 7_500;
        }
        let r = b.bitrate().unwrap();
        assert!((990_000..=1_010_000).contains(&r), "{r}");
    }

    #[test]
    fn arrivals_with_less_queue_restart_the_run_and_a_short_run_gives_nothing() {
        let mut b = BottleneckRate::default();
        for i in 0..10i64 {
            b.add(i * 10_000, 1250, QUEUED_US);
        }
        assert!(b.bitrate().is_some());
        // The queue emptied: the link may idle, so nothing is known.
        b.add(100_000, 1250, QUEUED_US - 1);
        assert_eq!(b.bitrate(), None);
        // Three packets over 20 ms: too few, too short.
        for i in 0..3i64 {
            b.add(200_000 + i * 10_000, 1250, QUEUED_US * 2);
        }
        assert_eq!(b.bitrate(), None);
        b.add(230_000, 1250, QUEUED_US * 2);
        assert_eq!(b.bitrate(), Some(3 * 1250 * 8 * 1_000_000 / 30_000));
    }
}
