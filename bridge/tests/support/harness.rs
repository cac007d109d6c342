//! Shared by `tests/driver.rs` and `benches/shard_forwarding.rs`: a shard on a
//! real driver (io_uring, mmsg or poll) with real client peers over UDP sockets
//! on 127.0.0.1, and a measurement of the shard thread's CPU time per forwarded
//! datagram.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ringbridge_bridge::io::{
    Backend, ShardCommand, ShardEventReceiver, ShardEventSender, ShardHandle, ShardSpec,
    event_channel, gso, spawn_shard, spawn_tcp_listener, udp,
};
use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::shard::ShardConfig;
use ringbridge_bridge::proto::srtp::SrtpProfile;
use ringbridge_control::media::{ConferenceId, EndpointId, JoinRequest, MediaEvent};

pub static SERIAL: Mutex<()> = Mutex::new(());

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Bytes of VP8 payload in every video packet.
pub const VIDEO_PAYLOAD: usize = 1200;

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sets or clears `RINGBRIDGE_DISABLE_GSO` until dropped.
pub struct GsoEnv;

impl GsoEnv {
    pub fn set(disable: bool) -> Self {
        // SAFETY: every test of this binary holds SERIAL while it touches the
        // environment or starts a shard (whose driver reads it), and no other
        // thread of this process reads the environment concurrently.
        unsafe {
            if disable {
                std::env::set_var(gso::DISABLE_ENV, "1");
            } else {
                std::env::remove_var(gso::DISABLE_ENV);
            }
        }
        GsoEnv
    }
}

impl Drop for GsoEnv {
    fn drop(&mut self) {
        // SAFETY: as in `set`.
        unsafe { std::env::remove_var(gso::DISABLE_ENV) };
    }
}

pub struct Client {
    pub peer: ClientPeer,
    pub sock: UdpSocket,
    pub bridge: SocketAddr,
    /// Lengths of the SRTP (not SRTCP) datagrams received, in arrival order.
    pub rtp_lens: Vec<usize>,
}

/// One shard thread with real sockets and the clients talking to it.
pub struct Harness {
    pub shard: ShardHandle,
    /// The address the shard binds and advertises.
    pub bridge_ip: IpAddr,
    pub events: ShardEventReceiver,
    pub seen: Vec<MediaEvent>,
    pub clients: Vec<Client>,
    pub buf: Vec<u8>,
}

impl Harness {
    pub fn start(backend: Backend, index: usize, ports: (u16, u16)) -> Self {
        Self::start_at(backend, index, ports, LOCALHOST)
    }

    /// A shard that binds and advertises `bridge_ip`.
    pub fn start_at(backend: Backend, index: usize, ports: (u16, u16), bridge_ip: IpAddr) -> Self {
        Self::start_with(backend, index, ports, bridge_ip, event_channel())
    }

    /// A shard that sends its events into `channel`.
    pub fn start_with(
        backend: Backend,
        index: usize,
        ports: (u16, u16),
        bridge_ip: IpAddr,
        channel: (ShardEventSender, ShardEventReceiver),
    ) -> Self {
        Self::start_full(backend, index, ports, bridge_ip, channel, None)
    }

    /// [`Harness::start_with`] whose answers offer an ICE-TCP candidate on `tcp_port`.
    pub fn start_full(
        backend: Backend,
        index: usize,
        ports: (u16, u16),
        bridge_ip: IpAddr,
        channel: (ShardEventSender, ShardEventReceiver),
        tcp_port: Option<u16>,
    ) -> Self {
        let (events_tx, events) = channel;
        let certificate =
            dimpl::certificate::generate_self_signed_certificate().expect("certificate");
        let spec = ShardSpec {
            index,
            core: None,
            ports,
            bind: bridge_ip,
            core_config: ShardConfig {
                advertise: vec![bridge_ip],
                certificate,
                srtp_profiles: SrtpProfile::PREFERRED.to_vec(),
                video_start_bitrate_kbps: 1500,
                index,
                tcp_port,
                single_port: None,
                audio_last_n: 0,
                drop_silence: false,
            },
            single_port: None,
        };
        let shard = spawn_shard(spec, backend, events_tx).expect("shard starts");
        Self {
            shard,
            bridge_ip,
            events,
            seen: Vec::new(),
            clients: Vec::new(),
            buf: vec![0; 65_536],
        }
    }

