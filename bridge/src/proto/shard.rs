//! The sans-IO core of one shard: it dispatches between the driver and the
//! objects placed on the shard, one [`Router`] per conference (each owning its
//! endpoints' [`Transport`]s).
//!
//! A driver (the socket loop in `crate::io`) owns the sockets and the clock and
//! calls, in any order:
//! - [`ShardCore::handle_join`] / [`ShardCore::handle_leave`] (and the other
//!   commands) for control commands,
//! - [`ShardCore::handle_receive`] for every datagram, with `now`,
//! - [`ShardCore::handle_timeout`] when [`ShardCore::poll_timeout`] is due,
//!
//! then sends everything queued in the [`TxQueue`] it passed in, drains
//! [`ShardCore::poll_event`] toward the control plane, and closes the sockets of
//! [`ShardCore::poll_released_port`]. No sockets, clock reads or threads here.
//!
//! Per packet (after warm-up) nothing is allocated: the datagram is decrypted in the
//! caller's buffer, and each receiver's copy is rewritten and encrypted straight in
//! its slot of the [`TxQueue`].
//!
//! Timers: each router and each transport keeps its own named deadlines; the
//! shard keeps one heap of (deadline, object), so [`ShardCore::poll_timeout`] is a
//! peek and [`ShardCore::handle_timeout`] touches only the objects that are due.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dimpl::DtlsCertificate;
use ringbridge_control::media::{
    ConferenceId, EndpointId, EndpointPolicy, JoinRequest, MediaError, MediaEvent, MuteRequest,
    ReceiverConstraintsUpdate, RefusalReason,
};
use slotmap::SlotMap;

use super::dtls;
use super::error::CoreError;
use super::router::join::JoinContext;
use super::router::{EndpointKey, Router, RouterIo, RouterKey};
use super::sdp::Offer;
use super::timer::TimerHeap;
use super::transmit::TxQueue;
use super::transport::Transport;

pub use super::router::KEYFRAME_REQUEST_INTERVAL;

/// The largest datagram the shard handles, in bytes; a larger one is dropped
/// and counted (`dropped_oversized`). WebRTC peers keep every datagram within
/// the path MTU (RTP is packetized to about 1200 bytes, DTLS flights are
/// fragmented to it), so this leaves room for jumbo-free paths of any kind; the
/// I/O backends' receive buffers are larger, so a datagram they truncated
/// arrives here longer than this and is counted too.
pub const MAX_DATAGRAM: usize = 1800;
pub use super::router::activity::SENDING_WINDOW;
pub use super::transport::REPORT_INTERVAL;

/// Who sends media on a shard, over [`SENDING_WINDOW`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Endpoints whose audio arrived within the window.
    pub audio: u64,
    /// Endpoints whose video arrived within the window.
    pub video: u64,
    /// Conferences in which no endpoint sent audio or video within the window
    /// (jitsi-videobridge's `inactive_conferences`).
    pub inactive_conferences: u64,
    /// Endpoints of those conferences (jitsi-videobridge's `inactive_endpoints`).
    pub inactive_endpoints: u64,
}

/// [`ShardCore::handle_timeout`] stops running due timers once the send queue
/// holds this many datagrams: the rest stay due and run on the next call,
/// after the driver sent the queue (its next wait returns at once).
///
/// Sender reports for every slot of every conference can fall due in the
/// same turn, and then the queue grew past its capacity and kept the memory:
/// heaptrack on the bridge under `ringbridge-bench run --shape meeting
/// --conferences 8 --endpoints 8` showed two steps of +1.6 MB at 50 s and
/// 65 s, each half of the io_uring driver's double-buffered queue
/// reallocated from 1,024 to 2,048 slots from `send_sender_reports` (the
/// likely cause of the 30-minute soak's one step of 3.9 MB at 20 minutes). The
/// drivers' queues have 1,024 slots, so this many plus one router's timer
/// output fit.
pub const TIMER_BATCH_DATAGRAMS: usize = 512;

