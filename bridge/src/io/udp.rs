//! UDP socket plumbing shared by the drivers: binding media sockets, the
//! `UDP_SEGMENT` control message for GSO sends, and `SocketAddr` <->
//! `sockaddr_storage` conversion for `msghdr`s (recvmmsg, sendmmsg, io_uring
//! `RecvMsg`/`SendMsg`), all without allocating.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Receive and send buffer size requested for every media socket (4 MiB): a
/// burst of fan-out must not overflow the kernel queue while the shard works.
/// The kernel caps it at `net.core.rmem_max` / `wmem_max`.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// Binds a non-blocking UDP socket on `addr` with [`SOCKET_BUFFER_BYTES`] of
/// receive and send buffer requested.
///
/// The buffer sizes are best effort: what the kernel granted is logged at debug
/// level, and a refusal never fails the bind (`ringbridge tune` raises the caps).
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    tracing::debug!(
        %addr,
        requested = SOCKET_BUFFER_BYTES,
        // Linux reports twice the usable size (it counts its bookkeeping).
        rcvbuf = socket.recv_buffer_size().unwrap_or(0),
        sndbuf = socket.send_buffer_size().unwrap_or(0),
        "media socket buffers"
    );
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Size of a [`CmsgBuf`]: room for one `UDP_SEGMENT` control message (a `u16`),
/// with space to spare.
pub const CMSG_BUF_LEN: usize = 32;

// SAFETY: CMSG_SPACE is pure arithmetic on its argument.
const UDP_SEGMENT_SPACE: usize = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as usize;
const _: () = assert!(UDP_SEGMENT_SPACE <= CMSG_BUF_LEN);

/// A control-message buffer for one `msghdr`, aligned for `cmsghdr`.
///
/// Owned by the caller (one per message in flight); the `msghdr` that points to
/// it must not outlive it or see it move.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct CmsgBuf {
    bytes: [u8; CMSG_BUF_LEN],
}

const _: () = assert!(mem::align_of::<CmsgBuf>() >= mem::align_of::<libc::cmsghdr>());

impl Default for CmsgBuf {
    fn default() -> Self {
        Self {
            bytes: [0; CMSG_BUF_LEN],
        }
    }
}

impl CmsgBuf {
    /// The buffer's bytes (what the kernel wrote, on a receive).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The buffer's start, for a `msghdr`'s `msg_control`.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.bytes.as_mut_ptr()
    }
}

const _: () = assert!(crate::io::rx_time::CONTROL_LEN <= CMSG_BUF_LEN);

impl std::fmt::Debug for CmsgBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmsgBuf").finish_non_exhaustive()
    }
}

/// Points `hdr`'s control data at `buf` and writes one `UDP_SEGMENT` control
/// message (level `SOL_UDP`, a `u16` segment size) into it: the kernel then
/// splits the message's payload into datagrams of `segment_size` bytes (the last
/// one may be shorter).
///
/// `hdr` keeps a pointer to `buf`: `buf` must stay in place until the message
/// is sent (for io_uring, until its completion).
pub fn set_udp_segment(hdr: &mut libc::msghdr, buf: &mut CmsgBuf, segment_size: u16) {
    buf.bytes = [0; CMSG_BUF_LEN];
    hdr.msg_control = buf.bytes.as_mut_ptr().cast();
    hdr.msg_controllen = UDP_SEGMENT_SPACE as _;
    // SAFETY: msg_control points to `buf`, which is aligned for cmsghdr and has
    // UDP_SEGMENT_SPACE (checked at compile time) bytes, so CMSG_FIRSTHDR
    // returns a non-null pointer to a whole cmsghdr inside `buf`, followed by
    // room for the u16 payload at CMSG_DATA.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        debug_assert!(!cmsg.is_null());
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment_size);
    }
}

/// Removes any control data from `hdr`.
pub fn clear_control(hdr: &mut libc::msghdr) {
    hdr.msg_control = std::ptr::null_mut();
    hdr.msg_controllen = 0;
}

/// Writes `addr` into `out` as a `sockaddr_in` or `sockaddr_in6` and returns the
/// length to put into `msg_namelen`.
pub fn socket_addr_to_storage(
    addr: &SocketAddr,
    out: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in;
            // every bit pattern is a valid sockaddr_in.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            *sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6;
            // every bit pattern is a valid sockaddr_in6.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            *sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                // Host order, as std and socket2 pass it.
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads the address the kernel wrote into `storage` (`len` bytes of it, as
/// returned in `msg_namelen`); `None` for another family or a short length.
pub fn storage_to_socket_addr(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is larger than and aligned for it.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, and
            // sockaddr_storage is larger than and aligned for it.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// An all-zero `sockaddr_storage` (for preallocated receive and send arrays).
pub fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    unsafe { mem::zeroed() }
}

/// An all-zero `msghdr` (no name, no iovecs, no control data).
pub fn zeroed_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is plain old data (integers and nullable raw pointers,
    // plus private padding on some libcs); all zeroes is a valid value.
    unsafe { mem::zeroed() }
}

/// An all-zero `mmsghdr`.
pub fn zeroed_mmsghdr() -> libc::mmsghdr {
    libc::mmsghdr {
        msg_hdr: zeroed_msghdr(),
        msg_len: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_sockaddr_storage() {
        let cases: [SocketAddr; 3] = [
            "127.0.0.1:23456".parse().expect("v4"),
            "[::1]:443".parse().expect("v6"),
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().expect("ip"), 9, 7, 3)),
        ];
        for addr in cases {
            let mut s = zeroed_storage();
            let len = socket_addr_to_storage(&addr, &mut s);
            assert_eq!(storage_to_socket_addr(&s, len), Some(addr));
            assert_eq!(storage_to_socket_addr(&s, len - 1), None);
        }
        assert_eq!(storage_to_socket_addr(&zeroed_storage(), 128), None);
    }

    #[test]
    // msg_iovlen and msg_controllen are not usize on every libc.
    #[allow(clippy::unnecessary_cast)]
    fn udp_segment_cmsg_is_what_the_kernel_expects() {
        let mut hdr = zeroed_msghdr();
        let mut buf = CmsgBuf::default();
        set_udp_segment(&mut hdr, &mut buf, 1216);
        assert_eq!(hdr.msg_controllen as usize, UDP_SEGMENT_SPACE);
        // SAFETY: hdr points at buf, which set_udp_segment filled.
        let (level, ty, len, value) = unsafe {
            let c = libc::CMSG_FIRSTHDR(&hdr);
            (
                (*c).cmsg_level,
                (*c).cmsg_type,
                (*c).cmsg_len as usize,
                std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u16>()),
            )
        };
        assert_eq!((level, ty, value), (libc::SOL_UDP, libc::UDP_SEGMENT, 1216));
        // SAFETY: arithmetic only.
        assert_eq!(len, unsafe { libc::CMSG_LEN(2) } as usize);
        clear_control(&mut hdr);
        assert!(hdr.msg_control.is_null());
    }

    #[test]
    fn bind_udp_is_non_blocking() {
        let s = bind_udp("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let mut buf = [0u8; 16];
        let e = s.recv_from(&mut buf).expect_err("nothing to read");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
