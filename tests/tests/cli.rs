//! The `ringbridge` binary's command line: bad configuration is refused with the
//! key's name, a configuration without a key is refused unless in dev mode, dev
//! mode hands out its join link without printing a token to a non-terminal,
//! `token --link` and `config init-secret`, and tokens it mints are accepted by a
//! bridge with the same secret.

use std::process::Command;

use ringbridge_tests::{Bridge, ringbridge_bin, token_claims};

fn run_with_config(text: &str) -> (bool, String) {
    let dir =
        std::env::temp_dir().join(format!("ringbridge-cli-{}", ringbridge_tests::random_u64()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.toml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(ringbridge_bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("run ringbridge");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_is_refused_at_start_naming_the_key() {
    let cases = [
        ("[media]\nport_range = [20000, 10000]\n", "media.port_range"),
        ("[media]\nportrange = [1, 2]\n", "portrange"),
        ("[auth]\napp_secret = \"short\"\n", "auth.app_secret"),
        (
            "[public]\nlisten = \"not an address\"\n",
            "public.listen: invalid socket address \"not an address\": expected IP:PORT",
        ),
        (
            "[public]\nlisten = \"127.0.0.1:8080\"\n",
            "private.listen: 127.0.0.1:8080 collides with public.listen",
        ),
    ];
    for (text, key) in cases {
        let (ok, stderr) = run_with_config(text);
        assert!(!ok, "{text:?} must be refused");
        assert!(
            stderr.contains(key),
            "error for {text:?} names {key}: {stderr}"
        );
    }
}

#[test]
fn token_subcommand_needs_a_secret_and_mints_the_requested_claims() {
    let out = Command::new(ringbridge_bin())
        .args(["token", "--room", "x"])
        .output()
        .expect("run ringbridge token");
    assert!(!out.status.success(), "no secret configured: refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.app_secret"));

    let bridge = Bridge::start("");
    let out = bridge
        .command(&[
            "token", "--room", "standup", "--owner", "--name", "Ada", "--ttl", "2h",
        ])
        .output()
        .expect("run ringbridge token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwt = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let claims = token_claims(&jwt);
    assert_eq!(claims["room"], "standup");
    assert_eq!(claims["context"]["user"]["name"], "Ada");
    assert_eq!(claims["context"]["user"]["affiliation"], "owner");
    let exp = claims["exp"].as_u64().expect("exp");
    let iat = claims["iat"].as_u64().expect("iat");
    assert_eq!(exp - iat, 7200);
}

/// A temporary folder removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "ringbridge-cli-{name}-{:x}",
            ringbridge_tests::random_u64()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> std::path::PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `run` process started here (not through `Bridge`, which always passes a
/// configured secret), killed on drop.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn listeners() -> (u16, u16) {
    let public = ringbridge_tests::free_tcp_port();
    let mut private = ringbridge_tests::free_tcp_port();
    while private == public {
        private = ringbridge_tests::free_tcp_port();
    }
    (public, private)
}

fn keyless_config(public: u16, private: u16) -> String {
    let [lo, hi] = ringbridge_tests::random_media_range();
    format!(
        "[public]\nlisten = \"127.0.0.1:{public}\"\n[private]\nlisten = \"127.0.0.1:{private}\"\n\
         [media]\nport_range = [{lo}, {hi}]\nadvertise = [\"127.0.0.1\"]\ntcp_port = 0\n"
    )
}

fn wait_healthy(child: &mut std::process::Child, private: u16, log: &std::path::Path) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], private));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "exited during start ({status}): {}",
                ringbridge_tests::file_tail(log, 4000)
            );
        }
        if ringbridge_tests::http_request(addr, "GET", "/about/health", &[], b"")
            .is_ok_and(|r| r.status == 200)
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("not healthy: {}", ringbridge_tests::file_tail(log, 4000));
}

#[test]
fn a_config_without_a_key_refuses_to_start_naming_auth_app_secret() {
    let dir = Scratch::new("nokey");
    let (public, private) = listeners();
    let path = dir.file("nokey.toml", &keyless_config(public, private));
    let out = Command::new(ringbridge_bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("run ringbridge");
    assert!(!out.status.success(), "a keyless config must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth.app_secret"), "{stderr}");
    assert!(
        stderr.contains("--dev"),
        "the error says how to start anyway: {stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout, no token");
    // `config check` says the same.
    let out = Command::new(ringbridge_bin())
        .args(["config", "check"])
        .arg(&path)
        .output()
        .expect("config check");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.app_secret"));
}

