//! End-to-end and interop test support for ringbridge.
//!
//! The pieces a test needs to exercise a real `ringbridge` process:
//!
//! - [`ringbridge_bin`]: the binary under test (`RINGBRIDGE_BIN`, or built once with
//!   `cargo build --release -p ringbridge-bridge --bin ringbridge`).
//! - [`Bridge`]: a bridge on free loopback ports with a temporary config, health-checked
//!   at start and killed on drop; mints tokens through `ringbridge token`.
//! - [`python`]: the interpreter of the interop venv (`RINGBRIDGE_PYTHON`, or
//!   `<workspace>/.venv-interop`, created and filled from `tests/interop/requirements.txt`
//!   on first use).
//! - [`AiortcClient`]: runs `tests/interop/client.py` with a deadline and parses the JSON
//!   line it prints.
//! - [`forge_token_room`] / [`forge_token_payload`]: tokens with a changed payload and the
//!   original signature, which the bridge must refuse.
//! - [`http_request`]: a tiny HTTP/1.1 client for loopback checks.
//! - [`netns`]: a bridge in a network namespace behind a veth pair, with loss,
//!   UDP dropped or a receiver's downlink capped.
//! - [`y4m`]: a fake camera file whose content costs an encoder a real bitrate.
//!
//! Everything binds and targets 127.0.0.1 only, or addresses inside a namespace the
//! test made ([`netns`]).

pub mod netns;
pub mod y4m;

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use ringbridge_devsupport::{HttpResponse, http_request, ringbridge_bin, workspace_root};
use serde_json::Value;

/// An SDP offer the bridge accepts (one audio sender, one video receive slot).
/// ICE and DTLS never complete: the endpoint lives until it leaves or its
/// consent expires, which is what tests of signalling and operator paths need.
pub fn inert_offer() -> String {
    let fp = (0..32)
        .map(|i| format!("{:02X}", i * 7))
        .collect::<Vec<_>>()
        .join(":");
    let m = |kind: &str, pt: u8, rtpmap: &str, mid: u8, dir: &str, ssrc: Option<u32>| {
        let mut s = format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\na={dir}\r\n\
             a=rtcp-mux\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n\
             a=fingerprint:sha-256 {fp}\r\na=setup:actpass\r\na=rtpmap:{pt} {rtpmap}\r\n"
        );
        if let Some(ssrc) = ssrc {
            s.push_str(&format!("a=ssrc:{ssrc} cname:op\r\n"));
        }
        s
    };
    format!(
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n{}{}",
        m("audio", 111, "opus/48000/2", 0, "sendonly", Some(4242)),
        m("video", 96, "VP8/90000", 1, "recvonly", None)
    )
}

/// The app secret every test bridge is configured with (unless overridden).
pub const TEST_APP_SECRET: &str = "ringbridge-interop-test-secret";

/// How long [`Bridge::start`] waits for `GET /about/health` to answer 200.
pub const BRIDGE_START_TIMEOUT: Duration = Duration::from_secs(30);

/// `tests/interop/`, where `client.py` and `requirements.txt` live.
pub fn interop_dir() -> PathBuf {
    workspace_root().join("tests").join("interop")
}

/// The Python interpreter of the interop environment.
///
/// `RINGBRIDGE_PYTHON` when set. Otherwise `<workspace>/.venv-interop/bin/python`, which
/// is created with `python3 -m venv` (`RINGBRIDGE_SYSTEM_PYTHON` names another
/// interpreter) and filled with `pip install -r tests/interop/requirements.txt`. The
/// install is skipped when `.venv-interop/.requirements.stamp` equals the requirements
/// file, and is guarded by an exclusive lock on `.venv-interop.lock`, so concurrent test
/// processes don't race. Panics when this fails.
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        if let Some(py) = std::env::var_os("RINGBRIDGE_PYTHON") {
            return PathBuf::from(py);
        }
        ensure_venv(&workspace_root().join(".venv-interop"))
            .unwrap_or_else(|e| panic!("cannot set up the interop venv: {e}"))
    })
    .clone()
}

