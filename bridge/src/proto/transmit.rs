//! Caller-owned output buffers for datagrams the core wants sent.
//!
//! The core writes each outgoing datagram straight into a fixed-size slot of one
//! contiguous buffer, so a whole receive batch's fan-out is queued without a heap
//! allocation per packet; the driver then sends every queued datagram at once
//! (sendmmsg, or one io_uring submit) and clears the queue.

use std::net::SocketAddr;

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
    data: Vec<u8>,
    items: Vec<Transmit>,
}

impl TxQueue {
    /// A queue with room for `capacity` datagrams before it has to grow.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            // Resident at once (`proto::resident`): a queue is written only up
            // to its longest batch so far, and a lazily mapped one took memory
            // whenever a batch was longer than any before it.
            data: crate::proto::resident::resident_zeroed(capacity * SLOT_SIZE),
            items: Vec::with_capacity(capacity),
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
        let index = self.items.len();
        let start = index * SLOT_SIZE;
        if self.data.len() < start + SLOT_SIZE {
            let grown = (self.data.len() * 2).max(start + SLOT_SIZE);
            self.data.resize(grown, 0);
        }
        let slot = &mut self.data[start..start + SLOT_SIZE];
        let len = write(slot)?;
        if len == 0 || len > SLOT_SIZE {
            return None;
        }
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
        self.items.iter().enumerate().map(|(i, t)| {
            let start = i * SLOT_SIZE;
            (t, &self.data[start..start + t.len])
        })
    }

    /// Datagram `i` and its bytes.
    pub fn get(&self, i: usize) -> Option<(&Transmit, &[u8])> {
        let t = self.items.get(i)?;
        let start = i * SLOT_SIZE;
        Some((t, &self.data[start..start + t.len]))
    }

    /// Forgets every queued datagram, keeping the memory.
    pub fn clear(&mut self) {
        self.items.clear();
    }
}

#[cfg(test)]
mod tests {
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
}
