//! The io_uring backend: one ring per shard thread. The loop is
//! [`super::driver::run`]'s; this file is how it waits, receives and sends.
//!
//! - Receive: one multishot `RecvMsg` per endpoint socket, all drawing from one
//!   provided-buffer ring (`IORING_REGISTER_PBUF_RING`) shared by the shard. Each
//!   completion names its buffer; the datagram is handed to the core in place and
//!   the buffer goes back to the ring after the batch.
//! - Send: everything the core queued while handling one batch of completions is
//!   submitted with one `io_uring_enter`: one `SendMsg` per [`SendPlan`] group
//!   (with GSO, a group is all datagrams of one frame to one receiver). The queue
//!   is double-buffered: the core fills one half while the kernel may still read
//!   the other, so send completions are reaped without blocking receives.
//!   Sends are `MSG_DONTWAIT`: a socket whose buffer is full completes with
//!   `EAGAIN` and keeps its datagrams in its own backlog (see [`super::send`]),
//!   instead of holding a half, and so the whole shard, until it drains.
//! - Commands: an eventfd polled by a multishot `PollAdd` wakes the wait;
//!   timers: the wait's timeout (`IORING_ENTER_EXT_ARG`).
//!
//! The ring is created on the shard thread with `SINGLE_ISSUER` and
//! `DEFER_TASKRUN` where the kernel has them (it falls back without them).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};

use super::batch::SendPlan;
use super::driver::{self, Io};
use super::gso::GsoState;
use super::rx_time::{self, RxClock};
use super::send::{Backlogs, SendCounters, SendTotals, Spill};
use super::shard::{PreparedDriver, ShardSpec, ShardWaker};
use super::tcp_conns::TcpConns;
use super::udp;
use crate::proto::transmit::TxQueue;

/// Submission queue size (the completion queue is twice that).
const RING_ENTRIES: u32 = 2048;
/// Provided receive buffers shared by all sockets of the shard (a power of two).
const BUF_COUNT: u16 = 4096;
/// Size of one receive buffer: the recvmsg header, the source address and an
/// MTU-sized datagram.
const BUF_SIZE: usize = 2048;
const _: () = assert!(
    BUF_SIZE - RECVMSG_OUT_LEN - NAME_LEN - CONTROL_LEN > crate::proto::shard::MAX_DATAGRAM
);
/// Buffer group id of the receive buffers.
const BGID: u16 = 0;
/// Flush the send queue when it holds this many datagrams mid-batch.
const FLUSH_AT: usize = 512;
/// Receives on one socket may fail this many times in a row before the socket
/// is given up (a successful datagram resets the count).
const MAX_RECV_FAILURES: u32 = 16;

/// `user_data` tags, in the top byte.
const TAG_RECV: u64 = 1 << 56;
const TAG_SEND: u64 = 2 << 56;
const TAG_WAKE: u64 = 3 << 56;
const TAG_CANCEL: u64 = 4 << 56;
const TAG_TCP: u64 = 5 << 56;
const TAG_MASK: u64 = 0xff << 56;

/// Size of the sockaddr field in each receive buffer.
const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_storage>();
/// `struct io_uring_recvmsg_out` at the start of each receive buffer.
const RECVMSG_OUT_LEN: usize = 16;
/// Size of the control-message field in each receive buffer (after the
/// sockaddr): the kernel's receive timestamp ([`rx_time`]).
const CONTROL_LEN: usize = rx_time::CONTROL_LEN;

