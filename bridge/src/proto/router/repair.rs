//! Packet loss repair on both hops: NACKs toward publishers from each video
//! source's [`NackGenerator`](super::super::quality::nack::NackGenerator) (the
//! router's `Nack` timer), and receivers' NACKs answered from the source's
//! packet cache by the slot's
//! [`NackResponder`](super::super::quality::nack_responder::NackResponder), on
//! the slot's RTX SSRC where the receiver negotiated RTX.

use std::time::Duration;

use super::super::quality::keyframe::KeyframeDecision;
use super::super::quality::nack_responder::Retransmit;
use super::super::rtcp::Nack;
use super::{EndpointKey, ProducerKey, Router, RouterIo, RouterTimer};

/// The round-trip time assumed for suppressing repeated retransmissions until
/// receiver reports give a measurement.
pub const DEFAULT_RTT: Duration = Duration::from_millis(100);

/// Most NACK packets sent to one publisher in one timer turn.
const MAX_NACKS_PER_TURN: usize = 4;

/// The earliest a timer set from inside its own handler may fire again.
const MIN_TIMER_STEP: Duration = Duration::from_millis(1);

impl Router {
    /// The `Nack` timer: the video sources whose NACK generator is due (from
    /// the router's NACK heap, no scan) send their NACKs to their publishers, and
    /// gaps given up become one keyframe request each.
    pub(super) fn send_nacks(&mut self, io: &mut RouterIo<'_>) {
        let now = io.now;
        let Router {
            producers,
            endpoints,
            timers,
            nack_heap,
            ..
        } = self;
        let mut keyframes: [Option<ProducerKey>; 16] = [None; 16];
        let mut n_keyframes = 0;
        // Bounded: what is pushed back below is not due before `now + 1 ms`.
        let mut budget = nack_heap.len();
        while budget > 0 {
            budget -= 1;
            let Some((at, pk)) = nack_heap.pop_due(now) else {
                break;
            };
            let Some(p) = producers.get_mut(pk) else {
                continue; // stale: the source is gone
            };
            let Some(repair) = p.repair.as_deref_mut() else {
                continue;
            };
            if !repair.scheduled.fire(at) {
                continue; // stale: rescheduled since
            }
            if let (Some(ssrc), Some(owner)) = (repair.media_ssrc, endpoints.get_mut(p.owner)) {
                for _ in 0..MAX_NACKS_PER_TURN {
                    if !owner
                        .transport
                        .send_nack(now, &mut repair.nack, ssrc, io.tx)
                    {
                        break;
                    }
                    io.counters.nacks_sent += 1;
                }
            }
            if repair.nack.poll_keyframe_request(now) {
                match p.keyframes.handle_bridge_request(now) {
                    KeyframeDecision::Send(_) if n_keyframes < keyframes.len() => {
                        keyframes[n_keyframes] = Some(pk);
                        n_keyframes += 1;
                    }
                    _ => io.counters.keyframe_requests_throttled += 1,
                }
            }
            let next = repair
                .nack
                .poll_timeout()
                .map(|t| t.max(now + MIN_TIMER_STEP));
            if let Some(at) = repair.scheduled.update(next) {
                nack_heap.push(at, pk);
            }
        }
        if let Some(at) = nack_heap.peek() {
            timers.set_earliest(RouterTimer::Nack, at.max(now + MIN_TIMER_STEP));
        }
        for pk in keyframes[..n_keyframes].iter().flatten() {
            self.send_keyframe_request(*pk, io);
        }
    }

    /// A receiver's (endpoint `key`) NACK about one of its slots: each lost slot
    /// packet still in the source's cache is resent to it, unless it was resent
    /// less than one RTT ago.
    pub(super) fn answer_nack(&mut self, key: EndpointKey, nack: &Nack<'_>, io: &mut RouterIo<'_>) {
        let Router {
            endpoints,
            producers,
            consumers,
            ..
        } = self;
        let Some(receiver) = endpoints.get_mut(key) else {
            return;
        };
        let Some(ck) = receiver
            .consumers
            .iter()
            .copied()
            .find(|&ck| consumers.get(ck).is_some_and(|c| c.ssrc == nack.media_ssrc))
        else {
            return;
        };
        let Some(consumer) = consumers.get_mut(ck) else {
            return;
        };
        io.counters.nacks_received += 1;
        let rewrite = consumer.slot_rewrite();
        let rtt = consumer.rtt.unwrap_or(DEFAULT_RTT);
        let cache = consumer
            .source()
            .and_then(|pk| producers.get(pk))
            .and_then(|p| p.repair.as_deref())
            .map(|r| &r.cache);
        let Some(responder) = consumer.responder.as_mut() else {
            return;
        };
        responder.handle_nack();
        let now = io.now;
        for seq in nack.lost_sequence_numbers() {
            io.counters.retransmissions_requested += 1;
            let (Some(rewrite), Some(cache)) = (rewrite, cache) else {
                io.counters.cache_misses += 1;
                continue;
            };
            let mut outcome = None;
            receiver.transport.send_rtp_untracked(io.tx, |out| {
                let r = responder.retransmit(now, seq, &rewrite, cache, rtt, out);
                outcome = Some(r);
                match r {
                    Ok(Retransmit::Sent(n)) => Some(n),
                    _ => None,
                }
            });
            match outcome {
                Some(Ok(Retransmit::Sent(_))) => {
                    io.counters.cache_hits += 1;
                    io.counters.retransmissions_sent += 1;
                }
                Some(Ok(Retransmit::Suppressed)) => {
                    io.counters.cache_hits += 1;
                    io.counters.retransmissions_suppressed += 1;
                }
                Some(Ok(Retransmit::Miss) | Err(_)) => io.counters.cache_misses += 1,
                // The receiver is not reachable now.
                None => {}
            }
        }
    }
}
