//! Keyframe request throttling between receivers and a source's sender.
//!
//! A keyframe is expensive (several times a delta frame) and every receiver of a source
//! gets it, so the requests of all receivers are merged: a request reaches the sender at
//! most once per [`KeyframeConfig::source_interval`] (one already under way serves them
//! all), and one receiver gets at most [`KeyframeConfig::receiver_max`] requests through
//! per [`KeyframeConfig::receiver_window`] for one source (a receiver stuck in a loop of
//! PLIs does not make everybody's video worse). A slot that changes source asks the new
//! source once, outside the receiver's budget. Each source numbers its FIRs (RFC 5104
//! section 4.3.1.2: a new request gets a new number).
//!
//! [`KeyframeRequester`] lives with the source (Producer), [`ReceiverKeyframeState`]
//! with each (receiver, source) pair, i.e. the slot (Consumer).

use std::time::{Duration, Instant};

use crate::proto::rtcp::{self, RtcpError};

/// The most requests per receiver window a [`ReceiverKeyframeState`] can track.
pub const MAX_RECEIVER_REQUESTS: usize = 8;

/// Throttling limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeConfig {
    /// At most one request per source in this interval. Default: 350 ms,
    /// libwebrtc's own and a margin: its `EncoderRtcpFeedback` drops a
    /// keyframe request that comes sooner than 300 ms after the last one it
    /// took (`kMinKeyframeSendIntervalMs`). At 200 ms, Chromium behind a
    /// 1 Mbit/s cap ignored the request of a switch down sent 243 ms after
    /// the previous one, and at 300 ms one sent 300.0 ms after it (the two
    /// crossed the uplink with different delays); each time the slot waited
    /// another 500 ms for its key frame.
    pub source_interval: Duration,
    /// The window of the per-receiver budget. Default: 10 s.
    pub receiver_window: Duration,
    /// Requests one receiver gets through per window and source (at most
    /// [`MAX_RECEIVER_REQUESTS`]). Default: 3.
    pub receiver_max: usize,
}

impl Default for KeyframeConfig {
    fn default() -> Self {
        KeyframeConfig {
            source_interval: Duration::from_millis(350),
            receiver_window: Duration::from_secs(10),
            receiver_max: 3,
        }
    }
}

/// A request to send to the source's sender now: as a PLI, or as a FIR with `fir_seq_nr`,
/// whichever the sender negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeRequest {
    /// The command sequence number a FIR must carry.
    pub fir_seq_nr: u8,
}

impl KeyframeRequest {
    /// Writes the request as a PLI (`fir == false`) or a FIR into `buf`.
    pub fn write(
        &self,
        buf: &mut [u8],
        fir: bool,
        sender_ssrc: u32,
        media_ssrc: u32,
    ) -> Result<usize, RtcpError> {
        if fir {
            rtcp::write_fir(buf, sender_ssrc, media_ssrc, self.fir_seq_nr)
        } else {
            rtcp::write_pli(buf, sender_ssrc, media_ssrc)
        }
    }
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeDecision {
    /// Send this request to the sender.
    Send(KeyframeRequest),
    /// Dropped: a request went to the sender less than `source_interval` ago.
    SourceThrottled,
    /// Dropped: this receiver used its budget for this source.
    ReceiverThrottled,
    /// Dropped: this slot already asked since its source changed.
    AlreadyAsked,
}

/// Counters of one source (jitsi-videobridge's `KeyframeRequester` names in the docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyframeStats {
    /// Requests from receivers (jvb `numPlisReceived` + `numFirsReceived`).
    pub received: u64,
    /// Requests sent to the sender (jvb `numPlisForwarded` + `numFirsForwarded` +
    /// generated).
    pub sent: u64,
    /// Dropped by the per-source interval (jvb `numPlisDropped`/`numFirsDropped`).
    pub source_throttled: u64,
    /// Dropped by a receiver's budget.
    pub receiver_throttled: u64,
    /// Asked by slots changing source (jvb `numApiRequests`).
    pub slot_switches: u64,
    /// Asked by the bridge itself, for a loss it cannot repair (jvb `numPlisGenerated`).
    pub generated: u64,
}

