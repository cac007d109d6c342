//! Re-allocation: runs the sans-IO [`allocate`] for a receiver and applies
//! its result to the receiver's video slots, then tells senders the tallest
//! video anyone watches of each of their sources.
//!
//! A receiver is re-allocated when its constraints change, when the speaker
//! order changes, when a source's layers change (a layer starts, stops, or a
//! key frame tells its height), when sources come or go, when its downlink
//! estimate moves by more than [`ESTIMATE_CHANGE`] from the one its last
//! allocation used, and at least every [`ALLOCATION_PERIOD`] while it has an
//! estimate (without one, every layer fits, and measured bitrates, the one
//! input no event reports, cannot change the result). The `Allocation`
//! router timer (every [`ALLOCATION_CHECK`]) looks for stopped layers, moved
//! estimates and the period.
//!
//! A receiver's lastN is capped by its number of video slots. Applying an
//! allocation, per video slot of the receiver: the slot's wanted
//! layer is set (a switch still waits for a key frame of it, see
//! [`LayerSwitch`](super::super::quality::simulcast::LayerSwitch)); a source
//! that is no longer forwarded stops at once (and its slot asks for no key
//! frames), and one that is forwarded again restarts on a key frame. A source
//! that sends nothing is left as it is. A forwarded source without a slot takes the slot
//! of a source that is not forwarded (the receiver gets a new sources map).
//! Then `ForwardedSources` goes to the receiver when its forwarded set
//! changed, and `SenderSourceConstraints` to each sender whose source's
//! wanted height changed (jitsi-videobridge's effective constraints: 0 when
//! nobody watches, -1 when someone has no limit).
//!
//! This runs on control and timer paths and when a layer changes, never per
//! packet; it allocates its working lists.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbridge_control::media::MediaEvent;
use ringbridge_control::receiver_constraints::{ReceiverConstraintsUpdate, UNLIMITED};

use super::super::quality::allocation::{LayerInput, SourceInput, allocate};
use super::super::quality::simulcast::MAX_LAYERS;
use super::super::sdp::MediaKind;
use super::{ConsumerKey, EndpointKey, ProducerKey, Router, RouterIo, RouterTimer};

/// A receiver is re-allocated at least this often.
pub const ALLOCATION_PERIOD: Duration = Duration::from_secs(5);

/// How often the `Allocation` timer checks layers, estimates and the period.
pub const ALLOCATION_CHECK: Duration = Duration::from_millis(500);

/// A move of the downlink estimate by more than this fraction of the one the
/// last allocation used re-allocates (jvb's `bwe-change-threshold`, 15 %).
pub const ESTIMATE_CHANGE: f64 = 0.15;

/// What a receiver's last allocation was, for deciding whether to re-run it and
/// whether its results changed.
#[derive(Debug, Clone, Default)]
pub struct AllocationState {
    /// When it ran.
    pub at: Option<Instant>,
    /// The downlink estimate it used.
    pub estimate: Option<u64>,
    /// The source names forwarded, in priority order (what `ForwardedSources`
    /// last said).
    pub forwarded: Vec<Arc<str>>,
    /// What the best layers its constraints allow would cost, bits per second
    /// (what probing aims for when the estimate is lower).
    pub ideal_bps: u64,
    /// What the layers it chose cost when it ran, bits per second.
    pub target_bps: u64,
    /// The effective `maxHeight` it gave each source (after lastN).
    pub effective: Vec<(ProducerKey, u16)>,
}

/// The least share of what the current layers cost that the budget may fall
/// to and still keep them (see [`keep_current`]): the decrease factor of the
/// delay-based estimator (`bwe::rate_control::BETA`).
pub const KEEP_CURRENT: f64 = 0.85;

