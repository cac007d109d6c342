//! Virtual-clock scenarios: the estimator drives a sender through a simulated
//! bottleneck (a token bucket of a given rate and burst, a drop-tail buffer and
//! a propagation delay; a burst of 0 is a plain FIFO link); a [`TwccReceiver`]
//! at the far end writes the feedback the estimator reads, as a browser would.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;
use crate::proto::quality::twcc::{FMT_TWCC, TwccConfig, TwccReceiver};
use crate::proto::rtcp::{self, RtcpPacket, pt};

const PACKET: usize = 1200;
const ONE_WAY: Duration = Duration::from_millis(20);
/// Queueing delay beyond which the link's buffer drops.
const BUFFER: Duration = Duration::from_millis(400);

/// The sender, the link and the receiver, on one virtual clock (1 ms ticks).
struct Path {
    t0: Instant,
    now: Instant,
    bwe: SendSideBwe,
    receiver: TwccReceiver,
    seq: u16,
    /// Bytes the sender may send now (it sends at the estimate).
    budget: f64,
    /// Link capacity, bits per second.
    capacity: u64,
    /// The token bucket's depth, bytes (0: a plain FIFO link), as `tc tbf
    /// burst`: while it holds tokens, packets pass at line rate.
    burst: usize,
    /// Tokens in the bucket at `tokens_at`, bytes.
    tokens: f64,
    tokens_at: Instant,
    /// When the link lets the last packet it holds go.
    busy_until: Instant,
    /// Packets on their way: (arrival at the receiver, seq).
    in_flight: VecDeque<(Instant, u16)>,
    /// Feedback on its way back: (arrival at the bridge, bytes).
    feedback: VecDeque<(Instant, Vec<u8>)>,
    /// Every how many packets one is lost on the link (0: none).
    lose_every: u32,
    /// Swap one pair of arrivals in ten (reordering on the path).
    reorder: bool,
    sent: u32,
    /// A layered sender: it sends the high rate when the estimate allows it,
    /// else the low one (instead of sending at the estimate).
    layers: Option<(u64, u64)>,
    /// Whether it probes with padding clusters when the high layer does not fit.
    probing: bool,
    /// Whether padding is asked for only after a feedback, as the bridge
    /// does (`Router::probe_downlink`), so it leaves in bursts of up to
    /// [`MAX_PADDING_BURST`] bytes, rather than every millisecond.
    pad_on_feedback: bool,
    /// Whether a feedback was handled in this tick.
    fed_back: bool,
    /// How long a layered sender keeps sending the layer it is on after the
    /// estimate says the other one (the bridge re-allocates on its 500 ms
    /// timer, then waits for a key frame of the new layer).
    switch_delay: Duration,
    /// Whether a layered sender is on its high layer.
    on_high: bool,
    /// When a layered sender switches, once the estimate called for it.
    switch_at: Option<Instant>,
    /// Queueing delay beyond which the link's buffer drops (`tc tbf latency`).
    buffer: Duration,
}

impl Path {
    fn new(capacity: u64, first_seq: u16) -> Self {
        let t0 = Instant::now();
        Self {
            t0,
            now: t0,
            bwe: SendSideBwe::new(BweConfig::default()),
            receiver: TwccReceiver::new(TwccConfig::default()),
            seq: first_seq,
            budget: 0.0,
            capacity,
            burst: 0,
            tokens: 0.0,
            tokens_at: t0,
            busy_until: t0,
            in_flight: VecDeque::new(),
            feedback: VecDeque::new(),
            lose_every: 0,
            reorder: false,
            sent: 0,
            layers: None,
            probing: false,
            pad_on_feedback: false,
            fed_back: false,
            switch_delay: Duration::ZERO,
            on_high: false,
            switch_at: None,
            buffer: BUFFER,
        }
    }

    fn send(&mut self) {
        self.send_sized(PACKET);
    }

    fn send_sized(&mut self, size: usize) {
        self.send_on_link(size, false);
    }

