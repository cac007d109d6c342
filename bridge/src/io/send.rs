//! The send side both backends share: why a send failed, the counters and
//! their rate-limited logs, the `sendmmsg` loop, and the per-socket backlog of
//! datagrams the kernel had no buffer space for.
//!
//! A socket whose buffer is full (`EAGAIN`) keeps its own [`Backlogs`] entry:
//! its later datagrams queue behind it (per-destination order holds), while
//! every other socket's datagrams go out as usual. A backlog is bounded per
//! socket ([`SOCKET_BACKLOG`]) and per shard ([`SHARD_BACKLOG`]), and dropped
//! after [`STALL_TIMEOUT`] without progress; whatever does not fit or is
//! dropped is counted as [`SendFailure::BacklogFull`].

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::batch::{Group, MsgBatch, SendPlan};
use super::gso::GsoState;
use super::udp;
use crate::proto::transmit::TxQueue;

/// Most datagrams one socket holds back while its buffer is full: about 300 ms
/// of a 4 Mbit/s receiver's video. Beyond that its datagrams are dropped and
/// counted, other sockets are not affected.
pub const SOCKET_BACKLOG: usize = 256;

/// Most datagrams all sockets of a shard hold back together (6 MiB of slots):
/// many stuck sockets cannot take the shard's memory.
pub const SHARD_BACKLOG: usize = 4096;

/// A backlog that sent nothing for this long is dropped (and counted): media
/// that late is of no use to a receiver.
pub const STALL_TIMEOUT: Duration = Duration::from_millis(100);

/// How soon a backlog is retried (the driver's loop wakes at least this often
/// while one exists); never a busy loop.
pub const RETRY_AFTER: Duration = Duration::from_millis(1);

/// Messages per `sendmmsg` call (the kernel's `UIO_MAXIOV` cap).
const SEND_BATCH: usize = 1024;

/// Consecutive `EINTR`s tolerated on one call before the rest waits for the next turn.
const EINTR_MAX: u32 = 16;

/// At most one log line per reason per this interval (quinn-udp does the same
/// for its I/O errors).
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Why datagrams were not sent (the `reason` label of
/// `ringbridge_send_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The socket's buffer was full (`EAGAIN`) and its backlog was full too, or
    /// made no progress for [`STALL_TIMEOUT`].
    BacklogFull,
    /// `EMSGSIZE`: larger than the route allows.
    TooBig,
    /// `ENETUNREACH` or `EHOSTUNREACH`: no route to the destination.
    Unreachable,
    /// `EPERM`: refused by a firewall rule.
    Permission,
    /// Any other error.
    Other,
}

impl SendFailure {
    /// Number of reasons.
    pub const COUNT: usize = 5;

    /// Every reason, in counter order.
    pub const ALL: [SendFailure; Self::COUNT] = [
        SendFailure::BacklogFull,
        SendFailure::TooBig,
        SendFailure::Unreachable,
        SendFailure::Permission,
        SendFailure::Other,
    ];

