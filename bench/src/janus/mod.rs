//! The Janus target: Janus VideoRoom run side by side with ringbridge, same load shape,
//! same kernel path.
//!
//! [`JanusTarget::start`] makes a network namespace with a veth pair (Janus's ICE
//! never offers loopback, see DESIGN.md "Testing on one machine"), writes a minimal
//! Janus configuration (VideoRoom plugin and HTTP transport only, ICE on the veth,
//! no STUN, no session timeout) and runs the Debian package's `janus` inside it,
//! pinned with `taskset` when a core is given. Dropping the target stops Janus and
//! deletes the namespace and the veth pair.
//!
//! Signalling goes through Janus's HTTP API ([`api::Session`]); media through
//! [`JanusPeer`], ringbridge's `ClientPeer` extended to talk to a full ICE agent.
//! [`JanusTarget::publish`] and [`JanusTarget::subscribe`] return [`Link`]s (a peer
//! and its UDP socket bound on the host end of the veth) that the caller drives with
//! [`Link::pump`] or takes apart with [`Link::into_parts`].
//!
//! Order matters: subscribe to a feed only once its publisher is connected (ICE and
//! DTLS up), or Janus answers "No such feed" (the subscribe call retries that for a
//! short while).

pub mod api;
pub mod bench_target;
pub mod peer;
#[cfg(test)]
mod tests;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringbridge_bridge::proto::client::ClientConfig;
use serde_json::{Value, json};

use crate::netns;
pub use crate::netns::{link_exists, netns_exists};
pub use api::Session;
pub use peer::JanusPeer;

/// Port of Janus's HTTP API inside the namespace.
const HTTP_PORT: u16 = 8088;
/// How long one signalling step may wait for Janus's event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// VideoRoom error code for "No such feed".
const NO_SUCH_FEED: i64 = 428;

impl From<netns::NetnsError> for JanusError {
    fn from(e: netns::NetnsError) -> Self {
        match e {
            netns::NetnsError::Privileges(m) => JanusError::Privileges(m),
            other => JanusError::Netns(other.to_string()),
        }
    }
}

/// Why the Janus target could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JanusError {
    /// Not allowed to create namespaces or veth pairs (not root, or no CAP_SYS_ADMIN).
    #[error("insufficient privileges for the Janus target: {0}")]
    Privileges(String),
    /// The namespace or veth pair could not be set up.
    #[error("network namespace: {0}")]
    Netns(String),
    /// The `janus` binary or its plugins are missing.
    #[error("Janus is not installed ({0}); install the Debian package: apt-get install janus")]
    NotInstalled(String),
    /// Janus did not start or exited.
    #[error("Janus failed: {0}")]
    Process(String),
    /// An HTTP exchange with Janus failed.
    #[error("Janus HTTP API: {0}")]
    Http(String),
    /// Janus answered something we did not expect.
    #[error("Janus protocol: {0}")]
    Protocol(String),
    /// Janus or its VideoRoom plugin returned an error.
    #[error("Janus error {code}: {reason}")]
    Plugin {
        /// Janus or plugin error code (428: no such feed).
        code: i64,
        /// Janus's reason text.
        reason: String,
    },
    /// An expected event or connection did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The media client failed (SDP, DTLS, SRTP).
    #[error("media client: {0}")]
    Client(String),
    /// Local I/O (config files, sockets, /proc).
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// How to start Janus.
#[derive(Debug, Clone)]
pub struct JanusConfig {
    /// Core to pin Janus to (`taskset -c`), the same one the bridge gets; `None`
    /// leaves it unpinned.
    pub core: Option<usize>,
    /// The `janus` binary.
    pub janus_bin: PathBuf,
    /// Folder with Janus's `plugins/` and `transports/` (Debian:
    /// `/usr/lib/<multiarch>/janus`); `None` finds it.
    pub lib_dir: Option<PathBuf>,
    /// Janus debug level (0-7); 4 is Janus's default, lower is quieter.
    pub debug_level: u8,
    /// UDP port range Janus's ICE uses inside the namespace.
    pub rtp_ports: (u16, u16),
    /// How long Janus may take to answer its HTTP API after start.
    pub startup_timeout: Duration,
}

