//! End-to-end tests against a real Janus in a namespace (needs root and the Debian
//! package `janus`; CI runs as root with it installed).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, OPUS_PT, VP8_PT};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::srtp::SrtpProfile;

use super::*;

/// Tests that start Janus run one at a time (they check for leftover namespaces and
/// measure CPU).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn client_cfg() -> ClientConfig {
    ClientConfig {
        dtls: ClientDtls::Auto,
        dtls_mtu: 1200,
        srtp_profiles: SrtpProfile::BROWSER_OFFER,
        audio: true,
        video: true,
        audio_slots: 0,
        video_slots: 0,
    }
}

/// Paces the media shape: Opus at 50 packets/s of 160 bytes, VP8 at 30
/// frames/s as bursts of 5 packets of 1200 bytes (about 1.5 Mbit/s).
struct Source {
    start: Instant,
    audio_sent: u64,
    frames_sent: u64,
    audio_seq: u16,
    video_seq: u16,
}

const VIDEO_PACKETS_PER_FRAME: usize = 5;

impl Source {
    fn new(now: Instant) -> Self {
        Self {
            start: now,
            audio_sent: 0,
            frames_sent: 0,
            audio_seq: 0,
            video_seq: 0,
        }
    }

    /// Sends what is due at `now`; returns the number of RTP packets sent.
    fn tick(&mut self, now: Instant, link: &mut Link) -> Result<u64, JanusError> {
        let elapsed = now.duration_since(self.start);
        let mut sent = 0;
        while self.audio_sent * 20 <= elapsed.as_millis() as u64 {
            let mut payload = [0u8; 160];
            payload[..8].copy_from_slice(&self.audio_sent.to_be_bytes());
            let ts = (self.audio_sent * 960) as u32;
            let d = link
                .peer
                .send_rtp(MediaKind::Audio, self.audio_seq, ts, false, &payload)?;
            link.send(&d)?;
            self.audio_seq = self.audio_seq.wrapping_add(1);
            self.audio_sent += 1;
            sent += 1;
        }
        while self.frames_sent * 1000 <= elapsed.as_millis() as u64 * 30 {
            let ts = (self.frames_sent * 3000) as u32;
            let keyframe = self.frames_sent.is_multiple_of(60);
            for i in 0..VIDEO_PACKETS_PER_FRAME {
                let mut payload = vec![0u8; 1200];
                if i == 0 {
                    // VP8 payload descriptor: S=1, partition 0; then the VP8 frame
                    // header (bit 0 clear = key frame) with the key frame start code.
                    payload[0] = 0x10;
                    payload[1] = if keyframe { 0x00 } else { 0x01 };
                    payload[4..7].copy_from_slice(&[0x9d, 0x01, 0x2a]);
                    payload[7..11].copy_from_slice(&[0x80, 0x02, 0xe0, 0x01]);
                }
                payload[16..24].copy_from_slice(&self.frames_sent.to_be_bytes());
                let marker = i + 1 == VIDEO_PACKETS_PER_FRAME;
                let d =
                    link.peer
                        .send_rtp(MediaKind::Video, self.video_seq, ts, marker, &payload)?;
                link.send(&d)?;
                self.video_seq = self.video_seq.wrapping_add(1);
                sent += 1;
            }
            self.frames_sent += 1;
        }
        Ok(sent)
    }
}

