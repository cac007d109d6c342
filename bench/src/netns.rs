//! A private network namespace joined to the host by a veth pair.
//!
//! Janus's ICE library (libnice) never offers a loopback candidate, so Janus runs in
//! a namespace of its own and is reached over a veth pair: `rbj0-<n>` on the host
//! side with `10.77.<n>.1/30`, `rbj1` inside with `10.77.<n>.2/30`. `10.77.0.0/16`
//! is the project's own test subnet; nothing else is ever addressed. With
//! `--netns`, ringbridge and the null forwarder run behind the same kind of pair,
//! so every target sees the same kernel path.
//!
//! [`Netns::create`] picks a free `<n>`, and [`Drop`] deletes the namespace (which
//! removes the veth pair with it, and kills nothing: owners stop their process
//! first).

use std::net::Ipv4Addr;
use std::process::{Command, Output};

/// Why a namespace could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// Not allowed to create namespaces or veth pairs (not root, or no CAP_SYS_ADMIN).
    #[error("insufficient privileges for a network namespace: {0}")]
    Privileges(String),
    /// The namespace or veth pair could not be set up.
    #[error("network namespace: {0}")]
    Setup(String),
}

impl From<NetnsError> for crate::BenchError {
    fn from(e: NetnsError) -> Self {
        crate::BenchError::Target(e.to_string())
    }
}

/// Prefix of every namespace this module creates: `rbbench-<owner pid>-<n>`.
pub(crate) const NS_PREFIX: &str = "rbbench-";
/// Prefix used by older builds (only Janus ran in a namespace); cleaned up too.
const OLD_NS_PREFIX: &str = "rbjanus-";
/// Name of the veth end inside the namespace.
pub(crate) const INNER_IF: &str = "rbj1";

/// A network namespace with a veth pair to the host. Deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host_if: String,
    index: u8,
    deleted: bool,
}

impl Netns {
    /// Creates `rbbench-<pid>-<n>` and its veth pair, for the first free `<n>` from
    /// a starting point derived from our pid. Namespaces left behind by bench
    /// processes that no longer exist are removed first.
    pub fn create() -> Result<Self, NetnsError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(NetnsError::Privileges(
                "not running as root: creating a network namespace needs CAP_SYS_ADMIN and \
                 CAP_NET_ADMIN (run the bench as root)"
                    .into(),
            ));
        }
        remove_stale();
        let pid = std::process::id();
        let used = used_test_subnets();
        let start = (pid % 200) as u8;
        let mut last_err = String::new();
        for step in 0..=255u8 {
            let index = start.wrapping_add(step);
            if used.contains(&index) {
                continue;
            }
            let name = format!("{NS_PREFIX}{pid}-{index}");
            let host_if = format!("rbj0-{index}");
            let out = ip(&["netns", "add", &name])?;
            if !out.status.success() {
                let err = stderr(&out);
                if err.contains("Permission denied") || err.contains("Operation not permitted") {
                    return Err(NetnsError::Privileges(format!(
                        "`ip netns add {name}`: {err}"
                    )));
                }
                last_err = format!("`ip netns add {name}`: {err}");
                continue;
            }
            let mut ns = Netns {
                name,
                host_if,
                index,
                deleted: false,
            };
            match ns.configure() {
                Ok(()) => return Ok(ns),
                Err(e) => {
                    last_err = e.to_string();
                    ns.delete();
                }
            }
        }
        Err(NetnsError::Setup(format!(
            "no free 10.77.<n>.0/30 test subnet (last error: {last_err})"
        )))
    }

    fn configure(&self) -> Result<(), NetnsError> {
        let host = format!("{}/30", self.host_addr());
        let inner = format!("{}/30", self.inner_addr());
        let steps: [&[&str]; 7] = [
            &[
                "link",
                "add",
                &self.host_if,
                "type",
                "veth",
                "peer",
                "name",
                INNER_IF,
                "netns",
                &self.name,
            ],
            &["addr", "add", &host, "dev", &self.host_if],
            &["link", "set", &self.host_if, "up"],
            &["-n", &self.name, "addr", "add", &inner, "dev", INNER_IF],
            &["-n", &self.name, "link", "set", INNER_IF, "up"],
            &["-n", &self.name, "link", "set", "lo", "up"],
            // The veth must not be slowed by offloads differing from the other targets';
            // keep the defaults, only make sure IPv6 does not add candidates.
            &[
                "netns",
                "exec",
                &self.name,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ],
        ];
        for (i, args) in steps.iter().enumerate() {
            let out = ip(args)?;
            // The sysctl step is best effort (sysctl may be missing; Janus is told
            // not to use IPv6 anyway).
            if !out.status.success() && i != steps.len() - 1 {
                return Err(NetnsError::Setup(format!(
                    "`ip {}`: {}",
                    args.join(" "),
                    stderr(&out)
                )));
            }
        }
        Ok(())
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Host side of the veth pair (clients bind here).
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.index, 1)
    }

    /// Namespace side of the veth pair (the target listens here).
    pub fn inner_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.index, 2)
    }

    /// Deletes the namespace and the host end of the veth pair. Idempotent.
    pub fn delete(&mut self) {
        if self.deleted {
            return;
        }
        self.deleted = true;
        let _ = ip(&["netns", "del", &self.name]);
        // Deleting the namespace destroys `rbj1`, which takes its peer with it; this
        // only matters if the namespace deletion failed half way.
        if link_exists(&self.host_if) {
            let _ = ip(&["link", "del", &self.host_if]);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.delete();
    }
}

