//! A receive-side bandwidth estimate for publishers that only understand REMB
//! (draft-alvestrand-rmcat-remb; aiortc is one), from the abs-send-time header extension,
//! in the manner of Google Congestion Control (draft-ietf-rmcat-gcc-02): packets are
//! grouped by send time, the change of one-way delay between groups goes through a
//! trendline filter (a least-squares slope of the smoothed accumulated delay), an
//! adaptive threshold turns the trend into over-use, normal or under-use, and an AIMD
//! controller moves the estimate: up 8% a second while normal (never above 1.5 times
//! what actually arrives), down to 85% of the received rate on over-use, held on
//! under-use (queues draining). The estimate is sent as REMB about once a second, and at
//! once when it drops by more than 3%.
//!
//! Everything is in fixed-size state: a 20-sample trendline window and a 500 ms rate
//! window of 25 ms buckets.

use std::time::{Duration, Instant};

use crate::proto::rtcp::{self, RtcpError};
use crate::proto::rtp::RtpHeader;

/// The header extension URI to negotiate with `a=extmap`.
pub const ABS_SEND_TIME_URI: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";

/// The 24-bit abs-send-time carried with extension `id` (6.18 fixed-point seconds).
pub fn abs_send_time(header: &RtpHeader, packet: &[u8], id: u8) -> Option<u32> {
    match header.extension_value(packet, id)? {
        [a, b, c, ..] => Some(u32::from_be_bytes([0, *a, *b, *c])),
        _ => None,
    }
}

/// abs-send-time counts 2^18 units per second and wraps every 64 s.
const ABS_UNITS_PER_SEC: i64 = 1 << 18;
const ABS_WRAP: i64 = 1 << 24;

/// Packets sent within this span after a group's first packet belong to its group.
const GROUP_SPAN_US: i64 = 5_000;
const TRENDLINE_WINDOW: usize = 20;
const SMOOTHING: f64 = 0.9;
const THRESHOLD_GAIN: f64 = 4.0;
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
const OVERUSE_TIME_MS: f64 = 10.0;
const RATE_BUCKETS: usize = 20;
const RATE_BUCKET_US: i64 = 25_000;

/// Behaviour of a [`RembEstimator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RembConfig {
    /// The estimate before anything is measured. Default: 300 kbit/s.
    pub initial_bps: u64,
    /// The lowest estimate sent. Default: 30 kbit/s.
    pub min_bps: u64,
    /// The highest estimate sent. Default: 10 Mbit/s.
    pub max_bps: u64,
    /// How often the estimate is sent when it does not drop. Default: 1 s.
    pub interval: Duration,
}

impl Default for RembConfig {
    fn default() -> Self {
        RembConfig {
            initial_bps: 300_000,
            min_bps: 30_000,
            max_bps: 10_000_000,
            interval: Duration::from_secs(1),
        }
    }
}

/// What the delay trend says about the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandwidthUsage {
    /// Delay stable: the path has room.
    Normal,
    /// Delay growing: a queue builds up.
    Overusing,
    /// Delay shrinking: a queue drains.
    Underusing,
}

/// Counters of one estimator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RembStats {
    /// Packets that carried abs-send-time.
    pub packets: u64,
    /// REMB packets written (jvb has no counter of its own; `remb_sent` here).
    pub remb_sent: u64,
    /// Over-use detections that lowered the estimate.
    pub decreases: u64,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_send_us: i64,
    last_send_us: i64,
    last_arrival_us: i64,
}

/// The receive-side estimate of one publisher's transport. See the module documentation.
#[derive(Debug, Clone)]
pub struct RembEstimator {
    config: RembConfig,
    epoch: Option<Instant>,
    last_abs: Option<u32>,
    send_units: i64,
    current: Option<Group>,
    previous: Option<Group>,
    // Trendline filter.
    accumulated_ms: f64,
    smoothed_ms: f64,
    window: [(f64, f64); TRENDLINE_WINDOW],
    window_len: usize,
    window_next: usize,
    num_deltas: u32,
    prev_trend: f64,
    threshold: f64,
    last_threshold_update_ms: Option<f64>,
    time_over_ms: f64,
    overuse_count: u32,
    usage: BandwidthUsage,
    // Incoming rate.
    buckets: [u64; RATE_BUCKETS],
    bucket_at: i64,
    first_arrival_us: Option<i64>,
    // Rate control.
    estimate_bps: u64,
    initialized: bool,
    last_update_us: Option<i64>,
    last_decrease_us: Option<i64>,
    rtt: Duration,
    // Output.
    last_sent: Option<(Instant, u64)>,
    stats: RembStats,
}