    pub fn join(&mut self, name: &str, cfg: ClientConfig) -> usize {
        self.join_at(name, cfg, LOCALHOST)
    }

    /// A client whose socket is bound to `ip`.
    pub fn join_at(&mut self, name: &str, cfg: ClientConfig, ip: IpAddr) -> usize {
        let now = Instant::now();
        let mut peer = ClientPeer::new(cfg, now).expect("client");
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.shard
            .send(ShardCommand::Join {
                req: JoinRequest {
                    conference: ConferenceId("room".into()),
                    endpoint: EndpointId(name.into()),
                    offer_sdp: peer.offer(),
                },
                policy: Default::default(),
                reply,
            })
            .expect("command queued");
        let answer = answer
            .blocking_recv()
            .expect("shard replies")
            .expect("join accepted");
        peer.handle_answer(&answer.answer_sdp, now).expect("answer");
        let bridge = peer.remote_addr().expect("candidate");
        assert_eq!(
            bridge.ip(),
            self.bridge_ip,
            "the answer advertises the bound address"
        );
        // Non-blocking, with 4 MiB buffers: the test thread reads every
        // client's socket in turn and must not lose what arrives meanwhile.
        let sock = udp::bind_udp(SocketAddr::new(ip, 0)).expect("client socket");
        self.clients.push(Client {
            peer,
            sock,
            bridge,
            rtp_lens: Vec::new(),
        });
        self.clients.len() - 1
    }

    /// One round: every client sends what it has, reads what arrived and runs
    /// its timers; shard events are collected.
    pub fn pump(&mut self) {
        let now = Instant::now();
        for c in &mut self.clients {
            while let Some(d) = c.peer.poll_transmit(now) {
                let _ = c.sock.send_to(&d, c.bridge);
            }
            while let Ok((n, from)) = c.sock.recv_from(&mut self.buf) {
                if from != c.bridge {
                    continue;
                }
                let d = &self.buf[..n];
                let is_rtp = matches!(d.first(), Some(128..=191))
                    && !d.get(1).is_some_and(|b| (192..=223).contains(b));
                if is_rtp {
                    c.rtp_lens.push(n);
                }
                c.peer.handle_receive(now, d);
            }
            c.peer.handle_timeout(now);
        }
        while let Ok(ev) = self.events.try_recv() {
            self.seen.push(ev);
        }
    }

    /// Pumps for `d` (pacing: media is sent at a rate, not in one burst that a
    /// briefly descheduled shard thread would have to absorb).
    pub fn pump_for(&mut self, d: Duration) {
        let _ = self.pump_until(d, |_| false);
    }

    /// Pumps until `done` or `limit` passes; whether `done` became true.
    pub fn pump_until(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            self.pump();
            if done(self) {
                return true;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        false
    }

    pub fn connect_all(&mut self) {
        let n = self.clients.len();
        let ok = self.pump_until(Duration::from_secs(10), |h| {
            h.clients.iter().all(|c| c.peer.is_connected())
                && h.seen
                    .iter()
                    .filter(|e| matches!(e, MediaEvent::EndpointConnected { .. }))
                    .count()
                    == n
        });
        let states: Vec<_> = self
            .clients
            .iter()
            .map(|c| (c.peer.is_connected(), c.peer.failure().map(str::to_owned)))
            .collect();
        assert!(ok, "clients did not connect over real sockets: {states:?}");
    }

    /// Sends a protected datagram from client `i` straight to the bridge.
    pub fn send_raw(&self, i: usize, datagram: &[u8]) {
        let c = &self.clients[i];
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match c.sock.send_to(datagram, c.bridge) {
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::yield_now();
                }
                r => {
                    r.expect("client send");
                    return;
                }
            }
        }
    }

    pub fn slot_ssrc(&self, i: usize, kind: MediaKind) -> u32 {
        self.clients[i]
            .peer
            .slots
            .iter()
            .find(|s| s.kind == kind)
            .expect("slot")
            .ssrc
    }

    /// (sequence, timestamp, payload length) of what client `i` got on `ssrc`.
    pub fn received(&self, i: usize, ssrc: u32) -> Vec<(u16, u32, usize)> {
        self.clients[i]
            .peer
            .received_rtp
            .iter()
            .filter(|r| r.ssrc == ssrc)
            .map(|r| (r.seq, r.ts, r.payload.len()))
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.shard.send(ShardCommand::Shutdown);
    }
}

