//! The UMEM: one mmap'd area of equal frames that the kernel and the bridge
//! pass between them by offset (a "frame address") through the rings.
//!
//! The first half of the frames serve reception (they circulate between the
//! fill ring, the RX ring and the bridge), the second half transmission (the
//! TX ring, the completion ring and the free list here). Each half is a
//! stack of free frame addresses allocated once, so no packet allocates.

use std::io;
use std::sync::Arc;

use crate::proto::transmit::FrameArea;

use super::ring::Mmap;

/// Sizes of a UMEM.
#[derive(Debug, Clone, Copy)]
pub struct UmemConfig {
    /// Frames in all (half for RX, half for TX); a power of two.
    pub frames: u32,
    /// Bytes per frame: 2048 or 4096 (a frame holds one datagram with its
    /// Ethernet header).
    pub frame_size: u32,
}

impl Default for UmemConfig {
    fn default() -> Self {
        Self {
            frames: 4096,
            frame_size: 2048,
        }
    }
}

/// The frames' memory and the free list of TX frames.
#[derive(Debug)]
pub struct Umem {
    /// Shared with the send queue the TX frames are lent to
    /// ([`Self::frame_area`]), which keeps it mapped as long as it lives.
    area: Arc<Mmap>,
    cfg: UmemConfig,
    tx_free: Vec<u64>,
}

impl Umem {
    /// Maps `cfg.frames * cfg.frame_size` bytes.
    pub fn new(cfg: UmemConfig) -> io::Result<Self> {
        if !cfg.frames.is_power_of_two() || cfg.frames < 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "UMEM frames must be a power of two, at least 2",
            ));
        }
        if cfg.frame_size != 2048 && cfg.frame_size != 4096 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "UMEM frame size must be 2048 or 4096",
            ));
        }
        let area = Arc::new(Mmap::anonymous(
            cfg.frames as usize * cfg.frame_size as usize,
        )?);
        let half = cfg.frames / 2;
        let tx_free = (half..cfg.frames)
            .rev()
            .map(|i| u64::from(i) * u64::from(cfg.frame_size))
            .collect();
        Ok(Self { area, cfg, tx_free })
    }

    /// Its sizes.
    pub fn config(&self) -> UmemConfig {
        self.cfg
    }

    /// The area's address and length (for `XDP_UMEM_REG`).
    pub fn area(&self) -> (*mut u8, usize) {
        (self.area.as_ptr(), self.area.len())
    }

    /// Addresses of the receive half's frames.
    pub fn rx_frames(&self) -> impl Iterator<Item = u64> + use<> {
        let size = u64::from(self.cfg.frame_size);
        (0..u64::from(self.cfg.frames / 2)).map(move |i| i * size)
    }

    /// The area, for a send queue to write datagrams into the TX frames
    /// lent to it ([`crate::proto::transmit::TxQueue::with_lent_frames`]).
    ///
    /// Whoever lends a frame taken with [`Self::take_tx`] must not read or
    /// write it through this UMEM until the queue hands it back.
    pub fn frame_area(&self) -> FrameArea {
        let ptr = self.area.start();
        // SAFETY: the mapping is `len` bytes and stays mapped while the Arc
        // (the keeper) lives; frames are lent from the TX half only after
        // `take_tx` took them off this UMEM's free list, so nothing here
        // touches them until they come back through `give_tx`.
        unsafe { FrameArea::new(ptr, self.area.len(), self.area.clone()) }
    }

    /// Bytes `[addr, addr + len)` of the area, if inside one frame.
    pub fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let (start, end) = self.span(addr, len)?;
        // SAFETY: `start..end` is inside the mapping (checked by `span`);
        // the frame is owned by this side while the caller holds it.
        Some(unsafe { std::slice::from_raw_parts(self.area.as_ptr().add(start), end - start) })
    }

    /// Bytes `[addr, addr + len)` of the area to write, if inside one frame.
    pub fn bytes_mut(&mut self, addr: u64, len: usize) -> Option<&mut [u8]> {
        let (start, end) = self.span(addr, len)?;
        // SAFETY: as `bytes`, and `&mut self` makes the borrow unique.
        Some(unsafe { std::slice::from_raw_parts_mut(self.area.as_ptr().add(start), end - start) })
    }

    /// `addr..addr+len` as offsets into the area when it lies inside a single
    /// frame (the kernel only ever hands out such descriptors, but they are
    /// checked: a bad one is dropped, not a crash).
    fn span(&self, addr: u64, len: usize) -> Option<(usize, usize)> {
        let size = u64::from(self.cfg.frame_size);
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(len)?;
        let frame_end = usize::try_from((addr / size + 1) * size).ok()?;
        (end <= frame_end && end <= self.area.len()).then_some((start, end))
    }

    /// The frame that `addr` (which may point inside it) belongs to.
    pub fn frame_of(&self, addr: u64) -> u64 {
        addr - addr % u64::from(self.cfg.frame_size)
    }

    /// A free TX frame's address, if any.
    pub fn take_tx(&mut self) -> Option<u64> {
        self.tx_free.pop()
    }

    /// Gives a TX frame back (from the completion ring, or unused).
    pub fn give_tx(&mut self, addr: u64) {
        let frame = self.frame_of(addr);
        if frame >= u64::from(self.cfg.frames / 2) * u64::from(self.cfg.frame_size) {
            self.tx_free.push(frame);
        }
    }

    /// Free TX frames.
    pub fn tx_free(&self) -> usize {
        self.tx_free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_into_a_receive_and_a_transmit_half() {
        let mut u = Umem::new(UmemConfig {
            frames: 8,
            frame_size: 2048,
        })
        .expect("umem");
        assert_eq!(u.rx_frames().collect::<Vec<_>>(), [0, 2048, 4096, 6144]);
        assert_eq!(u.tx_free(), 4);
        let a = u.take_tx().expect("tx frame");
        assert_eq!(a, 4 * 2048);
        // A completion may point inside the frame; it is given back whole.
        u.give_tx(a + 256);
        assert_eq!(u.take_tx(), Some(a));
    }

    #[test]
    fn a_span_across_a_frame_boundary_is_refused() {
        let mut u = Umem::new(UmemConfig {
            frames: 2,
            frame_size: 2048,
        })
        .expect("umem");
        assert!(u.bytes(0, 2048).is_some());
        assert!(u.bytes(100, 2000).is_none());
        assert!(u.bytes(4096, 1).is_none());
        assert!(u.bytes(u64::MAX, 1).is_none());
        let f = u.bytes_mut(2048, 4).expect("frame 1");
        f.copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(u.bytes(2048, 4), Some(&[1u8, 2, 3, 4][..]));
    }
}