fn ensure_venv(venv: &Path) -> io::Result<PathBuf> {
    let lock_path = venv.with_extension("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    lock.lock()?; // released when `lock` is dropped, or when the process dies

    let py = venv.join("bin").join("python");
    if !py.is_file() {
        let system = std::env::var("RINGBRIDGE_SYSTEM_PYTHON").unwrap_or("python3".to_owned());
        eprintln!(
            "ringbridge-tests: creating {} with {system}",
            venv.display()
        );
        run_checked(Command::new(&system).arg("-m").arg("venv").arg(venv))?;
    }
    let requirements = interop_dir().join("requirements.txt");
    let wanted = fs::read(&requirements)?;
    let stamp = venv.join(".requirements.stamp");
    if fs::read(&stamp).ok().as_deref() != Some(wanted.as_slice()) {
        eprintln!(
            "ringbridge-tests: pip install -r {}",
            requirements.display()
        );
        run_checked(
            Command::new(&py)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "-q",
                    "-r",
                ])
                .arg(&requirements),
        )?;
        fs::write(&stamp, &wanted)?;
    }
    drop(lock);
    Ok(py)
}

fn run_checked(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// A random 64-bit number (not cryptographic; for ports and names).
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"))
}

/// A random block of 100 UDP ports inside 20000-29999, as `[first, last]`.
pub fn random_media_range() -> [u16; 2] {
    let block = u16::try_from(random_u64() % 100).unwrap_or(0);
    let first = 20000 + block * 100;
    [first, first + 99]
}

fn unique_temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{:016x}",
        std::process::id(),
        random_u64()
    ));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Merges `overlay` into `base`: tables are merged key by key, other values replaced.