impl Default for JanusConfig {
    fn default() -> Self {
        Self {
            core: None,
            janus_bin: PathBuf::from("/usr/bin/janus"),
            lib_dir: None,
            debug_level: 3,
            rtp_ports: (20000, 40000),
            startup_timeout: Duration::from_secs(15),
        }
    }
}

/// A running Janus in its own network namespace. Stops it and deletes the namespace
/// on drop.
#[derive(Debug)]
pub struct JanusTarget {
    // Field order: the child is stopped in `Drop::drop`, then the namespace drops.
    child: Option<Child>,
    netns: netns::Netns,
    dir: PathBuf,
    api: SocketAddr,
    pid: u32,
}

impl JanusTarget {
    /// Creates the namespace, writes the configuration and starts Janus; returns
    /// once its HTTP API answers.
    pub fn start(cfg: &JanusConfig) -> Result<Self, JanusError> {
        if !cfg.janus_bin.exists() {
            return Err(JanusError::NotInstalled(format!(
                "{} not found",
                cfg.janus_bin.display()
            )));
        }
        let lib_dir = match &cfg.lib_dir {
            Some(d) => d.clone(),
            None => find_lib_dir()?,
        };
        let netns = netns::Netns::create()?;
        let dir = std::env::temp_dir().join(format!("ringbridge-{}", netns.name()));
        let mut target = Self {
            child: None,
            api: SocketAddr::from((netns.inner_addr(), HTTP_PORT)),
            netns,
            dir,
            pid: 0,
        };
        // From here on, `target`'s Drop cleans up on every error path.
        write_config(&target.dir, &lib_dir, cfg, target.netns.inner_addr())?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", target.netns.name()]);
        if let Some(core) = cfg.core {
            cmd.args(["taskset", "-c", &core.to_string()]);
        }
        let log = target.log_path();
        cmd.arg(&cfg.janus_bin)
            .arg("-F")
            .arg(&target.dir)
            .arg("-C")
            .arg(target.dir.join("janus.jcfg"))
            .args(["-N", "-o", "-L"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file, not a pipe: nobody reads a pipe during the run, and a full one
            // would block Janus.
            .stderr(std::fs::File::create(target.dir.join("janus.stderr"))?);
        let child = cmd
            .spawn()
            .map_err(|e| JanusError::Process(format!("cannot run `ip netns exec`: {e}")))?;
        // `ip netns exec` and `taskset` both exec, so the child is Janus itself.
        target.pid = child.id();
        target.child = Some(child);
        target.wait_ready(cfg.startup_timeout)?;
        Ok(target)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), JanusError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let stderr =
                    std::fs::read_to_string(self.dir.join("janus.stderr")).unwrap_or_default();
                return Err(JanusError::Process(format!(
                    "janus exited with {status} during start-up: {} {}",
                    stderr.trim(),
                    self.log_tail()
                )));
            }
            if let Ok((200, _)) = api::http(self.api, "GET", "/janus/info", None) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(JanusError::Timeout(format!(
                    "Janus's HTTP API at {} did not answer within {timeout:?}; {}",
                    self.api,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Janus's process id (for `/proc/<pid>/stat`).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The host end of the veth pair: bind client sockets here.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.netns.host_addr()
    }

    /// Janus's address inside the namespace.
    pub fn janus_addr(&self) -> Ipv4Addr {
        self.netns.inner_addr()
    }

    /// Janus's HTTP API (`http://<addr>/janus`).
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// The namespace's name.
    pub fn netns_name(&self) -> &str {
        self.netns.name()
    }

    /// The host end of the veth pair's interface name.
    pub fn host_interface(&self) -> String {
        format!(
            "rbj0-{}",
            self.netns.host_addr().octets().get(2).copied().unwrap_or(0)
        )
    }

    /// Janus's log file (kept until the target is dropped).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("janus.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "janus log tail:\n{}",
            lines[lines.len().saturating_sub(15)..].join("\n")
        )
    }

    /// Janus's CPU time so far (user + system, all threads), from `/proc/<pid>/stat`
    /// (clock-tick resolution, usually 10 ms).
    pub fn cpu_time(&self) -> Result<Duration, JanusError> {
        process_cpu_time(self.pid)
    }

    /// Creates a VideoRoom room for up to `publishers` publishers, Opus and VP8, and
    /// returns its id.
    pub fn create_room(&self, publishers: usize) -> Result<u64, JanusError> {
        let mut session = Session::open(self.api)?;
        let room: u64 = rand::random::<u32>().into();
        let created = session.request(json!({
            "request": "create",
            "room": room,
            "publishers": publishers.max(1),
            "audiocodec": "opus",
            "videocodec": "vp8",
            "bitrate": 0,
            "fir_freq": 0,
            "notify_joining": false,
            "audiolevel_event": false,
            "record": false,
        }))?;
        let result = match created.get("room").and_then(Value::as_u64) {
            Some(id) => Ok(id),
            None => Err(JanusError::Protocol(format!(
                "room create answered {created}"
            ))),
        };
        let _ = session.destroy();
        result
    }

    /// Joins `room` as a publisher with a peer whose UDP socket is at `local`, and
    /// negotiates. Returns the peer (not yet connected: drive its I/O), the feed id
    /// subscribers use, and the signalling session (keep it: dropping the session
    /// does not hang up, [`Session::destroy`] does).
    pub fn publish_peer(
        &self,
        room: u64,
        cfg: ClientConfig,
        local: SocketAddr,
    ) -> Result<(JanusPeer, u64, Session), JanusError> {
        let mut session = Session::open(self.api)?;
        let joined = session.request_async(
            json!({"request": "join", "room": room, "ptype": "publisher"}),
            None,
            EVENT_TIMEOUT,
        )?;
        let feed = joined
            .data
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| JanusError::Protocol(format!("join answered {}", joined.data)))?;
        let (mut peer, offer) = JanusPeer::publisher(cfg, local, Instant::now())?;
        let configured = session.request_async(
            json!({"request": "publish", "audio": cfg.audio, "video": cfg.video}),
            Some(json!({"type": "offer", "sdp": offer})),
            EVENT_TIMEOUT,
        )?;
        peer.handle_answer(configured.sdp("answer")?, Instant::now())?;
        Ok((peer, feed, session))
    }

