//! The AF_XDP data path's pieces against the real kernel (issue 14): in two
//! network namespaces this test makes, joined by a veth pair on 10.79.0.0/24
//! and fd79::/64, the XDP program runs natively on the bridge side's veth and
//! an XSK is bound to its queue 0.
//!
//! It shows that UDP datagrams for the bridge's addresses and media port
//! range, IPv4 and IPv6, all arrive through the XSK and not at a kernel
//! socket on the same port; that a datagram outside the range, one for an
//! address of the interface the bridge does not own, TCP, ARP and neighbour
//! discovery still reach the kernel; and that datagrams framed by
//! `xdp::frame` (MACs from `xdp::neigh`) and sent through the XSK's TX ring
//! reach an ordinary UDP socket on the other side, whose kernel drops any
//! with a bad checksum.
//!
//! Needs root (namespaces, BPF); without it, or where the kernel refuses BPF
//! or XDP, it says it is skipped and why.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

mod support;

#[path = "support/alloc_count.rs"]
mod alloc_count;

#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

use std::sync::Arc;

use ringbridge_bridge::io::tcp_conns::TcpConns;
use ringbridge_bridge::io::xdp::frame::{self, Path};
use ringbridge_bridge::io::xdp::neigh::{self, Netlink};
use ringbridge_bridge::io::xdp::{
    AttachMode, CopyMode, ModeChoice, XdpPlane, XdpProgram, XskConfig, XskIo, XskSocket,
};
use ringbridge_bridge::io::{Io, SendFailure, ShardSpec, event_channel, spawn_xdp_shard};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::shard::ShardConfig;
use ringbridge_bridge::proto::srtp::SrtpProfile;
use support::harness::{EVERYTHING, Harness, PACKETS_PER_FRAME, VIDEO_PAYLOAD, vp8};

use support::netns::{BRIDGE_NIC, PEER_NIC, SERIAL, in_ns, ip, namespaces, namespaces_with_queues};

const PORTS: std::ops::RangeInclusive<u16> = 20000..=20099;

/// The XDP program attached natively to the bridge's veth with the bridge's
/// addresses and [`PORTS`], and an XSK on queue 0 in its map; `None` (and a
/// line saying why) where the kernel refuses BPF.
fn bridge_side(nb: &str) -> Option<(XdpProgram, XskSocket, u32)> {
    let ifindex = in_ns(nb, || neigh::ifindex(BRIDGE_NIC)).expect("ifindex");
    let prog = match in_ns(nb, || {
        XdpProgram::attach(ifindex, &[PORTS], ModeChoice::Native)
    }) {
        Ok(p) => p,
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            eprintln!("skipped: the kernel refuses BPF/XDP here ({e})");
            return None;
        }
        Err(e) => panic!("the XDP program must load and attach natively to veth: {e}"),
    };
    assert_eq!(prog.mode(), AttachMode::Native);
    assert_eq!(prog.ports(0).expect("port map"), PORTS);
    for a in ["10.79.0.1", "fd79::1"] {
        prog.add_address(a.parse().expect("ip"))
            .expect("address map");
    }
    let cfg = XskConfig {
        umem: ringbridge_bridge::io::xdp::umem::UmemConfig {
            frames: 512,
            frame_size: 2048,
        },
        ring_size: 256,
        headroom: 0,
    };
    let xsk = in_ns(nb, || XskSocket::bind(ifindex, 0, cfg)).expect("XSK bind");
    assert_eq!(xsk.mode(), CopyMode::Copy, "veth has no zero-copy");
    prog.set_socket(0, xsk.as_raw_fd()).expect("XSKMAP");
    Some((prog, xsk, ifindex))
}

fn udp(ns: &str, addr: &str) -> UdpSocket {
    let addr: SocketAddr = addr.parse().expect("addr");
    let s = in_ns(ns, || UdpSocket::bind(addr)).expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s
}