/// What an allocation may spend when its receiver's budget is `budget` and
/// the layers it forwards now cost `spending`: `spending` where `budget` fell
/// below it by no more than [`KEEP_CURRENT`] allows, else `budget`.
///
/// Why: on an overuse the estimator sets the estimate to 0.85 x what the
/// receiver's feedback says arrived, to let a queue drain. When everything the
/// receiver is sent arrives, that is 0.85 x its current layers, and spending
/// the fall moves a stream down a layer (and back up a few seconds later)
/// whether the overuse was real or not. Measured with Chromium on a loaded
/// 2-core machine: uncapped pages' estimates fell from 3-22 Mbit/s to 1.4 on
/// overuses with no loss, and a 720p stream went to 360 for 2-4 s. A real
/// bottleneck below what is sent is not kept: there what arrives, and 0.85 x
/// it, is below `KEEP_CURRENT` x `spending` (behind a 1 Mbit/s cap with
/// 1.3 Mbit/s of layers: 850 kbit/s against 1.1), and the next overuse lowers
/// it further anyway.
pub fn keep_current(budget: u64, spending: u64) -> u64 {
    if spending > budget && budget as f64 >= KEEP_CURRENT * spending as f64 {
        spending
    } else {
        budget
    }
}

/// Whether `now_bps` moved by more than [`ESTIMATE_CHANGE`] from `used`.
pub fn estimate_moved(used: Option<u64>, now_bps: Option<u64>) -> bool {
    match (used, now_bps) {
        (None, None) => false,
        (Some(u), Some(n)) => (n.abs_diff(u) as f64) > (u as f64) * ESTIMATE_CHANGE,
        _ => true,
    }
}

/// One video source of the conference: its producer, owner, name and layers.
pub(super) struct Source {
    pk: ProducerKey,
    owner: EndpointKey,
    name: Arc<str>,
    layers: [LayerInput; MAX_LAYERS],
    count: usize,
}

impl Router {
    /// Applies a receiver's `ReceiverVideoConstraints` and re-allocates it.
    pub fn set_receiver_constraints(
        &mut self,
        key: EndpointKey,
        update: &ReceiverConstraintsUpdate,
        io: &mut RouterIo<'_>,
    ) {
        let Some(ep) = self.endpoints.get_mut(key) else {
            return;
        };
        ep.constraints.apply(update);
        tracing::debug!(
            conference = %self.id,
            endpoint = %ep.id,
            last_n = ?ep.constraints.last_n,
            default_max_height = ep.constraints.default_max_height,
            "receiver constraints"
        );
        self.reallocate(key, io);
        self.announce_sender_constraints(io);
    }

    /// The layers of producer `pk` as the allocator sees them now; `None` for
    /// what is not a forwardable video source.
    fn layer_inputs(&self, pk: ProducerKey, now: Instant) -> Option<Source> {
        let p = self.producers.get(pk)?;
        if p.kind != MediaKind::Video || p.refused.is_some() {
            return None;
        }
        let mut layers = [LayerInput::default(); MAX_LAYERS];
        let count = p
            .simulcast
            .as_ref()
            .map_or(1, |s| s.count())
            .min(MAX_LAYERS);
        for (i, l) in layers.iter_mut().enumerate().take(count) {
            let i = i as u8;
            l.bitrate_bps = p.layer_rates.bps(i, now);
            l.active = !p.muted && p.layer_rates.active(i, now);
            l.height = p.simulcast.as_ref().and_then(|s| s.height(i));
        }
        Some(Source {
            pk,
            owner: p.owner,
            name: p.source_name.clone(),
            layers,
            count,
        })
    }

    /// The conference's video sources in speech order: the dominant
    /// speaker's, the previous speakers' (most recent first), then the rest in
    /// join order. Linear in the conference's size (the previous speakers are
    /// a short list).
    fn conference_sources(&self, now: Instant) -> Vec<Source> {
        let mut spoke: Vec<EndpointKey> = Vec::new();
        for k in self
            .speakers
            .dominant()
            .into_iter()
            .chain(self.speakers.previous().iter().copied())
        {
            if self.endpoints.contains_key(k) && !spoke.contains(&k) {
                spoke.push(k);
            }
        }
        let rest = self.members.iter().copied().filter(|k| !spoke.contains(k));
        spoke
            .iter()
            .copied()
            .chain(rest)
            .filter_map(|e| self.endpoints.get(e))
            .flat_map(|ep| ep.producers.iter().copied())
            .filter_map(|pk| self.layer_inputs(pk, now))
            .collect()
    }