    /// Subscribes to `feeds` (each with all its streams) in one PeerConnection whose
    /// UDP socket is at `local`. Janus offers; we answer. Retries "No such feed" for
    /// up to 5 s (a publisher whose DTLS just completed is not yet subscribable).
    pub fn subscribe_peer(
        &self,
        room: u64,
        feeds: &[u64],
        cfg: ClientConfig,
        local: SocketAddr,
    ) -> Result<(JanusPeer, Session), JanusError> {
        let mut session = Session::open(self.api)?;
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        let attached = loop {
            match session.request_async(
                json!({"request": "join", "room": room, "ptype": "subscriber", "streams": streams}),
                None,
                EVENT_TIMEOUT,
            ) {
                Err(JanusError::Plugin { code, .. })
                    if code == NO_SUCH_FEED && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        let (peer, answer) =
            JanusPeer::subscriber(cfg, attached.sdp("offer")?, local, Instant::now())?;
        let started = session.request_async(
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer})),
            EVENT_TIMEOUT,
        )?;
        if started.data.get("started").and_then(Value::as_str) != Some("ok") {
            return Err(JanusError::Protocol(format!(
                "start answered {}",
                started.data
            )));
        }
        Ok((peer, session))
    }

    /// [`JanusTarget::publish_peer`] with a fresh socket on the host end of the veth.
    pub fn publish(&self, room: u64, cfg: ClientConfig) -> Result<Publisher, JanusError> {
        let socket = self.bind()?;
        let (peer, feed, session) = self.publish_peer(room, cfg, socket.local_addr()?)?;
        Ok(Publisher {
            link: Link::new(peer, socket)?,
            feed,
            session,
        })
    }

    /// [`JanusTarget::subscribe_peer`] with a fresh socket on the host end of the veth.
    pub fn subscribe(
        &self,
        room: u64,
        feeds: &[u64],
        cfg: ClientConfig,
    ) -> Result<Subscriber, JanusError> {
        let socket = self.bind()?;
        let (peer, session) = self.subscribe_peer(room, feeds, cfg, socket.local_addr()?)?;
        Ok(Subscriber {
            link: Link::new(peer, socket)?,
            session,
        })
    }

    fn bind(&self) -> Result<UdpSocket, JanusError> {
        let socket = UdpSocket::bind((self.host_addr(), 0))?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    }

    /// Stops Janus and deletes the namespace now (also done on drop).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Janus shuts down cleanly on SIGTERM in about a second; insist after 3 s.
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill has no memory-safety preconditions; the pid is our child,
                // not yet reaped, so it cannot have been reused.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        self.netns.delete();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for JanusTarget {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A publishing connection to Janus.