pub const EVERYTHING: ClientConfig = ClientConfig {
    dtls: ClientDtls::Auto,
    dtls_mtu: 1150,
    srtp_profiles: SrtpProfile::BROWSER_OFFER,
    audio: true,
    video: true,
    audio_slots: 1,
    video_slots: 1,
};

/// A VP8 payload of `len` bytes: descriptor (S=1, PID=0) and frame tag; the
/// first packet of a keyframe carries the start code.
pub fn vp8(keyframe: bool, fill: u8, len: usize) -> Vec<u8> {
    let mut p = if keyframe {
        vec![0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a]
    } else {
        vec![0x10, 0x01, 0x00, 0x00]
    };
    p.resize(len, fill);
    p
}

pub const AUDIO_PACKETS: usize = 200;
pub const FRAMES: usize = 31; // one keyframe and 30 delta frames
pub const PACKETS_PER_FRAME: usize = 3;

/// CPU time the thread named `name` of this process has run, in nanoseconds
/// (`/proc/self/task/<tid>/schedstat`, first field).
pub fn thread_cpu_ns(name: &str) -> Option<u64> {
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = entry.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let sched = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            return sched.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

pub struct Measured {
    pub ingress: u64,
    pub egress: u64,
    pub cpu_ns: u64,
    pub segmented: u64,
    pub delivered: u64,
    /// Datagrams the shard did not send (send failures; ICE-TCP backlogs full).
    pub dropped: u64,
}

/// One sender and four receivers; `packets` pre-protected 1200-byte video
/// packets (frames of 3) blasted from the sender's socket; the shard thread's
/// CPU time per egress datagram.
pub fn measure(backend: Backend, index: usize, ports: (u16, u16), packets: usize) -> Measured {
    measure_windowed(backend, index, ports, packets, 256)
}

/// [`measure`] staying at most `window` datagrams ahead of the shard.
pub fn measure_windowed(
    backend: Backend,
    index: usize,
    ports: (u16, u16),
    packets: usize,
    window: u64,
) -> Measured {
    let mut h = Harness::start(backend, index, ports);
    let sender = h.join(
        "sender",
        ClientConfig {
            audio: false,
            video: true,
            audio_slots: 0,
            video_slots: 0,
            ..EVERYTHING
        },
    );
    for r in 0..4 {
        h.join(
            &format!("receiver{r}"),
            ClientConfig {
                audio: false,
                video: false,
                audio_slots: 0,
                video_slots: 1,
                ..EVERYTHING
            },
        );
    }
    h.connect_all();
    let datagrams: Vec<Vec<u8>> = (0..packets)
        .map(|k| {
            let f = k / PACKETS_PER_FRAME;
            h.clients[sender]
                .peer
                .send_rtp(
                    MediaKind::Video,
                    k as u16,
                    3000 * f as u32,
                    k % PACKETS_PER_FRAME == PACKETS_PER_FRAME - 1,
                    &vp8(k == 0, k as u8, VIDEO_PAYLOAD),
                )
                .expect("video")
        })
        .collect();
    // The keyframe opens every receiver's slot before the clock starts.
    for d in &datagrams[..PACKETS_PER_FRAME] {
        h.send_raw(sender, d);
    }
    let opened = h.pump_until(Duration::from_secs(5), |h| {
        h.clients[1..]
            .iter()
            .all(|c| c.peer.received_rtp.len() >= PACKETS_PER_FRAME)
    });
    assert!(opened, "the keyframe reached all four receivers");

    // Receivers drain on their own thread, as real clients would.
    let sinks: Vec<UdpSocket> = h.clients[1..]
        .iter()
        .map(|c| c.sock.try_clone().expect("clone"))
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drainer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut idle = true;
                for s in &sinks {
                    while s.recv_from(&mut buf).is_ok() {
                        n += 1;
                        idle = false;
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            n
        })
    };

    let thread = format!("shard-{index}");
    let stats = h.shard.stats.clone();
    let snap = || stats.snapshot(0, None);
    let (in0, out0) = (snap().packets_received, snap().packets_sent);
    let cpu0 = thread_cpu_ns(&thread).expect("shard thread");
    let seg0 = snap().segmented_sends;
    let dropped0 = snap().send_errors + snap().tcp_frames_dropped;
    let mut sent = 0u64;
    let blast_deadline = Instant::now() + Duration::from_secs(60);
    for frame in datagrams[PACKETS_PER_FRAME..].chunks(PACKETS_PER_FRAME) {
        // Flow control: stay at most ~256 datagrams ahead of the shard, so the
        // kernel drops nothing at the shard's socket.
        while sent > snap().packets_received - in0 + window && Instant::now() < blast_deadline {
            std::thread::yield_now();
        }
        for d in frame {
            h.send_raw(sender, d);
            sent += 1;
        }
    }
    // Wait until the shard is done with the last packet.
    let mut last = snap().packets_sent;
    let quiet_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = snap().packets_sent;
        if now == last || Instant::now() > quiet_deadline {
            break;
        }
        last = now;
    }
    let cpu = thread_cpu_ns(&thread).expect("shard thread") - cpu0;
    let s = snap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let delivered = drainer.join().expect("drainer");
    Measured {
        ingress: s.packets_received - in0,
        egress: s.packets_sent - out0,
        cpu_ns: cpu,
        segmented: s.segmented_sends - seg0,
        delivered,
        dropped: s.send_errors + s.tcp_frames_dropped - dropped0,
    }
}