    fn send_on_link(&mut self, size: usize, padding: bool) {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        if padding {
            self.bwe.on_padding_sent(self.now, seq, size);
        } else {
            self.bwe.on_packet_sent(self.now, seq, size);
        }
        self.sent += 1;
        let start = self.busy_until.max(self.now);
        if start - self.now > self.buffer {
            return; // Drop-tail.
        }
        // Tokens at `start`, then the wait for the rest of `size` at the rate.
        let bytes_per_s = self.capacity as f64 / 8.0;
        let refill = (start - self.tokens_at).as_secs_f64() * bytes_per_s;
        let tokens = (self.tokens + refill).min(self.burst as f64);
        let wait = ((size as f64 - tokens).max(0.0) / bytes_per_s * 1e9) as u64;
        let leave = start + Duration::from_nanos(wait);
        self.tokens = (tokens + wait as f64 / 1e9 * bytes_per_s - size as f64).max(0.0);
        self.tokens_at = leave;
        self.busy_until = leave;
        if self.lose_every > 0 && self.sent.is_multiple_of(self.lose_every) {
            return;
        }
        self.in_flight.push_back((self.busy_until + ONE_WAY, seq));
        if self.reorder && self.in_flight.len() >= 2 && seq % 10 == 1 {
            let n = self.in_flight.len();
            let (a, b) = (self.in_flight[n - 2].1, self.in_flight[n - 1].1);
            self.in_flight[n - 2].1 = b;
            self.in_flight[n - 1].1 = a;
        }
    }

    fn tick(&mut self) {
        self.now += Duration::from_millis(1);
        let fed_back = std::mem::take(&mut self.fed_back);
        if let Some((_, high)) = self.layers {
            let want_high = self.bwe.current() >= high;
            if want_high == self.on_high {
                self.switch_at = None;
            } else if *self.switch_at.get_or_insert(self.now + self.switch_delay) <= self.now {
                self.on_high = want_high;
                self.switch_at = None;
            }
        }
        let rate = match self.layers {
            None => self.bwe.current(),
            Some((_, high)) if self.on_high => high,
            Some((low, high)) => {
                if self.probing {
                    if let Some(target) = self.bwe.probe_due(self.now, high) {
                        self.bwe.start_probe(self.now, target);
                        for _ in 0..probe::PROBE_PACKETS {
                            self.send_on_link(255, true);
                        }
                    }
                    if !self.pad_on_feedback || fed_back {
                        let padding = self.bwe.padding_due(self.now, high);
                        for _ in 0..padding.div_ceil(255) {
                            self.send_on_link(255, true);
                        }
                    }
                }
                low
            }
        };
        self.budget += rate as f64 / 8.0 / 1000.0;
        // The sender sends at most a frame's worth ahead.
        self.budget = self.budget.min(20.0 * PACKET as f64);
        while self.budget >= PACKET as f64 {
            self.budget -= PACKET as f64;
            self.send();
        }
        while self
            .in_flight
            .front()
            .is_some_and(|(at, _)| *at <= self.now)
        {
            let (at, seq) = self.in_flight.pop_front().unwrap();
            self.receiver.handle_packet(at, seq);
        }
        let mut buf = [0u8; 1500];
        while let Ok(Some(n)) = self.receiver.poll_feedback(self.now, &mut buf, 1, 2) {
            self.feedback
                .push_back((self.now + ONE_WAY, buf[..n].to_vec()));
        }
        while self.feedback.front().is_some_and(|(at, _)| *at <= self.now) {
            let (_, bytes) = self.feedback.pop_front().unwrap();
            for p in rtcp::packets(&bytes) {
                if let Ok(RtcpPacket::Unknown(u)) = p
                    && (u.packet_type, u.count) == (pt::RTPFB, FMT_TWCC)
                {
                    let fb = TwccFeedback::parse(u.body).unwrap();
                    self.bwe.handle_feedback(self.now, &fb);
                    self.fed_back = true;
                }
            }
        }
    }

