//! The four AF_XDP rings, as the kernel lays them out in memory shared with
//! it (`Documentation/networking/af_xdp.rst`): a producer index, a consumer
//! index, a flags word and a power-of-two array of entries. The fill and TX
//! rings are produced here and consumed by the kernel; the RX and completion
//! rings the other way round. Indices run freely and wrap at `u32`; an entry
//! is at `index & mask`. Entries are written before the producer index is
//! published with release ordering, and read after it is loaded with
//! acquire ordering (the consumer index likewise), as in libxdp's `xsk.h`.

use std::io;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// An mmap'd region, unmapped on drop.
#[derive(Debug)]
pub struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain memory owned by this value; access to it goes
// through `&self`/`&mut self` of its owners.
unsafe impl Send for Mmap {}
// SAFETY: `&Mmap` gives only the region's address and length; what is read
// or written through them is the owners' to partition (the UMEM's frames are
// each held by one side at a time).
unsafe impl Sync for Mmap {}

impl Mmap {
    /// `len` bytes of anonymous private memory (the UMEM), populated.
    pub fn anonymous(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Self::from_mmap(p, len)
    }

    /// `len` bytes of socket `fd`'s ring at page offset `offset`.
    pub fn ring(fd: libc::c_int, len: usize, offset: u64) -> io::Result<Self> {
        // SAFETY: maps the kernel's ring of `fd`; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                offset as libc::off_t,
            )
        };
        Self::from_mmap(p, len)
    }

    fn from_mmap(p: *mut libc::c_void, len: usize) -> io::Result<Self> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Self { ptr, len })
    }

    /// The start of the region.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its start, never null.
    pub fn start(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never, once mapped).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region this value mapped; nothing refers
        // to it any more (the owners borrow it).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Offsets of one ring inside its mapping (`struct xdp_ring_offset`).
#[derive(Debug, Clone, Copy)]
pub struct RingOffsets {
    /// Of the producer index.
    pub producer: u64,
    /// Of the consumer index.
    pub consumer: u64,
    /// Of the entries.
    pub desc: u64,
    /// Of the flags word.
    pub flags: u64,
}

impl From<libc::xdp_ring_offset> for RingOffsets {
    fn from(o: libc::xdp_ring_offset) -> Self {
        Self {
            producer: o.producer,
            consumer: o.consumer,
            desc: o.desc,
            flags: o.flags,
        }
    }
}

/// One ring of entries `T` (`u64` UMEM addresses for fill and completion,
/// `xdp_desc` for RX and TX), either side.
#[derive(Debug)]
struct Shared<T> {
    map: Mmap,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    entries: NonNull<T>,
    mask: u32,
    _t: PhantomData<T>,
}

