//! The measured bitrate of each layer of a video source, for the allocator: a
//! sliding window of [`BUCKETS`] buckets of [`BUCKET`] each (one second) of
//! bytes received per layer. Fixed arrays, nothing allocated per packet.
//!
//! A source without simulcast is one layer (layer 0). The window's age of its
//! last packet also tells whether a layer is active (what the allocator needs
//! for sources that have no [`SimulcastLayers`](super::simulcast::SimulcastLayers)).

use std::time::{Duration, Instant};

use super::simulcast::{LAYER_TIMEOUT, MAX_LAYERS};

/// Buckets in the window.
pub const BUCKETS: usize = 10;

/// Length of one bucket; the window is `BUCKETS * BUCKET` (1 s).
pub const BUCKET: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, Default)]
struct LayerWindow {
    /// Bytes per bucket, indexed by bucket number modulo [`BUCKETS`].
    bytes: [u32; BUCKETS],
    /// The bucket number each slot of `bytes` counts (stale slots count 0).
    number: [u64; BUCKETS],
    last_at: Option<Instant>,
}

/// Per-layer bytes over the last second.
#[derive(Debug, Clone, Default)]
pub struct LayerRates {
    start: Option<Instant>,
    layers: [LayerWindow; MAX_LAYERS],
}

impl LayerRates {
    /// No packets seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn bucket(&self, now: Instant) -> u64 {
        let since = self
            .start
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        (since.as_millis() / BUCKET.as_millis()) as u64
    }

    /// Counts a packet of `bytes` on `layer` at `now` (layers past
    /// [`MAX_LAYERS`] are ignored).
    pub fn note(&mut self, layer: u8, now: Instant, bytes: usize) {
        if self.start.is_none() {
            self.start = Some(now);
        }
        let n = self.bucket(now);
        let Some(w) = self.layers.get_mut(usize::from(layer)) else {
            return;
        };
        let i = (n % BUCKETS as u64) as usize;
        if let (Some(b), Some(num)) = (w.bytes.get_mut(i), w.number.get_mut(i)) {
            if *num != n {
                *num = n;
                *b = 0;
            }
            *b = b.saturating_add(u32::try_from(bytes).unwrap_or(u32::MAX));
        }
        w.last_at = Some(now);
    }

    /// Bits per second of `layer` over the last second before `now` (0 for a
    /// layer never seen).
    pub fn bps(&self, layer: u8, now: Instant) -> u64 {
        let Some(w) = self.layers.get(usize::from(layer)) else {
            return 0;
        };
        let n = self.bucket(now);
        let oldest = n.saturating_sub(BUCKETS as u64 - 1);
        let bytes: u64 = w
            .bytes
            .iter()
            .zip(&w.number)
            .filter(|&(_, &num)| num >= oldest && num <= n)
            .map(|(&b, _)| u64::from(b))
            .sum();
        let window_ms = BUCKET.as_millis() as u64 * BUCKETS as u64;
        bytes * 8 * 1000 / window_ms
    }

    /// Whether `layer` sent anything in the last [`LAYER_TIMEOUT`].
    pub fn active(&self, layer: u8, now: Instant) -> bool {
        self.layers
            .get(usize::from(layer))
            .and_then(|w| w.last_at)
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_500kbps_layer_measures_500kbps_and_falls_to_zero_when_it_stops() {
        let t0 = Instant::now();
        let mut r = LayerRates::new();
        // 1250 bytes every 20 ms: 62.5 kB/s, 500 kbit/s.
        for i in 0..100u32 {
            r.note(1, t0 + Duration::from_millis(u64::from(i) * 20), 1250);
        }
        let t = t0 + Duration::from_millis(1990);
        assert_eq!(r.bps(1, t), 500_000);
        assert_eq!(r.bps(0, t), 0, "another layer");
        assert!(r.active(1, t));
        let later = t + Duration::from_millis(1100);
        assert_eq!(r.bps(1, later), 0, "out of the window");
        assert!(!r.active(1, later));
        // Out-of-range layers are ignored.
        r.note(9, later, 100);
        assert_eq!(r.bps(9, later), 0);
    }
}