#[test]
fn dev_mode_without_a_terminal_writes_the_link_to_a_private_file() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = Scratch::new("dev");
    let (public, private) = listeners();
    let path = dir.file("dev.toml", &keyless_config(public, private));
    let log = dir.0.join("stdout.log");
    let runtime = dir.0.join("runtime");
    std::fs::create_dir_all(&runtime).expect("mkdir");
    let mut child = Running(
        Command::new(ringbridge_bin())
            .args(["run", "--dev", "--config"])
            .arg(&path)
            .env("RUNTIME_DIRECTORY", &runtime)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start ringbridge run --dev"),
    );
    wait_healthy(&mut child.0, private, &log);
    // The banner lands on stdout right after the listeners are up.
    let mut stdout = String::new();
    for _ in 0..50 {
        stdout = std::fs::read_to_string(&log).expect("stdout");
        if stdout.contains("readable only by you") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(stdout.contains("dev mode"), "{stdout}");
    assert!(
        !stdout.contains("jwt="),
        "no token on a non-terminal stdout: {stdout}"
    );
    assert!(
        !stdout.contains("eyJ"),
        "no token on a non-terminal stdout: {stdout}"
    );
    let link_file = std::fs::read_dir(&runtime)
        .expect("runtime dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ringbridge-dev-link."))
        })
        .expect("a link file in $RUNTIME_DIRECTORY");
    assert!(
        stdout.contains(&link_file.display().to_string()),
        "stdout names the file: {stdout}"
    );
    let mode = std::fs::metadata(&link_file)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "only the user may read the link");
    let link = std::fs::read_to_string(&link_file).expect("link");
    let prefix = format!("http://127.0.0.1:{public}/demo#jwt=");
    let jwt = link
        .trim()
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{link:?} starts with {prefix}"));
    let claims = token_claims(jwt);
    assert_eq!(claims["room"], "demo");
    assert_eq!(claims["context"]["user"]["affiliation"], "owner");
    // The token opens the room on this bridge.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], public));
    let auth = format!("Bearer {jwt}");
    let resp = ringbridge_tests::http_request(
        addr,
        "POST",
        "/conferences/demo/endpoints",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/sdp"),
        ],
        b"not an offer",
    )
    .expect("join");
    assert_eq!(
        resp.status,
        400,
        "token accepted, offer refused: {}",
        resp.text()
    );
    // A clean stop removes the file.
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.0.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!link_file.exists(), "the link file is removed at exit");
}

#[test]
fn token_link_opens_the_room_page() {
    let bridge = Bridge::start("");
    let out = bridge
        .command(&["token", "--room", "standup", "--link"])
        .output()
        .expect("token --link");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let prefix = format!("{}/standup#jwt=", bridge.public_url());
    let jwt = link
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{link} starts with {prefix}"));
    assert_eq!(token_claims(jwt)["room"], "standup");

    // public.url (behind a proxy, with a path prefix) is what the link uses.
    let dir = Scratch::new("link");
    let cfg = dir.file(
        "proxied.toml",
        "[public]\nurl = \"https://meet.example.com/bridge/\"\n\
         [auth]\napp_secret = \"0123456789abcdef0123\"\n",
    );
    let out = Command::new(ringbridge_bin())
        .args(["token", "--room", "Team Room", "--link", "--config"])
        .arg(&cfg)
        .output()
        .expect("token --link");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        link.starts_with("https://meet.example.com/bridge/Team%20Room#jwt=ey"),
        "{link}"
    );
    // A token for any room opens no page.
    let out = Command::new(ringbridge_bin())
        .args(["token", "--room", "*", "--link", "--config"])
        .arg(&cfg)
        .output()
        .expect("token --link");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--link needs a room"));
}

#[test]
fn init_secret_makes_the_shipped_config_start_and_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = Scratch::new("secret");
    let out = Command::new(ringbridge_bin())
        .args(["config", "default"])
        .output()
        .expect("config default");
    let path = dir.file("config.toml", &String::from_utf8_lossy(&out.stdout));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let check = || {
        Command::new(ringbridge_bin())
            .args(["config", "check"])
            .arg(&path)
            .output()
            .expect("config check")
            .status
            .success()
    };
    assert!(!check(), "the default config has no key");

    let out = Command::new(ringbridge_bin())
        .args(["config", "init-secret"])
        .arg(&path)
        .output()
        .expect("init-secret");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).expect("read");
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("app_secret = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("an app_secret line")
        .to_owned();
    assert!(secret.len() >= 40, "{secret}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&secret),
        "the secret is never printed"
    );
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    assert!(check(), "the file now has a key");

    // A second run keeps the secret.
    let out = Command::new(ringbridge_bin())
        .args(["config", "init-secret"])
        .arg(&path)
        .output()
        .expect("init-secret");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("unchanged"));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
}

#[test]
fn dev_mode_on_a_terminal_prints_the_link() {
    let dir = Scratch::new("tty");
    let (public, private) = listeners();
    let path = dir.file("dev.toml", &keyless_config(public, private));
    let log = dir.0.join("typescript.log");
    let runtime = dir.0.join("runtime");
    std::fs::create_dir_all(&runtime).expect("mkdir");
    // `script` gives the bridge a pseudo-terminal as stdout.
    let cmd = format!(
        "{} run --dev --config {}",
        ringbridge_bin().display(),
        path.display()
    );
    let mut child = Running(
        Command::new("script")
            .args(["-q", "-e", "-c", &cmd])
            .arg(&log)
            .env("RUNTIME_DIRECTORY", &runtime)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("script"),
    );
    wait_healthy(&mut child.0, private, &log);
    let prefix = format!("http://127.0.0.1:{public}/demo#jwt=");
    let mut out = String::new();
    for _ in 0..50 {
        out = std::fs::read_to_string(&log).unwrap_or_default();
        if out.contains(&prefix) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let jwt = out
        .split(&prefix)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the link on the terminal: {out}"));
    assert_eq!(token_claims(jwt)["room"], "demo");
    assert!(out.contains("curl -i"), "{out}");
    assert!(
        std::fs::read_dir(&runtime).expect("dir").next().is_none(),
        "no link file when the terminal shows it"
    );
}