/// Whether io_uring can run the shards here, and if not, why.
///
/// Checks, in order: the `RINGBRIDGE_DISABLE_URING` switch (for tests and
/// operators), `kernel.io_uring_disabled`, that a ring can be created (ENOSYS:
/// no io_uring; EPERM: a seccomp profile or the sysctl; ENOMEM: memlock too low),
/// the opcodes the driver uses, and that a provided-buffer ring registers.
pub fn probe() -> Result<(), String> {
    if std::env::var_os("RINGBRIDGE_DISABLE_URING").is_some_and(|v| v != "0") {
        return Err("io_uring disabled by RINGBRIDGE_DISABLE_URING".into());
    }
    if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        && v.trim() == "2"
    {
        return Err("io_uring disabled by sysctl kernel.io_uring_disabled = 2".into());
    }
    let ring = IoUring::new(8).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) => "io_uring_setup: ENOSYS (kernel without io_uring)".to_owned(),
        Some(libc::EPERM) => {
            "io_uring_setup: EPERM (blocked by a seccomp profile or kernel.io_uring_disabled)"
                .to_owned()
        }
        Some(libc::ENOMEM) => {
            "io_uring_setup: ENOMEM (memlock limit too low; raise LimitMEMLOCK)".to_owned()
        }
        _ => format!("io_uring_setup: {e}"),
    })?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("IORING_REGISTER_PROBE: {e}"))?;
    for (code, name) in [
        (opcode::RecvMsgMulti::CODE, "RECVMSG"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("io_uring lacks opcode {name}"));
        }
    }
    if !ring.params().is_feature_ext_arg() {
        return Err("io_uring lacks IORING_FEAT_EXT_ARG (kernel older than 5.11)".into());
    }
    let bufs = BufRing::new(8, 256).map_err(|e| format!("provided-buffer ring: {e}"))?;
    // SAFETY: the ring memory lives in `bufs`, which outlives the registration
    // (unregistered below, before `bufs` drops).
    unsafe { bufs.register(&ring) }
        .map_err(|e| format!("IORING_REGISTER_PBUF_RING (kernel older than 5.19?): {e}"))?;
    let result = probe_multishot_recv(ring);
    drop(bufs);
    result
}

/// Arms a multishot `RecvMsg` on a 127.0.0.1 socket, sends it one datagram and
/// checks the completion carries it and stays armed (multishot receive needs
/// Linux 6.0; older kernels answer EINVAL, which the opcode probe cannot see).
/// Takes the ring so that it is dropped before the buffers it used.
fn probe_multishot_recv(mut ring: IoUring) -> Result<(), String> {
    let fail = |what: &str, e: io::Error| format!("multishot RecvMsg probe: {what}: {e}");
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| fail("bind", e))?;
    let to = rx.local_addr().map_err(|e| fail("local_addr", e))?;
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| fail("bind", e))?;
    let mut hdr = udp::zeroed_msghdr();
    hdr.msg_namelen = NAME_LEN as u32;
    let sqe = opcode::RecvMsgMulti::new(types::Fd(rx.as_raw_fd()), &raw const hdr, BGID)
        .build()
        .user_data(1);
    // SAFETY: `hdr` and `rx` outlive the operation: the ring is dropped at the
    // end of this function, before them.
    unsafe { ring.submission().push(&sqe) }.map_err(|_| "submission queue full".to_owned())?;
    ring.submit().map_err(|e| fail("submit", e))?;
    tx.send_to(b"ringbridge-probe", to)
        .map_err(|e| fail("send", e))?;
    let ts = Timespec::new().sec(1);
    let args = SubmitArgs::new().timespec(&ts);
    match ring.submitter().submit_with_args(1, &args) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
        Err(e) => return Err(fail("wait", e)),
    }
    let Some(cqe) = ring.completion().next() else {
        return Err("multishot RecvMsg probe: no completion within 1 s".into());
    };
    if cqe.result() < 0 {
        return Err(format!(
            "multishot RecvMsg unsupported (kernel older than 6.0?): {}",
            io::Error::from_raw_os_error(-cqe.result())
        ));
    }
    if !cqueue::more(cqe.flags()) {
        return Err("multishot RecvMsg ended after one datagram (kernel older than 6.0?)".into());
    }
    drop(ring);
    Ok(())
}

/// Makes the waker (an eventfd); the ring itself is created on the shard thread.
pub fn prepare(_spec: &ShardSpec) -> io::Result<PreparedDriver> {
    probe().map_err(io::Error::other)?;
    // SAFETY: plain syscall; the result is checked before use.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let eventfd = Arc::new(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }));
    let waker = eventfd.clone();
    Ok(PreparedDriver {
        waker,
        run: Box::new(move |ctx| match Uring::new(eventfd, ctx.spec.index) {
            Ok(uring) => driver::run(ctx, uring),
            Err(e) => tracing::error!(
                shard = ctx.spec.index,
                error = %e,
                "io_uring ring cannot be set up; shard stops"
            ),
        }),
    })
}

