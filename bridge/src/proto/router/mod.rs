//! The media object model, after mediasoup: one [`Router`] per conference owns
//! its endpoints (each with its [`Transport`](super::transport::Transport)), its
//! [`Producer`]s (one incoming source each) and its [`Consumer`]s (one source as
//! one receiver gets it: a receive slot, with all per-receiver rewriting state);
//! its dominant speaker; later the allocator.
//!
//! Every relation between these objects is a generational key of this router's
//! own maps ([`keys`]): nothing a router holds can name another conference's
//! object, so a packet can only ever be forwarded inside its conference.
//!
//! Files: `join.rs` builds an endpoint from its offer; `packet.rs` is the RTP and
//! RTCP path; `forward.rs` writes a receiver's copy of a packet; `slots.rs` maps
//! producers onto consumers (the one place the producer-consumer index changes);
//! `keyframe.rs` asks publishers for keyframes; `repair.rs` NACKs publishers (per
//! simulcast layer) and answers receivers' NACKs from the packet cache of the
//! layer the slot's mapping history names; `reports.rs` sends each slot's
//! sender reports; `activity.rs` counts who sends; `speaker.rs` feeds audio
//! levels to dominant speaker identification and drops long silences;
//! `downlink.rs` reports each receiver's bandwidth estimate (`ConnectionStats`);
//! `allocate.rs` runs each receiver's video allocation within that estimate
//! and applies it;
//! `control.rs` has leave, mute, refusals and policy; this file the objects,
//! their lookups, the transports' dispatch and the router's timers.

pub mod activity;
pub mod allocate;
mod consumer;
mod control;
mod downlink;
mod endpoint;
pub mod forward;
pub mod join;
mod keyframe;
pub mod keys;
mod packet;
mod producer;
mod repair;
mod reports;
pub mod slots;
pub mod speaker;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringbridge_control::media::{ConferenceId, EndpointId, MediaEvent};
use slotmap::SlotMap;

pub use consumer::{Consumer, Rewrite};
pub use endpoint::Endpoint;
pub use forward::{ExtensionValues, SlotFields, write_forwarded, write_forwarded_body};
pub use keys::{ConsumerKey, EndpointKey, ProducerKey, RouterKey};
pub use producer::{Producer, SourceRepair, StreamRepair};

use super::quality::dominant_speaker::DominantSpeaker;
use super::shard::ShardCounters;
use super::timer::{Scheduled, TimerHeap, TimerName, TimerTable};
use super::transmit::TxQueue;
use super::transport::TransportFailure;
use activity::RouterActivity;

/// How long a consumer waits for its keyframe before the router asks again
/// (the requests themselves are throttled by each producer's
/// [`KeyframeRequester`](super::quality::keyframe::KeyframeRequester)).
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// What a router call may produce, and the shard-wide state it reads: the
/// driver's send queue, the control plane's events, the counters, and the ports
/// of endpoints it removed.
#[derive(Debug)]
pub struct RouterIo<'a> {
    /// The current time.
    pub now: Instant,
    /// When the datagram being handled reached the host (the kernel's receive
    /// timestamp, at most `now`); `now` outside a receive. Only the bandwidth
    /// estimation's arrival records use it.
    pub arrival: Instant,
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
    /// A video source's NACK generator is due (first NACK, retry or give-up).
    Nack,
    /// Sender reports for every slot that sent media.
    SenderReports,
    /// The dominant speaker decision (every 300 ms while audio levels arrive).
    DominantSpeaker,
    /// Re-allocation checks: stopped layers, moved estimates, the period
    /// (see `allocate.rs`).
    Allocation,
}

