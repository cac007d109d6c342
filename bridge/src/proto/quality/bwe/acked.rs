//! The acknowledged bitrate: what the receiver's feedback says arrived, over a
//! sliding window of its arrival clock (fixed buckets, nothing allocated).

/// Width of the window, µs.
pub const WINDOW_US: i64 = 500_000;
const BUCKET_US: i64 = 50_000;
const BUCKETS: usize = (WINDOW_US / BUCKET_US) as usize;

/// Bytes acknowledged per arrival bucket.
#[derive(Debug, Clone, Default)]
pub struct AckedBitrate {
    /// (bucket index, bytes).
    buckets: [(i64, u64); BUCKETS],
    first_us: Option<i64>,
    latest_us: Option<i64>,
}

impl AckedBitrate {
    /// `bytes` arrived at `arrival_us` (the receiver's clock).
    pub fn add(&mut self, arrival_us: i64, bytes: u64) {
        self.first_us.get_or_insert(arrival_us);
        self.latest_us = Some(self.latest_us.map_or(arrival_us, |l| l.max(arrival_us)));
        let index = arrival_us.div_euclid(BUCKET_US);
        let b = &mut self.buckets[index.rem_euclid(BUCKETS as i64) as usize];
        if b.0 != index {
            *b = (index, 0);
        }
        b.1 += bytes;
    }

    /// Bits per second over the window ending at the latest arrival; `None`
    /// until 100 ms of arrivals were seen.
    pub fn bitrate(&self) -> Option<u64> {
        let (first, latest) = (self.first_us?, self.latest_us?);
        let span = (latest - first + BUCKET_US).min(WINDOW_US);
        if span < 2 * BUCKET_US {
            return None;
        }
        let newest = latest.div_euclid(BUCKET_US);
        let bytes: u64 = self
            .buckets
            .iter()
            .filter(|(i, _)| *i <= newest && *i > newest - BUCKETS as i64)
            .map(|(_, b)| b)
            .sum();
        Some(bytes * 8 * 1_000_000 / span as u64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_flow_reads_as_its_rate() {
        let mut a = AckedBitrate::default();
        assert_eq!(a.bitrate(), None);
        // 1250 bytes every 10 ms: 1 Mbit/s, for 2 s.
        for i in 0..200 {
            a.add(i * 10_000, 1250);
        }
        let r = a.bitrate().unwrap();
        assert!((950_000..=1_050_000).contains(&r), "{r}");
    }
}
