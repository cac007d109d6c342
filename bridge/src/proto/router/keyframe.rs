//! Keyframe requests toward publishers, throttled by each producer's
//! [`KeyframeRequester`](super::super::quality::keyframe::KeyframeRequester): a
//! receiver's PLI or FIR (at most one per source every 350 ms, and per receiver
//! and source at most 3 per 10 s), a slot that changed source (asks once), a
//! gap the NACK generator gave up on, and the router's `KeyframeRetry` timer
//! while any consumer still waits for its keyframe.

use std::time::{Duration, Instant};

use super::super::quality::keyframe::KeyframeDecision;
use super::super::transport::TransportState;
use super::{ConsumerKey, KEYFRAME_REQUEST_INTERVAL, ProducerKey, Router, RouterIo, RouterTimer};

/// Who asks for a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyframeCause {
    /// A receiver's PLI or FIR about this slot.
    Receiver(ConsumerKey),
    /// The bridge itself (a consumer still waiting, a gap given up).
    Bridge,
}

impl Router {
    /// Asks the publisher of `pk` for a keyframe if its throttle lets `cause`
    /// through.
    pub(super) fn request_keyframe(
        &mut self,
        pk: ProducerKey,
        cause: KeyframeCause,
        io: &mut RouterIo<'_>,
    ) {
        if !self.keyframe_reachable(pk) {
            // Nothing to ask yet: leave the throttle untouched.
            return;
        }
        let Some(producer) = self.producers.get_mut(pk) else {
            return;
        };
        let decision = match cause {
            KeyframeCause::Receiver(ck) => {
                io.counters.keyframe_requests_received += 1;
                let Some(c) = self.consumers.get_mut(ck) else {
                    return;
                };
                producer
                    .keyframes
                    .handle_receiver_request(io.now, &mut c.keyframes)
            }
            KeyframeCause::Bridge => producer.keyframes.handle_bridge_request(io.now),
        };
        match decision {
            KeyframeDecision::Send(_) => self.send_keyframe_request(pk, io),
            KeyframeDecision::SourceThrottled | KeyframeDecision::ReceiverThrottled => {
                io.counters.keyframe_requests_throttled += 1;
            }
            KeyframeDecision::AlreadyAsked => {}
        }
    }

    /// Sends a PLI for every media SSRC of `pk` to its publisher (the throttle
    /// already let it through).
    pub(super) fn send_keyframe_request(&mut self, pk: ProducerKey, io: &mut RouterIo<'_>) {
        let Some(producer) = self.producers.get_mut(pk) else {
            return;
        };
        let Some(owner) = self.endpoints.get_mut(producer.owner) else {
            return;
        };
        if owner.transport.state() != TransportState::Connected {
            return;
        }
        let transport = &mut owner.transport;
        let mut ssrcs = [0u32; 4];
        let mut n = 0;
        for ssrc in transport.demux.media_ssrcs(pk) {
            if n < ssrcs.len() {
                ssrcs[n] = ssrc;
                n += 1;
            }
        }
        if n == 0 {
            return;
        }
        producer.last_keyframe_request = Some(io.now);
        tracing::trace!(ssrcs = ?&ssrcs[..n], "keyframe request");
        io.counters.keyframe_requests_sent += 1;
        for &ssrc in &ssrcs[..n] {
            transport.send_pli(ssrc, io.tx);
        }
    }

    /// Sends a PLI for each SSRC of `ssrcs` (media SSRCs of `pk`,
    /// the layers whose gaps were given up) to the publisher of `pk`; the
    /// throttle already let it through.
    pub(super) fn send_layer_keyframe_requests(
        &mut self,
        pk: ProducerKey,
        ssrcs: &[Option<u32>],
        io: &mut RouterIo<'_>,
    ) {
        let Some(producer) = self.producers.get_mut(pk) else {
            return;
        };
        let Some(owner) = self.endpoints.get_mut(producer.owner) else {
            return;
        };
        if owner.transport.state() != TransportState::Connected || ssrcs.iter().all(Option::is_none)
        {
            return;
        }
        producer.last_keyframe_request = Some(io.now);
        io.counters.keyframe_requests_sent += 1;
        for &ssrc in ssrcs.iter().flatten() {
            owner.transport.send_pli(ssrc, io.tx);
        }
    }

    /// Whether a keyframe request for `pk` can reach its publisher now: its
    /// transport is connected and the source has a media SSRC (declared in
    /// the offer or learned from a packet).
    pub(super) fn keyframe_reachable(&self, pk: ProducerKey) -> bool {
        self.producers
            .get(pk)
            .and_then(|p| self.endpoints.get(p.owner))
            .is_some_and(|e| {
                e.transport.state() == TransportState::Connected
                    && e.transport.demux.media_ssrcs(pk).next().is_some()
            })
    }

    /// The `KeyframeRetry` timer: asks again for each source a consumer still
    /// waits on, and re-arms while such a source can be asked. A source whose
    /// publisher cannot be reached yet (not connected, no SSRC known) keeps
    /// no timer: the publisher's connection and the source's first packet
    /// arm it again (see `after_transport` and `handle_rtp`).
    pub(super) fn retry_keyframes(&mut self, io: &mut RouterIo<'_>) {
        // A fixed array, no allocation: a timer turn may run beside media; a
        // conference with more waiting sources asks for the rest next turn.
        let mut waiting = [None::<ProducerKey>; 32];
        let mut n = 0;
        for (_, c) in &self.consumers {
            if c.is_waiting_keyframe()
                && let Some(pk) = c.source()
                && n < waiting.len()
                && !waiting[..n].contains(&Some(pk))
                && self.keyframe_reachable(pk)
            {
                waiting[n] = Some(pk);
                n += 1;
            }
        }
        let mut next: Option<Instant> = None;
        for pk in waiting[..n].iter().flatten().copied() {
            self.request_keyframe(pk, KeyframeCause::Bridge, io);
            let Some(p) = self.producers.get(pk) else {
                continue;
            };
            // Asked now: give the key frame time to come before asking
            // again. Throttled (a request went out lately, for another
            // reason): ask as soon as the throttle opens, not a whole
            // interval later.
            let at = if p.last_keyframe_request == Some(io.now) {
                io.now + KEYFRAME_REQUEST_INTERVAL
            } else {
                p.keyframes
                    .next_allowed()
                    .map_or(io.now + KEYFRAME_REQUEST_INTERVAL, |t| {
                        t.min(io.now + KEYFRAME_REQUEST_INTERVAL)
                    })
            }
            .max(io.now + Duration::from_millis(1));
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        if let Some(at) = next {
            self.timers.set(RouterTimer::KeyframeRetry, at);
        }
    }
}