/// Static configuration of a shard core.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Addresses put into the host candidates of every answer.
    pub advertise: Vec<IpAddr>,
    /// The DTLS certificate all endpoints of this shard present.
    pub certificate: DtlsCertificate,
    /// SRTP profiles accepted, in order of preference (`media.srtp_profiles`); empty
    /// means [`SrtpProfile::PREFERRED`](crate::proto::srtp::SrtpProfile::PREFERRED).
    pub srtp_profiles: Vec<crate::proto::srtp::SrtpProfile>,
    /// The bandwidth estimate a publisher's browser starts from, in kbit/s
    /// (`media.video_start_bitrate_kbps`), written into the answer's VP8 `a=fmtp`
    /// as `x-google-start-bitrate`; 0 leaves the browser's own (300 kbit/s).
    pub video_start_bitrate_kbps: u32,
    /// The shard's index, encoded in the local ICE ufrag of every endpoint
    /// (see [`ice::shard_of_username`](crate::proto::ice::shard_of_username)).
    pub index: usize,
    /// The ICE-TCP port (`media.tcp_port`): every answer gets a passive TCP
    /// candidate on it per advertised address; `None` for none.
    pub tcp_port: Option<u16>,
    /// Single-port mode (`media.port`, 0 = off): the one UDP port every
    /// endpoint shares. The `port` of a join is then only the endpoint's key on
    /// the shard, and datagrams arrive through [`ShardCore::handle_shared_receive`].
    pub single_port: Option<u16>,
    /// Forward each conference's audio only from its N loudest speakers
    /// (`media.audio_last_n`); 0 forwards all.
    pub audio_last_n: u32,
    /// Drop silent audio (RFC 6464 level 127) after the first few packets of a
    /// run (`media.drop_silence`).
    pub drop_silence: bool,
}

/// What [`ShardCore::handle_shared_receive`] did with a datagram that arrived
/// on the shared port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedReceive {
    /// Handled here (answered, forwarded, or dropped and counted).
    Handled,
    /// A STUN request whose USERNAME names another shard's endpoint: the
    /// driver passes the datagram on to that shard.
    OtherShard(usize),
    /// Not STUN, from an address no endpoint here validated: the driver asks
    /// its steering table which shard owns it, else calls
    /// [`ShardCore::drop_unknown_source`].
    UnknownSource,
}

/// A change to the remote addresses that ICE validated on this shard in
/// single-port mode: the driver steers that address's datagrams to this shard
/// (or stops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteChange {
    /// An endpoint's check from this address passed.
    Validated(SocketAddr),
    /// The endpoint that owned this address left.
    Gone(SocketAddr),
}

/// Single-port demultiplexing state: validated remote addresses and local
/// ufrags to endpoint keys.
#[derive(Debug, Default)]
struct SharedPort {
    by_remote: HashMap<SocketAddr, u16>,
    by_ufrag: HashMap<Box<str>, u16>,
    changes: VecDeque<RemoteChange>,
}

impl SharedPort {
    /// Forgets the endpoint `key` (its addresses are reported gone).
    fn forget(&mut self, key: u16) {
        self.by_ufrag.retain(|_, k| *k != key);
        let changes = &mut self.changes;
        self.by_remote.retain(|addr, k| {
            if *k == key {
                changes.push_back(RemoteChange::Gone(*addr));
                false
            } else {
                true
            }
        });
    }
}

/// The local ufrag of a STUN USERNAME sent to us ("ours:theirs").
fn local_ufrag_of(username: &[u8]) -> Option<&str> {
    let local = username.split(|&b| b == b':').next()?;
    std::str::from_utf8(local).ok()
}