    /// Re-allocates every receiver of the conference, then tells senders.
    pub(super) fn reallocate_all(&mut self, io: &mut RouterIo<'_>) {
        let sources = self.conference_sources(io.now);
        for r in self.members.clone() {
            self.reallocate_among(r, &sources, io);
        }
        self.announce_sender_constraints(io);
        if self.allocation_watch_needed() {
            self.timers
                .set_earliest(RouterTimer::Allocation, io.now + ALLOCATION_CHECK);
        }
    }

    /// Whether the `Allocation` timer has anything to watch: video arrives,
    /// or some receiver has an estimate. An idle or audio-only conference
    /// does not wake for it.
    fn allocation_watch_needed(&self) -> bool {
        self.producers.iter().any(|(_, p)| p.allocated_mask != 0)
            || self.members.iter().any(|&r| {
                self.endpoints
                    .get(r)
                    .is_some_and(|ep| ep.downlink_budget().is_some())
            })
    }

    /// What receiver `r`'s allocation may spend at `now`: its downlink budget
    /// (see [`Endpoint::downlink_budget`](super::Endpoint::downlink_budget))
    /// through its [`UpgradeHold`](crate::proto::quality::upgrade_hold::UpgradeHold):
    /// falls at once, rises after they held for 2 s; a fall of at most 15%
    /// below what its current layers cost keeps them ([`keep_current`]).
    fn allocation_budget(&mut self, r: EndpointKey, now: Instant) -> Option<u64> {
        let ep = self.endpoints.get_mut(r)?;
        let raw = ep.downlink_budget()?;
        let held = ep.budget_hold.update(now, raw);
        Some(keep_current(held, ep.allocation.target_bps))
    }

    /// After feedback from receiver `r`: re-allocates it at once when its
    /// link is congested (losing what it is sent, or queueing past
    /// [`STANDING_QUEUE`](crate::proto::quality::bwe::STANDING_QUEUE)) and its
    /// budget fell by more than [`ESTIMATE_CHANGE`] from the one its last
    /// allocation used. Waiting for loss moved the capped page's streams
    /// down 190 ms after the first overuse that showed 141 ms of queue, and
    /// that queue fills a 200 ms `tbf` within a feedback or two. Otherwise
    /// the `Allocation` timer's check (every [`ALLOCATION_CHECK`]) does: a
    /// fall without loss is often an overuse the link did not mean (see
    /// [`keep_current`]), and re-allocating on each one moved
    /// `downlink_estimate`'s recovering receiver down to its smallest layer,
    /// too low to climb back within the test. Measured with Chromium behind
    /// a 1 Mbit/s `tbf`: waiting for the timer moved the capped page's
    /// streams down 460 ms after the first loss, 280 ms after the estimate
    /// had fallen, while 3 Mbit/s went on into the 1 Mbit/s bucket.
    pub(super) fn reallocate_on_fall(&mut self, r: EndpointKey, io: &mut RouterIo<'_>) {
        let Some(ep) = self.endpoints.get(r) else {
            return;
        };
        if ep.downlink_estimate().is_none() || !ep.transport.downlink_congested() {
            return;
        }
        let (Some(used), Some(now_bps)) = (ep.allocation.estimate, ep.downlink_budget()) else {
            return;
        };
        if now_bps < used && estimate_moved(Some(used), Some(now_bps)) {
            self.reallocate(r, io);
            self.announce_sender_constraints(io);
        }
    }

    /// Runs the allocator for receiver `r` and applies the result to its slots.
    pub(super) fn reallocate(&mut self, r: EndpointKey, io: &mut RouterIo<'_>) {
        let sources = self.conference_sources(io.now);
        self.reallocate_among(r, &sources, io);
    }

