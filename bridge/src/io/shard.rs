//! The shard thread's handle: commands in over a bounded queue, stats out.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ringbridge_control::media::{
    ConferenceId, EndpointId, EndpointPolicy, EventSender, JoinAnswer, JoinRequest, MediaError,
    MuteRequest, RefusalReason, ShardSnapshot,
};
use tokio::sync::oneshot;

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
                let r = core.handle_join_with_policy(now, &req, port, policy);
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
            let _ = reply.send(core.handle_leave(&conference, &endpoint));
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
            let _ = reply.send(core.handle_mute(&conference, &endpoint, mute));
            AfterCommand::Continue
        }
        ShardCommand::RefuseSource {
            conference,
            endpoint,
            source,
            reason,
            reply,
        } => {
            let _ = reply.send(core.handle_refuse_source(&conference, &endpoint, &source, reason));
            AfterCommand::Continue
        }
        ShardCommand::Shutdown => AfterCommand::Stop,
    }
}

/// Counters a shard publishes for the control plane: written by the shard thread
/// only, with relaxed stores once per loop iteration; read by the control plane.
#[derive(Debug, Default)]
pub struct ShardStats {
    counters: [AtomicU64; COUNTERS],
    gso: AtomicBool,
    heartbeat: AtomicU64,
}

/// Number of published counters (see [`ShardStats::publish`]).
const COUNTERS: usize = 23;

impl ShardStats {
    /// Publishes the core's counters and the driver's send totals.
    pub fn publish(&self, core: &ShardCore, sent: &SendTotals) {
        let c = core.counters();
        let activity = core.activity();
        let values: [u64; COUNTERS] = [
            core.endpoint_count() as u64,
            core.conference_count() as u64,
            core.largest_conference() as u64,
            c.packets_received,
            c.bytes_received,
            sent.packets,
            sent.bytes,
            c.dropped_auth,
            c.dropped_replay,
            c.dropped_unknown_source,
            c.dropped_unknown_ssrc,
            c.dropped_malformed + c.dropped_unknown_port,
            c.stun_refused,
            c.ice_successes,
            c.ice_failures,
            c.dtls_successes,
            c.dtls_failures,
            sent.errors,
            c.rtp_forwarded,
            activity.audio,
            activity.video,
            activity.inactive_conferences,
            activity.inactive_endpoints,
        ];
        for (slot, v) in self.counters.iter().zip(values) {
            slot.store(v, Ordering::Relaxed);
        }
        self.heartbeat.fetch_add(1, Ordering::Relaxed);
    }

    /// Loop iterations published so far: a driver publishes at least every
    /// 200 ms, so a value that stops moving means a stuck shard thread.
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed)
    }

    /// Records whether the driver sends with UDP GSO (it may switch it off at run
    /// time after `EIO`/`EINVAL`).
    pub fn set_gso(&self, on: bool) {
        self.gso.store(on, Ordering::Relaxed);
    }

    /// Whether the driver sends with UDP GSO.
    pub fn gso(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    fn get(&self, i: usize) -> u64 {
        self.counters[i].load(Ordering::Relaxed)
    }

    /// Endpoints on the shard.
    pub fn endpoints(&self) -> u64 {
        self.get(0)
    }

    /// Endpoints of the shard's largest conference.
    pub fn largest_conference(&self) -> u64 {
        self.get(2)
    }

    /// A consistent-enough copy for the control plane.
    pub fn snapshot(&self, index: usize, core: Option<usize>) -> ShardSnapshot {
        ShardSnapshot {
            index,
            core,
            endpoints: self.get(0),
            conferences: self.get(1),
            packets_received: self.get(3),
            bytes_received: self.get(4),
            packets_sent: self.get(5),
            bytes_sent: self.get(6),
            dropped_auth: self.get(7),
            dropped_replay: self.get(8),
            dropped_unknown_source: self.get(9),
            dropped_unknown_ssrc: self.get(10),
            dropped_malformed: self.get(11),
            stun_refused: self.get(12),
            ice_successes: self.get(13),
            ice_failures: self.get(14),
            dtls_successes: self.get(15),
            dtls_failures: self.get(16),
            send_errors: self.get(17),
            endpoints_sending_audio: self.get(19),
            endpoints_sending_video: self.get(20),
            inactive_conferences: self.get(21),
            inactive_endpoints: self.get(22),
        }
    }
}

/// What a driver sent (it, not the core, knows what the kernel took).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendTotals {
    /// Datagrams sent.
    pub packets: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Datagrams the kernel refused.
    pub errors: u64,
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
}

impl Backend {
    /// Name as in `media.io` and `/colibri/stats` `io_backend`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "uring",
            Backend::Mmsg => "mmsg",
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
    /// Where media events go.
    pub events: EventSender,
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
    events: EventSender,
) -> std::io::Result<ShardHandle> {
    let (tx, rx) = crossbeam_channel::bounded(COMMAND_QUEUE);
    let prepared = match backend {
        Backend::Uring => super::uring::prepare(&spec)?,
        Backend::Mmsg => super::mmsg::prepare(&spec)?,
    };
    let stats = Arc::new(ShardStats::default());
    let handle = ShardHandle {
        index: spec.index,
        core: spec.core,
        backend: backend.name(),
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
                backend = backend.name(),
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
