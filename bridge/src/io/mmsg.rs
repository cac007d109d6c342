//! The recvmmsg/sendmmsg driver over epoll (`mio`): the fallback where io_uring
//! is unavailable, and the same sans-IO core.
//!
//! Each endpoint socket is registered edge-triggered. On readiness the loop
//! reads with `recvmmsg` in batches of [`RECV_BATCH`] into buffers allocated once,
//! until `EAGAIN`, hands every datagram to the core with one `now` per wake-up,
//! and then sends everything the core queued: a [`SendPlan`] groups it per
//! socket and destination, and one `sendmmsg` per socket sends it, each group of
//! equal-size datagrams as one GSO message when GSO is on. Datagrams the kernel
//! has no room for (`EAGAIN`) wait in a bounded backlog and are retried on the
//! next turn of the loop (at most [`RETRY_AFTER`] later), never in a busy loop.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use ringbridge_control::media::MediaError;

use super::batch::{MsgBatch, SendPlan};
use super::gso::{self, GsoState};
use super::shard::{
    AfterCommand, PortBinder, PreparedDriver, SendTotals, ShardContext, ShardSpec, handle_command,
};
use super::udp;
use crate::proto::shard::ShardCore;
use crate::proto::transmit::TxQueue;

/// Token of the command waker; socket tokens are their port numbers.
const WAKER: Token = Token(usize::MAX);

/// Longest sleep when no timer is due (keeps stats fresh).
const MAX_SLEEP: Duration = Duration::from_millis(200);

/// Datagrams per `recvmmsg`.
pub const RECV_BATCH: usize = 32;

/// Receive buffer per datagram; larger datagrams are truncated and dropped.
const RECV_BUF: usize = 2048;

/// Flush the send queue when it holds this many datagrams.
const FLUSH_AT: usize = 256;

/// Most datagrams waiting for socket buffer space; beyond that they are dropped
/// and counted as send errors.
const BACKLOG_MAX: usize = 4096;

/// How soon a backlog is retried.
const RETRY_AFTER: Duration = Duration::from_millis(1);

/// Retries without progress after which a backlog is dropped (about 100 ms).
const RETRIES_MAX: u32 = 100;

/// Messages per `sendmmsg` call (the kernel's `UIO_MAXIOV` cap).
const SEND_BATCH: usize = 1024;

/// Consecutive `EINTR`s tolerated on one call before the rest waits for the next turn.
const EINTR_MAX: u32 = 16;

/// Failed reads tolerated per readiness event before the socket waits for the next one.
const RECV_ERRORS_MAX: u32 = 8;

/// At most one I/O error log line per this interval (quinn-udp does the same).
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Makes the epoll instance and its waker, and probes GSO (reading
/// `RINGBRIDGE_DISABLE_GSO` now); the loop runs on the shard thread.
pub fn prepare(_spec: &ShardSpec) -> io::Result<PreparedDriver> {
    let poll = Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
    let gso = GsoState::probe();
    Ok(PreparedDriver {
        waker,
        run: Box::new(move |ctx| run(ctx, poll, gso)),
    })
}

struct Sockets {
    by_port: HashMap<u16, mio::net::UdpSocket>,
    next: u16,
    range: (u16, u16),
}

impl Sockets {
    /// Binds a free port of the range, round-robin from the last one used.
    fn bind(&mut self, spec: &ShardSpec, poll: &Poll) -> Result<u16, MediaError> {
        let (lo, hi) = self.range;
        let span = u32::from(hi.saturating_sub(lo)) + 1;
        for _ in 0..span {
            let port = self.next;
            self.next = if self.next >= hi { lo } else { self.next + 1 };
            if self.by_port.contains_key(&port) {
                continue;
            }
            let Ok(std_sock) = udp::bind_udp(SocketAddr::new(spec.bind, port)) else {
                continue;
            };
            let mut sock = mio::net::UdpSocket::from_std(std_sock);
            if poll
                .registry()
                .register(&mut sock, Token(usize::from(port)), Interest::READABLE)
                .is_err()
            {
                continue;
            }
            self.by_port.insert(port, sock);
            return Ok(port);
        }
        Err(MediaError::Overloaded("no free media port".into()))
    }

    fn release(&mut self, port: u16, poll: &Poll) {
        if let Some(mut sock) = self.by_port.remove(&port) {
            let _ = poll.registry().deregister(&mut sock);
        }
    }
}

struct Binder<'a> {
    sockets: &'a mut Sockets,
    spec: &'a ShardSpec,
    poll: &'a Poll,
}

