//! The ICE-TCP connections of one shard (RFC 6544, passive side).
//!
//! The listener ([`super::tcp_listen`]) hands each connection to the shard its
//! first STUN check names; from then on the shard's own loop reads and writes
//! it, non-blocking, next to its UDP sockets. Each datagram of a connection
//! (RFC 4571 framing, see [`super::tcp`]) goes to the same [`ShardCore`] as a
//! UDP datagram would, on the endpoint's port and from the connection's remote
//! address; what the core sends to that (port, address) is framed onto the
//! connection instead of going out over UDP ([`TcpConns::take`]).
//!
//! Readiness comes from an epoll instance of its own ([`TcpConns::fd`]) that
//! the backend watches next to its sockets, so either backend wakes for it.
//! A connection is closed, and counted, on end of stream, an error, an
//! oversized frame, [`IDLE_TIMEOUT`] without a byte, or when its endpoint's
//! port is released.
//!
//! [`ShardCore`]: crate::proto::shard::ShardCore

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::tcp::{Deframer, FrameBacklog, PREFIX};
use crate::proto::stun;
use crate::proto::transmit::{Transmit, TxQueue};

/// A connection closes after this long without receiving a byte (ICE consent,
/// RFC 7675, expires after 30 s too; browsers check every few seconds).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most connections one shard keeps; more are refused at hand-off.
pub const MAX_CONNECTIONS: usize = 4096;

/// Bytes read from one connection per loop turn before the others get theirs.
const READ_BUDGET: usize = 64 * 1024;

/// How often idle connections are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A connection the listener accepted, handed to the shard its first STUN
/// check names, with the bytes read so far (that first frame).
#[derive(Debug)]
pub struct TcpHandoff {
    /// The connection (non-blocking).
    pub stream: std::net::TcpStream,
    /// Its remote address.
    pub peer: SocketAddr,
    /// Bytes already read from it, framed.
    pub read: Vec<u8>,
}

/// Counters of a shard's ICE-TCP connections (cumulative, except `active`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Connections taken over from the listener.
    pub adopted: u64,
    /// Connections refused at hand-off: no endpoint of this shard has the
    /// ufrag of the first check, or the shard holds [`MAX_CONNECTIONS`].
    pub refused: u64,
    /// Connections closed (any reason, refusals included).
    pub closed: u64,
    /// Gauge: open connections.
    pub active: u64,
    /// Payload bytes of the frames received.
    pub bytes_received: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Payload bytes of the frames sent (written, or waiting in a backlog).
    pub bytes_sent: u64,
    /// Frames sent (written, or waiting in a backlog).
    pub frames_sent: u64,
    /// Frames dropped because their connection's send backlog was full.
    pub frames_dropped: u64,
}

/// Why a connection was closed (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    Eof,
    Error,
    Oversized,
    Idle,
    Released,
    Replaced,
}

struct Conn {
    stream: mio::net::TcpStream,
    peer: SocketAddr,
    /// The endpoint's local port: what the core knows it by.
    port: u16,
    /// The port the core sends the endpoint's datagrams from: `port`, or in
    /// single-port mode the shared port (what [`TcpConns::take`] matches).
    send_port: u16,
    rx: Deframer,
    tx: FrameBacklog,
    last_rx: Instant,
    dirty: bool,
    hot: bool,
}

/// A shard's ICE-TCP connections: readiness, deframing, framed sends.
pub struct TcpConns {
    poll: Poll,
    events: Events,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    by_remote: HashMap<(u16, SocketAddr), usize>,
    /// Connections with frames waiting to be written.
    dirty: Vec<usize>,
    /// Connections to read (readable, or with bytes or budget left over).
    hot: Vec<usize>,
    scratch: Vec<usize>,
    stats: TcpStats,
    next_sweep: Instant,
}

