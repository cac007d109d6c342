//! A bridge in a network namespace behind a veth pair, for tests that impair
//! the link between browsers on the host and the bridge: loss with nftables
//! (`numgen random`; this kernel has no netem), UDP dropped entirely, or one
//! receiver's downlink capped with `tc ... tbf`.
//!
//! Layout: namespace [`NetnsSpec::name`] holds [`NetnsSpec::inner_if`] with
//! [`NetnsSpec::bridge_addr`]/30 (the bridge's listeners, media bind and
//! advertise); the host end [`NetnsSpec::host_if`] has [`NetnsSpec::host_addr`]/30,
//! which is Chromium's host candidate. Every test that uses this picks its own
//! names and /30 (the bench uses 10.77.0.0/16, the driver tests
//! 192.168.250.0/24) and holds [`NetnsSpec::lock`] while the namespace lives,
//! since the names are fixed (a crashed run's leftovers are removed by name).

use std::fs::{self, File};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{TEST_APP_SECRET, http_request, ringbridge_bin};

/// Names and addresses of one test's namespace.
#[derive(Debug, Clone, Copy)]
pub struct NetnsSpec {
    /// The namespace.
    pub name: &'static str,
    /// Host end of the veth pair.
    pub host_if: &'static str,
    /// Namespace end of the veth pair.
    pub inner_if: &'static str,
    /// Host address (Chromium's candidate), inside the test's own /30.
    pub host_addr: &'static str,
    /// The bridge's address inside the namespace, in the same /30.
    pub bridge_addr: &'static str,
    /// `media.port_range`; loss rules match exactly these ports.
    pub media_ports: [u16; 2],
    /// The bridge's public (signalling) port.
    pub public_port: u16,
    /// The bridge's private (operator) port.
    pub private_port: u16,
}

impl NetnsSpec {
    /// The nftables table this spec's rules live in (inside the namespace).
    pub fn nft_table(&self) -> &'static str {
        self.name
    }

    /// Takes the lock that keeps one user of these names at a time, across
    /// test processes (a file lock in the temporary folder); released on drop.
    pub fn lock(&self) -> File {
        let lock =
            File::create(std::env::temp_dir().join(format!("ringbridge-{}.lock", self.name)))
                .unwrap_or_else(|e| panic!("lock file: {e}"));
        lock.lock().unwrap_or_else(|e| panic!("lock: {e}"));
        lock
    }

    /// The public (signalling) URL of a bridge started with [`NsBridge::start`].
    pub fn public_url(&self) -> String {
        format!("http://{}:{}", self.bridge_addr, self.public_port)
    }
}

/// Why tests that need namespaces cannot run here (a skip, not a failure):
/// not root, or `ip`, `nft` or `tc` missing.
pub fn unsupported() -> Option<String> {
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Some(format!(
            "not root (effective uid {uid:?}): network namespaces, nftables and tc need root"
        ));
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables"), ("tc", "iproute2")] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!("`{tool}` is missing (Debian package {package})"));
        }
    }
    None
}

/// Runs `cmd args`; its stdout, or an error naming the command and its stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespace and its veth pair; removes both (and the nft table and tc
/// qdiscs, which live in the namespace) on drop.
#[derive(Debug)]
pub struct Netns {
    spec: NetnsSpec,
}

impl Netns {
    /// Removes what a crashed run may have left (by name), then creates the
    /// namespace and the veth pair. Panics when a step fails.
    pub fn create(spec: NetnsSpec) -> Netns {
        remove_leftovers(&spec);
        let ns = Netns { spec };
        let host = format!("{}/30", spec.host_addr);
        let inner = format!("{}/30", spec.bridge_addr);
        let steps: [&[&str]; 7] = [
            &["netns", "add", spec.name],
            &[
                "link",
                "add",
                spec.host_if,
                "type",
                "veth",
                "peer",
                "name",
                spec.inner_if,
                "netns",
                spec.name,
            ],
            &["addr", "add", &host, "dev", spec.host_if],
            &["link", "set", spec.host_if, "up"],
            &["-n", spec.name, "addr", "add", &inner, "dev", spec.inner_if],
            &["-n", spec.name, "link", "set", spec.inner_if, "up"],
            &["-n", spec.name, "link", "set", "lo", "up"],
        ];
        for args in steps {
            run("ip", args).unwrap_or_else(|e| panic!("network namespace setup: {e}"));
        }
        ns
    }

    /// Runs `cmd args` inside the namespace (`ip netns exec`).
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", self.spec.name, cmd];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// The argv that runs `cmd` inside the namespace, for a child that applies
    /// an impairment itself at the right moment (e.g. a browser script).
    pub fn exec_argv(&self, cmd: &str) -> Vec<String> {
        ["ip", "netns", "exec", self.spec.name, cmd]
            .map(str::to_owned)
            .to_vec()
    }