/// The shard's wake-up eventfd.
#[derive(Debug)]
struct EventFd(OwnedFd);

impl ShardWaker for EventFd {
    fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        let n = unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
        if n == 8 {
            Ok(())
        } else {
            let e = io::Error::last_os_error();
            // A full counter (EAGAIN) still wakes the reader.
            if e.kind() == io::ErrorKind::WouldBlock {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

impl EventFd {
    fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; non-blocking.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&raw mut v).cast(), 8) };
    }
}

/// The provided-buffer ring: `count` entries in page-aligned memory the kernel
/// reads, and the buffers they point to.
struct BufRing {
    entries: *mut BufRingEntry,
    layout: std::alloc::Layout,
    bufs: Box<[u8]>,
    count: u16,
    tail: u16,
}

impl BufRing {
    fn new(count: u16, buf_size: usize) -> io::Result<Self> {
        if !count.is_power_of_two() {
            return Err(io::Error::other("buffer count must be a power of two"));
        }
        let size = std::mem::size_of::<BufRingEntry>() * usize::from(count);
        let layout = std::alloc::Layout::from_size_align(size, 4096).map_err(io::Error::other)?;
        // SAFETY: non-zero size; the result is checked for null.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut ring = Self {
            entries,
            layout,
            bufs: vec![0u8; usize::from(count) * buf_size].into_boxed_slice(),
            count,
            tail: 0,
        };
        for bid in 0..count {
            ring.push(bid, buf_size);
        }
        ring.publish();
        Ok(ring)
    }

    /// Registers the ring with `ring` under [`BGID`].
    ///
    /// # Safety
    /// `self` must outlive the registration.
    unsafe fn register(&self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: `entries` points to `count` entries that live as long as `self`.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(self.entries as u64, self.count, BGID, 0)
        }
    }

    fn buf_size(&self) -> usize {
        self.bufs.len() / usize::from(self.count)
    }

    /// Puts buffer `bid` back at the tail (visible to the kernel after `publish`).
    fn push(&mut self, bid: u16, buf_size: usize) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.bufs.as_ptr() as u64 + u64::from(bid) * buf_size as u64;
        // SAFETY: `index < count`, inside the allocation.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(addr);
        entry.set_len(buf_size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes pushed buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field overlays the first entry's reserved field and is
        // only written by us; the kernel reads it with acquire semantics.
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast_mut();
            (*tail.cast::<std::sync::atomic::AtomicU16>())
                .store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    fn buffer_mut(&mut self, bid: u16) -> Option<&mut [u8]> {
        let size = self.buf_size();
        let start = usize::from(bid) * size;
        self.bufs.get_mut(start..start + size)
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring that used it is
        // dropped (or the buffer group unregistered) before this runs.
        unsafe { std::alloc::dealloc(self.entries.cast(), self.layout) };
    }
}

struct Socket {
    sock: std::net::UdpSocket,
    /// A multishot receive is outstanding.
    armed: bool,
    /// Receives in a row that ended in an error other than ENOBUFS.
    failures: u32,
    /// Being closed: its receive was cancelled, the socket drops when it ends.
    closing: bool,
}

/// One message of a [`Half`]: source port, destination, first iovec, iovec
/// count, whether it is a segmented (GSO) send.
type Msg = (u16, SocketAddr, usize, usize, bool);

/// The send half of the double-buffered queue: the datagrams and the msghdrs,
/// addresses, iovecs and cmsgs the kernel reads while sends are in flight.
///
/// A half's queue is cleared only when it becomes the one the core fills again,
/// after every send of it completed: until then a completion can still read
/// its datagrams (to retry them without GSO, or to keep them in a backlog).
struct Half {
    tx: TxQueue,
    plan: SendPlan,
    hdrs: Vec<libc::msghdr>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    /// Per iovec: the index of its datagram in `tx`.
    iov_tx: Vec<usize>,
    cmsgs: Vec<udp::CmsgBuf>,
    msgs: Vec<Msg>,
    pending: usize,
}

impl Half {
    fn new() -> Self {
        Self {
            tx: TxQueue::with_capacity(1024),
            plan: SendPlan::with_capacity(1024),
            hdrs: Vec::new(),
            addrs: Vec::new(),
            iovs: Vec::new(),
            iov_tx: Vec::new(),
            cmsgs: Vec::new(),
            msgs: Vec::new(),
            pending: 0,
        }
    }
}

