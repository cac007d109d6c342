//! Slots in memory a driver lends the queue: the TX frames of an AF_XDP
//! UMEM. The core writes each datagram (the SRTP encryption of a receiver's
//! copy is that write) at the offset the driver's headers leave free in a
//! frame, and the driver writes the headers in front and hands the frame to
//! the kernel as it is: no copy between the queue and the frame.
//!
//! Measured against the owned slots plus a copy into the TX frame, on the
//! bench's veth in copy mode (`ringbridge-bench run --netns --io xdp --shape
//! meeting --conferences 10 --endpoints 8 --duration 8`, 115k egress packets
//! a second, three runs each, alternated): the bridge's CPU per egress packet
//! was 4,577-4,871 ns with the copy and 4,619-4,906 ns without, no difference
//! that shows. In copy mode the kernel's own copy and the veth's delivery,
//! charged to the bridge's wake-up `sendto`, are most of that; the copy
//! saved here is a larger share where the NIC takes the frames as they are
//! (zero-copy), which veth refuses. Issue 14 asks for it either way.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::ptr::NonNull;
use std::sync::Arc;

use super::SLOT_SIZE;

/// A region of driver memory frames are lent from, kept mapped by `keep`.
#[derive(Debug)]
pub struct FrameArea {
    ptr: NonNull<u8>,
    len: usize,
    keep: Arc<dyn Debug + Send + Sync>,
}

// SAFETY: the area is plain memory kept alive by `keep` (itself Send +
// Sync); the queue reads and writes only the frames lent to it, and only
// through `&self`/`&mut self`.
unsafe impl Send for FrameArea {}

impl FrameArea {
    /// The `len` bytes at `ptr`, kept valid by `keep`.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` must stay valid for reads and writes while `keep`
    /// lives, and a frame lent to a queue ([`super::TxQueue::lend`]) must be
    /// read or written by nobody else until the driver takes it back (a
    /// queued datagram's frame, [`super::TxQueue::clear_sent`]).
    pub unsafe fn new(ptr: NonNull<u8>, len: usize, keep: Arc<dyn Debug + Send + Sync>) -> Self {
        Self { ptr, len, keep }
    }

    /// What keeps the memory mapped.
    pub fn keeper(&self) -> &Arc<dyn Debug + Send + Sync> {
        &self.keep
    }
}

/// The frames a queue holds: spare ones, and one per queued datagram.
#[derive(Debug)]
pub(super) struct Lent {
    area: FrameArea,
    frame_size: usize,
    /// Where the payload starts in a frame for a destination (room for the
    /// driver's headers).
    headroom: fn(&SocketAddr) -> usize,
    /// Lent frames not written yet (offsets into the area).
    spare: Vec<u64>,
    /// The frame of each queued datagram, in queue order.
    pub(super) used: Vec<u64>,
    /// Datagrams not queued because no frame was spare.
    pub(super) unslotted: u64,
}

impl Lent {
    pub(super) fn new(
        area: FrameArea,
        frame_size: usize,
        headroom: fn(&SocketAddr) -> usize,
        capacity: usize,
    ) -> Self {
        Self {
            area,
            frame_size,
            headroom,
            spare: Vec::with_capacity(capacity),
            used: Vec::with_capacity(capacity),
            unslotted: 0,
        }
    }

    /// Takes `frame` as a spare, if it is a whole frame of the area.
    pub(super) fn lend(&mut self, frame: u64) -> bool {
        let Ok(start) = usize::try_from(frame) else {
            return false;
        };
        let fits = self.frame_size > 0
            && start % self.frame_size == 0
            && start
                .checked_add(self.frame_size)
                .is_some_and(|end| end <= self.area.len);
        if fits {
            self.spare.push(frame);
        }
        fits
    }

    pub(super) fn spare(&self) -> usize {
        self.spare.len()
    }

    /// The payload's room in a frame for `to`: its offset and length.
    fn room(&self, to: &SocketAddr) -> Option<(usize, usize)> {
        let head = (self.headroom)(to);
        let len = self.frame_size.checked_sub(head)?.min(SLOT_SIZE);
        Some((head, len))
    }

    /// Lets `write` fill a spare frame's payload room for `to`; the frame is
    /// queued when it returns a length that fits, kept spare otherwise.
    pub(super) fn write<F>(&mut self, to: &SocketAddr, write: F) -> Option<usize>
    where
        F: FnOnce(&mut [u8]) -> Option<usize>,
    {
        let Some(&frame) = self.spare.last() else {
            self.unslotted += 1;
            return None;
        };
        let (head, room) = self.room(to)?;
        // `lend` checked that the frame lies inside the area, and `room`
        // that head + room stays inside the frame.
        let start = frame as usize + head;
        // SAFETY: inside the area (above); the frame is spare, so lent to
        // this queue and referenced nowhere else; `&mut self` makes the
        // borrow unique.
        let slot =
            unsafe { std::slice::from_raw_parts_mut(self.area.ptr.as_ptr().add(start), room) };
        let len = write(slot).filter(|&n| n > 0 && n <= room)?;
        self.spare.pop();
        self.used.push(frame);
        Some(len)
    }

    /// The `len` payload bytes for `to` in `frame` (a queued datagram's).
    pub(super) fn bytes(&self, frame: u64, to: &SocketAddr, len: usize) -> &[u8] {
        match self.room(to) {
            Some((head, room)) if len <= room => {
                // SAFETY: as in `write`; the frame is queued, so still lent
                // to this queue, and `&self` keeps it from being written.
                unsafe {
                    std::slice::from_raw_parts(
                        self.area.ptr.as_ptr().add(frame as usize + head),
                        len,
                    )
                }
            }
            _ => &[],
        }
    }

    /// Queued datagrams' frames become spare again (nothing was sent).
    pub(super) fn unqueue(&mut self) {
        self.spare.append(&mut self.used);
    }
}
