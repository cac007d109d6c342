//! The shard thread's handle: commands in over a bounded queue, stats out.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ringbridge_control::media::{
    ConferenceId, EndpointId, EndpointPolicy, JoinAnswer, JoinRequest, MediaError, MuteRequest,
    ReceiverConstraintsUpdate, RefusalReason, ShardSnapshot,
};
use tokio::sync::oneshot;

use super::driver::Io;
use super::events::{EventOutbox, ShardEventSender};
use super::send::SendFailure;
use super::tcp_conns::{TcpHandoff, TcpStats};
use crate::proto::shard::{ShardConfig, ShardCore};

/// Capacity of each shard's command queue; a full queue is refused with 503.
pub const COMMAND_QUEUE: usize = 256;

/// A control command for one shard.
#[derive(Debug)]
pub enum ShardCommand {
    /// Add an endpoint (see `ShardCore::handle_join`).
    Join {
        /// The request.
        req: JoinRequest,
        /// What the endpoint may publish, in force from its first packet.
        policy: EndpointPolicy,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<JoinAnswer, MediaError>>,
    },
    /// Remove an endpoint.
    Leave {
        /// Its conference.
        conference: ConferenceId,
        /// The endpoint.
        endpoint: EndpointId,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    /// Change a joined endpoint's publishing policy (see `ShardCore::set_policy`).
    SetPolicy {
        /// Its conference.
        conference: ConferenceId,
        /// The endpoint.
        endpoint: EndpointId,
        /// What it may publish.
        policy: EndpointPolicy,
    },
    /// Mute or unmute an endpoint's media (see `ShardCore::handle_mute`).
    Mute {
        /// Its conference.
        conference: ConferenceId,
        /// The endpoint.
        endpoint: EndpointId,
        /// What to change.
        mute: MuteRequest,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    /// Stop forwarding one source (see `ShardCore::handle_refuse_source`).
    RefuseSource {
        /// Its conference.
        conference: ConferenceId,
        /// The publishing endpoint.
        endpoint: EndpointId,
        /// Jitsi source name, e.g. `{endpoint_id}-v0`.
        source: String,
        /// Why.
        reason: RefusalReason,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    /// Take over an ICE-TCP connection whose first check names this shard.
    AdoptTcp(TcpHandoff),
    /// A receiver's `ReceiverVideoConstraints` (see
    /// `ShardCore::set_receiver_constraints`).
    SetReceiverConstraints {
        /// Its conference.
        conference: ConferenceId,
        /// The receiving endpoint.
        endpoint: EndpointId,
        /// The fields its message carried.
        update: ReceiverConstraintsUpdate,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    /// Stop the thread.
    Shutdown,
}

/// What the driver should do after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCommand {
    /// Keep running.
    Continue,
    /// Stop the shard thread.
    Stop,
}

/// The sockets side of a driver, as commands need it.
pub trait PortBinder {
    /// Binds a free port of the shard's range and starts receiving on it.
    fn bind(&mut self) -> Result<u16, MediaError>;
    /// Stops receiving on `port` and closes its socket.
    fn release(&mut self, port: u16);
    /// Takes over an ICE-TCP connection for the endpoint of `core` its first
    /// check names (or closes it, counted, when there is none).
    fn adopt_tcp(&mut self, core: &ShardCore, now: std::time::Instant, handoff: TcpHandoff);
}

/// Applies one control command to the core; every driver calls this, so a new
/// command is added in one place.
pub fn handle_command(
    core: &mut ShardCore,
    now: std::time::Instant,
    cmd: ShardCommand,
    ports: &mut impl PortBinder,
) -> AfterCommand {
    match cmd {
        ShardCommand::Join { req, policy, reply } => {
            let result = ports.bind().and_then(|port| {
                let r = media(core.handle_join_with_policy(now, &req, port, policy));
                if r.is_err() {
                    ports.release(port);
                }
                r.map(|answer_sdp| JoinAnswer { answer_sdp })
            });
            let _ = reply.send(result);
            AfterCommand::Continue
        }
        ShardCommand::Leave {
            conference,
            endpoint,
            reply,
        } => {
            let _ = reply.send(media(core.handle_leave(&conference, &endpoint)));
            AfterCommand::Continue
        }
        ShardCommand::SetPolicy {
            conference,
            endpoint,
            policy,
        } => {
            core.set_policy(&conference, &endpoint, policy);
            AfterCommand::Continue
        }
        ShardCommand::Mute {
            conference,
            endpoint,
            mute,
            reply,
        } => {
            let _ = reply.send(media(core.handle_mute(&conference, &endpoint, mute)));
            AfterCommand::Continue
        }
        ShardCommand::RefuseSource {
            conference,
            endpoint,
            source,
            reason,
            reply,
        } => {
            let result = core.handle_refuse_source(&conference, &endpoint, &source, reason);
            let _ = reply.send(media(result));
            AfterCommand::Continue
        }
        ShardCommand::AdoptTcp(handoff) => {
            ports.adopt_tcp(core, now, handoff);
            AfterCommand::Continue
        }
        ShardCommand::SetReceiverConstraints {
            conference,
            endpoint,
            update,
            reply,
        } => {
            let _ = reply.send(media(core.set_receiver_constraints(
                &conference,
                &endpoint,
                &update,
            )));
            AfterCommand::Continue
        }
        ShardCommand::Shutdown => AfterCommand::Stop,
    }
}

/// The control plane's view of a core error (whatever the core's error type, as
/// long as it converts).
fn media<T, E: Into<MediaError>>(result: Result<T, E>) -> Result<T, MediaError> {
    result.map_err(Into::into)
}

/// Counters a shard publishes for the control plane: written by the shard thread
/// only, with relaxed stores once per loop turn; read by the control plane.
/// Nothing on the packet path touches them: the loop copies its own counters
/// here at the end of each turn.
#[derive(Debug)]
pub struct ShardStats {
    counters: [AtomicU64; Counter::COUNT],
    gso: AtomicBool,
    heartbeat: AtomicU64,
}

// `Default` is derived for arrays of at most 32 elements only.
impl Default for ShardStats {
    fn default() -> Self {
        Self {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            gso: AtomicBool::new(false),
            heartbeat: AtomicU64::new(0),
        }
    }
}

/// The published counters, by index into [`ShardStats`].
#[derive(Debug, Clone, Copy)]
enum Counter {
    Endpoints,
    Conferences,
    LargestConference,
    PacketsReceived,
    BytesReceived,
    PacketsSent,
    BytesSent,
    DroppedAuth,
    DroppedReplay,
    DroppedUnknownSource,
    DroppedUnknownSsrc,
    DroppedMalformed,
    DroppedGarbage,
    DroppedOversized,
    DroppedUnknownPort,
    DroppedStunIntegrity,
    DroppedStunUsername,
    DroppedStunOther,
    DroppedPolicy,
    StunRefused,
    IceSuccesses,
    IceFailures,
    DtlsSuccesses,
    DtlsFailures,
    RtpForwarded,
    SendingAudio,
    SendingVideo,
    InactiveConferences,
    InactiveEndpoints,
    SegmentedSends,
    FailedBacklogFull,
    FailedTooBig,
    FailedUnreachable,
    FailedPermission,
    FailedOther,
    SendBacklog,
    SendBacklogged,
    EventsDropped,
    DroppedRtx,
    DroppedRtxPadding,
    RtxReceived,
    NacksReceived,
    RetransmissionsRequested,
    RetransmissionsSent,
    RetransmissionsSuppressed,
    RetransmissionsHeld,
    CacheHits,
    CacheMisses,
    CacheMemoryBytes,
    NacksSent,
    KeyframeRequestsReceived,
    KeyframeRequestsSent,
    KeyframeRequestsThrottled,
    TwccFeedbackSent,
    TwccFeedbackReceived,
    ProbePacketsSent,
    RembSent,
    SenderReportsSent,
    TcpAdopted,
    TcpRefused,
    TcpClosed,
    TcpActive,
    TcpBytesReceived,
    TcpBytesSent,
    TcpFramesReceived,
    TcpFramesSent,
    TcpFramesDropped,
    SinglePortHandoffs,
    SinglePortHandoffsDropped,
    DominantSpeakerChanges,
    DroppedSilence,
    DroppedAudioLastN,
    EndpointsExpiredConsent,
    EndpointsExpiredDtls,
    PortsInUse,
    PortsFree,
    XdpReceived,
    XdpRxDropped,
    XdpKernelSent,
    XdpKernelReceived,
    XdpNeighbourLookups,
    EventsWaiting,
}

impl Counter {
    const COUNT: usize = Counter::EventsWaiting as usize + 1;

    fn failed(reason: SendFailure) -> Self {
        match reason {
            SendFailure::BacklogFull => Counter::FailedBacklogFull,
            SendFailure::TooBig => Counter::FailedTooBig,
            SendFailure::Unreachable => Counter::FailedUnreachable,
            SendFailure::Permission => Counter::FailedPermission,
            SendFailure::Other => Counter::FailedOther,
        }
    }
}

impl ShardStats {
    /// Publishes the core's counters, the backend's send totals, the ICE-TCP
    /// connections' and the event outbox's, and moves the heartbeat. Datagrams
    /// sent over ICE-TCP count in the sent totals too.
    pub fn publish(&self, core: &ShardCore, io: &impl Io, tcp: &TcpStats, events: &EventOutbox) {
        let c = core.counters();
        let activity = core.activity();
        let sent = io.totals();
        let set = |k: Counter, v: u64| self.counters[k as usize].store(v, Ordering::Relaxed);
        set(Counter::Endpoints, core.endpoint_count() as u64);
        set(Counter::Conferences, core.conference_count() as u64);
        set(Counter::LargestConference, core.largest_conference() as u64);
        set(Counter::PacketsReceived, c.packets_received);
        set(Counter::BytesReceived, c.bytes_received);
        set(Counter::PacketsSent, sent.packets + tcp.frames_sent);
        set(Counter::BytesSent, sent.bytes + tcp.bytes_sent);
        set(Counter::TcpAdopted, tcp.adopted);
        set(Counter::TcpRefused, tcp.refused);
        set(Counter::TcpClosed, tcp.closed);
        set(Counter::TcpActive, tcp.active);
        set(Counter::TcpBytesReceived, tcp.bytes_received);
        set(Counter::TcpBytesSent, tcp.bytes_sent);
        set(Counter::TcpFramesReceived, tcp.frames_received);
        set(Counter::TcpFramesSent, tcp.frames_sent);
        set(Counter::TcpFramesDropped, tcp.frames_dropped);
        set(Counter::DroppedAuth, c.dropped_auth);
        set(Counter::DroppedReplay, c.dropped_replay);
        set(Counter::DroppedUnknownSource, c.dropped_unknown_source);
        set(Counter::DroppedUnknownSsrc, c.dropped_unknown_ssrc);
        set(Counter::DroppedMalformed, c.dropped_malformed);
        set(Counter::DroppedGarbage, c.dropped_garbage);
        set(Counter::DroppedOversized, c.dropped_oversized);
        set(Counter::DroppedUnknownPort, c.dropped_unknown_port);
        set(Counter::DroppedStunIntegrity, c.dropped_stun_integrity);
        set(Counter::DroppedStunUsername, c.dropped_stun_username);
        set(Counter::DroppedStunOther, c.dropped_stun_other);
        set(Counter::DroppedPolicy, c.dropped_policy);
        set(Counter::StunRefused, c.stun_refused);
        set(Counter::IceSuccesses, c.ice_successes);
        set(Counter::IceFailures, c.ice_failures);
        set(
            Counter::EndpointsExpiredConsent,
            c.endpoints_expired_consent,
        );
        set(Counter::EndpointsExpiredDtls, c.endpoints_expired_dtls);
        set(Counter::DtlsSuccesses, c.dtls_successes);
        set(Counter::DtlsFailures, c.dtls_failures);
        set(Counter::RtpForwarded, c.rtp_forwarded);
        set(Counter::DroppedRtx, c.dropped_rtx);
        set(Counter::DroppedRtxPadding, c.dropped_rtx_padding);
        set(Counter::RtxReceived, c.rtx_received);
        set(Counter::NacksReceived, c.nacks_received);
        set(
            Counter::RetransmissionsRequested,
            c.retransmissions_requested,
        );
        set(Counter::RetransmissionsSent, c.retransmissions_sent);
        set(
            Counter::RetransmissionsSuppressed,
            c.retransmissions_suppressed,
        );
        set(Counter::RetransmissionsHeld, c.retransmissions_held);
        set(Counter::CacheHits, c.cache_hits);
        set(Counter::CacheMisses, c.cache_misses);
        set(Counter::CacheMemoryBytes, c.cache_memory_bytes);
        set(Counter::NacksSent, c.nacks_sent);
        set(
            Counter::KeyframeRequestsReceived,
            c.keyframe_requests_received,
        );
        set(Counter::KeyframeRequestsSent, c.keyframe_requests_sent);
        set(
            Counter::KeyframeRequestsThrottled,
            c.keyframe_requests_throttled,
        );
        set(Counter::TwccFeedbackSent, c.twcc_feedback_sent);
        set(Counter::TwccFeedbackReceived, c.twcc_feedback_received);
        set(Counter::ProbePacketsSent, c.probe_packets_sent);
        set(Counter::RembSent, c.remb_sent);
        set(Counter::SenderReportsSent, c.sender_reports_sent);
        set(Counter::DominantSpeakerChanges, c.dominant_speaker_changes);
        set(Counter::DroppedSilence, c.dropped_silence);
        set(Counter::DroppedAudioLastN, c.dropped_audio_last_n);
        set(Counter::SendingAudio, activity.audio);
        set(Counter::SendingVideo, activity.video);
        set(Counter::InactiveConferences, activity.inactive_conferences);
        set(Counter::InactiveEndpoints, activity.inactive_endpoints);
        set(Counter::SegmentedSends, sent.segmented);
        for reason in SendFailure::ALL {
            set(Counter::failed(reason), sent.failed(reason));
        }
        set(Counter::SendBacklog, io.backlog_len() as u64);
        set(Counter::SendBacklogged, sent.backlogged);
        set(Counter::EventsDropped, events.dropped());
        set(Counter::EventsWaiting, events.waiting() as u64);
        if let Some(x) = io.xdp_counters() {
            set(Counter::XdpReceived, x.xsk_received);
            set(Counter::XdpRxDropped, x.rx_dropped);
            set(Counter::XdpKernelSent, x.kernel_sent);
            set(Counter::XdpKernelReceived, x.kernel_received);
            set(Counter::XdpNeighbourLookups, x.neighbour_lookups);
        }
        self.gso.store(io.gso(), Ordering::Relaxed);
        self.heartbeat.fetch_add(1, Ordering::Relaxed);
    }

    /// Publishes the shard's media ports: bound to an endpoint, and still free
    /// (in single-port mode, endpoint keys of the shared port).
    pub fn publish_ports(&self, in_use: u64, free: u64) {
        self.counters[Counter::PortsInUse as usize].store(in_use, Ordering::Relaxed);
        self.counters[Counter::PortsFree as usize].store(free, Ordering::Relaxed);
    }

    /// Publishes the single-port hand-offs this shard made (and could not make).
    pub fn publish_handoffs(&self, handoffs: u64, dropped: u64) {
        self.counters[Counter::SinglePortHandoffs as usize].store(handoffs, Ordering::Relaxed);
        self.counters[Counter::SinglePortHandoffsDropped as usize]
            .store(dropped, Ordering::Relaxed);
    }

    /// Loop iterations published so far: a driver publishes at least every
    /// 200 ms, so a value that stops moving means a stuck shard thread.
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed)
    }

    /// Whether the driver sends with UDP GSO (it may switch it off at run time
    /// after `EIO`/`EINVAL`).
    pub fn gso(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    fn get(&self, k: Counter) -> u64 {
        self.counters[k as usize].load(Ordering::Relaxed)
    }

    fn failed(&self, reason: SendFailure) -> u64 {
        self.get(Counter::failed(reason))
    }

    /// Endpoints on the shard.
    pub fn endpoints(&self) -> u64 {
        self.get(Counter::Endpoints)
    }

    /// Endpoints of the shard's largest conference.
    pub fn largest_conference(&self) -> u64 {
        self.get(Counter::LargestConference)
    }

    /// A consistent-enough copy for the control plane.
    pub fn snapshot(&self, index: usize, core: Option<usize>) -> ShardSnapshot {
        let failed: u64 = SendFailure::ALL.iter().map(|&r| self.failed(r)).sum();
        ShardSnapshot {
            index,
            core,
            endpoints: self.get(Counter::Endpoints),
            conferences: self.get(Counter::Conferences),
            packets_received: self.get(Counter::PacketsReceived),
            bytes_received: self.get(Counter::BytesReceived),
            packets_sent: self.get(Counter::PacketsSent),
            bytes_sent: self.get(Counter::BytesSent),
            dropped_auth: self.get(Counter::DroppedAuth),
            dropped_replay: self.get(Counter::DroppedReplay),
            dropped_unknown_source: self.get(Counter::DroppedUnknownSource),
            dropped_unknown_ssrc: self.get(Counter::DroppedUnknownSsrc),
            dropped_malformed: self.get(Counter::DroppedMalformed),
            dropped_garbage: self.get(Counter::DroppedGarbage),
            dropped_oversized: self.get(Counter::DroppedOversized),
            dropped_unknown_port: self.get(Counter::DroppedUnknownPort),
            dropped_stun_integrity: self.get(Counter::DroppedStunIntegrity),
            dropped_stun_username: self.get(Counter::DroppedStunUsername),
            dropped_stun_other: self.get(Counter::DroppedStunOther),
            dropped_policy: self.get(Counter::DroppedPolicy),
            stun_refused: self.get(Counter::StunRefused),
            ice_successes: self.get(Counter::IceSuccesses),
            ice_failures: self.get(Counter::IceFailures),
            endpoints_expired_consent: self.get(Counter::EndpointsExpiredConsent),
            endpoints_expired_dtls: self.get(Counter::EndpointsExpiredDtls),
            ports_in_use: self.get(Counter::PortsInUse),
            ports_free: self.get(Counter::PortsFree),
            dtls_successes: self.get(Counter::DtlsSuccesses),
            dtls_failures: self.get(Counter::DtlsFailures),
            send_errors: failed,
            endpoints_sending_audio: self.get(Counter::SendingAudio),
            endpoints_sending_video: self.get(Counter::SendingVideo),
            inactive_conferences: self.get(Counter::InactiveConferences),
            inactive_endpoints: self.get(Counter::InactiveEndpoints),
            segmented_sends: self.get(Counter::SegmentedSends),
            send_failed_backlog_full: self.failed(SendFailure::BacklogFull),
            send_failed_too_big: self.failed(SendFailure::TooBig),
            send_failed_unreachable: self.failed(SendFailure::Unreachable),
            send_failed_permission: self.failed(SendFailure::Permission),
            send_failed_other: self.failed(SendFailure::Other),
            send_backlog: self.get(Counter::SendBacklog),
            send_backlogged: self.get(Counter::SendBacklogged),
            events_dropped: self.get(Counter::EventsDropped),
            single_port_handoffs: self.get(Counter::SinglePortHandoffs),
            single_port_handoffs_dropped: self.get(Counter::SinglePortHandoffsDropped),
            events_waiting: self.get(Counter::EventsWaiting),
            dropped_rtx: self.get(Counter::DroppedRtx),
            dropped_rtx_padding: self.get(Counter::DroppedRtxPadding),
            rtx_received: self.get(Counter::RtxReceived),
            nacks_received: self.get(Counter::NacksReceived),
            retransmissions_requested: self.get(Counter::RetransmissionsRequested),
            retransmissions_sent: self.get(Counter::RetransmissionsSent),
            retransmissions_suppressed: self.get(Counter::RetransmissionsSuppressed),
            retransmissions_held: self.get(Counter::RetransmissionsHeld),
            cache_hits: self.get(Counter::CacheHits),
            cache_misses: self.get(Counter::CacheMisses),
            cache_memory_bytes: self.get(Counter::CacheMemoryBytes),
            nacks_sent: self.get(Counter::NacksSent),
            keyframe_requests_received: self.get(Counter::KeyframeRequestsReceived),
            keyframe_requests_sent: self.get(Counter::KeyframeRequestsSent),
            keyframe_requests_throttled: self.get(Counter::KeyframeRequestsThrottled),
            twcc_feedback_sent: self.get(Counter::TwccFeedbackSent),
            twcc_feedback_received: self.get(Counter::TwccFeedbackReceived),
            probe_packets_sent: self.get(Counter::ProbePacketsSent),
            remb_sent: self.get(Counter::RembSent),
            sender_reports_sent: self.get(Counter::SenderReportsSent),
            dominant_speaker_changes: self.get(Counter::DominantSpeakerChanges),
            dropped_silence: self.get(Counter::DroppedSilence),
            dropped_audio_last_n: self.get(Counter::DroppedAudioLastN),
            tcp_connections_adopted: self.get(Counter::TcpAdopted),
            tcp_connections_refused: self.get(Counter::TcpRefused),
            tcp_connections_closed: self.get(Counter::TcpClosed),
            tcp_connections_active: self.get(Counter::TcpActive),
            tcp_bytes_received: self.get(Counter::TcpBytesReceived),
            tcp_bytes_sent: self.get(Counter::TcpBytesSent),
            tcp_frames_received: self.get(Counter::TcpFramesReceived),
            tcp_frames_sent: self.get(Counter::TcpFramesSent),
            tcp_frames_dropped: self.get(Counter::TcpFramesDropped),
            xdp_received: self.get(Counter::XdpReceived),
            xdp_rx_dropped: self.get(Counter::XdpRxDropped),
            xdp_kernel_sent: self.get(Counter::XdpKernelSent),
            xdp_kernel_received: self.get(Counter::XdpKernelReceived),
            xdp_neighbour_lookups: self.get(Counter::XdpNeighbourLookups),
        }
    }
}

/// The control plane's side of a shard.
#[derive(Debug, Clone)]
pub struct ShardHandle {
    /// Index of the shard.
    pub index: usize,
    /// The core it is pinned to, if any.
    pub core: Option<usize>,
    /// The driver running the shard (`uring` or `mmsg`).
    pub backend: &'static str,
    commands: Sender<ShardCommand>,
    waker: Arc<dyn ShardWaker>,
    /// Published counters.
    pub stats: Arc<ShardStats>,
}

impl ShardHandle {
    /// Enqueues a command without blocking; a full queue is `Overloaded`.
    pub fn send(&self, cmd: ShardCommand) -> Result<(), MediaError> {
        match self.commands.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(MediaError::Overloaded(format!(
                    "shard {} command queue is full",
                    self.index
                )));
            }
            Err(TrySendError::Disconnected(_)) => return Err(MediaError::Unavailable),
        }
        self.waker.wake().map_err(|_| MediaError::Unavailable)
    }