/// The keyframe budget of one receiver for one source. See the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiverKeyframeState {
    recent: [Option<Instant>; MAX_RECEIVER_REQUESTS],
    switch_asked: bool,
}

impl ReceiverKeyframeState {
    /// A fresh budget.
    pub fn new() -> Self {
        Self::default()
    }

    /// The slot now shows another source: it may ask that source once.
    pub fn handle_source_change(&mut self) {
        self.switch_asked = false;
        self.recent = [None; MAX_RECEIVER_REQUESTS];
    }

    fn within_budget(&self, now: Instant, config: &KeyframeConfig) -> bool {
        let used = self
            .recent
            .iter()
            .take(config.receiver_max.min(MAX_RECEIVER_REQUESTS))
            .flatten()
            .filter(|t| now.saturating_duration_since(**t) < config.receiver_window)
            .count();
        used < config.receiver_max.min(MAX_RECEIVER_REQUESTS)
    }

    fn record(&mut self, now: Instant, config: &KeyframeConfig) {
        let n = config.receiver_max.clamp(1, MAX_RECEIVER_REQUESTS);
        // Replace the oldest (or an empty) entry among the first `n`.
        if let Some(slot) = self.recent[..n].iter_mut().min_by_key(|t| **t) {
            *slot = Some(now);
        }
    }
}

/// The keyframe requests toward one source's sender. See the module documentation.
#[derive(Debug, Clone)]
pub struct KeyframeRequester {
    config: KeyframeConfig,
    last_sent: Option<Instant>,
    fir_seq_nr: u8,
    stats: KeyframeStats,
}

