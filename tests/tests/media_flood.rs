//! Issue 13 item 2, on the real binary: while a two-person call runs (real
//! ICE, DTLS and SRTP, the bench's endpoints and engine), another process
//! (`ringbridge-bench flood`) floods both endpoints' media ports as fast as one
//! thread can send with random garbage, SRTP replayed from a live endpoint's
//! own address, STUN with a wrong MESSAGE-INTEGRITY, datagrams from unknown
//! addresses, and oversized datagrams.
//!
//! Shows: the call loses under 1% of its packets; each kind is counted under
//! its reason in `/metrics`; nothing reached SRTP authentication or DTLS
//! (`packets_dropped{reason="auth"}` and `dtls_failures` do not move: the
//! strangers stop at the ICE gate, the replays at the replay window, both before
//! any cipher). Prints the flood rate and the bridge's CPU time per dropped
//! datagram (`/proc/<pid>/stat` utime + stime over the flood, less the call's
//! own CPU rate measured just before it, divided by the drops `/metrics`
//! counted).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringbridge_bench::engine::{self, EngineConfig, Measurement};
use ringbridge_bench::shape::{Plan, Shape};
use ringbridge_bench::target::{Leg, SendStream, Session};
use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer, RtpView};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::srtp::SrtpProfile;
use ringbridge_devsupport::bench_bin;
use ringbridge_tests::{Bridge, http_request};

/// Media before the measured window (slots open on keyframes; the flood
/// starts inside it).
const WARMUP: Duration = Duration::from_secs(3);
/// The measured window: the flood runs through all of it.
const WINDOW: Duration = Duration::from_secs(15);
/// SRTP packets of endpoint 0 captured for the replay.
const CAPTURE: usize = 64;
/// The call may lose at most this share of its packets.
const MAX_LOSS: f64 = 0.01;

/// Endpoint 0's session, keeping a copy of the first [`CAPTURE`] SRTP packets
/// it sends (what an eavesdropper on the path would record).
struct Capturing {
    inner: ClientPeer,
    captured: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Session for Capturing {
    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        Session::poll_transmit(&mut self.inner, now)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Session::handle_timeout(&mut self.inner, now);
    }
    fn is_connected(&self) -> bool {
        Session::is_connected(&self.inner)
    }
    fn failure(&self) -> Option<String> {
        Session::failure(&self.inner)
    }
    fn write_rtp(
        &mut self,
        kind: MediaKind,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, String> {
        let n = self.inner.write_rtp(kind, seq, ts, marker, payload, out)?;
        let mut c = self.captured.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() < CAPTURE
            && let Some(p) = out.get(..n)
        {
            c.push(p.to_vec());
        }
        Ok(n)
    }
    fn handle_datagram(&mut self, now: Instant, datagram: &mut [u8]) -> Option<RtpView> {
        self.inner.handle_datagram(now, datagram)
    }
    fn auth_failures(&self) -> u64 {
        self.inner.auth_failures()
    }
    fn profile(&self) -> Option<&'static str> {
        Session::profile(&self.inner)
    }
}

/// `a=<key>:<value>` of an SDP.
fn sdp_attr(sdp: &str, key: &str) -> String {
    let prefix = format!("a={key}:");
    sdp.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no a={key} in\n{sdp}"))
        .trim()
        .to_owned()
}