    /// `nft -f -` inside the namespace, reading `script` on stdin.
    pub fn nft(&self, script: &str) -> Result<(), String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.spec.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run nft: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| format!("nft stdin: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft -f failed: {}\n{script}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Drops `percent`% of the datagrams on the media ports in each direction
    /// (DESIGN.md "Impairment"), with counters.
    pub fn drop_media(&self, percent: u32) {
        let [lo, hi] = self.spec.media_ports;
        let t = self.spec.nft_table();
        self.nft(&format!(
            "add table inet {t}\n\
             add chain inet {t} in {{ type filter hook input priority 0; }}\n\
             add chain inet {t} out {{ type filter hook output priority 0; }}\n\
             add rule inet {t} in udp dport {lo}-{hi} counter\n\
             add rule inet {t} in udp dport {lo}-{hi} numgen random mod 100 < {percent} counter drop\n\
             add rule inet {t} out udp sport {lo}-{hi} counter\n\
             add rule inet {t} out udp sport {lo}-{hi} numgen random mod 100 < {percent} counter drop\n"
        ))
        .unwrap_or_else(|e| panic!("loss rules: {e}"));
    }

    /// Drops every UDP datagram on the namespace's veth, both ways, with
    /// counters (the same layout as [`Netns::drop_media`]'s: all, dropped).
    pub fn drop_udp(&self) {
        let t = self.spec.nft_table();
        let inner = self.spec.inner_if;
        self.nft(&format!(
            "add table inet {t}\n\
             add chain inet {t} in {{ type filter hook input priority 0; }}\n\
             add chain inet {t} out {{ type filter hook output priority 0; }}\n\
             add rule inet {t} in iifname {inner} meta l4proto udp counter\n\
             add rule inet {t} in iifname {inner} meta l4proto udp counter drop\n\
             add rule inet {t} out oifname {inner} meta l4proto udp counter\n\
             add rule inet {t} out oifname {inner} meta l4proto udp counter drop\n"
        ))
        .unwrap_or_else(|e| panic!("UDP drop rules: {e}"));
    }

    /// The `tc` argv lists (each to run inside the namespace) that cap what
    /// the bridge sends to UDP port `dport` on the host (a number, or a
    /// placeholder the caller replaces once it knows the port) at `kbit`
    /// kbit/s with a token bucket (`tbf`, 200 ms of queue, then drops),
    /// leaving every other datagram unshaped. This kernel has only `htb`,
    /// `tbf` and `pfifo` among the qdiscs and `u32` among the classifiers:
    /// an `htb` root without a default class (unclassified traffic goes out
    /// directly, unshaped), one class for the capped port that a `u32` filter
    /// selects, and the `tbf` as that class's queue.
    pub fn cap_dport_commands(&self, dport: &str, kbit: u32) -> Vec<Vec<String>> {
        let dev = self.spec.inner_if;
        let rate = format!("{kbit}kbit");
        let cmds: [&[&str]; 4] = [
            &[
                "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb",
            ],
            &[
                "class", "replace", "dev", dev, "parent", "1:", "classid", "1:20", "htb", "rate",
                "10gbit",
            ],
            &[
                "qdisc", "replace", "dev", dev, "parent", "1:20", "handle", "30:", "tbf", "rate",
                &rate, "burst", "16kb", "latency", "200ms",
            ],
            &[
                "filter", "replace", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1",
                "u32", "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", dport,
                "0xffff", "flowid", "1:20",
            ],
        ];
        cmds.iter()
            .map(|c| {
                let mut argv = self.exec_argv("tc");
                argv.extend(c.iter().map(|s| (*s).to_owned()));
                argv
            })
            .collect()
    }

    /// `tc -s qdisc` of the namespace's veth (what the cap sent and dropped).
    pub fn qdisc_stats(&self) -> String {
        self.exec("tc", &["-s", "qdisc", "show", "dev", self.spec.inner_if])
            .unwrap_or_else(|e| e)
    }

    /// `(seen, dropped)` packets per direction (`in`, `out`) from the counters
    /// of [`Netns::drop_media`] or [`Netns::drop_udp`]; `None` without those rules.
    pub fn counters(&self) -> Option<Value> {
        let text = self
            .exec("nft", &["list", "table", "inet", self.spec.nft_table()])
            .ok()?;
        // Per chain: the first counter is every datagram, the second the dropped ones.
        let mut chains = serde_json::Map::new();
        let mut chain = String::new();
        let mut counts: Vec<u64> = Vec::new();
        let mut flush = |chain: &str, counts: &mut Vec<u64>| {
            if let [seen, dropped, ..] = counts[..] {
                let percent = if seen == 0 {
                    0.0
                } else {
                    100.0 * dropped as f64 / seen as f64
                };
                chains.insert(
                    chain.to_owned(),
                    json!({"seen": seen, "dropped": dropped, "percent": percent}),
                );
            }
            counts.clear();
        };
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix("chain ") {
                flush(&chain, &mut counts);
                chain = name.trim_end_matches(" {").to_owned();
            } else if let Some(n) = line
                .split("counter packets ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
            {
                counts.push(n);
            }
        }
        flush(&chain, &mut counts);
        Some(Value::Object(chains))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove_leftovers(&self.spec);
    }
}

/// Kills what still runs in the namespace, deletes its nft table, the
/// namespace and the host veth end, whichever exist.
fn remove_leftovers(spec: &NetnsSpec) {
    if let Ok(pids) = run("ip", &["netns", "pids", spec.name]) {
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-KILL", pid]);
        }
        let _ = run(
            "ip",
            &[
                "netns",
                "exec",
                spec.name,
                "nft",
                "delete",
                "table",
                "inet",
                spec.nft_table(),
            ],
        );
        let _ = run("ip", &["netns", "del", spec.name]);
    }
    if Path::new("/sys/class/net").join(spec.host_if).exists() {
        let _ = run("ip", &["link", "del", spec.host_if]);
    }
}