    /// The reason for a send that failed with `e`.
    pub fn of(e: &io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::EAGAIN) => SendFailure::BacklogFull,
            Some(libc::EMSGSIZE) => SendFailure::TooBig,
            Some(libc::ENETUNREACH | libc::EHOSTUNREACH) => SendFailure::Unreachable,
            Some(libc::EPERM) => SendFailure::Permission,
            _ => SendFailure::Other,
        }
    }

    /// Metric label value.
    pub fn name(self) -> &'static str {
        match self {
            SendFailure::BacklogFull => "backlog_full",
            SendFailure::TooBig => "message_too_big",
            SendFailure::Unreachable => "unreachable",
            SendFailure::Permission => "permission",
            SendFailure::Other => "other",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What a driver sent (it, not the core, knows what the kernel took).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendTotals {
    /// Datagrams sent.
    pub packets: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Messages that carried more than one datagram (UDP GSO).
    pub segmented: u64,
    /// Datagrams that met a full socket buffer (`EAGAIN`) and waited in their
    /// socket's backlog (sent later, or counted as failed if it stalled).
    pub backlogged: u64,
    /// Datagrams not sent, by [`SendFailure`] (in [`SendFailure::ALL`] order).
    pub failed: [u64; SendFailure::COUNT],
}

impl SendTotals {
    /// Datagrams not sent for `reason`.
    pub fn failed(&self, reason: SendFailure) -> u64 {
        self.failed[reason.index()]
    }

    /// Datagrams not sent, all reasons.
    pub fn errors(&self) -> u64 {
        self.failed.iter().sum()
    }
}

/// Rate-limited error log: the first error, then at most one line per
/// [`ERROR_LOG_INTERVAL`] with how many were not logged in between.
#[derive(Debug, Default)]
pub struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    /// Logs `e` at warn level unless a line went out less than
    /// [`ERROR_LOG_INTERVAL`] ago.
    pub fn log(&mut self, now: Instant, what: &'static str, e: &io::Error, to: Option<SocketAddr>) {
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

/// A shard's send counters and one rate-limited log per failure reason (a
/// flood of one reason never hides another).
#[derive(Debug, Default)]
pub struct SendCounters {
    /// The totals published with the shard's stats.
    pub totals: SendTotals,
    logs: [ErrorLog; SendFailure::COUNT],
}

impl SendCounters {
    /// Counts one message of `datagrams` datagrams and `bytes` bytes sent.
    pub fn sent(&mut self, datagrams: usize, bytes: usize) {
        self.totals.packets += datagrams as u64;
        self.totals.bytes += bytes as u64;
        if datagrams > 1 {
            self.totals.segmented += 1;
        }
    }

    /// Counts `datagrams` not sent because of `e`, and logs it (rate-limited).
    pub fn failed(
        &mut self,
        now: Instant,
        datagrams: usize,
        e: &io::Error,
        to: Option<SocketAddr>,
    ) {
        let reason = SendFailure::of(e);
        self.failed_for(now, reason, datagrams, e, to);
    }

    /// Counts `datagrams` not sent for `reason`, and logs `e` (rate-limited).
    pub fn failed_for(
        &mut self,
        now: Instant,
        reason: SendFailure,
        datagrams: usize,
        e: &io::Error,
        to: Option<SocketAddr>,
    ) {
        self.totals.failed[reason.index()] += datagrams as u64;
        let what = match reason {
            SendFailure::BacklogFull => "socket buffer stayed full; datagrams dropped",
            SendFailure::TooBig => "send failed: message too big",
            SendFailure::Unreachable => "send failed: destination unreachable",
            SendFailure::Permission => "send failed: not permitted",
            SendFailure::Other => "send failed",
        };
        self.logs[reason.index()].log(now, what, e, to);
    }

    /// Counts datagrams dropped because a backlog was full or stalled.
    pub fn backlog_full(&mut self, now: Instant, datagrams: usize, to: Option<SocketAddr>) {
        if datagrams > 0 {
            let e = io::Error::from_raw_os_error(libc::EAGAIN);
            self.failed_for(now, SendFailure::BacklogFull, datagrams, &e, to);
        }
    }
}

/// Where `send_groups` puts datagrams the kernel had no room for.
pub trait Spill {
    /// Keeps `data` for `to` for a later try, or counts it in `counters` when
    /// there is no room.
    fn spill(&mut self, to: SocketAddr, data: &[u8], counters: &mut SendCounters, now: Instant);
}

/// Sends the messages `hdrs` that [`MsgBatch::fill`] built from `groups` (one
/// port's run of `plan`, over `q`) on socket `fd`, with `sendmmsg`.
///
/// Sent datagrams and failures are counted in `counters`. A segmented message
/// the kernel refuses (`EIO`, `EINVAL`) switches GSO off and goes again one
/// datagram at a time. What finds the socket buffer full (`EAGAIN`) goes to
/// `spill`, in order.
#[allow(clippy::too_many_arguments)]
pub fn send_groups(
    fd: RawFd,
    hdrs: &mut [libc::mmsghdr],
    groups: &[Group],
    plan: &SendPlan,
    q: &TxQueue,
    gso: &mut GsoState,
    counters: &mut SendCounters,
    now: Instant,
    spill: &mut impl Spill,
) {
    let mut pos = 0;
    let mut eintr = 0;
    while pos < hdrs.len() {
        let n = (hdrs.len() - pos).min(SEND_BATCH);
        // SAFETY: hdrs[pos..pos + n] are headers MsgBatch::fill built; their
        // names, iovecs and control buffers live in the batch and their iovecs
        // point into `q`'s slots, both borrowed by the caller for this call.
        let rc = unsafe { libc::sendmmsg(fd, hdrs[pos..].as_mut_ptr(), n as libc::c_uint, 0) };
        if rc > 0 {
            let sent = rc as usize;
            for g in groups.get(pos..pos + sent).unwrap_or_default() {
                counters.sent(g.len(), g.bytes);
            }
            pos += sent;
            eintr = 0;
            continue;
        }
        let e = if rc == 0 {
            io::Error::from_raw_os_error(libc::EAGAIN)
        } else {
            io::Error::last_os_error()
        };
        match e.raw_os_error() {
            Some(libc::EINTR) if eintr < EINTR_MAX => {
                eintr += 1;
                continue;
            }
            Some(libc::EAGAIN | libc::EINTR) => {
                // No room in the socket buffer: the rest waits.
                for g in groups.get(pos..).unwrap_or_default() {
                    for &i in plan.indices(g) {
                        if let Some((t, data)) = q.get(i) {
                            spill.spill(t.to, data, counters, now);
                        }
                    }
                }
                return;
            }
            _ => {}
        }
        let Some(g) = groups.get(pos) else { return };
        if g.is_segmented() && gso.disable_after(&e) {
            // GSO refused: the same datagrams one by one.
            for &i in plan.indices(g) {
                let Some((t, data)) = q.get(i) else { continue };
                match send_one(fd, data, t.to) {
                    Ok(n) => counters.sent(1, n),
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                        spill.spill(t.to, data, counters, now);
                    }
                    Err(e) => counters.failed(now, 1, &e, Some(t.to)),
                }
            }
        } else {
            counters.failed(now, g.len(), &e, Some(g.to));
        }
        pos += 1;
    }
}

/// One datagram with `sendto`, retrying on `EINTR`.
fn send_one(fd: RawFd, data: &[u8], to: SocketAddr) -> io::Result<usize> {
    let mut name = udp::zeroed_storage();
    let len = udp::socket_addr_to_storage(&to, &mut name);
    let mut tries = 0;
    loop {
        // SAFETY: `data` and `name` are live for the call; `len` is the length
        // of the address written into `name`.
        let rc = unsafe {
            libc::sendto(
                fd,
                data.as_ptr().cast(),
                data.len(),
                0,
                (&raw const name).cast(),
                len,
            )
        };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) && tries < EINTR_MAX {
            tries += 1;
            continue;
        }
        return Err(e);
    }
}

