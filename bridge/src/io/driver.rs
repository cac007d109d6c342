//! The one shard loop, over any backend that implements [`Io`].
//!
//! Each turn: compute the core's next deadline once, wait for I/O, a command
//! or that deadline, hand every received datagram to the core, apply queued
//! commands, run the core's timers if due, send what the core queued, close
//! released ports, pass on the core's events, publish stats (the heartbeat).
//! The backends (`uring`, `mmsg`) differ only in how they wait, receive and
//! send; port binding, the core calls and their order live here once. The
//! shard's ICE-TCP connections ([`TcpConns`]) are read here too, after the
//! UDP datagrams; the backends divert what the core sends to them
//! ([`TcpConns::take`]) when they plan their sends.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use ringbridge_control::media::MediaError;

use super::events::EventOutbox;
use super::send::{RETRY_AFTER, SendTotals};
use super::shard::{AfterCommand, PortBinder, ShardContext, handle_command};
use super::tcp_conns::{TcpConns, TcpHandoff};
use super::udp;
use crate::proto::shard::ShardCore;
use crate::proto::transmit::TxQueue;

/// Longest sleep when no timer is due (keeps stats and the heartbeat fresh).
pub const MAX_SLEEP: Duration = Duration::from_millis(200);

/// What a backend does: sockets in, datagrams in and out. Everything else is
/// the loop's ([`run`]).
pub trait Io {
    /// Starts receiving on `socket`, freshly bound to local `port`.
    fn open(&mut self, port: u16, socket: UdpSocket) -> io::Result<()>;

    /// Stops receiving on `port` and closes its socket (at once, or when the
    /// kernel is done with it); its send backlog is dropped.
    fn close(&mut self, port: u16);

    /// Whether `port` still has a socket (open or closing): not free to bind.
    fn holds(&self, port: u16) -> bool;

    /// Also wakes [`Io::wait`] when `fd` turns readable (the shard's ICE-TCP
    /// epoll instance); called once, before the loop.
    fn watch(&mut self, fd: RawFd) -> io::Result<()>;

    /// Sleeps until a datagram arrives, the shard's waker fires or `timeout`
    /// passes (at once if completions are already waiting).
    fn wait(&mut self, timeout: Duration) -> io::Result<()>;

    /// Hands every datagram that arrived to `deliver` with the queue to write
    /// replies into; sends mid-batch when that queue fills up (datagrams for
    /// `tcp`'s connections go there).
    fn receive<F>(&mut self, now: Instant, tcp: &mut TcpConns, deliver: F) -> io::Result<()>
    where
        F: FnMut(u16, SocketAddr, &mut [u8], &mut TxQueue);

    /// The queue the core writes into outside [`Io::receive`] (timers).
    fn tx(&mut self) -> &mut TxQueue;

    /// Sends everything queued, after any socket's backlog: datagrams for
    /// `tcp`'s connections are framed onto them, the rest goes out over UDP.
    fn flush(&mut self, now: Instant, tcp: &mut TcpConns) -> io::Result<()>;

    /// Whether datagrams wait for socket buffer space (the loop then wakes
    /// within [`RETRY_AFTER`]).
    fn backlogged(&self) -> bool;

    /// Datagrams held back, all sockets (a gauge).
    fn backlog_len(&self) -> usize;

    /// What was sent and what failed.
    fn totals(&self) -> &SendTotals;

    /// Whether sends use UDP GSO now.
    fn gso(&self) -> bool;
}

/// The shard's slice of the port range, bound round-robin so that a port just
/// released is the last to be reused.
#[derive(Debug)]
pub struct Ports {
    range: (u16, u16),
    next: u16,
    bind: IpAddr,
}

impl Ports {
    /// Ports `range` (inclusive) on local address `bind`.
    pub fn new(range: (u16, u16), bind: IpAddr) -> Self {
        Self {
            range,
            next: range.0,
            bind,
        }
    }

    /// Binds a free port of the range and opens it on `io`.
    pub fn bind(&mut self, io: &mut impl Io) -> Result<u16, MediaError> {
        let (lo, hi) = self.range;
        let span = u32::from(hi.saturating_sub(lo)) + 1;
        for _ in 0..span {
            let port = self.next;
            self.next = if port >= hi { lo } else { port + 1 };
            if io.holds(port) {
                continue;
            }
            let Ok(socket) = udp::bind_udp(SocketAddr::new(self.bind, port)) else {
                continue;
            };
            if let Err(e) = io.open(port, socket) {
                tracing::warn!(port, error = %e, "cannot start receiving on a media port");
                continue;
            }
            return Ok(port);
        }
        Err(MediaError::Overloaded("no free media port".into()))
    }
}

