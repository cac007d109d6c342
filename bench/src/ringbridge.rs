//! The ringbridge target: a `ringbridge` process the bench starts from the same
//! build (generated config: loopback only, its own ports, one shard on the
//! target core, the whole process pinned there), or a running bridge at `--url`.
//! With `--netns` the bridge runs in a network namespace of its own
//! ([`crate::netns`]) and binds and advertises the namespace end of the veth
//! pair; the legs bind the host end.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer};
use ringbridge_control::AuthConfig;
use ringbridge_control::token::{TokenRequest, mint_token};

use crate::BenchError;
use crate::netns::Netns;
use crate::shape::Plan;
use crate::sys::{self, http_request};
use crate::target::{Leg, RunOptions, SendStream, Target};

/// A bridge under load.
#[derive(Debug)]
pub struct RingbridgeTarget {
    child: Option<Child>,
    dir: Option<PathBuf>,
    public: SocketAddr,
    private: Option<SocketAddr>,
    secret: String,
    io_backend: Option<String>,
    /// Where legs bind: loopback, or the host end of the veth pair.
    local_ip: std::net::IpAddr,
    /// Dropped after the child is killed (fields drop after `Drop::drop`).
    netns: Option<Netns>,
}

/// The `ringbridge` binary: `--bridge-bin`, else the one next to this binary
/// (`target/<profile>/`), else `ringbridge` on the `PATH`.
pub fn bridge_bin(opts: &RunOptions) -> PathBuf {
    if let Some(bin) = &opts.bridge_bin {
        return bin.clone();
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        // Test binaries live in target/<profile>/deps/.
        for d in [dir.clone(), dir.join("..")] {
            let bin = d.join("ringbridge");
            if bin.is_file() {
                return bin;
            }
        }
    }
    PathBuf::from("ringbridge")
}

fn free_tcp_port() -> Result<u16, BenchError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn parse_url(url: &str) -> Result<SocketAddr, BenchError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| BenchError::Config(format!("--url {url:?}: only http:// is supported")))?;
    let host = rest.split('/').next().unwrap_or(rest);
    host.to_socket_addrs()?
        .next()
        .ok_or_else(|| BenchError::Config(format!("--url {url:?}: no address")))
}