pub fn merge_toml(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_toml(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// The last `max` bytes of a file, lossily decoded (for failure messages).
pub fn file_tail(path: &Path, max: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// What [`Bridge::token_with`] asks `ringbridge token` for.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// The `room` claim.
    pub room: String,
    /// Owner (moderator) rights: `--owner`.
    pub owner: bool,
    /// Display name: `--name`.
    pub name: Option<String>,
    /// Lifetime such as `1h`: `--ttl`.
    pub ttl: Option<String>,
}

/// A running `ringbridge run` process on free loopback ports, killed on drop.
///
/// Its config, stdout and stderr live in a temporary folder that is removed on drop,
/// unless the test is panicking: then the folder is kept and the bridge's log tail is
/// printed.
#[derive(Debug)]
pub struct Bridge {
    child: Child,
    dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    public: SocketAddr,
    private: SocketAddr,
    media_range: [u16; 2],
    config: toml::Table,
}

impl Bridge {
    /// Starts a bridge with the test defaults merged with `overrides` (TOML text;
    /// tables merge key by key, e.g. `"[auth]\napp_secret = \"x\""`), and waits until
    /// `GET /about/health` on the private listener answers 200.
    ///
    /// Defaults: `server_id = "test"`, public and private listeners on free 127.0.0.1
    /// ports, `media.port_range` a random block of 100 ports in 20000-29999,
    /// `media.advertise = ["127.0.0.1"]`, `media.tcp_port = 0` (no ICE-TCP: its
    /// default port, 4443 on every address, would collide between bridges of
    /// parallel tests), `auth.app_secret = TEST_APP_SECRET`.
    /// Panics, with the bridge's log, if it exits or is not healthy within
    /// [`BRIDGE_START_TIMEOUT`].
    pub fn start(overrides: &str) -> Bridge {
        Self::start_with_env(overrides, &[])
    }

    /// [`Bridge::start`] with extra environment variables for the bridge process
    /// (e.g. `RINGBRIDGE_DISABLE_URING=1`).
    pub fn start_with_env(overrides: &str, env: &[(&str, &str)]) -> Bridge {
        let public_port = free_tcp_port();
        let mut private_port = free_tcp_port();
        while private_port == public_port {
            private_port = free_tcp_port();
        }
        let media_range = random_media_range();
        let defaults = format!(
            "server_id = \"test\"\n\
             [public]\nlisten = \"127.0.0.1:{public_port}\"\n\
             [private]\nlisten = \"127.0.0.1:{private_port}\"\n\
             [media]\nport_range = [{}, {}]\nadvertise = [\"127.0.0.1\"]\ntcp_port = 0\n\
             [auth]\napp_secret = \"{TEST_APP_SECRET}\"\n",
            media_range[0], media_range[1]
        );
        let mut config: toml::Table = defaults
            .parse()
            .unwrap_or_else(|e| panic!("default test config: {e}"));
        let overlay: toml::Table = overrides
            .parse()
            .unwrap_or_else(|e| panic!("config overrides are not TOML: {e}\n{overrides}"));
        merge_toml(&mut config, overlay);

        let listen = |section: &str, fallback: u16| -> SocketAddr {
            config
                .get(section)
                .and_then(|t| t.get("listen"))
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], fallback)))
        };
        let public = listen("public", public_port);
        let private = listen("private", private_port);
        let media_range = config
            .get("media")
            .and_then(|m| m.get("port_range"))
            .and_then(|r| r.as_array())
            .and_then(|r| {
                let lo = u16::try_from(r.first()?.as_integer()?).ok()?;
                let hi = u16::try_from(r.get(1)?.as_integer()?).ok()?;
                Some([lo, hi])
            })
            .unwrap_or(media_range);

        let dir = unique_temp_dir("ringbridge-test");
        let config_path = dir.join("ringbridge.toml");
        let text = toml::to_string(&config).unwrap_or_else(|e| panic!("config to TOML: {e}"));
        fs::write(&config_path, &text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
        let log_path = dir.join("bridge.log");
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let log2 = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone the log handle: {e}"));

        let bin = ringbridge_bin();
        let child = Command::new(&bin)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".to_owned()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));

        let mut bridge = Bridge {
            child,
            dir,
            config_path,
            log_path,
            public,
            private,
            media_range,
            config,
        };
        bridge.wait_healthy(BRIDGE_START_TIMEOUT);
        bridge
    }

    /// Kills the bridge with SIGKILL (no goodbye to anyone) and starts it again
    /// with the same configuration file, its log appended to the same file.
    /// Returns at once after the start, without waiting for health: the caller
    /// measures how soon it serves.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path.display()));
        let log2 = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone the log handle: {e}"));
        let bin = ringbridge_bin();
        self.child = Command::new(&bin)
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    }

    fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "ringbridge exited during start ({status}); config:\n{}\nlog:\n{}",
                    self.config_text(),
                    self.log_tail()
                );
            }
            let last = match http_request(self.private, "GET", "/about/health", &[], b"") {
                Ok(resp) if resp.status == 200 => return,
                Ok(resp) => format!("status {}", resp.status),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                panic!(
                    "ringbridge not healthy on {} after {timeout:?} (last: {last}); log:\n{}",
                    self.private,
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The public (signalling) listener's address.
    pub fn public_addr(&self) -> SocketAddr {
        self.public
    }

    /// The private (operator) listener's address.
    pub fn private_addr(&self) -> SocketAddr {
        self.private
    }

    /// `http://127.0.0.1:PORT` of the public listener.
    pub fn public_url(&self) -> String {
        format!("http://{}", self.public)
    }

    /// `http://127.0.0.1:PORT` of the private listener.
    pub fn private_url(&self) -> String {
        format!("http://{}", self.private)
    }

    /// The configured `media.port_range`.
    pub fn media_range(&self) -> [u16; 2] {
        self.media_range
    }

    /// The config file the bridge was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The effective configuration (defaults merged with the overrides).
    pub fn config(&self) -> &toml::Table {
        &self.config
    }

    /// The config as written to disk.
    pub fn config_text(&self) -> String {
        fs::read_to_string(&self.config_path).unwrap_or_default()
    }

    /// The file holding the bridge's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last 16 KiB of the bridge's log.
    pub fn log_tail(&self) -> String {
        file_tail(&self.log_path, 16 * 1024)
    }

    /// Waits up to `timeout` until the bridge hosts at least `n` endpoints
    /// (`participants` in its `/colibri/stats`), polling every 50 ms; panics
    /// with the last answer when it does not. For tests whose second client
    /// must join after the first (a room opened by its owner), in place of a
    /// fixed sleep that a loaded machine can outlast.
    pub fn wait_participants(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Ok(r) = http_request(self.private_addr(), "GET", "/colibri/stats", &[], b"") {
                let body = r.text();
                let count = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["participants"].as_u64());
                if count.is_some_and(|c| c >= n) {
                    return;
                }
                last = body;
            }
            assert!(
                Instant::now() < deadline,
                "the bridge did not reach {n} participants within {timeout:?}: {last}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the bridge process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The bridge's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the bridge to exit; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => return None,
            }
        }
    }

    /// A `Command` for the bridge binary with `--config` pointing at this bridge's file
    /// appended after `args`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ringbridge_bin());
        cmd.args(args).arg("--config").arg(&self.config_path);
        cmd
    }

    /// An owner token for `room` (`ringbridge token --room ROOM --owner`): owners
    /// may open a room, members may not (issue 5), so this is the token that joins
    /// whatever the order of the clients.
    pub fn token(&self, room: &str) -> String {
        self.token_with(&TokenRequest {
            room: room.to_owned(),
            owner: true,
            ..TokenRequest::default()
        })
    }

    /// A member token for `room` (`ringbridge token --room ROOM`): it may join a
    /// room an owner opened, not open one.
    pub fn member_token(&self, room: &str) -> String {
        self.token_with(&TokenRequest {
            room: room.to_owned(),
            ..TokenRequest::default()
        })
    }

    /// A token minted by `ringbridge token` with this bridge's config. Panics if the
    /// subcommand fails or prints no token.
    pub fn token_with(&self, req: &TokenRequest) -> String {
        let mut args: Vec<&str> = vec!["token", "--room", &req.room];
        if req.owner {
            args.push("--owner");
        }
        if let Some(name) = &req.name {
            args.extend(["--name", name]);
        }
        if let Some(ttl) = &req.ttl {
            args.extend(["--ttl", ttl]);
        }
        let out = self
            .command(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run ringbridge token: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ringbridge {args:?} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let token = stdout
            .lines()
            .map(str::trim)
            .rfind(|l| l.split('.').count() == 3)
            .unwrap_or_else(|| panic!("ringbridge {args:?} printed no JWT:\n{stdout}"));
        token.to_owned()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- ringbridge log ({}), last 16 KiB ----\n{}\n---- end of ringbridge log ----",
                self.log_path.display(),
                self.log_tail()
            );
        } else if std::env::var_os(KEEP_DIR_ENV).is_some() {
            eprintln!("kept the bridge's folder: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Set (to anything) to keep a passing test's bridge folder (its log and
/// configuration) for a look afterwards; a failing test's is always kept.
pub const KEEP_DIR_ENV: &str = "RINGBRIDGE_KEEP_TEST_DIR";

/// A token for `room` signed with [`TEST_APP_SECRET`] (HS256, valid 1 h) with
/// `context.user.id = user`, affiliation `owner` or `member`, and, when given,
/// `context.features`. Extra claims in `extra` are merged in last.
pub fn test_token(
    room: &str,
    user: &str,
    owner: bool,
    features: Option<Value>,
    extra: Option<Value>,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut context = serde_json::json!({
        "user": {"id": user, "name": user, "affiliation": if owner { "owner" } else { "member" }}
    });
    if let Some(f) = features {
        context["features"] = f;
    }
    let mut claims = serde_json::json!({
        "iss": "ringbridge", "aud": "ringbridge", "sub": "*", "room": room,
        "iat": now, "nbf": now, "exp": now + 3600, "context": context,
    });
    if let (Some(obj), Some(Value::Object(more))) = (claims.as_object_mut(), extra) {
        obj.extend(more);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_APP_SECRET.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("cannot sign a test token: {e}"))
}

/// Decodes a JWT's payload, lets `edit` change it, and re-encodes it with the original
/// header and signature: a token whose signature no longer matches.
pub fn forge_token_payload(
    token: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    let payload = URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .unwrap_or_else(|e| panic!("JWT payload is not base64url: {e}"));
    let mut claims: serde_json::Map<String, Value> = serde_json::from_slice(&payload)
        .unwrap_or_else(|e| panic!("JWT payload is not a JSON object: {e}"));
    edit(&mut claims);
    let payload = serde_json::to_vec(&claims).unwrap_or_else(|e| panic!("claims to JSON: {e}"));
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload),
        parts[2]
    )
}