    /// Endpoints currently on the shard (its load, for placement).
    pub fn load(&self) -> u64 {
        self.stats.endpoints()
    }
}

/// What a shard thread needs to start.
#[derive(Debug, Clone)]
pub struct ShardSpec {
    /// Shard index.
    pub index: usize,
    /// Core to pin to.
    pub core: Option<usize>,
    /// The ports this shard owns (inclusive).
    pub ports: (u16, u16),
    /// Local address to bind media sockets to.
    pub bind: IpAddr,
    /// Core configuration.
    pub core_config: ShardConfig,
    /// Single-port mode: the shared port's sockets, steering and hand-off
    /// queues (`core_config.single_port` names the same port); `None` for a
    /// port per endpoint from `ports`.
    pub single_port: Option<Arc<super::single_port::SinglePort>>,
}

/// Wakes a shard thread that sleeps in its driver (epoll, io_uring) so it reads
/// its command queue.
pub trait ShardWaker: Send + Sync + std::fmt::Debug {
    /// Wakes the thread; cheap and callable from any thread.
    fn wake(&self) -> std::io::Result<()>;
}

impl ShardWaker for mio::Waker {
    fn wake(&self) -> std::io::Result<()> {
        mio::Waker::wake(self)
    }
}

/// Which driver runs a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring: multishot receive into a provided-buffer ring, batched sends.
    Uring,
    /// recvmmsg/sendmmsg over epoll.
    Mmsg,
    /// AF_XDP (started with [`spawn_xdp_shard`], which needs the
    /// [`XdpPlane`](super::xdp::XdpPlane)).
    Xdp,
}

