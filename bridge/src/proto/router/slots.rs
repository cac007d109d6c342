//! Slot mapping: which producer feeds which consumer.
//!
//! [`Consumer::source`](super::Consumer::source) is the source of truth;
//! [`Router::assign`] is the only place it changes, and it keeps the derived
//! index (each producer's list of consumers) in step. The policy: every
//! producer a receiver may see gets a free slot of its kind on that receiver, in
//! join order, as jitsi-videobridge's SSRC rewriting does with a fixed number of
//! slots; the allocator replaces this later.

use std::time::Instant;

use ringbridge_control::media::{EndpointPolicy, MappedSource, MediaEvent, RefusalReason};

use super::super::sdp::MediaKind;
use super::{ConsumerKey, EndpointKey, ProducerKey, Router, RouterIo, RouterTimer};

impl Router {
    /// Maps producer `source` onto consumer `ck` (or unmaps it with `None`),
    /// keeping each producer's consumer index consistent. A video consumer that
    /// now waits for a keyframe arms the keyframe retry at `now`.
    pub fn assign(&mut self, ck: ConsumerKey, source: Option<ProducerKey>, now: Instant) {
        let Some(consumer) = self.consumers.get_mut(ck) else {
            return;
        };
        // A slot decodes one codec (its receiver's answer): never another's source.
        let codec = consumer.codec;
        let source = source.filter(|&pk| self.producers.get(pk).is_some_and(|p| p.codec == codec));
        if let Some(old) = consumer.source() {
            if source != Some(old) {
                // A source lost its slot: a producer may now be unmapped beside
                // a free slot, which only the whole rebalance looks for.
                self.unbalanced = true;
            }
            if let Some(p) = self.producers.get_mut(old) {
                p.fanout.retain(|&k| k != ck);
            }
        }
        consumer.set_source(source);
        if consumer.is_waiting_keyframe() {
            self.timers.set_earliest(RouterTimer::KeyframeRetry, now);
        }
        if let Some(new) = source
            && let Some(p) = self.producers.get_mut(new)
            && !p.fanout.contains(&ck)
        {
            p.fanout.push(ck);
        }
    }

    /// Maps every unconsumed producer of the conference onto a free slot of the
    /// right kind on each other endpoint, in join order, and reports changed maps.
    pub fn rebalance(&mut self, io: &mut RouterIo<'_>) {
        let mut changed: Vec<EndpointKey> = Vec::new();
        for ri in 0..self.members.len() {
            let Some(&r) = self.members.get(ri) else {
                break;
            };
            for ei in 0..self.members.len() {
                let Some(&e) = self.members.get(ei) else {
                    break;
                };
                if e != r && self.map_onto(r, e, io.now) && !changed.contains(&r) {
                    changed.push(r);
                }
            }
        }
        self.unbalanced = false;
        for r in changed {
            self.announce_sources(r, io);
        }
        // Sources came or went: every receiver's allocation changes.
        self.reallocate_all(io);
    }

    /// [`Router::rebalance`] after endpoint `joined` joined, doing only the
    /// pairs that can change: the producers of `joined` onto each other
    /// endpoint's free slots, then the others' producers onto the slots of
    /// `joined`. Every other pair is already mapped as far as it can be (each
    /// rebalance leaves no mappable producer beside a free slot, and only
    /// `assign` taking a slot from a source breaks that, which sets
    /// `unbalanced`), so the result, the events and their order are the
    /// whole rebalance's; when the map may be out of balance, or `joined` is
    /// not the last member, it runs the whole rebalance.
    pub(super) fn rebalance_joined(&mut self, joined: EndpointKey, io: &mut RouterIo<'_>) {
        if self.unbalanced || self.members.last() != Some(&joined) {
            self.rebalance(io);
            return;
        }
        let mut changed: Vec<EndpointKey> = Vec::new();
        for ri in 0..self.members.len() {
            let Some(&r) = self.members.get(ri) else {
                break;
            };
            if r != joined && self.map_onto(r, joined, io.now) {
                changed.push(r);
            }
        }
        let mut joined_changed = false;
        for ei in 0..self.members.len() {
            let Some(&e) = self.members.get(ei) else {
                break;
            };
            if e != joined {
                joined_changed |= self.map_onto(joined, e, io.now);
            }
        }
        if joined_changed {
            changed.push(joined);
        }
        for r in changed {
            self.announce_sources(r, io);
        }
        // Sources came: every receiver's allocation changes.
        self.reallocate_all(io);
    }

