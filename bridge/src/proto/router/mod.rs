//! The media object model, after mediasoup: one [`Router`] per conference owns
//! its endpoints (each with its [`Transport`](super::transport::Transport)), its
//! [`Producer`]s (one incoming source each) and its [`Consumer`]s (one source as
//! one receiver gets it: a receive slot, with all per-receiver rewriting state);
//! later the allocator and dominant-speaker detection.
//!
//! Every relation between these objects is a generational key of this router's
//! own maps ([`keys`]): nothing a router holds can name another conference's
//! object, so a packet can only ever be forwarded inside its conference.
//!
//! Files: [`join`] builds an endpoint from its offer; [`slots`] maps producers
//! onto consumers (the one place the producer-consumer index changes); [`forward`]
//! writes a receiver's copy of a packet; [`activity`] counts who sends; this file
//! has the packet path, the timers and the control operations.

pub mod activity;
mod consumer;
mod endpoint;
pub mod forward;
pub mod join;
pub mod keys;
mod producer;
pub mod slots;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringbridge_control::media::{
    ConferenceId, EndpointId, EndpointPolicy, MediaEvent, MuteRequest, RefusalReason,
};
use slotmap::SlotMap;

pub use consumer::{Consumer, Rewrite};
pub use endpoint::Endpoint;
pub use forward::{ExtensionValues, SlotFields, write_forwarded};
pub use keys::{ConsumerKey, EndpointKey, ProducerKey, RouterKey};
pub use producer::Producer;

use super::error::CoreError;
use super::rtp::RtpHeader;
use super::rtp_ext::{Extension, abs_send_time};
use super::sdp::MediaKind;
use super::shard::ShardCounters;
use super::timer::{Scheduled, TimerName, TimerTable};
use super::transmit::TxQueue;
use super::transport::demux::Demuxed;
use super::transport::{TransportFailure, TransportState};
use activity::RouterActivity;

/// Minimum time between two keyframe requests to the same producer.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// What a router call may produce, and the shard-wide state it reads: the
/// driver's send queue, the control plane's events, the counters, and the ports
/// of endpoints it removed.
#[derive(Debug)]
pub struct RouterIo<'a> {
    /// The current time.
    pub now: Instant,
    /// `now` on the shard's media clock (RTCP and abs-send-time).
    pub since_epoch: Duration,
    /// Datagrams to send.
    pub tx: &'a mut TxQueue,
    /// Events for the control plane.
    pub events: &'a mut VecDeque<MediaEvent>,
    /// The shard's counters.
    pub counters: &'a mut ShardCounters,
    /// Ports of endpoints removed during the call.
    pub released: &'a mut Vec<u16>,
    /// Scratch for one DTLS record.
    pub scratch: &'a mut [u8],
    /// Set when the router's [`activity`](Router::activity) changed.
    pub activity_changed: bool,
}

/// The named timers of a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterTimer {
    /// Ask publishers again for the keyframe a waiting consumer needs.
    KeyframeRetry,
    /// An endpoint's sending window ends.
    Activity,
}

impl TimerName for RouterTimer {
    const COUNT: usize = 2;
    fn index(self) -> usize {
        self as usize
    }
    fn from_index(index: usize) -> Self {
        if index == 0 {
            RouterTimer::KeyframeRetry
        } else {
            RouterTimer::Activity
        }
    }
}

/// One conference on a shard.
#[derive(Debug)]
pub struct Router {
    id: ConferenceId,
    endpoints: SlotMap<EndpointKey, Endpoint>,
    /// Endpoints in join order (slot mapping follows it).
    members: Vec<EndpointKey>,
    producers: SlotMap<ProducerKey, Producer>,
    consumers: SlotMap<ConsumerKey, Consumer>,
    timers: TimerTable<RouterTimer, { RouterTimer::COUNT }>,
    /// What the shard's timer heap holds for this router.
    pub scheduled: Scheduled,
    activity: RouterActivity,
}

impl Router {
    /// An empty conference.
    pub fn new(id: ConferenceId) -> Self {
        Self {
            id,
            endpoints: SlotMap::with_key(),
            members: Vec::new(),
            producers: SlotMap::with_key(),
            consumers: SlotMap::with_key(),
            timers: TimerTable::default(),
            scheduled: Scheduled::default(),
            activity: RouterActivity::default(),
        }
    }

