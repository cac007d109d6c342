//! Kernel receive timestamps (`SO_TIMESTAMPNS`) for the datagrams the drivers
//! read, turned into the shard's [`Instant`] clock.
//!
//! The shard reads datagrams in batches and stamps a batch with one `now`.
//! That is fine for timers, but not for the arrival times the bandwidth
//! estimation feeds back to senders: transport-cc feedback reports each
//! packet's arrival to 250 us, and a sender's delay-based estimator reads the
//! spacing of those arrivals. On a busy 2-core machine the shard thread may
//! wait several milliseconds for a core and then read everything that queued
//! meanwhile at one `now`: a probe cluster then looks as if it arrived at once
//! (libwebrtc rejects a probe whose receive rate is over twice its send rate)
//! and ordinary media looks like a queue draining. The kernel stamps each
//! datagram when its socket receives it, before any of that waiting; the
//! drivers ask for the stamp as a control message and convert it here.
//!
//! `SO_TIMESTAMPNS` stamps with `CLOCK_REALTIME`, so the conversion samples
//! that clock and the monotonic one together once per batch
//! ([`RxClock::sample`]) and takes each datagram's age from the pair. A stamp
//! that is in the future of the sample or older than [`MAX_AGE`] (the wall
//! clock was stepped) is ignored and the datagram gets the batch's `now`, as
//! one without a stamp does.

use std::io;
use std::mem;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The oldest stamp that is believed: a datagram cannot have waited longer in
/// the socket's queue than this, so an older stamp means the wall clock moved.
pub const MAX_AGE: Duration = Duration::from_secs(1);

// SAFETY: CMSG_SPACE is pure arithmetic on its argument.
const TIMESPEC_SPACE: usize =
    unsafe { libc::CMSG_SPACE(mem::size_of::<libc::timespec>() as u32) } as usize;

/// Bytes of control-message space a receive needs for the timestamp.
pub const CONTROL_LEN: usize = TIMESPEC_SPACE;