impl Backend {
    /// Name as in `media.io` and `/colibri/stats` `io_backend`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "uring",
            Backend::Mmsg => "mmsg",
            Backend::Xdp => "xdp",
        }
    }
}

/// Everything a driver's thread gets.
#[derive(Debug)]
pub struct ShardContext {
    /// What the shard is.
    pub spec: ShardSpec,
    /// Control commands.
    pub commands: Receiver<ShardCommand>,
    /// Where media events go (bounded: see [`super::events`]).
    pub events: ShardEventSender,
    /// Where counters are published.
    pub stats: Arc<ShardStats>,
}

/// A driver made ready on the spawning thread: its waker, and the loop to run on
/// the shard thread (which creates per-thread resources such as the ring).
pub struct PreparedDriver {
    /// Wakes the loop when a command is queued.
    pub waker: Arc<dyn ShardWaker>,
    /// The loop; returns when told to stop.
    pub run: Box<dyn FnOnce(ShardContext) + Send>,
}

/// Starts a shard thread with `backend` and returns its handle.
pub fn spawn_shard(
    spec: ShardSpec,
    backend: Backend,
    events: ShardEventSender,
) -> std::io::Result<ShardHandle> {
    let prepared = match backend {
        Backend::Uring => super::uring::prepare(&spec)?,
        Backend::Mmsg => super::mmsg::prepare(&spec)?,
        Backend::Xdp => {
            return Err(std::io::Error::other(
                "an AF_XDP shard is started with spawn_xdp_shard",
            ));
        }
    };
    spawn_prepared(spec, backend.name(), prepared, events)
}