/// A completion copied out of the completion queue: user data, result, flags.
type Cqe = (u64, i32, u32);

/// The ring and what submissions need: sockets, the receive header, the send
/// side's state. Dropped before the buffers the kernel may still use.
struct Ring {
    ring: IoUring,
    sockets: HashMap<u16, Socket>,
    recv_hdr: Box<libc::msghdr>,
    gso: GsoState,
    counters: SendCounters,
    backlogs: Backlogs,
    /// Completions seen while waiting for a send half; handled next round.
    deferred: Vec<Cqe>,
    /// Scratch for completions reaped while waiting for a send half.
    waiting: Vec<Cqe>,
}

impl Ring {
    /// Pushes one SQE, submitting first if the queue is full.
    fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer an SQE carries (msghdrs, buffers, sockets)
            // stays valid until its completion: see `Half` and `Socket`.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm_recv(&mut self, port: u16) -> io::Result<()> {
        let Some(s) = self.sockets.get(&port) else {
            return Ok(());
        };
        if s.armed || s.closing {
            return Ok(());
        }
        let fd = s.sock.as_raw_fd();
        let sqe = opcode::RecvMsgMulti::new(types::Fd(fd), &raw const *self.recv_hdr, BGID)
            .build()
            .user_data(TAG_RECV | u64::from(port));
        self.push(&sqe)?;
        if let Some(s) = self.sockets.get_mut(&port) {
            s.armed = true;
        }
        Ok(())
    }
}

/// The io_uring backend: the ring, the two send halves (the core fills
/// `halves[cur]`), the provided receive buffers and the waker.
struct Uring {
    // Field order is drop order: the ring goes before the memory it used.
    ring: Ring,
    halves: [Half; 2],
    cur: usize,
    bufs: BufRing,
    recycled: Vec<u16>,
    /// Completions copied out of the CQ before handling them.
    cqes: Vec<Cqe>,
    eventfd: Arc<EventFd>,
    wake_sqe: squeue::Entry,
    /// The multishot poll of the ICE-TCP epoll instance ([`Io::watch`]).
    tcp_sqe: Option<squeue::Entry>,
}

fn build_ring() -> io::Result<(IoUring, &'static str)> {
    let full = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_cqsize(RING_ENTRIES * 4)
        .build(RING_ENTRIES);
    match full {
        Ok(r) => Ok((r, "SINGLE_ISSUER|DEFER_TASKRUN")),
        Err(_) => IoUring::builder()
            .setup_cqsize(RING_ENTRIES * 4)
            .build(RING_ENTRIES)
            .map(|r| (r, "plain (kernel without SINGLE_ISSUER/DEFER_TASKRUN)")),
    }
}

