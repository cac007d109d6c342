//! The shard thread's handle: commands in over a bounded queue, stats out.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Sender, TrySendError};
use ringbridge_control::media::{
    ConferenceId, EndpointId, EventSender, JoinAnswer, JoinRequest, MediaError,
};
use tokio::sync::oneshot;

use crate::proto::shard::ShardConfig;

/// Capacity of each shard's command queue; a full queue is refused with 503.
pub const COMMAND_QUEUE: usize = 256;

/// A control command for one shard.
#[derive(Debug)]
pub enum ShardCommand {
    /// Add an endpoint (see `ShardCore::handle_join`).
    Join {
        /// The request.
        req: JoinRequest,
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
    /// Stop the thread.
    Shutdown,
}

/// Counters a shard publishes for the control plane (written by the shard thread
/// only, with relaxed stores once per loop iteration).
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Datagrams received.
    pub packets_received: AtomicU64,
    /// Bytes received.
    pub bytes_received: AtomicU64,
    /// Datagrams sent.
    pub packets_sent: AtomicU64,
    /// Bytes sent.
    pub bytes_sent: AtomicU64,
    /// Live endpoints.
    pub endpoints: AtomicU64,
    /// Live conferences.
    pub conferences: AtomicU64,
    /// Endpoints of the largest conference.
    pub largest_conference: AtomicU64,
}

/// The control plane's side of a shard.
#[derive(Debug, Clone)]
pub struct ShardHandle {
    /// Index of the shard.
    pub index: usize,
    /// The core it is pinned to, if any.
    pub core: Option<usize>,
    commands: Sender<ShardCommand>,
    waker: Arc<mio::Waker>,
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
        self.stats.endpoints.load(Ordering::Relaxed)
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

/// Starts a shard thread and returns its handle.
pub fn spawn_shard(spec: ShardSpec, events: EventSender) -> std::io::Result<ShardHandle> {
    let (tx, rx) = crossbeam_channel::bounded(COMMAND_QUEUE);
    let poll = mio::Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), super::poll_loop::WAKER)?);
    let stats = Arc::new(ShardStats::default());
    let handle = ShardHandle {
        index: spec.index,
        core: spec.core,
        commands: tx,
        waker,
        stats: stats.clone(),
    };
    std::thread::Builder::new()
        .name(format!("shard-{}", spec.index))
        .spawn(move || {
            if let Some(core) = spec.core {
                let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: core });
                tracing::info!(shard = spec.index, core, pinned, "shard started");
            } else {
                tracing::info!(shard = spec.index, "shard started (not pinned)");
            }
            super::poll_loop::run(spec, poll, rx, events, stats);
        })?;
    Ok(handle)
}