    /// Runs until `until` after the start; the first moment `done` held, if any.
    fn run_until(
        &mut self,
        until: Duration,
        mut done: impl FnMut(u64) -> bool,
    ) -> Option<Duration> {
        let mut first = None;
        while self.now - self.t0 < until {
            self.tick();
            if first.is_none() && self.bwe.estimate().is_some_and(&mut done) {
                first = Some(self.now - self.t0);
            }
        }
        first
    }

    /// From now on the link is a token bucket of `rate` bits per second and
    /// `burst` bytes, full (`tc tbf` as it is added).
    fn cap_with_bucket(&mut self, rate: u64, burst: usize) {
        self.capacity = rate;
        self.burst = burst;
        self.tokens = burst as f64;
        self.tokens_at = self.now;
    }

    fn estimate(&self) -> u64 {
        self.bwe.estimate().unwrap()
    }
}

#[test]
fn no_estimate_before_the_first_feedback_then_the_start_value() {
    let mut p = Path::new(5_000_000, 0);
    assert_eq!(p.bwe.estimate(), None);
    assert_eq!(p.bwe.current(), 300_000);
    p.run_until(Duration::from_millis(200), |_| false);
    assert!(p.bwe.estimate().is_some());
    assert!(p.bwe.stats().feedback > 0);
}

#[test]
fn estimate_ramps_from_300k_to_above_2mbps_within_5s_on_a_clean_link() {
    let mut p = Path::new(5_000_000, 0);
    let at = p.run_until(Duration::from_secs(5), |e| e > 2_000_000);
    eprintln!("above 2 Mbit/s at {at:?}");
    assert!(at.is_some(), "estimate after 5 s: {}", p.estimate());
    assert_eq!(p.bwe.stats().lost, 0);
}

#[test]
fn estimate_settles_below_the_capacity_of_a_1mbps_link() {
    let mut p = Path::new(1_000_000, 0);
    p.run_until(Duration::from_secs(5), |_| false);
    // After the start-up, it stays around the capacity: never far above it
    // for long, never collapsed.
    let mut above = 0;
    let mut low = u64::MAX;
    for _ in 0..10_000 {
        p.tick();
        let e = p.estimate();
        if e > 1_300_000 {
            above += 1;
        }
        low = low.min(e);
    }
    assert!(above < 2_000, "{above} ms above 1.3 Mbit/s of 10 s");
    assert!(low > 300_000, "fell to {low}");
    assert!(p.bwe.stats().overuses > 0);
}

#[test]
fn estimate_falls_below_500k_within_2s_when_the_link_drops_to_500k() {
    let mut p = Path::new(5_000_000, 0);
    p.run_until(Duration::from_secs(8), |_| false);
    assert!(p.estimate() > 2_000_000, "{}", p.estimate());
    p.capacity = 500_000;
    let at = p.run_until(Duration::from_secs(10), |e| e < 500_000);
    let at = at.expect("never below 500 kbit/s");
    eprintln!("below 500 kbit/s at {at:?} (link dropped at 8 s)");
    assert!(at <= Duration::from_secs(10), "at {at:?}");
}

#[test]
fn estimate_recovers_above_2mbps_within_8s_after_the_link_recovers() {
    let mut p = Path::new(5_000_000, 0);
    p.run_until(Duration::from_secs(6), |_| false);
    p.capacity = 500_000;
    p.run_until(Duration::from_secs(12), |_| false);
    assert!(p.estimate() < 700_000, "{}", p.estimate());
    p.capacity = 5_000_000;
    let at = p.run_until(Duration::from_secs(20), |e| e > 2_000_000);
    eprintln!("above 2 Mbit/s at {at:?} (link recovered at 12 s)");
    assert!(
        at.is_some_and(|t| t <= Duration::from_secs(20)),
        "estimate 8 s after recovery: {}",
        p.estimate()
    );
}