    /// [`Router::reallocate`] with the conference's sources already listed.
    fn reallocate_among(&mut self, r: EndpointKey, all: &[Source], io: &mut RouterIo<'_>) {
        let now = io.now;
        let estimate = self.allocation_budget(r, now);
        let Some(receiver) = self.endpoints.get(r) else {
            return;
        };
        // An endpoint without a video slot receives no video: it watches
        // nothing (and so asks no sender for anything).
        let video_slots = receiver
            .consumers
            .iter()
            .filter(|&&ck| {
                self.consumers
                    .get(ck)
                    .is_some_and(|c| c.kind == MediaKind::Video)
            })
            .count();
        let receives_video = video_slots > 0;
        // It cannot get more videos than it has slots (jvb caps lastN by its
        // `max-video-ssrcs` the same way).
        let mut constraints = receiver.constraints.clone();
        constraints.last_n = Some(
            constraints
                .last_n
                .map_or(video_slots, |n| n.min(video_slots)),
        );
        let sources: Vec<&Source> = all
            .iter()
            .filter(|s| receives_video && s.owner != r)
            .collect();
        let inputs: Vec<SourceInput<'_>> = sources
            .iter()
            .map(|s| SourceInput {
                name: &s.name,
                layers: s.layers.get(..s.count).unwrap_or(&[]),
                forwarded: receiver.allocation.forwarded.contains(&s.name),
            })
            .collect();
        let result = allocate(&constraints, &inputs, estimate);
        let forwarded: Vec<Arc<str>> = result
            .forwarded()
            .filter_map(|i| sources.get(i).map(|s| s.name.clone()))
            .collect();
        let effective: Vec<(ProducerKey, u16)> = sources
            .iter()
            .zip(&result.sources)
            .map(|(s, res)| (s.pk, res.effective_max_height))
            .collect();
        let slots: Vec<ConsumerKey> = receiver
            .consumers
            .iter()
            .copied()
            .filter(|&ck| {
                self.consumers
                    .get(ck)
                    .is_some_and(|c| c.kind == MediaKind::Video)
            })
            .collect();

        // Forwarded sources without a slot take slots of sources not forwarded.
        let wanted = |pk: Option<ProducerKey>| {
            pk.and_then(|pk| sources.iter().position(|s| s.pk == pk))
                .and_then(|i| result.sources.get(i))
                .is_some_and(|res| res.layer.is_some())
        };
        let mut remapped = false;
        let mut spare: Vec<ConsumerKey> = slots
            .iter()
            .copied()
            .filter(|&ck| !wanted(self.consumers.get(ck).and_then(|c| c.source())))
            .collect();
        // Empty slots first.
        spare.sort_by_key(|&ck| self.consumers.get(ck).and_then(|c| c.source()).is_some());
        let mut spare = spare.into_iter();
        for i in result.forwarded().collect::<Vec<_>>() {
            let Some(s) = sources.get(i) else { continue };
            let has_slot = slots
                .iter()
                .any(|&ck| self.consumers.get(ck).and_then(|c| c.source()) == Some(s.pk));
            if has_slot {
                continue;
            }
            let Some(ck) = spare.next() else { break };
            self.assign(ck, Some(s.pk), now);
            remapped = true;
        }

        // A switch down waits for the smaller layer's key frame, forwarding
        // the taller one meanwhile; not while the receiver's link is
        // congested, losing what it is sent or queueing it past 100 ms (see
        // `LayerSwitch::drop_current` and `SendSideBwe::congested`).
        // Measured with Chromium behind a 1 Mbit/s `tbf` (16 KB burst,
        // 200 ms queue): the allocation moved both streams down 40 ms after
        // the first loss, but the 720p layers went on into the full queue,
        // 54-76% was lost for a second more, and the key frames of the
        // smaller layers with it (both streams froze 2.0-2.3 s). Deciding on
        // the queue (once the first decrease goes to what the link carries,
        // `bwe::bottleneck`), the key frames came 120-160 ms after the
        // decision and still met the queue the taller layers kept full:
        // stopping those at the decision took the capped page's longest
        // freeze from a median of 980 to 732 ms (12 runs each).
        let congested = self
            .endpoints
            .get(r)
            .is_some_and(|e| e.transport.downlink_congested());
        // Each slot's layer and whether it forwards.
        for &ck in &slots {
            let Some(c) = self.consumers.get_mut(ck) else {
                continue;
            };
            let Some(pk) = c.source() else { continue };
            let place = sources.iter().position(|s| s.pk == pk);
            let layer = place
                .and_then(|i| result.sources.get(i))
                .and_then(|res| res.layer);
            // A source that sends nothing is idle, not paused: its slot keeps
            // its state, and its first packet re-allocates.
            let idle = place
                .and_then(|i| sources.get(i))
                .is_none_or(|s| s.layers.iter().all(|l| !l.active));
            if idle {
                continue;
            }
            let simulcast = self
                .producers
                .get(pk)
                .is_some_and(|p| p.simulcast.is_some());
            let mut want_keyframe = false;
            match (c.forwarded, layer.is_some()) {
                (true, false) => {
                    c.forwarded = false;
                    c.layers.reset();
                }
                (false, true) => {
                    c.forwarded = true;
                    c.restart();
                    want_keyframe = c.is_waiting_keyframe();
                }
                _ => {}
            }
            if simulcast && layer.is_some() {
                let from = c.layers.current();
                want_keyframe |= c.layers.set_target(layer);
                let heights = self.producers.get(pk).and_then(|p| p.simulcast.as_ref());
                let height = |l: Option<u8>| l.and_then(|l| heights.and_then(|h| h.height(l)));
                let down = match (height(from), height(layer)) {
                    (Some(a), Some(b)) => b < a,
                    _ => from.zip(layer).is_some_and(|(a, b)| b < a),
                };
                if congested && down {
                    c.layers.drop_current();
                }
            }
            if want_keyframe {
                self.timers.set_earliest(RouterTimer::KeyframeRetry, now);
            }
        }

        let Some(receiver) = self.endpoints.get_mut(r) else {
            return;
        };
        let changed = receiver.allocation.forwarded != forwarded;
        receiver.allocation = super::allocate::AllocationState {
            at: Some(now),
            estimate,
            forwarded,
            ideal_bps: result.ideal_bps,
            target_bps: result.target_bps,
            effective,
        };
        tracing::trace!(
            conference = %self.id,
            endpoint = %receiver.id,
            target_bps = result.target_bps,
            ideal_bps = result.ideal_bps,
            estimate = ?estimate,
            layers = ?result.sources.iter().map(|s| s.layer).collect::<Vec<_>>(),
            inputs = ?sources.iter().map(|s| s.layers.iter().take(s.count).map(|l| (l.active, l.bitrate_bps / 1000, l.height)).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "allocated"
        );
        if changed {
            io.events.push_back(MediaEvent::ForwardedSourcesChanged {
                conference: self.id.clone(),
                receiver: receiver.id.clone(),
                sources: receiver.allocation.forwarded.clone(),
            });
        }
        if remapped {
            self.announce_sources(r, io);
        }
    }

    /// Sends `SenderSourceConstraints` for each video source whose tallest
    /// wanted height (over every receiver's effective constraints) changed.
    pub(super) fn announce_sender_constraints(&mut self, io: &mut RouterIo<'_>) {
        let video: Vec<ProducerKey> = self
            .producers
            .iter()
            .filter(|(_, p)| p.kind == MediaKind::Video)
            .map(|(pk, _)| pk)
            .collect();
        for pk in video {
            let mut max: i32 = 0;
            for &r in &self.members {
                let Some(ep) = self.endpoints.get(r) else {
                    continue;
                };
                let h = ep
                    .allocation
                    .effective
                    .iter()
                    .find(|(k, _)| *k == pk)
                    .map_or(0, |&(_, h)| h);
                if h == UNLIMITED {
                    max = -1;
                    break;
                }
                max = max.max(i32::from(h));
            }
            let Some(p) = self.producers.get_mut(pk) else {
                continue;
            };
            if p.announced_max_height == max {
                continue;
            }
            p.announced_max_height = max;
            let Some(sender) = self.endpoints.get(p.owner) else {
                continue;
            };
            io.events.push_back(MediaEvent::SenderSourceConstraints {
                conference: self.id.clone(),
                sender: sender.id.clone(),
                source: p.source_name.to_string(),
                max_height: max,
            });
        }
    }

    /// The `Allocation` timer: re-allocates everyone when a source's layers
    /// changed (one stopped), and each receiver whose estimate moved or whose
    /// last allocation is [`ALLOCATION_PERIOD`] old.
    pub(super) fn check_allocation(&mut self, io: &mut RouterIo<'_>) {
        let now = io.now;
        let mut layers_changed = false;
        for (_, p) in self.producers.iter_mut() {
            if p.kind != MediaKind::Video {
                continue;
            }
            let mask = p.active_layer_mask(now);
            if mask != p.allocated_mask {
                p.allocated_mask = mask;
                layers_changed = true;
            }
        }
        if layers_changed {
            self.reallocate_all(io);
            return;
        }
        let mut due: Vec<EndpointKey> = Vec::new();
        for i in 0..self.members.len() {
            let Some(&r) = self.members.get(i) else {
                break;
            };
            let estimate = self.allocation_budget(r, now);
            let Some(ep) = self.endpoints.get(r) else {
                continue;
            };
            let a = &ep.allocation;
            // The periodic run (it allocates: a few vectors per receiver
            // every 5 s, never per packet) is for a receiver whose feedback
            // measures its link. Without feedback, the budget is unlimited or
            // the constant start value: the events above (constraints,
            // speakers, layers) already re-allocate.
            let measured = ep.downlink_estimate().is_some();
            let stale =
                a.at.is_none_or(|at| now.saturating_duration_since(at) >= ALLOCATION_PERIOD)
                    && (measured || a.at.is_none());
            if stale || estimate_moved(a.estimate, estimate) {
                due.push(r);
            }
        }
        if !due.is_empty() {
            let sources = self.conference_sources(now);
            for &r in &due {
                self.reallocate_among(r, &sources, io);
            }
            self.announce_sender_constraints(io);
        }
        if self.allocation_watch_needed() {
            self.timers
                .set(RouterTimer::Allocation, now + ALLOCATION_CHECK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fall_of_at_most_15_percent_below_the_current_layers_keeps_them() {
        // 1.3 Mbit/s of layers: an overuse's 0.85 x 1.3 keeps them.
        assert_eq!(keep_current(1_105_000, 1_300_000), 1_300_000);
        // A bottleneck at 1 Mbit/s: 0.85 x 1.0 does not.
        assert_eq!(keep_current(850_000, 1_300_000), 850_000);
        // A budget above the spending is the budget; nothing spent yet, too.
        assert_eq!(keep_current(2_000_000, 1_300_000), 2_000_000);
        assert_eq!(keep_current(300_000, 0), 300_000);
    }

    #[test]
    fn an_estimate_move_of_more_than_15_percent_re_allocates() {
        assert!(!estimate_moved(Some(1_000_000), Some(1_150_000)));
        assert!(estimate_moved(Some(1_000_000), Some(1_150_001)));
        assert!(!estimate_moved(Some(1_000_000), Some(850_000)));
        assert!(estimate_moved(Some(1_000_000), Some(849_999)));
        assert!(!estimate_moved(None, None));
        assert!(estimate_moved(None, Some(1)), "the first estimate");
        assert!(estimate_moved(Some(1), None));
    }
}
