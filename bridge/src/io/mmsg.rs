//! The recvmmsg/sendmmsg backend over epoll (`mio`): the fallback where
//! io_uring is unavailable. The loop is [`super::driver::run`]'s.
//!
//! Each endpoint socket is registered edge-triggered. On readiness it is read
//! with `recvmmsg` in batches of [`RECV_BATCH`] into buffers allocated once,
//! until `EAGAIN`, every datagram going to the core with one `now` per wake-up.
//! Sending: a [`SendPlan`] groups what the core queued per socket and
//! destination, and one `sendmmsg` per socket sends it, each group of
//! equal-size datagrams as one GSO message when GSO is on. A socket whose
//! buffer is full keeps what it could not send in its own backlog (see
//! [`super::send`]); the other sockets' datagrams go out regardless.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::batch::{MsgBatch, SendPlan};
use super::driver::{self, Io};
use super::gso::GsoState;
use super::rx_time::{self, RxClock};
use super::send::{Backlogs, ErrorLog, SendCounters, SendTotals, Spill, send_groups};
use super::shard::{PreparedDriver, ShardSpec};
use super::tcp_conns::TcpConns;
use super::udp;
use crate::proto::transmit::TxQueue;

/// Token of the command waker; socket tokens are their port numbers.
const WAKER: Token = Token(usize::MAX);
/// Token of the ICE-TCP connections' epoll instance.
const TCP: Token = Token(usize::MAX - 1);

/// Datagrams per `recvmmsg`.
pub const RECV_BATCH: usize = 32;

/// Receive buffer per datagram; a larger datagram arrives truncated, longer
/// than the core's `MAX_DATAGRAM`, which drops and counts it (`oversized`).
const RECV_BUF: usize = 2048;
const _: () = assert!(RECV_BUF > crate::proto::shard::MAX_DATAGRAM);

/// Flush the send queue when it holds this many datagrams.
const FLUSH_AT: usize = 256;

/// Failed reads tolerated per readiness event before the socket waits for the next one.
const RECV_ERRORS_MAX: u32 = 8;

/// Makes the epoll instance and its waker, and probes GSO (reading
/// `RINGBRIDGE_DISABLE_GSO` now); the loop runs on the shard thread.
pub fn prepare(_spec: &ShardSpec) -> io::Result<PreparedDriver> {
    let poll = Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
    let gso = GsoState::probe();
    Ok(PreparedDriver {
        waker,
        run: Box::new(move |ctx| driver::run(ctx, Mmsg::new(poll, gso))),
    })
}

/// The backend's state: epoll, sockets, receive buffers, the send side.
struct Mmsg {
    poll: Poll,
    events: Events,
    sockets: HashMap<u16, mio::net::UdpSocket>,
    rx: RecvBatch,
    recv_log: ErrorLog,
    tx: TxQueue,
    sender: Sender,
}

impl Mmsg {
    fn new(poll: Poll, gso: GsoState) -> Self {
        Self {
            poll,
            events: Events::with_capacity(1024),
            sockets: HashMap::new(),
            rx: RecvBatch::new(),
            recv_log: ErrorLog::default(),
            tx: TxQueue::with_capacity(1024),
            sender: Sender::new(gso),
        }
    }
}

impl Io for Mmsg {
    fn open(&mut self, port: u16, socket: UdpSocket) -> io::Result<()> {
        rx_time::request(&socket, port);
        let mut sock = mio::net::UdpSocket::from_std(socket);
        self.poll
            .registry()
            .register(&mut sock, Token(usize::from(port)), Interest::READABLE)?;
        self.sockets.insert(port, sock);
        Ok(())
    }

    fn close(&mut self, port: u16) {
        if let Some(mut sock) = self.sockets.remove(&port) {
            let _ = self.poll.registry().deregister(&mut sock);
        }
        self.sender.backlogs.remove(port);
    }

    fn holds(&self, port: u16) -> bool {
        self.sockets.contains_key(&port)
    }

    fn watch(&mut self, fd: RawFd) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut mio::unix::SourceFd(&fd), TCP, Interest::READABLE)
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.events.clear();
                Ok(())
            }
            r => r,
        }
    }

    fn receive<F>(&mut self, now: Instant, tcp: &mut TcpConns, mut deliver: F) -> io::Result<()>
    where
        F: FnMut(u16, SocketAddr, Instant, &mut [u8], &mut TxQueue),
    {
        let Self {
            events,
            sockets,
            rx,
            recv_log,
            tx,
            sender,
            ..
        } = self;
        for event in events.iter() {
            if event.token() == WAKER || event.token() == TCP {
                // Commands and ICE-TCP connections are read every turn.
                continue;
            }
            let Ok(port) = u16::try_from(event.token().0) else {
                continue;
            };
            let Some(fd) = sockets.get(&port).map(AsRawFd::as_raw_fd) else {
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
                let clock = RxClock::sample();
                for i in 0..n {
                    if let Some((from, stamp, datagram)) = rx.datagram(i) {
                        deliver(port, from, clock.arrival(stamp, now), datagram, tx);
                    }
                }
                if tx.len() >= FLUSH_AT {
                    sender.flush(sockets, tx, now, tcp);
                }
                if n == 0 {
                    break;
                }
            }
        }
        Ok(())
    }

    fn tx(&mut self) -> &mut TxQueue {
        &mut self.tx
    }

    fn flush(&mut self, now: Instant, tcp: &mut TcpConns) -> io::Result<()> {
        self.sender.flush(&self.sockets, &mut self.tx, now, tcp);
        Ok(())
    }

    fn backlogged(&self) -> bool {
        !self.sender.backlogs.is_empty()
    }

    fn backlog_len(&self) -> usize {
        self.sender.backlogs.len()
    }

    fn totals(&self) -> &SendTotals {
        &self.sender.counters.totals
    }

    fn gso(&self) -> bool {
        self.sender.gso.enabled()
    }
}

