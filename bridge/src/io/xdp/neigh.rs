//! The next hop of a datagram the bridge frames itself: the kernel's routing
//! table (`RTM_GETROUTE`: output interface, gateway, preferred source), its
//! neighbour table (`RTM_GETNEIGH`: the next hop's MAC) and the interface's
//! own MAC (`RTM_GETLINK`), each one request on a `NETLINK_ROUTE` socket.
//!
//! Raw netlink through `libc` (three fixed-shape requests, a few attributes
//! read back) rather than the `rtnetlink` crates, whose async stack and
//! frequently changing message types bring far more than this needs.
//! These are control-path lookups (once per new remote address, cached by
//! the caller), not per packet.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_GETLINK: u16 = 18;
const RTM_NEWLINK: u16 = 16;
const RTM_GETROUTE: u16 = 26;
pub(super) const RTM_NEWROUTE: u16 = 24;
pub(super) const RTM_DELROUTE: u16 = 25;
const RTM_GETNEIGH: u16 = 30;
pub(super) const RTM_NEWNEIGH: u16 = 28;
pub(super) const RTM_DELNEIGH: u16 = 29;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const IFLA_ADDRESS: u16 = 1;
const IFLA_MTU: u16 = 4;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
pub(super) const NDA_DST: u16 = 1;
pub(super) const NDA_LLADDR: u16 = 2;
/// `NUD_INCOMPLETE | NUD_FAILED`: no usable address.
const NUD_UNUSABLE: u16 = 0x01 | 0x20;
/// `struct nlmsghdr`: length, type, flags, sequence, port.
pub(super) const NLMSG_HDR: usize = 16;
/// `struct ndmsg`: family, pads, ifindex, state, flags, type.
pub(super) const NDMSG_LEN: usize = 12;

/// Where a datagram to some destination leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The output interface.
    pub ifindex: u32,
    /// The gateway, when not on-link.
    pub gateway: Option<IpAddr>,
    /// The preferred source address.
    pub prefsrc: Option<IpAddr>,
}

impl Route {
    /// The address whose MAC the frame goes to: the gateway, else the
    /// destination itself.
    pub fn next_hop(&self, dst: IpAddr) -> IpAddr {
        self.gateway.unwrap_or(dst)
    }
}

/// An interface's link-layer facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Its MAC address.
    pub mac: [u8; 6],
    /// Its MTU.
    pub mtu: u32,
}

/// A `NETLINK_ROUTE` socket (in the network namespace of the thread that
/// opened it).
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