impl Uring {
    /// Creates the ring on the calling (shard) thread, registers the receive
    /// buffers and arms the waker.
    fn new(eventfd: Arc<EventFd>, shard: usize) -> io::Result<Self> {
        let (ring, flags) = build_ring()?;
        let bufs = BufRing::new(BUF_COUNT, BUF_SIZE)?;
        // SAFETY: `bufs` is stored in the returned `Uring` after the ring,
        // which is therefore dropped first.
        unsafe { bufs.register(&ring) }?;
        // SAFETY: an all-zero msghdr is a valid empty header.
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_hdr.msg_namelen = NAME_LEN as u32;
        // Room for the receive timestamp (msg_controllen is not usize on every libc).
        recv_hdr.msg_controllen = CONTROL_LEN as _;
        let gso = GsoState::probe();
        tracing::info!(
            shard,
            ring_flags = flags,
            buffers = BUF_COUNT,
            gso = gso.enabled(),
            "io_uring ring ready"
        );
        let wake_sqe = opcode::PollAdd::new(types::Fd(eventfd.0.as_raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(TAG_WAKE);
        let mut uring = Self {
            ring: Ring {
                ring,
                sockets: HashMap::new(),
                recv_hdr,
                gso,
                counters: SendCounters::default(),
                backlogs: Backlogs::default(),
                deferred: Vec::with_capacity(RING_ENTRIES as usize * 4),
                waiting: Vec::with_capacity(RING_ENTRIES as usize * 4),
            },
            halves: [Half::new(), Half::new()],
            cur: 0,
            bufs,
            recycled: Vec::with_capacity(usize::from(BUF_COUNT)),
            cqes: Vec::with_capacity(RING_ENTRIES as usize * 4),
            eventfd,
            wake_sqe,
            tcp_sqe: None,
        };
        let sqe = uring.wake_sqe.clone();
        uring.ring.push(&sqe)?;
        Ok(uring)
    }
}

impl Io for Uring {
    fn open(&mut self, port: u16, sock: std::net::UdpSocket) -> io::Result<()> {
        rx_time::request(&sock, port);
        self.ring.sockets.insert(
            port,
            Socket {
                sock,
                armed: false,
                failures: 0,
                closing: false,
            },
        );
        if let Err(e) = self.ring.arm_recv(port) {
            self.ring.sockets.remove(&port);
            return Err(e);
        }
        Ok(())
    }

    fn close(&mut self, port: u16) {
        self.ring.backlogs.remove(port);
        let Some(s) = self.ring.sockets.get_mut(&port) else {
            return;
        };
        if !s.armed {
            self.ring.sockets.remove(&port);
            return;
        }
        s.closing = true;
        let sqe = opcode::AsyncCancel::new(TAG_RECV | u64::from(port))
            .build()
            .user_data(TAG_CANCEL | u64::from(port));
        if self
            .ring
            .push(&sqe)
            .and_then(|()| self.ring.ring.submit())
            .is_err()
        {
            tracing::warn!(port, "cannot cancel the receive of a released port");
        }
    }

    fn holds(&self, port: u16) -> bool {
        self.ring.sockets.contains_key(&port)
    }

    fn watch(&mut self, fd: RawFd) -> io::Result<()> {
        let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(TAG_TCP);
        self.ring.push(&sqe)?;
        self.tcp_sqe = Some(sqe);
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        if !self.ring.deferred.is_empty() {
            // Completions reaped by a flush wait for handling: no sleep.
            return Ok(());
        }
        let ts = Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = SubmitArgs::new().timespec(&ts);
        match self.ring.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn receive<F>(&mut self, now: Instant, tcp: &mut TcpConns, mut deliver: F) -> io::Result<()>
    where
        F: FnMut(u16, SocketAddr, Instant, &mut [u8], &mut TxQueue),
    {
        let Self {
            ring: r,
            halves,
            cur,
            bufs,
            recycled,
            cqes,
            eventfd,
            wake_sqe,
            tcp_sqe,
        } = self;
        cqes.clear();
        std::mem::swap(cqes, &mut r.deferred);
        for cqe in r.ring.completion() {
            cqes.push((cqe.user_data(), cqe.result(), cqe.flags()));
        }
        // Send completions first: a receive below may flush mid-batch and wait for
        // the other half's sends, and completions already reaped into `cqes`
        // would never reach that wait (it blocked forever at high fan-out).
        for &(ud, res, _) in cqes.iter() {
            if ud & TAG_MASK == TAG_SEND {
                let h = ((ud >> 32) & 1) as usize;
                let g = (ud & 0xffff_ffff) as usize;
                complete_send(r, &mut halves[h], h, g, res, now)?;
            }
        }
        let buf_size = bufs.buf_size();
        // Read once, at the batch's first datagram.
        let mut clock = None;
        let mut rearm_wake = false;
        let mut rearm_tcp = false;
        for &(ud, res, flags) in cqes.iter() {
            match ud & TAG_MASK {
                TAG_RECV => {
                    let port = (ud & 0xffff) as u16;
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        if res > 0
                            && let Some(buf) = bufs.buffer_mut(bid)
                            && let Some(got) = parse_recvmsg(buf, res as usize)
                            && let Some(sock) = r.sockets.get_mut(&port)
                            && !sock.closing
                        {
                            sock.failures = 0;
                            let half = &mut halves[*cur];
                            let clock = *clock.get_or_insert_with(RxClock::sample);
                            let arrival = clock.arrival(got.stamp, now);
                            deliver(port, got.from, arrival, &mut buf[got.payload], &mut half.tx);
                            if half.tx.len() >= FLUSH_AT {
                                *cur = flush(r, halves, *cur, now, tcp)?;
                            }
                        }
                        recycled.push(bid);
                    }
                    if !cqueue::more(flags) {
                        // The multishot receive ended: ENOBUFS (all buffers in
                        // use), cancelled (port released) or an error.
                        let failed = res < 0 && res != -libc::ENOBUFS;
                        let (closing, failures) = match r.sockets.get_mut(&port) {
                            Some(s) => {
                                s.armed = false;
                                s.failures = if failed { s.failures + 1 } else { 0 };
                                (s.closing, s.failures)
                            }
                            None => (false, 0),
                        };
                        if closing {
                            r.sockets.remove(&port);
                        } else if failures > MAX_RECV_FAILURES {
                            // Never spin on a socket the kernel keeps failing: it
                            // stays unarmed and its endpoint expires on consent.
                            tracing::error!(port, error = %io::Error::from_raw_os_error(-res), "receive keeps failing; port no longer read");
                        } else {
                            if failed {
                                tracing::debug!(port, error = %io::Error::from_raw_os_error(-res), "receive ended; re-arming");
                            }
                            r.arm_recv(port)?;
                        }
                    }
                }
                TAG_WAKE => {
                    // Commands are read every turn; the counter only needs reset.
                    eventfd.drain();
                    rearm_wake |= !cqueue::more(flags);
                }
                TAG_TCP => {
                    // ICE-TCP connections are read every turn (the driver's).
                    rearm_tcp |= !cqueue::more(flags);
                }
                _ => {}
            }
        }
        for &bid in recycled.iter() {
            bufs.push(bid, buf_size);
        }
        if !recycled.is_empty() {
            bufs.publish();
            recycled.clear();
        }
        if rearm_wake {
            r.push(wake_sqe)?;
        }
        if rearm_tcp && let Some(sqe) = tcp_sqe.as_ref() {
            r.push(sqe)?;
        }
        Ok(())
    }

    fn tx(&mut self) -> &mut TxQueue {
        &mut self.halves[self.cur].tx
    }

    fn flush(&mut self, now: Instant, tcp: &mut TcpConns) -> io::Result<()> {
        let r = &mut self.ring;
        let sockets = &r.sockets;
        r.backlogs.retry(
            |port| sockets.get(&port).map(|s| s.sock.as_raw_fd()),
            &mut r.gso,
            &mut r.counters,
            now,
        );
        self.cur = flush(r, &mut self.halves, self.cur, now, tcp)?;
        self.ring.ring.submit()?;
        Ok(())
    }

    fn backlogged(&self) -> bool {
        !self.ring.backlogs.is_empty()
    }

    fn backlog_len(&self) -> usize {
        self.ring.backlogs.len()
    }

    fn totals(&self) -> &SendTotals {
        &self.ring.counters.totals
    }

    fn gso(&self) -> bool {
        self.ring.gso.enabled()
    }
}

/// One datagram of a multishot `RecvMsg` buffer: its source address, the
/// kernel's receive timestamp if there is one ([`rx_time::kernel_stamp`]) and
/// the payload's range in the buffer.
struct Received {
    from: SocketAddr,
    stamp: Option<Duration>,
    payload: std::ops::Range<usize>,
}

/// Parses a multishot `RecvMsg` buffer of `len` bytes: `struct
/// io_uring_recvmsg_out`, then the name and the control fields at the sizes the
/// receive's `msghdr` reserved for them (`NAME_LEN`, `CONTROL_LEN`), then the
/// payload.
fn parse_recvmsg(buf: &[u8], len: usize) -> Option<Received> {
    let buf = buf.get(..len)?;
    let header = buf.get(..RECVMSG_OUT_LEN)?;
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(header.get(i..i + 4)?.try_into().ok()?))
    };
    // A datagram larger than the buffer (MSG_TRUNC) is handed on clipped: longer
    // than the core's MAX_DATAGRAM, it is dropped and counted there (`oversized`).
    let (namelen, controllen, payloadlen) = (word(0)?, word(4)?, word(8)?);
    let name = buf.get(RECVMSG_OUT_LEN..RECVMSG_OUT_LEN + NAME_LEN)?;
    let mut storage = udp::zeroed_storage();
    // SAFETY: `name` is NAME_LEN = size_of::<sockaddr_storage>() bytes; the copy
    // is unaligned-safe and any bit pattern is a valid sockaddr_storage.
    unsafe {
        std::ptr::copy_nonoverlapping(name.as_ptr(), (&raw mut storage).cast::<u8>(), NAME_LEN);
    }
    let from = udp::storage_to_socket_addr(&storage, namelen.min(NAME_LEN as u32))?;
    let control_at = RECVMSG_OUT_LEN + NAME_LEN;
    let control_len = (controllen as usize).min(CONTROL_LEN);
    let stamp = buf
        .get(control_at..control_at + control_len)
        .and_then(rx_time::kernel_stamp);
    let start = control_at + CONTROL_LEN;
    let end = start.checked_add(payloadlen as usize)?.min(len);
    (start < end).then_some(Received {
        from,
        stamp,
        payload: start..end,
    })
}

