//! Send batching shared by the drivers: which queued datagrams go out together.
//!
//! A [`SendPlan`] groups the datagrams of a [`TxQueue`] that leave from the same
//! local port for the same destination into runs of equal-size datagrams (the
//! last one of a run may be shorter): with UDP GSO each run is one message with
//! a `UDP_SEGMENT` control message, so the three packets of a video frame cost
//! one trip down the stack per receiver. Without GSO every datagram is its own
//! group. Groups of the same source port are contiguous, so a driver makes one
//! `sendmmsg` (or one batch of io_uring `SendMsg`s) per socket.
//!
//! [`MsgBatch`] turns a plan into `mmsghdr`s pointing straight into the queue's
//! slots: nothing is copied and, once warmed up, nothing allocated.

use std::net::SocketAddr;
use std::ops::Range;

use super::gso;
use super::udp::{self, CmsgBuf};
use crate::proto::transmit::{Transmit, TxQueue};

/// Datagrams sent together in one message: from one local port, to one
/// destination, all `segment_size` bytes long except possibly the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// Local port (the socket) to send from.
    pub from_port: u16,
    /// Destination.
    pub to: SocketAddr,
    /// Size of every datagram but the last (the `UDP_SEGMENT` value).
    pub segment_size: usize,
    /// Total bytes of the group's datagrams.
    pub bytes: usize,
    start: usize,
    count: usize,
}

impl Group {
    /// Number of datagrams in the group (at least one).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always `false`: a group holds at least one datagram.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the group is sent as one segmented (GSO) message.
    pub fn is_segmented(&self) -> bool {
        self.count > 1
    }

    /// Whether the last datagram is shorter than the others (nothing may join).
    fn closed(&self) -> bool {
        self.bytes != self.count * self.segment_size
    }
}

/// Which datagrams of a [`TxQueue`] go out together, rebuilt for every flush.
#[derive(Debug, Default)]
pub struct SendPlan {
    /// Sort keys: (source port, destination, index in the queue).
    order: Vec<(u16, SocketAddr, usize)>,
    /// Queue indices, group after group.
    indices: Vec<usize>,
    groups: Vec<Group>,
}

impl SendPlan {
    /// A plan with room for `datagrams` before it has to grow.
    pub fn with_capacity(datagrams: usize) -> Self {
        Self {
            order: Vec::with_capacity(datagrams),
            indices: Vec::with_capacity(datagrams),
            groups: Vec::with_capacity(datagrams),
        }
    }

    /// Plans the sends of everything in `tx`.
    ///
    /// `gso_max_segments` is `Some(n)` when segmented sends may carry up to `n`
    /// datagrams (capped at [`gso::MAX_SEGMENTS`] and [`gso::MAX_BYTES`]), `None`
    /// for one datagram per group. Per destination, datagrams keep their queue
    /// order. Allocates only when `tx` is larger than any queue before it.
    pub fn build(&mut self, tx: &TxQueue, gso_max_segments: Option<usize>) {
        self.build_except(tx, gso_max_segments, |_, _| false);
    }

    /// [`SendPlan::build`] leaving out the datagrams `taken` takes (it returns
    /// `true` for those it handled itself: ICE-TCP's, see
    /// [`TcpConns::take`](super::tcp_conns::TcpConns::take)).
    pub fn build_except(
        &mut self,
        tx: &TxQueue,
        gso_max_segments: Option<usize>,
        mut taken: impl FnMut(&Transmit, &[u8]) -> bool,
    ) {
        self.order.clear();
        self.indices.clear();
        self.groups.clear();
        self.order.extend(
            tx.iter()
                .enumerate()
                .filter(|(_, (t, data))| !taken(t, data))
                .map(|(i, (t, _))| (t.from_port, t.to, i)),
        );
        // The index makes every key unique, so the unstable sort keeps the queue
        // order per destination (and needs no scratch memory).
        self.order.sort_unstable();
        let max_segments = gso_max_segments.unwrap_or(1).clamp(1, gso::MAX_SEGMENTS);
        for &(from_port, to, i) in &self.order {
            let Some((t, _)) = tx.get(i) else { continue };
            let len = t.len;
            self.indices.push(i);
            if let Some(g) = self.groups.last_mut()
                && max_segments > 1
                && g.from_port == from_port
                && g.to == to
                && g.count < max_segments
                && len <= g.segment_size
                && !g.closed()
                && g.bytes + len <= gso::MAX_BYTES
            {
                g.count += 1;
                g.bytes += len;
                continue;
            }
            self.groups.push(Group {
                from_port,
                to,
                segment_size: len,
                bytes: len,
                start: self.indices.len() - 1,
                count: 1,
            });
        }
    }