#[test]
fn loss_of_15_percent_lowers_the_estimate() {
    let mut clean = Path::new(5_000_000, 0);
    clean.run_until(Duration::from_secs(8), |_| false);
    let mut lossy = Path::new(5_000_000, 0);
    lossy.lose_every = 7; // 14.3%
    lossy.run_until(Duration::from_secs(8), |_| false);
    assert!(lossy.bwe.stats().lost > 0);
    assert!(
        lossy.estimate() < 300_000 && lossy.estimate() * 4 < clean.estimate(),
        "lossy {} clean {}",
        lossy.estimate(),
        clean.estimate()
    );
}

#[test]
fn loss_of_5_percent_does_not_stop_the_ramp() {
    let mut p = Path::new(5_000_000, 0);
    p.lose_every = 20;
    let at = p.run_until(Duration::from_secs(6), |e| e > 2_000_000);
    assert!(at.is_some(), "{}", p.estimate());
}

#[test]
fn reordering_and_wrapping_sequence_numbers_do_not_panic_or_stall() {
    let mut p = Path::new(5_000_000, 65_000);
    p.reorder = true;
    let at = p.run_until(Duration::from_secs(6), |e| e > 1_000_000);
    assert!(p.seq < 65_000, "sequence numbers wrapped");
    assert!(at.is_some(), "{}", p.estimate());
}

#[test]
fn feedback_for_packets_never_sent_is_ignored() {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(BweConfig::default());
    let mut r = TwccReceiver::new(TwccConfig::default());
    for i in 0..30u16 {
        r.handle_packet(t0 + Duration::from_millis(u64::from(i)), 1000 + i);
    }
    let mut buf = [0u8; 1500];
    let n = r
        .poll_feedback(t0 + Duration::from_millis(100), &mut buf, 1, 2)
        .unwrap()
        .unwrap();
    let Some(Ok(RtcpPacket::Unknown(u))) = rtcp::packets(&buf[..n]).next() else {
        panic!("no feedback")
    };
    bwe.handle_feedback(t0, &TwccFeedback::parse(u.body).unwrap());
    assert_eq!(bwe.stats().unmatched, 30);
    assert_eq!(bwe.estimate(), Some(300_000));
}

/// A receiver whose link was congested at 600 kbit/s, then recovers to
/// 5 Mbit/s, while its layers send 500 kbit/s and want 1.5 Mbit/s.
fn recovered_media_limited(probing: bool) -> (Path, Option<Duration>) {
    let mut p = Path::new(600_000, 0);
    p.run_until(Duration::from_secs(6), |_| false);
    assert!(p.estimate() < 800_000, "{}", p.estimate());
    p.capacity = 5_000_000;
    p.layers = Some((500_000, 1_500_000));
    p.probing = probing;
    let at = p.run_until(Duration::from_secs(10), |e| e >= 1_500_000);
    (p, at)
}

#[test]
fn probing_lifts_a_media_limited_estimate_to_the_wanted_rate_within_4s() {
    let (p, at) = recovered_media_limited(true);
    eprintln!("wanted rate reached at {at:?} (link recovered at 6 s)");
    assert!(at.is_some(), "{} {:?}", p.estimate(), p.bwe.stats());
    // The link was met at 600 kbit/s, so padding probes (not clusters).
    assert!(p.bwe.stats().padding_bytes > 0, "{:?}", p.bwe.stats());
}

#[test]
fn without_probing_a_media_limited_estimate_climbs_only_additively() {
    let (p, at) = recovered_media_limited(false);
    assert_eq!(at, None, "{}", p.estimate());
    assert_eq!(p.bwe.stats().probes, 0);
}

#[test]
fn no_probe_while_loss_holds_the_estimate() {
    let mut p = Path::new(5_000_000, 0);
    p.lose_every = 5;
    p.run_until(Duration::from_secs(3), |_| false);
    assert_eq!(p.bwe.probe_due(p.now, 100_000_000), None);
}