/// The bridge inside the namespace (`ip netns exec NS ringbridge run`); killed
/// on drop, its folder removed unless the test panics (then its log is printed).
#[derive(Debug)]
pub struct NsBridge {
    child: Child,
    dir: PathBuf,
    config_path: PathBuf,
}

impl NsBridge {
    /// Starts the bridge in `spec`'s namespace (which must exist), bound to
    /// its address, with `extra` appended to the generated configuration
    /// (TOML: top-level keys' tables only; more `[media]` keys go through
    /// [`NsBridge::start_with_media`]). Waits until `/about/health` answers.
    pub fn start(spec: &NetnsSpec, label: &str, extra: &str) -> NsBridge {
        NsBridge::start_with_media(spec, label, "", extra)
    }

    /// [`NsBridge::start`] with `media` (TOML `key = value` lines, e.g.
    /// `io = "xdp"`) added to the generated `[media]` table.
    pub fn start_with_media(spec: &NetnsSpec, label: &str, media: &str, extra: &str) -> NsBridge {
        let dir = crate::unique_temp_dir(label);
        let config_path = dir.join("ringbridge.toml");
        let [lo, hi] = spec.media_ports;
        let addr = spec.bridge_addr;
        fs::write(
            &config_path,
            format!(
                "server_id = \"{label}\"\n\
                 [public]\nlisten = \"{addr}:{}\"\n\
                 [private]\nlisten = \"{addr}:{}\"\n\
                 [media]\nport_range = [{lo}, {hi}]\nbind = \"{addr}\"\n\
                 advertise = [\"{addr}\"]\n{media}\n\
                 [auth]\napp_secret = \"{TEST_APP_SECRET}\"\n{extra}",
                spec.public_port, spec.private_port
            ),
        )
        .unwrap_or_else(|e| panic!("write config: {e}"));
        let log = File::create(dir.join("bridge.log")).unwrap_or_else(|e| panic!("log: {e}"));
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("log: {e}"));
        // `ip netns exec` execs the binary: the child's pid is the bridge's.
        let child = Command::new("ip")
            .args(["netns", "exec", spec.name])
            .arg(ringbridge_bin())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the bridge: {e}"));
        let mut b = NsBridge {
            child,
            dir,
            config_path,
        };
        let private: SocketAddr = format!("{addr}:{}", spec.private_port)
            .parse()
            .unwrap_or_else(|e| panic!("bridge address {addr}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = b.child.try_wait() {
                panic!("the bridge exited during start ({status}):\n{}", b.log());
            }
            if http_request(private, "GET", "/about/health", &[], b"")
                .is_ok_and(|r| r.status == 200)
            {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "the bridge is not healthy on {private} after 30 s:\n{}",
                b.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The bridge's folder (config, log; a scratch place for the test).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bridge's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("bridge.log")).unwrap_or_default()
    }

    /// An owner token for `room` (`ringbridge token --room R --owner --config FILE`).
    pub fn token(&self, room: &str) -> String {
        let out = Command::new(ringbridge_bin())
            .args(["token", "--room", room, "--owner", "--config"])
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ringbridge token: {e}"));
        assert!(out.status.success(), "ringbridge token failed: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .rfind(|l| l.split('.').count() == 3)
            .unwrap_or_else(|| panic!("ringbridge token printed no JWT: {out:?}"))
            .to_owned()
    }
}

impl Drop for NsBridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let keep = std::env::var_os(crate::KEEP_DIR_ENV).is_some();
        if thread::panicking() && !keep {
            eprintln!("---- bridge log ----\n{}\n---- end ----", self.log());
        } else if keep {
            // Kept whole (a log with traces is too long to print).
            eprintln!("kept the bridge's folder: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