/// Counters of one shard (cumulative since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// Datagrams received.
    pub packets_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// RTP packets forwarded (one per receiver copy).
    pub rtp_forwarded: u64,
    /// Datagrams for a port no endpoint owns any more.
    pub dropped_unknown_port: u64,
    /// Datagrams whose first byte is none of STUN (0-3), DTLS (20-63) or
    /// RTP/RTCP (128-191), empty ones included (RFC 7983 demultiplexing).
    pub dropped_garbage: u64,
    /// Datagrams larger than [`MAX_DATAGRAM`] (or truncated by the receive
    /// buffer), dropped before anything looks at them.
    pub dropped_oversized: u64,
    /// STUN checks with a wrong or missing MESSAGE-INTEGRITY or FINGERPRINT.
    pub dropped_stun_integrity: u64,
    /// STUN checks whose USERNAME is not this endpoint's `ufrag:peer-ufrag`.
    pub dropped_stun_username: u64,
    /// STUN messages that are not Binding requests (responses, indications), or
    /// whose answer did not fit.
    pub dropped_stun_other: u64,
    /// Datagrams from an address that passed no ICE check.
    pub dropped_unknown_source: u64,
    /// Datagrams that claim STUN, RTP or RTCP by their first byte but do not
    /// parse as it.
    pub dropped_malformed: u64,
    /// SRTP/SRTCP authentication failures.
    pub dropped_auth: u64,
    /// SRTP/SRTCP replays.
    pub dropped_replay: u64,
    /// RTP with an SSRC no producer owns (or could be learned), or a payload
    /// type other than the producer's codec.
    pub dropped_unknown_ssrc: u64,
    /// RTP of a known repair (RTX) stream that could not be unwrapped (no media
    /// SSRC to restore, a missing original sequence number, or a packet the
    /// source already had).
    pub dropped_rtx: u64,
    /// Padding-only RTX packets (bandwidth probes), dropped.
    pub dropped_rtx_padding: u64,
    /// Publishers' RTX packets unwrapped and handled as the original.
    pub rtx_received: u64,
    /// RTP of a muted producer, or of one the endpoint's policy refuses.
    pub dropped_policy: u64,
    /// STUN requests refused (wrong username or integrity).
    pub stun_refused: u64,
    /// Endpoints whose first ICE check succeeded.
    pub ice_successes: u64,
    /// Endpoints expired without ever passing an ICE check.
    pub ice_failures: u64,
    /// Endpoints removed because no valid consent check came for 30 s (RFC
    /// 7675): clients that vanished without a goodbye (`ice_failures` counts
    /// those of them that never passed a check at all).
    pub endpoints_expired_consent: u64,
    /// Endpoints removed because their DTLS handshake failed or timed out.
    pub endpoints_expired_dtls: u64,
    /// DTLS associations that failed.
    pub dtls_failures: u64,
    /// DTLS associations that completed and were verified.
    pub dtls_successes: u64,
    /// NACK packets received from receivers (jvb `NackHandler.numNacksReceived`).
    pub nacks_received: u64,
    /// Packets receivers asked for (jvb `RetransmissionSender.numRetransmissionsRequested`).
    pub retransmissions_requested: u64,
    /// Retransmissions sent to receivers, RTX or plain (jvb `numRetransmittedPackets`).
    pub retransmissions_sent: u64,
    /// Asked-for packets not resent because they were sent within one RTT.
    pub retransmissions_suppressed: u64,
    /// Asked-for packets not resent because they were of a layer the
    /// simulcast slot had left, while the receiver's link was congested (its
    /// queue past 50 ms).
    pub retransmissions_held: u64,
    /// Asked-for packets found in a packet cache.
    pub cache_hits: u64,
    /// Asked-for packets not in the cache (jvb `NackHandler.numCacheMisses`).
    pub cache_misses: u64,
    /// Memory held by the packet caches of live sources, in bytes (a gauge;
    /// each cache, one per simulcast layer, counted from the first packet of
    /// its stream, when it takes its memory, until its source leaves).
    pub cache_memory_bytes: u64,
    /// NACK packets sent to publishers.
    pub nacks_sent: u64,
    /// PLIs and FIRs from receivers (jvb `numPlisReceived` + `numFirsReceived`).
    pub keyframe_requests_received: u64,
    /// Keyframe requests sent to publishers (jvb `numPlisForwarded` +
    /// `numFirsForwarded` + `numPlisGenerated`).
    pub keyframe_requests_sent: u64,
    /// Keyframe requests dropped by throttling (jvb `numPlisDropped` + `numFirsDropped`).
    pub keyframe_requests_throttled: u64,
    /// Transport-cc feedback packets sent (jvb `num_tcc_packets_sent`).
    pub twcc_feedback_sent: u64,
    /// REMB packets sent.
    pub remb_sent: u64,
    /// Transport-cc feedback packets from receivers fed to their send-side
    /// estimators (jvb `num_tcc_packets_received`).
    pub twcc_feedback_received: u64,
    /// Padding-only packets sent to receivers as bandwidth probes.
    pub probe_packets_sent: u64,
    /// Sender reports sent for slots.
    pub sender_reports_sent: u64,
    /// Audio packets not forwarded because their speaker was not among the
    /// conference's loudest (`media.audio_last_n`).
    pub dropped_audio_last_n: u64,
    /// Times a conference's dominant speaker changed.
    pub dominant_speaker_changes: u64,
    /// Audio packets of silence (RFC 6464 level 127) not forwarded: those after
    /// the first few of a run of silence.
    pub dropped_silence: u64,
}

/// Whose timer a heap entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerOwner {
    Router(RouterKey),
    Transport(RouterKey, EndpointKey),
}

/// The media state of one shard.
pub struct ShardCore {
    cfg: ShardConfig,
    fingerprint: Vec<u8>,
    dtls_config: Arc<dimpl::Config>,
    routers: SlotMap<RouterKey, Router>,
    by_conference: HashMap<ConferenceId, RouterKey>,
    by_port: HashMap<u16, (RouterKey, EndpointKey)>,
    shared_port: SharedPort,
    timers: TimerHeap<TimerOwner>,
    events: VecDeque<MediaEvent>,
    released_ports: Vec<u16>,
    /// Scratch: one DTLS datagram being built.
    scratch: Box<[u8; 2048]>,
    counters: ShardCounters,
    activity: Activity,
    /// Origin of the shard's media clock (RTCP arrival times, abs-send-time).
    epoch: Instant,
    /// The latest `now` seen, for commands that carry none.
    last_now: Instant,
    /// [`ShardCore::handle_timeout`] returns once the queue holds this many
    /// datagrams ([`TIMER_BATCH_DATAGRAMS`]).
    timer_batch: usize,
}

