//! Caller-owned output buffers for datagrams the core wants sent.
//!
//! The core writes each outgoing datagram straight into a fixed-size slot of one
//! contiguous buffer, so a whole receive batch's fan-out is queued without a heap
//! allocation per packet; the driver then sends every queued datagram at once
//! (sendmmsg, or one io_uring submit) and clears the queue.
//!
//! The AF_XDP driver lends the queue its TX frames instead ([`lent`]): the
//! core then writes each datagram into the frame it is sent from.

mod lent;

use std::net::SocketAddr;

pub use lent::FrameArea;
use lent::Lent;

/// Size of one slot: larger than any datagram the bridge sends (MTU-sized RTP
/// plus the SRTP tag, or a DTLS flight record of at most 1150 bytes).
pub const SLOT_SIZE: usize = 1536;

/// One queued datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Local UDP port to send from (the endpoint's port).
    pub from_port: u16,
    /// Destination address.
    pub to: SocketAddr,
    /// Length of the datagram in its slot.
    pub len: usize,
}

/// A batch of outgoing datagrams.
#[derive(Debug)]
pub struct TxQueue {
    slots: Slots,
    items: Vec<Transmit>,
}

/// Where a queue writes its datagrams.
#[derive(Debug)]
enum Slots {
    /// Slot `i` is `SLOT_SIZE` bytes at `i * SLOT_SIZE` of one buffer.
    Owned(Vec<u8>),
    /// Each datagram is written into a frame the driver lent.
    Lent(Lent),
}