impl PortBinder for Binder<'_> {
    fn bind(&mut self) -> Result<u16, MediaError> {
        self.sockets.bind(self.spec, self.poll)
    }

    fn release(&mut self, port: u16) {
        self.sockets.release(port, self.poll);
    }
}

/// Rate-limited error log: the first error, then at most one line per
/// [`ERROR_LOG_INTERVAL`] with how many were not logged in between.
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn log(&mut self, now: Instant, what: &'static str, e: &io::Error, to: Option<SocketAddr>) {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < ERROR_LOG_INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, to = ?to, suppressed = self.suppressed, "{what}");
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Preallocated `recvmmsg` state: buffers, iovecs, addresses and headers for
/// [`RECV_BATCH`] datagrams, wired together once.
struct RecvBatch {
    bufs: Vec<u8>,
    iovecs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    fn new() -> Self {
        let mut b = Self {
            bufs: vec![0; RECV_BATCH * RECV_BUF],
            iovecs: Vec::with_capacity(RECV_BATCH),
            names: vec![udp::zeroed_storage(); RECV_BATCH],
            hdrs: Vec::with_capacity(RECV_BATCH),
        };
        // The vectors never grow after this, so the pointers stay valid.
        let base = b.bufs.as_mut_ptr();
        for i in 0..RECV_BATCH {
            b.iovecs.push(libc::iovec {
                // SAFETY: i * RECV_BUF + RECV_BUF <= bufs.len().
                iov_base: unsafe { base.add(i * RECV_BUF) }.cast(),
                iov_len: RECV_BUF,
            });
        }
        for i in 0..RECV_BATCH {
            let mut hdr = udp::zeroed_msghdr();
            hdr.msg_name = (&raw mut b.names[i]).cast();
            hdr.msg_iov = &raw mut b.iovecs[i];
            hdr.msg_iovlen = 1;
            b.hdrs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        b
    }

    /// One `recvmmsg` on `fd`: the number of datagrams read.
    fn recv(&mut self, fd: libc::c_int) -> io::Result<usize> {
        for h in &mut self.hdrs {
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: hdrs holds RECV_BATCH headers whose names and iovecs point
        // into this struct's own vectors (sized once in `new`, never grown),
        // so every pointer the kernel writes through is valid and exclusive
        // for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                RECV_BATCH as libc::c_uint,
                0,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Datagram `i` of the last `recv`: sender and bytes, or `None` when it was
    /// truncated or its address is unusable.
    fn datagram(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8])> {
        let h = self.hdrs.get(i)?;
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let from = udp::storage_to_socket_addr(self.names.get(i)?, h.msg_hdr.msg_namelen)?;
        let len = (h.msg_len as usize).min(RECV_BUF);
        let start = i * RECV_BUF;
        Some((from, self.bufs.get_mut(start..start + len)?))
    }
}

/// The send side: plan, headers, GSO switch, backlog and counters.
struct Sender {
    plan: SendPlan,
    batch: MsgBatch,
    gso: GsoState,
    /// Datagrams waiting for socket buffer space, in order.
    backlog: TxQueue,
    /// Scratch for retrying the backlog (swapped with it).
    retry: TxQueue,
    /// Retries of a non-empty backlog that sent nothing.
    stalled: u32,
    totals: SendTotals,
    log: ErrorLog,
}

/// What one `send_queue` did.
#[derive(Default)]
struct Outcome {
    sent: u64,
}

impl Sender {
    fn new(gso: GsoState) -> Self {
        Self {
            plan: SendPlan::with_capacity(1024),
            batch: MsgBatch::with_capacity(1024),
            gso,
            backlog: TxQueue::with_capacity(64),
            retry: TxQueue::with_capacity(64),
            stalled: 0,
            totals: SendTotals::default(),
            log: ErrorLog {
                last: None,
                suppressed: 0,
            },
        }
    }

    /// Sends everything in `tx` (after any backlog) and clears it.
    fn flush(&mut self, sockets: &Sockets, tx: &mut TxQueue, now: Instant) {
        if self.backlog.is_empty() {
            if !tx.is_empty() {
                self.send_queue(sockets, tx, now);
                tx.clear();
            }
            return;
        }
        // Keep per-destination order: what the core queued now goes after the
        // backlog. This copy happens only while the kernel pushes back.
        for (t, data) in tx.iter() {
            if self.backlog.len() < BACKLOG_MAX {
                self.backlog.push(t.from_port, t.to, data);
            } else {
                self.totals.errors += 1;
            }
        }
        tx.clear();
        std::mem::swap(&mut self.backlog, &mut self.retry);
        let retry = std::mem::replace(&mut self.retry, TxQueue::with_capacity(0));
        let outcome = self.send_queue(sockets, &retry, now);
        self.retry = retry;
        self.retry.clear();
        if outcome.sent > 0 || self.backlog.is_empty() {
            self.stalled = 0;
        } else {
            self.stalled += 1;
            if self.stalled >= RETRIES_MAX {
                let dropped = self.backlog.len() as u64;
                self.totals.errors += dropped;
                self.backlog.clear();
                self.stalled = 0;
                self.log.log(
                    now,
                    "send buffers stayed full; backlog dropped",
                    &io::Error::from(io::ErrorKind::WouldBlock),
                    None,
                );
            }
        }
    }

    /// Whether datagrams wait for buffer space (the loop then wakes soon).
    fn pending(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Sends every datagram of `q`: one `sendmmsg` per socket; what the kernel
    /// has no room for goes to the backlog.
    fn send_queue(&mut self, sockets: &Sockets, q: &TxQueue, now: Instant) -> Outcome {
        let Self {
            plan,
            batch,
            gso,
            backlog,
            totals,
            log,
            ..
        } = self;
        plan.build(q, gso.max_segments());
        let hdrs = batch.fill(plan, q);
        let mut outcome = Outcome::default();
        for (port, run) in plan.port_runs() {
            let groups = &plan.groups()[run.clone()];
            let Some(sock) = sockets.by_port.get(&port) else {
                // The endpoint left while its datagrams were queued.
                continue;
            };
            let fd = sock.as_raw_fd();
            let hdrs = &mut hdrs[run];
            let mut pos = 0;
            let mut eintr = 0;
            while pos < hdrs.len() {
                let n = (hdrs.len() - pos).min(SEND_BATCH);
                // SAFETY: hdrs[pos..pos + n] are headers MsgBatch::fill built; their
                // names, iovecs and control buffers live in `batch` and their
                // iovecs point into `q`'s slots, both borrowed for this call.
                let rc =
                    unsafe { libc::sendmmsg(fd, hdrs[pos..].as_mut_ptr(), n as libc::c_uint, 0) };
                if rc > 0 {
                    let sent = rc as usize;
                    for g in &groups[pos..pos + sent] {
                        totals.packets += g.len() as u64;
                        totals.bytes += g.bytes as u64;
                        outcome.sent += g.len() as u64;
                        if g.is_segmented() {
                            gso::note_segmented_send();
                        }
                    }
                    pos += sent;
                    eintr = 0;
                    continue;
                }
                let e = if rc == 0 {
                    io::Error::from(io::ErrorKind::WouldBlock)
                } else {
                    io::Error::last_os_error()
                };
                match e.kind() {
                    io::ErrorKind::Interrupted if eintr < EINTR_MAX => {
                        eintr += 1;
                        continue;
                    }
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {
                        // No room in the socket buffer: the rest waits.
                        for g in &groups[pos..] {
                            for &i in plan.indices(g) {
                                if let Some((t, data)) = q.get(i)
                                    && backlog.len() < BACKLOG_MAX
                                {
                                    backlog.push(t.from_port, t.to, data);
                                } else {
                                    totals.errors += 1;
                                }
                            }
                        }
                        break;
                    }
                    _ => {}
                }
                let g = &groups[pos];
                if g.is_segmented() && gso.disable_after(&e) {
                    // GSO refused: the same datagrams one by one.
                    for &i in plan.indices(g) {
                        let Some((t, data)) = q.get(i) else { continue };
                        match send_one(sock, data, t.to) {
                            Ok(n) => {
                                totals.packets += 1;
                                totals.bytes += n as u64;
                                outcome.sent += 1;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                if backlog.len() < BACKLOG_MAX {
                                    backlog.push(t.from_port, t.to, data);
                                } else {
                                    totals.errors += 1;
                                }
                            }
                            Err(e) => {
                                totals.errors += 1;
                                log.log(now, "send failed", &e, Some(t.to));
                            }
                        }
                    }
                } else {
                    totals.errors += g.len() as u64;
                    log.log(now, "send failed", &e, Some(g.to));
                }
                pos += 1;
            }
        }
        outcome
    }
}

/// One datagram with `sendto`, retrying on `EINTR`.
fn send_one(sock: &mio::net::UdpSocket, data: &[u8], to: SocketAddr) -> io::Result<usize> {
    let mut tries = 0;
    loop {
        match sock.send_to(data, to) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < EINTR_MAX => tries += 1,
            r => return r,
        }
    }
}

/// Runs the shard until a `Shutdown` command or the command queue closes.
fn run(ctx: ShardContext, mut poll: Poll, gso: GsoState) {
    let ShardContext {
        spec,
        commands,
        events: events_out,
        stats,
    } = ctx;
    let mut core = ShardCore::new(spec.core_config.clone(), Instant::now());
    let mut sockets = Sockets {
        by_port: HashMap::new(),
        next: spec.ports.0,
        range: spec.ports,
    };
    let mut events = Events::with_capacity(1024);
    let mut tx = TxQueue::with_capacity(1024);
    let mut rx = RecvBatch::new();
    let mut sender = Sender::new(gso);
    let mut recv_log = ErrorLog {
        last: None,
        suppressed: 0,
    };
    stats.set_gso(sender.gso.enabled());

    loop {
        let mut timeout = core
            .poll_timeout()
            .map_or(MAX_SLEEP, |t| t.saturating_duration_since(Instant::now()))
            .min(MAX_SLEEP);
        if sender.pending() {
            timeout = timeout.min(RETRY_AFTER);
        }
        if let Err(e) = poll.poll(&mut events, Some(timeout))
            && e.kind() != io::ErrorKind::Interrupted
        {
            tracing::error!(shard = spec.index, error = %e, "poll failed; shard stops");
            return;
        }
        let now = Instant::now();
        let mut wake = false;
        for event in events.iter() {
            if event.token() == WAKER {
                wake = true;
                continue;
            }
            let Ok(port) = u16::try_from(event.token().0) else {
                continue;
            };
            let Some(fd) = sockets.by_port.get(&port).map(AsRawFd::as_raw_fd) else {
                continue;
            };
            // Edge-triggered: read until EAGAIN.
            let mut errors = 0;
            loop {
                let n = match rx.recv(fd) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if errors < RECV_ERRORS_MAX => {
                        // EINTR, or an ICMP error (ECONNREFUSED) surfacing: the
                        // next read goes on.
                        errors += 1;
                        if e.kind() != io::ErrorKind::Interrupted {
                            recv_log.log(now, "recvmmsg failed", &e, None);
                        }
                        continue;
                    }
                    Err(e) => {
                        recv_log.log(now, "recvmmsg keeps failing", &e, None);
                        break;
                    }
                };
                for i in 0..n {
                    if let Some((from, datagram)) = rx.datagram(i) {
                        core.handle_receive(now, port, from, datagram, &mut tx);
                    }
                }
                if tx.len() >= FLUSH_AT {
                    sender.flush(&sockets, &mut tx, now);
                }
                if n == 0 {
                    break;
                }
            }
        }
        if wake {
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
                    sockets: &mut sockets,
                    spec: &spec,
                    poll: &poll,
                };
                if handle_command(&mut core, now, cmd, &mut binder) == AfterCommand::Stop {
                    tracing::info!(shard = spec.index, "shard stopping");
                    return;
                }
            }
        }
        if core.poll_timeout().is_some_and(|t| now >= t) {
            core.handle_timeout(now, &mut tx);
        }
        sender.flush(&sockets, &mut tx, now);
        while let Some(port) = core.poll_released_port() {
            sockets.release(port, &poll);
        }
        while let Some(ev) = core.poll_event() {
            let _ = events_out.send(ev);
        }
        stats.set_gso(sender.gso.enabled());
        stats.publish(&core, &sender.totals);
    }
}