impl std::fmt::Debug for ShardCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardCore")
            .field("endpoints", &self.endpoint_count())
            .field("conferences", &self.routers.len())
            .finish_non_exhaustive()
    }
}

/// The shard's state that a router call borrows besides the router itself.
struct Shared<'a> {
    events: &'a mut VecDeque<MediaEvent>,
    counters: &'a mut ShardCounters,
    released: &'a mut Vec<u16>,
    scratch: &'a mut [u8],
}

impl ShardCore {
    /// Sets how many queued datagrams end a [`ShardCore::handle_timeout`]
    /// call (default [`TIMER_BATCH_DATAGRAMS`]; at least 1).
    pub fn set_timer_batch(&mut self, datagrams: usize) {
        self.timer_batch = datagrams.max(1);
    }

    /// A shard with no endpoints; `now` is the origin of its media clock.
    pub fn new(cfg: ShardConfig, now: Instant) -> Self {
        let fingerprint = dtls::sha256_fingerprint(&cfg.certificate.certificate);
        let dtls_config = dtls::server_config(&cfg.srtp_profiles);
        Self {
            cfg,
            fingerprint,
            dtls_config,
            routers: SlotMap::with_key(),
            by_conference: HashMap::new(),
            by_port: HashMap::new(),
            shared_port: SharedPort::default(),
            timers: TimerHeap::default(),
            events: VecDeque::new(),
            released_ports: Vec::new(),
            scratch: Box::new([0; 2048]),
            counters: ShardCounters::default(),
            activity: Activity::default(),
            epoch: now,
            last_now: now,
            timer_batch: TIMER_BATCH_DATAGRAMS,
        }
    }

    /// Cumulative counters.
    pub fn counters(&self) -> &ShardCounters {
        &self.counters
    }

    /// Live endpoints.
    pub fn endpoint_count(&self) -> usize {
        self.by_port.len()
    }

    /// Live conferences.
    pub fn conference_count(&self) -> usize {
        self.routers.len()
    }

    /// Endpoints in the largest conference.
    pub fn largest_conference(&self) -> usize {
        self.routers.values().map(Router::len).max().unwrap_or(0)
    }

    /// The transport of the endpoint that owns `port`, if any (for tests and
    /// diagnostics).
    pub fn endpoint_by_port(&self, port: u16) -> Option<&Transport> {
        let &(rk, ek) = self.by_port.get(&port)?;
        Some(self.routers.get(rk)?.endpoint(ek)?.transport())
    }

    /// The local port of the endpoint a STUN USERNAME is addressed to
    /// ("<local ufrag>:<remote ufrag>"), if it lives on this shard.
    ///
    /// A scan over the shard's endpoints: a driver asks once per new ICE-TCP
    /// connection (whose first frame names its endpoint only this way), never
    /// per packet.
    pub fn port_of_username(&self, username: &[u8]) -> Option<u16> {
        let local = username.split(|&b| b == b':').next()?;
        self.by_port.keys().copied().find(|&port| {
            self.endpoint_by_port(port)
                .is_some_and(|t| t.local_ufrag().as_bytes() == local)
        })
    }

    /// The router of `conference`, if it lives here (for tests and diagnostics).
    pub fn router(&self, conference: &ConferenceId) -> Option<&Router> {
        self.routers.get(*self.by_conference.get(conference)?)
    }

    /// Every router on the shard.
    pub fn routers(&self) -> impl Iterator<Item = &Router> {
        self.routers.values()
    }

    /// Adds an endpoint on local `port` and returns the SDP answer, with no limit on
    /// what it publishes ([`EndpointPolicy::default`]).
    pub fn handle_join(
        &mut self,
        now: Instant,
        req: &JoinRequest,
        port: u16,
    ) -> Result<String, MediaError> {
        self.handle_join_with_policy(now, req, port, EndpointPolicy::default())
    }

    /// Adds an endpoint on local `port` whose publishing `policy` limits, and
    /// returns the SDP answer. Refused sources are reported as
    /// [`MediaEvent::ForwardingRefused`] and never mapped onto a slot.
    pub fn handle_join_with_policy(
        &mut self,
        now: Instant,
        req: &JoinRequest,
        port: u16,
        policy: EndpointPolicy,
    ) -> Result<String, MediaError> {
        self.join(now, req, port, policy).map_err(Into::into)
    }