impl RingbridgeTarget {
    /// Starts a bridge, or attaches to `opts.url`.
    pub fn start(opts: &RunOptions) -> Result<Self, BenchError> {
        if let Some(url) = &opts.url {
            let secret = opts.secret.clone().ok_or_else(|| {
                BenchError::Config("--url needs --secret (the bridge's auth.app_secret)".into())
            })?;
            return Ok(Self {
                child: None,
                dir: None,
                public: parse_url(url)?,
                private: None,
                secret,
                io_backend: None,
                local_ip: std::net::Ipv4Addr::LOCALHOST.into(),
                netns: None,
            });
        }
        let netns = if opts.netns {
            Some(Netns::create()?)
        } else {
            None
        };
        let (ip, local_ip): (std::net::IpAddr, std::net::IpAddr) = match &netns {
            Some(ns) => (ns.inner_addr().into(), ns.host_addr().into()),
            None => (
                std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::Ipv4Addr::LOCALHOST.into(),
            ),
        };
        let public_port = free_tcp_port()?;
        let mut private_port = free_tcp_port()?;
        while private_port == public_port {
            private_port = free_tcp_port()?;
        }
        // ICE-TCP on a free port of its own, not the default 4443: two benches
        // (or a bench beside a test) on one machine would otherwise collide.
        let mut tcp_port = free_tcp_port()?;
        while tcp_port == public_port || tcp_port == private_port {
            tcp_port = free_tcp_port()?;
        }
        let span = opts.media_ports.max(1000);
        let lo = media_range_start(span, ephemeral_port_start(), rand::random());
        let secret = format!("bench-{:016x}", rand::random::<u64>());
        // Thousands of joins from one address, and conferences of any size: the
        // per-address rate limits and the conference size cap are off, so that
        // the bench measures the bridge and not them.
        let config = format!(
            "server_id = \"bench\"\n\
             [public]\nlisten = \"{ip}:{public_port}\"\n\
             join_rate_limit = 0\nws_rate_limit = 0\n\
             [private]\nlisten = \"{ip}:{private_port}\"\n\
             [load]\nmax_packet_rate = 100000000\nmax_endpoints_per_conference = 0\n\
             [media]\nport_range = [{lo}, {hi}]\nport = {port}\nadvertise = [\"{ip}\"]\nbind = \"{ip}\"\ntcp_port = {tcp_port}\n\
             io = \"{io}\"\ncores = [{core}]\n{xdp}\
             [auth]\napp_secret = \"{secret}\"\n",
            hi = lo.saturating_add(span - 1),
            port = opts.media_port,
            io = opts.io,
            core = opts.target_core,
            // AF_XDP on the namespace end of the veth pair (queue 0: one shard).
            xdp = if opts.io == "xdp" {
                format!("xdp_interface = \"{}\"\n", crate::netns::INNER_IF)
            } else {
                String::new()
            },
        );
        let dir = std::env::temp_dir().join(format!("ringbridge-bench-{}", opts.run_tag));
        std::fs::create_dir_all(&dir)?;
        let config_path = dir.join("ringbridge.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.join("bridge.log"))?;
        let bin = bridge_bin(opts);
        // In a namespace: `ip netns exec NS ringbridge ...`; `ip` execs, so the
        // child's pid is the bridge's own (its CPU time is what is read).
        let mut cmd = match &netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name()]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        // The generator pinned itself: the bridge must start with every core.
        // SAFETY: the hook only calls sched_setaffinity (async-signal-safe).
        unsafe {
            cmd.pre_exec(sys::unpin_all);
        }
        let child = cmd
            .spawn()
            .map_err(|e| BenchError::Target(format!("cannot start {}: {e}", bin.display())))?;
        let mut target = Self {
            child: Some(child),
            dir: Some(dir),
            public: SocketAddr::new(ip, public_port),
            private: Some(SocketAddr::new(ip, private_port)),
            secret,
            io_backend: None,
            local_ip,
            netns,
        };
        target.wait_healthy(Duration::from_secs(30))?;
        // Pinned only now: the bridge checks `media.cores` against the cores it
        // may use, so it must start with the whole machine. Threads it makes
        // later inherit the mask of the thread that makes them.
        let pid = target.pid().unwrap_or(0);
        sys::pin_process(pid, opts.target_core)?;
        target.io_backend = target.stats_io_backend();
        Ok(target)
    }