/// [`forge_token_payload`] that sets the `room` claim to `room`.
pub fn forge_token_room(token: &str, room: &str) -> String {
    forge_token_payload(token, |claims| {
        claims.insert("room".to_owned(), Value::String(room.to_owned()));
    })
}

/// The claims of a JWT, decoded without checking anything.
pub fn token_claims(token: &str) -> serde_json::Map<String, Value> {
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWT: {token}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .unwrap_or_else(|e| panic!("JWT payload is not base64url: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT payload is not JSON: {e}"))
}

/// The `--timeout` every [`AiortcClient`] is given: client.py gives up by itself after
/// this many seconds and still prints its JSON, so wait deadlines (see
/// [`RunningClient::wait`]) should be longer. Pass `--timeout N` in
/// [`AiortcClient::args`] to change it (the last value wins).
pub const CLIENT_SELF_TIMEOUT_S: u32 = 50;

/// A run of `tests/interop/client.py` to configure and start.
#[derive(Debug, Clone)]
pub struct AiortcClient {
    label: String,
    args: Vec<String>,
}

impl AiortcClient {
    /// A client joining `room` on the bridge at `url` (e.g. [`Bridge::public_url`]) with
    /// `token` as Bearer. `label` names it in logs.
    pub fn new(label: &str, url: &str, room: &str, token: &str) -> AiortcClient {
        AiortcClient {
            label: label.to_owned(),
            args: vec![
                "--url".into(),
                url.into(),
                "--room".into(),
                room.into(),
                "--token".into(),
                token.into(),
                "--verbose".into(),
                "--timeout".into(),
                CLIENT_SELF_TIMEOUT_S.to_string(),
            ],
        }
    }

