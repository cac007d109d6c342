//! The shard drivers over real UDP sockets on 127.0.0.1: real client peers
//! (ICE, DTLS, SRTP) join through the shard's command queue and exchange media
//! through the driver's sockets. Every scenario runs against every backend
//! (`mmsg`, `poll`, `uring`), and with UDP GSO forced off and on.
//!
//! The tests of this file hold one lock while they run: they set
//! `RINGBRIDGE_DISABLE_GSO` (process-global), and two shards at once would fight
//! over the machine's two cores.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ringbridge_bridge::io::{Backend, ShardCommand, ShardHandle, ShardSpec, gso, spawn_shard, udp};
use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::shard::ShardConfig;
use ringbridge_control::media::{ConferenceId, EndpointId, EventReceiver, JoinRequest, MediaEvent};

static SERIAL: Mutex<()> = Mutex::new(());

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Bytes of VP8 payload in every video packet.
const VIDEO_PAYLOAD: usize = 1200;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sets or clears `RINGBRIDGE_DISABLE_GSO` until dropped.
struct GsoEnv;

impl GsoEnv {
    fn set(disable: bool) -> Self {
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

struct Client {
    peer: ClientPeer,
    sock: UdpSocket,
    bridge: SocketAddr,
    /// Lengths of the SRTP (not SRTCP) datagrams received, in arrival order.
    rtp_lens: Vec<usize>,
}

/// One shard thread with real sockets and the clients talking to it.
struct Harness {
    shard: ShardHandle,
    events: EventReceiver,
    seen: Vec<MediaEvent>,
    clients: Vec<Client>,
    buf: Vec<u8>,
}

impl Harness {
    fn start(backend: Backend, index: usize, ports: (u16, u16)) -> Self {
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let certificate =
            dimpl::certificate::generate_self_signed_certificate().expect("certificate");
        let spec = ShardSpec {
            index,
            core: None,
            ports,
            bind: LOCALHOST,
            core_config: ShardConfig {
                advertise: vec![LOCALHOST],
                certificate,
            },
        };
        let shard = spawn_shard(spec, backend, events_tx).expect("shard starts");
        Self {
            shard,
            events,
            seen: Vec::new(),
            clients: Vec::new(),
            buf: vec![0; 65_536],
        }
    }

    fn join(&mut self, name: &str, cfg: ClientConfig) -> usize {
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
                reply,
            })
            .expect("command queued");
        let answer = answer
            .blocking_recv()
            .expect("shard replies")
            .expect("join accepted");
        peer.handle_answer(&answer.answer_sdp, now).expect("answer");
        let bridge = peer.remote_addr().expect("candidate");
        assert_eq!(bridge.ip(), LOCALHOST, "the answer advertises 127.0.0.1");
        // Non-blocking, with 4 MiB buffers: the test thread reads every
        // client's socket in turn and must not lose what arrives meanwhile.
        let sock = udp::bind_udp(SocketAddr::new(LOCALHOST, 0)).expect("client socket");
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
    fn pump(&mut self) {
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
    fn pump_for(&mut self, d: Duration) {
        let _ = self.pump_until(d, |_| false);
    }

    /// Pumps until `done` or `limit` passes; whether `done` became true.
    fn pump_until(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> bool {
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

    fn connect_all(&mut self) {
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
    fn send_raw(&self, i: usize, datagram: &[u8]) {
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

    fn slot_ssrc(&self, i: usize, kind: MediaKind) -> u32 {
        self.clients[i]
            .peer
            .slots
            .iter()
            .find(|s| s.kind == kind)
            .expect("slot")
            .ssrc
    }

    /// (sequence, timestamp, payload length) of what client `i` got on `ssrc`.
    fn received(&self, i: usize, ssrc: u32) -> Vec<(u16, u32, usize)> {
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

const EVERYTHING: ClientConfig = ClientConfig {
    dtls: ClientDtls::Auto,
    dtls_mtu: 1150,
    audio: true,
    video: true,
    audio_slots: 1,
    video_slots: 1,
};

/// A VP8 payload of `len` bytes: descriptor (S=1, PID=0) and frame tag; the
/// first packet of a keyframe carries the start code.
fn vp8(keyframe: bool, fill: u8, len: usize) -> Vec<u8> {
    let mut p = if keyframe {
        vec![0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a]
    } else {
        vec![0x10, 0x01, 0x00, 0x00]
    };
    p.resize(len, fill);
    p
}

const AUDIO_PACKETS: usize = 200;
const FRAMES: usize = 31; // one keyframe and 30 delta frames
const PACKETS_PER_FRAME: usize = 3;

/// Three clients in one conference; the first sends 200 audio packets, then a
/// keyframe and 30 delta frames of three 1200-byte packets; both others must
/// get every packet, in sequence, as individual datagrams.
fn exchange_media(backend: Backend, index: usize, ports: (u16, u16)) -> Harness {
    let mut h = Harness::start(backend, index, ports);
    let a = h.join("alice", EVERYTHING);
    let b = h.join("bob", EVERYTHING);
    let c = h.join("carol", EVERYTHING);
    h.connect_all();

    for k in 0..AUDIO_PACKETS {
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
        // A frame's packets leave back to back, as a browser sends them.
        let frame: Vec<Vec<u8>> = (0..PACKETS_PER_FRAME)
            .map(|p| {
                let k = f * PACKETS_PER_FRAME + p;
                h.clients[a]
                    .peer
                    .send_rtp(
                        MediaKind::Video,
                        7000 + k as u16,
                        3000 * f as u32,
                        p + 1 == PACKETS_PER_FRAME,
                        &vp8(f == 0 && p == 0, k as u8, VIDEO_PAYLOAD),
                    )
                    .expect("video")
            })
            .collect();
        for d in &frame {
            h.send_raw(a, d);
        }
        h.pump_for(Duration::from_millis(1));
    }
    let (audio_b, video_b) = (
        h.slot_ssrc(b, MediaKind::Audio),
        h.slot_ssrc(b, MediaKind::Video),
    );
    let (audio_c, video_c) = (
        h.slot_ssrc(c, MediaKind::Audio),
        h.slot_ssrc(c, MediaKind::Video),
    );
    let video_packets = FRAMES * PACKETS_PER_FRAME;
    let complete = h.pump_until(Duration::from_secs(5), |h| {
        h.received(b, audio_b).len() >= AUDIO_PACKETS
            && h.received(c, audio_c).len() >= AUDIO_PACKETS
            && h.received(b, video_b).len() >= video_packets
            && h.received(c, video_c).len() >= video_packets
    });
    for (receiver, audio, video) in [(b, audio_b, video_b), (c, audio_c, video_c)] {
        let got_audio = h.received(receiver, audio);
        let got_video = h.received(receiver, video);
        assert!(
            complete,
            "{backend:?}: receiver {receiver} got {} of {AUDIO_PACKETS} audio and {} of \
             {video_packets} video packets",
            got_audio.len(),
            got_video.len()
        );
        assert_eq!(got_audio.len(), AUDIO_PACKETS, "no duplicates");
        assert_eq!(got_video.len(), video_packets, "no duplicates");
        for got in [&got_audio, &got_video] {
            for w in got.windows(2) {
                assert_eq!(w[1].0, w[0].0.wrapping_add(1), "sequence is continuous");
            }
        }
        assert!(got_video.iter().all(|v| v.2 == VIDEO_PAYLOAD));
        assert_eq!(h.clients[receiver].peer.srtp_failures, 0);
        // GSO, if used, must have been split back into single datagrams: every
        // 1200-byte video packet arrives as a datagram of one size, 1200 bytes
        // plus RTP header and SRTP tag.
        let video_lens: Vec<usize> = h.clients[receiver]
            .rtp_lens
            .iter()
            .copied()
            .filter(|&n| n > VIDEO_PAYLOAD)
            .collect();
        assert_eq!(video_lens.len(), video_packets);
        let overhead = video_lens[0] - VIDEO_PAYLOAD;
        assert!((12..=64).contains(&overhead), "overhead {overhead}");
        assert!(
            video_lens.iter().all(|&n| n == video_lens[0]),
            "{backend:?}: datagram sizes {video_lens:?}"
        );
    }
    assert!(
        h.received(a, h.slot_ssrc(a, MediaKind::Audio)).is_empty(),
        "the sender does not get its own media"
    );
    h
}

fn three_peers_exchange_media_over_real_sockets(backend: Backend, index: usize, ports: (u16, u16)) {
    let _serial = serial();
    let _env = GsoEnv::set(false);
    let h = exchange_media(backend, index, ports);
    let sent = h.shard.stats.snapshot(0, None);
    // 200 audio + 93 video to each of two receivers, plus STUN, DTLS and RTCP.
    assert!(sent.packets_sent >= 2 * (AUDIO_PACKETS + FRAMES * PACKETS_PER_FRAME) as u64);
    assert_eq!(sent.send_errors, 0);
}

fn gso_on_and_off_deliver_the_same_datagrams(backend: Backend, index: usize, ports: (u16, u16)) {
    let _serial = serial();
    let segmenting = backend != Backend::Poll && gso::kernel_support().is_ok();
    for disable in [true, false] {
        let _env = GsoEnv::set(disable);
        let before = gso::segmented_sends();
        let h = exchange_media(backend, index, ports);
        let segmented = gso::segmented_sends() - before;
        let want_gso = segmenting && !disable;
        assert_eq!(
            h.shard.stats.gso(),
            want_gso,
            "{backend:?} disable={disable}"
        );
        if want_gso {
            // 31 frames of 3 to each of two receivers: most of them leave as one
            // segmented message each (a frame can straddle two wake-ups).
            assert!(segmented > 0, "{backend:?}: GSO on but no segmented send");
        } else {
            assert_eq!(segmented, 0, "{backend:?}: GSO off but segmented sends");
        }
        drop(h);
        // The next round binds the same ports: let the shard close them.
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_peers_exchange_media_over_real_sockets_mmsg() {
    three_peers_exchange_media_over_real_sockets(Backend::Mmsg, 1, (23_000, 23_019));
}

#[test]
fn three_peers_exchange_media_over_real_sockets_poll() {
    three_peers_exchange_media_over_real_sockets(Backend::Poll, 2, (23_020, 23_039));
}

#[test]
fn three_peers_exchange_media_over_real_sockets_uring() {
    three_peers_exchange_media_over_real_sockets(Backend::Uring, 3, (23_040, 23_059));
}

#[test]
fn gso_on_and_off_deliver_the_same_datagrams_mmsg() {
    gso_on_and_off_deliver_the_same_datagrams(Backend::Mmsg, 4, (23_060, 23_079));
}

#[test]
fn gso_on_and_off_deliver_the_same_datagrams_poll() {
    gso_on_and_off_deliver_the_same_datagrams(Backend::Poll, 5, (23_080, 23_099));
}

#[test]
fn gso_on_and_off_deliver_the_same_datagrams_uring() {
    gso_on_and_off_deliver_the_same_datagrams(Backend::Uring, 6, (23_100, 23_119));
}

/// CPU time the thread named `name` of this process has run, in nanoseconds
/// (`/proc/self/task/<tid>/schedstat`, first field).
fn thread_cpu_ns(name: &str) -> Option<u64> {
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

struct Measured {
    ingress: u64,
    egress: u64,
    cpu_ns: u64,
    segmented: u64,
    delivered: u64,
}

/// One sender and four receivers; `packets` pre-protected 1200-byte video
/// packets (frames of 3) blasted from the sender's socket; the shard thread's
/// CPU time per egress datagram.
fn measure(backend: Backend, index: usize, ports: (u16, u16), packets: usize) -> Measured {
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
    let seg0 = gso::segmented_sends();
    let mut sent = 0u64;
    let blast_deadline = Instant::now() + Duration::from_secs(60);
    for frame in datagrams[PACKETS_PER_FRAME..].chunks(PACKETS_PER_FRAME) {
        // Flow control: stay at most ~256 datagrams ahead of the shard, so the
        // kernel drops nothing at the shard's socket.
        while sent > snap().packets_received - in0 + 256 && Instant::now() < blast_deadline {
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
        segmented: gso::segmented_sends() - seg0,
        delivered,
    }
}

/// `cargo test --release -p ringbridge-bridge --test driver -- --ignored --nocapture`
#[test]
#[ignore = "measurement: run in release mode, by hand"]
fn measure_ns_per_egress_packet() {
    let _serial = serial();
    let packets: usize = std::env::var("RINGBRIDGE_MEASURE_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_001);
    let runs = [
        (Backend::Mmsg, true, 21, (23_200, 23_209)),
        (Backend::Mmsg, false, 22, (23_210, 23_219)),
        (Backend::Uring, true, 23, (23_220, 23_229)),
        (Backend::Uring, false, 24, (23_230, 23_239)),
        (Backend::Poll, false, 25, (23_240, 23_249)),
    ];
    println!(
        "\n{} x 1200-byte video packets (frames of 3), fan-out 4, loopback",
        packets
    );
    println!(
        "{:<8} {:<5} {:>9} {:>9} {:>10} {:>10} {:>9} {:>12}",
        "backend", "gso", "ingress", "egress", "delivered", "segmented", "cpu ms", "ns/egress"
    );
    for (backend, gso_on, index, ports) in runs {
        let _env = GsoEnv::set(!gso_on);
        let m = measure(backend, index, ports, packets);
        let gso_label = if backend == Backend::Poll {
            "-"
        } else if gso_on {
            "on"
        } else {
            "off"
        };
        println!(
            "{:<8} {:<5} {:>9} {:>9} {:>10} {:>10} {:>9.1} {:>12.0}",
            backend.name(),
            gso_label,
            m.ingress,
            m.egress,
            m.delivered,
            m.segmented,
            m.cpu_ns as f64 / 1e6,
            m.cpu_ns as f64 / m.egress.max(1) as f64
        );
    }
}