    /// Whether the bridge the bench started still runs (`true` for `--url`).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Lines of the bridge's log that report a panic.
    pub fn log_panics(&self) -> usize {
        let Some(dir) = &self.dir else {
            return 0;
        };
        std::fs::read_to_string(dir.join("bridge.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("panicked"))
            .count()
    }

    fn log_tail(&self) -> String {
        let Some(dir) = &self.dir else {
            return String::new();
        };
        let log = std::fs::read_to_string(dir.join("bridge.log")).unwrap_or_default();
        let start = log.len().saturating_sub(4000);
        log.get(start..).unwrap_or_default().to_owned()
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<(), BenchError> {
        let Some(private) = self.private else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        loop {
            crate::interrupt::check()?;
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(BenchError::Target(format!(
                    "ringbridge exited during start ({status}):\n{}",
                    self.log_tail()
                )));
            }
            if http_request(private, "GET", "/about/health", &[], b"")
                .is_ok_and(|r| r.status == 200)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Target(format!(
                    "ringbridge not healthy after {timeout:?}:\n{}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The bridge's private (stats) address; `None` for a bridge given by
    /// `--url`.
    pub fn private_addr(&self) -> Option<SocketAddr> {
        self.private
    }

    fn stats_io_backend(&self) -> Option<String> {
        let v = colibri_stats(self.private?)?;
        v.get("io_backend")?.as_str().map(str::to_owned)
    }

    fn token(&self, room: &str) -> Result<String, BenchError> {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let req = TokenRequest {
            room: room.to_owned(),
            owner: true,
            name: None,
            ttl: Duration::from_secs(3600),
            now_unix,
        };
        mint_token(&AuthConfig::default(), &self.secret, &req)
            .map_err(|e| BenchError::Target(format!("token: {e}")))
    }
}

impl Drop for RingbridgeTarget {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir
            && !std::thread::panicking()
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Target for RingbridgeTarget {
    fn name(&self) -> &'static str {
        "ringbridge"
    }
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    fn io_backend(&self) -> Option<String> {
        self.io_backend.clone()
    }
    fn network(&self) -> &'static str {
        if self.netns.is_some() {
            "veth"
        } else {
            "loopback"
        }
    }
    fn netns_name(&self) -> Option<&str> {
        self.netns.as_ref().map(Netns::name)
    }
    fn connect(&mut self, plan: &Plan, opts: &RunOptions) -> Result<Vec<Leg>, BenchError> {
        let mut tokens = Vec::with_capacity(plan.conferences);
        for c in 0..plan.conferences {
            let room = format!("bench-{}-{c}", opts.run_tag);
            let token = self.token(&room)?;
            tokens.push((room, token));
        }
        let now = Instant::now();
        let (public, local_ip) = (self.public, self.local_ip);
        let join = |global: usize| {
            let ep = plan
                .all
                .get(global)
                .ok_or_else(|| BenchError::Connect(format!("no endpoint {global}")))?;
            let (room, token) = tokens
                .get(ep.conference)
                .ok_or_else(|| BenchError::Connect(format!("no token for endpoint {global}")))?;
            join_one(public, local_ip, room, token, ep, opts, now)
        };
        let parallel = opts.signalling_parallel.clamp(1, plan.all.len().max(1));
        let joined: Vec<Joined> = if parallel == 1 {
            (0..plan.all.len()).map(join).collect::<Result<_, _>>()?
        } else {
            // Offers in flight at once, each on a thread of the generator's core
            // (threads inherit its pinning); the legs keep the plan's order.
            let next = std::sync::atomic::AtomicUsize::new(0);
            let mut done: Vec<(usize, Result<Joined, BenchError>)> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..parallel)
                    .map(|_| {
                        s.spawn(|| {
                            let mut out = Vec::new();
                            loop {
                                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                if i >= plan.all.len() || crate::interrupt::requested() {
                                    break;
                                }
                                let r = join(i);
                                let failed = r.is_err();
                                out.push((i, r));
                                if failed {
                                    break;
                                }
                            }
                            out
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|w| w.join().unwrap_or_default())
                    .collect()
            });
            crate::interrupt::check()?;
            done.sort_by_key(|(i, _)| *i);
            let mut joined = Vec::with_capacity(plan.all.len());
            for (i, r) in done {
                if i != joined.len() {
                    return Err(BenchError::Connect(format!(
                        "endpoint {} was not signalled (a signalling thread stopped)",
                        joined.len()
                    )));
                }
                joined.push(r?);
            }
            if joined.len() != plan.all.len() {
                return Err(BenchError::Connect(format!(
                    "{} of {} endpoints signalled",
                    joined.len(),
                    plan.all.len()
                )));
            }
            joined
        };
        Ok(joined
            .into_iter()
            .zip(plan.all.iter().enumerate())
            .map(|(j, (global, ep))| Leg {
                socket: j.socket,
                remote: j.remote,
                session: Box::new(j.peer),
                sends: SendStream::published_by(global, ep),
                endpoint: global,
            })
            .collect())
    }
}

/// One endpoint signalled: its client, the bridge's address for it, its socket.
struct Joined {
    peer: ClientPeer,
    remote: SocketAddr,
    socket: std::net::UdpSocket,
}

/// Posts endpoint `ep`'s offer to `room` and takes the answer.
fn join_one(
    public: SocketAddr,
    local_ip: std::net::IpAddr,
    room: &str,
    token: &str,
    ep: &crate::shape::EndpointPlan,
    opts: &RunOptions,
    now: Instant,
) -> Result<Joined, BenchError> {
    let cfg = ClientConfig {
        dtls: ClientDtls::Auto,
        dtls_mtu: 1200,
        srtp_profiles: opts.profile.offer(),
        audio: ep.audio,
        video: ep.video,
        audio_slots: ep.audio_slots,
        video_slots: ep.video_slots,
    };
    let mut peer =
        ClientPeer::new(cfg, now).map_err(|e| BenchError::Connect(format!("client: {e}")))?;
    if ep.simulcast {
        // SSRC simulcast (a=ssrc-group:SIM): the bench writes no header
        // extensions, so the layers are told apart by SSRC.
        let v = peer.video_ssrc;
        peer.video_layers = Some([v, v ^ 0x0100, v ^ 0x0200]);
    }
    let auth = format!("Bearer {token}");
    let resp = http_request(
        public,
        "POST",
        &format!("/conferences/{room}/endpoints"),
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &auth),
        ],
        peer.offer().as_bytes(),
    )?;
    if resp.status != 201 {
        return Err(BenchError::Connect(format!(
            "POST /conferences/{room}/endpoints answered {}: {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        )));
    }
    let answer = String::from_utf8_lossy(&resp.body);
    peer.handle_answer(&answer, now)
        .map_err(|e| BenchError::Connect(format!("answer: {e}")))?;
    let remote = peer
        .remote_addr()
        .ok_or_else(|| BenchError::Connect("answer without candidate".into()))?;
    let socket = ringbridge_bridge::io::udp::bind_udp(SocketAddr::new(local_ip, 0))?;
    Ok(Joined {
        peer,
        remote,
        socket,
    })
}

/// Datagrams the bridge at `private` has held in a send backlog since it
/// started (`total_send_backlogged` of `/colibri/stats`): a socket buffer was
/// full, and the backlog's memory was taken.
pub fn send_backlogged(private: SocketAddr) -> Option<u64> {
    colibri_stats(private)?
        .get("total_send_backlogged")?
        .as_u64()
}

/// The `/colibri/stats` document of the bridge at `private`.
fn colibri_stats(private: SocketAddr) -> Option<serde_json::Value> {
    let r = http_request(private, "GET", "/colibri/stats", &[], b"").ok()?;
    serde_json::from_slice(&r.body).ok()
}

/// The first port of the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, 32768 where it cannot be read).
fn ephemeral_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Where the bridge's media range of `span` ports starts: a random multiple of
/// 1000 from 10000 on (two benches, or a bench beside a test, seldom collide),
/// ending below the ephemeral range that starts at `ephemeral`. The bench's
/// own client sockets (one per endpoint, bound to port 0) take ephemeral
/// ports: a media range inside that range lost enough of its ports to them
/// that `scale --conferences 300 --endpoints 10` failed about one run in three
/// with `503 no free media port`. Inside it only when nothing fits below.
fn media_range_start(span: u16, ephemeral: u16, random: u16) -> u16 {
    let slots = ephemeral.saturating_sub(10_000).saturating_sub(span) / 1000 + 1;
    if ephemeral >= 10_000 + span {
        10_000 + (random % slots) * 1000
    } else {
        30_000 + (random % 30) * 1000
    }
}

#[cfg(test)]
mod media_range_tests {
    use super::media_range_start;

    #[test]
    fn the_media_range_ends_below_the_ephemeral_ports() {
        for random in 0..200 {
            for span in [1000, 3200, 10_000, 22_768] {
                let lo = media_range_start(span, 32_768, random);
                assert!(lo >= 10_000, "{lo}");
                assert!(u32::from(lo) + u32::from(span) <= 32_768, "{lo} + {span}");
            }
        }
        // Several places to choose from for the usual spans.
        let starts: std::collections::BTreeSet<u16> = (0..100)
            .map(|r| media_range_start(3200, 32_768, r))
            .collect();
        assert!(starts.len() >= 10, "{starts:?}");
    }

    #[test]
    fn a_span_that_does_not_fit_below_goes_above_as_before() {
        let lo = media_range_start(30_000, 32_768, 7);
        assert!(lo >= 30_000);
    }
}
