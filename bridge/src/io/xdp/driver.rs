//! The AF_XDP backend of the shard loop ([`crate::io::driver::Io`]): one XSK
//! on one queue of the media interface. Datagrams arrive as frames on the RX
//! ring, are parsed in place ([`super::frame`]) and handed to the core as a
//! slice of the UMEM frame (so it decrypts in place there). The send queue
//! is lent TX frames ([`TxQueue::with_lent_frames`]): the core writes each
//! receiver's copy straight into one, after room for the headers, and a
//! flush writes the headers in front (checksums, the next hop's MAC) and
//! publishes the frame on the TX ring as it is, with one wake-up per flush.
//!
//! The endpoint's UDP socket is still bound (the loop's [`Ports`] binds it):
//! it holds the port against other programs, and carries the datagrams the
//! XDP path does not. Those are the ones to a destination whose MAC the
//! kernel's neighbour table does not hold yet (the kernel sends them and
//! resolves the address on the way, so a lookup [`UNRESOLVED_RETRY`] later
//! finds it), whose route leaves by another interface, or of an address
//! family other than the bridge address's. Next-hop MACs are cached per
//! destination; a lookup is one netlink request, made on the first datagram
//! to a new destination, not per packet. The kernel's neighbour and route
//! changes ([`super::neigh_watch`], polled beside the XSK) update or drop
//! cached entries as they happen; [`NEIGHBOUR_TTL`] is the bound for a
//! change the watch missed (it could not open, or lost messages).
//!
//! [`Ports`]: crate::io::driver::Ports

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::frame::{self, Path};
use super::neigh::{Link, Netlink};
use super::neigh_watch::{Change, NeighbourWatch};
use super::socket::XskSocket;
use crate::io::driver::Io;
use crate::io::send::{SendFailure, SendTotals};
use crate::io::tcp_conns::TcpConns;
use crate::proto::transmit::{Transmit, TxQueue};

const XSK: Token = Token(0);
const TCP: Token = Token(1);
/// Token of a waker registered on the backend's poll by its owner.
pub const WAKER: Token = Token(2);
/// Token of the neighbour watch (far above the sockets' tokens).
const NEIGH: Token = Token(usize::MAX - 1);
/// Tokens of the endpoints' kernel sockets: this plus the port.
const SOCKET_BASE: usize = 3;
/// Receive buffer for a datagram that reached a kernel socket.
const KERNEL_BUF: usize = 2048;
/// Flush the send queue when it holds this many datagrams.
const FLUSH_AT: usize = 256;
/// How long a next-hop MAC found is trusted when no change of it was
/// heard (the neighbour table's own reachability time is about 30 s); then
/// it is looked up again.
pub const NEIGHBOUR_TTL: Duration = Duration::from_secs(5);
/// How soon a destination sent through the kernel (unresolved neighbour,
/// another interface's route) is looked up again.
pub const UNRESOLVED_RETRY: Duration = Duration::from_millis(200);
/// TX frames the send queue is kept lent (the core writes datagrams into
/// them): more than one flush's worth ([`FLUSH_AT`] plus the fan-out of the
/// datagram that crossed it).
const TX_SPARE: usize = 1024;
/// Frames taken from the RX ring per [`Io::receive`] before the fill ring is
/// topped up.
const RX_BUDGET: usize = 1024;

/// Counters of the XDP path beyond [`SendTotals`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpCounters {
    /// Datagrams received through the XSK and handed to the core.
    pub xsk_received: u64,
    /// Frames received that were not a UDP datagram for a port of this shard.
    pub rx_dropped: u64,
    /// Datagrams sent through the kernel's socket instead (no neighbour
    /// entry yet, another interface's route, or another address family).
    pub kernel_sent: u64,
    /// Datagrams received through the kernel's socket (the XDP program
    /// passed them: fragments, IPv4 options, IPv6 extension headers).
    pub kernel_received: u64,
    /// Neighbour lookups made (cache misses).
    pub neighbour_lookups: u64,
}

/// A cached next hop: its MAC (`None`: the kernel's socket sends), the
/// address it is the neighbour entry of, and when it was looked up.
#[derive(Debug, Clone, Copy)]
struct Neighbour {
    mac: Option<[u8; 6]>,
    hop: Option<IpAddr>,
    at: Instant,
}