    /// [`ShardCore::handle_join_with_policy`] with the core's own error type.
    pub fn join(
        &mut self,
        now: Instant,
        req: &JoinRequest,
        port: u16,
        policy: EndpointPolicy,
    ) -> Result<String, CoreError> {
        self.last_now = self.last_now.max(now);
        let offer = Offer::parse(&req.offer_sdp)?;
        if self.by_port.contains_key(&port) {
            return Err(CoreError::PortInUse(port));
        }
        let rk = match self.by_conference.get(&req.conference) {
            Some(&rk) => rk,
            None => {
                let router = Router::new(req.conference.clone())
                    .with_audio_last_n(self.cfg.audio_last_n as usize)
                    .with_drop_silence(self.cfg.drop_silence);
                let rk = self.routers.insert(router);
                self.by_conference.insert(req.conference.clone(), rk);
                rk
            }
        };
        let since_epoch = now.saturating_duration_since(self.epoch);
        let Self {
            routers,
            events,
            counters,
            released_ports,
            scratch,
            dtls_config,
            cfg,
            fingerprint,
            ..
        } = self;
        let ctx = JoinContext {
            dtls_config,
            certificate: &cfg.certificate,
            fingerprint,
            advertise: &cfg.advertise,
            tcp_port: cfg.tcp_port,
            shard: cfg.index,
            video_start_bitrate_kbps: cfg.video_start_bitrate_kbps,
            single_port: cfg.single_port,
        };
        let mut shared = Shared {
            events,
            counters,
            released: released_ports,
            scratch: &mut scratch[..],
        };
        let Some(router) = routers.get_mut(rk) else {
            return Err(CoreError::ConferenceNotFound);
        };
        // Joining sends nothing (an empty queue allocates nothing).
        let mut tx = TxQueue::with_capacity(0);
        let mut io = shared.io(now, since_epoch, &mut tx);
        let result = router.join(&req.endpoint, &offer, port, policy, ctx, &mut io);
        let activity_changed = io.activity_changed;
        match result {
            Ok((ek, answer)) => {
                self.by_port.insert(port, (rk, ek));
                if self.cfg.single_port.is_some()
                    && let Some(ep) = self.routers.get(rk).and_then(|r| r.endpoint(ek))
                {
                    let ufrag: Box<str> = ep.transport().local_ufrag().into();
                    self.shared_port.by_ufrag.insert(ufrag, port);
                }
                self.after_router_call(rk, Some(ek), activity_changed);
                Ok(answer)
            }
            Err(e) => {
                self.after_router_call(rk, None, activity_changed);
                Err(e)
            }
        }
    }

    /// Borrows the routers and the rest of the shard's state apart.
    fn split(&mut self) -> (&mut SlotMap<RouterKey, Router>, Shared<'_>) {
        (
            &mut self.routers,
            Shared {
                events: &mut self.events,
                counters: &mut self.counters,
                released: &mut self.released_ports,
                scratch: &mut self.scratch[..],
            },
        )
    }