/// One socket's datagrams waiting for buffer space.
#[derive(Debug)]
struct Backlog {
    queue: TxQueue,
    /// When it last made progress (or was created).
    since: Instant,
}

/// The per-socket backlogs of one shard (see the module documentation).
///
/// Memory is taken only while a socket pushes back (a backlog is created on
/// the first `EAGAIN` and freed when it drains), never on the normal path.
#[derive(Debug)]
pub struct Backlogs {
    by_port: HashMap<u16, Backlog>,
    /// Datagrams held, all sockets.
    total: usize,
    /// Scratch: ports to retry.
    ports: Vec<u16>,
    plan: SendPlan,
    batch: MsgBatch,
}

impl Default for Backlogs {
    fn default() -> Self {
        Self {
            by_port: HashMap::new(),
            total: 0,
            ports: Vec::new(),
            plan: SendPlan::with_capacity(0),
            batch: MsgBatch::with_capacity(0),
        }
    }
}

/// A [`Spill`] into one port's backlog that counts what does not fit.
#[derive(Debug)]
pub struct PortSpill<'a> {
    backlogs: &'a mut Backlogs,
    port: u16,
}

impl Spill for PortSpill<'_> {
    fn spill(&mut self, to: SocketAddr, data: &[u8], counters: &mut SendCounters, now: Instant) {
        if self.backlogs.push(self.port, to, data, now) {
            counters.totals.backlogged += 1;
        } else {
            counters.backlog_full(now, 1, Some(to));
        }
    }
}

impl Spill for TxQueue {
    fn spill(&mut self, to: SocketAddr, data: &[u8], _: &mut SendCounters, _: Instant) {
        // The source port is not read from a backlog's queue: it is one socket's.
        self.push(0, to, data);
    }
}