fn family(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn ip_from(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Appends one attribute (`struct rtattr`, padded to 4 bytes).
pub(super) fn push_attr(msg: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(data);
    msg.resize(msg.len().next_multiple_of(4), 0);
}

/// One neighbour table entry, as an `RTM_NEWNEIGH` message body reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NeighbourEntry {
    /// The interface.
    pub ifindex: u32,
    /// The neighbour's address, when the message names it.
    pub ip: Option<IpAddr>,
    /// Its MAC, when the entry's state makes it usable.
    pub mac: Option<[u8; 6]>,
}

/// Reads an `ndmsg` body and its attributes; `None` when it is too short.
pub(super) fn neighbour_entry(body: &[u8]) -> Option<NeighbourEntry> {
    let head = body.get(..NDMSG_LEN)?;
    let ifindex = u32::try_from(i32::from_ne_bytes([head[4], head[5], head[6], head[7]])).ok()?;
    let state = u16::from_ne_bytes([head[8], head[9]]);
    let mut entry = NeighbourEntry {
        ifindex,
        ip: None,
        mac: None,
    };
    for (kind, data) in attrs(body, NDMSG_LEN) {
        match kind {
            NDA_DST => entry.ip = ip_from(data),
            NDA_LLADDR => entry.mac = <[u8; 6]>::try_from(data).ok(),
            _ => {}
        }
    }
    if state & NUD_UNUSABLE != 0 {
        entry.mac = None;
    }
    Some(entry)
}

/// The messages of one netlink datagram: `(type, sequence, body)`, or
/// `Err` for one whose length does not fit (the walk ends there).
pub(super) fn messages(mut got: &[u8]) -> impl Iterator<Item = Result<(u16, u32, &[u8]), ()>> {
    std::iter::from_fn(move || {
        if got.len() < NLMSG_HDR {
            return None;
        }
        let len = u32::from_ne_bytes([got[0], got[1], got[2], got[3]]) as usize;
        let ty = u16::from_ne_bytes([got[4], got[5]]);
        let seq = u32::from_ne_bytes([got[8], got[9], got[10], got[11]]);
        if len < NLMSG_HDR || len > got.len() {
            got = &[];
            return Some(Err(()));
        }
        let body = &got[NLMSG_HDR..len];
        got = got.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some(Ok((ty, seq, body)))
    })
}

/// A new `NETLINK_ROUTE` socket, non-blocking or not.
pub(super) fn route_socket(nonblocking: bool) -> io::Result<OwnedFd> {
    let flags =
        libc::SOCK_RAW | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: a plain socket(2) call.
    let raw = unsafe { libc::socket(libc::AF_NETLINK, flags, libc::NETLINK_ROUTE) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Receives one datagram from `fd` into `buf`; its length.
pub(super) fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: receives into `buf`, whose length is passed.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// The attributes after a fixed header of `skip` bytes in a message body.
fn attrs(body: &[u8], skip: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = body.get(skip..).unwrap_or(&[]);
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*rest.first()?, *rest.get(1)?]));
        let kind = u16::from_ne_bytes([*rest.get(2)?, *rest.get(3)?]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let data = &rest[4..len];
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((kind, data))
    })
}

impl Netlink {
    /// Opens the socket.
    pub fn open() -> io::Result<Self> {
        let fd = route_socket(false)?;
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: a timeval and its size; `fd` is the new socket.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(Self {
            fd,
            seq: 0,
            buf: vec![0u8; 32 * 1024],
        })
    }