impl TimerName for RouterTimer {
    const COUNT: usize = 6;
    fn index(self) -> usize {
        self as usize
    }
    fn from_index(index: usize) -> Self {
        match index {
            0 => RouterTimer::KeyframeRetry,
            1 => RouterTimer::Activity,
            2 => RouterTimer::Nack,
            3 => RouterTimer::SenderReports,
            4 => RouterTimer::DominantSpeaker,
            _ => RouterTimer::Allocation,
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
    /// Some slot lost its source since the last whole rebalance (see
    /// [`Router::rebalance_joined`]): a join then rebalances everything.
    unbalanced: bool,
    producers: SlotMap<ProducerKey, Producer>,
    consumers: SlotMap<ConsumerKey, Consumer>,
    timers: TimerTable<RouterTimer, { RouterTimer::COUNT }>,
    /// Deadlines of the video sources' NACK generators (the `Nack` timer is
    /// the earliest): a turn handles only the sources that are due.
    nack_heap: TimerHeap<ProducerKey>,
    /// What the shard's timer heap holds for this router.
    pub scheduled: Scheduled,
    activity: RouterActivity,
    /// Dominant speaker identification over the endpoints' audio levels.
    speakers: DominantSpeaker<EndpointKey>,
    /// Audio is forwarded from this many loudest speakers only (0: all).
    audio_last_n: usize,
    /// Silent runs are dropped after their first few packets.
    drop_silence: bool,
}

impl Router {
    /// An empty conference.
    pub fn new(id: ConferenceId) -> Self {
        Self {
            id,
            endpoints: SlotMap::with_key(),
            members: Vec::new(),
            unbalanced: false,
            producers: SlotMap::with_key(),
            consumers: SlotMap::with_key(),
            timers: TimerTable::default(),
            nack_heap: TimerHeap::default(),
            scheduled: Scheduled::default(),
            activity: RouterActivity::default(),
            speakers: DominantSpeaker::new(),
            audio_last_n: 0,
            drop_silence: false,
        }
    }

    /// Drops silent audio runs after their first few packets (`media.drop_silence`).
    pub fn with_drop_silence(mut self, drop: bool) -> Self {
        self.drop_silence = drop;
        self
    }

    /// Forwards audio from the `n` loudest speakers only (0: from everyone).
    pub fn with_audio_last_n(mut self, n: usize) -> Self {
        self.audio_last_n = n;
        self
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

    /// When the router next asks publishers again for the keyframes waiting
    /// slots need (`None`: no slot waits on a source it can ask).
    pub fn keyframe_retry_at(&self) -> Option<Instant> {
        self.timers.get(RouterTimer::KeyframeRetry)
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
                // Its sources can be asked for keyframes now: slots that wait
                // on them arm no timer before (see `retry_keyframes`).
                let waited_on = ep.producers.iter().any(|&pk| {
                    self.producers.get(pk).is_some_and(|p| {
                        p.fanout.iter().any(|&ck| {
                            self.consumers
                                .get(ck)
                                .is_some_and(|c| c.is_waiting_keyframe())
                        })
                    })
                });
                if waited_on {
                    self.timers.set_earliest(RouterTimer::KeyframeRetry, io.now);
                }
            }
            Err(failure) => {
                match failure {
                    TransportFailure::ConsentExpired => io.counters.endpoints_expired_consent += 1,
                    TransportFailure::DtlsFailed => io.counters.endpoints_expired_dtls += 1,
                }
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

    /// The router's own timers: keyframe retries for waiting consumers, the
    /// end of sending windows, NACKs, sender reports and dominant speaker
    /// decisions.
    pub fn handle_timeout(&mut self, io: &mut RouterIo<'_>) {
        while let Some(timer) = self.timers.take_expired(io.now) {
            match timer {
                RouterTimer::KeyframeRetry => self.retry_keyframes(io),
                RouterTimer::Activity => self.recount_activity(io),
                RouterTimer::Nack => self.send_nacks(io),
                RouterTimer::SenderReports => self.send_sender_reports(io),
                RouterTimer::DominantSpeaker => self.decide_speaker(io),
                RouterTimer::Allocation => self.check_allocation(io),
            }
        }
    }
}