/// A port free for TCP on 127.0.0.1 right now.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe port")
        .port()
}

/// A client peer whose datagrams go over one ICE-TCP connection.
pub struct TcpClient {
    pub peer: ClientPeer,
    pub stream: TcpStream,
    pub inbox: Vec<u8>,
}

impl TcpClient {
    pub fn send(&mut self, datagram: &[u8]) {
        let mut framed = (datagram.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(datagram);
        self.stream.write_all(&framed).expect("tcp write");
    }

    /// Sends what the peer has, reads every complete frame into it.
    pub fn pump(&mut self) {
        let now = Instant::now();
        while let Some(d) = self.peer.poll_transmit(now) {
            self.send(&d);
        }
        let mut buf = [0u8; 65_536];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("tcp read: {e}"),
            }
        }
        let mut at = 0;
        while let Some(&[hi, lo]) = self.inbox.get(at..at + 2) {
            let end = at + 2 + usize::from(u16::from_be_bytes([hi, lo]));
            let Some(frame) = self.inbox.get(at + 2..end) else {
                break;
            };
            self.peer.handle_receive(now, frame);
            at = end;
        }
        self.inbox.drain(..at);
        self.peer.handle_timeout(now);
    }
}

impl Harness {
    /// Joins `name` as a client whose datagrams all go over one ICE-TCP
    /// connection to `listener` (framed by [`TcpClient`], not the bridge's code).
    pub fn join_tcp(&mut self, name: &str, cfg: ClientConfig, listener: SocketAddr) -> TcpClient {
        let now = Instant::now();
        let mut peer = ClientPeer::new(cfg, now).expect("client");
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.shard
            .send(ShardCommand::Join {
                req: JoinRequest {
                    conference: ConferenceId("room".into()),
                    endpoint: EndpointId(name.into()),
                    offer_sdp: peer.offer(),
                },
                policy: Default::default(),
                reply,
            })
            .expect("queued");
        let answer = answer.blocking_recv().expect("reply").expect("joined");
        peer.handle_answer(&answer.answer_sdp, now).expect("answer");
        let stream = TcpStream::connect(listener).expect("connect");
        stream.set_nonblocking(true).expect("nonblocking");
        stream.set_nodelay(true).expect("nodelay");
        // 4 MiB, as the UDP clients' sockets (udp::bind_udp): the test thread
        // reads every client in turn and must not stall the bridge meanwhile.
        let size: libc::c_int = 4 << 20;
        // SAFETY: sets an int option on a socket this function owns.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&stream),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        TcpClient {
            peer,
            stream,
            inbox: Vec::new(),
        }
    }
}