/// Receives from the XSK until `n` datagrams came or 3 s passed: (source,
/// destination, payload) of each, frames recycled.
fn xsk_receive(xsk: &mut XskSocket, n: usize) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.len() < n && Instant::now() < deadline {
        xsk.refill();
        if xsk.rx_needs_wakeup() {
            xsk.wake_rx();
        }
        let mut pfd = libc::pollfd {
            fd: xsk.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd.
        unsafe { libc::poll(&mut pfd, 1, 50) };
        while let Some(f) = xsk.recv() {
            let bytes = xsk
                .umem()
                .bytes(f.addr, f.len)
                .expect("frame inside the UMEM");
            let d = frame::parse_udp(bytes).expect("a UDP frame");
            got.push((d.src, d.dst, bytes[d.payload].to_vec()));
            xsk.recycle(f);
        }
        xsk.release_rx();
    }
    got
}

fn nothing_waiting(s: &UdpSocket) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let r = s.recv_from(&mut [0u8; 64]);
    s.set_nonblocking(false).expect("blocking");
    matches!(r, Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[test]
fn media_datagrams_go_through_the_xsk_and_everything_else_reaches_the_kernel() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ns) = namespaces("rx") else { return };
    let (nb, np) = (ns.bridge.clone(), ns.peer.clone());
    let Some((prog, mut xsk, ifindex)) = bridge_side(&nb) else {
        return;
    };
    // Kernel sockets on the bridge side: one on a media port (it must get
    // nothing), one outside the range, one on an address not the bridge's.
    let k_media = udp(&nb, "10.79.0.1:20050");
    let k_other_port = udp(&nb, "10.79.0.1:21000");
    let k_other_addr = udp(&nb, "10.79.0.3:20050");
    let peer = udp(&np, "10.79.0.2:40000");
    let peer6 = udp(&np, "[fd79::2]:40006");

    // 100 datagrams across the media range (the first needs ARP, which must
    // reach the kernel for any of them to be sent).
    for i in 0..100u16 {
        let to = SocketAddr::new("10.79.0.1".parse().expect("ip"), 20000 + i);
        peer.send_to(format!("v4 #{i}").as_bytes(), to)
            .expect("send");
    }
    let got = xsk_receive(&mut xsk, 100);
    assert_eq!(
        got.len(),
        100,
        "every media datagram arrives through the XSK"
    );
    for (i, (src, dst, payload)) in got.iter().enumerate() {
        assert_eq!(*src, "10.79.0.2:40000".parse().expect("addr"));
        assert_eq!(dst.port(), 20000 + i as u16);
        assert_eq!(payload, format!("v4 #{i}").as_bytes());
    }

    // IPv6 (after neighbour discovery, which must pass).
    for i in 0..10u16 {
        let to: SocketAddr = format!("[fd79::1]:{}", 20090 + i).parse().expect("addr");
        peer6
            .send_to(format!("v6 #{i}").as_bytes(), to)
            .expect("send");
    }
    let got6 = xsk_receive(&mut xsk, 10);
    assert_eq!(
        got6.len(),
        10,
        "every IPv6 media datagram arrives through the XSK"
    );
    for (i, (src, dst, payload)) in got6.iter().enumerate() {
        assert_eq!(*src, "[fd79::2]:40006".parse().expect("addr"));
        assert_eq!(dst.port(), 20090 + i as u16);
        assert_eq!(payload, format!("v6 #{i}").as_bytes());
    }

    // Not media: the kernel's.
    peer.send_to(b"other port", "10.79.0.1:21000")
        .expect("send");
    peer.send_to(b"other addr", "10.79.0.3:20050")
        .expect("send");
    let mut buf = [0u8; 64];
    let (n, from) = k_other_port
        .recv_from(&mut buf)
        .expect("outside the range: kernel");
    assert_eq!(
        (&buf[..n], from),
        (&b"other port"[..], "10.79.0.2:40000".parse().expect("a"))
    );
    let (n, _) = k_other_addr
        .recv_from(&mut buf)
        .expect("not our address: kernel");
    assert_eq!(&buf[..n], b"other addr");
    assert!(
        nothing_waiting(&k_media),
        "a media datagram leaked to the kernel socket"
    );
    assert!(
        xsk_receive(&mut xsk, 1).is_empty(),
        "the XSK took a datagram that was not media"
    );

    // TCP on a port inside the media range still reaches the kernel.
    let listener = in_ns(&nb, || TcpListener::bind("10.79.0.1:20060")).expect("listen");
    let mut client = in_ns(&np, || {
        TcpStream::connect_timeout(
            &"10.79.0.1:20060".parse().expect("a"),
            Duration::from_secs(3),
        )
    })
    .expect("TCP connect through the XDP program");
    let (mut server, _) = listener.accept().expect("accept");
    client.write_all(b"ping").expect("write");
    let mut four = [0u8; 4];
    server.read_exact(&mut four).expect("read");
    assert_eq!(&four, b"ping");

    // Replies framed here and sent through the TX ring. The MACs come from
    // the kernel's tables: ours from the link, the peer's from the neighbour
    // entries ARP and neighbour discovery left.
    let mut nl = in_ns(&nb, Netlink::open).expect("netlink");
    let link = nl.link(ifindex).expect("link");
    let peer_mac = in_ns(&np, || {
        let i = neigh::ifindex(PEER_NIC)?;
        Netlink::open()?.link(i)
    })
    .expect("peer link")
    .mac;
    assert_eq!(link.mtu, 1500);
    for (src, dst, replies, sock) in [
        ("10.79.0.1:20000", "10.79.0.2:40000", 20u16, &peer),
        ("[fd79::1]:20001", "[fd79::2]:40006", 5, &peer6),
    ] {
        let src: SocketAddr = src.parse().expect("addr");
        let dst: SocketAddr = dst.parse().expect("addr");
        let (route, mac) = nl
            .next_hop_mac(dst.ip())
            .expect("route and neighbour lookup")
            .expect("the peer is in the neighbour table");
        assert_eq!(route.ifindex, ifindex);
        assert_eq!(route.gateway, None);
        assert_eq!(mac, peer_mac);
        let path = Path {
            src_mac: link.mac,
            dst_mac: mac,
            src,
            dst,
        };
        for i in 0..replies {
            let payload = format!("reply #{i} from {src}");
            let sent = xsk.send(|f| {
                let off = frame::payload_offset(&dst);
                f[off..off + payload.len()].copy_from_slice(payload.as_bytes());
                frame::write_headers(f, &path, payload.len(), frame::DEFAULT_TTL).unwrap_or(0)
            });
            assert!(sent, "a TX frame and ring slot are free");
        }
        xsk.flush_tx().expect("TX wakeup");
        for i in 0..replies {
            let (n, from) = sock.recv_from(&mut buf).expect("reply through the XSK");
            assert_eq!(from, src);
            let want = format!("reply #{i} from {src}");
            assert_eq!(&buf[..n], want.as_bytes());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while xsk.tx_in_flight() > 0 && Instant::now() < deadline {
        xsk.reap_completions();
        std::thread::yield_now();
    }
    assert_eq!(
        xsk.tx_in_flight(),
        0,
        "every TX frame comes back through completion"
    );
    let stats = xsk.stats().expect("stats");
    assert_eq!(
        (
            stats.rx_dropped,
            stats.rx_invalid_descs,
            stats.tx_invalid_descs
        ),
        (0, 0, 0)
    );
    // Closing the link detaches the program: media goes to the kernel again.
    drop(prog);
    peer.send_to(b"after detach", "10.79.0.1:20050")
        .expect("send");
    let (n, _) = k_media
        .recv_from(&mut buf)
        .expect("detached: the kernel gets media");
    assert_eq!(&buf[..n], b"after detach");
}

/// The shard loop's backend seam over the XSK: datagrams to a held port
/// reach `receive` as slices of their UMEM frames (rewritten in place here),
/// and what is queued in reply goes out framed through the TX ring; once the
/// neighbour entry is gone, a reply goes through the kernel's socket (which
/// resolves it) and still arrives.
#[test]
fn the_xsk_backend_echoes_datagrams_through_the_io_seam() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ns) = namespaces("io") else { return };
    let (nb, np) = (ns.bridge.clone(), ns.peer.clone());
    let Some((_prog, xsk, ifindex)) = bridge_side(&nb) else {
        return;
    };
    let local: IpAddr = "10.79.0.1".parse().expect("ip");
    let mut io = in_ns(&nb, || {
        XskIo::new(xsk, ifindex, local, mio::Poll::new().expect("poll"))
    })
    .expect("backend");
    io.open(20010, udp(&nb, "10.79.0.1:20010")).expect("open");
    assert!(io.holds(20010) && !io.holds(20011));
    let mut tcp = TcpConns::new(Instant::now()).expect("tcp conns");
    let peer = udp(&np, "10.79.0.2:40000");

    let turn = |io: &mut XskIo, tcp: &mut TcpConns, want: usize| -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while got.len() < want && Instant::now() < deadline {
            io.wait(Duration::from_millis(50)).expect("wait");
            let now = Instant::now();
            io.receive(now, tcp, |port, from, _, buf, tx| {
                got.push(buf.to_vec());
                buf.reverse();
                tx.push(port, from, buf).expect("queue");
            })
            .expect("receive");
            io.flush(now, tcp).expect("flush");
        }
        got
    };

    // 50 replies: more than copy mode's 32 frames per wake-up.
    for i in 0..50 {
        peer.send_to(format!("echo {i:02}").as_bytes(), "10.79.0.1:20010")
            .expect("send");
    }
    // In the media range but no endpoint's port: redirected, then dropped.
    peer.send_to(b"nobody", "10.79.0.1:20011").expect("send");
    let got = turn(&mut io, &mut tcp, 50);
    assert_eq!(got.len(), 50, "every datagram reaches the core's callback");
    let mut buf = [0u8; 64];
    for (i, got) in got.iter().enumerate() {
        assert_eq!(got, format!("echo {i:02}").as_bytes());
        let (n, from) = peer.recv_from(&mut buf).expect("echo through the TX ring");
        assert_eq!(from, "10.79.0.1:20010".parse().expect("addr"));
        let mut want = format!("echo {i:02}").into_bytes();
        want.reverse();
        assert_eq!(&buf[..n], &want[..]);
    }
    assert_eq!(io.totals().packets, 50);
    assert_eq!(io.totals().errors(), 0);
    let c = io.counters();
    assert_eq!(
        (c.kernel_sent, c.neighbour_lookups, c.rx_dropped),
        (0, 1, 1)
    );

    // Warm, the backend's receive and send path allocates nothing: 100 more
    // echoes, counted on this thread (the loop's; the core's own path is
    // covered by no_alloc.rs).
    let payloads: Vec<Vec<u8>> = (0..100)
        .map(|i| format!("warm {i:03}").into_bytes())
        .collect();
    for p in &payloads {
        peer.send_to(p, "10.79.0.1:20010").expect("send");
    }
    let (echoed, allocations) = alloc_count::counted(|| {
        let mut n = 0usize;
        let deadline = Instant::now() + Duration::from_secs(3);
        while n < payloads.len() && Instant::now() < deadline {
            let _ = io.wait(Duration::from_millis(50));
            let now = Instant::now();
            let _ = io.receive(now, &mut tcp, |port, from, _, buf, tx| {
                n += 1;
                buf.reverse();
                let _ = tx.push(port, from, buf);
            });
            let _ = io.flush(now, &mut tcp);
        }
        n
    });
    assert_eq!(echoed, payloads.len());
    assert_eq!(
        allocations, 0,
        "the XDP backend allocated on the packet path"
    );
    for _ in &payloads {
        peer.recv_from(&mut buf).expect("warm echo");
    }

    // A datagram larger than the MTU arrives in IP fragments, which the XDP
    // program passes; the kernel reassembles it for the endpoint's socket,
    // which the backend reads too. Its echo cannot be one frame: counted.
    let big = vec![0x5a; 1500];
    peer.send_to(&big, "10.79.0.1:20010").expect("send");
    assert_eq!(turn(&mut io, &mut tcp, 1), [big]);
    assert_eq!(io.counters().kernel_received, 1);
    assert_eq!(io.totals().failed(SendFailure::TooBig), 1);

    // Without a neighbour entry the reply takes the kernel's path: the
    // backend hears the flush from the kernel (the cached MAC is younger
    // than NEIGHBOUR_TTL, and nobody tells it otherwise).
    ip(&["-n", &nb, "neigh", "flush", "dev", BRIDGE_NIC]);
    peer.send_to(b"again", "10.79.0.1:20010").expect("send");
    assert_eq!(turn(&mut io, &mut tcp, 1), [b"again".to_vec()]);
    let (n, from) = peer.recv_from(&mut buf).expect("echo through the kernel");
    assert_eq!((&buf[..n], from.port()), (&b"niaga"[..], 20010));
    assert_eq!(io.counters().kernel_sent, 1);
    assert_eq!(io.totals().packets, 151);

    // The peer's MAC changes in the kernel's table: the next reply is framed
    // to the new one at once, not after NEIGHBOUR_TTL (5 s), and back again.
    let peer_mac = in_ns(&np, || {
        Netlink::open().and_then(|mut nl| nl.link(neigh::ifindex(PEER_NIC)?))
    })
    .expect("peer link")
    .mac;
    let set_mac = |mac: &str| {
        ip(&[
            "-n",
            &nb,
            "neigh",
            "replace",
            "10.79.0.2",
            "lladdr",
            mac,
            "dev",
            BRIDGE_NIC,
            "nud",
            "permanent",
        ])
    };
    set_mac("02:00:00:00:00:99");
    peer.send_to(b"moved", "10.79.0.1:20010").expect("send");
    assert_eq!(turn(&mut io, &mut tcp, 1), [b"moved".to_vec()]);
    // Framed to a MAC that is not the peer interface's: it drops the frame.
    peer.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    assert!(
        peer.recv_from(&mut buf).is_err(),
        "a reply reached the peer through a MAC that is not its own"
    );
    let text: Vec<String> = peer_mac.iter().map(|b| format!("{b:02x}")).collect();
    set_mac(&text.join(":"));
    let restored = Instant::now();
    peer.send_to(b"back", "10.79.0.1:20010").expect("send");
    assert_eq!(turn(&mut io, &mut tcp, 1), [b"back".to_vec()]);
    let (n, _) = peer
        .recv_from(&mut buf)
        .expect("the reply goes to the restored MAC at once");
    assert_eq!(&buf[..n], b"kcab");
    assert!(restored.elapsed() < ringbridge_bridge::io::xdp::driver::NEIGHBOUR_TTL);
    assert_eq!(io.counters().kernel_sent, 1, "both framed through the XSK");
}

