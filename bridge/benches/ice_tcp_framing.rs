//! `cargo bench -p ringbridge-bridge --bench ice_tcp_framing`
//!
//! What the ICE-TCP fallback costs per datagram next to UDP, in CPU
//! nanoseconds of the calling thread (`CLOCK_THREAD_CPUTIME_ID`), for
//! 1200-byte datagrams (a video packet) sent in groups of 3 (a video frame to
//! one receiver, as the shard's send plan groups them):
//!
//! - `framing`: RFC 4571 framing and deframing alone, in user space: the
//!   shard's [`FrameBacklog::push`] on the send side and [`Deframer`] on the
//!   receive side (both copy the datagram once).
//! - `udp`: one `sendmmsg` of the 3 datagrams and 3 `recv`s, over 127.0.0.1.
//! - `tcp`: the 3 framed into a backlog and one `write`, one `read` and the
//!   deframing, over a 127.0.0.1 connection.
//!
//! The two loopback rows count both ends' system calls on one thread, so the
//! difference between them is the fallback's cost per datagram (send and
//! receive together). Each row runs `ROUNDS` times; the median is printed.
//!
//! Then the shard itself: CPU nanoseconds of the shard thread per forwarded
//! egress datagram (as `shard_forwarding`: one UDP sender, fan-out 4, 1200-byte
//! VP8 packets in frames of 3) with the four receivers on UDP and on ICE-TCP,
//! per backend (GSO as the host allows), and the share of the TCP egress a
//! full connection backlog dropped (the receivers are one test thread).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;

use ringbridge_bridge::io::Backend;
use ringbridge_bridge::io::tcp::{Deframer, FrameBacklog};

#[path = "../tests/support/harness.rs"]
mod harness;

const ROUNDS: usize = 5;
const DATAGRAM: usize = 1200;
const GROUP: usize = 3;
/// In the shard rows, the sender stays at most this many datagrams ahead of
/// the shard: a blast further ahead (`shard_forwarding` uses 256) overflows
/// the 64 KiB backlog of each receiver's connection (128 of the 1024 frames
/// in flight fit), which a real receiver at a video rate never sees.
const WINDOW: u64 = 32;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// ns per datagram of `run(groups)`, which handles `groups` groups of [`GROUP`].
fn per_datagram(groups: usize, run: &mut dyn FnMut(usize)) -> f64 {
    let t0 = thread_cpu_ns();
    run(groups);
    (thread_cpu_ns() - t0) as f64 / (groups * GROUP) as f64
}

fn framing(groups: usize) {
    let mut backlog = FrameBacklog::new();
    let mut deframer = Deframer::new();
    let datagram = [0x5a_u8; DATAGRAM];
    let mut sum = 0usize;
    for _ in 0..groups {
        for _ in 0..GROUP {
            assert!(backlog.push(&datagram));
        }
        let n = deframer.extend(backlog.pending());
        backlog.consume(n);
        while let Ok(Some(d)) = deframer.next_frame() {
            sum += usize::from(d[0]);
        }
    }
    assert_eq!(sum, groups * GROUP * 0x5a);
}

fn udp(groups: usize) {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    tx.connect(rx.local_addr().expect("addr")).expect("connect");
    let datagram = [0x5a_u8; DATAGRAM];
    let mut iovs: Vec<libc::iovec> = (0..GROUP)
        .map(|_| libc::iovec {
            iov_base: datagram.as_ptr().cast_mut().cast(),
            iov_len: DATAGRAM,
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: an all-zero msghdr is valid; the iovec outlives the calls.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            }
        })
        .collect();
    let mut buf = [0u8; 2048];
    for _ in 0..groups {
        // SAFETY: hdrs point at live iovecs and the datagram.
        let n = unsafe { libc::sendmmsg(tx.as_raw_fd(), hdrs.as_mut_ptr(), GROUP as u32, 0) };
        assert_eq!(n, GROUP as i32);
        for _ in 0..GROUP {
            assert_eq!(rx.recv(&mut buf).expect("recv"), DATAGRAM);
        }
    }
}