// SAFETY: the ring is memory shared with the kernel only; one owner uses it.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T: Copy> Shared<T> {
    /// Maps socket `fd`'s ring at `pgoff` with `size` entries.
    fn map(fd: libc::c_int, pgoff: u64, size: u32, off: RingOffsets) -> io::Result<Self> {
        if !size.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring size must be a power of two",
            ));
        }
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = Mmap::ring(fd, len, pgoff)?;
        let at = |o: u64| -> io::Result<NonNull<u8>> {
            if o as usize + 4 > len {
                return Err(io::Error::other("ring offset beyond its mapping"));
            }
            // SAFETY: `o` is inside the mapping (checked above).
            NonNull::new(unsafe { map.as_ptr().add(o as usize) })
                .ok_or_else(|| io::Error::other("null ring"))
        };
        let producer = at(off.producer)?.cast();
        let consumer = at(off.consumer)?.cast();
        let flags = at(off.flags)?.cast();
        let entries = at(off.desc)?.cast();
        Ok(Self {
            map,
            producer,
            consumer,
            flags,
            entries,
            mask: size - 1,
            _t: PhantomData,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: an aligned u32 inside the live mapping, shared with the
        // kernel, only ever accessed atomically.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as `producer`.
        unsafe { self.consumer.as_ref() }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as `producer`.
        let flags = unsafe { self.flags.as_ref() };
        flags.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    fn read(&self, idx: u32) -> T {
        // SAFETY: `idx & mask` is inside the entries array of the mapping.
        unsafe {
            self.entries
                .as_ptr()
                .add((idx & self.mask) as usize)
                .read_volatile()
        }
    }

    fn write(&self, idx: u32, v: T) {
        // SAFETY: as `read`; the entry belongs to this side until published.
        unsafe {
            self.entries
                .as_ptr()
                .add((idx & self.mask) as usize)
                .write_volatile(v)
        }
    }

    fn size(&self) -> u32 {
        self.mask + 1
    }

    #[allow(dead_code)]
    fn mapping(&self) -> &Mmap {
        &self.map
    }
}

/// A ring this side produces into (fill, TX).
#[derive(Debug)]
pub struct ProdRing<T> {
    ring: Shared<T>,
    /// Next entry to write (published up to here by `submit`).
    prod: u32,
    /// The kernel's consumer index as last read.
    cons: u32,
}

impl<T: Copy> ProdRing<T> {
    /// Maps a producer ring (see [`Shared::map`]).
    pub fn map(fd: libc::c_int, pgoff: u64, size: u32, off: RingOffsets) -> io::Result<Self> {
        let ring = Shared::map(fd, pgoff, size, off)?;
        let prod = ring.producer().load(Ordering::Relaxed);
        let cons = ring.consumer().load(Ordering::Acquire);
        Ok(Self { ring, prod, cons })
    }

    /// Free entries (reading the kernel's consumer index when the cached one
    /// says fewer than `want`).
    pub fn free(&mut self, want: u32) -> u32 {
        let size = self.ring.size();
        let free = size - self.prod.wrapping_sub(self.cons);
        if free >= want {
            return free;
        }
        self.cons = self.ring.consumer().load(Ordering::Acquire);
        size - self.prod.wrapping_sub(self.cons)
    }

    /// Writes `v` into the next entry; `false` when the ring is full. Not
    /// visible to the kernel before [`Self::submit`].
    pub fn push(&mut self, v: T) -> bool {
        if self.free(1) == 0 {
            return false;
        }
        self.ring.write(self.prod, v);
        self.prod = self.prod.wrapping_add(1);
        true
    }

    /// Publishes the entries pushed so far.
    pub fn submit(&mut self) {
        self.ring.producer().store(self.prod, Ordering::Release);
    }

    /// Entries published and not yet consumed by the kernel.
    pub fn pending(&mut self) -> u32 {
        self.cons = self.ring.consumer().load(Ordering::Acquire);
        self.ring
            .producer()
            .load(Ordering::Relaxed)
            .wrapping_sub(self.cons)
    }

    /// Whether the kernel asks for a syscall to look at this ring.
    pub fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }
}

/// A ring this side consumes from (RX, completion).
#[derive(Debug)]
pub struct ConsRing<T> {
    ring: Shared<T>,
    /// Next entry to read.
    cons: u32,
    /// The kernel's producer index as last read.
    prod: u32,
}

impl<T: Copy> ConsRing<T> {
    /// Maps a consumer ring (see [`Shared::map`]).
    pub fn map(fd: libc::c_int, pgoff: u64, size: u32, off: RingOffsets) -> io::Result<Self> {
        let ring = Shared::map(fd, pgoff, size, off)?;
        let cons = ring.consumer().load(Ordering::Relaxed);
        let prod = ring.producer().load(Ordering::Acquire);
        Ok(Self { ring, cons, prod })
    }

    /// The next entry, if the kernel has produced one. Its slot is not handed
    /// back before [`Self::release`].
    pub fn pop(&mut self) -> Option<T> {
        if self.cons == self.prod {
            self.prod = self.ring.producer().load(Ordering::Acquire);
            if self.cons == self.prod {
                return None;
            }
        }
        let v = self.ring.read(self.cons);
        self.cons = self.cons.wrapping_add(1);
        Some(v)
    }

    /// Hands the slots of the entries popped so far back to the kernel.
    pub fn release(&mut self) {
        self.ring.consumer().store(self.cons, Ordering::Release);
    }

    /// Whether the kernel asks for a syscall to look at this ring.
    pub fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }
}