/// `media.io = "xdp"` end to end: a shard on the AF_XDP backend
/// ([`XdpPlane`] + `spawn_xdp_shard`, as `main` starts it) on the bridge's
/// veth, three real clients (ICE, DTLS, SRTP) in the peer namespace; every
/// audio and video packet one sends reaches the other two, in sequence and
/// decrypting. Only the XSK reads the media ports there, so the connection
/// itself shows the XDP path carries them.
#[test]
fn media_flows_between_three_clients_over_the_xdp_backend() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ns) = namespaces("media") else {
        return;
    };
    let (nb, np) = (ns.bridge.clone(), ns.peer.clone());
    let bridge_ip: IpAddr = "10.79.0.1".parse().expect("ip");
    let (events_tx, events) = event_channel();
    let started = in_ns(&nb, || {
        let plane = XdpPlane::start(BRIDGE_NIC, bridge_ip, &[(20000, 20099)])?;
        let spec = ShardSpec {
            index: 0,
            core: None,
            ports: (20000, 20099),
            bind: bridge_ip,
            core_config: ShardConfig {
                advertise: vec![bridge_ip],
                certificate: dimpl::certificate::generate_self_signed_certificate()
                    .expect("certificate"),
                srtp_profiles: SrtpProfile::PREFERRED.to_vec(),
                video_start_bitrate_kbps: 1500,
                index: 0,
                tcp_port: None,
                single_port: None,
                audio_last_n: 0,
                drop_silence: false,
            },
            single_port: None,
        };
        // Started from this thread, the shard thread is in the namespace too.
        spawn_xdp_shard(spec, &Arc::new(plane), events_tx).map_err(|e| e.to_string())
    });
    let shard = match started {
        Ok(s) => s,
        Err(reason) if reason.starts_with("no BPF permission") => {
            eprintln!("skipped: {reason}");
            return;
        }
        Err(reason) => panic!("the xdp backend must start on veth: {reason}"),
    };
    assert_eq!(shard.backend, "xdp (native, copy)");
    let mut h = Harness {
        shard,
        bridge_ip,
        events,
        seen: Vec::new(),
        clients: Vec::new(),
        buf: vec![0; 65_536],
    };
    let peer_ip: IpAddr = "10.79.0.2".parse().expect("ip");
    let [a, b, c] =
        ["alice", "bob", "carol"].map(|name| in_ns(&np, || h.join_at(name, EVERYTHING, peer_ip)));
    h.connect_all();

    const AUDIO: usize = 100;
    const FRAMES: usize = 10;
    for k in 0..AUDIO {
        let d = h.clients[a]
            .peer
            .send_rtp(
                MediaKind::Audio,
                1000 + k as u16,
                960 * k as u32,
                false,
                &[0xA0; 160],
            )
            .expect("audio");
        h.send_raw(a, &d);
        if k % 10 == 9 {
            h.pump_for(Duration::from_millis(1));
        }
    }
    for f in 0..FRAMES {
        for p in 0..PACKETS_PER_FRAME {
            let k = f * PACKETS_PER_FRAME + p;
            let d = h.clients[a]
                .peer
                .send_rtp(
                    MediaKind::Video,
                    7000 + k as u16,
                    3000 * f as u32,
                    p + 1 == PACKETS_PER_FRAME,
                    &vp8(f == 0 && p == 0, k as u8, VIDEO_PAYLOAD),
                )
                .expect("video");
            h.send_raw(a, &d);
        }
        h.pump_for(Duration::from_millis(1));
    }
    let video = FRAMES * PACKETS_PER_FRAME;
    let slots = [b, c].map(|r| {
        (
            r,
            h.slot_ssrc(r, MediaKind::Audio),
            h.slot_ssrc(r, MediaKind::Video),
        )
    });
    let complete = h.pump_until(Duration::from_secs(5), |h| {
        slots.iter().all(|&(r, au, vi)| {
            h.received(r, au).len() >= AUDIO && h.received(r, vi).len() >= video
        })
    });
    for (r, au, vi) in slots {
        let (got_a, got_v) = (h.received(r, au), h.received(r, vi));
        assert!(
            complete,
            "receiver {r} got {} of {AUDIO} audio and {} of {video} video packets",
            got_a.len(),
            got_v.len()
        );
        assert_eq!((got_a.len(), got_v.len()), (AUDIO, video), "no duplicates");
        for got in [&got_a, &got_v] {
            for w in got.windows(2) {
                assert_eq!(w[1].0, w[0].0.wrapping_add(1), "sequence is continuous");
            }
        }
        assert!(got_v.iter().all(|v| v.2 == VIDEO_PAYLOAD));
        assert_eq!(h.clients[r].peer.srtp_failures, 0);
    }
}