    /// Runs `f` on the router of `conference` and its endpoint `endpoint`, for
    /// control commands (which queue no datagrams).
    fn with_endpoint<T>(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        f: impl FnOnce(&mut Router, EndpointKey, &mut RouterIo<'_>) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        let rk = *self
            .by_conference
            .get(conference)
            .ok_or(CoreError::ConferenceNotFound)?;
        let now = self.last_now;
        let since_epoch = now.saturating_duration_since(self.epoch);
        let (routers, mut shared) = self.split();
        let router = routers.get_mut(rk).ok_or(CoreError::ConferenceNotFound)?;
        let ek = router.find(endpoint).ok_or(CoreError::EndpointNotFound)?;
        // Control commands send nothing: PLIs for re-mapped slots go out from
        // the router's keyframe timer, on the driver's next turn.
        let mut tx = TxQueue::with_capacity(0);
        let mut io = shared.io(now, since_epoch, &mut tx);
        let result = f(router, ek, &mut io);
        let activity_changed = io.activity_changed;
        self.after_router_call(rk, Some(ek), activity_changed);
        result
    }

    /// Changes the policy of a joined endpoint, at once; unknown endpoints are
    /// ignored (a joining endpoint gets its policy with `handle_join_with_policy`).
    pub fn set_policy(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        policy: EndpointPolicy,
    ) {
        let _ = self.with_endpoint(conference, endpoint, |router, ek, io| {
            router.set_policy(ek, policy, io);
            Ok(())
        });
    }

    /// Mutes or unmutes an endpoint's producers. Muted producers keep their slots
    /// (so unmuting resumes at once, from the next keyframe) but nothing is
    /// forwarded.
    pub fn handle_mute(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        mute: MuteRequest,
    ) -> Result<(), MediaError> {
        self.mute(conference, endpoint, mute).map_err(Into::into)
    }

    /// Applies a receiver's `ReceiverVideoConstraints` (the fields it carried)
    /// and re-allocates its video; see `Router::set_receiver_constraints`.
    pub fn set_receiver_constraints(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        update: &ReceiverConstraintsUpdate,
    ) -> Result<(), CoreError> {
        self.with_endpoint(conference, endpoint, |router, ek, io| {
            router.set_receiver_constraints(ek, update, io);
            Ok(())
        })
    }

    /// Sets the tallest video an endpoint wants of every source (`u16::MAX`:
    /// no limit): a `ReceiverVideoConstraints` with `defaultConstraints` alone.
    pub fn set_max_height(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        max_height: u16,
    ) -> Result<(), CoreError> {
        let update = ReceiverConstraintsUpdate {
            default_max_height: Some(max_height),
            ..Default::default()
        };
        self.set_receiver_constraints(conference, endpoint, &update)
    }

    /// Sets the highest temporal layer an endpoint's video slots forward
    /// (`None`: all); see `Router::set_temporal_target`.
    pub fn set_temporal_target(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        target: Option<u8>,
    ) -> Result<(), CoreError> {
        self.with_endpoint(conference, endpoint, |router, ek, _| {
            router.set_temporal_target(ek, target);
            Ok(())
        })
    }

    /// [`ShardCore::handle_mute`] with the core's own error type.
    pub fn mute(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        mute: MuteRequest,
    ) -> Result<(), CoreError> {
        self.with_endpoint(conference, endpoint, |router, ek, io| {
            router.mute(ek, mute, io);
            Ok(())
        })
    }

    /// Stops forwarding the producer named `source` of an endpoint, for `reason`:
    /// its slots are freed (and refilled) and a
    /// [`MediaEvent::ForwardingRefused`] is queued.
    pub fn handle_refuse_source(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        source: &str,
        reason: RefusalReason,
    ) -> Result<(), MediaError> {
        self.refuse_source(conference, endpoint, source, reason)
            .map_err(Into::into)
    }

    /// [`ShardCore::handle_refuse_source`] with the core's own error type.
    pub fn refuse_source(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        source: &str,
        reason: RefusalReason,
    ) -> Result<(), CoreError> {
        self.with_endpoint(conference, endpoint, |router, ek, io| {
            router.refuse_source(ek, source, reason, io)
        })
    }

    /// Removes an endpoint at the control plane's request; its port is released.
    pub fn handle_leave(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
    ) -> Result<(), MediaError> {
        self.leave(conference, endpoint).map_err(Into::into)
    }

    /// [`ShardCore::handle_leave`] with the core's own error type.
    pub fn leave(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
    ) -> Result<(), CoreError> {
        self.with_endpoint(conference, endpoint, |router, ek, io| {
            router.leave(ek, io);
            Ok(())
        })
    }

    /// Next event for the control plane.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// Next local port whose endpoint is gone (the driver closes its socket).
    pub fn poll_released_port(&mut self) -> Option<u16> {
        self.released_ports.pop()
    }

    /// When [`ShardCore::handle_timeout`] should next be called: the earliest
    /// deadline of any router or transport (a peek at the heap; an entry that
    /// went stale costs one early wake-up at most).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek()
    }

