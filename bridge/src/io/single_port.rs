//! Single-port mode (`media.port`): every shard has one UDP socket on the same
//! address and port, in one `SO_REUSEPORT` group, and the datagrams of an
//! endpoint reach the shard that owns it.
//!
//! - Once ICE validates an endpoint's remote address, its shard records
//!   "address → shard" ([`SinglePort::steer`]): in the kernel's steering map
//!   ([`super::steer_bpf`]), so that the endpoint's datagrams land on the
//!   owner's socket without a cross-core hop, and in a table shared by the
//!   shards for when the program could not be loaded.
//! - A datagram that lands on another shard (a new endpoint's first checks,
//!   picked by the kernel's hash; or every datagram when there is no program)
//!   is passed to its owner over that shard's bounded lock-free queue
//!   ([`SinglePort::hand_off`], counted): the owner is named by the STUN
//!   USERNAME (the local ufrag starts with the shard index) or by the shared
//!   table. The owner answers from its own socket, the same port, so the
//!   client sees one bridge address.
//!
//! Nothing here allocates per datagram: the queues hold fixed-size slots
//! allocated once.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crossbeam_queue::ArrayQueue;
use socket2::{Domain, Protocol, Socket, Type};

use super::shard::ShardWaker;
use super::steer_bpf::Steering;
use super::udp::SOCKET_BUFFER_BYTES;

/// Datagrams each shard's hand-off queue holds; past it they are dropped and
/// counted (the sender retransmits, as after any loss).
pub const HANDOFF_QUEUE: usize = 256;

/// Largest datagram passed between shards (the drivers' receive buffer).
pub const HANDOFF_MAX: usize = 2048;

/// One datagram passed to its owning shard.
pub struct HandOff {
    /// Its source.
    pub from: SocketAddr,
    len: u16,
    data: [u8; HANDOFF_MAX],
}

impl HandOff {
    /// The datagram, to be handled in place.
    pub fn datagram(&mut self) -> &mut [u8] {
        let len = usize::from(self.len).min(HANDOFF_MAX);
        &mut self.data[..len]
    }
}

impl std::fmt::Debug for HandOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandOff")
            .field("from", &self.from)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Why a datagram could not be passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandOffError {
    /// The owner's queue is full.
    #[error("the owning shard's hand-off queue is full")]
    Full,
    /// Larger than [`HANDOFF_MAX`].
    #[error("datagram too large to hand off")]
    TooBig,
    /// No shard has that index.
    #[error("no such shard")]
    NoShard,
}

/// The shards' shared port: their sockets (until each shard takes its own),
/// the steering program if it loaded, the shared steering table, and a
/// hand-off queue and waker per shard.
pub struct SinglePort {
    port: u16,
    sockets: Mutex<Vec<Option<UdpSocket>>>,
    steering: Option<Steering>,
    table: RwLock<HashMap<SocketAddr, usize>>,
    queues: Box<[ArrayQueue<HandOff>]>,
    wakers: Box<[OnceLock<Arc<dyn ShardWaker>>]>,
    handoffs: AtomicU64,
    handoffs_dropped: AtomicU64,
}

impl std::fmt::Debug for SinglePort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinglePort")
            .field("port", &self.port)
            .field("shards", &self.queues.len())
            .field("steering", &self.steering.is_some())
            .finish_non_exhaustive()
    }
}