#[derive(Debug)]
pub struct Publisher {
    /// The peer and its socket.
    pub link: Link,
    /// The VideoRoom feed id (what subscribers subscribe to).
    pub feed: u64,
    /// The signalling session.
    pub session: Session,
}

/// A subscribing connection to Janus.
#[derive(Debug)]
pub struct Subscriber {
    /// The peer and its socket.
    pub link: Link,
    /// The signalling session.
    pub session: Session,
}

/// A [`JanusPeer`] with its non-blocking UDP socket: a minimal driver for setup and
/// tests (the bench's batched engine can take the parts over).
#[derive(Debug)]
pub struct Link {
    /// The peer.
    pub peer: JanusPeer,
    /// Its socket, bound on the host end of the veth, non-blocking.
    pub socket: UdpSocket,
    remote: SocketAddr,
    buf: Vec<u8>,
}

impl Link {
    /// Joins a peer that has Janus's description with its socket.
    pub fn new(peer: JanusPeer, socket: UdpSocket) -> Result<Self, JanusError> {
        let remote = peer
            .remote_addr()
            .ok_or_else(|| JanusError::Protocol("Janus gave no candidate".into()))?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            peer,
            socket,
            remote,
            buf: vec![0u8; 2048],
        })
    }

    /// Janus's media address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Receives everything pending, runs timers, sends everything queued.
    pub fn pump(&mut self, now: Instant) -> Result<(), JanusError> {
        loop {
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let d = self.buf.get(..n).unwrap_or_default();
                    self.peer.handle_receive(now, from, d);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e.into()),
            }
        }
        if now >= self.peer.poll_timeout() {
            self.peer.handle_timeout(now);
        }
        while let Some(d) = self.peer.poll_transmit(now) {
            self.send(&d)?;
        }
        Ok(())
    }

    /// Sends one datagram to Janus.
    pub fn send(&self, datagram: &[u8]) -> Result<(), JanusError> {
        match self.socket.send_to(datagram, self.remote) {
            Ok(_) => Ok(()),
            // A full socket buffer drops the packet, as the network would.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The peer and the socket.
    pub fn into_parts(self) -> (JanusPeer, UdpSocket) {
        (self.peer, self.socket)
    }
}

/// Pumps `links` until every one is connected (ICE and DTLS up) or `timeout` passes.
pub fn connect(links: &mut [&mut Link], timeout: Duration) -> Result<(), JanusError> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        for link in links.iter_mut() {
            link.pump(now)?;
            if let Some(why) = link.peer.failure() {
                return Err(JanusError::Client(why.to_owned()));
            }
        }
        if links.iter().all(|l| l.peer.is_connected()) {
            return Ok(());
        }
        if now >= deadline {
            let states: Vec<String> = links
                .iter()
                .map(|l| {
                    format!(
                        "connected={} checks_answered={}",
                        l.peer.is_connected(),
                        l.peer.checks_answered()
                    )
                })
                .collect();
            return Err(JanusError::Timeout(format!(
                "ICE/DTLS with Janus not up within {timeout:?}: {}",
                states.join("; ")
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// CPU time (user + system, all threads) of process `pid`, from `/proc/<pid>/stat`.
pub fn process_cpu_time(pid: u32) -> Result<Duration, JanusError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| JanusError::Protocol(format!("/proc/{pid}/stat: no command field")))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64, JanusError> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| JanusError::Protocol(format!("/proc/{pid}/stat: bad field {i}")))
    };
    let total = ticks(14 - 3)? + ticks(15 - 3)?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|hz| *hz > 0)
        .unwrap_or(100);
    Ok(Duration::from_nanos(
        total.saturating_mul(1_000_000_000) / hz,
    ))
}