    /// Adds raw client.py arguments (e.g. `["--duration", "6"]`, `["--colibri"]`).
    pub fn args<I, S>(mut self, args: I) -> AiortcClient
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Starts the client process (stdout and stderr are collected in the background).
    pub fn spawn(&self) -> RunningClient {
        let py = python();
        let script = interop_dir().join("client.py");
        let mut child = Command::new(&py)
            .arg("-u")
            .arg(&script)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} {}: {e}", py.display(), script.display()));
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        RunningClient {
            label: self.label.clone(),
            child,
            stdout,
            stderr,
        }
    }

    /// [`spawn`](Self::spawn) and [`RunningClient::wait`].
    pub fn run(&self, timeout: Duration) -> ClientOutcome {
        self.spawn().wait(timeout)
    }
}

fn drain<R: Read + Send + 'static>(mut r: R) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// A started client.py process; killed on drop if still running.
#[derive(Debug)]
pub struct RunningClient {
    label: String,
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

impl RunningClient {
    /// Waits for the client to exit, killing it after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> ClientOutcome {
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                Ok(None) => {
                    timed_out = true;
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
                Err(_) => break None,
            }
        };
        let stdout = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let json = stdout.lines().rev().find_map(|l| {
            serde_json::from_str::<Value>(l.trim())
                .ok()
                .filter(Value::is_object)
        });
        ClientOutcome {
            label: self.label.clone(),
            status,
            timed_out,
            json,
            stdout,
            stderr,
        }
    }
}

impl Drop for RunningClient {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a client.py run produced.
#[derive(Debug, Clone)]
pub struct ClientOutcome {
    /// The label given to [`AiortcClient::new`].
    pub label: String,
    /// The exit status (None if it could not be read).
    pub status: Option<ExitStatus>,
    /// Whether the run was killed at its deadline.
    pub timed_out: bool,
    /// The last JSON object printed on stdout.
    pub json: Option<Value>,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl ClientOutcome {
    /// The JSON result; panics with [`describe`](Self::describe) if there is none.
    pub fn json(&self) -> &Value {
        self.json
            .as_ref()
            .unwrap_or_else(|| panic!("client printed no JSON result\n{}", self.describe()))
    }

    /// A numeric field of the JSON result (0 when missing).
    pub fn num(&self, key: &str) -> f64 {
        self.json().get(key).and_then(Value::as_f64).unwrap_or(0.0)
    }

    /// A string field of the JSON result.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.json.as_ref()?.get(key)?.as_str()
    }