impl Backlogs {
    /// Whether no socket holds datagrams back.
    pub fn is_empty(&self) -> bool {
        self.by_port.is_empty()
    }

    /// Datagrams held back, all sockets.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether `port`'s socket holds datagrams back (new ones must queue behind).
    pub fn holds(&self, port: u16) -> bool {
        self.by_port.contains_key(&port)
    }

    /// Queues a copy of `data` behind `port`'s backlog; `false` when the socket's
    /// or the shard's bound is reached (the caller counts it).
    pub fn push(&mut self, port: u16, to: SocketAddr, data: &[u8], now: Instant) -> bool {
        if self.total >= SHARD_BACKLOG {
            return false;
        }
        let b = self.by_port.entry(port).or_insert_with(|| Backlog {
            queue: TxQueue::with_capacity(16),
            since: now,
        });
        if b.queue.len() >= SOCKET_BACKLOG || b.queue.push(port, to, data).is_none() {
            return false;
        }
        self.total += 1;
        true
    }

    /// A [`Spill`] into `port`'s backlog.
    pub fn spill_for(&mut self, port: u16) -> PortSpill<'_> {
        PortSpill {
            backlogs: self,
            port,
        }
    }

    /// Forgets `port`'s backlog (its socket closed); returns how many datagrams
    /// it held.
    pub fn remove(&mut self, port: u16) -> usize {
        let n = self.by_port.remove(&port).map_or(0, |b| b.queue.len());
        self.total -= n;
        n
    }

    /// Retries every backlog with `sendmmsg` on its socket (`fd_of` finds it).
    /// A backlog that made no progress for [`STALL_TIMEOUT`] is dropped and
    /// counted; one whose socket is gone is forgotten.
    pub fn retry(
        &mut self,
        fd_of: impl Fn(u16) -> Option<RawFd>,
        gso: &mut GsoState,
        counters: &mut SendCounters,
        now: Instant,
    ) {
        if self.by_port.is_empty() {
            return;
        }
        self.ports.clear();
        self.ports.extend(self.by_port.keys().copied());
        for k in 0..self.ports.len() {
            let port = self.ports[k];
            let Some(b) = self.by_port.remove(&port) else {
                continue;
            };
            self.total -= b.queue.len();
            let Some(fd) = fd_of(port) else { continue };
            let mut rest = TxQueue::with_capacity(0);
            self.plan.build(&b.queue, gso.max_segments());
            let hdrs = self.batch.fill(&self.plan, &b.queue);
            let groups = self.plan.groups();
            send_groups(
                fd, hdrs, groups, &self.plan, &b.queue, gso, counters, now, &mut rest,
            );
            if rest.is_empty() {
                continue;
            }
            let progress = rest.len() < b.queue.len();
            if !progress && now.saturating_duration_since(b.since) >= STALL_TIMEOUT {
                let to = rest.get(0).map(|(t, _)| t.to);
                counters.backlog_full(now, rest.len(), to);
                continue;
            }
            self.total += rest.len();
            self.by_port.insert(
                port,
                Backlog {
                    queue: rest,
                    since: if progress { now } else { b.since },
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn errors_map_to_their_reason() {
        let of = |errno| SendFailure::of(&io::Error::from_raw_os_error(errno));
        assert_eq!(of(libc::EAGAIN), SendFailure::BacklogFull);
        assert_eq!(of(libc::EMSGSIZE), SendFailure::TooBig);
        assert_eq!(of(libc::ENETUNREACH), SendFailure::Unreachable);
        assert_eq!(of(libc::EHOSTUNREACH), SendFailure::Unreachable);
        assert_eq!(of(libc::EPERM), SendFailure::Permission);
        assert_eq!(of(libc::ECONNREFUSED), SendFailure::Other);
        let names: Vec<_> = SendFailure::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            [
                "backlog_full",
                "message_too_big",
                "unreachable",
                "permission",
                "other"
            ]
        );
    }

    #[test]
    fn failures_are_counted_by_reason() {
        let now = Instant::now();
        let mut c = SendCounters::default();
        c.failed(
            now,
            3,
            &io::Error::from_raw_os_error(libc::ENETUNREACH),
            None,
        );
        c.failed(now, 1, &io::Error::from_raw_os_error(libc::EPERM), None);
        c.failed(now, 2, &io::Error::from_raw_os_error(libc::EMSGSIZE), None);
        c.backlog_full(now, 4, None);
        c.sent(3, 3600);
        c.sent(1, 100);
        let t = c.totals;
        assert_eq!(t.failed(SendFailure::Unreachable), 3);
        assert_eq!(t.failed(SendFailure::Permission), 1);
        assert_eq!(t.failed(SendFailure::TooBig), 2);
        assert_eq!(t.failed(SendFailure::BacklogFull), 4);
        assert_eq!(t.failed(SendFailure::Other), 0);
        assert_eq!(t.errors(), 10);
        assert_eq!((t.packets, t.bytes, t.segmented), (4, 3700, 1));
    }

    #[test]
    fn a_backlog_is_bounded_per_socket_and_per_shard() {
        let now = Instant::now();
        let mut b = Backlogs::default();
        for _ in 0..SOCKET_BACKLOG {
            assert!(b.push(1, addr(9), &[0; 100], now));
        }
        assert!(!b.push(1, addr(9), &[0; 100], now), "socket bound");
        assert!(
            b.push(2, addr(9), &[0; 100], now),
            "another socket has room"
        );
        assert!(b.holds(1) && b.holds(2) && !b.holds(3));
        assert_eq!(b.len(), SOCKET_BACKLOG + 1);
        let mut port = 3;
        while b.push(port, addr(9), &[0; 100], now) {
            if b.by_port[&port].queue.len() == SOCKET_BACKLOG {
                port += 1;
            }
        }
        assert_eq!(b.len(), SHARD_BACKLOG, "shard bound");
        assert_eq!(b.remove(1), SOCKET_BACKLOG);
        assert_eq!(b.len(), SHARD_BACKLOG - SOCKET_BACKLOG);
        assert!(b.push(1, addr(9), &[0; 100], now));
    }

    /// A UDP socket pair on 127.0.0.1 whose sender can be made to fail: the
    /// receiving side closes, so nothing in the kernel pushes back, and what a
    /// retry sends arrives.
    #[test]
    fn a_retried_backlog_drains_in_order_and_a_stalled_one_is_dropped_and_counted() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_nonblocking(true).expect("nonblocking");
        let to = rx.local_addr().expect("addr");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tx);
        let t0 = Instant::now();
        let mut b = Backlogs::default();
        for k in 0..5u8 {
            assert!(b.push(7, to, &[k; 10], t0));
        }
        let mut gso = GsoState::off("test");
        let mut c = SendCounters::default();
        b.retry(|p| (p == 7).then_some(fd), &mut gso, &mut c, t0);
        assert!(b.is_empty());
        assert_eq!(b.len(), 0);
        assert_eq!(c.totals.packets, 5);
        let mut buf = [0u8; 64];
        for k in 0..5u8 {
            let (n, _) = rx.recv_from(&mut buf).expect("datagram");
            assert_eq!(&buf[..n], &[k; 10], "in order");
        }

        // A socket that is gone: its backlog is forgotten, not counted.
        assert!(b.push(8, to, &[1; 10], t0));
        b.retry(|_| None, &mut gso, &mut c, t0);
        assert!(b.is_empty());
        assert_eq!(c.totals.errors(), 0);

        // A socket that refuses everything (an invalid descriptor stands in for
        // a stuck one here: EBADF is counted as `other`, not kept).
        assert!(b.push(9, to, &[1; 10], t0));
        b.retry(|_| Some(-1), &mut gso, &mut c, t0);
        assert!(b.is_empty());
        assert_eq!(c.totals.failed(SendFailure::Other), 1);
    }

    #[test]
    fn a_port_spill_counts_what_its_backlog_cannot_take() {
        let now = Instant::now();
        let mut b = Backlogs::default();
        let mut c = SendCounters::default();
        let mut s = b.spill_for(4);
        for _ in 0..SOCKET_BACKLOG + 10 {
            s.spill(addr(9), &[0; 10], &mut c, now);
        }
        assert_eq!(b.len(), SOCKET_BACKLOG);
        assert_eq!(c.totals.failed(SendFailure::BacklogFull), 10);
    }
}