    /// The conference id.
    pub fn id(&self) -> &ConferenceId {
        &self.id
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the conference has no endpoint left.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The endpoint with this id.
    pub fn find(&self, id: &EndpointId) -> Option<EndpointKey> {
        self.members
            .iter()
            .copied()
            .find(|&k| self.endpoints.get(k).is_some_and(|e| &e.id == id))
    }

    /// An endpoint.
    pub fn endpoint(&self, key: EndpointKey) -> Option<&Endpoint> {
        self.endpoints.get(key)
    }

    /// Endpoints in join order.
    pub fn members(&self) -> &[EndpointKey] {
        &self.members
    }

    /// A producer.
    pub fn producer(&self, key: ProducerKey) -> Option<&Producer> {
        self.producers.get(key)
    }

    /// A consumer.
    pub fn consumer(&self, key: ConsumerKey) -> Option<&Consumer> {
        self.consumers.get(key)
    }

    /// Every producer.
    pub fn producers(&self) -> impl Iterator<Item = (ProducerKey, &Producer)> {
        self.producers.iter()
    }

    /// Every consumer.
    pub fn consumers(&self) -> impl Iterator<Item = (ConsumerKey, &Consumer)> {
        self.consumers.iter()
    }

    /// Who sends, as of the last change.
    pub fn activity(&self) -> RouterActivity {
        self.activity
    }

    /// When [`Router::handle_timeout`] is next due (the router's own timers; each
    /// transport has its own).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// When [`Router::handle_transport_timeout`] is next due for `key`.
    pub fn transport_timeout(&self, key: EndpointKey) -> Option<Instant> {
        self.endpoints.get(key)?.transport.poll_timeout()
    }

    /// The heap bookkeeping of endpoint `key`'s transport.
    pub fn transport_scheduled(&mut self, key: EndpointKey) -> Option<&mut Scheduled> {
        Some(&mut self.endpoints.get_mut(key)?.transport.scheduled)
    }

    /// A STUN datagram for endpoint `key`.
    pub fn handle_stun(
        &mut self,
        key: EndpointKey,
        from: SocketAddr,
        datagram: &[u8],
        io: &mut RouterIo<'_>,
    ) {
        if let Some(ep) = self.endpoints.get_mut(key) {
            ep.transport
                .handle_stun(io.now, from, datagram, io.tx, io.counters);
        }
    }

    /// A DTLS datagram for endpoint `key`.
    pub fn handle_dtls(
        &mut self,
        key: EndpointKey,
        from: SocketAddr,
        datagram: &[u8],
        io: &mut RouterIo<'_>,
    ) {
        let Some(ep) = self.endpoints.get_mut(key) else {
            return;
        };
        let result =
            ep.transport
                .handle_dtls(io.now, from, datagram, io.tx, io.scratch, io.counters);
        self.after_transport(key, result, io);
    }

    /// Transport timers of endpoint `key`.
    pub fn handle_transport_timeout(&mut self, key: EndpointKey, io: &mut RouterIo<'_>) {
        let Some(ep) = self.endpoints.get_mut(key) else {
            return;
        };
        let result =
            ep.transport
                .handle_timeout(io.now, io.since_epoch, io.tx, io.scratch, io.counters);
        self.after_transport(key, result, io);
    }

    fn after_transport(
        &mut self,
        key: EndpointKey,
        result: Result<bool, TransportFailure>,
        io: &mut RouterIo<'_>,
    ) {
        match result {
            Ok(false) => {}
            Ok(true) => {
                let Some(ep) = self.endpoints.get(key) else {
                    return;
                };
                let (profile, version) = ep.transport.negotiated().unwrap_or_default();
                tracing::info!(
                    endpoint = %ep.id,
                    conference = %self.id,
                    srtp_profile = profile,
                    dtls_version = version,
                    "endpoint connected"
                );
                io.events.push_back(MediaEvent::EndpointConnected {
                    conference: self.id.clone(),
                    endpoint: ep.id.clone(),
                });
            }
            Err(failure) => {
                if let Some(ep) = self.endpoints.get(key) {
                    tracing::info!(
                        endpoint = %ep.id,
                        conference = %self.id,
                        reason = failure.reason(),
                        "endpoint expired"
                    );
                }
                self.remove_endpoint(key, Some(failure.reason()), io);
            }
        }
    }

    /// An SRTP packet from endpoint `key`: unprotected in place, demultiplexed
    /// to its producer and written, rewritten and protected for every consumer.
    pub fn handle_rtp(
        &mut self,
        key: EndpointKey,
        from: SocketAddr,
        datagram: &mut [u8],
        io: &mut RouterIo<'_>,
    ) {
        let Router {
            endpoints,
            producers,
            consumers,
            ..
        } = self;
        let Some(sender) = endpoints.get_mut(key) else {
            return;
        };
        let Some(len) = sender.transport.unprotect_rtp(from, datagram, io.counters) else {
            return;
        };
        let packet = &datagram[..len];
        let Ok(header) = RtpHeader::parse(packet) else {
            io.counters.dropped_malformed += 1;
            return;
        };
        let (pk, entry) = match sender.transport.demux.classify(&header, packet) {
            Demuxed::Media { producer, entry } => (producer, entry),
            Demuxed::Rtx { .. } => {
                // Recognised repair packets; unwrapping them is the next step.
                io.counters.dropped_rtx += 1;
                return;
            }
            Demuxed::Unknown => {
                io.counters.dropped_unknown_ssrc += 1;
                return;
            }
        };
        let Some(producer) = producers.get_mut(pk) else {
            io.counters.dropped_unknown_ssrc += 1;
            return;
        };
        if header.payload_type != producer.pt {
            // Only the negotiated codec is forwarded (no FEC or others).
            io.counters.dropped_unknown_ssrc += 1;
            return;
        }
        if !producer.forwarding() {
            // Muted by a moderator, or refused by the endpoint's policy.
            io.counters.dropped_policy += 1;
            return;
        }
        sender
            .transport
            .demux
            .record(entry, &header, io.since_epoch);
        producer.packets += 1;
        let now = io.now;
        let became_active = activity::note_packet(sender, producer.kind, now);
        let audio_level = if producer.kind == MediaKind::Audio {
            sender
                .transport
                .extensions()
                .id(Extension::AudioLevel)
                .and_then(|id| header.extension_value(packet, id))
        } else {
            None
        };
        let keyframe = producer.kind == MediaKind::Video
            && header
                .payload(packet)
                .and_then(|p| producer.codec.parse(p).ok())
                .is_some_and(|info| info.keyframe);
        let abs_send_time = abs_send_time(io.since_epoch);

        let mut want_keyframe = false;
        for &ck in &producer.fanout {
            let Some(consumer) = consumers.get_mut(ck) else {
                continue;
            };
            let Some(receiver) = endpoints.get_mut(consumer.receiver) else {
                continue;
            };
            if receiver.transport.media_target().is_none() {
                continue;
            }
            let (seq, ts) =
                match consumer.rewrite(now, header.sequence_number, header.timestamp, keyframe) {
                    Rewrite::Forward { seq, ts } => (seq, ts),
                    Rewrite::WaitingKeyframe => {
                        want_keyframe = true;
                        continue;
                    }
                };
            let slot = SlotFields {
                pt: consumer.pt,
                seq,
                ts,
                ssrc: consumer.ssrc,
            };
            let negotiated = consumer.extensions;
            let mid = consumer.mid.as_bytes();
            let sent = receiver.transport.send_rtp(io.tx, |out, ctx| {
                let values = ExtensionValues {
                    mid: Some(mid),
                    audio_level,
                    abs_send_time: Some(abs_send_time),
                    twcc_seq: Some(ctx.twcc_seq),
                };
                write_forwarded(
                    out,
                    packet,
                    &header,
                    slot,
                    negotiated,
                    ctx.extensions,
                    &values,
                )
            });
            if sent.is_some() {
                io.counters.rtp_forwarded += 1;
            }
        }
        if want_keyframe {
            self.request_keyframe(pk, io);
        }
        if became_active {
            self.recount_activity(io);
        }
    }

    /// An SRTCP packet from endpoint `key`: terminated, keyframe requests passed
    /// on to the publishers of the slots they name.
    pub fn handle_rtcp(
        &mut self,
        key: EndpointKey,
        from: SocketAddr,
        datagram: &mut [u8],
        io: &mut RouterIo<'_>,
    ) {
        let Some(ep) = self.endpoints.get_mut(key) else {
            return;
        };
        let Some(len) = ep.transport.unprotect_rtcp(from, datagram, io.counters) else {
            return;
        };
        let mut wanted = [0u32; 16];
        let mut n = 0;
        ep.transport
            .handle_rtcp(io.since_epoch, &datagram[..len], io.counters, |ssrc| {
                if n < wanted.len() {
                    wanted[n] = ssrc;
                    n += 1;
                }
            });
        for &ssrc in &wanted[..n] {
            let source = self.endpoints.get(key).and_then(|ep| {
                ep.consumers
                    .iter()
                    .filter_map(|&ck| self.consumers.get(ck))
                    .find(|c| c.ssrc == ssrc)
                    .and_then(Consumer::source)
            });
            if let Some(pk) = source {
                self.request_keyframe(pk, io);
            }
        }
    }

    /// Sends a PLI to the publisher of `pk`, at most every
    /// [`KEYFRAME_REQUEST_INTERVAL`].
    fn request_keyframe(&mut self, pk: ProducerKey, io: &mut RouterIo<'_>) {
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

    /// The router's own timers: keyframe retries for waiting consumers, and the
    /// end of sending windows.
    pub fn handle_timeout(&mut self, io: &mut RouterIo<'_>) {
        while let Some(timer) = self.timers.take_expired(io.now) {
            match timer {
                RouterTimer::KeyframeRetry => self.retry_keyframes(io),
                RouterTimer::Activity => self.recount_activity(io),
            }
        }
    }

    fn retry_keyframes(&mut self, io: &mut RouterIo<'_>) {
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
            self.producers.remove(pk);
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
                    .is_some_and(|p| p.source_name == source)
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
