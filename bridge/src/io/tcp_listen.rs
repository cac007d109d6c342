//! The ICE-TCP listener (`media.tcp_port`): accepts connections, reads each
//! one's first frame (RFC 4571), and hands the connection to the shard whose
//! index the frame's STUN USERNAME carries ("<local ufrag>:<remote ufrag>",
//! see [`shard_of_username`]), over that shard's command queue.
//!
//! One thread, off the shards' cores' hot path: it touches a connection only
//! until its first frame, which bounds what a client that connects and sends
//! nothing can hold ([`MAX_PENDING`], [`FIRST_FRAME_TIMEOUT`]).

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::shard::{ShardCommand, ShardHandle};
use super::tcp::{MAX_FRAME, PREFIX};
use super::tcp_conns::{TcpHandoff, first_username};
use crate::proto::ice::shard_of_username;

/// Connections waiting for their first frame at most; more are closed at once.
pub const MAX_PENDING: usize = 1024;

/// How long a new connection has to send its first frame.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

const LISTENER: Token = Token(usize::MAX);

/// The listener's counters, read by the control plane.
#[derive(Debug, Default)]
pub struct TcpListenerStats {
    accepted: AtomicU64,
    handed_off: AtomicU64,
    refused: AtomicU64,
}

impl TcpListenerStats {
    /// Connections accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections handed to a shard.
    pub fn handed_off(&self) -> u64 {
        self.handed_off.load(Ordering::Relaxed)
    }

    /// Connections closed before a hand-off: too many waiting, no first frame
    /// in time, a first frame that is not a check naming one of our shards, or
    /// that shard's queue full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// A running listener.
#[derive(Debug, Clone)]
pub struct TcpListenerHandle {
    /// The address it listens on (the port is the real one when 0 was asked).
    pub local_addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<TcpListenerStats>,
}

struct Pending {
    stream: TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
    deadline: Instant,
}

/// Binds `addr` and starts the listener thread for `shards`.
pub fn spawn_tcp_listener(
    addr: SocketAddr,
    shards: Vec<ShardHandle>,
) -> io::Result<TcpListenerHandle> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let poll = Poll::new()?;
    poll.registry().register(
        &mut SourceFd(&listener.as_raw_fd()),
        LISTENER,
        Interest::READABLE,
    )?;
    let stats = Arc::new(TcpListenerStats::default());
    let thread_stats = stats.clone();
    std::thread::Builder::new()
        .name("ice-tcp".into())
        .spawn(move || run(poll, listener, shards, &thread_stats))?;
    tracing::info!(%local_addr, "ICE-TCP listener started");
    Ok(TcpListenerHandle { local_addr, stats })
}

fn run(mut poll: Poll, listener: TcpListener, shards: Vec<ShardHandle>, stats: &TcpListenerStats) {
    let mut events = Events::with_capacity(256);
    let mut pending: Vec<Option<Pending>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut waiting = 0usize;
    loop {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_secs(1)))
            && e.kind() != io::ErrorKind::Interrupted
        {
            tracing::error!(error = %e, "ICE-TCP listener cannot poll; it stops");
            return;
        }
        let now = Instant::now();
        for ev in events.iter() {
            if ev.token() == LISTENER {
                accept_all(
                    &listener,
                    &poll,
                    &mut pending,
                    &mut free,
                    &mut waiting,
                    stats,
                    now,
                );
                continue;
            }
            let idx = ev.token().0;
            let done = match pending.get_mut(idx).and_then(Option::as_mut) {
                Some(p) => read_first_frame(p),
                None => continue,
            };
            let Some(ok) = done else { continue };
            let Some(p) = pending.get_mut(idx).and_then(Option::take) else {
                continue;
            };
            free.push(idx);
            waiting -= 1;
            let _ = poll
                .registry()
                .deregister(&mut SourceFd(&p.stream.as_raw_fd()));
            if ok && hand_off(p, &shards) {
                stats.handed_off.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        for (idx, slot) in pending.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|p| now >= p.deadline)
                && let Some(p) = slot.take()
            {
                let _ = poll
                    .registry()
                    .deregister(&mut SourceFd(&p.stream.as_raw_fd()));
                free.push(idx);
                waiting -= 1;
                stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %p.peer, "ICE-TCP connection sent no check in time");
            }
        }
    }
}

fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    pending: &mut Vec<Option<Pending>>,
    free: &mut Vec<usize>,
    waiting: &mut usize,
    stats: &TcpListenerStats,
    now: Instant,
) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and the like: the connection stays in the backlog.
                tracing::warn!(error = %e, "ICE-TCP accept failed");
                return;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        if *waiting >= MAX_PENDING || stream.set_nonblocking(true).is_err() {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let idx = free.pop().unwrap_or(pending.len());
        let registered = poll.registry().register(
            &mut SourceFd(&stream.as_raw_fd()),
            Token(idx),
            Interest::READABLE,
        );
        if registered.is_err() {
            free.push(idx);
            stats.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let p = Pending {
            stream,
            peer,
            buf: Vec::with_capacity(PREFIX + MAX_FRAME),
            deadline: now + FIRST_FRAME_TIMEOUT,
        };
        if idx == pending.len() {
            pending.push(Some(p));
        } else if let Some(slot) = pending.get_mut(idx) {
            *slot = Some(p);
        }
        *waiting += 1;
    }
}

/// Reads what the first frame still lacks (never beyond it): `Some(true)`
/// once it is complete, `Some(false)` when the connection is to be dropped
/// (closed, failed, or announcing an oversized frame), `None` to wait.
fn read_first_frame(p: &mut Pending) -> Option<bool> {
    loop {
        let need = match p.buf.get(..PREFIX) {
            Some(&[hi, lo]) => {
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                if len > MAX_FRAME || len == 0 {
                    return Some(false);
                }
                PREFIX + len
            }
            _ => PREFIX,
        };
        if p.buf.len() >= need {
            if need > PREFIX {
                return Some(true);
            }
            continue;
        }
        let have = p.buf.len();
        p.buf.resize(need, 0);
        match p.stream.read(&mut p.buf[have..need]) {
            Ok(0) => return Some(false),
            Ok(n) => p.buf.truncate(have + n),
            Err(e) => {
                p.buf.truncate(have);
                match e.kind() {
                    io::ErrorKind::WouldBlock => return None,
                    io::ErrorKind::Interrupted => {}
                    _ => return Some(false),
                }
            }
        }
    }
}

/// Sends `p` to the shard its first check names; `false` when there is none
/// or its queue is full (the connection is closed).
fn hand_off(p: Pending, shards: &[ShardHandle]) -> bool {
    let Some(index) = first_username(&p.buf).and_then(shard_of_username) else {
        tracing::debug!(peer = %p.peer, "ICE-TCP first frame is not a check for this bridge");
        return false;
    };
    let Some(shard) = shards.iter().find(|s| s.index == index) else {
        tracing::debug!(peer = %p.peer, index, "ICE-TCP check names no shard here");
        return false;
    };
    let handoff = TcpHandoff {
        stream: p.stream,
        peer: p.peer,
        read: p.buf,
    };
    match shard.send(ShardCommand::AdoptTcp(handoff)) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(index, error = %e, "ICE-TCP hand-off refused");
            false
        }
    }
}