/// The nftables table [`inject_loss`] puts its rules in (inside the namespace,
/// so it goes away with it).
pub(crate) const LOSS_TABLE: &str = "rbbench_loss";

/// Drops `percent`% of the UDP datagrams to and from ports `ports.0..=ports.1`
/// inside the namespace `ns`, at random and independently each way: one
/// nftables rule on the input hook (`udp dport`) and one on the output hook
/// (`udp sport`), as DESIGN.md's "Impairment" (this kernel has no netem).
/// `--loss` uses it on the target's media ports.
pub fn inject_loss(ns: &str, ports: (u16, u16), percent: u8) -> Result<(), NetnsError> {
    let (lo, hi) = ports;
    let t = LOSS_TABLE;
    let script = format!(
        "add table inet {t}\n\
         add chain inet {t} in {{ type filter hook input priority 0; }}\n\
         add chain inet {t} out {{ type filter hook output priority 0; }}\n\
         add rule inet {t} in udp dport {lo}-{hi} numgen random mod 100 < {percent} drop\n\
         add rule inet {t} out udp sport {lo}-{hi} numgen random mod 100 < {percent} drop\n"
    );
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| NetnsError::Setup(format!("cannot run `ip netns exec {ns} nft`: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| NetnsError::Setup(format!("nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetnsError::Setup(format!("nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Setup(format!(
            "nftables loss rules in {ns} (is the nftables package installed?): {}",
            stderr(&out)
        )))
    }
}

/// Whether a network namespace called `name` exists.
pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/var/run/netns").join(name).exists()
        || ip(&["netns", "list"]).is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name))
        })
}

/// Whether a network interface called `name` exists in our namespace.
pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

fn ip(args: &[&str]) -> Result<Output, NetnsError> {
    Command::new("ip").args(args).output().map_err(|e| {
        NetnsError::Setup(format!(
            "cannot run `ip` (package iproute2): {e}; it is needed to create the namespace"
        ))
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// Third octets of `10.77.x.y` addresses already configured in our namespace.
fn used_test_subnets() -> Vec<u8> {
    let Ok(out) = ip(&["-4", "-o", "addr", "show"]) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("10.77."))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect()
}

/// Deletes `rbbench-<pid>-*` (and `rbjanus-<pid>-*`) namespaces whose owner process is gone, killing whatever
/// still runs inside them (a target left over from a crashed bench).
fn remove_stale() {
    let Ok(out) = ip(&["netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(owner) = name
            .strip_prefix(NS_PREFIX)
            .or_else(|| name.strip_prefix(OLD_NS_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new("/proc")
            .join(owner.to_string())
            .exists()
        {
            continue;
        }
        if let Ok(pids) = ip(&["netns", "pids", name]) {
            for pid in String::from_utf8_lossy(&pids.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<libc::pid_t>().ok())
            {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = ip(&["netns", "del", name]);
        if let Some(index) = name.rsplit('-').next() {
            let host_if = format!("rbj0-{index}");
            if link_exists(&host_if) {
                let _ = ip(&["link", "del", &host_if]);
            }
        }
    }
}