    /// Maps each unrefused producer of endpoint `e` that receiver `r` does not
    /// get yet onto the first free slot of its kind and codec on `r`, in the
    /// order `e` published them; returns whether any was mapped.
    fn map_onto(&mut self, r: EndpointKey, e: EndpointKey, now: Instant) -> bool {
        let mut mapped = false;
        let published = self.endpoints.get(e).map_or(0, |ep| ep.producers.len());
        for i in 0..published {
            let Some(pk) = self
                .endpoints
                .get(e)
                .and_then(|ep| ep.producers.get(i).copied())
            else {
                break;
            };
            let Some((kind, codec)) = self
                .producers
                .get(pk)
                .filter(|p| p.refused.is_none())
                .map(|p| (p.kind, p.codec))
            else {
                continue;
            };
            let Some(receiver) = self.endpoints.get(r) else {
                return mapped;
            };
            let slots = || {
                receiver
                    .consumers
                    .iter()
                    .filter_map(|&ck| Some((ck, self.consumers.get(ck)?)))
            };
            if slots().any(|(_, c)| c.source() == Some(pk)) {
                continue;
            }
            let Some(free) = slots()
                .find(|(_, c)| c.source().is_none() && c.kind == kind && c.codec == codec)
                .map(|(ck, _)| ck)
            else {
                continue;
            };
            self.assign(free, Some(pk), now);
            mapped = true;
        }
        mapped
    }

    /// Frees every slot producer `pk` feeds, and reports the receivers' changed
    /// maps.
    pub(super) fn unmap_producer(&mut self, pk: ProducerKey, io: &mut RouterIo<'_>) {
        let fanout = self
            .producers
            .get(pk)
            .map(|p| p.fanout.clone())
            .unwrap_or_default();
        let mut seen: Vec<EndpointKey> = Vec::new();
        for ck in fanout {
            if let Some(r) = self.consumers.get(ck).map(|c| c.receiver)
                && !seen.contains(&r)
            {
                seen.push(r);
            }
            self.assign(ck, None, io.now);
        }
        for r in seen {
            self.announce_sources(r, io);
        }
    }

    /// Queues a `SourcesMapChanged` event with the receiver's whole current map.
    pub(super) fn announce_sources(&mut self, receiver: EndpointKey, io: &mut RouterIo<'_>) {
        let Some(ep) = self.endpoints.get(receiver) else {
            return;
        };
        let sources = ep
            .consumers
            .iter()
            .filter_map(|&ck| {
                let slot = self.consumers.get(ck)?;
                let producer = self.producers.get(slot.source()?)?;
                let sender = self.endpoints.get(producer.owner)?;
                Some(MappedSource {
                    source: producer.source_name.clone(),
                    owner: sender.name.clone(),
                    ssrc: slot.ssrc,
                    video: slot.kind == MediaKind::Video,
                    mid: slot.mid.clone(),
                })
            })
            .collect();
        io.events.push_back(MediaEvent::SourcesMapChanged {
            conference: self.id.clone(),
            receiver: ep.id.clone(),
            sources,
        });
    }

    /// Queues a [`MediaEvent::ForwardingRefused`] for each refused producer of
    /// endpoint `key` that `which` selects.
    pub(super) fn report_refusals(
        &mut self,
        key: EndpointKey,
        which: impl Fn(ProducerKey) -> bool,
        io: &mut RouterIo<'_>,
    ) {
        let Some(ep) = self.endpoints.get(key) else {
            return;
        };
        for &pk in &ep.producers {
            if let Some(producer) = self.producers.get(pk)
                && let Some(reason) = producer.refused
                && which(pk)
            {
                io.events.push_back(MediaEvent::ForwardingRefused {
                    conference: self.id.clone(),
                    endpoint: ep.id.clone(),
                    source: producer.source_name.to_string(),
                    reason,
                });
            }
        }
    }

    /// Marks the video producers of endpoint `key` that `policy` does not allow
    /// as refused: without screen sharing, screens (`a=content:slides`) and every
    /// camera after the first. Producers it allows lose an earlier refusal.
    pub(super) fn apply_policy(&mut self, key: EndpointKey, policy: EndpointPolicy) {
        let Some(ep) = self.endpoints.get(key) else {
            return;
        };
        let mut camera_seen = false;
        for &pk in &ep.producers {
            let Some(p) = self
                .producers
                .get_mut(pk)
                .filter(|p| p.kind == MediaKind::Video)
            else {
                continue;
            };
            p.refused = if policy.screen_sharing {
                None
            } else if p.screen {
                Some(RefusalReason::ScreenSharingNotGranted)
            } else if camera_seen {
                Some(RefusalReason::OneVideoSourceOnly)
            } else {
                camera_seen = true;
                None
            };
        }
    }
}