/// The backend's state.
#[derive(Debug)]
pub struct XskIo {
    xsk: XskSocket,
    poll: Poll,
    events: Events,
    /// The endpoints' kernel sockets, by port (polled too: they get what the
    /// XDP program passes for a media port, e.g. reassembled fragments or
    /// IPv4 with options).
    sockets: HashMap<u16, UdpSocket>,
    kernel_buf: Vec<u8>,
    /// The address the bridge sends from.
    local: IpAddr,
    link: Link,
    netlink: Netlink,
    /// Next-hop MAC by destination address, with when it was looked up
    /// (`None`: the route leaves by another interface, or the neighbour is
    /// unresolved; the kernel's socket sends). Looked up again after
    /// [`NEIGHBOUR_TTL`], or at once when the watch hears it changed.
    neighbours: HashMap<IpAddr, Neighbour>,
    /// The kernel's neighbour and route changes (`None`: it could not be
    /// opened; the TTL alone then bounds a stale entry).
    watch: Option<NeighbourWatch>,
    /// The watch had more to read at its last drain.
    watch_pending: bool,
    ifindex: u32,
    tx: TxQueue,
    totals: SendTotals,
    counters: XdpCounters,
}

impl XskIo {
    /// The backend over `xsk` (bound to a queue of `ifindex`), sending from
    /// `local` (one of the addresses the XDP program redirects). Opens its
    /// netlink socket and poll instance in the calling thread's network
    /// namespace; `poll` may already hold a waker registered as [`WAKER`].
    pub fn new(xsk: XskSocket, ifindex: u32, local: IpAddr, poll: Poll) -> io::Result<Self> {
        let mut netlink = Netlink::open()?;
        let link = netlink.link(ifindex)?;
        poll.registry().register(
            &mut mio::unix::SourceFd(&xsk.as_raw_fd()),
            XSK,
            Interest::READABLE,
        )?;
        let watch = match NeighbourWatch::open().and_then(|w| {
            poll.registry()
                .register(&mut mio::unix::SourceFd(&w.fd()), NEIGH, Interest::READABLE)
                .map(|()| w)
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    ttl_s = NEIGHBOUR_TTL.as_secs(),
                    "no netlink neighbour watch: cached next hops are looked up again only after their TTL"
                );
                None
            }
        };
        let frame_size = xsk.umem().config().frame_size as usize;
        let tx = TxQueue::with_lent_frames(
            xsk.umem().frame_area(),
            frame_size,
            frame::payload_offset,
            TX_SPARE,
        );
        let mut io = Self {
            xsk,
            poll,
            events: Events::with_capacity(64),
            sockets: HashMap::new(),
            kernel_buf: vec![0; KERNEL_BUF],
            local,
            link,
            netlink,
            neighbours: HashMap::new(),
            watch,
            watch_pending: false,
            ifindex,
            tx,
            totals: SendTotals::default(),
            counters: XdpCounters::default(),
        };
        Self::top_up(&mut io.xsk, &mut io.tx);
        Ok(io)
    }

    /// The XDP path's own counters.
    pub fn counters(&self) -> XdpCounters {
        self.counters
    }

    /// The socket (for its mode and kernel counters).
    pub fn xsk(&self) -> &XskSocket {
        &self.xsk
    }

    /// Reads the neighbour watch and applies what changed on this backend's
    /// interface to the cache: a next hop's new MAC replaces the cached one,
    /// a deleted or failed entry drops the destinations through it, a newly
    /// usable one drops the unresolved destinations (to be looked up again
    /// at once), and a route change drops everything.
    fn read_watch(&mut self, now: Instant) {
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        let (neighbours, ifindex) = (&mut self.neighbours, self.ifindex);
        let drained = watch.drain(|c| match c {
            Change::Routes => neighbours.clear(),
            Change::Neighbour {
                ifindex: i,
                ip,
                mac,
            } if i == ifindex => {
                neighbours.retain(|_, n| match (n.hop == Some(ip), mac) {
                    (true, Some(m)) => {
                        n.mac = Some(m);
                        n.at = now;
                        true
                    }
                    (true, None) => false,
                    (false, Some(_)) => n.mac.is_some(),
                    (false, None) => true,
                });
            }
            Change::Neighbour { .. } => {}
        });
        self.watch_pending = match drained {
            Ok(more) => more,
            Err(e) => {
                tracing::debug!(error = %e, "netlink neighbour watch read failed");
                false
            }
        };
    }

    fn fail(totals: &mut SendTotals, reason: SendFailure) {
        totals.failed[reason.index()] += 1;
    }

    /// Lends the send queue free TX frames up to [`TX_SPARE`], so the core
    /// writes each datagram into the frame it leaves in.
    fn top_up(xsk: &mut XskSocket, tx: &mut TxQueue) {
        while tx.spare_frames() < TX_SPARE {
            let Some(f) = xsk.umem_mut().take_tx() else {
                break;
            };
            if !tx.lend(f) {
                xsk.umem_mut().give_tx(f);
                break;
            }
        }
    }

    /// Frames everything in `tx` onto the TX ring (datagrams for ICE-TCP
    /// connections onto them, unresolved ones through the kernel), wakes the
    /// kernel once, and takes back completed frames. Each datagram already
    /// lies in its TX frame, after room for the headers: they are written
    /// in front of it, and the frame is published as it is. A frame that
    /// does not go out on the ring goes back to the UMEM's free list.
    fn send_all(&mut self, now: Instant, tcp: &mut TcpConns) {
        let Self {
            xsk,
            sockets,
            local,
            link,
            netlink,
            neighbours,
            ifindex,
            tx,
            totals,
            counters,
            ..
        } = self;
        xsk.reap_completions();
        let unslotted = tx.take_unslotted();
        if unslotted > 0 {
            totals.failed[SendFailure::BacklogFull.index()] += unslotted;
        }
        if tx.is_empty() {
            if xsk.tx_pending() > 0 {
                // Left over by copy mode's batch limit or a busy device.
                let _ = xsk.flush_tx();
            }
            return;
        }
        let mut to_tcp = false;
        let max_frame =
            (link.mtu as usize + frame::ETH_LEN).min(xsk.umem().config().frame_size as usize);
        for i in 0..tx.len() {
            let (Some((&t, data)), Some(addr)) = (tx.get(i), tx.frame(i)) else {
                continue;
            };
            // The datagram's frame: on the TX ring, or back to the UMEM.
            let mut publish = None;
            if !tcp.is_empty() && tcp.take(&t, data) {
                to_tcp = true;
            } else if let Some(dst_mac) = Self::next_hop(
                now, &t, *local, *ifindex, netlink, neighbours, counters, totals,
            ) {
                match dst_mac {
                    Some(dst_mac) => {
                        if frame::payload_offset(&t.to) + data.len() > max_frame {
                            Self::fail(totals, SendFailure::TooBig);
                        } else {
                            publish = Some(Path {
                                src_mac: link.mac,
                                dst_mac,
                                src: SocketAddr::new(*local, t.from_port),
                                dst: t.to,
                            });
                        }
                    }
                    None => {
                        // The kernel resolves the neighbour (or speaks the
                        // other family) on its own path.
                        counters.kernel_sent += 1;
                        match sockets.get(&t.from_port).map(|s| s.send_to(data, t.to)) {
                            Some(Ok(_)) => {
                                totals.packets += 1;
                                totals.bytes += data.len() as u64;
                            }
                            Some(Err(e)) => Self::fail(totals, SendFailure::of(&e)),
                            None => Self::fail(totals, SendFailure::Other),
                        }
                    }
                }
            }
            let Some(path) = publish else {
                xsk.umem_mut().give_tx(addr);
                continue;
            };
            // `data` is not used past here: the frame is written through
            // the UMEM now, headers in front of the payload.
            let size = xsk.umem().config().frame_size as usize;
            let len = xsk
                .umem_mut()
                .bytes_mut(addr, size)
                .and_then(|f| frame::write_headers(f, &path, t.len, frame::DEFAULT_TTL).ok());
            let Some(len) = len else {
                xsk.umem_mut().give_tx(addr);
                Self::fail(totals, SendFailure::Other);
                continue;
            };
            let mut sent = xsk.publish(addr, len);
            if !sent {
                // The ring is full: publish, take completions back, try once
                // more.
                let _ = xsk.flush_tx();
                xsk.reap_completions();
                sent = xsk.publish(addr, len);
            }
            if sent {
                totals.packets += 1;
                totals.bytes += t.len as u64;
            } else {
                xsk.umem_mut().give_tx(addr);
                Self::fail(totals, SendFailure::BacklogFull);
            }
        }
        if to_tcp {
            tcp.write_pending();
        }
        if let Err(e) = xsk.flush_tx() {
            tracing::debug!(error = %e, "XSK TX wake-up failed");
        }
        tx.clear_sent();
    }

    /// The next hop's MAC for `t`: `Some(Some(mac))` to frame it here,
    /// `Some(None)` to send it through the kernel's socket, `None` when the
    /// lookup failed (counted). Cached per destination.
    #[allow(clippy::too_many_arguments)]
    fn next_hop(
        now: Instant,
        t: &Transmit,
        local: IpAddr,
        ifindex: u32,
        netlink: &mut Netlink,
        neighbours: &mut HashMap<IpAddr, Neighbour>,
        counters: &mut XdpCounters,
        totals: &mut SendTotals,
    ) -> Option<Option<[u8; 6]>> {
        if local.is_ipv4() != t.to.is_ipv4() {
            return Some(None);
        }
        if let Some(n) = neighbours.get(&t.to.ip()) {
            let ttl = if n.mac.is_some() {
                NEIGHBOUR_TTL
            } else {
                UNRESOLVED_RETRY
            };
            if now.saturating_duration_since(n.at) < ttl {
                return Some(n.mac);
            }
        }
        counters.neighbour_lookups += 1;
        let (mac, hop) = match netlink.next_hop_mac(t.to.ip()) {
            // Another interface's route: not ours to frame.
            Ok(Some((route, m))) if route.ifindex == ifindex => {
                (Some(m), Some(route.next_hop(t.to.ip())))
            }
            Ok(_) => (None, None),
            Err(e) => {
                Self::fail(totals, SendFailure::of(&e));
                return None;
            }
        };
        neighbours.insert(t.to.ip(), Neighbour { mac, hop, at: now });
        Some(mac)
    }
}