impl RembEstimator {
    /// An estimator that has seen nothing.
    pub fn new(config: RembConfig) -> Self {
        RembEstimator {
            config,
            epoch: None,
            last_abs: None,
            send_units: 0,
            current: None,
            previous: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            window: [(0.0, 0.0); TRENDLINE_WINDOW],
            window_len: 0,
            window_next: 0,
            num_deltas: 0,
            prev_trend: 0.0,
            threshold: 12.5,
            last_threshold_update_ms: None,
            time_over_ms: 0.0,
            overuse_count: 0,
            usage: BandwidthUsage::Normal,
            buckets: [0; RATE_BUCKETS],
            bucket_at: 0,
            first_arrival_us: None,
            estimate_bps: config.initial_bps,
            initialized: false,
            last_update_us: None,
            last_decrease_us: None,
            rtt: Duration::from_millis(100),
            last_sent: None,
            stats: RembStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> RembStats {
        self.stats
    }

    /// The current estimate in bit/s.
    pub fn estimate_bps(&self) -> u64 {
        self.estimate_bps
    }

    /// What the detector last concluded.
    pub fn usage(&self) -> BandwidthUsage {
        self.usage
    }

    /// Updates the RTT to the publisher (decreases are at most one per RTT).
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
    }

    fn us_since_epoch(&mut self, now: Instant) -> i64 {
        let epoch = *self.epoch.get_or_insert(now);
        i64::try_from(now.saturating_duration_since(epoch).as_micros()).unwrap_or(i64::MAX)
    }

    /// The received bitrate over the last 500 ms, once that much was measured.
    pub fn incoming_bps(&self) -> Option<u64> {
        let first = self.first_arrival_us?;
        if self.bucket_at - first < (RATE_BUCKETS as i64 - 1) * RATE_BUCKET_US {
            return None;
        }
        let bytes: u64 = self.buckets.iter().sum();
        Some(bytes * 8 * 1_000_000 / (RATE_BUCKETS as u64 * RATE_BUCKET_US as u64))
    }

    fn add_bytes(&mut self, at_us: i64, bytes: usize) {
        let bucket = at_us.div_euclid(RATE_BUCKET_US);
        if self.first_arrival_us.is_none() {
            self.first_arrival_us = Some(at_us);
            self.bucket_at = bucket * RATE_BUCKET_US;
        }
        let current = self.bucket_at.div_euclid(RATE_BUCKET_US);
        if bucket > current {
            let steps = (bucket - current).min(RATE_BUCKETS as i64);
            for k in 1..=steps {
                let i = (current + k).rem_euclid(RATE_BUCKETS as i64) as usize;
                self.buckets[i] = 0;
            }
            self.bucket_at = bucket * RATE_BUCKET_US;
        }
        // A packet older than the window is not counted.
        if bucket > current - RATE_BUCKETS as i64 {
            let i = bucket
                .max(current - RATE_BUCKETS as i64 + 1)
                .rem_euclid(RATE_BUCKETS as i64);
            self.buckets[i as usize] += bytes as u64;
        }
    }

    /// Records a packet of `size` bytes (the whole RTP packet) with 24-bit
    /// `abs_send_time`, arriving at `now`.
    pub fn handle_packet(&mut self, now: Instant, abs_send_time: u32, size: usize) {
        let at_us = self.us_since_epoch(now);
        self.stats.packets += 1;
        self.add_bytes(at_us, size);
        let abs = abs_send_time & 0x00FF_FFFF;
        let diff = match self.last_abs {
            None => 0,
            Some(last) => {
                let d = (i64::from(abs) - i64::from(last)).rem_euclid(ABS_WRAP);
                if d >= ABS_WRAP / 2 { d - ABS_WRAP } else { d }
            }
        };
        if diff < 0 && self.last_abs.is_some() {
            // Sent before the previous packet: reordered, no delay information.
            self.update_rate(at_us);
            return;
        }
        self.last_abs = Some(abs);
        self.send_units += diff;
        let send_us = self.send_units * 1_000_000 / ABS_UNITS_PER_SEC;
        match self.current.as_mut() {
            Some(g) if send_us - g.first_send_us <= GROUP_SPAN_US => {
                g.last_send_us = send_us;
                g.last_arrival_us = g.last_arrival_us.max(at_us);
            }
            _ => {
                if let (Some(prev), Some(cur)) = (self.previous, self.current) {
                    let send_delta = (cur.last_send_us - prev.last_send_us) as f64 / 1000.0;
                    let arrival_delta =
                        (cur.last_arrival_us - prev.last_arrival_us) as f64 / 1000.0;
                    self.update_trend(
                        send_delta,
                        arrival_delta,
                        cur.last_arrival_us as f64 / 1000.0,
                    );
                }
                self.previous = self.current;
                self.current = Some(Group {
                    first_send_us: send_us,
                    last_send_us: send_us,
                    last_arrival_us: at_us,
                });
            }
        }
        self.update_rate(at_us);
    }

    fn update_trend(&mut self, send_delta_ms: f64, arrival_delta_ms: f64, arrival_ms: f64) {
        self.num_deltas = self.num_deltas.saturating_add(1);
        self.accumulated_ms += arrival_delta_ms - send_delta_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        self.window[self.window_next] = (arrival_ms, self.smoothed_ms);
        self.window_next = (self.window_next + 1) % TRENDLINE_WINDOW;
        self.window_len = (self.window_len + 1).min(TRENDLINE_WINDOW);
        if self.window_len < TRENDLINE_WINDOW {
            return;
        }
        let n = TRENDLINE_WINDOW as f64;
        let mean_x = self.window.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_y = self.window.iter().map(|p| p.1).sum::<f64>() / n;
        let (num, den) = self.window.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
            (
                num + (x - mean_x) * (y - mean_y),
                den + (x - mean_x) * (x - mean_x),
            )
        });
        let slope = if den > 0.0 {
            num / den
        } else {
            self.prev_trend
        };
        let trend = f64::from(self.num_deltas.min(60)) * slope * THRESHOLD_GAIN;
        if trend > self.threshold {
            self.time_over_ms += send_delta_ms.max(0.0);
            self.overuse_count += 1;
            if self.time_over_ms > OVERUSE_TIME_MS
                && self.overuse_count > 1
                && slope >= self.prev_trend
            {
                self.time_over_ms = 0.0;
                self.overuse_count = 0;
                self.usage = BandwidthUsage::Overusing;
            }
        } else if trend < -self.threshold {
            self.time_over_ms = 0.0;
            self.overuse_count = 0;
            self.usage = BandwidthUsage::Underusing;
        } else {
            self.time_over_ms = 0.0;
            self.overuse_count = 0;
            self.usage = BandwidthUsage::Normal;
        }
        self.prev_trend = slope;
        // Adaptive threshold (GCC section 5.4): follow the trend slowly up, faster down,
        // but not for outliers far above it.
        let last = self
            .last_threshold_update_ms
            .replace(arrival_ms)
            .unwrap_or(arrival_ms);
        if trend.abs() <= self.threshold + 15.0 {
            let k = if trend.abs() < self.threshold {
                K_DOWN
            } else {
                K_UP
            };
            let dt = (arrival_ms - last).clamp(0.0, 100.0);
            self.threshold =
                (self.threshold + k * (trend.abs() - self.threshold) * dt).clamp(6.0, 600.0);
        }
    }

    fn update_rate(&mut self, at_us: i64) {
        let incoming = self.incoming_bps();
        let last = self.last_update_us.replace(at_us).unwrap_or(at_us);
        let dt_s = ((at_us - last) as f64 / 1e6).clamp(0.0, 1.0);
        let Some(incoming) = incoming else {
            return;
        };
        if !self.initialized {
            // The first full rate window: start from what the sender manages to send.
            self.estimate_bps = self.estimate_bps.max(incoming);
            self.initialized = true;
        }
        match self.usage {
            BandwidthUsage::Overusing => {
                let since = self.last_decrease_us.map(|t| at_us - t);
                let rtt_us = i64::try_from(self.rtt.as_micros())
                    .unwrap_or(i64::MAX)
                    .max(100_000);
                if since.is_none_or(|s| s >= rtt_us) {
                    let target = incoming * 85 / 100;
                    if target < self.estimate_bps {
                        self.estimate_bps = target;
                        self.stats.decreases += 1;
                    }
                    self.last_decrease_us = Some(at_us);
                }
            }
            BandwidthUsage::Normal => {
                let grown = (self.estimate_bps as f64 * 1.08f64.powf(dt_s)) as u64 + 1;
                let cap = incoming * 3 / 2 + 10_000;
                if self.estimate_bps < cap {
                    self.estimate_bps = grown.min(cap);
                }
            }
            BandwidthUsage::Underusing => {}
        }
        self.estimate_bps = self
            .estimate_bps
            .clamp(self.config.min_bps, self.config.max_bps);
    }

    /// The estimate to send now, if any: the first one once measured, then every
    /// `interval`, or at once after a drop of more than 3% from the last one sent.
    pub fn poll_remb(&mut self, now: Instant) -> Option<u64> {
        if !self.initialized {
            return None;
        }
        let due = match self.last_sent {
            None => true,
            Some((at, sent)) => {
                now.saturating_duration_since(at) >= self.config.interval
                    || self.estimate_bps * 100 < sent * 97
            }
        };
        if !due {
            return None;
        }
        self.last_sent = Some((now, self.estimate_bps));
        Some(self.estimate_bps)
    }

    /// Writes a REMB for `ssrcs` into `buf` if one is due (see
    /// [`poll_remb`](Self::poll_remb)); `Ok(0)` otherwise.
    pub fn write_remb(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        sender_ssrc: u32,
        ssrcs: &[u32],
    ) -> Result<usize, RtcpError> {
        let Some(bps) = self.poll_remb(now) else {
            return Ok(0);
        };
        let n = rtcp::write_remb(buf, sender_ssrc, bps, ssrcs)?;
        self.stats.remb_sent += 1;
        Ok(n)
    }

    /// When the next periodic REMB is due (a drop is reported on the next packet).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.last_sent.map(|(at, _)| at + self.config.interval)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::rtcp::RtcpPacket;

    fn abs_of(send_us: u64) -> u32 {
        ((send_us * (1 << 18) / 1_000_000) % (1 << 24)) as u32
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    /// A sender of 1200-byte packets at `send_bps` through a link of `link_bps` (a FIFO
    /// queue: each packet leaves after the previous one and its own serialisation),
    /// 20 ms propagation and up to 0.5 ms jitter; the abs-send-time starts at
    /// `start_us` (to cross the 64 s wrap). Returns (send µs, arrival µs) per packet.
    fn path(
        duration_us: u64,
        send_bps: impl Fn(u64) -> u64,
        link_bps: impl Fn(u64) -> u64,
        seed: u64,
    ) -> Vec<(u64, u64)> {
        let mut rng = Rng(seed);
        let mut out = Vec::new();
        let mut send = 0u64;
        let mut link_free = 0u64;
        while send < duration_us {
            let serialise = 1200 * 8 * 1_000_000 / link_bps(send);
            let leave = send.max(link_free) + serialise;
            link_free = leave;
            out.push((send, leave + 20_000 + rng.next() % 500));
            send += 1200 * 8 * 1_000_000 / send_bps(send);
        }
        out
    }

    fn run(e: &mut RembEstimator, packets: &[(u64, u64)], start_us: u64) -> Vec<(u64, u64)> {
        let t0 = Instant::now();
        let mut arrivals: Vec<_> = packets.to_vec();
        arrivals.sort_by_key(|p| p.1);
        let mut rembs = Vec::new();
        let mut buf = [0u8; 64];
        for (send, arrive) in arrivals {
            let now = t0 + Duration::from_micros(arrive);
            e.handle_packet(now, abs_of(start_us + send), 1200);
            let n = e.write_remb(now, &mut buf, 1, &[0xAB]).unwrap();
            if n > 0 {
                let Some(Ok(RtcpPacket::Remb(r))) = rtcp::packets(&buf[..n]).next() else {
                    panic!()
                };
                rembs.push((arrive, r.bitrate_bps));
            }
        }
        rembs
    }

    #[test]
    fn default_config() {
        let c = RembConfig::default();
        assert_eq!(c.initial_bps, 300_000);
        assert_eq!(c.min_bps, 30_000);
        assert_eq!(c.max_bps, 10_000_000);
        assert_eq!(c.interval, Duration::from_secs(1));
    }

    #[test]
    fn reads_abs_send_time() {
        let p = [
            0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xBE, 0xDE, 0, 1, 0x22, 0x12, 0x34, 0x56,
        ];
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(abs_send_time(&h, &p, 2), Some(0x12_3456));
        assert_eq!(abs_send_time(&h, &p, 3), None);
    }

    #[test]
    fn clean_link_at_2mbps_ramps_the_estimate_up_toward_it() {
        let mut e = RembEstimator::new(RembConfig::default());
        // Start 60 s into the abs-send-time cycle: it wraps after 4 s.
        let packets = path(20_000_000, |_| 2_000_000, |_| 100_000_000, 7);
        let rembs = run(&mut e, &packets, 60_000_000);
        assert_eq!(e.stats().decreases, 0, "{rembs:?}");
        let (first_at, first) = rembs[0];
        assert!(first_at < 1_000_000, "{rembs:?}");
        assert!(first >= 1_800_000, "starts from the received rate: {first}");
        let last = rembs.last().unwrap().1;
        assert!((1_900_000..=3_100_000).contains(&last), "{rembs:?}");
        // About once a second.
        assert!((19..=22).contains(&rembs.len()), "{}", rembs.len());
    }

    #[test]
    fn bottleneck_at_500kbps_brings_the_estimate_below_600kbps_within_seconds() {
        let mut e = RembEstimator::new(RembConfig::default());
        // 2 Mbit/s on a clean link for 5 s, then the link narrows to 500 kbit/s and the
        // queue grows (this sender ignores REMB).
        let packets = path(
            12_000_000,
            |_| 2_000_000,
            |t| if t < 5_000_000 { 100_000_000 } else { 500_000 },
            3,
        );
        let rembs = run(&mut e, &packets, 0);
        let before = rembs
            .iter()
            .filter(|r| r.0 < 5_000_000)
            .map(|r| r.1)
            .next_back()
            .unwrap();
        assert!(before >= 1_800_000, "{rembs:?}");
        let below = rembs
            .iter()
            .find(|r| r.0 > 5_000_000 && r.1 < 600_000)
            .expect("a drop");
        assert!(
            below.0 < 5_000_000 + 3_000_000,
            "dropped at {} µs: {rembs:?}",
            below.0
        );
        assert!(e.stats().decreases >= 1);
        assert!(e.estimate_bps() < 600_000, "{}", e.estimate_bps());
    }

    #[test]
    fn estimate_follows_a_sender_that_obeys_it_through_a_bottleneck() {
        // A REMB-driven sender (aiortc's behaviour) behind a 1 Mbit/s link: the estimate
        // settles near the link rate instead of collapsing or overshooting.
        let mut e = RembEstimator::new(RembConfig::default());
        let t0 = Instant::now();
        let mut send = 0u64;
        let mut link_free = 0u64;
        let mut rate = 300_000u64;
        let mut buf = [0u8; 64];
        let mut rng = Rng(5);
        let mut in_flight: Vec<(u64, u64)> = Vec::new();
        let mut rates = Vec::new();
        while send < 30_000_000 {
            let leave = send.max(link_free) + 1200 * 8 * 1_000_000 / 1_000_000;
            link_free = leave;
            in_flight.push((leave + 20_000 + rng.next() % 500, send));
            in_flight.sort_unstable();
            while in_flight.first().is_some_and(|p| p.0 <= send) {
                let (arrive, s) = in_flight.remove(0);
                let now = t0 + Duration::from_micros(arrive);
                e.handle_packet(now, abs_of(s), 1200);
                if e.write_remb(now, &mut buf, 1, &[2]).unwrap() > 0 {
                    let Some(Ok(RtcpPacket::Remb(r))) = rtcp::packets(&buf[..28]).next() else {
                        panic!()
                    };
                    rate = r.bitrate_bps.clamp(100_000, 3_000_000);
                    rates.push((arrive / 1000, rate));
                }
            }
            send += 1200 * 8 * 1_000_000 / rate;
        }
        let late: Vec<u64> = rates.iter().filter(|r| r.0 > 15_000).map(|r| r.1).collect();
        assert!(!late.is_empty());
        let mean = late.iter().sum::<u64>() / late.len() as u64;
        assert!((500_000..=1_500_000).contains(&mean), "{rates:?}");
    }
}
