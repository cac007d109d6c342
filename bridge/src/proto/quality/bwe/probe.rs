//! Probing (after WebRTC's probe controller and str0m's, simplified): when a
//! receiver's wanted layers need more than its estimate, and neither overuse
//! nor loss holds the estimate where it is, the bridge sends a short cluster of
//! padding-only packets back to back. The bottleneck spreads them out; the
//! spread of their arrivals in the feedback is the rate the path carried
//! (packet-train dispersion), which raises the estimate, at most to the
//! cluster's target ([`PROBE_FACTOR`] x the estimate).

/// Packets in one cluster.
pub const PROBE_PACKETS: usize = 5;
/// A cluster aims at this multiple of the estimate.
pub const PROBE_FACTOR: u64 = 2;
/// Least time between two clusters, µs.
pub const PROBE_INTERVAL_US: u64 = 1_000_000;
/// A cluster whose feedback did not come within this long is given up, µs.
const PROBE_TIMEOUT_US: u64 = 1_000_000;
/// The resolution of transport-cc arrival times, µs: a narrower spread reads as it.
const MIN_SPREAD_US: i64 = 250;

#[derive(Debug, Clone, Copy)]
struct Cluster {
    target_bps: u64,
    started_us: u64,
    /// Extended sequence numbers of its packets, in send order.
    first_ext: Option<u64>,
    sent: usize,
    received: usize,
    reported: usize,
    first_arrival_us: i64,
    last_arrival_us: i64,
    /// Bytes of every received packet but the first to arrive.
    bytes_after_first: u64,
    first_size: u64,
}

/// One receiver's probing state.
#[derive(Debug, Clone, Default)]
pub struct Prober {
    cluster: Option<Cluster>,
    last_start_us: Option<u64>,
    /// Clusters sent and results taken.
    pub clusters: u64,
    /// Results that raised the estimate.
    pub raised: u64,
}

impl Prober {
    /// Whether a cluster may start at `now_us`.
    pub fn may_start(&mut self, now_us: u64) -> bool {
        if let Some(c) = self.cluster {
            if now_us.saturating_sub(c.started_us) < PROBE_TIMEOUT_US {
                return false;
            }
            self.cluster = None;
        }
        self.last_start_us
            .is_none_or(|t| now_us.saturating_sub(t) >= PROBE_INTERVAL_US)
    }

    /// A cluster aiming at `target_bps` starts at `now_us`: the next
    /// [`PROBE_PACKETS`] sends are its packets.
    pub fn start(&mut self, now_us: u64, target_bps: u64) {
        self.last_start_us = Some(now_us);
        self.clusters += 1;
        self.cluster = Some(Cluster {
            target_bps,
            started_us: now_us,
            first_ext: None,
            sent: 0,
            received: 0,
            reported: 0,
            first_arrival_us: i64::MAX,
            last_arrival_us: i64::MIN,
            bytes_after_first: 0,
            first_size: 0,
        });
    }

    /// Whether a cluster is being sent.
    pub fn sending(&self) -> bool {
        self.cluster.is_some_and(|c| c.sent < PROBE_PACKETS)
    }

    /// A packet was sent (its extended transport-wide sequence number).
    pub fn on_sent(&mut self, ext: u64) {
        if let Some(c) = self.cluster.as_mut()
            && c.sent < PROBE_PACKETS
        {
            c.first_ext.get_or_insert(ext);
            c.sent += 1;
        }
    }

    /// A reported packet (`arrival_us` if it arrived). Returns the probe's
    /// result in bits per second once every packet of the cluster was reported.
    pub fn on_reported(&mut self, ext: u64, size: u64, arrival_us: Option<i64>) -> Option<u64> {
        let c = self.cluster.as_mut()?;
        let first = c.first_ext?;
        if ext < first || ext >= first + c.sent as u64 || c.sent < PROBE_PACKETS {
            return None;
        }
        c.reported += 1;
        if let Some(at) = arrival_us {
            c.received += 1;
            if at < c.first_arrival_us {
                // The earlier first arrival's bytes now count after it.
                c.bytes_after_first += c.first_size;
                c.first_arrival_us = at;
                c.first_size = size;
            } else {
                c.bytes_after_first += size;
            }
            c.last_arrival_us = c.last_arrival_us.max(at);
        }
        if c.reported < PROBE_PACKETS {
            return None;
        }
        let c = self.cluster.take()?;
        // A cluster that lost packets says nothing good about the path.
        if c.received < PROBE_PACKETS - 1 {
            return None;
        }
        let spread = (c.last_arrival_us - c.first_arrival_us).max(MIN_SPREAD_US);
        let rate = c.bytes_after_first * 8 * 1_000_000 / spread as u64;
        Some(rate.min(c.target_bps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_of_arrivals_is_the_rate_capped_at_the_target() {
        let mut p = Prober::default();
        assert!(p.may_start(0));
        p.start(0, 2_000_000);
        assert!(!p.may_start(500_000), "one cluster at a time");
        for ext in 100..105 {
            p.on_sent(ext);
        }
        assert!(!p.sending());
        // 250-byte packets 2 ms apart: 1 Mbit/s.
        let mut result = None;
        for (i, ext) in (100..105).enumerate() {
            result = p.on_reported(ext, 250, Some(i as i64 * 2_000));
        }
        assert_eq!(result, Some(1_000_000));
        // Arrivals all at once: capped at the target.
        assert!(!p.may_start(900_000), "interval");
        assert!(p.may_start(1_000_000));
        p.start(1_000_000, 600_000);
        for ext in 200..205 {
            p.on_sent(ext);
        }
        for ext in 200..205 {
            result = p.on_reported(ext, 250, Some(7));
        }
        assert_eq!(result, Some(600_000));
    }

    #[test]
    fn a_cluster_with_losses_gives_no_result_and_a_silent_one_times_out() {
        let mut p = Prober::default();
        p.start(0, 2_000_000);
        for ext in 0..5 {
            p.on_sent(ext);
        }
        let mut result = None;
        for ext in 0..5 {
            result = p.on_reported(ext, 250, (ext % 2 == 0).then_some(ext as i64 * 1_000));
        }
        assert_eq!(result, None);
        p.start(2_000_000, 2_000_000);
        assert!(!p.may_start(2_500_000));
        assert!(p.may_start(3_000_000), "given up after its timeout");
    }
}
