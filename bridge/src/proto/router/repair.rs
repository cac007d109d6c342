//! Packet loss repair on both hops: NACKs toward publishers from each video
//! source's [`NackGenerator`](super::super::quality::nack::NackGenerator) (the
//! router's `Nack` timer), and receivers' NACKs answered from the source's
//! packet cache by the slot's
//! [`NackResponder`](super::super::quality::nack_responder::NackResponder), on
//! the slot's RTX SSRC where the receiver negotiated RTX.

use std::time::Duration;

use super::super::quality::bwe::CONGESTED_QUEUE;
use super::super::quality::keyframe::KeyframeDecision;
use super::super::quality::nack_responder::Retransmit;
use super::super::quality::simulcast::MAX_LAYERS;
use super::super::rtcp::Nack;
use super::super::rtp_ext::Extension;
use super::forward::negotiated_elements;
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
    /// gaps given up become one keyframe request each (of the layers that
    /// lost them, for a simulcast source).
    pub(super) fn send_nacks(&mut self, io: &mut RouterIo<'_>) {
        let now = io.now;
        let Router {
            producers,
            endpoints,
            timers,
            nack_heap,
            ..
        } = self;
        // Per source given up on: the layers' media SSRCs to ask a keyframe of.
        let mut keyframes: [Option<(ProducerKey, [Option<u32>; MAX_LAYERS])>; 16] = [None; 16];
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
            // Each layer's NACKs name its own media SSRC; a gap given up on
            // any layer becomes the source's keyframe request.
            let mut give_up = [None; MAX_LAYERS];
            for (l, layer) in repair.layers_mut().iter_mut().enumerate() {
                if let (Some(ssrc), Some(owner)) = (layer.media_ssrc, endpoints.get_mut(p.owner)) {
                    for _ in 0..MAX_NACKS_PER_TURN {
                        if !owner.transport.send_nack(now, &mut layer.nack, ssrc, io.tx) {
                            break;
                        }
                        io.counters.nacks_sent += 1;
                    }
                }
                if layer.nack.poll_keyframe_request(now)
                    && let (Some(slot), Some(ssrc)) = (give_up.get_mut(l), layer.media_ssrc)
                {
                    *slot = Some(ssrc);
                }
            }
            if give_up.iter().any(Option::is_some) {
                match p.keyframes.handle_bridge_request(now) {
                    KeyframeDecision::Send(_) if n_keyframes < keyframes.len() => {
                        keyframes[n_keyframes] = Some((pk, give_up));
                        n_keyframes += 1;
                    }
                    _ => io.counters.keyframe_requests_throttled += 1,
                }
            }
            let next = repair.poll_timeout().map(|t| t.max(now + MIN_TIMER_STEP));
            if let Some(at) = repair.scheduled.update(next) {
                nack_heap.push(at, pk);
            }
        }
        if let Some(at) = nack_heap.peek() {
            timers.set_earliest(RouterTimer::Nack, at.max(now + MIN_TIMER_STEP));
        }
        for (pk, ssrcs) in keyframes[..n_keyframes].iter().flatten() {
            self.send_layer_keyframe_requests(*pk, ssrcs, io);
        }
    }

    /// A receiver's (endpoint `key`) NACK about one of its slots: each lost slot
    /// packet the slot's mapping history places in a layer of its source and
    /// still in that layer's cache is resent to it (renumbered as it was
    /// forwarded), unless it was resent less than one RTT ago.
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
        // A retransmission is answered no sooner than it could have arrived
        // and been missed: the round trip the receiver's reports measure
        // (from the last one, seconds old when a link suddenly fills) plus
        // what the queue toward it holds now. With the round trip alone,
        // Chromium behind a 1 Mbit/s cap whose queue held 300 ms re-NACKed
        // each lost packet every ~100 ms and had each one re-sent again,
        // about 2 Mbit/s of retransmissions into the 1 Mbit/s link.
        let queue = receiver.transport.downlink_queue_delay();
        let rtt = consumer.rtt.unwrap_or(DEFAULT_RTT) + queue;
        let source = consumer.source().and_then(|pk| producers.get(pk));
        let codec = source.map(|p| p.codec);
        let repair = source.and_then(|p| p.repair.as_deref());
        let history = &consumer.history;
        let negotiated = consumer.extensions;
        let carries_twcc = negotiated.contains(Extension::TransportCc);
        let mid = consumer.mid.as_bytes();
        // A simulcast slot's layer now (`None` while a switch waits with the
        // old layer dropped); `None` too for a slot without layers.
        let simulcast = consumer.layers.target().is_some();
        let current_layer = consumer.layers.current();
        let congested = queue >= CONGESTED_QUEUE;
        let Some(responder) = consumer.responder.as_mut() else {
            return;
        };
        responder.handle_nack();
        let now = io.now;
        for seq in nack.lost_sequence_numbers() {
            io.counters.retransmissions_requested += 1;
            // The layer and mapping the slot packet was forwarded with, even
            // before the slot's latest layer switch, and that layer's cache.
            let found = history.lookup(seq).and_then(|segment| {
                let stream = repair?.layer(segment.layer)?;
                Some((segment, &stream.cache, codec?))
            });
            let Some((segment, cache, codec)) = found else {
                io.counters.cache_misses += 1;
                continue;
            };
            // On a congested link, a packet of a layer the slot no longer
            // forwards is not re-sent: the receiver's decoder moves on at the
            // new layer's key frame, and on a link that just filled up (the
            // usual reason to switch down) it would only add to what
            // overflows it.
            if simulcast && current_layer != Some(segment.layer) && congested {
                io.counters.retransmissions_held += 1;
                continue;
            }
            let mut outcome = None;
            // A retransmission carries the slot's mid and the transport-wide
            // sequence number, as every other packet to the receiver does: its
            // transport-cc feedback then reports it, and the send-side estimate
            // counts what retransmissions take of the link (without them, a
            // link busy re-sending read as an empty one: in the capped browser
            // test the acknowledged rate fell to 118 kbit/s on a 1 Mbit/s link
            // and the estimate to 101 kbit/s, which suspended a stream for 7 s).
            receiver
                .transport
                .send_rtp(now, io.tx, carries_twcc, |out, ctx| {
                    let twcc = ctx.twcc_seq.to_be_bytes();
                    let (elements, n) = negotiated_elements(
                        [
                            (Extension::Mid, Some(mid)),
                            (Extension::TransportCc, Some(&twcc[..])),
                        ],
                        negotiated,
                        ctx.extensions,
                    );
                    let r = responder.retransmit_renumbered(
                        now,
                        seq,
                        &segment.rewrite,
                        cache,
                        rtt,
                        out,
                        &elements[..n],
                        |payload| segment.vp8.apply(codec, payload).is_ok(),
                    );
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
