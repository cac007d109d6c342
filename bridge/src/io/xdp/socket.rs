//! One AF_XDP socket (XSK) with its own UMEM, bound to one queue of one
//! interface: set up with `setsockopt(SOL_XDP, ...)`, the four rings mmap'd,
//! then `bind` with `XDP_USE_NEED_WAKEUP`, so that the kernel is only woken
//! (a `recvfrom`/`sendto` with no data) when a ring's flags ask for it.
//!
//! Raw `libc` rather than a crate: `libc` has every AF_XDP constant and
//! struct, while `xsk-rs` and `libxdp-sys` link libxdp/libbpf (C libraries a
//! fresh machine lacks), and the socket is four setsockopts and five mmaps.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::ring::{ConsRing, ProdRing, RingOffsets};
use super::umem::{Umem, UmemConfig};

/// Sizes of an XSK.
#[derive(Debug, Clone, Copy)]
pub struct XskConfig {
    /// The UMEM's.
    pub umem: UmemConfig,
    /// Entries of each ring (a power of two).
    pub ring_size: u32,
    /// Bytes left free in front of a received frame (room to grow headers
    /// in place).
    pub headroom: u32,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            umem: UmemConfig::default(),
            ring_size: 2048,
            headroom: 0,
        }
    }
}

/// How the socket moves frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMode {
    /// The driver DMAs into the UMEM.
    ZeroCopy,
    /// The kernel copies between its buffers and the UMEM (veth, generic XDP).
    Copy,
}

impl CopyMode {
    /// `"zero-copy"` or `"copy"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZeroCopy => "zero-copy",
            Self::Copy => "copy",
        }
    }
}

/// Counters of an XSK (`struct xdp_statistics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames dropped for reasons other than a full RX ring or empty fill ring.
    pub rx_dropped: u64,
    /// Invalid RX descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid TX descriptors.
    pub tx_invalid_descs: u64,
    /// Frames dropped for a full RX ring.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was found empty.
    pub tx_ring_empty_descs: u64,
}

/// A received datagram's frame: where it is in the UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxFrame {
    /// Its address in the UMEM.
    pub addr: u64,
    /// Its length.
    pub len: usize,
}

/// Most wake-ups one [`XskSocket::flush_tx`] makes: a full TX ring in copy
/// mode's batches of 32, and some.
const MAX_KICKS: usize = 128;