    /// Handles one datagram received on local `port` from `from`, as arrived
    /// `now` (see [`handle_receive_at`](Self::handle_receive_at)).
    ///
    /// `datagram` is exactly the received bytes; it is decrypted in place.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        port: u16,
        from: SocketAddr,
        datagram: &mut [u8],
        tx: &mut TxQueue,
    ) {
        self.handle_receive_at(now, now, port, from, datagram, tx);
    }

    /// Handles one datagram received on local `port` from `from` at `arrival`
    /// (the kernel's receive timestamp, no later than `now`; the driver reads
    /// datagrams in batches, handled at the batch's `now`). Only the
    /// bandwidth estimation's arrival records use `arrival`: transport-cc
    /// feedback and the receive-side estimate report the spacing of packets
    /// as they reached the host, not as the shard got round to them.
    ///
    /// `datagram` is exactly the received bytes; it is decrypted in place.
    pub fn handle_receive_at(
        &mut self,
        now: Instant,
        arrival: Instant,
        port: u16,
        from: SocketAddr,
        datagram: &mut [u8],
        tx: &mut TxQueue,
    ) {
        self.counters.packets_received += 1;
        self.counters.bytes_received += datagram.len() as u64;
        if now > self.last_now {
            self.last_now = now;
        }
        // What no endpoint could want is dropped before its port is looked up;
        // nothing from an address that passed no ICE check gets further than
        // STUN's integrity check (see `Transport::gate`).
        if datagram.len() > MAX_DATAGRAM {
            self.counters.dropped_oversized += 1;
            return;
        }
        if !matches!(datagram.first(), Some(0..=3 | 20..=63 | 128..=191)) {
            self.counters.dropped_garbage += 1;
            return;
        }
        let Some(&(rk, ek)) = self.by_port.get(&port) else {
            self.counters.dropped_unknown_port += 1;
            return;
        };
        let since_epoch = now.saturating_duration_since(self.epoch);
        let (routers, mut shared) = self.split();
        let Some(router) = routers.get_mut(rk) else {
            shared.counters.dropped_unknown_port += 1;
            return;
        };
        let mut io = shared.io(now, since_epoch, tx);
        io.arrival = arrival.min(now);
        match datagram.first() {
            Some(0..=3) => router.handle_stun(ek, from, datagram, &mut io),
            Some(20..=63) => router.handle_dtls(ek, from, datagram, &mut io),
            Some(128..=191) => {
                let is_rtcp = datagram.get(1).is_some_and(|b| (192..=223).contains(b));
                if is_rtcp {
                    router.handle_rtcp(ek, from, datagram, &mut io);
                } else {
                    router.handle_rtp(ek, from, datagram, &mut io);
                }
            }
            _ => io.counters.dropped_garbage += 1,
        }
        let activity_changed = io.activity_changed;
        self.after_router_call(rk, Some(ek), activity_changed);
    }

    /// Handles one datagram that arrived on the shared port (single-port
    /// mode) from `from`: an address an ICE check validated goes to its
    /// endpoint; a STUN request goes to the endpoint whose local ufrag its
    /// USERNAME names, when that endpoint lives here. What passes a check is
    /// remembered and reported ([`ShardCore::poll_remote_change`]).
    ///
    /// `handed_off` is set for a datagram another shard passed on: it is never
    /// passed on again.
    pub fn handle_shared_receive(
        &mut self,
        now: Instant,
        arrival: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
        tx: &mut TxQueue,
        handed_off: bool,
    ) -> SharedReceive {
        if let Some(&key) = self.shared_port.by_remote.get(&from) {
            self.handle_receive_at(now, arrival, key, from, datagram, tx);
            return SharedReceive::Handled;
        }
        if !matches!(datagram.first(), Some(0..=3)) {
            return SharedReceive::UnknownSource;
        }
        let (owner, key) = {
            let Ok(msg) = super::stun::Message::parse(datagram) else {
                self.count_dropped(datagram.len(), |c| &mut c.dropped_malformed);
                return SharedReceive::Handled;
            };
            let username = msg.username().unwrap_or_default();
            let key = local_ufrag_of(username)
                .and_then(|u| self.shared_port.by_ufrag.get(u))
                .copied();
            (super::ice::shard_of_username(username), key)
        };
        if let Some(owner) = owner
            && owner != self.cfg.index
            && !handed_off
        {
            return SharedReceive::OtherShard(owner);
        }
        let Some(key) = key else {
            self.count_dropped(datagram.len(), |c| &mut c.stun_refused);
            return SharedReceive::Handled;
        };
        self.handle_receive_at(now, arrival, key, from, datagram, tx);
        let validated = self
            .endpoint_by_port(key)
            .is_some_and(|t| t.is_validated(from));
        if validated && self.shared_port.by_remote.insert(from, key) != Some(key) {
            self.shared_port
                .changes
                .push_back(RemoteChange::Validated(from));
        }
        SharedReceive::Handled
    }

    /// Counts a datagram from the shared port that no endpoint anywhere owns.
    pub fn drop_unknown_source(&mut self, len: usize) {
        self.count_dropped(len, |c| &mut c.dropped_unknown_source);
    }

    fn count_dropped(&mut self, len: usize, which: impl FnOnce(&mut ShardCounters) -> &mut u64) {
        self.counters.packets_received += 1;
        self.counters.bytes_received += len as u64;
        *which(&mut self.counters) += 1;
    }

    /// Next change to the validated remote addresses (single-port mode): the
    /// driver steers them to this shard.
    pub fn poll_remote_change(&mut self) -> Option<RemoteChange> {
        self.shared_port.changes.pop_front()
    }

    /// Runs every router and transport timer that is due.
    ///
    /// Returns once `tx` holds [`TIMER_BATCH_DATAGRAMS`] datagrams (after at
    /// least one timer ran); timers still due then stay due
    /// ([`ShardCore::poll_timeout`] is at or before `now`).
    pub fn handle_timeout(&mut self, now: Instant, tx: &mut TxQueue) {
        if now > self.last_now {
            self.last_now = now;
        }
        let since_epoch = now.saturating_duration_since(self.epoch);
        // Bounded: an object rescheduled for a time already due runs again on
        // the next call, not in a loop here.
        let mut budget = self.timers.len();
        while budget > 0 {
            budget -= 1;
            let Some((at, owner)) = self.timers.pop_due(now) else {
                break;
            };
            let (rk, ek) = match owner {
                TimerOwner::Router(rk) => (rk, None),
                TimerOwner::Transport(rk, ek) => (rk, Some(ek)),
            };
            let (routers, mut shared) = self.split();
            let Some(router) = routers.get_mut(rk) else {
                continue; // stale: the conference is gone
            };
            let live = match ek {
                None => router.scheduled.fire(at),
                Some(ek) => router.transport_scheduled(ek).is_some_and(|s| s.fire(at)),
            };
            if !live {
                continue; // stale: rescheduled since, or the endpoint is gone
            }
            let mut io = shared.io(now, since_epoch, tx);
            match ek {
                None => router.handle_timeout(&mut io),
                Some(ek) => router.handle_transport_timeout(ek, &mut io),
            }
            let activity_changed = io.activity_changed;
            self.after_router_call(rk, ek, activity_changed);
            if tx.len() >= self.timer_batch {
                break; // the rest stay due: the next call, after a flush
            }
        }
        self.drop_stale_top();
    }

    /// Who sends what, as of the last change (kept current as packets open
    /// sending windows and router timers close them).
    pub fn activity(&self) -> Activity {
        self.activity
    }

    /// Bookkeeping after any router call: removed endpoints lose their port,
    /// an empty router goes, deadlines that moved earlier get a heap entry, and
    /// the shard's activity is recounted if a router's changed.
    fn after_router_call(
        &mut self,
        rk: RouterKey,
        ek: Option<EndpointKey>,
        activity_changed: bool,
    ) {
        for port in &self.released_ports {
            let gone = self.by_port.get(port).is_some_and(|&(r, e)| {
                self.routers
                    .get(r)
                    .is_none_or(|router| router.endpoint(e).is_none())
            });
            if gone {
                self.by_port.remove(port);
                self.shared_port.forget(*port);
            }
        }
        let Some(router) = self.routers.get_mut(rk) else {
            return;
        };
        if router.is_empty() {
            self.by_conference.remove(router.id());
            self.routers.remove(rk);
            if self.routers.is_empty() {
                self.timers.clear();
            }
            self.recount_activity();
            return;
        }
        let next = router.poll_timeout();
        if let Some(at) = router.scheduled.update(next) {
            self.timers.push(at, TimerOwner::Router(rk));
        }
        if let Some(ek) = ek {
            let next = router.transport_timeout(ek);
            if let Some(at) = router.transport_scheduled(ek).and_then(|s| s.update(next)) {
                self.timers.push(at, TimerOwner::Transport(rk, ek));
            }
        }
        if activity_changed {
            self.recount_activity();
        }
    }

    /// Pops stale entries off the top of the heap, so that
    /// [`ShardCore::poll_timeout`] names a live deadline after a turn.
    fn drop_stale_top(&mut self) {
        while let Some((at, owner)) = self.timers.peek_entry() {
            let live = match owner {
                TimerOwner::Router(rk) => self
                    .routers
                    .get(rk)
                    .is_some_and(|r| r.scheduled.0 == Some(at)),
                TimerOwner::Transport(rk, ek) => self.routers.get(rk).is_some_and(|r| {
                    r.endpoint(ek)
                        .is_some_and(|e| e.transport().scheduled.0 == Some(at))
                }),
            };
            if live {
                return;
            }
            self.timers.pop();
        }
    }

    /// Sums the routers' activity (on changes only, not per packet).
    fn recount_activity(&mut self) {
        let mut activity = Activity::default();
        for router in self.routers.values() {
            let a = router.activity();
            activity.audio += a.audio;
            activity.video += a.video;
            if a.sending == 0 {
                activity.inactive_conferences += 1;
                activity.inactive_endpoints += router.len() as u64;
            }
        }
        self.activity = activity;
    }
}

impl<'a> Shared<'a> {
    fn io<'b>(
        &'b mut self,
        now: Instant,
        since_epoch: Duration,
        tx: &'b mut TxQueue,
    ) -> RouterIo<'b> {
        RouterIo {
            now,
            arrival: now,
            since_epoch,
            tx,
            events: &mut *self.events,
            counters: &mut *self.counters,
            released: &mut *self.released,
            scratch: &mut *self.scratch,
            activity_changed: false,
        }
    }
}
