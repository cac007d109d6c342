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

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use ringbridge_control::media::MediaError;

use super::events::EventOutbox;
use super::send::{RETRY_AFTER, SendTotals};
use super::shard::{AfterCommand, PortBinder, ShardContext, handle_command};
use super::single_port::SinglePort;
use super::tcp_conns::{TcpConns, TcpHandoff};
use super::udp;
use crate::proto::shard::{RemoteChange, ShardCore, SharedReceive};
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

    /// Hands every datagram that arrived to `deliver` (local port, source,
    /// arrival time, bytes) with the queue to write replies into; sends
    /// mid-batch when that queue fills up (datagrams for `tcp`'s connections
    /// go there). The arrival is the kernel's receive timestamp where the
    /// backend has one ([`rx_time`](super::rx_time)), never after `now`, else
    /// `now`.
    fn receive<F>(&mut self, now: Instant, tcp: &mut TcpConns, deliver: F) -> io::Result<()>
    where
        F: FnMut(u16, SocketAddr, Instant, &mut [u8], &mut TxQueue);

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

    /// The AF_XDP path's own counters (`None` for the socket backends).
    fn xdp_counters(&self) -> Option<super::xdp::XdpCounters> {
        None
    }
}

/// The shard's slice of the port range, bound round-robin so that a port just
/// released is the last to be reused; or, in single-port mode, endpoint keys
/// handed out the same way with no socket behind them.
#[derive(Debug)]
pub struct Ports {
    range: (u16, u16),
    next: u16,
    bind: IpAddr,
    /// Single-port mode: the keys in use (there is one socket, not one each).
    keys: Option<HashSet<u16>>,
    /// Per-endpoint mode: ports bound and not yet released.
    bound: usize,
}

impl Ports {
    /// Ports `range` (inclusive) on local address `bind`.
    pub fn new(range: (u16, u16), bind: IpAddr) -> Self {
        Self {
            range,
            next: range.0,
            bind,
            keys: None,
            bound: 0,
        }
    }

    /// Endpoint keys for single-port mode: any `u16` but 0, one per endpoint.
    pub fn keys() -> Self {
        Self {
            range: (1, u16::MAX),
            next: 1,
            bind: IpAddr::from([0, 0, 0, 0]),
            keys: Some(HashSet::new()),
            bound: 0,
        }
    }

    /// Ports (single-port mode: endpoint keys) given out and not released.
    pub fn in_use(&self) -> usize {
        self.keys.as_ref().map_or(self.bound, HashSet::len)
    }

    /// Ports (keys) that could still be given out. A port of the range that
    /// another process holds counts as free here: the bridge cannot know
    /// until it tries to bind it.
    pub fn free(&self) -> usize {
        let span = usize::from(self.range.1.saturating_sub(self.range.0)) + 1;
        span.saturating_sub(self.in_use())
    }

    /// Gives back `port` (an endpoint left); in per-endpoint mode its socket
    /// is closed on `io`.
    pub fn release(&mut self, port: u16, io: &mut impl Io) {
        match &mut self.keys {
            Some(keys) => {
                keys.remove(&port);
            }
            None => {
                if io.holds(port) {
                    self.bound = self.bound.saturating_sub(1);
                }
                io.close(port);
            }
        }
    }

    /// Binds a free port of the range and opens it on `io` (single-port mode:
    /// takes a free key).
    pub fn bind(&mut self, io: &mut impl Io) -> Result<u16, MediaError> {
        if let Some(keys) = &mut self.keys {
            for _ in 0..u16::MAX {
                let key = self.next;
                self.next = self.next.checked_add(1).unwrap_or(1);
                if keys.insert(key) {
                    return Ok(key);
                }
            }
            return Err(MediaError::Overloaded("no free endpoint key".into()));
        }
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
            self.bound += 1;
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
        self.ports.release(port, self.io);
        self.tcp.release_port(port);
    }