impl std::fmt::Debug for TcpConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConns")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl TcpConns {
    /// No connections yet; makes the epoll instance.
    pub fn new(now: Instant) -> io::Result<Self> {
        Ok(Self {
            poll: Poll::new()?,
            events: Events::with_capacity(256),
            conns: Vec::new(),
            free: Vec::new(),
            by_remote: HashMap::new(),
            dirty: Vec::new(),
            hot: Vec::new(),
            scratch: Vec::new(),
            stats: TcpStats::default(),
            next_sweep: now + SWEEP_EVERY,
        })
    }

    /// The epoll descriptor that turns readable when a connection needs
    /// attention: the backend wakes the loop for it.
    pub fn fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }

    /// Whether no connection is open (the UDP path then skips every lookup).
    pub fn is_empty(&self) -> bool {
        self.by_remote.is_empty()
    }

    /// Whether work is left for the next turn without waiting (a connection
    /// used up its read budget or came with bytes already read).
    pub fn has_work(&self) -> bool {
        !self.hot.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> TcpStats {
        TcpStats {
            active: self.by_remote.len() as u64,
            ..self.stats
        }
    }

    /// Takes over `handoff`: `port_of` names the local port (the core's key)
    /// and the send port of the endpoint whose ufrag the first frame's STUN
    /// USERNAME carries. Refused (closed and counted) when there is none here,
    /// or the shard is full.
    pub fn adopt(
        &mut self,
        now: Instant,
        handoff: TcpHandoff,
        port_of: impl FnOnce(&[u8]) -> Option<(u16, u16)>,
    ) {
        let TcpHandoff { stream, peer, read } = handoff;
        let ports = first_username(&read).and_then(port_of);
        let Some((port, send_port)) = ports.filter(|_| self.by_remote.len() < MAX_CONNECTIONS)
        else {
            tracing::debug!(%peer, "ICE-TCP connection refused: no endpoint for its ufrag here, or full");
            self.stats.refused += 1;
            self.stats.closed += 1;
            return;
        };
        if let Some(&old) = self.by_remote.get(&(send_port, peer)) {
            self.close(old, Close::Replaced);
        }
        let _ = stream.set_nodelay(true);
        if let Err(e) = stream.set_nonblocking(true) {
            tracing::debug!(%peer, error = %e, "ICE-TCP connection unusable");
            self.stats.refused += 1;
            self.stats.closed += 1;
            return;
        }
        let mut stream = mio::net::TcpStream::from_std(stream);
        let idx = self.free.pop().unwrap_or(self.conns.len());
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(%peer, error = %e, "cannot poll an ICE-TCP connection");
            self.free.push(idx);
            self.stats.refused += 1;
            self.stats.closed += 1;
            return;
        }
        let mut rx = Deframer::new();
        rx.extend(&read);
        let conn = Conn {
            stream,
            peer,
            port,
            send_port,
            rx,
            tx: FrameBacklog::new(),
            last_rx: now,
            dirty: false,
            hot: true,
        };
        if idx == self.conns.len() {
            self.conns.push(Some(conn));
        } else if let Some(slot) = self.conns.get_mut(idx) {
            *slot = Some(conn);
        }
        self.by_remote.insert((send_port, peer), idx);
        self.hot.push(idx);
        self.stats.adopted += 1;
        tracing::debug!(%peer, port, "ICE-TCP connection adopted");
    }

    /// Reads every connection that has bytes, handing each datagram to
    /// `deliver(port, remote, datagram, tx)`, writes backlogs the socket has
    /// room for again, and closes idle connections.
    pub fn receive<F>(&mut self, now: Instant, tx: &mut TxQueue, mut deliver: F)
    where
        F: FnMut(u16, SocketAddr, &mut [u8], &mut TxQueue),
    {
        if self.by_remote.is_empty() && self.hot.is_empty() {
            return;
        }
        match self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => tracing::warn!(error = %e, "polling ICE-TCP connections failed"),
        }
        for ev in self.events.iter() {
            let idx = ev.token().0;
            let Some(Some(conn)) = self.conns.get_mut(idx) else {
                continue;
            };
            if (ev.is_readable() || ev.is_read_closed() || ev.is_error()) && !conn.hot {
                conn.hot = true;
                self.hot.push(idx);
            }
            if ev.is_writable() && !conn.tx.is_empty() && !conn.dirty {
                conn.dirty = true;
                self.dirty.push(idx);
            }
        }
        let mut hot = std::mem::take(&mut self.scratch);
        std::mem::swap(&mut hot, &mut self.hot);
        for &idx in &hot {
            self.read(idx, now, tx, &mut deliver);
        }
        hot.clear();
        self.scratch = hot;
        self.write_pending();
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            self.sweep(now);
        }
    }

    fn read<F>(&mut self, idx: usize, now: Instant, tx: &mut TxQueue, deliver: &mut F)
    where
        F: FnMut(u16, SocketAddr, &mut [u8], &mut TxQueue),
    {
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        conn.hot = false;
        let (port, peer) = (conn.port, conn.peer);
        let mut budget = READ_BUDGET;
        let outcome = loop {
            let oversized = loop {
                match conn.rx.next_frame() {
                    Ok(Some(datagram)) => {
                        self.stats.frames_received += 1;
                        self.stats.bytes_received += datagram.len() as u64;
                        deliver(port, peer, datagram, tx);
                    }
                    Ok(None) => break false,
                    Err(_) => break true,
                }
            };
            if oversized {
                break Some(Close::Oversized);
            }
            if budget == 0 {
                // Fairness: the rest waits for the next turn, which does not sleep.
                conn.hot = true;
                self.hot.push(idx);
                break None;
            }
            match conn.stream.read(conn.rx.spare()) {
                Ok(0) => break Some(Close::Eof),
                Ok(n) => {
                    conn.rx.filled(n);
                    conn.last_rx = now;
                    budget = budget.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break Some(Close::Error),
            }
        };
        if let Some(reason) = outcome {
            self.close(idx, reason);
        }
    }

    /// Frames `data` onto the connection `t` goes to, if it is one: `true`
    /// when the transmit was ICE-TCP's (sent, backlogged, or dropped and
    /// counted when the connection's backlog is full), `false` for UDP.
    pub fn take(&mut self, t: &Transmit, data: &[u8]) -> bool {
        if self.by_remote.is_empty() {
            return false;
        }
        let Some(&idx) = self.by_remote.get(&(t.from_port, t.to)) else {
            return false;
        };
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return false;
        };
        if conn.tx.push(data) {
            self.stats.frames_sent += 1;
            self.stats.bytes_sent += data.len() as u64;
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(idx);
            }
        } else {
            self.stats.frames_dropped += 1;
        }
        true
    }

    /// Writes the backlogs of connections that got frames, as far as their
    /// sockets take them; the rest waits for the socket to be writable.
    pub fn write_pending(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &idx in &dirty {
            let Some(Some(conn)) = self.conns.get_mut(idx) else {
                continue;
            };
            conn.dirty = false;
            let failed = loop {
                let pending = conn.tx.pending();
                if pending.is_empty() {
                    break false;
                }
                match conn.stream.write(pending) {
                    Ok(0) => break true,
                    Ok(n) => conn.tx.consume(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break true,
                }
            };
            if failed {
                self.close(idx, Close::Error);
            }
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Closes the connections of an endpoint whose port was released.
    pub fn release_port(&mut self, port: u16) {
        if self.by_remote.is_empty() {
            return;
        }
        let gone: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| c.port == port))
            .map(|(idx, _)| idx)
            .collect();
        for idx in gone {
            self.close(idx, Close::Released);
        }
    }

    fn sweep(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let idle = self.conns[idx]
                .as_ref()
                .is_some_and(|c| now.saturating_duration_since(c.last_rx) >= IDLE_TIMEOUT);
            if idle {
                self.close(idx, Close::Idle);
            }
        }
    }

    fn close(&mut self, idx: usize, reason: Close) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.by_remote.remove(&(conn.send_port, conn.peer));
        self.free.push(idx);
        self.stats.closed += 1;
        tracing::debug!(peer = %conn.peer, port = conn.port, ?reason, "ICE-TCP connection closed");
    }
}