    /// The HTTP status of the signalling POST, if it got that far.
    pub fn http_status(&self) -> Option<u64> {
        self.json.as_ref()?.get("status")?.as_u64()
    }

    /// Label, exit status, JSON line and the stderr tail: for assertion messages.
    pub fn describe(&self) -> String {
        let tail_start = self.stderr.len().saturating_sub(8 * 1024);
        let tail_start = (tail_start..self.stderr.len())
            .find(|&i| self.stderr.is_char_boundary(i))
            .unwrap_or(self.stderr.len());
        format!(
            "client {}: exit {:?}{}\njson: {}\n--- stderr (tail) ---\n{}\n--- end ---",
            self.label,
            self.status,
            if self.timed_out {
                " (killed at deadline)"
            } else {
                ""
            },
            self.json
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_else(|| format!("<none>; stdout: {}", self.stdout)),
            &self.stderr[tail_start..]
        )
    }
}

/// Debian's Chromium, as DESIGN.md's "Headless Chromium" runs it.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The browser scripts' folder (`tests/browser`), after checking Chromium is
/// installed and running `npm ci` there when playwright-core is missing (under
/// a file lock, so parallel tests and test binaries do it once).
pub fn browser_dir() -> PathBuf {
    let dir = workspace_root().join("tests").join("browser");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does)"
    );
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".npm-ci.lock"))
        .unwrap_or_else(|e| panic!("cannot open the npm lock: {e}"));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock the npm lock: {e}"));
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run npm ci in {}: {e}", dir.display()));
        assert!(
            out.status.success(),
            "npm ci failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

/// Runs `node tests/browser/SCRIPT CONFIG` (the config written as JSON next to
/// the bridge's files in `scratch`), killed after `timeout`; returns the last
/// JSON line it printed. Its stderr is echoed. Panics when it printed no JSON.
pub fn run_browser_script(
    script: &str,
    config: &Value,
    scratch: &Path,
    timeout: Duration,
) -> Value {
    let dir = browser_dir();
    let path = scratch.join(format!("{script}.json"));
    fs::write(&path, config.to_string())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let mut child = Command::new("node")
        .arg(dir.join(script))
        .arg(&path)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
        }
    }
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    eprint!("{stderr}");
    let result = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .unwrap_or_else(|| panic!("{script} printed no JSON:\n{stdout}\n{stderr}"));
    // Beside its configuration, for reading a kept folder (see KEEP_DIR_ENV).
    let _ = fs::write(
        scratch.join(format!("{script}.result.json")),
        result.to_string(),
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_token_keeps_header_and_signature() {
        let claims = serde_json::json!({"iss": "ringbridge", "room": "interop", "exp": 1});
        let token = format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let forged = forge_token_room(&token, "other");
        let (a, b) = (
            token.split('.').collect::<Vec<_>>(),
            forged.split('.').collect::<Vec<_>>(),
        );
        assert_eq!(a[0], b[0]);
        assert_eq!(a[2], b[2]);
        assert_ne!(a[1], b[1]);
        assert_eq!(token_claims(&forged)["room"], "other");
        assert_eq!(token_claims(&forged)["iss"], "ringbridge");
    }

    #[test]
    fn media_range_is_inside_20000_29999() {
        for _ in 0..1000 {
            let [lo, hi] = random_media_range();
            assert!((20000..=29900).contains(&lo) && hi == lo + 99, "{lo}-{hi}");
        }
    }

    #[test]
    fn toml_overrides_merge_tables() {
        let mut base: toml::Table =
            "[auth]\napp_secret = \"a\"\napp_id = \"x\"\n[media]\nio = \"auto\""
                .parse()
                .expect("base");
        let overlay: toml::Table = "[auth]\napp_secret = \"b\"\n[drain]\nx = 1"
            .parse()
            .expect("overlay");
        merge_toml(&mut base, overlay);
        assert_eq!(base["auth"]["app_secret"].as_str(), Some("b"));
        assert_eq!(base["auth"]["app_id"].as_str(), Some("x"));
        assert_eq!(base["media"]["io"].as_str(), Some("auto"));
        assert_eq!(base["drain"]["x"].as_integer(), Some(1));
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_tcp_port();
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
