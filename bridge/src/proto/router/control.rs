//! Control operations on a router: leaving (and expiry), mutes, refused
//! sources and policy changes.

use ringbridge_control::media::{EndpointPolicy, MediaEvent, MuteRequest, RefusalReason};

use super::super::error::CoreError;
use super::super::sdp::MediaKind;
use super::{ConsumerKey, EndpointKey, ProducerKey, Router, RouterIo, RouterTimer};

impl Router {
    /// Removes the endpoint `key` at the control plane's request.
    pub fn leave(&mut self, key: EndpointKey, io: &mut RouterIo<'_>) {
        self.remove_endpoint(key, None, io);
    }

    /// Removes an endpoint, unmaps its producers and consumers, and refills the
    /// freed slots. `reason` (an expiry) is reported to the control plane.
    pub fn remove_endpoint(
        &mut self,
        key: EndpointKey,
        reason: Option<&'static str>,
        io: &mut RouterIo<'_>,
    ) {
        let Some(ep) = self.endpoints.remove(key) else {
            return;
        };
        io.released.push(ep.transport.port());
        self.members.retain(|&k| k != key);
        self.speakers.remove(key);
        let mut changed: Vec<EndpointKey> = Vec::new();
        for &pk in &ep.producers {
            let fanout = self
                .producers
                .get(pk)
                .map(|p| p.fanout.clone())
                .unwrap_or_default();
            for ck in fanout {
                if let Some(r) = self.consumers.get(ck).map(|c| c.receiver)
                    && !changed.contains(&r)
                {
                    changed.push(r);
                }
                self.assign(ck, None, io.now);
            }
            if let Some(repair) = self.producers.remove(pk).and_then(|p| p.repair) {
                io.counters.cache_memory_bytes = io
                    .counters
                    .cache_memory_bytes
                    .saturating_sub(repair.accounted_bytes());
            }
        }
        for &ck in &ep.consumers {
            self.assign(ck, None, io.now);
            self.consumers.remove(ck);
        }
        if let Some(reason) = reason {
            io.events.push_back(MediaEvent::EndpointExpired {
                conference: self.id.clone(),
                endpoint: ep.id.clone(),
                reason,
            });
        }
        for r in changed {
            self.announce_sources(r, io);
        }
        self.rebalance(io);
        self.recount_activity(io);
        io.activity_changed = true;
    }

    /// The highest temporal layer endpoint `key` gets on each of its video
    /// slots (`None`: all); see [`Consumer::set_temporal_target`](super::Consumer::set_temporal_target).
    pub fn set_temporal_target(&mut self, key: EndpointKey, target: Option<u8>) {
        let Some(ep) = self.endpoints.get(key) else {
            return;
        };
        for &ck in &ep.consumers {
            if let Some(c) = self.consumers.get_mut(ck)
                && c.kind == MediaKind::Video
            {
                c.set_temporal_target(target);
            }
        }
    }

    /// The highest temporal layer one slot forwards (`None`: all), for an
    /// allocator that decides per slot; see [`Consumer::set_temporal_target`](super::Consumer::set_temporal_target).
    pub fn set_slot_temporal_target(&mut self, slot: ConsumerKey, target: Option<u8>) {
        if let Some(c) = self.consumers.get_mut(slot) {
            c.set_temporal_target(target);
        }
    }

    /// Mutes or unmutes an endpoint's producers. Muted producers keep their slots
    /// (so unmuting resumes at once, from the next keyframe) but nothing is
    /// forwarded.
    pub fn mute(&mut self, key: EndpointKey, mute: MuteRequest, io: &mut RouterIo<'_>) {
        let Some(ep) = self.endpoints.get(key) else {
            return;
        };
        let mut resumed = Vec::new();
        for &pk in &ep.producers {
            let Some(producer) = self.producers.get_mut(pk) else {
                continue;
            };
            let want = match producer.kind {
                MediaKind::Audio => mute.audio,
                MediaKind::Video => mute.video,
                MediaKind::Other => None,
            };
            if let Some(muted) = want {
                if producer.muted && !muted {
                    resumed.push(pk);
                }
                producer.muted = muted;
            }
        }
        // Resuming re-bases the receivers' slots, as a source switch does, so
        // their sequence numbers show no gap and video restarts on a keyframe.
        for pk in resumed {
            let fanout = self
                .producers
                .get(pk)
                .map(|p| p.fanout.clone())
                .unwrap_or_default();
            for ck in fanout {
                if let Some(c) = self.consumers.get_mut(ck) {
                    c.restart();
                    if c.is_waiting_keyframe() {
                        self.timers.set_earliest(RouterTimer::KeyframeRetry, io.now);
                    }
                }
            }
        }
    }

    /// Stops forwarding the producer named `source` of endpoint `key`, for
    /// `reason`: its slots are freed (and refilled) and a
    /// [`MediaEvent::ForwardingRefused`] is queued.
    pub fn refuse_source(
        &mut self,
        key: EndpointKey,
        source: &str,
        reason: RefusalReason,
        io: &mut RouterIo<'_>,
    ) -> Result<(), CoreError> {
        let ep = self.endpoints.get(key).ok_or(CoreError::EndpointNotFound)?;
        let pk = ep
            .producers
            .iter()
            .copied()
            .find(|&pk| {
                self.producers
                    .get(pk)
                    .is_some_and(|p| *p.source_name == *source)
            })
            .ok_or(CoreError::SourceNotFound)?;
        let Some(producer) = self.producers.get_mut(pk) else {
            return Err(CoreError::SourceNotFound);
        };
        if producer.refused.is_some() {
            return Ok(());
        }
        producer.refused = Some(reason);
        if reason == RefusalReason::ScreenSharingNotGranted {
            // Remembered as a screen, so a later policy keeps it refused.
            producer.screen = true;
        }
        self.unmap_producer(pk, io);
        self.report_refusals(key, |k| k == pk, io);
        self.rebalance(io);
        Ok(())
    }

    /// Changes the policy of endpoint `key`, at once.
    pub fn set_policy(&mut self, key: EndpointKey, policy: EndpointPolicy, io: &mut RouterIo<'_>) {
        let Some(ep) = self.endpoints.get(key) else {
            return;
        };
        let keys = ep.producers.clone();
        let before: Vec<Option<RefusalReason>> = keys
            .iter()
            .map(|&pk| self.producers.get(pk).and_then(|p| p.refused))
            .collect();
        self.apply_policy(key, policy);
        let newly: Vec<ProducerKey> = keys
            .iter()
            .zip(&before)
            .filter(|&(&pk, b)| {
                b.is_none() && self.producers.get(pk).is_some_and(|p| p.refused.is_some())
            })
            .map(|(&pk, _)| pk)
            .collect();
        for &pk in &newly {
            self.unmap_producer(pk, io);
        }
        self.report_refusals(key, |pk| newly.contains(&pk), io);
        self.rebalance(io);
    }
}