/// The Chromium scenario of issue 11 on the virtual clock: a receiver whose
/// layers send 500 kbit/s or 2.5 Mbit/s is on its top layer over a 5 Mbit/s
/// link, then its link is capped at 1 Mbit/s by a token bucket with a 16 KB
/// burst (the test's `tc tbf`). It must move to the low layer and stay there:
/// a 5-packet probe cluster passes the bucket's burst at line rate, and when
/// its result counted as the link's rate the receiver was moved back to the
/// top layer every few seconds.
#[test]
fn behind_a_1mbit_token_bucket_a_layered_receiver_stays_on_its_low_layer() {
    let mut p = Path::new(5_000_000, 0);
    p.layers = Some((500_000, 2_500_000));
    p.probing = true;
    p.run_until(Duration::from_secs(8), |_| false);
    assert!(
        p.estimate() >= 2_500_000,
        "on top before the cap: {}",
        p.estimate()
    );
    p.cap_with_bucket(1_000_000, 16_000);
    let moved = p.run_until(Duration::from_secs(11), |e| e < 2_500_000);
    assert!(moved.is_some(), "never moved down: {}", p.estimate());
    // 5 s to settle, then 30 s on the low layer, every millisecond.
    p.run_until(Duration::from_secs(16), |_| false);
    let mut top_ms = 0;
    let mut padded_before = p.bwe.stats().matched;
    let mut highest = 0;
    for _ in 0..30_000 {
        p.tick();
        let e = p.estimate();
        highest = highest.max(e);
        if e >= 2_500_000 {
            top_ms += 1;
        }
    }
    padded_before = p.bwe.stats().matched - padded_before;
    eprintln!(
        "on the top layer {top_ms} ms of 30 s; highest estimate {highest}; {padded_before} reports"
    );
    assert_eq!(top_ms, 0, "back on the top layer behind the cap");
    assert!(
        highest < 1_600_000,
        "estimate went to {highest} behind 1 Mbit/s"
    );
    assert!(p.estimate() > 300_000, "collapsed to {}", p.estimate());
}

/// As above, but the way the bridge pads (`Router::probe_downlink`): after
/// each feedback, in bursts of up to [`MAX_PADDING_BURST`] bytes, which pass
/// the bucket's burst at line rate and read, for part of a second, as more
/// than the capacity learned at the last overuse. Low layers of 300 to 800
/// kbit/s (two 180p or 360p streams of the Chromium test). When that reading
/// made the estimator forget the capacity, the estimate doubled per second
/// and went to 1.5-2.3 Mbit/s behind the 1 Mbit/s bucket (measured before the
/// fix: 1.6, 1.5, 1.6, 1.5 and 1.9 Mbit/s for these five), enough for a second
/// top layer in the browser test.
#[test]
fn padding_bursts_through_a_token_bucket_do_not_raise_the_estimate_past_its_rate() {
    for (low, burst) in [
        (500_000u64, 16_000usize),
        (700_000, 16_000),
        (700_000, 32_000),
        (800_000, 64_000),
        (300_000, 32_000),
    ] {
        let mut p = Path::new(5_000_000, 0);
        p.layers = Some((low, 2_500_000));
        p.probing = true;
        p.pad_on_feedback = true;
        p.run_until(Duration::from_secs(8), |_| false);
        assert!(
            p.estimate() >= 2_500_000,
            "on top before the cap: {}",
            p.estimate()
        );
        p.cap_with_bucket(1_000_000, burst);
        // 8 s to settle, then 30 s.
        p.run_until(Duration::from_secs(16), |_| false);
        let mut highest = 0;
        for _ in 0..30_000 {
            p.tick();
            highest = highest.max(p.estimate());
        }
        let stats = p.bwe.stats();
        eprintln!(
            "low layer {low}, burst {burst}: highest estimate {highest}, now {}; {stats:?}",
            p.estimate()
        );
        assert!(stats.padding_bytes > 0, "{stats:?}");
        assert!(
            highest < 1_250_000,
            "low layer {low}, burst {burst}: the estimate went to {highest} behind 1 Mbit/s"
        );
        assert!(p.estimate() > 500_000, "collapsed to {}", p.estimate());
    }
}