/// Joins every endpoint of `plan` through the bridge's signalling; returns
/// the legs and each endpoint's STUN USERNAME as the bridge expects it.
fn join(
    bridge: &Bridge,
    plan: &Plan,
    captured: &Arc<Mutex<Vec<Vec<u8>>>>,
) -> (Vec<Leg>, Vec<String>) {
    let room = "flood";
    let auth = format!("Bearer {}", bridge.token(room));
    let now = Instant::now();
    let mut legs = Vec::new();
    let mut usernames = Vec::new();
    for (global, ep) in plan.all.iter().enumerate() {
        let cfg = ClientConfig {
            dtls: ClientDtls::Auto,
            dtls_mtu: 1200,
            srtp_profiles: &[SrtpProfile::AeadAes128Gcm],
            audio: ep.audio,
            video: ep.video,
            audio_slots: ep.audio_slots,
            video_slots: ep.video_slots,
        };
        let mut peer = ClientPeer::new(cfg, now).expect("client");
        let offer = peer.offer();
        let resp = http_request(
            bridge.public_addr(),
            "POST",
            &format!("/conferences/{room}/endpoints"),
            &[
                ("Content-Type", "application/sdp"),
                ("Authorization", &auth),
            ],
            offer.as_bytes(),
        )
        .expect("join");
        assert_eq!(resp.status, 201, "{}", resp.text());
        let answer = resp.text();
        peer.handle_answer(&answer, now).expect("answer");
        usernames.push(format!(
            "{}:{}",
            sdp_attr(&answer, "ice-ufrag"),
            sdp_attr(&offer, "ice-ufrag")
        ));
        let remote = peer.remote_addr().expect("a candidate");
        let socket = ringbridge_bridge::io::udp::bind_udp(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("socket");
        let session: Box<dyn Session> = if global == 0 {
            Box::new(Capturing {
                inner: peer,
                captured: captured.clone(),
            })
        } else {
            Box::new(peer)
        };
        legs.push(Leg {
            socket,
            remote,
            session,
            sends: SendStream::published_by(global, ep),
            endpoint: global,
        });
    }
    (legs, usernames)
}

/// `ringbridge_packets_dropped_total` by reason, and the other counters the
/// test reads, summed over shards.
fn scrape(bridge: &Bridge) -> BTreeMap<String, f64> {
    let body = http_request(bridge.private_addr(), "GET", "/metrics", &[], b"")
        .expect("metrics")
        .text();
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let key = if let Some(rest) = series.strip_prefix("ringbridge_packets_dropped_total{") {
            let Some(reason) = rest
                .split("reason=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            else {
                continue;
            };
            format!("dropped:{reason}")
        } else {
            series.split('{').next().unwrap_or(series).to_owned()
        };
        *out.entry(key).or_default() += value;
    }
    out
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

/// `utime + stime` of `/proc/<pid>/stat`, in nanoseconds.
fn cpu_ns(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the bridge runs");
    ringbridge_bench::sys::stat_cpu_ns(&stat).expect("utime and stime")
}

/// Datagrams the kernel dropped at the UDP sockets bound to `ports`
/// (`/proc/net/udp`, `drops` column): a full receive queue.
fn kernel_drops(ports: &[u16]) -> u64 {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            ports
                .contains(&port)
                .then(|| f.get(12)?.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

/// What the flood thread measured.
struct FloodOutcome {
    report: serde_json::Value,
    before: BTreeMap<String, f64>,
    after: BTreeMap<String, f64>,
    flood_cpu_ns: u64,
    flood_wall: Duration,
    call_cpu_ns_per_s: f64,
    kernel_drops: u64,
}

#[test]
fn a_call_survives_a_flood_at_its_media_ports_and_every_drop_is_counted_before_cryptography() {
    let bridge = Bridge::start("");
    let pid = bridge.pid();
    let plan = Plan::new(Shape::Meeting, 1, 2, 2).expect("plan");
    let captured = Arc::new(Mutex::new(Vec::new()));
    let (mut legs, usernames) = join(&bridge, &plan, &captured);
    engine::handshake(&mut legs, Duration::from_secs(20)).expect("ICE and DTLS");
    let ports: Vec<u16> = legs.iter().map(|l| l.remote.port()).collect();
    let targets: Vec<SocketAddr> = legs.iter().map(|l| l.remote).collect();
    let replay_fd = legs[0].socket.as_raw_fd();
    let replay_to = legs[0].remote;

    let media_start = Instant::now();
    let flood_end = media_start + WARMUP + WINDOW + Duration::from_millis(200);
    let flood = std::thread::scope(|s| {
        let bridge = &bridge;
        let captured = captured.clone();
        let flood = s.spawn(move || {
            // The replay needs packets the endpoint really sent.
            let deadline = Instant::now() + Duration::from_secs(5);
            let packets = loop {
                let c = captured.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if c.len() >= CAPTURE {
                    break c;
                }
                assert!(
                    Instant::now() < deadline,
                    "only {} packets captured",
                    c.len()
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            // The call's own CPU rate, to take out of the flood's.
            let (c0, t0) = (cpu_ns(pid), Instant::now());
            std::thread::sleep(Duration::from_millis(1200));
            let call_cpu_ns_per_s =
                cpu_ns(pid).saturating_sub(c0) as f64 / t0.elapsed().as_secs_f64();

            let dir = std::env::temp_dir().join(format!(
                "ringbridge-flood-{}",
                ringbridge_tests::random_u64()
            ));
            std::fs::create_dir_all(&dir).expect("dir");
            let replay_file = dir.join("replay.hex");
            std::fs::write(
                &replay_file,
                ringbridge_bench::flood::write_replay_file(&packets),
            )
            .expect("replay file");
            let duration = flood_end.saturating_duration_since(Instant::now());
            let mut cmd = Command::new(bench_bin());
            cmd.arg("flood");
            for (t, u) in targets.iter().zip(&usernames) {
                cmd.arg("--to")
                    .arg(t.to_string())
                    .arg("--stun-username")
                    .arg(u);
            }
            cmd.arg("--replay-fd")
                .arg(replay_fd.to_string())
                .arg("--replay-file")
                .arg(&replay_file)
                .arg("--replay-to")
                .arg(replay_to.to_string())
                .arg("--duration")
                .arg(format!("{:.3}", duration.as_secs_f64()))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            // The child inherits endpoint 0's socket (cleared close-on-exec in
            // the child only), so its replays come from the validated address.
            // SAFETY: fcntl is async-signal-safe; it touches only the child's
            // copy of the descriptor table.
            unsafe {
                cmd.pre_exec(move || {
                    let flags = libc::fcntl(replay_fd, libc::F_GETFD);
                    if flags < 0
                        || libc::fcntl(replay_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let before = scrape(bridge);
            let k0 = kernel_drops(&ports);
            let (c1, t1) = (cpu_ns(pid), Instant::now());
            let out = cmd.output().expect("ringbridge-bench flood runs");
            let (c2, flood_wall) = (cpu_ns(pid), t1.elapsed());
            let k1 = kernel_drops(&ports);
            let after = scrape(bridge);
            let _ = std::fs::remove_dir_all(&dir);
            assert!(out.status.success(), "flood failed: {}", out.status);
            let report: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("the flood's JSON line");
            FloodOutcome {
                report,
                before,
                after,
                flood_cpu_ns: c2.saturating_sub(c1),
                flood_wall,
                call_cpu_ns_per_s,
                kernel_drops: k1.saturating_sub(k0),
            }
        });
        let m = engine::run(
            &mut legs,
            &plan,
            None,
            &EngineConfig {
                warmup: WARMUP,
                duration: WINDOW,
                drain: Duration::from_millis(300),
                bucket: Duration::from_millis(250),
                progress: false,
                label: "flood".into(),
                // Every packet of the call authenticated and checked: the
                // flood must not damage one.
                verify_every: 1,
            },
        )
        .expect("the call runs");
        (m, flood.join().expect("flood thread"))
    });
    let (m, f): (Measurement, FloodOutcome) = flood;

    let sent = &f.report["sent"];
    let rate = f.report["rate_pps"].as_f64().unwrap_or(0.0);
    println!(
        "flood: {rate:.0} datagrams/s for {:.1} s ({} in all; by kind {sent}; flood thread {:.0}% of a core)",
        f.report["duration_s"].as_f64().unwrap_or(0.0),
        f.report["total"],
        f.report["cpu_util"].as_f64().unwrap_or(0.0) * 100.0
    );
    let reasons = [
        "garbage",
        "oversized",
        "unknown_source",
        "unknown_port",
        "stun_integrity",
        "stun_username",
        "stun_other",
        "malformed",
        "auth",
        "replay",
        "unknown_ssrc",
    ];
    let moved: Vec<(&str, f64)> = reasons
        .iter()
        .map(|r| (*r, delta(&f.before, &f.after, &format!("dropped:{r}"))))
        .collect();
    println!("dropped by the bridge during the flood, by reason: {moved:?}");
    let drops: f64 = f
        .after
        .keys()
        .filter(|k| k.starts_with("dropped:"))
        .map(|k| delta(&f.before, &f.after, k))
        .sum();
    println!(
        "kernel drops at the two endpoints' sockets (receive queue full): {}",
        f.kernel_drops
    );
    let call_cpu = f.call_cpu_ns_per_s * f.flood_wall.as_secs_f64();
    let cost = (f.flood_cpu_ns as f64 - call_cpu).max(0.0) / drops.max(1.0);
    println!(
        "bridge CPU over the flood: {:.0} ms in {:.1} s (the call alone: {:.1} ms/s); {drops:.0} datagrams dropped",
        f.flood_cpu_ns as f64 / 1e6,
        f.flood_wall.as_secs_f64(),
        f.call_cpu_ns_per_s / 1e6
    );
    println!("cost per dropped datagram: {cost:.0} ns");
    println!(
        "call: {} of {} deliveries, loss {:.3}%, p99 latency {:.2} ms, client auth failures {}",
        m.delivered,
        m.expected,
        m.loss_ratio() * 100.0,
        m.latency_ns.value_at_quantile(0.99) as f64 / 1e6,
        m.auth_failures
    );

    assert!(m.expected > 0, "the call sent nothing in the window");
    assert!(
        m.loss_ratio() < MAX_LOSS,
        "the call lost {:.2}% of its packets under the flood",
        m.loss_ratio() * 100.0
    );
    assert_eq!(m.auth_failures, 0, "what reached the clients is intact");
    for (kind, reason) in [
        ("garbage", "garbage"),
        ("stun", "stun_integrity"),
        ("unknown", "unknown_source"),
        ("oversized", "oversized"),
        ("replay", "replay"),
    ] {
        let n = sent[kind].as_u64().unwrap_or(0);
        let d = delta(&f.before, &f.after, &format!("dropped:{reason}"));
        assert!(n > 0, "the flood sent no {kind}");
        assert!(
            d > 0.0,
            "{n} {kind} datagrams sent, none counted as {reason}"
        );
    }
    // Every datagram sent was counted: by the bridge under a reason, or by
    // the kernel when a receive queue was full.
    let total = f.report["total"].as_u64().unwrap_or(0) as f64;
    assert!(
        drops + f.kernel_drops as f64 >= total,
        "{total} sent, {drops} counted by the bridge, {} by the kernel",
        f.kernel_drops
    );
    // Nothing got to a cipher: no SRTP authentication failed (the strangers
    // stopped at the ICE gate, the replays at the window, which is checked
    // before the tag), and no DTLS record of a stranger reached DTLS.
    assert_eq!(delta(&f.before, &f.after, "dropped:auth"), 0.0);
    assert_eq!(
        delta(&f.before, &f.after, "ringbridge_dtls_failures_total"),
        0.0
    );
    assert_eq!(
        delta(&f.before, &f.after, "ringbridge_dtls_successes_total"),
        0.0
    );
    assert!(
        f.after.contains_key("ringbridge_dtls_failures_total"),
        "the DTLS counters are scraped: {:?}",
        f.after.keys().collect::<Vec<_>>()
    );
}