impl TxQueue {
    /// A queue with room for `capacity` datagrams before it has to grow.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            // Resident at once (`proto::resident`): a queue is written only up
            // to its longest batch so far, and a lazily mapped one took memory
            // whenever a batch was longer than any before it.
            slots: Slots::Owned(crate::proto::resident::resident_zeroed(
                capacity * SLOT_SIZE,
            )),
            items: Vec::with_capacity(capacity),
        }
    }

    /// A queue that writes each datagram into a frame of `area` lent with
    /// [`Self::lend`] (`frame_size` bytes each), its payload at
    /// `headroom(destination)` in the frame (room for the driver's headers;
    /// at most [`SLOT_SIZE`] of payload, as in an owned slot). With no spare
    /// frame a datagram is not queued, and counted
    /// ([`Self::take_unslotted`]). Room for `capacity` datagrams before it
    /// allocates.
    pub fn with_lent_frames(
        area: FrameArea,
        frame_size: usize,
        headroom: fn(&SocketAddr) -> usize,
        capacity: usize,
    ) -> Self {
        Self {
            slots: Slots::Lent(Lent::new(area, frame_size, headroom, capacity)),
            items: Vec::with_capacity(capacity),
        }
    }

    /// Lends the queue the frame at offset `frame` of its area; `false` (the
    /// frame stays the caller's) when the queue does not take lent frames or
    /// `frame` is not a whole frame inside the area.
    pub fn lend(&mut self, frame: u64) -> bool {
        match &mut self.slots {
            Slots::Owned(_) => false,
            Slots::Lent(l) => l.lend(frame),
        }
    }

    /// Lent frames not written yet (0 for a queue with its own slots).
    pub fn spare_frames(&self) -> usize {
        match &self.slots {
            Slots::Owned(_) => 0,
            Slots::Lent(l) => l.spare(),
        }
    }

    /// The lent frame datagram `i` is written in (its offset in the area).
    pub fn frame(&self, i: usize) -> Option<u64> {
        match &self.slots {
            Slots::Owned(_) => None,
            Slots::Lent(l) => l.used.get(i).copied(),
        }
    }

    /// Datagrams not queued for want of a spare frame since the last call.
    pub fn take_unslotted(&mut self) -> u64 {
        match &mut self.slots {
            Slots::Owned(_) => 0,
            Slots::Lent(l) => std::mem::take(&mut l.unslotted),
        }
    }

    /// Number of queued datagrams.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Queues a datagram written by `write` into a [`SLOT_SIZE`] buffer.
    ///
    /// `write` returns the datagram's length, or `None` to queue nothing.
    /// Grows (allocates) only when the batch is larger than any before it.
    pub fn push_with<F>(&mut self, from_port: u16, to: SocketAddr, write: F) -> Option<usize>
    where
        F: FnOnce(&mut [u8]) -> Option<usize>,
    {
        let len = match &mut self.slots {
            Slots::Owned(data) => {
                let start = self.items.len() * SLOT_SIZE;
                if data.len() < start + SLOT_SIZE {
                    let grown = (data.len() * 2).max(start + SLOT_SIZE);
                    data.resize(grown, 0);
                }
                let len = write(&mut data[start..start + SLOT_SIZE])?;
                if len == 0 || len > SLOT_SIZE {
                    return None;
                }
                len
            }
            Slots::Lent(l) => l.write(&to, write)?,
        };
        self.items.push(Transmit { from_port, to, len });
        Some(len)
    }

    /// Queues a copy of `datagram`.
    pub fn push(&mut self, from_port: u16, to: SocketAddr, datagram: &[u8]) -> Option<usize> {
        self.push_with(from_port, to, |slot| {
            let n = datagram.len();
            slot.get_mut(..n)?.copy_from_slice(datagram);
            Some(n)
        })
    }

    /// The queued datagrams in order, each with its bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&Transmit, &[u8])> {
        (0..self.items.len()).filter_map(|i| self.get(i))
    }

    /// Datagram `i` and its bytes.
    pub fn get(&self, i: usize) -> Option<(&Transmit, &[u8])> {
        let t = self.items.get(i)?;
        let bytes = match &self.slots {
            Slots::Owned(data) => {
                let start = i * SLOT_SIZE;
                data.get(start..start + t.len)?
            }
            Slots::Lent(l) => l.bytes(*l.used.get(i)?, &t.to, t.len),
        };
        Some((t, bytes))
    }

    /// Forgets every queued datagram, keeping the memory (lent frames
    /// become spare again).
    pub fn clear(&mut self) {
        if let Slots::Lent(l) = &mut self.slots {
            l.unqueue();
        }
        self.items.clear();
    }

    /// Forgets every queued datagram once the driver has taken each one's
    /// lent frame back ([`Self::frame`]: sent, or returned to its pool); for
    /// a queue with its own slots, the same as [`Self::clear`].
    pub fn clear_sent(&mut self) {
        if let Slots::Lent(l) = &mut self.slots {
            l.used.clear();
        }
        self.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::ptr::NonNull;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn queues_and_grows_beyond_initial_capacity() {
        let to: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let mut q = TxQueue::with_capacity(2);
        for i in 0..5u8 {
            assert_eq!(q.push(10_000 + u16::from(i), to, &[i; 100]), Some(100));
        }
        assert_eq!(q.len(), 5);
        let collected: Vec<_> = q
            .iter()
            .map(|(t, d)| (t.from_port, d[0], d.len()))
            .collect();
        assert_eq!(collected[4], (10_004, 4, 100));
        assert_eq!(q.push_with(1, to, |_| None), None);
        assert_eq!(q.push(1, to, &[0; SLOT_SIZE + 1]), None);
        q.clear();
        assert!(q.is_empty());
    }

    /// A queue lent 4 frames of 2048 bytes, payload at 42 (IPv4) or 62.
    fn lent_queue() -> (TxQueue, NonNull<u8>) {
        let mut mem = vec![0u8; 4 * 2048].into_boxed_slice();
        let ptr = NonNull::new(mem.as_mut_ptr()).expect("pointer");
        let keep: Arc<dyn std::fmt::Debug + Send + Sync> = Arc::new(mem);
        // SAFETY: the boxed slice is 4 * 2048 bytes, kept by `keep`; the test
        // reads a frame only after the queue let go of it.
        let area = unsafe { FrameArea::new(ptr, 4 * 2048, keep) };
        let head = |to: &SocketAddr| if to.is_ipv4() { 42 } else { 62 };
        (TxQueue::with_lent_frames(area, 2048, head, 4), ptr)
    }

    #[test]
    fn datagrams_are_written_into_lent_frames_after_the_headroom() {
        let (mut q, ptr) = lent_queue();
        let v4: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let v6: SocketAddr = "[::1]:5000".parse().expect("addr");
        assert!(q.lend(2048));
        assert!(q.lend(3 * 2048));
        assert!(!q.lend(100), "not a frame's start");
        assert!(!q.lend(4 * 2048), "outside the area");
        assert_eq!(q.spare_frames(), 2);
        assert_eq!(q.push(1, v4, &[7; 100]), Some(100));
        assert_eq!(q.push(2, v6, &[9; 1200]), Some(1200));
        assert_eq!(q.push(3, v4, &[1; 10]), None, "no spare frame");
        assert_eq!(q.take_unslotted(), 1);
        assert_eq!(q.take_unslotted(), 0);
        let (f0, f1) = (q.frame(0).expect("frame"), q.frame(1).expect("frame"));
        assert_ne!(f0, f1);
        let (t, d) = q.get(1).expect("queued");
        assert_eq!((t.from_port, d.len(), d[0]), (2, 1200, 9));
        q.clear_sent();
        assert!(q.is_empty());
        assert_eq!(q.spare_frames(), 0, "sent frames are the driver's");
        // SAFETY: inside the area; the queue let go of both frames.
        let at = |off: u64| unsafe { *ptr.as_ptr().add(off as usize) };
        assert_eq!((at(f0 + 42), at(f0 + 141), at(f0 + 142)), (7, 7, 0));
        assert_eq!((at(f1 + 61), at(f1 + 62), at(f1 + 62 + 1199)), (0, 9, 9));
    }

    #[test]
    fn lent_frames_of_unsent_datagrams_become_spare_again() {
        let (mut q, _) = lent_queue();
        let to: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        assert!(q.lend(0));
        assert_eq!(q.push_with(1, to, |_| None), None, "nothing written");
        assert_eq!(q.push(1, to, &[0; SLOT_SIZE + 1]), None, "too long");
        assert_eq!(q.spare_frames(), 1);
        assert_eq!(q.take_unslotted(), 0);
        assert_eq!(q.push(1, to, &[5; 20]), Some(20));
        assert_eq!(q.spare_frames(), 0);
        q.clear();
        assert_eq!(q.spare_frames(), 1);
        assert!(TxQueue::with_capacity(1).frame(0).is_none());
        assert!(!TxQueue::with_capacity(1).lend(0));
    }
}