/// The onset of the capped browser test (issue 11), as its bridge log showed
/// it: a receiver on 3 Mbit/s of layers over a fast link is capped at 1
/// Mbit/s by a token bucket (16 KB burst, 200 ms of queue: the test's `tc tbf`),
/// and its layers come down only 800 ms after the estimate asked for it (the
/// allocation's 500 ms timer, then key frames of the lower layers). What was
/// sent meanwhile is lost at 50-75%; when every 300 ms of it cut the estimate
/// by a further third, it went to 46 kbit/s in 2 s (measured: cuts to 508,
/// 230, 136, 106, 77, 60 and 46 kbit/s with 930 kbit/s acknowledged at the
/// first), below two 180p streams, and one was suspended for 10 s. The link
/// delivers 1 Mbit/s throughout: the estimate must not fall far below what
/// arrives.
#[test]
fn capped_while_its_layers_come_down_late_the_estimate_keeps_what_the_link_delivers() {
    let mut p = capped_from_3_mbit(Duration::from_millis(200), true);
    let mut lowest = u64::MAX;
    for _ in 0..8_000 {
        p.tick();
        lowest = lowest.min(p.estimate());
    }
    let stats = p.bwe.stats();
    eprintln!(
        "lowest estimate after the cap {lowest}, now {}; {stats:?}",
        p.estimate()
    );
    assert!(!p.on_high, "never moved down: {}", p.estimate());
    assert!(stats.lost > 0, "{stats:?}");
    assert!(
        lowest >= 500_000,
        "the estimate fell to {lowest} behind a link that delivers 1 Mbit/s"
    );
}

/// The allocation stops a taller layer at once on a switch down while the
/// link is losing (`Router::reallocate`): that has to be known at the first
/// lossy feedback, not only once a whole loss interval (300 ms of sends)
/// has set the loss-based cap.
#[test]
fn a_lossy_link_counts_as_losing_from_its_first_lossy_feedback() {
    let mut p = Path::new(5_000_000, 0);
    p.run_until(Duration::from_secs(3), |_| false);
    assert!(!p.bwe.losing());
    p.lose_every = 2;
    while p.bwe.stats().lost == 0 {
        p.tick();
    }
    assert!(p.bwe.loss.cap().is_none(), "the cap came at once");
    assert!(p.bwe.losing(), "{:?}", p.bwe.stats());
    // Clean again: the feedback no longer says so (the cap, while it
    // still holds the estimate, does).
    p.lose_every = 0;
    p.run_until(Duration::from_secs(5), |_| false);
    assert!(!p.bwe.feedback_lossy);
}

/// A layered receiver (650 kbit/s and 3 Mbit/s, probing with padding after
/// feedback when `probing`) on its top layer over a fast link, just capped
/// at 1 Mbit/s by a token bucket with a 16 KB burst and `buffer` of queue;
/// its layers come down 800 ms after the estimate asks (the allocation's
/// timer, then key frames).
fn capped_from_3_mbit(buffer: Duration, probing: bool) -> Path {
    let mut p = Path::new(50_000_000, 0);
    p.layers = Some((650_000, 3_000_000));
    p.probing = probing;
    p.pad_on_feedback = probing;
    p.switch_delay = Duration::from_millis(800);
    p.buffer = buffer;
    p.run_until(Duration::from_secs(10), |_| false);
    assert!(p.on_high, "on top before the cap: {}", p.estimate());
    p.cap_with_bucket(1_000_000, 16_000);
    p
}