/// Preallocated `recvmmsg` state: buffers, iovecs, addresses and headers for
/// [`RECV_BATCH`] datagrams, wired together once.
struct RecvBatch {
    bufs: Vec<u8>,
    iovecs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    /// Per datagram, room for its receive timestamp ([`rx_time`]).
    controls: Vec<udp::CmsgBuf>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    fn new() -> Self {
        let mut b = Self {
            bufs: vec![0; RECV_BATCH * RECV_BUF],
            iovecs: Vec::with_capacity(RECV_BATCH),
            names: vec![udp::zeroed_storage(); RECV_BATCH],
            controls: vec![udp::CmsgBuf::default(); RECV_BATCH],
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
            hdr.msg_control = b.controls[i].as_mut_ptr().cast();
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
            h.msg_hdr.msg_controllen = rx_time::CONTROL_LEN as _;
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

    /// Datagram `i` of the last `recv`: sender, the kernel's receive timestamp
    /// if any, and bytes (a truncated one whole buffer long, for the core to
    /// count as oversized), or `None` when its address is unusable.
    fn datagram(&mut self, i: usize) -> Option<(SocketAddr, Option<Duration>, &mut [u8])> {
        let h = self.hdrs.get(i)?;
        let from = udp::storage_to_socket_addr(self.names.get(i)?, h.msg_hdr.msg_namelen)?;
        // msg_controllen is not usize on every libc.
        #[allow(clippy::unnecessary_cast)]
        let control_len = (h.msg_hdr.msg_controllen as usize).min(rx_time::CONTROL_LEN);
        let stamp = self
            .controls
            .get(i)
            .and_then(|c| c.bytes().get(..control_len))
            .and_then(rx_time::kernel_stamp);
        let len = (h.msg_len as usize).min(RECV_BUF);
        let start = i * RECV_BUF;
        Some((from, stamp, self.bufs.get_mut(start..start + len)?))
    }
}

/// The send side: plan, headers, GSO switch, per-socket backlogs and counters.
struct Sender {
    plan: SendPlan,
    batch: MsgBatch,
    gso: GsoState,
    backlogs: Backlogs,
    counters: SendCounters,
}

impl Sender {
    fn new(gso: GsoState) -> Self {
        Self {
            plan: SendPlan::with_capacity(1024),
            batch: MsgBatch::with_capacity(1024),
            gso,
            backlogs: Backlogs::default(),
            counters: SendCounters::default(),
        }
    }

    /// Retries the sockets' backlogs, then sends everything in `tx` (one
    /// `sendmmsg` per socket; datagrams for ICE-TCP connections framed onto
    /// them) and clears it. A socket that still holds a backlog gets its new
    /// datagrams queued behind it instead.
    fn flush(
        &mut self,
        sockets: &HashMap<u16, mio::net::UdpSocket>,
        tx: &mut TxQueue,
        now: Instant,
        tcp: &mut TcpConns,
    ) {
        let Self {
            plan,
            batch,
            gso,
            backlogs,
            counters,
        } = self;
        backlogs.retry(
            |port| sockets.get(&port).map(AsRawFd::as_raw_fd),
            gso,
            counters,
            now,
        );
        if tx.is_empty() {
            return;
        }
        if tcp.is_empty() {
            plan.build(tx, gso.max_segments());
        } else {
            plan.build_except(tx, gso.max_segments(), |t, data| tcp.take(t, data));
            tcp.write_pending();
        }
        let hdrs = batch.fill(plan, tx);
        for (port, run) in plan.port_runs() {
            let groups = &plan.groups()[run.clone()];
            let Some(sock) = sockets.get(&port) else {
                // The endpoint left while its datagrams were queued.
                continue;
            };
            if backlogs.holds(port) {
                // Behind the socket's backlog, to keep the order.
                let mut spill = backlogs.spill_for(port);
                for g in groups {
                    for &i in plan.indices(g) {
                        if let Some((t, data)) = tx.get(i) {
                            spill.spill(t.to, data, counters, now);
                        }
                    }
                }
                continue;
            }
            send_groups(
                sock.as_raw_fd(),
                &mut hdrs[run],
                groups,
                plan,
                tx,
                gso,
                counters,
                now,
                &mut backlogs.spill_for(port),
            );
        }
        tx.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn queued_datagrams_keep_their_kernel_arrival_times() {
        let mmsg = Mmsg::new(Poll::new().expect("epoll"), GsoState::probe());
        rx_time::backend_check::queued_datagrams_keep_their_arrival_spacing(mmsg);
    }
}