fn tcp(groups: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut tx = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut rx, _) = listener.accept().expect("accept");
    tx.set_nodelay(true).expect("nodelay");
    let mut backlog = FrameBacklog::new();
    let mut deframer = Deframer::new();
    let datagram = [0x5a_u8; DATAGRAM];
    let mut got = 0usize;
    for _ in 0..groups {
        for _ in 0..GROUP {
            assert!(backlog.push(&datagram));
        }
        let n = tx.write(backlog.pending()).expect("write");
        backlog.consume(n);
        assert!(backlog.is_empty(), "loopback takes a whole group");
        let want = got + GROUP;
        while got < want {
            let n = rx.read(deframer.spare()).expect("read");
            deframer.filled(n);
            while let Ok(Some(_)) = deframer.next_frame() {
                got += 1;
            }
        }
    }
}

/// A measured path: its name and what it runs for a number of groups.
type Row = (&'static str, fn(usize));

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`; keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let groups = if quick { 2_000 } else { 100_000 };
    let rounds = if quick { 1 } else { ROUNDS };
    let rows: [Row; 3] = [("framing", framing), ("udp", udp), ("tcp", tcp)];
    let mut results = vec![Vec::new(); rows.len()];
    for _ in 0..rounds {
        for (k, (_, f)) in rows.iter().enumerate() {
            results[k].push(per_datagram(groups, &mut |g| f(g)));
        }
    }
    println!(
        "\n{} x {DATAGRAM}-byte datagrams in groups of {GROUP}, 127.0.0.1, {rounds} round(s)",
        groups * GROUP
    );
    println!("{:<8} {:>16}", "path", "median ns/dgram");
    let mut medians = Vec::new();
    for (k, (name, _)) in rows.iter().enumerate() {
        let mut v = results[k].clone();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        medians.push(median);
        println!("{name:<8} {median:>16.0}");
    }
    println!(
        "tcp - udp: {:+.0} ns per datagram (send and receive)",
        medians[2] - medians[1]
    );
    shard(quick, rounds);
}

/// The shard thread's CPU per egress datagram, receivers on UDP vs ICE-TCP.
fn shard(quick: bool, rounds: usize) {
    let packets = if quick { 3_001 } else { 30_001 };
    let _serial = harness::serial();
    let mut backends = vec![Backend::Mmsg];
    if ringbridge_bridge::io::probe_uring().is_ok() {
        backends.insert(0, Backend::Uring);
    }
    println!(
        "\nshard: {packets} x 1200-byte video packets (frames of 3), fan-out 4, {rounds} round(s)"
    );
    println!(
        "{:<8} {:>12} {:>12} {:>10} {:>14}",
        "backend", "udp ns/pkt", "tcp ns/pkt", "tcp - udp", "tcp dropped"
    );
    for (b, backend) in backends.into_iter().enumerate() {
        let (mut udp, mut tcp, mut dropped) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let index = 60 + b * 20 + round * 2;
            let base = 24_500 + (index as u16 % 60) * 10;
            let m = harness::measure_windowed(backend, index, (base, base + 9), packets, WINDOW);
            assert!(m.egress > 0, "nothing forwarded over UDP");
            udp.push(m.cpu_ns as f64 / m.egress as f64);
            let base = 24_500 + ((index + 1) as u16 % 60) * 10;
            let m = harness::measure_tcp(backend, index + 1, (base, base + 9), packets, WINDOW);
            assert!(m.egress > 0, "nothing forwarded over TCP");
            tcp.push(m.cpu_ns as f64 / m.egress as f64);
            dropped.push(m.dropped as f64 / (m.egress + m.dropped) as f64 * 100.0);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (u, t, d) = (median(&mut udp), median(&mut tcp), median(&mut dropped));
        println!(
            "{:<8} {u:>12.0} {t:>12.0} {:>+10.0} {d:>13.1}%",
            backend.name(),
            t - u
        );
    }
}