/// The onset of the capped browser test (issue 11): the test's `tc tbf`
/// (16 KB burst, 200 ms latency) holds 330 ms of queue. The queue grows by
/// about 2 ms per ms; the estimate (far above what arrives) must fall at the
/// second feedback that shows it past 50 ms and growing, not one or two
/// feedbacks later when the trendline has a slope and the bucket is already
/// dropping.
#[test]
fn a_sudden_cap_lowers_the_estimate_as_soon_as_the_queue_grows_past_50_ms() {
    let mut p = capped_from_3_mbit(Duration::from_millis(330), false);
    let cap = p.now;
    let overuses = p.bwe.stats().overuses;
    // The queue each feedback showed, until the first decrease.
    let mut queues = Vec::new();
    let mut feedback = p.bwe.stats().feedback;
    while p.bwe.stats().overuses == overuses && p.now - cap < Duration::from_secs(2) {
        p.tick();
        if p.bwe.stats().feedback != feedback {
            feedback = p.bwe.stats().feedback;
            queues.push(p.bwe.queue_delay().as_millis());
        }
    }
    let after = p.now - cap;
    eprintln!(
        "first decrease {} ms after the cap, at {} kbit/s; queues {queues:?} ms; {:?}",
        after.as_millis(),
        p.estimate() / 1000,
        p.bwe.stats()
    );
    assert!(p.bwe.stats().overuses > overuses, "no decrease in 2 s");
    let past_50 = queues.iter().filter(|&&q| q >= 50).count();
    assert!(
        past_50 <= 2,
        "decreased only after {past_50} feedbacks past 50 ms: {queues:?}"
    );
    assert!(p.estimate() < 3_000_000, "{}", p.estimate());
    assert_eq!(p.bwe.stats().lost, 0, "before any loss");
}

/// The first decrease at a sudden cap goes to what the link carries
/// ([`super::bottleneck`]), not to 0.85 x the acknowledged window, which
/// right after the cap still holds mostly the 3 Mbit/s that arrived before
/// it (measured with Chromium: 4.06 Mbit/s acknowledged at the first
/// overuse behind 1 Mbit/s, an estimate of 2.45 Mbit/s, and a 720p layer
/// kept on the capped link).
#[test]
fn a_sudden_caps_first_decrease_goes_to_what_the_link_carries() {
    let mut p = capped_from_3_mbit(Duration::from_millis(330), false);
    let cap = p.now;
    let overuses = p.bwe.stats().overuses;
    while p.bwe.stats().overuses == overuses && p.now - cap < Duration::from_secs(2) {
        p.tick();
    }
    assert!(p.bwe.stats().overuses > overuses, "no decrease in 2 s");
    let acked = p.bwe.acked_bitrate().unwrap_or(0);
    eprintln!(
        "first decrease {} ms after the cap: estimate {} kbit/s, acknowledged {} kbit/s",
        (p.now - cap).as_millis(),
        p.estimate() / 1000,
        acked / 1000
    );
    assert!(
        acked > 1_300_000,
        "the acknowledged window still reads the rate before the cap: {acked}"
    );
    assert!(
        p.estimate() <= 1_000_000,
        "the first decrease went to {} bit/s behind a 1 Mbit/s link",
        p.estimate()
    );
}

#[test]
fn while_a_capped_link_is_congested_its_budget_leaves_room_to_drain_the_queue() {
    let mut p = capped_from_3_mbit(Duration::from_millis(330), false);
    // (budget below the estimate, congested) seen; padding asked while
    // congested.
    let (mut drained, mut congested_ticks, mut padding) = (false, 0, 0);
    for _ in 0..3_000 {
        p.tick();
        if p.bwe.congested() {
            congested_ticks += 1;
            let queue = p.bwe.queue_delay();
            if queue >= drain::DRAIN_FROM {
                drained |= p.bwe.budget() < p.bwe.current();
            }
            padding += p.bwe.padding_due(p.now, 3_000_000);
        } else {
            assert_eq!(p.bwe.budget(), p.bwe.current(), "not congested");
        }
    }
    assert!(congested_ticks > 0, "{:?}", p.bwe.stats());
    assert!(drained, "the budget never left room to drain the queue");
    assert_eq!(padding, 0, "padding asked for while congested");
    // Long after, the queue is gone: the budget is the estimate (the loss
    // cap may still hold the estimate, and the link count as losing).
    p.run_until(p.now - p.t0 + Duration::from_secs(10), |_| false);
    assert!(
        p.bwe.queue_delay() < drain::DRAIN_FROM,
        "{:?}",
        p.bwe.queue_delay()
    );
    assert_eq!(p.bwe.budget(), p.bwe.current());
}