/// The STUN USERNAME of the first frame in `framed` (RFC 4571 framing), if
/// that frame is a STUN Binding request that carries one.
pub fn first_username(framed: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*framed.first()?, *framed.get(1)?]));
    let frame = framed.get(PREFIX..PREFIX + len)?;
    let msg = stun::Message::parse(frame).ok()?;
    if !msg.is_binding_request() {
        return None;
    }
    msg.username()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::stun::{BindingRequest, IceRole, IntegrityKey, TransactionId};
    use std::net::{TcpListener, TcpStream};

    /// A framed STUN check with USERNAME `username`.
    fn framed_check(username: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let req = BindingRequest {
            transaction_id: TransactionId([3; 12]),
            username,
            priority: 1,
            role: IceRole::Controlling { tie_breaker: 1 },
            use_candidate: false,
        };
        let n =
            stun::write_binding_request(&mut buf, &req, &IntegrityKey::new(b"pwd")).expect("check");
        let mut framed = (n as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&buf[..n]);
        framed
    }

    /// A connected pair on 127.0.0.1: (the bridge's side as a hand-off, the client).
    fn handoff(first: &[u8]) -> (TcpHandoff, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (stream, peer) = l.accept().expect("accept");
        let h = TcpHandoff {
            stream,
            peer,
            read: first.to_vec(),
        };
        (h, client)
    }

    #[test]
    fn the_first_frame_names_the_endpoint_and_its_datagram_is_delivered() {
        let t0 = Instant::now();
        let mut conns = TcpConns::new(t0).expect("epoll");
        let first = framed_check(b"07abcdefgh:clnt");
        assert_eq!(first_username(&first), Some(&b"07abcdefgh:clnt"[..]));
        let (h, _client) = handoff(&first);
        let peer = h.peer;
        conns.adopt(t0, h, |u| {
            (u == b"07abcdefgh:clnt").then_some((10_007, 10_007))
        });
        assert_eq!(conns.stats().active, 1);
        let mut tx = TxQueue::with_capacity(4);
        let mut got = Vec::new();
        conns.receive(t0, &mut tx, |port, from, d, _| {
            got.push((port, from, d.len()))
        });
        assert_eq!(got, vec![(10_007, peer, first.len() - PREFIX)]);
        // Another ufrag, or garbage: refused and closed.
        let (h, _c) = handoff(&framed_check(b"07zzzzzzzz:clnt"));
        conns.adopt(t0, h, |_| None);
        let (h, _c) = handoff(b"\x00\x03abc");
        conns.adopt(t0, h, |_| Some((1, 1)));
        let s = conns.stats();
        assert_eq!((s.adopted, s.refused, s.closed, s.active), (1, 2, 2, 1));
    }

    #[test]
    fn sends_to_the_connection_are_framed_and_a_full_backlog_drops_and_counts() {
        let t0 = Instant::now();
        let mut conns = TcpConns::new(t0).expect("epoll");
        let (h, mut client) = handoff(&framed_check(b"00abcdefgh:clnt"));
        let peer = h.peer;
        // Single-port mode: the endpoint's key is 3, its datagrams leave from 10000.
        conns.adopt(t0, h, |_| Some((3, 10_000)));
        let to_tcp = Transmit {
            from_port: 10_000,
            to: peer,
            len: 3,
        };
        let to_udp = Transmit {
            from_port: 10_001,
            to: peer,
            len: 3,
        };
        assert!(conns.take(&to_tcp, b"abc"));
        assert!(!conns.take(&to_udp, b"abc"), "another port's remote is UDP");
        conns.write_pending();
        let mut buf = [0u8; 5];
        client.read_exact(&mut buf).expect("framed datagram");
        assert_eq!(&buf, b"\x00\x03abc");
        // The client reads nothing more: the socket buffers, then the 64 KiB
        // backlog fill, and the rest is dropped and counted.
        let big = [7u8; 1200];
        for _ in 0..10_000 {
            assert!(conns.take(&to_tcp, &big));
            conns.write_pending();
        }
        let s = conns.stats();
        assert!(s.frames_dropped > 0, "{s:?}");
        assert_eq!(s.frames_sent + s.frames_dropped, 10_001);
    }

    #[test]
    fn an_idle_connection_is_closed_after_the_timeout_and_a_busy_one_is_not() {
        let t0 = Instant::now();
        let mut conns = TcpConns::new(t0).expect("epoll");
        let (h, mut idle_client) = handoff(&framed_check(b"00abcdefgh:clnt"));
        conns.adopt(t0, h, |_| Some((10_000, 10_000)));
        let (h, mut busy_client) = handoff(&framed_check(b"00ijklmnop:clnt"));
        conns.adopt(t0, h, |_| Some((10_001, 10_001)));
        let mut tx = TxQueue::with_capacity(4);
        conns.receive(t0, &mut tx, |_, _, _, _| {});
        // The busy one sends a frame at t0 + 20 s.
        busy_client.write_all(b"\x00\x01x").expect("write");
        std::thread::sleep(Duration::from_millis(50));
        conns.receive(t0 + Duration::from_secs(20), &mut tx, |_, _, _, _| {});
        assert_eq!(conns.stats().active, 2);
        conns.receive(
            t0 + IDLE_TIMEOUT + Duration::from_secs(1),
            &mut tx,
            |_, _, _, _| {},
        );
        let s = conns.stats();
        assert_eq!((s.active, s.closed), (1, 1), "{s:?}");
        idle_client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 1];
        assert_eq!(
            idle_client.read(&mut buf).expect("eof"),
            0,
            "closed by the bridge"
        );
    }
}