    /// Sends one request (`body`: the fixed header and attributes) and
    /// returns the body of the answer of type `want`.
    fn request(&mut self, kind: u16, body: &[u8], want: u16) -> io::Result<&[u8]> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = Vec::with_capacity(NLMSG_HDR + body.len());
        msg.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: sends `msg`, live for the call, to the kernel (no address:
        // a netlink socket's default peer is the kernel).
        let r = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let n = recv(&self.fd, &mut self.buf)?;
            let got = &self.buf[..n];
            let mut found = None;
            for m in messages(got) {
                let Ok((ty, seq, body)) = m else {
                    return Err(io::Error::other("malformed netlink answer"));
                };
                if seq != self.seq {
                    continue;
                }
                if ty == NLMSG_ERROR {
                    let e = body
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(0);
                    return Err(if e == 0 {
                        io::Error::other("netlink answered without data")
                    } else {
                        io::Error::from_raw_os_error(-e)
                    });
                }
                if ty == want {
                    // Offsets into `buf`, to return it borrowed from self.
                    let start = body.as_ptr() as usize - got.as_ptr() as usize;
                    found = Some((start, start + body.len()));
                    break;
                }
            }
            if let Some((s, e)) = found {
                return Ok(&self.buf[s..e]);
            }
        }
    }

    /// Interface `ifindex`'s MAC address and MTU.
    pub fn link(&mut self, ifindex: u32) -> io::Result<Link> {
        // struct ifinfomsg: family, pad, type, index, flags, change.
        let mut body = vec![0u8; 16];
        body[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
        let ans = self.request(RTM_GETLINK, &body, RTM_NEWLINK)?;
        let mut mac = None;
        let mut mtu = None;
        for (k, d) in attrs(ans, 16) {
            match k {
                IFLA_ADDRESS => mac = <[u8; 6]>::try_from(d).ok(),
                IFLA_MTU => mtu = <[u8; 4]>::try_from(d).ok().map(u32::from_ne_bytes),
                _ => {}
            }
        }
        match (mac, mtu) {
            (Some(mac), Some(mtu)) => Ok(Link { mac, mtu }),
            _ => Err(io::Error::other("interface has no Ethernet address")),
        }
    }

    /// The kernel's route to `dst`.
    pub fn route(&mut self, dst: IpAddr) -> io::Result<Route> {
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol,
        // scope, type, flags (u32).
        let mut body = vec![0u8; 12];
        body[0] = family(dst);
        body[1] = if dst.is_ipv4() { 32 } else { 128 };
        push_attr(&mut body, RTA_DST, &ip_bytes(&dst));
        let ans = self.request(RTM_GETROUTE, &body, RTM_NEWROUTE)?;
        let mut r = Route {
            ifindex: 0,
            gateway: None,
            prefsrc: None,
        };
        for (k, d) in attrs(ans, 12) {
            match k {
                RTA_OIF => {
                    r.ifindex = <[u8; 4]>::try_from(d).map(u32::from_ne_bytes).unwrap_or(0);
                }
                RTA_GATEWAY => r.gateway = ip_from(d),
                RTA_PREFSRC => r.prefsrc = ip_from(d),
                _ => {}
            }
        }
        if r.ifindex == 0 {
            return Err(io::Error::other("route without an output interface"));
        }
        Ok(r)
    }

    /// The MAC address the neighbour table holds for `ip` on `ifindex`, if
    /// it holds a usable one (`None` when absent or unresolved: the caller
    /// lets the kernel resolve it, e.g. by sending one datagram through it).
    pub fn neighbour(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<Option<[u8; 6]>> {
        // struct ndmsg: family, pad1, pad2 (u16), ifindex (i32), state
        // (u16), flags, type.
        let mut body = vec![0u8; 12];
        body[0] = family(ip);
        body[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
        push_attr(&mut body, NDA_DST, &ip_bytes(&ip));
        let ans = match self.request(RTM_GETNEIGH, &body, RTM_NEWNEIGH) {
            Ok(a) => a,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(neighbour_entry(ans).and_then(|n| n.mac))
    }

    /// The next hop's MAC address for a datagram to `dst`: the route's
    /// gateway or `dst` itself, looked up in the neighbour table of the
    /// route's interface.
    pub fn next_hop_mac(&mut self, dst: IpAddr) -> io::Result<Option<(Route, [u8; 6])>> {
        let route = self.route(dst)?;
        Ok(self
            .neighbour(route.ifindex, route.next_hop(dst))?
            .map(|mac| (route, mac)))
    }
}

/// The index of interface `name` (in the calling thread's namespace).
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with NUL"))?;
    // SAFETY: a NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_walked_with_padding_and_a_bad_length_stops_the_walk() {
        let mut b = vec![0u8; 12];
        push_attr(&mut b, 1, &[10, 0, 0, 1]);
        push_attr(&mut b, 2, &[1, 2, 3, 4, 5, 6]);
        push_attr(&mut b, 4, &7u32.to_ne_bytes());
        let got: Vec<_> = attrs(&b, 12).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], (2, &[1u8, 2, 3, 4, 5, 6][..]));
        assert_eq!(got[2].1, &7u32.to_ne_bytes());
        b.extend_from_slice(&[200, 0, 9, 0]); // claims 200 bytes
        assert_eq!(attrs(&b, 12).count(), 3);
        assert_eq!(attrs(&b, 500).count(), 0);
    }

    /// Loopback always exists: its link answers with a (zero) MAC, and the
    /// route to 127.0.0.1 leaves through it.
    #[test]
    fn the_kernel_answers_for_loopback() {
        let lo = ifindex("lo").expect("lo");
        let mut nl = Netlink::open().expect("netlink");
        let link = nl.link(lo).expect("link");
        assert_eq!(link.mac, [0; 6]);
        assert!(link.mtu >= 1500);
        let r = nl.route("127.0.0.1".parse().expect("ip")).expect("route");
        assert_eq!(r.ifindex, lo);
        assert_eq!(r.gateway, None);
    }
}