    /// The groups, those of one source port next to each other.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Queue indices of `group`'s datagrams, in send order.
    pub fn indices(&self, group: &Group) -> &[usize] {
        self.indices
            .get(group.start..group.start + group.count)
            .unwrap_or_default()
    }

    /// Runs of groups that share a source port: `(port, range into groups())`.
    pub fn port_runs(&self) -> PortRuns<'_> {
        PortRuns {
            groups: &self.groups,
            pos: 0,
        }
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// Iterator over the runs of groups that share a source port (see
/// [`SendPlan::port_runs`]).
#[derive(Debug)]
pub struct PortRuns<'a> {
    groups: &'a [Group],
    pos: usize,
}

impl Iterator for PortRuns<'_> {
    type Item = (u16, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.pos;
        let port = self.groups.get(start)?.from_port;
        let len = self.groups[start..]
            .iter()
            .take_while(|g| g.from_port == port)
            .count();
        self.pos = start + len;
        Some((port, start..self.pos))
    }
}

/// `mmsghdr`s for a [`SendPlan`]: one message per group, its iovecs pointing
/// into the [`TxQueue`]'s slots, a `UDP_SEGMENT` control message on segmented
/// groups. All arrays are reused from flush to flush.
pub struct MsgBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<CmsgBuf>,
}

impl std::fmt::Debug for MsgBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsgBatch")
            .field("messages", &self.hdrs.len())
            .field("datagrams", &self.iovecs.len())
            .finish()
    }
}

impl MsgBatch {
    /// Room for `datagrams` before any array has to grow.
    pub fn with_capacity(datagrams: usize) -> Self {
        Self {
            hdrs: Vec::with_capacity(datagrams),
            iovecs: Vec::with_capacity(datagrams),
            names: Vec::with_capacity(datagrams),
            cmsgs: Vec::with_capacity(datagrams),
        }
    }