/// One `SO_REUSEPORT` UDP socket on `addr`, non-blocking, with the media
/// socket buffers requested.
fn reuseport_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl SinglePort {
    /// Binds `shards` sockets to `bind:port` (port 0: one the kernel picks,
    /// for tests) and attaches the steering program; when the program cannot
    /// be loaded, one line says why and the shards steer by hand-off alone.
    /// `steer` false skips the program (to measure or test the fallback).
    pub fn bind(bind: IpAddr, port: u16, shards: usize, steer: bool) -> io::Result<Arc<Self>> {
        let first = reuseport_socket(SocketAddr::new(bind, port))?;
        let port = first.local_addr()?.port();
        let mut sockets = vec![first];
        for _ in 1..shards {
            sockets.push(reuseport_socket(SocketAddr::new(bind, port))?);
        }
        let steering = if steer {
            let fds: Vec<_> = sockets.iter().map(AsRawFd::as_raw_fd).collect();
            match Steering::attach(&fds) {
                Ok(s) => {
                    tracing::info!(port, shards, "single-port mode: datagrams steered by eBPF");
                    Some(s)
                }
                Err(e) => {
                    tracing::warn!(
                        port,
                        shards,
                        reason = %e,
                        "single-port mode without the eBPF steering program (datagrams that \
                         land on another shard are handed off: correct, slower)"
                    );
                    None
                }
            }
        } else {
            None
        };
        Ok(Arc::new(Self {
            port,
            sockets: Mutex::new(sockets.into_iter().map(Some).collect()),
            steering,
            table: RwLock::new(HashMap::new()),
            queues: (0..shards)
                .map(|_| ArrayQueue::new(HANDOFF_QUEUE))
                .collect(),
            wakers: (0..shards).map(|_| OnceLock::new()).collect(),
            handoffs: AtomicU64::new(0),
            handoffs_dropped: AtomicU64::new(0),
        }))
    }

    /// The shared port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the eBPF steering program is attached.
    pub fn steered(&self) -> bool {
        self.steering.is_some()
    }

    /// Datagrams passed from one shard to another so far.
    pub fn handoffs(&self) -> u64 {
        self.handoffs.load(Ordering::Relaxed)
    }

    /// Datagrams that could not be passed on (queue full, too big).
    pub fn handoffs_dropped(&self) -> u64 {
        self.handoffs_dropped.load(Ordering::Relaxed)
    }

    /// Shard `shard`'s socket, once (its driver takes it at start).
    pub fn take_socket(&self, shard: usize) -> Option<UdpSocket> {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        sockets.get_mut(shard)?.take()
    }

    /// Registers shard `shard`'s waker (at spawn).
    pub fn set_waker(&self, shard: usize, waker: Arc<dyn ShardWaker>) {
        if let Some(slot) = self.wakers.get(shard) {
            let _ = slot.set(waker);
        }
    }

    /// The shard that validated `from`, if any.
    pub fn owner_of(&self, from: SocketAddr) -> Option<usize> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        table.get(&from).copied()
    }

    /// Records that `from` belongs to shard `shard`: from now on the kernel
    /// delivers its datagrams to that shard's socket (when steering is on).
    pub fn steer(&self, from: SocketAddr, shard: usize) {
        if let Some(s) = &self.steering
            && let Err(e) = s.insert(from, shard)
        {
            tracing::debug!(%from, shard, error = %e, "steering map update failed");
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        table.insert(from, shard);
    }

    /// Forgets `from` if shard `shard` owns it (its endpoint left).
    pub fn unsteer(&self, from: SocketAddr, shard: usize) {
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        if table.get(&from) == Some(&shard) {
            table.remove(&from);
            if let Some(s) = &self.steering {
                s.remove(from);
            }
        }
    }

    /// Passes `datagram` from `from` to shard `owner` and wakes it; counted.
    pub fn hand_off(
        &self,
        owner: usize,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), HandOffError> {
        let result = self.push(owner, from, datagram);
        match result {
            Ok(()) => {
                self.handoffs.fetch_add(1, Ordering::Relaxed);
                if let Some(w) = self.wakers.get(owner).and_then(OnceLock::get) {
                    let _ = w.wake();
                }
            }
            Err(_) => {
                self.handoffs_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn push(&self, owner: usize, from: SocketAddr, datagram: &[u8]) -> Result<(), HandOffError> {
        let queue = self.queues.get(owner).ok_or(HandOffError::NoShard)?;
        let len = u16::try_from(datagram.len())
            .ok()
            .filter(|&l| usize::from(l) <= HANDOFF_MAX)
            .ok_or(HandOffError::TooBig)?;
        let mut h = HandOff {
            from,
            len,
            data: [0; HANDOFF_MAX],
        };
        h.data[..datagram.len()].copy_from_slice(datagram);
        queue.push(h).map_err(|_| HandOffError::Full)
    }

    /// The next datagram another shard passed to shard `shard`.
    pub fn take_handed(&self, shard: usize) -> Option<HandOff> {
        self.queues.get(shard)?.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn unbound(shards: usize) -> SinglePort {
        SinglePort {
            port: 0,
            sockets: Mutex::new(Vec::new()),
            steering: None,
            table: RwLock::new(HashMap::new()),
            queues: (0..shards)
                .map(|_| ArrayQueue::new(HANDOFF_QUEUE))
                .collect(),
            wakers: (0..shards).map(|_| OnceLock::new()).collect(),
            handoffs: AtomicU64::new(0),
            handoffs_dropped: AtomicU64::new(0),
        }
    }

    #[derive(Debug, Default)]
    struct CountingWaker(AtomicU64);

    impl ShardWaker for CountingWaker {
        fn wake(&self) -> io::Result<()> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn a_handed_off_datagram_reaches_its_owner_intact_and_wakes_it() {
        let sp = unbound(3);
        let waker = Arc::new(CountingWaker::default());
        sp.set_waker(2, waker.clone());
        sp.hand_off(2, addr(5000), b"\x00\x01hello").expect("room");
        assert!(sp.take_handed(0).is_none(), "only the owner gets it");
        let mut h = sp.take_handed(2).expect("queued");
        assert_eq!(h.from, addr(5000));
        assert_eq!(h.datagram(), b"\x00\x01hello");
        assert!(sp.take_handed(2).is_none());
        assert_eq!(sp.handoffs(), 1);
        assert_eq!(waker.0.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let sp = unbound(2);
        for k in 0..HANDOFF_QUEUE {
            sp.hand_off(1, addr(k as u16 + 1), &[k as u8])
                .expect("room");
        }
        assert_eq!(sp.hand_off(1, addr(9), &[1]), Err(HandOffError::Full));
        assert_eq!(
            sp.hand_off(0, addr(9), &[0; HANDOFF_MAX + 1]),
            Err(HandOffError::TooBig)
        );
        assert_eq!(sp.hand_off(5, addr(9), &[1]), Err(HandOffError::NoShard));
        assert_eq!(
            (sp.handoffs(), sp.handoffs_dropped()),
            (HANDOFF_QUEUE as u64, 3)
        );
        // In order, first in first out.
        let first = sp.take_handed(1).expect("queued");
        assert_eq!(first.from, addr(1));
    }

    #[test]
    fn the_queue_passes_datagrams_between_threads() {
        let sp = Arc::new(unbound(2));
        let producer = {
            let sp = sp.clone();
            std::thread::spawn(move || {
                let mut sent = 0u32;
                while sent < 10_000 {
                    if sp.hand_off(1, addr(1), &sent.to_be_bytes()).is_ok() {
                        sent += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let mut next = 0u32;
        while next < 10_000 {
            if let Some(mut h) = sp.take_handed(1) {
                assert_eq!(h.datagram(), next.to_be_bytes(), "in order, intact");
                next += 1;
            } else {
                std::thread::yield_now();
            }
        }
        producer.join().expect("producer");
    }

    #[test]
    fn only_the_owner_can_unsteer_an_address() {
        let sp = unbound(2);
        sp.steer(addr(7), 0);
        sp.steer(addr(7), 1); // the address moved to an endpoint of shard 1
        sp.unsteer(addr(7), 0);
        assert_eq!(sp.owner_of(addr(7)), Some(1));
        sp.unsteer(addr(7), 1);
        assert_eq!(sp.owner_of(addr(7)), None);
    }

    #[test]
    fn shards_share_one_port() {
        let sp = SinglePort::bind("127.0.0.1".parse().expect("ip"), 0, 3, false).expect("bind");
        assert_ne!(sp.port(), 0);
        for i in 0..3 {
            let s = sp.take_socket(i).expect("a socket per shard");
            assert_eq!(s.local_addr().expect("addr").port(), sp.port());
        }
        assert!(sp.take_socket(0).is_none(), "taken once");
    }
}