/// Starts the AF_XDP shard over `plane` (its `io_backend` names the XDP and
/// copy modes).
pub fn spawn_xdp_shard(
    spec: ShardSpec,
    plane: &Arc<super::xdp::XdpPlane>,
    events: ShardEventSender,
) -> std::io::Result<ShardHandle> {
    let prepared = plane.prepare(&spec)?;
    spawn_prepared(spec, plane.backend_name(), prepared, events)
}

fn spawn_prepared(
    spec: ShardSpec,
    backend: &'static str,
    prepared: PreparedDriver,
    events: ShardEventSender,
) -> std::io::Result<ShardHandle> {
    let (tx, rx) = crossbeam_channel::bounded(COMMAND_QUEUE);
    if let Some(sp) = &spec.single_port {
        sp.set_waker(spec.index, prepared.waker.clone());
    }
    let stats = Arc::new(ShardStats::default());
    let handle = ShardHandle {
        index: spec.index,
        core: spec.core,
        backend,
        commands: tx,
        waker: prepared.waker,
        stats: stats.clone(),
    };
    let run = prepared.run;
    std::thread::Builder::new()
        .name(format!("shard-{}", spec.index))
        .spawn(move || {
            let pinned = spec.core.map(|core| {
                (
                    core,
                    core_affinity::set_for_current(core_affinity::CoreId { id: core }),
                )
            });
            tracing::info!(
                shard = spec.index,
                core = ?pinned.map(|p| p.0),
                pinned = pinned.is_some_and(|p| p.1),
                backend,
                ports = ?spec.ports,
                "shard started"
            );
            run(ShardContext {
                spec,
                commands: rx,
                events,
                stats,
            });
        })?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct NoWake;

    impl ShardWaker for NoWake {
        fn wake(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn leave() -> (ShardCommand, oneshot::Receiver<Result<(), MediaError>>) {
        let (reply, rx) = oneshot::channel();
        let cmd = ShardCommand::Leave {
            conference: ConferenceId("c".into()),
            endpoint: EndpointId("e".into()),
            reply,
        };
        (cmd, rx)
    }

    #[test]
    fn a_full_command_queue_is_refused_as_overloaded_not_dropped() {
        let (tx, rx) = crossbeam_channel::bounded(2);
        let handle = ShardHandle {
            index: 3,
            core: None,
            backend: "test",
            commands: tx,
            waker: Arc::new(NoWake),
            stats: Arc::new(ShardStats::default()),
        };
        assert!(handle.send(leave().0).is_ok());
        assert!(handle.send(leave().0).is_ok());
        match handle.send(leave().0) {
            Err(MediaError::Overloaded(msg)) => assert!(msg.contains("shard 3"), "{msg}"),
            other => panic!("a full queue must be Overloaded, got {other:?}"),
        }
        // What was accepted is still there, in order.
        assert_eq!(rx.len(), 2);
        drop(rx);
        assert!(matches!(
            handle.send(leave().0),
            Err(MediaError::Unavailable)
        ));
    }
}