/// Finds Janus's library folder (with `plugins/` and `transports/`).
fn find_lib_dir() -> Result<PathBuf, JanusError> {
    let mut candidates = vec![
        PathBuf::from("/usr/lib/janus"),
        PathBuf::from("/opt/janus/lib/janus"),
        PathBuf::from("/usr/local/lib/janus"),
    ];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        for e in entries.flatten() {
            candidates.insert(0, e.path().join("janus"));
        }
    }
    candidates
        .into_iter()
        .find(|d| d.join("plugins/libjanus_videoroom.so").exists())
        .ok_or_else(|| {
            JanusError::NotInstalled("libjanus_videoroom.so not found under /usr/lib".into())
        })
}

/// Writes `janus.jcfg`, the HTTP transport's and the VideoRoom's configuration, and
/// plugin folders holding only the two modules we load.
fn write_config(
    dir: &Path,
    lib_dir: &Path,
    cfg: &JanusConfig,
    addr: Ipv4Addr,
) -> Result<(), JanusError> {
    let _ = std::fs::remove_dir_all(dir);
    for sub in ["plugins", "transports", "events", "loggers"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    for (sub, module) in [
        ("plugins", "libjanus_videoroom.so"),
        ("transports", "libjanus_http.so"),
    ] {
        let source = lib_dir.join(sub).join(module);
        if !source.exists() {
            return Err(JanusError::NotInstalled(format!(
                "{} not found",
                source.display()
            )));
        }
        std::os::unix::fs::symlink(&source, dir.join(sub).join(module))?;
    }
    let d = dir.display();
    let janus = format!(
        r#"general: {{
	configs_folder = "{d}"
	plugins_folder = "{d}/plugins"
	transports_folder = "{d}/transports"
	events_folder = "{d}/events"
	loggers_folder = "{d}/loggers"
	debug_level = {level}
	interface = "{addr}"
	session_timeout = 0
	server_name = "ringbridge-bench"
}}
certificates: {{
}}
media: {{
	ipv6 = false
	rtp_port_range = "{lo}-{hi}"
}}
nat: {{
	nice_debug = false
	full_trickle = false
	ice_lite = false
	ice_tcp = false
	ice_enforce_list = "{iface}"
}}
plugins: {{
}}
transports: {{
}}
events: {{
	broadcast = false
}}
loggers: {{
}}
"#,
        level = cfg.debug_level.min(7),
        lo = cfg.rtp_ports.0,
        hi = cfg.rtp_ports.1,
        iface = netns::INNER_IF,
    );
    let http = format!(
        r#"general: {{
	json = "compact"
	base_path = "/janus"
	http = true
	port = {HTTP_PORT}
	ip = "{addr}"
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
cors: {{
}}
"#
    );
    std::fs::write(dir.join("janus.jcfg"), janus)?;
    std::fs::write(dir.join("janus.transport.http.jcfg"), http)?;
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
    Ok(())
}