/// Submits the sends of half `cur` and returns the half to fill next (waiting,
/// if need be, until the kernel is done with it, and then clearing it).
///
/// Datagrams of a socket that holds a backlog join the backlog instead (their
/// order holds); sends are `MSG_DONTWAIT`, so a full socket buffer completes
/// with `EAGAIN` (and the datagrams join that socket's backlog) instead of
/// holding the half, and with it the shard, until the socket drains.
fn flush(
    r: &mut Ring,
    halves: &mut [Half; 2],
    cur: usize,
    now: Instant,
    tcp: &mut TcpConns,
) -> io::Result<usize> {
    let half = &mut halves[cur];
    if half.tx.is_empty() {
        return Ok(cur);
    }
    let n = half.tx.len();
    if tcp.is_empty() {
        half.plan.build(&half.tx, r.gso.max_segments());
    } else {
        // ICE-TCP datagrams are copied into their connections' backlogs here,
        // so the half's queue holds nothing the kernel reads for them.
        half.plan
            .build_except(&half.tx, r.gso.max_segments(), |t, data| tcp.take(t, data));
        tcp.write_pending();
    }
    // Capacity for every datagram plus a GSO-less resend of each: the vectors
    // never reallocate while the kernel holds pointers into them.
    reserve_exact(&mut half.hdrs, 2 * n);
    reserve_exact(&mut half.addrs, 2 * n);
    reserve_exact(&mut half.iovs, 2 * n);
    reserve_exact(&mut half.iov_tx, 2 * n);
    reserve_exact(&mut half.cmsgs, 2 * n);
    half.hdrs.clear();
    half.addrs.clear();
    half.iovs.clear();
    half.iov_tx.clear();
    half.cmsgs.clear();
    half.msgs.clear();
    for g in 0..half.plan.groups().len() {
        let group = half.plan.groups()[g];
        let Some(sock) = r.sockets.get(&group.from_port) else {
            continue;
        };
        let fd = sock.sock.as_raw_fd();
        if r.backlogs.holds(group.from_port) {
            let mut spill = r.backlogs.spill_for(group.from_port);
            for &i in half.plan.indices(&group) {
                if let Some((t, data)) = half.tx.get(i) {
                    spill.spill(t.to, data, &mut r.counters, now);
                }
            }
            continue;
        }
        let first_iov = half.iovs.len();
        for &i in half.plan.indices(&group) {
            if let Some((_, data)) = half.tx.get(i) {
                half.iovs.push(libc::iovec {
                    iov_base: data.as_ptr().cast_mut().cast(),
                    iov_len: data.len(),
                });
                half.iov_tx.push(i);
            }
        }
        let count = half.iovs.len() - first_iov;
        let segment = (count > 1).then_some(group.segment_size);
        push_msg(
            r,
            half,
            cur,
            fd,
            (
                group.from_port,
                group.to,
                first_iov,
                count,
                segment.is_some(),
            ),
            segment,
        )?;
    }
    let next = cur ^ 1;
    // The other half may still be read by the kernel: wait for its sends.
    while halves[next].pending > 0 {
        r.ring.submit_and_wait(1)?;
        let mut seen = std::mem::take(&mut r.waiting);
        seen.clear();
        for cqe in r.ring.completion() {
            seen.push((cqe.user_data(), cqe.result(), cqe.flags()));
        }
        for &(ud, res, flags) in &seen {
            if ud & TAG_MASK == TAG_SEND {
                let h = ((ud >> 32) & 1) as usize;
                let g = (ud & 0xffff_ffff) as usize;
                complete_send(r, &mut halves[h], h, g, res, now)?;
            } else {
                r.deferred.push((ud, res, flags));
            }
        }
        r.waiting = seen;
    }
    // Every send of `next` completed: its datagrams may go.
    halves[next].tx.clear();
    Ok(next)
}