    fn adopt_tcp(&mut self, core: &ShardCore, now: Instant, handoff: TcpHandoff) {
        self.tcp.adopt(now, handoff, |username| {
            let key = core.port_of_username(username)?;
            Some((key, core.endpoint_by_port(key)?.send_port()))
        });
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
    let me = spec.index;
    let shared = spec.single_port.clone();
    // The core's view follows the spec: its index, and the shared port if any.
    let mut core_config = spec.core_config.clone();
    core_config.index = me;
    core_config.single_port = shared.as_ref().map(|sp| sp.port());
    let mut core = ShardCore::new(core_config, Instant::now());
    let mut outbox = EventOutbox::new(events);
    let mut handoffs = HandOffCounts {
        me,
        ..HandOffCounts::default()
    };
    let mut ports = match &shared {
        None => Ports::new(spec.ports, spec.bind),
        Some(sp) => {
            let opened = sp
                .take_socket(me)
                .ok_or_else(|| io::Error::other("no socket for this shard"))
                .and_then(|socket| io.open(sp.port(), socket));
            if let Err(e) = opened {
                tracing::error!(shard = me, error = %e, "cannot receive on the shared media port; shard stops");
                return;
            }
            Ports::keys()
        }
    };
    // Before the first turn, so a scrape right after the start sees the range.
    stats.publish_ports(ports.in_use() as u64, ports.free() as u64);
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
        let received = match &shared {
            None => io.receive(now, &mut tcp, |port, from, arrival, datagram, tx| {
                core.handle_receive_at(now, arrival, port, from, datagram, tx);
            }),
            Some(sp) => io.receive(now, &mut tcp, |_, from, arrival, datagram, tx| {
                let at = (now, arrival);
                shared_receive(&mut core, sp, &mut handoffs, at, from, datagram, tx);
            }),
        };
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
            // Timers start on an empty queue, so the at most
            // TIMER_BATCH_DATAGRAMS they write before returning fit in it
            // (it never grows); timers left due run on the next turn.
            if !io.tx().is_empty()
                && let Err(e) = io.flush(now, &mut tcp)
            {
                tracing::error!(shard = spec.index, error = %e, "sending failed; shard stops");
                return;
            }
            core.handle_timeout(now, io.tx());
        }
        if let Some(sp) = &shared
            && let Err(e) = receive_handed(&mut core, sp, me, now, &mut io, &mut tcp)
        {
            tracing::error!(shard = spec.index, error = %e, "sending failed; shard stops");
            return;
        }
        if let Err(e) = io.flush(now, &mut tcp) {
            tracing::error!(shard = spec.index, error = %e, "sending failed; shard stops");
            return;
        }
        while let Some(port) = core.poll_released_port() {
            ports.release(port, &mut io);
            tcp.release_port(port);
        }
        if let Some(sp) = &shared {
            apply_remote_changes(&mut core, sp, me);
        }
        outbox.retry();
        while let Some(ev) = core.poll_event() {
            outbox.send(now, ev);
        }
        stats.publish(&core, &io, &tcp.stats(), &outbox);
        stats.publish_ports(ports.in_use() as u64, ports.free() as u64);
        if shared.is_some() {
            stats.publish_handoffs(handoffs.sent, handoffs.dropped);
        }
    }
}

/// Datagrams handed over from other shards handled per turn at most (the
/// queue's capacity: more arrive with a later wake-up).
const HANDED_PER_TURN: usize = super::single_port::HANDOFF_QUEUE;

/// Sends what the core queued every this many handed-over datagrams.
const HANDED_FLUSH_EVERY: usize = 32;

/// This shard in single-port mode: its index, and the datagrams it passed to
/// others.
#[derive(Debug, Default)]
struct HandOffCounts {
    me: usize,
    sent: u64,
    dropped: u64,
}

/// One datagram from the shared port (single-port mode): handled here, or
/// passed to the shard that owns its endpoint, or dropped and counted.
fn shared_receive(
    core: &mut ShardCore,
    sp: &SinglePort,
    counts: &mut HandOffCounts,
    (now, arrival): (Instant, Instant),
    from: SocketAddr,
    datagram: &mut [u8],
    tx: &mut TxQueue,
) {
    let owner = match core.handle_shared_receive(now, arrival, from, datagram, tx, false) {
        SharedReceive::Handled => {
            // At once: the reply to this check may be sent (and the client's
            // next datagram arrive) before the turn ends.
            apply_remote_changes(core, sp, counts.me);
            return;
        }
        SharedReceive::OtherShard(owner) => Some(owner),
        SharedReceive::UnknownSource => sp.owner_of(from).filter(|&o| o != counts.me),
    };
    match owner {
        Some(owner) => {
            if sp.hand_off(owner, from, datagram).is_ok() {
                counts.sent += 1;
            } else {
                counts.dropped += 1;
                core.drop_unknown_source(datagram.len());
            }
        }
        None => core.drop_unknown_source(datagram.len()),
    }
}

/// Handles what other shards passed to this one (never passed on again).
fn receive_handed<I: Io>(
    core: &mut ShardCore,
    sp: &SinglePort,
    me: usize,
    now: Instant,
    io: &mut I,
    tcp: &mut TcpConns,
) -> io::Result<()> {
    for k in 0..HANDED_PER_TURN {
        let Some(mut h) = sp.take_handed(me) else {
            break;
        };
        let from = h.from;
        let datagram = h.datagram();
        let len = datagram.len();
        // Queued by another shard: the kernel's stamp stayed there.
        if core.handle_shared_receive(now, now, from, datagram, io.tx(), true)
            != SharedReceive::Handled
        {
            core.drop_unknown_source(len);
        }
        apply_remote_changes(core, sp, me);
        if k % HANDED_FLUSH_EVERY == HANDED_FLUSH_EVERY - 1 {
            io.flush(now, tcp)?;
        }
    }
    Ok(())
}

/// Steers the addresses the core validated to this shard, and stops steering
/// those whose endpoint left.
fn apply_remote_changes(core: &mut ShardCore, sp: &SinglePort, me: usize) {
    while let Some(change) = core.poll_remote_change() {
        match change {
            RemoteChange::Validated(addr) => sp.steer(addr, me),
            RemoteChange::Gone(addr) => sp.unsteer(addr, me),
        }
    }
}
