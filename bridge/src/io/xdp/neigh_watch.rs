//! The kernel's neighbour and route changes as they happen: a
//! `NETLINK_ROUTE` socket subscribed to the neighbour and IPv4/IPv6 route
//! multicast groups, read when it is readable (the XDP backend polls it
//! beside the XSK). With it a next-hop MAC the backend cached is replaced or
//! dropped the moment the kernel's table changes (a peer that moved, a
//! flushed or failed entry, a new route), rather than once its
//! [`NEIGHBOUR_TTL`](super::driver::NEIGHBOUR_TTL) runs out.
//!
//! Raw netlink through `libc`, with [`super::neigh`]'s socket, message and
//! neighbour-entry reading.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::neigh::{
    RTM_DELNEIGH, RTM_DELROUTE, RTM_NEWNEIGH, RTM_NEWROUTE, messages, neighbour_entry, recv,
    route_socket,
};

/// `RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE`.
const GROUPS: u32 = 0x4 | 0x40 | 0x400;
/// Messages read per [`NeighbourWatch::drain`] call, at most (a flood of
/// changes is taken over several turns of the loop).
const MAX_READS: usize = 64;

/// One change of the kernel's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The neighbour entry of `ip` on `ifindex` changed: its usable MAC
    /// address now, or `None` (deleted, failed, still resolving).
    Neighbour {
        /// The interface.
        ifindex: u32,
        /// The neighbour's address.
        ip: IpAddr,
        /// Its MAC, when usable.
        mac: Option<[u8; 6]>,
    },
    /// A route was added or removed (or changes were lost: the socket's
    /// buffer overflowed): every cached next hop may be wrong.
    Routes,
}

/// The subscribed socket.
#[derive(Debug)]
pub struct NeighbourWatch {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl NeighbourWatch {
    /// Opens a non-blocking socket subscribed to the changes (in the calling
    /// thread's network namespace).
    pub fn open() -> io::Result<Self> {
        let fd = route_socket(true)?;
        // SAFETY: sockaddr_nl is plain data; zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = GROUPS;
        // SAFETY: binds `fd` to `addr`, whose size is passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            buf: vec![0u8; 16 * 1024],
        })
    }

    /// The descriptor, for a poll.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads what is waiting (until the socket would block, or
    /// [`MAX_READS`] datagrams) and hands each change to `f`. Returns
    /// whether the socket may hold more.
    pub fn drain(&mut self, mut f: impl FnMut(Change)) -> io::Result<bool> {
        for _ in 0..MAX_READS {
            match recv(&self.fd, &mut self.buf) {
                Ok(n) => {
                    if let Some(got) = self.buf.get(..n) {
                        parse(got, &mut f);
                    }
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(false),
                    Some(libc::EINTR) => {}
                    // Changes were dropped: start over from the tables.
                    Some(libc::ENOBUFS) => f(Change::Routes),
                    _ => return Err(e),
                },
            }
        }
        Ok(true)
    }
}

/// The changes in one netlink datagram (several messages); malformed ones
/// end the walk, unknown ones are skipped.
pub fn parse(msgs: &[u8], f: &mut impl FnMut(Change)) {
    for m in messages(msgs) {
        let Ok((ty, _, body)) = m else { return };
        match ty {
            RTM_NEWROUTE | RTM_DELROUTE => f(Change::Routes),
            RTM_NEWNEIGH | RTM_DELNEIGH => {
                let Some(n) = neighbour_entry(body) else {
                    continue;
                };
                let Some(ip) = n.ip else { continue };
                f(Change::Neighbour {
                    ifindex: n.ifindex,
                    ip,
                    mac: n.mac.filter(|_| ty == RTM_NEWNEIGH),
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::neigh::{NDA_DST, NDA_LLADDR, NDMSG_LEN, NLMSG_HDR, push_attr};
    use super::*;

    fn message(ty: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m.resize(m.len().next_multiple_of(4), 0);
        m
    }

    fn ndmsg(ifindex: i32, state: u16, ip: &[u8], mac: Option<&[u8]>) -> Vec<u8> {
        let mut b = vec![0u8; NDMSG_LEN];
        b[0] = if ip.len() == 4 { 2 } else { 10 };
        b[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        b[8..10].copy_from_slice(&state.to_ne_bytes());
        push_attr(&mut b, NDA_DST, ip);
        if let Some(mac) = mac {
            push_attr(&mut b, NDA_LLADDR, mac);
        }
        b
    }

    fn changes(msgs: &[u8]) -> Vec<Change> {
        let mut out = Vec::new();
        parse(msgs, &mut |c| out.push(c));
        out
    }

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];

    #[test]
    fn neighbour_and_route_messages_become_changes() {
        let reachable = 0x02;
        let mut d = message(
            RTM_NEWNEIGH,
            &ndmsg(5, reachable, &[10, 0, 0, 2], Some(&MAC)),
        );
        d.extend(message(
            RTM_DELNEIGH,
            &ndmsg(5, reachable, &[10, 0, 0, 3], Some(&MAC)),
        ));
        // Failed: no usable address, whatever it still names.
        d.extend(message(
            RTM_NEWNEIGH,
            &ndmsg(5, 0x20, &[10, 0, 0, 4], Some(&MAC)),
        ));
        let v6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        d.extend(message(RTM_NEWNEIGH, &ndmsg(6, reachable, &v6, Some(&MAC))));
        d.extend(message(RTM_NEWROUTE, &[0u8; 12]));
        d.extend(message(16, &[0u8; 16])); // a link message: not ours
        let got = changes(&d);
        let n = |ifindex, ip: [u8; 4], mac| Change::Neighbour {
            ifindex,
            ip: IpAddr::from(ip),
            mac,
        };
        assert_eq!(
            got,
            [
                n(5, [10, 0, 0, 2], Some(MAC)),
                n(5, [10, 0, 0, 3], None),
                n(5, [10, 0, 0, 4], None),
                Change::Neighbour {
                    ifindex: 6,
                    ip: IpAddr::from(v6),
                    mac: Some(MAC)
                },
                Change::Routes,
            ]
        );
    }

    #[test]
    fn malformed_messages_end_the_walk_without_a_panic() {
        let good = message(RTM_NEWROUTE, &[0u8; 12]);
        // A length past the datagram's end.
        let mut d = good.clone();
        d.extend_from_slice(&200u32.to_ne_bytes());
        d.extend_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
        d.extend_from_slice(&[0; 10]);
        assert_eq!(changes(&d), [Change::Routes]);
        // A neighbour message too short for its header, one without an
        // address, and a length under the header's.
        let mut d = message(RTM_NEWNEIGH, &[0u8; 6]);
        d.extend(message(RTM_NEWNEIGH, &[0u8; NDMSG_LEN]));
        d.extend_from_slice(&4u32.to_ne_bytes());
        d.extend_from_slice(&[0; 12]);
        assert_eq!(changes(&d), []);
        for cut in 0..good.len() {
            let _ = changes(&good[..cut]);
        }
    }
}