impl KeyframeRequester {
    /// A requester that has sent nothing yet.
    pub fn new(config: KeyframeConfig) -> Self {
        KeyframeRequester {
            config,
            last_sent: None,
            fir_seq_nr: 0,
            stats: KeyframeStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> KeyframeStats {
        self.stats
    }

    /// When the source throttle next lets a request through (`None`: now).
    pub fn next_allowed(&self) -> Option<Instant> {
        self.last_sent.map(|t| t + self.config.source_interval)
    }

    fn try_send(&mut self, now: Instant) -> KeyframeDecision {
        if self
            .last_sent
            .is_some_and(|t| now.saturating_duration_since(t) < self.config.source_interval)
        {
            self.stats.source_throttled += 1;
            return KeyframeDecision::SourceThrottled;
        }
        self.last_sent = Some(now);
        self.fir_seq_nr = self.fir_seq_nr.wrapping_add(1);
        self.stats.sent += 1;
        KeyframeDecision::Send(KeyframeRequest {
            fir_seq_nr: self.fir_seq_nr,
        })
    }

    /// A receiver's PLI or FIR for this source.
    pub fn handle_receiver_request(
        &mut self,
        now: Instant,
        receiver: &mut ReceiverKeyframeState,
    ) -> KeyframeDecision {
        self.stats.received += 1;
        if !receiver.within_budget(now, &self.config) {
            self.stats.receiver_throttled += 1;
            return KeyframeDecision::ReceiverThrottled;
        }
        let d = self.try_send(now);
        if matches!(d, KeyframeDecision::Send(_)) {
            receiver.record(now, &self.config);
        }
        d
    }

    /// A slot that now shows this source and waits for its keyframe. Call it for every
    /// packet the slot drops while waiting: it asks once, as soon as the source interval
    /// allows.
    pub fn handle_slot_switch(
        &mut self,
        now: Instant,
        receiver: &mut ReceiverKeyframeState,
    ) -> KeyframeDecision {
        if receiver.switch_asked {
            return KeyframeDecision::AlreadyAsked;
        }
        let d = self.try_send(now);
        if matches!(d, KeyframeDecision::Send(_)) {
            receiver.switch_asked = true;
            self.stats.slot_switches += 1;
        }
        d
    }

    /// The bridge's own request (a loss the NACK generator gave up on).
    pub fn handle_bridge_request(&mut self, now: Instant) -> KeyframeDecision {
        let d = self.try_send(now);
        if matches!(d, KeyframeDecision::Send(_)) {
            self.stats.generated += 1;
        }
        d
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::rtcp::RtcpPacket;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sent(d: KeyframeDecision) -> bool {
        matches!(d, KeyframeDecision::Send(_))
    }

    #[test]
    fn default_limits() {
        let c = KeyframeConfig::default();
        assert_eq!(c.source_interval, ms(350));
        assert_eq!(c.receiver_window, Duration::from_secs(10));
        assert_eq!(c.receiver_max, 3);
    }

    #[test]
    fn many_receivers_plis_reach_the_sender_once_per_350ms() {
        let t0 = Instant::now();
        let mut k = KeyframeRequester::new(KeyframeConfig::default());
        let mut receivers = [ReceiverKeyframeState::new(); 10];
        // Ten receivers each PLI every 20 ms for one second, starting together.
        let mut sent_at = Vec::new();
        for step in 0..50u64 {
            let now = t0 + ms(20 * step);
            for r in receivers.iter_mut() {
                if sent(k.handle_receiver_request(now, r)) {
                    sent_at.push(20 * step);
                }
            }
        }
        assert_eq!(sent_at, [0, 360, 720]);
        let s = k.stats();
        assert_eq!((s.received, s.sent), (500, 3));
        assert_eq!(s.source_throttled + s.receiver_throttled, 497);
    }

    #[test]
    fn one_receiver_gets_three_requests_per_ten_seconds() {
        let t0 = Instant::now();
        let mut k = KeyframeRequester::new(KeyframeConfig::default());
        let mut r = ReceiverKeyframeState::new();
        let mut other = ReceiverKeyframeState::new();
        // One PLI a second for 25 s.
        let mut sent_at = Vec::new();
        for s in 0..25u64 {
            if sent(k.handle_receiver_request(t0 + ms(1000 * s), &mut r)) {
                sent_at.push(s);
            }
        }
        assert_eq!(sent_at, [0, 1, 2, 10, 11, 12, 20, 21, 22]);
        assert_eq!(k.stats().receiver_throttled, 16);
        // Another receiver of the same source has its own budget.
        assert!(sent(k.handle_receiver_request(t0 + ms(25_500), &mut other)));
    }

    #[test]
    fn slot_switch_asks_once_and_fir_numbers_increase() {
        let t0 = Instant::now();
        let mut k = KeyframeRequester::new(KeyframeConfig::default());
        let mut slot = ReceiverKeyframeState::new();
        slot.handle_source_change();
        let KeyframeDecision::Send(first) = k.handle_slot_switch(t0, &mut slot) else {
            panic!()
        };
        // Every dropped packet while waiting asks again: only the first went out.
        for i in 1..100 {
            assert_eq!(
                k.handle_slot_switch(t0 + ms(10 * i), &mut slot),
                KeyframeDecision::AlreadyAsked
            );
        }
        // A switch right after another request waits for the source interval.
        let mut slot2 = ReceiverKeyframeState::new();
        slot2.handle_source_change();
        let t1 = t0 + ms(2000);
        assert!(sent(k.handle_bridge_request(t1)));
        assert_eq!(
            k.handle_slot_switch(t1 + ms(50), &mut slot2),
            KeyframeDecision::SourceThrottled
        );
        let KeyframeDecision::Send(third) = k.handle_slot_switch(t1 + ms(350), &mut slot2) else {
            panic!()
        };
        assert_eq!((first.fir_seq_nr, third.fir_seq_nr), (1, 3));
        let s = k.stats();
        assert_eq!((s.slot_switches, s.generated, s.sent), (2, 1, 3));
        // Written as a FIR with that number, or as a PLI.
        let mut buf = [0u8; 32];
        let n = third.write(&mut buf, true, 1, 0xFEED).unwrap();
        let Some(Ok(RtcpPacket::Fir(fir))) = rtcp::packets(&buf[..n]).next() else {
            panic!()
        };
        assert_eq!(
            fir.entries().next().map(|e| (e.ssrc, e.seq_nr)),
            Some((0xFEED, 3))
        );
        let n = third.write(&mut buf, false, 1, 0xFEED).unwrap();
        assert!(matches!(
            rtcp::packets(&buf[..n]).next(),
            Some(Ok(RtcpPacket::Pli(p))) if p.media_ssrc == 0xFEED
        ));
    }
}
