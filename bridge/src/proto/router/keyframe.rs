//! Keyframe requests toward publishers: on behalf of a consumer that waits for
//! one (after a source switch or an unmute), from a receiver's PLI or FIR, and
//! from the router's `KeyframeRetry` timer while any consumer still waits; at
//! most one per producer every [`KEYFRAME_REQUEST_INTERVAL`].

use std::time::{Duration, Instant};

use super::super::transport::TransportState;
use super::{KEYFRAME_REQUEST_INTERVAL, ProducerKey, Router, RouterIo, RouterTimer};

impl Router {
    /// Sends a PLI to the publisher of `pk`, at most every
    /// [`KEYFRAME_REQUEST_INTERVAL`].
    pub(super) fn request_keyframe(&mut self, pk: ProducerKey, io: &mut RouterIo<'_>) {
        let Some(producer) = self.producers.get_mut(pk) else {
            return;
        };
        let Some(owner) = self.endpoints.get_mut(producer.owner) else {
            return;
        };
        if owner.transport.state() != TransportState::Connected {
            return;
        }
        if producer
            .last_keyframe_request
            .is_some_and(|t| io.now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
        {
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
        for &ssrc in &ssrcs[..n] {
            transport.send_pli(ssrc, io.tx);
        }
    }

    pub(super) fn retry_keyframes(&mut self, io: &mut RouterIo<'_>) {
        let mut waiting: Vec<ProducerKey> = Vec::new();
        for (_, c) in &self.consumers {
            if c.is_waiting_keyframe()
                && let Some(pk) = c.source()
                && !waiting.contains(&pk)
            {
                waiting.push(pk);
            }
        }
        let mut next: Option<Instant> = None;
        for pk in waiting {
            self.request_keyframe(pk, io);
            let at = self
                .producers
                .get(pk)
                .and_then(|p| p.last_keyframe_request)
                .map_or(io.now, |t| t + KEYFRAME_REQUEST_INTERVAL)
                .max(io.now + Duration::from_millis(100));
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        if let Some(at) = next {
            self.timers.set(RouterTimer::KeyframeRetry, at);
        }
    }
}