/// [`PortBinder`] over the loop's ports, backend and ICE-TCP connections.
struct Binder<'a, I> {
    ports: &'a mut Ports,
    io: &'a mut I,
    tcp: &'a mut TcpConns,
}

impl<I: Io> PortBinder for Binder<'_, I> {
    fn bind(&mut self) -> Result<u16, MediaError> {
        self.ports.bind(self.io)
    }

    fn release(&mut self, port: u16) {
        self.io.close(port);
        self.tcp.release_port(port);
    }

    fn adopt_tcp(&mut self, core: &ShardCore, now: Instant, handoff: TcpHandoff) {
        self.tcp
            .adopt(now, handoff, |username| core.port_of_username(username));
    }
}

/// Runs the shard on `io` until a `Shutdown` command, the command queue
/// closing, or an I/O error the backend cannot go on after.
pub fn run<I: Io>(ctx: ShardContext, mut io: I) {
    let ShardContext {
        spec,
        commands,
        events,
        stats,
    } = ctx;
    // The spec's index is the one placement and ICE-TCP hand-off use.
    let mut core_config = spec.core_config.clone();
    core_config.index = spec.index;
    let mut core = ShardCore::new(core_config, Instant::now());
    let mut ports = Ports::new(spec.ports, spec.bind);
    let mut outbox = EventOutbox::new(events);
    let tcp = TcpConns::new(Instant::now()).and_then(|tcp| {
        io.watch(tcp.fd())?;
        Ok(tcp)
    });
    let mut tcp = match tcp {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::error!(shard = spec.index, error = %e, "cannot poll ICE-TCP connections; shard stops");
            return;
        }
    };
    loop {
        // Once per turn. A deadline the turn's own work moves earlier (a join,
        // a handshake) is seen next turn, which sleeps until it.
        let deadline = core.poll_timeout();
        let mut sleep = deadline
            .map_or(MAX_SLEEP, |t| t.saturating_duration_since(Instant::now()))
            .min(MAX_SLEEP);
        if io.backlogged() || outbox.pending() {
            sleep = sleep.min(RETRY_AFTER);
        }
        if tcp.has_work() {
            sleep = Duration::ZERO;
        }
        if let Err(e) = io.wait(sleep) {
            tracing::error!(shard = spec.index, error = %e, "waiting for I/O failed; shard stops");
            return;
        }
        let now = Instant::now();
        let received = io.receive(now, &mut tcp, |port, from, datagram, tx| {
            core.handle_receive(now, port, from, datagram, tx);
        });
        if let Err(e) = received {
            tracing::error!(shard = spec.index, error = %e, "receiving failed; shard stops");
            return;
        }
        // ICE-TCP datagrams, to the same core as if they came over UDP.
        tcp.receive(now, io.tx(), |port, from, datagram, tx| {
            core.handle_receive(now, port, from, datagram, tx);
        });
        loop {
            let cmd = match commands.try_recv() {
                Ok(cmd) => cmd,
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    tracing::info!(shard = spec.index, "control plane gone; shard stopping");
                    return;
                }
            };
            let mut binder = Binder {
                ports: &mut ports,
                io: &mut io,
                tcp: &mut tcp,
            };
            if handle_command(&mut core, now, cmd, &mut binder) == AfterCommand::Stop {
                tracing::info!(shard = spec.index, "shard stopping");
                return;
            }
        }
        if deadline.is_some_and(|t| now >= t) {
            core.handle_timeout(now, io.tx());
        }
        if let Err(e) = io.flush(now, &mut tcp) {
            tracing::error!(shard = spec.index, error = %e, "sending failed; shard stops");
            return;
        }
        while let Some(port) = core.poll_released_port() {
            io.close(port);
            tcp.release_port(port);
        }
        outbox.retry();
        while let Some(ev) = core.poll_event() {
            outbox.send(now, ev);
        }
        stats.publish(&core, &io, &tcp.stats(), &outbox);
    }
}