fn reserve_exact<T>(v: &mut Vec<T>, n: usize) {
    if v.capacity() < n {
        v.clear();
        v.reserve_exact(n);
    }
}

/// Queues one `SendMsg` of `msg`'s iovecs, segmented by `segment` if given.
fn push_msg(
    r: &mut Ring,
    half: &mut Half,
    h: usize,
    fd: RawFd,
    msg: Msg,
    segment: Option<usize>,
) -> io::Result<()> {
    let (_, to, first_iov, count, _) = msg;
    let mut addr = udp::zeroed_storage();
    let addr_len = udp::socket_addr_to_storage(&to, &mut addr);
    half.addrs.push(addr);
    half.cmsgs.push(udp::CmsgBuf::default());
    let mut hdr = udp::zeroed_msghdr();
    let a = half.addrs.len() - 1;
    hdr.msg_name = (&raw mut half.addrs[a]).cast();
    hdr.msg_namelen = addr_len;
    hdr.msg_iov = (&raw mut half.iovs[first_iov]).cast();
    hdr.msg_iovlen = count;
    if let Some(size) = segment {
        let c = half.cmsgs.len() - 1;
        udp::set_udp_segment(&mut hdr, &mut half.cmsgs[c], size as u16);
    }
    half.hdrs.push(hdr);
    let g = half.hdrs.len() - 1;
    half.msgs.push(msg);
    let sqe = opcode::SendMsg::new(types::Fd(fd), &raw const half.hdrs[g])
        .flags(libc::MSG_DONTWAIT as u32)
        .build()
        .user_data(TAG_SEND | ((h as u64) << 32) | g as u64);
    r.push(&sqe)?;
    half.pending += 1;
    Ok(())
}