/// Two shards on a two-queue veth, each with its XSK on its own queue and
/// its own half of the port range: whichever queue a flow lands on, each
/// shard's backend gets exactly its own datagrams (through its XSK, or,
/// when the flow hashed to the other shard's queue, through the kernel's
/// socket) and every echo comes back.
#[test]
fn two_shards_on_two_queues_each_get_their_own_ports() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ns) = namespaces_with_queues("queues", 2) else {
        return;
    };
    let (nb, np) = (ns.bridge.clone(), ns.peer.clone());
    let ifindex = in_ns(&nb, || neigh::ifindex(BRIDGE_NIC)).expect("ifindex");
    let halves = [20000..=20049, 20050..=20099];
    let prog = match in_ns(&nb, || {
        XdpProgram::attach(ifindex, &halves, ModeChoice::Native)
    }) {
        Ok(p) => p,
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            eprintln!("skipped: the kernel refuses BPF/XDP here ({e})");
            return;
        }
        Err(e) => panic!("the XDP program must attach: {e}"),
    };
    assert_eq!(prog.ports(1).expect("port map"), 20050..=20099);
    let local: IpAddr = "10.79.0.1".parse().expect("ip");
    prog.add_address(local).expect("address map");
    let cfg = XskConfig {
        umem: ringbridge_bridge::io::xdp::umem::UmemConfig {
            frames: 512,
            frame_size: 2048,
        },
        ring_size: 256,
        headroom: 0,
    };
    let mut ios: Vec<XskIo> = [(0u32, 20010u16), (1, 20060)]
        .into_iter()
        .map(|(q, port)| {
            let xsk = in_ns(&nb, || XskSocket::bind(ifindex, q, cfg)).expect("XSK bind");
            prog.set_socket(q, xsk.as_raw_fd()).expect("XSKMAP");
            let mut io = in_ns(&nb, || {
                XskIo::new(xsk, ifindex, local, mio::Poll::new().expect("poll"))
            })
            .expect("backend");
            io.open(port, udp(&nb, &format!("10.79.0.1:{port}")))
                .expect("open");
            io
        })
        .collect();
    let mut tcp = TcpConns::new(Instant::now()).expect("tcp conns");
    // 16 flows (source ports), 5 datagrams to each shard's port from each.
    let peers: Vec<UdpSocket> = (0..16).map(|_| udp(&np, "10.79.0.2:0")).collect();
    for p in &peers {
        for _ in 0..5 {
            p.send_to(b"to shard 0", "10.79.0.1:20010").expect("send");
            p.send_to(b"to shard 1", "10.79.0.1:20060").expect("send");
        }
    }
    let want = peers.len() * 5;
    let mut got = [0usize; 2];
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.iter().any(|&g| g < want) && Instant::now() < deadline {
        for (shard, io) in ios.iter_mut().enumerate() {
            io.wait(Duration::from_millis(10)).expect("wait");
            let now = Instant::now();
            io.receive(now, &mut tcp, |port, from, _, buf, tx| {
                let expected: &[u8] = if shard == 0 {
                    b"to shard 0"
                } else {
                    b"to shard 1"
                };
                assert_eq!((port, &*buf), ([20010, 20060][shard], expected));
                got[shard] += 1;
                tx.push(port, from, buf).expect("queue");
            })
            .expect("receive");
            io.flush(now, &mut tcp).expect("flush");
        }
    }
    assert_eq!(
        got,
        [want, want],
        "each shard gets exactly its own datagrams"
    );
    let (mut fast, mut slow) = (0, 0);
    for io in &ios {
        let c = io.counters();
        fast += c.xsk_received;
        slow += c.kernel_received;
        eprintln!(
            "through the XSK {}, through the kernel {}",
            c.xsk_received, c.kernel_received
        );
        assert_eq!(c.xsk_received + c.kernel_received, want as u64);
    }
    // 32 flows (16 source ports, 2 destinations) hashed over two queues:
    // both paths were taken (all on one queue has a chance of 2^-31).
    assert!(fast > 0 && slow > 0, "XSK {fast}, kernel {slow}");
    let mut buf = [0u8; 64];
    for p in &peers {
        let mut echoes = Vec::new();
        for _ in 0..10 {
            let (n, from) = p.recv_from(&mut buf).expect("echo");
            echoes.push((from.port(), buf[..n].to_vec()));
        }
        echoes.sort();
        assert_eq!(echoes.first(), Some(&(20010, b"to shard 0".to_vec())));
        assert_eq!(echoes.last(), Some(&(20060, b"to shard 1".to_vec())));
    }
}