/// Janus in a namespace; one publisher (Opus + VP8), one subscriber that receives and
/// decrypts at least 100 RTP packets of both kinds; then everything is torn down.
#[test]
fn janus_videoroom_forwards_one_stream_end_to_end() -> Result<(), JanusError> {
    let _serial = serial();
    let t0 = Instant::now();
    let target = JanusTarget::start(&JanusConfig::default())?;
    let ns = target.netns_name().to_owned();
    let iface = target.host_interface();
    let pid = target.pid();
    assert!(netns_exists(&ns), "namespace {ns} should exist");
    assert!(link_exists(&iface), "veth {iface} should exist");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))?.trim(),
        "janus"
    );

    let room = target.create_room(1)?;
    let mut publisher = target.publish(room, client_cfg())?;
    connect(&mut [&mut publisher.link], Duration::from_secs(10))?;
    assert!(publisher.link.peer.checks_answered() > 0);

    let mut subscriber = target.subscribe(room, &[publisher.feed], client_cfg())?;
    let mut source = Source::new(Instant::now());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = Instant::now();
        publisher.link.pump(now)?;
        subscriber.link.pump(now)?;
        if publisher.link.peer.is_connected() && subscriber.link.peer.is_connected() {
            source.tick(now, &mut publisher.link)?;
        }
        let got = subscriber.link.peer.received_rtp();
        let audio = got.iter().filter(|p| p.pt == OPUS_PT).count();
        let video = got.iter().filter(|p| p.pt == VP8_PT).count();
        if audio + video >= 100 && audio > 0 && video > 0 {
            break;
        }
        if let Some(why) = subscriber.link.peer.failure() {
            panic!("subscriber failed: {why}");
        }
        assert!(
            now < deadline,
            "subscriber got {audio} audio and {video} video packets in 10 s \
             (connected: {}, checks answered: {}, srtp failures: {})",
            subscriber.link.peer.is_connected(),
            subscriber.link.peer.checks_answered(),
            subscriber.link.peer.srtp_failures(),
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Payloads arrive intact: the video sequence numbers we wrote are increasing.
    let frames: Vec<u64> = subscriber
        .link
        .peer
        .received_rtp()
        .iter()
        .filter(|p| p.pt == VP8_PT && p.payload.len() == 1200)
        .map(|p| u64::from_be_bytes(p.payload[16..24].try_into().unwrap()))
        .collect();
    assert!(frames.windows(2).all(|w| w[0] <= w[1]), "{frames:?}");
    assert!(target.cpu_time()? > Duration::ZERO);

    subscriber.session.destroy()?;
    publisher.session.destroy()?;
    target.stop();
    assert!(!netns_exists(&ns), "namespace {ns} left behind");
    assert!(!link_exists(&iface), "veth {iface} left behind");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "janus still running"
    );
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    Ok(())
}