/// Accounts a send completion: a GSO send the kernel refused (EIO, EINVAL) is
/// sent again datagram by datagram, and GSO is switched off; datagrams that
/// found the socket buffer full (EAGAIN) join its backlog; any other failure
/// is counted by reason.
fn complete_send(
    r: &mut Ring,
    half: &mut Half,
    h: usize,
    g: usize,
    res: i32,
    now: Instant,
) -> io::Result<()> {
    half.pending = half.pending.saturating_sub(1);
    let Some(&(from_port, to, first_iov, count, gso)) = half.msgs.get(g) else {
        return Ok(());
    };
    if res >= 0 {
        r.counters.sent(count, res as usize);
        return Ok(());
    }
    let err = io::Error::from_raw_os_error(-res);
    if gso && r.gso.disable_after(&err) {
        let Some(sock) = r.sockets.get(&from_port) else {
            return Ok(());
        };
        let fd = sock.sock.as_raw_fd();
        for k in 0..count {
            let msg = (from_port, to, first_iov + k, 1, false);
            push_msg(r, half, h, fd, msg, None)?;
        }
        return Ok(());
    }
    if -res == libc::EAGAIN {
        let mut spill = r.backlogs.spill_for(from_port);
        for k in first_iov..first_iov + count {
            let datagram = half.iov_tx.get(k).and_then(|&i| half.tx.get(i));
            if let Some((t, data)) = datagram {
                spill.spill(t.to, data, &mut r.counters, now);
            }
        }
        return Ok(());
    }
    r.counters.failed(now, count, &err, Some(to));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn queued_datagrams_keep_their_kernel_arrival_times() {
        if let Err(why) = probe() {
            eprintln!("skipped: no io_uring here ({why})");
            return;
        }
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let eventfd = Arc::new(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }));
        let uring = Uring::new(eventfd, 0).expect("ring");
        rx_time::backend_check::queued_datagrams_keep_their_arrival_spacing(uring);
    }
}
