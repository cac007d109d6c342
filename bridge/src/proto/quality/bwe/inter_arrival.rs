//! Packet groups and their delay variation (draft-ietf-rmcat-gcc-02 §5.2):
//! packets sent within [`BURST_US`] µs of a group's first packet form one group (a
//! video frame's packets); between two consecutive groups the delay variation
//! is `d = (arrival_i - arrival_(i-1)) - (send_i - send_(i-1))`, positive while
//! a queue on the path grows.

/// Packets sent within this many µs of a group's first packet join it.
pub const BURST_US: u64 = 5_000;

/// A gap larger than this (µs) between arrival and send deltas means the
/// receiver's clock or the path reset: the groups start over.
const RESET_US: i64 = 3_000_000;

#[derive(Debug, Clone, Copy)]
struct Group {
    first_send_us: u64,
    last_send_us: u64,
    arrival_us: i64,
}

/// One delay variation sample between two groups.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupDelta {
    /// The later group's arrival on the receiver's clock, µs.
    pub arrival_us: i64,
    /// Send time delta, µs.
    pub send_delta_us: i64,
    /// Delay variation `d`, µs.
    pub delay_delta_us: i64,
}

/// Groups packets as feedback reports them.
#[derive(Debug, Default, Clone)]
pub struct InterArrival {
    prev: Option<Group>,
    cur: Option<Group>,
}

impl InterArrival {
    /// One received packet (in sequence order). Returns a sample when it
    /// completes a group that has a predecessor.
    pub fn add(&mut self, send_us: u64, arrival_us: i64) -> Option<GroupDelta> {
        let Some(cur) = self.cur.as_mut() else {
            self.cur = Some(Group {
                first_send_us: send_us,
                last_send_us: send_us,
                arrival_us,
            });
            return None;
        };
        if send_us < cur.first_send_us {
            // Sent before the current group (a late report of an older send).
            return None;
        }
        if send_us - cur.first_send_us <= BURST_US {
            cur.last_send_us = cur.last_send_us.max(send_us);
            cur.arrival_us = cur.arrival_us.max(arrival_us);
            return None;
        }
        let done = *cur;
        let delta = self.prev.map(|p| GroupDelta {
            arrival_us: done.arrival_us,
            send_delta_us: done.last_send_us as i64 - p.last_send_us as i64,
            delay_delta_us: (done.arrival_us - p.arrival_us)
                - (done.last_send_us as i64 - p.last_send_us as i64),
        });
        self.prev = Some(done);
        self.cur = Some(Group {
            first_send_us: send_us,
            last_send_us: send_us,
            arrival_us,
        });
        match delta {
            Some(d) if d.delay_delta_us.abs() > RESET_US => {
                self.prev = None;
                None
            }
            d => d,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_growing_queue_gives_positive_deltas_and_a_steady_one_zero() {
        let mut ia = InterArrival::default();
        let mut out = Vec::new();
        // Groups every 20 ms; each arrives 2 ms later than the one before.
        for g in 0..5i64 {
            for p in 0..3 {
                let send = (g * 20_000 + p * 1_000) as u64;
                if let Some(d) = ia.add(send, 50_000 + g * 22_000 + p * 1_000) {
                    out.push(d.delay_delta_us);
                }
            }
        }
        assert_eq!(out, vec![2_000, 2_000, 2_000]);
    }

    #[test]
    fn late_reports_of_older_sends_are_skipped() {
        let mut ia = InterArrival::default();
        assert!(ia.add(10_000, 0).is_none());
        assert!(ia.add(1_000, 5).is_none());
        assert!(ia.add(30_000, 20_000).is_none());
        let d = ia.add(50_000, 40_000).unwrap();
        assert_eq!(d.delay_delta_us, 0);
    }
}