/// An XSK, its UMEM and rings.
#[derive(Debug)]
pub struct XskSocket {
    // Field order is drop order: rings unmap before the socket closes, the
    // UMEM after it.
    fill: ProdRing<u64>,
    comp: ConsRing<u64>,
    rx: ConsRing<libc::xdp_desc>,
    tx: ProdRing<libc::xdp_desc>,
    fd: OwnedFd,
    umem: Umem,
    mode: CopyMode,
    /// RX frames the bridge holds (popped from RX, not yet back on the fill
    /// ring); kept so `refill` never allocates.
    rx_spare: Vec<u64>,
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a live T whose size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt<T>(fd: RawFd, name: libc::c_int, v: &mut T) -> io::Result<usize> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` is a live T whose size is passed; the kernel writes at
    // most that many bytes.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_XDP, name, (v as *mut T).cast(), &mut len) };
    if r == 0 {
        Ok(len as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn ctx(what: &'static str) -> impl Fn(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl XskSocket {
    /// Creates the socket and its UMEM, maps the rings and binds to `queue`
    /// of `ifindex` (zero-copy where the driver offers it, else copy). The
    /// fill ring is filled with every receive frame before the bind, so
    /// reception can start at once.
    pub fn bind(ifindex: u32, queue: u32, cfg: XskConfig) -> io::Result<Self> {
        // SAFETY: a plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(ctx("creating an AF_XDP socket")(io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Umem::new(cfg.umem)?;
        let (addr, len) = umem.area();
        let reg = libc::xdp_umem_reg {
            addr: addr as u64,
            len: len as u64,
            chunk_size: cfg.umem.frame_size,
            headroom: cfg.headroom,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::XDP_UMEM_REG, &reg).map_err(ctx("registering the UMEM"))?;
        let n = cfg.ring_size;
        setsockopt(raw, libc::XDP_UMEM_FILL_RING, &n).map_err(ctx("sizing the fill ring"))?;
        setsockopt(raw, libc::XDP_UMEM_COMPLETION_RING, &n)
            .map_err(ctx("sizing the completion ring"))?;
        setsockopt(raw, libc::XDP_RX_RING, &n).map_err(ctx("sizing the RX ring"))?;
        setsockopt(raw, libc::XDP_TX_RING, &n).map_err(ctx("sizing the TX ring"))?;
        // SAFETY: plain-old-data, all zero is valid.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let got = getsockopt(raw, libc::XDP_MMAP_OFFSETS, &mut off)
            .map_err(ctx("reading the ring offsets"))?;
        if got != std::mem::size_of::<libc::xdp_mmap_offsets>() {
            return Err(io::Error::other(
                "kernel too old: ring offsets without flags (need 5.4+)",
            ));
        }
        let fill = ProdRing::map(
            raw,
            libc::XDP_UMEM_PGOFF_FILL_RING,
            n,
            RingOffsets::from(off.fr),
        )
        .map_err(ctx("mapping the fill ring"))?;
        let comp = ConsRing::map(
            raw,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            n,
            RingOffsets::from(off.cr),
        )
        .map_err(ctx("mapping the completion ring"))?;
        let rx = ConsRing::map(
            raw,
            libc::XDP_PGOFF_RX_RING as u64,
            n,
            RingOffsets::from(off.rx),
        )
        .map_err(ctx("mapping the RX ring"))?;
        let tx = ProdRing::map(
            raw,
            libc::XDP_PGOFF_TX_RING as u64,
            n,
            RingOffsets::from(off.tx),
        )
        .map_err(ctx("mapping the TX ring"))?;
        let mut rx_spare = Vec::with_capacity((cfg.umem.frames / 2) as usize);
        rx_spare.extend(umem.rx_frames());
        let mut s = Self {
            fill,
            comp,
            rx,
            tx,
            fd,
            umem,
            mode: CopyMode::Copy,
            rx_spare,
        };
        s.refill();
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a live sockaddr_xdp whose size is passed.
        let r = unsafe {
            libc::bind(
                raw,
                (&raw const sa).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(ctx("binding the XSK to its queue")(
                io::Error::last_os_error(),
            ));
        }
        let mut opts = libc::xdp_options { flags: 0 };
        getsockopt(raw, libc::XDP_OPTIONS, &mut opts).map_err(ctx("reading the XSK options"))?;
        s.mode = if opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0 {
            CopyMode::ZeroCopy
        } else {
            CopyMode::Copy
        };
        Ok(s)
    }

    /// Copy or zero-copy, as the kernel chose at bind.
    pub fn mode(&self) -> CopyMode {
        self.mode
    }

    /// The UMEM (to read received frames).
    pub fn umem(&self) -> &Umem {
        &self.umem
    }

    /// The UMEM (to write frames, e.g. decrypting in place).
    pub fn umem_mut(&mut self) -> &mut Umem {
        &mut self.umem
    }

    /// Puts every spare receive frame on the fill ring, and wakes the kernel
    /// if it asks for it.
    pub fn refill(&mut self) {
        let mut pushed = false;
        while let Some(&a) = self.rx_spare.last() {
            if !self.fill.push(a) {
                break;
            }
            self.rx_spare.pop();
            pushed = true;
        }
        if pushed {
            self.fill.submit();
        }
    }

    /// Whether the kernel asked to be woken to receive (`need_wakeup` on the
    /// fill ring): then [`Self::wake_rx`] (or `poll`) is due.
    pub fn rx_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }

    /// Wakes the kernel's receive side (a zero-length non-blocking recvfrom).
    pub fn wake_rx(&self) {
        // SAFETY: a zero-length receive into no buffer.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }

    /// The next received frame, if any. The caller reads (or rewrites) it
    /// through [`Self::umem`] and gives it back with [`Self::recycle`].
    pub fn recv(&mut self) -> Option<RxFrame> {
        let d = self.rx.pop()?;
        Some(RxFrame {
            addr: d.addr,
            len: d.len as usize,
        })
    }

    /// Gives the RX ring's slots of the frames taken by [`Self::recv`] back.
    pub fn release_rx(&mut self) {
        self.rx.release();
    }

    /// Hands a received frame back for reception (on the fill ring at the
    /// next [`Self::refill`]).
    pub fn recycle(&mut self, f: RxFrame) {
        let frame = self.umem.frame_of(f.addr);
        if self.rx_spare.len() < self.rx_spare.capacity() {
            self.rx_spare.push(frame);
        }
    }

    /// Takes a free TX frame and lets `write` fill it (it gets the whole frame
    /// and returns the length used), then queues it on the TX ring. `false`
    /// when no frame or ring slot is free, or `write` returned 0 or more than
    /// the frame (the frame is kept).
    pub fn send(&mut self, write: impl FnOnce(&mut [u8]) -> usize) -> bool {
        if self.tx.free(1) == 0 {
            return false;
        }
        let Some(addr) = self.umem.take_tx() else {
            return false;
        };
        let size = self.umem.config().frame_size as usize;
        let len = match self.umem.bytes_mut(addr, size) {
            Some(frame) => write(frame),
            None => 0,
        };
        if len == 0 || len > size {
            self.umem.give_tx(addr);
            return false;
        }
        let pushed = self.tx.push(libc::xdp_desc {
            addr,
            len: len as u32,
            options: 0,
        });
        if !pushed {
            self.umem.give_tx(addr);
        }
        pushed
    }

    /// Queues the TX frame at `addr` (taken with [`Umem::take_tx`] and
    /// written: `len` bytes from its start) on the TX ring. `false` when the
    /// ring has no free slot; the frame is then still the caller's.
    pub fn publish(&mut self, addr: u64, len: usize) -> bool {
        let Ok(len) = u32::try_from(len) else {
            return false;
        };
        self.tx.push(libc::xdp_desc {
            addr,
            len,
            options: 0,
        })
    }

    /// Publishes the queued TX frames and, if the kernel asks (always in copy
    /// mode), wakes it with a zero-length `sendto`. In copy mode one call
    /// sends at most 32 frames and then says `EAGAIN`, so it is repeated
    /// while frames wait, taking completions back in between (a full
    /// completion ring also says `EAGAIN`). `ENOBUFS`/`EBUSY`/`ENETDOWN`
    /// leave the rest for the next flush.
    pub fn flush_tx(&mut self) -> io::Result<()> {
        self.tx.submit();
        for _ in 0..MAX_KICKS {
            if !self.tx.needs_wakeup() || self.tx.pending() == 0 {
                return Ok(());
            }
            // SAFETY: a zero-length send of no buffer to no address.
            let r = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => {
                    self.reap_completions();
                }
                Some(libc::ENOBUFS | libc::EBUSY | libc::ENETDOWN) => return Ok(()),
                _ => return Err(e),
            }
        }
        Ok(())
    }

    /// TX frames published on the ring and not yet taken by the kernel.
    pub fn tx_pending(&mut self) -> u32 {
        self.tx.pending()
    }

    /// Takes the frames the kernel has sent back from the completion ring;
    /// returns how many.
    pub fn reap_completions(&mut self) -> usize {
        let mut n = 0;
        while let Some(addr) = self.comp.pop() {
            self.umem.give_tx(addr);
            n += 1;
        }
        if n > 0 {
            self.comp.release();
        }
        n
    }

    /// TX frames off the UMEM's free list: queued, not yet completed by
    /// the kernel, or lent to a send queue ([`Umem::frame_area`]).
    pub fn tx_in_flight(&self) -> usize {
        let half = (self.umem.config().frames / 2) as usize;
        half - self.umem.tx_free()
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> io::Result<XskStats> {
        // SAFETY: plain-old-data, all zero is valid.
        let mut s: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        getsockopt(self.fd.as_raw_fd(), libc::XDP_STATISTICS, &mut s)?;
        Ok(XskStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