    /// Builds one message per group of `plan` (built from `tx`) and returns
    /// them, in the order of [`SendPlan::groups`].
    ///
    /// The headers point into `self` and into `tx`'s slots; the borrows keep
    /// both in place for as long as the headers are used. A driver that hands
    /// them to the kernel asynchronously (io_uring) must itself keep `self` and
    /// `tx` untouched until the completions are in.
    pub fn fill<'a>(&'a mut self, plan: &SendPlan, tx: &'a TxQueue) -> &'a mut [libc::mmsghdr] {
        self.hdrs.clear();
        self.iovecs.clear();
        self.names.clear();
        self.cmsgs.clear();
        // First every array is filled (it may grow and move), then the pointers
        // into them are taken.
        for g in plan.groups() {
            let mut name = udp::zeroed_storage();
            udp::socket_addr_to_storage(&g.to, &mut name);
            self.names.push(name);
            self.cmsgs.push(CmsgBuf::default());
            for &i in plan.indices(g) {
                let data = tx.get(i).map_or(&[][..], |(_, d)| d);
                self.iovecs.push(libc::iovec {
                    // The kernel only reads send buffers.
                    iov_base: data.as_ptr().cast_mut().cast(),
                    iov_len: data.len(),
                });
            }
        }
        let mut iov_at = 0;
        for (k, g) in plan.groups().iter().enumerate() {
            let mut hdr = udp::zeroed_msghdr();
            hdr.msg_name = (&raw mut self.names[k]).cast();
            hdr.msg_namelen = match g.to {
                SocketAddr::V4(_) => std::mem::size_of::<libc::sockaddr_in>(),
                SocketAddr::V6(_) => std::mem::size_of::<libc::sockaddr_in6>(),
            } as libc::socklen_t;
            hdr.msg_iov = self.iovecs[iov_at..].as_mut_ptr();
            hdr.msg_iovlen = g.len() as _;
            iov_at += g.len();
            if g.is_segmented() {
                // Slot-sized datagrams always fit a u16.
                let segment = u16::try_from(g.segment_size).unwrap_or(u16::MAX);
                udp::set_udp_segment(&mut hdr, &mut self.cmsgs[k], segment);
            }
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        &mut self.hdrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// (from_port, to port, segment size, datagram first bytes) per group.
    fn shape(plan: &SendPlan, tx: &TxQueue) -> Vec<(u16, u16, usize, Vec<u8>)> {
        plan.groups()
            .iter()
            .map(|g| {
                let firsts = plan
                    .indices(g)
                    .iter()
                    .map(|&i| tx.get(i).expect("queued").1[0])
                    .collect();
                (g.from_port, g.to.port(), g.segment_size, firsts)
            })
            .collect()
    }

    #[test]
    fn fan_out_of_a_three_packet_frame_to_four_receivers_makes_four_groups_of_three() {
        let mut tx = TxQueue::with_capacity(16);
        // The core queues per packet: packet k to receivers 0..4.
        for k in 0..3u8 {
            for r in 0..4u16 {
                tx.push(20_000 + r, addr(40_000 + r), &[k; 1200]);
            }
        }
        let mut plan = SendPlan::with_capacity(16);
        plan.build(&tx, Some(gso::MAX_SEGMENTS));
        let want: Vec<_> = (0..4u16)
            .map(|r| (20_000 + r, 40_000 + r, 1200, vec![0, 1, 2]))
            .collect();
        assert_eq!(shape(&plan, &tx), want);
        assert!(
            plan.groups()
                .iter()
                .all(|g| g.bytes == 3600 && g.is_segmented())
        );
        let runs: Vec<_> = plan.port_runs().collect();
        assert_eq!(runs.len(), 4);
        assert_eq!(runs[2], (20_002, 2..3));

        // Without GSO every datagram is a group; order per destination holds.
        plan.build(&tx, None);
        assert_eq!(plan.len(), 12);
        let firsts: Vec<_> = shape(&plan, &tx)
            .into_iter()
            .filter(|g| g.0 == 20_001)
            .map(|g| g.3[0])
            .collect();
        assert_eq!(firsts, vec![0, 1, 2]);
        assert_eq!(plan.port_runs().count(), 4);
    }

    #[test]
    fn a_size_change_or_another_destination_splits_a_group() {
        let mut tx = TxQueue::with_capacity(16);
        tx.push(1, addr(9), &[0; 1000]);
        tx.push(1, addr(9), &[1; 1000]);
        tx.push(1, addr(9), &[2; 600]); // shorter: ends the group
        tx.push(1, addr(9), &[3; 600]); // cannot follow a shorter one
        tx.push(1, addr(9), &[4; 800]); // larger: new group
        tx.push(1, addr(8), &[5; 1000]); // other destination
        tx.push(2, addr(9), &[6; 1000]); // other source port
        let mut plan = SendPlan::default();
        plan.build(&tx, Some(64));
        assert_eq!(
            shape(&plan, &tx),
            vec![
                (1, 8, 1000, vec![5]),
                (1, 9, 1000, vec![0, 1, 2]),
                (1, 9, 600, vec![3]),
                (1, 9, 800, vec![4]),
                (2, 9, 1000, vec![6]),
            ]
        );
        assert_eq!(plan.groups()[1].bytes, 2600);
        assert_eq!(
            plan.port_runs().collect::<Vec<_>>(),
            vec![(1, 0..4), (2, 4..5)]
        );
    }

    #[test]
    fn max_segments_and_max_bytes_split_a_long_run_in_order() {
        let mut tx = TxQueue::with_capacity(200);
        for k in 0..10u8 {
            tx.push(1, addr(9), &[k; 100]);
        }
        let mut plan = SendPlan::default();
        plan.build(&tx, Some(4));
        assert_eq!(
            shape(&plan, &tx),
            vec![
                (1, 9, 100, vec![0, 1, 2, 3]),
                (1, 9, 100, vec![4, 5, 6, 7]),
                (1, 9, 100, vec![8, 9]),
            ]
        );
        // 100 datagrams of 1400 bytes: at most 46 (64 KiB) per group, at most 64.
        tx.clear();
        for k in 0..100u8 {
            tx.push(1, addr(9), &[k; 1400]);
        }
        plan.build(&tx, Some(1000));
        let sizes: Vec<_> = plan.groups().iter().map(Group::len).collect();
        assert_eq!(sizes, vec![46, 46, 8]);
        let all: Vec<u8> = shape(&plan, &tx).into_iter().flat_map(|g| g.3).collect();
        assert_eq!(all, (0..100).collect::<Vec<u8>>());
    }

    #[test]
    fn interleaved_destinations_keep_their_own_order() {
        let mut tx = TxQueue::with_capacity(16);
        for k in 0..6u8 {
            let to = if k % 2 == 0 { 9 } else { 8 };
            tx.push(1, addr(to), &vec![k; 50 + k as usize]);
        }
        let mut plan = SendPlan::default();
        plan.build(&tx, Some(64));
        let by_dest = |port: u16| -> Vec<u8> {
            shape(&plan, &tx)
                .into_iter()
                .filter(|g| g.1 == port)
                .flat_map(|g| g.3)
                .collect()
        };
        assert_eq!(by_dest(9), vec![0, 2, 4]);
        assert_eq!(by_dest(8), vec![1, 3, 5]);
    }

    #[test]
    // msg_iovlen and msg_controllen are not usize on every libc.
    #[allow(clippy::unnecessary_cast)]
    fn msg_batch_points_into_the_queue_with_a_segment_cmsg_on_groups() {
        let mut tx = TxQueue::with_capacity(8);
        for k in 0..3u8 {
            tx.push(1, addr(9), &[k; 1200]);
        }
        tx.push(2, addr(7), &[9; 300]);
        let mut plan = SendPlan::default();
        plan.build(&tx, Some(64));
        let mut batch = MsgBatch::with_capacity(8);
        let hdrs = batch.fill(&plan, &tx);
        assert_eq!(hdrs.len(), 2);
        let h = &hdrs[0].msg_hdr;
        assert_eq!(h.msg_iovlen as usize, 3);
        assert!(!h.msg_control.is_null());
        // SAFETY: the header was just filled and tx is borrowed by it.
        let (first, name) = unsafe {
            (
                std::slice::from_raw_parts((*h.msg_iov.add(2)).iov_base.cast::<u8>(), 1200),
                &*h.msg_name.cast::<libc::sockaddr_storage>(),
            )
        };
        assert!(first.iter().all(|&b| b == 2));
        assert_eq!(
            udp::storage_to_socket_addr(name, h.msg_namelen),
            Some(addr(9))
        );
        let h = &hdrs[1].msg_hdr;
        assert_eq!(h.msg_iovlen as usize, 1);
        assert!(h.msg_control.is_null());
    }

    #[test]
    fn plan_and_batch_do_not_allocate_once_warmed_up() {
        let mut tx = TxQueue::with_capacity(64);
        for k in 0..48u16 {
            tx.push(1 + k % 4, addr(9 + k % 4), &[0; 1200]);
        }
        let mut plan = SendPlan::with_capacity(64);
        let mut batch = MsgBatch::with_capacity(64);
        plan.build(&tx, Some(64));
        let before = (plan.order.capacity(), plan.groups.capacity());
        let _ = batch.fill(&plan, &tx);
        let cap = batch.hdrs.capacity();
        for _ in 0..10 {
            plan.build(&tx, Some(64));
            let _ = batch.fill(&plan, &tx);
            plan.build(&tx, None);
            let _ = batch.fill(&plan, &tx);
        }
        assert_eq!((plan.order.capacity(), plan.groups.capacity()), before);
        assert_eq!(batch.hdrs.capacity(), cap);
    }
}
