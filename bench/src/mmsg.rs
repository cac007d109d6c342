//! recvmmsg/sendmmsg batches with buffers allocated once.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use ringbridge_bridge::io::udp;

/// Size of every datagram buffer (larger than any media packet on loopback).
pub const DATAGRAM_BUF: usize = 2048;

/// Buffers for up to `capacity` datagrams and the headers to move them with one
/// system call.
pub struct Batch {
    /// The datagrams' bytes, [`DATAGRAM_BUF`] each.
    pub bufs: Vec<[u8; DATAGRAM_BUF]>,
    /// Length of each datagram (received, or to send).
    pub lens: Vec<usize>,
    /// Peer address of each datagram (received, or to send to).
    pub names: Vec<libc::sockaddr_storage>,
    /// Whether [`Batch::recv`] asks for the peer addresses (default `true`;
    /// a receiver that does not need them saves the kernel copying them out).
    pub want_names: bool,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("capacity", &self.bufs.len())
            .finish_non_exhaustive()
    }
}

impl Batch {
    /// Room for `capacity` datagrams.
    pub fn new(capacity: usize) -> Self {
        Self {
            bufs: vec![[0u8; DATAGRAM_BUF]; capacity],
            lens: vec![0; capacity],
            names: vec![udp::zeroed_storage(); capacity],
            want_names: true,
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                capacity
            ],
            hdrs: vec![udp::zeroed_mmsghdr(); capacity],
        }
    }

    /// How many datagrams fit.
    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    fn prepare(&mut self, n: usize, recv: bool) {
        for i in 0..n {
            self.iov[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: if recv { DATAGRAM_BUF } else { self.lens[i] },
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr = udp::zeroed_msghdr();
            h.msg_hdr.msg_iov = &mut self.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_name = if recv && !self.want_names {
                std::ptr::null_mut()
            } else {
                (&mut self.names[i] as *mut libc::sockaddr_storage).cast()
            };
            h.msg_hdr.msg_namelen = if recv && !self.want_names {
                0
            } else if recv {
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t
            } else if self.names[i].ss_family == libc::AF_INET6 as libc::sa_family_t {
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
            } else {
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
            };
            h.msg_len = 0;
        }
    }

    /// Receives up to [`Batch::capacity`] datagrams from non-blocking `fd`
    /// without waiting; `Ok(0)` when none is queued.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.capacity();
        self.prepare(n, true);
        // SAFETY: hdrs[..n] point at iov[..n], bufs[..n] and names[..n], all
        // owned by self, not moved during the call, of the sizes given.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let got = got as usize;
        for i in 0..got {
            self.lens[i] = self.hdrs[i].msg_len as usize;
        }
        Ok(got)
    }

    /// The peer address of received datagram `i` (`None` when
    /// [`Batch::want_names`] is off).
    pub fn name(&self, i: usize) -> Option<SocketAddr> {
        udp::storage_to_socket_addr(&self.names[i], self.hdrs[i].msg_hdr.msg_namelen)
    }

    /// Sends datagrams `..n` (lengths in [`Batch::lens`], addresses in
    /// [`Batch::names`]) from non-blocking `fd`; returns how many left (0 when the
    /// socket buffer is full).
    pub fn send(&mut self, fd: RawFd, n: usize) -> io::Result<usize> {
        let n = n.min(self.capacity());
        self.prepare(n, false);
        let mut done = 0;
        while done < n {
            // SAFETY: as in `recv`, for hdrs[done..n].
            let sent = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[done..].as_mut_ptr(),
                    (n - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return if done > 0 || e.kind() == io::ErrorKind::WouldBlock {
                    Ok(done)
                } else {
                    Err(e)
                };
            }
            if sent == 0 {
                break;
            }
            done += sent as usize;
        }
        Ok(done)
    }

    /// Sets the destination of datagram `i`.
    pub fn set_name(&mut self, i: usize, addr: &SocketAddr) {
        udp::socket_addr_to_storage(addr, &mut self.names[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_goes_out_and_comes_back_whole() {
        let a = udp::bind_udp("127.0.0.1:0".parse().expect("addr")).expect("a");
        let b = udp::bind_udp("127.0.0.1:0".parse().expect("addr")).expect("b");
        let to = b.local_addr().expect("b addr");
        let mut out = Batch::new(4);
        for i in 0..3 {
            out.bufs[i][..5].copy_from_slice(&[i as u8; 5]);
            out.lens[i] = 5 + i;
            out.set_name(i, &to);
        }
        assert_eq!(out.send(a.as_raw_fd(), 3).expect("send"), 3);
        let mut inb = Batch::new(8);
        let mut got = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while got < 3 && std::time::Instant::now() < deadline {
            let n = inb.recv(b.as_raw_fd()).expect("recv");
            for i in 0..n {
                assert_eq!(inb.lens[i], 5 + got);
                assert_eq!(inb.bufs[i][0], got as u8);
                assert_eq!(inb.name(i), a.local_addr().ok());
                got += 1;
            }
        }
        assert_eq!(got, 3);
    }

    #[test]
    fn without_names_the_datagrams_still_come_whole() {
        let a = udp::bind_udp("127.0.0.1:0".parse().expect("addr")).expect("a");
        let b = udp::bind_udp("127.0.0.1:0".parse().expect("addr")).expect("b");
        a.send_to(&[7u8; 300], b.local_addr().expect("b addr"))
            .expect("send");
        let mut inb = Batch::new(4);
        inb.want_names = false;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut n = 0;
        while n == 0 && std::time::Instant::now() < deadline {
            n = inb.recv(b.as_raw_fd()).expect("recv");
        }
        assert_eq!(n, 1);
        assert_eq!(inb.lens[0], 300);
        assert_eq!(inb.bufs[0][299], 7);
        assert_eq!(inb.name(0), None);
    }
}