/// Asks the kernel to stamp every datagram `sock` receives
/// (`SO_TIMESTAMPNS`); the stamp then comes as an `SCM_TIMESTAMPNS` control
/// message wherever the receive leaves [`CONTROL_LEN`] bytes of room for it.
pub fn enable(sock: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid fd and a pointer to a c_int of the length given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// [`enable`] on a media socket a driver opens (local `port`): a refusal is
/// logged at debug level and the socket's datagrams get their batch's time.
pub fn request(sock: &impl AsRawFd, port: u16) {
    if let Err(error) = enable(sock) {
        tracing::debug!(port, %error, "no kernel receive timestamps on this socket");
    }
}

/// The `SCM_TIMESTAMPNS` stamp in the control messages `control` (the
/// `msg_control` bytes the kernel filled, `msg_controllen` long), as time since
/// the Unix epoch; `None` when there is none or the bytes are malformed.
pub fn kernel_stamp(control: &[u8]) -> Option<Duration> {
    // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; } then
    // the data, each message padded to the alignment of size_t.
    const LEN: usize = mem::size_of::<usize>();
    const HDR: usize = LEN + 8;
    let align = |n: usize| n.div_ceil(LEN) * LEN;
    let mut rest = control;
    while rest.len() >= HDR {
        let len = usize::from_ne_bytes(rest.get(..LEN)?.try_into().ok()?);
        let level = i32::from_ne_bytes(rest.get(LEN..LEN + 4)?.try_into().ok()?);
        let kind = i32::from_ne_bytes(rest.get(LEN + 4..LEN + 8)?.try_into().ok()?);
        if len < HDR {
            return None;
        }
        let data = rest.get(align(HDR)..len)?;
        if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS {
            // struct timespec { time_t tv_sec; long tv_nsec; } (64-bit each on
            // the 64-bit targets the bridge runs on).
            let secs = i64::from_ne_bytes(data.get(..8)?.try_into().ok()?);
            let nanos = i64::from_ne_bytes(data.get(8..16)?.try_into().ok()?);
            let secs = u64::try_from(secs).ok()?;
            let nanos = u32::try_from(nanos).ok().filter(|&n| n < 1_000_000_000)?;
            return Some(Duration::new(secs, nanos));
        }
        rest = rest.get(align(len)..).unwrap_or_default();
    }
    None
}

/// The wall clock and the monotonic clock read together, to turn kernel
/// stamps into [`Instant`]s.
#[derive(Debug, Clone, Copy)]
pub struct RxClock {
    now: Instant,
    wall: Duration,
}

impl RxClock {
    /// Reads both clocks (two vDSO calls: once per batch, not per datagram).
    pub fn sample() -> Self {
        let now = Instant::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self { now, wall }
    }

    /// A clock pair given explicitly (tests).
    pub fn at(now: Instant, wall: Duration) -> Self {
        Self { now, wall }
    }

    /// The arrival of a datagram stamped `stamp` by the kernel, no later than
    /// `latest` (the batch's `now`, which the core must never see an arrival
    /// after); `latest` itself without a usable stamp.
    pub fn arrival(&self, stamp: Option<Duration>, latest: Instant) -> Instant {
        let Some(age) = stamp.and_then(|s| self.wall.checked_sub(s)) else {
            return latest;
        };
        if age > MAX_AGE {
            return latest;
        }
        self.now.checked_sub(age).map_or(latest, |t| t.min(latest))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Control bytes as the kernel writes them: one `SCM_TIMESTAMPNS` message.
    fn timestamp_cmsg(secs: i64, nanos: i64) -> Vec<u8> {
        let mut b = Vec::new();
        let len = mem::size_of::<usize>() + 8 + 16;
        b.extend_from_slice(&len.to_ne_bytes());
        b.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        b.extend_from_slice(&libc::SCM_TIMESTAMPNS.to_ne_bytes());
        b.extend_from_slice(&secs.to_ne_bytes());
        b.extend_from_slice(&nanos.to_ne_bytes());
        b
    }

    #[test]
    fn the_stamp_is_read_from_its_control_message() {
        let c = timestamp_cmsg(1_700_000_000, 123_456_789);
        assert_eq!(c.len(), CONTROL_LEN);
        assert_eq!(
            kernel_stamp(&c),
            Some(Duration::new(1_700_000_000, 123_456_789))
        );
    }

    #[test]
    fn other_control_messages_are_skipped() {
        // An IP_TOS message (level IPPROTO_IP, one int of data, padded) first.
        let mut c = Vec::new();
        let len = mem::size_of::<usize>() + 8 + 4;
        c.extend_from_slice(&len.to_ne_bytes());
        c.extend_from_slice(&libc::IPPROTO_IP.to_ne_bytes());
        c.extend_from_slice(&libc::IP_TOS.to_ne_bytes());
        c.extend_from_slice(&[0x2e, 0, 0, 0, 0, 0, 0, 0]);
        c.extend_from_slice(&timestamp_cmsg(5, 6));
        assert_eq!(kernel_stamp(&c), Some(Duration::new(5, 6)));
    }

    #[test]
    fn malformed_control_bytes_give_no_stamp() {
        assert_eq!(kernel_stamp(&[]), None);
        let good = timestamp_cmsg(5, 6);
        for cut in 0..good.len() {
            assert_eq!(kernel_stamp(&good[..cut]), None, "cut at {cut}");
        }
        // A length below the header's own, which would loop forever if trusted.
        let mut zero = good.clone();
        zero[..mem::size_of::<usize>()].copy_from_slice(&0usize.to_ne_bytes());
        assert_eq!(kernel_stamp(&zero), None);
        // Nanoseconds out of range, negative seconds.
        assert_eq!(kernel_stamp(&timestamp_cmsg(5, 1_000_000_000)), None);
        assert_eq!(kernel_stamp(&timestamp_cmsg(-1, 0)), None);
    }

    #[test]
    fn a_stamp_becomes_the_instant_that_long_before_the_sample() {
        let now = Instant::now();
        let clock = RxClock::at(now, Duration::from_secs(1000));
        let stamp = Duration::from_secs(1000) - Duration::from_millis(7);
        let latest = now + Duration::from_millis(1);
        assert_eq!(
            clock.arrival(Some(stamp), latest),
            now - Duration::from_millis(7)
        );
    }

    #[test]
    fn unusable_stamps_give_the_batch_time() {
        let now = Instant::now();
        let clock = RxClock::at(now, Duration::from_secs(1000));
        // None, from the future (clock stepped back), too old (stepped forward).
        assert_eq!(clock.arrival(None, now), now);
        assert_eq!(clock.arrival(Some(Duration::from_secs(1001)), now), now);
        assert_eq!(clock.arrival(Some(Duration::from_secs(998)), now), now);
        // Never after the batch's now.
        let earlier = now - Duration::from_millis(3);
        assert_eq!(
            clock.arrival(Some(Duration::from_secs(1000)), earlier),
            earlier
        );
    }
}

/// A check both socket backends run on themselves: datagrams that wait in the
/// socket while the shard is busy keep the spacing they arrived with.
#[cfg(test)]
pub(crate) mod backend_check {
    use std::net::{SocketAddr, UdpSocket};
    use std::time::{Duration, Instant};

    use crate::io::driver::Io;
    use crate::io::tcp_conns::TcpConns;
    use crate::io::udp::bind_udp;

    /// How long apart the test sends its two datagrams.
    const GAP: Duration = Duration::from_millis(40);

    /// Sends two datagrams `GAP` apart to a socket `io` holds while `io` is
    /// not reading (a busy shard), then reads both in one batch: their
    /// arrivals must be about `GAP` apart and before the batch's `now`.
    #[allow(clippy::unwrap_used, clippy::expect_used)]
    pub(crate) fn queued_datagrams_keep_their_arrival_spacing(mut io: impl Io) {
        let sock = bind_udp("127.0.0.1:0".parse().unwrap()).expect("bind");
        let port = sock.local_addr().unwrap().port();
        let to: SocketAddr = sock.local_addr().unwrap();
        io.open(port, sock).expect("open");
        // The kernel turns receive stamping on for the whole host from a work
        // queue once the first socket asks (`net_enable_timestamp`); until it
        // has, a datagram is stamped when it is read. A bridge's first socket
        // opens long before media flows.
        std::thread::sleep(Duration::from_millis(100));
        let peer = UdpSocket::bind("127.0.0.1:0").expect("peer");
        peer.send_to(&[0x80, 1], to).unwrap();
        std::thread::sleep(GAP);
        peer.send_to(&[0x80, 2], to).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        let mut tcp = TcpConns::new(Instant::now()).expect("tcp");
        let mut arrivals: Vec<(u8, Instant)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut batch_now = Instant::now();
        while arrivals.len() < 2 && Instant::now() < deadline {
            io.wait(Duration::from_millis(50)).expect("wait");
            batch_now = Instant::now();
            io.receive(batch_now, &mut tcp, |_, _, arrival, d, _| {
                arrivals.push((d.get(1).copied().unwrap_or(0), arrival));
            })
            .expect("receive");
        }
        assert_eq!(arrivals.len(), 2, "both datagrams received");
        let (first, second) = (arrivals[0].1, arrivals[1].1);
        assert!(second <= batch_now, "an arrival is never after the batch");
        let spacing = second.saturating_duration_since(first);
        assert!(
            spacing >= GAP - Duration::from_millis(5) && spacing < GAP * 3,
            "sent {GAP:?} apart, arrivals {spacing:?} apart (batch time for both would be 0)"
        );
        assert!(
            batch_now.saturating_duration_since(first) >= GAP,
            "the first datagram's arrival is its kernel stamp, not the batch's time"
        );
    }
}