impl Io for XskIo {
    fn open(&mut self, port: u16, socket: UdpSocket) -> io::Result<()> {
        socket.set_nonblocking(true)?;
        self.poll.registry().register(
            &mut mio::unix::SourceFd(&socket.as_raw_fd()),
            Token(SOCKET_BASE + usize::from(port)),
            Interest::READABLE,
        )?;
        self.sockets.insert(port, socket);
        Ok(())
    }

    fn close(&mut self, port: u16) {
        if let Some(s) = self.sockets.remove(&port) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut mio::unix::SourceFd(&s.as_raw_fd()));
        }
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
        self.xsk.refill();
        // epoll's poll of the XSK wakes the driver when the fill ring asks.
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            r => r,
        }
    }

    fn receive<F>(&mut self, now: Instant, tcp: &mut TcpConns, mut deliver: F) -> io::Result<()>
    where
        F: FnMut(u16, SocketAddr, Instant, &mut [u8], &mut TxQueue),
    {
        let mut n = 0;
        while n < RX_BUDGET {
            if self.tx.spare_frames() < TX_SPARE / 2 {
                Self::top_up(&mut self.xsk, &mut self.tx);
            }
            let Some(f) = self.xsk.recv() else { break };
            n += 1;
            let parsed = self.xsk.umem().bytes(f.addr, f.len).map(frame::parse_udp);
            match parsed {
                Some(Ok(d)) if self.sockets.contains_key(&d.dst.port()) => {
                    let port = d.dst.port();
                    if let Some(bytes) = self.xsk.umem_mut().bytes_mut(f.addr, f.len)
                        && let Some(payload) = bytes.get_mut(d.payload)
                    {
                        self.counters.xsk_received += 1;
                        deliver(port, d.src, now, payload, &mut self.tx);
                    }
                }
                _ => self.counters.rx_dropped += 1,
            }
            self.xsk.recycle(f);
            if self.tx.len() >= FLUSH_AT {
                self.send_all(now, tcp);
            }
        }
        self.xsk.release_rx();
        self.xsk.refill();
        if self.xsk.rx_needs_wakeup() {
            self.xsk.wake_rx();
        }
        // Before anything queued now is framed (`flush`).
        if self.watch_pending || self.events.iter().any(|e| e.token() == NEIGH) {
            self.read_watch(now);
        }
        // What the XDP program left to the kernel for a media port
        // (edge-triggered: read until EAGAIN, a bounded number of times).
        for event in self.events.iter() {
            let Some(port) = event
                .token()
                .0
                .checked_sub(SOCKET_BASE)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            let Some(sock) = self.sockets.get(&port) else {
                continue;
            };
            for _ in 0..RX_BUDGET {
                match sock.recv_from(&mut self.kernel_buf) {
                    Ok((n, from)) => {
                        self.counters.kernel_received += 1;
                        if self.tx.spare_frames() < TX_SPARE / 2 {
                            Self::top_up(&mut self.xsk, &mut self.tx);
                        }
                        if let Some(d) = self.kernel_buf.get_mut(..n) {
                            deliver(port, from, now, d, &mut self.tx);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        Ok(())
    }

    fn tx(&mut self) -> &mut TxQueue {
        if self.tx.spare_frames() < TX_SPARE / 2 {
            Self::top_up(&mut self.xsk, &mut self.tx);
        }
        &mut self.tx
    }

    fn flush(&mut self, now: Instant, tcp: &mut TcpConns) -> io::Result<()> {
        self.send_all(now, tcp);
        Ok(())
    }

    fn backlogged(&self) -> bool {
        // Frames still on the TX ring: come back soon to take completions
        // (the frames lent to the send queue are not in flight).
        self.xsk.tx_in_flight() > self.tx.spare_frames() + self.tx.len()
    }

    fn backlog_len(&self) -> usize {
        0
    }

    fn totals(&self) -> &SendTotals {
        &self.totals
    }

    fn gso(&self) -> bool {
        false
    }

    fn xdp_counters(&self) -> Option<XdpCounters> {
        Some(self.counters)
    }
}