/// Janus CPU per egress packet for the shapes (run by hand:
/// `cargo test -p ringbridge-bench --release janus_cpu -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement, not a check: ~40 s"]
fn janus_cpu_per_egress_packet() -> Result<(), JanusError> {
    let _serial = serial();
    pin_self(0);
    for (name, publishers, receivers_per_feed) in [("livestream 1->10", 1, 10), ("meeting 4", 4, 3)]
    {
        let target = JanusTarget::start(&JanusConfig {
            core: Some(1),
            debug_level: 2,
            ..JanusConfig::default()
        })?;
        let room = target.create_room(publishers)?;
        let mut pubs = Vec::new();
        for _ in 0..publishers {
            let mut p = target.publish(room, client_cfg())?;
            connect(&mut [&mut p.link], Duration::from_secs(10))?;
            pubs.push(p);
        }
        let feeds: Vec<u64> = pubs.iter().map(|p| p.feed).collect();
        let mut subs = Vec::new();
        if publishers == 1 {
            for _ in 0..receivers_per_feed {
                subs.push(target.subscribe(room, &feeds, client_cfg())?);
            }
        } else {
            // Meeting: every participant subscribes to all the others in one
            // PeerConnection (Janus 1.x multistream).
            for i in 0..publishers {
                let others: Vec<u64> = feeds
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, f)| *f)
                    .collect();
                subs.push(target.subscribe(room, &others, client_cfg())?);
            }
        }
        {
            let mut links: Vec<&mut Link> = subs.iter_mut().map(|s| &mut s.link).collect();
            connect(&mut links, Duration::from_secs(10))?;
        }
        let mut sources: Vec<Source> = pubs.iter().map(|_| Source::new(Instant::now())).collect();
        let warmup = Duration::from_secs(3);
        let window = Duration::from_secs(15);
        let begin = Instant::now();
        let mut measuring = false;
        let (mut cpu0, mut t0) = (Duration::ZERO, begin);
        let (mut egress, mut ingress) = (0u64, 0u64);
        loop {
            let now = Instant::now();
            let mut sent = 0;
            for (p, s) in pubs.iter_mut().zip(sources.iter_mut()) {
                p.link.pump(now)?;
                sent += s.tick(now, &mut p.link)?;
            }
            let mut received = 0;
            for s in subs.iter_mut() {
                s.link.pump(now)?;
                let rtp = &mut s.link.peer.client_mut().received_rtp;
                received += rtp.len() as u64;
                rtp.clear();
            }
            if !measuring && now.duration_since(begin) >= warmup {
                measuring = true;
                cpu0 = target.cpu_time()?;
                t0 = now;
            } else if measuring {
                egress += received;
                ingress += sent;
                if now.duration_since(t0) >= window {
                    let cpu = target.cpu_time()? - cpu0;
                    let secs = now.duration_since(t0).as_secs_f64();
                    let expected_egress = ingress as f64 * receivers_per_feed as f64;
                    println!(
                        "{name}: window {secs:.1} s, ingress {:.0} pps, egress {:.0} pps \
                         (loss {:.2}%), janus cpu {:.3} s = {:.1}% of a core, \
                         {:.0} ns per egress packet, srtp {:?}",
                        ingress as f64 / secs,
                        egress as f64 / secs,
                        100.0 * (1.0 - egress as f64 / expected_egress),
                        cpu.as_secs_f64(),
                        100.0 * cpu.as_secs_f64() / secs,
                        cpu.as_nanos() as f64 / egress as f64,
                        subs.first().and_then(|s| s.link.peer.profile()),
                    );
                    break;
                }
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    Ok(())
}

fn pin_self(core: usize) {
    // SAFETY: the set is zeroed and filled with CPU_SET before use; pid 0 is us.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The bench's own engine against Janus through [`bench_target::JanusBenchTarget`]
/// (run by hand: `cargo test -p ringbridge-bench --release janus_through -- --ignored
/// --nocapture`).
#[test]
#[ignore = "a measurement through the bench engine: ~50 s"]
fn janus_through_bench_engine() -> Result<(), crate::BenchError> {
    let _serial = serial();
    use crate::engine::{self, EngineConfig};
    use crate::shape::{Plan, Shape};
    use crate::target::{ProfileChoice, RunOptions, Target};

    crate::sys::pin_current_thread(0)?;
    let opts = RunOptions {
        profile: ProfileChoice::Gcm,
        io: "auto".into(),
        target_core: 1,
        generator_core: 0,
        bridge_bin: None,
        url: None,
        secret: None,
        connect_timeout: Duration::from_secs(15),
        run_tag: "janus-test".into(),
        netns: false,
        loss_percent: 0,
        media_port: 0,
        media_ports: 1000,
        signalling_parallel: 1,
    };
    let cfg = EngineConfig {
        warmup: Duration::from_secs(3),
        duration: Duration::from_secs(15),
        drain: Duration::from_millis(500),
        bucket: Duration::from_secs(1),
        progress: false,
        label: "janus".into(),
        verify_every: 1,
    };
    // JANUS_BENCH_CONFERENCES=C runs C conferences of each shape at once.
    let conferences = std::env::var("JANUS_BENCH_CONFERENCES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    for (name, plan) in [
        (
            "livestream 1->10",
            Plan::new(Shape::Livestream, conferences, 11, 0),
        ),
        ("meeting 4", Plan::new(Shape::Meeting, conferences, 4, 0)),
    ] {
        let plan = plan.map_err(crate::BenchError::Config)?;
        let mut target = bench_target::JanusBenchTarget::start(&opts)?;
        let mut legs = target.connect(&plan, &opts)?;
        engine::handshake(&mut legs, opts.connect_timeout)?;
        let m = engine::run(&mut legs, &plan, target.pid(), &cfg)?;
        println!(
            "{name} x{conferences}: legs {}, ingress {:.0} pps, egress {:.0} pps, loss {:.4}, \
             janus {:?} ns/egress packet, corrupt {}, auth failures {}, held rate {}, srtp {:?}",
            legs.len(),
            m.ingress_packets as f64 / m.window_s,
            m.egress_packets as f64 / m.window_s,
            m.loss_ratio(),
            m.cpu_ns_per_egress_packet(),
            m.corrupt,
            m.auth_failures,
            m.generator_held_rate(),
            m.profile,
        );
        assert!(m.loss_ratio() < 0.01, "loss {}", m.loss_ratio());
    }
    Ok(())
}

/// Namespaces this test process owns (`rbbench-<pid>-*`).
fn own_namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let prefix = format!("{}{}-", crate::netns::NS_PREFIX, std::process::id());
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn missing_janus_binary_is_a_clear_error() {
    let err = JanusTarget::start(&JanusConfig {
        janus_bin: "/nonexistent/janus".into(),
        ..JanusConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, JanusError::NotInstalled(_)), "{err}");
    assert!(err.to_string().contains("apt-get install janus"), "{err}");
}

/// A Janus that exits at once is reported, and the namespace is still removed.
#[test]
fn failed_start_tears_the_namespace_down() {
    let _serial = serial();
    let err = JanusTarget::start(&JanusConfig {
        janus_bin: "/bin/false".into(),
        ..JanusConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, JanusError::Process(_)), "{err}");
    assert_eq!(own_namespaces(), Vec::<String>::new());
}