/// [`measure_windowed`] with the four receivers on ICE-TCP connections
/// instead of UDP.
pub fn measure_tcp(
    backend: Backend,
    index: usize,
    ports: (u16, u16),
    packets: usize,
    window: u64,
) -> Measured {
    let tcp_port = free_tcp_port();
    let mut h = Harness::start_full(
        backend,
        index,
        ports,
        LOCALHOST,
        event_channel(),
        Some(tcp_port),
    );
    let listener = spawn_tcp_listener(SocketAddr::new(LOCALHOST, tcp_port), vec![h.shard.clone()])
        .expect("listener");
    let sender = h.join(
        "sender",
        ClientConfig {
            audio: false,
            video: true,
            audio_slots: 0,
            video_slots: 0,
            ..EVERYTHING
        },
    );
    let mut receivers: Vec<TcpClient> = (0..4)
        .map(|r| {
            h.join_tcp(
                &format!("receiver{r}"),
                ClientConfig {
                    audio: false,
                    video: false,
                    audio_slots: 0,
                    video_slots: 1,
                    ..EVERYTHING
                },
                listener.local_addr,
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Connected on both sides: the bridge reports every endpoint (a client is
    // done with DTLS one flight before the bridge is).
    let bridge_connected = |h: &Harness| {
        h.seen
            .iter()
            .filter(|e| matches!(e, MediaEvent::EndpointConnected { .. }))
            .count()
            == 5
    };
    while Instant::now() < deadline
        && !(h.clients[sender].peer.is_connected()
            && receivers.iter().all(|r| r.peer.is_connected())
            && bridge_connected(&h))
    {
        h.pump();
        receivers.iter_mut().for_each(TcpClient::pump);
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(
        receivers.iter().all(|r| r.peer.is_connected()) && bridge_connected(&h),
        "the TCP receivers did not connect"
    );
    let datagrams: Vec<Vec<u8>> = (0..packets)
        .map(|k| {
            let f = k / PACKETS_PER_FRAME;
            h.clients[sender]
                .peer
                .send_rtp(
                    MediaKind::Video,
                    k as u16,
                    3000 * f as u32,
                    k % PACKETS_PER_FRAME == PACKETS_PER_FRAME - 1,
                    &vp8(k == 0, k as u8, VIDEO_PAYLOAD),
                )
                .expect("video")
        })
        .collect();
    for d in &datagrams[..PACKETS_PER_FRAME] {
        h.send_raw(sender, d);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && !receivers
            .iter()
            .all(|r| r.peer.received_rtp.len() >= PACKETS_PER_FRAME)
    {
        h.pump();
        receivers.iter_mut().for_each(TcpClient::pump);
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(
        receivers
            .iter()
            .all(|r| r.peer.received_rtp.len() >= PACKETS_PER_FRAME),
        "the keyframe reached all four TCP receivers"
    );
    // Receivers drain on their own thread, counting frames.
    let mut sinks: Vec<(TcpStream, Vec<u8>)> = receivers
        .iter()
        .map(|r| (r.stream.try_clone().expect("clone"), r.inbox.clone()))
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drainer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut idle = true;
                for (s, inbox) in &mut sinks {
                    while let Ok(k) = s.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        inbox.extend_from_slice(&buf[..k]);
                        idle = false;
                        // Count whole frames, then drop them at once (a drain
                        // per frame would be quadratic in what one read brings).
                        let mut at = 0;
                        while let Some(&[hi, lo]) = inbox.get(at..at + 2) {
                            let end = at + 2 + usize::from(u16::from_be_bytes([hi, lo]));
                            if inbox.len() < end {
                                break;
                            }
                            at = end;
                            n += 1;
                        }
                        inbox.drain(..at);
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            n
        })
    };
    let thread = format!("shard-{index}");
    let stats = h.shard.stats.clone();
    let snap = || stats.snapshot(0, None);
    let (in0, out0) = (snap().packets_received, snap().packets_sent);
    let cpu0 = thread_cpu_ns(&thread).expect("shard thread");
    let seg0 = snap().segmented_sends;
    let dropped0 = snap().send_errors + snap().tcp_frames_dropped;
    let mut sent = 0u64;
    let blast_deadline = Instant::now() + Duration::from_secs(60);
    for frame in datagrams[PACKETS_PER_FRAME..].chunks(PACKETS_PER_FRAME) {
        while sent > snap().packets_received - in0 + window && Instant::now() < blast_deadline {
            std::thread::yield_now();
        }
        for d in frame {
            h.send_raw(sender, d);
            sent += 1;
        }
    }
    let mut last = snap().packets_sent;
    let quiet_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = snap().packets_sent;
        if now == last || Instant::now() > quiet_deadline {
            break;
        }
        last = now;
    }
    let cpu = thread_cpu_ns(&thread).expect("shard thread") - cpu0;
    let s = snap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let delivered = drainer.join().expect("drainer");
    Measured {
        ingress: s.packets_received - in0,
        egress: s.packets_sent - out0,
        cpu_ns: cpu,
        segmented: s.segmented_sends - seg0,
        delivered,
        dropped: s.send_errors + s.tcp_frames_dropped - dropped0,
    }
}
