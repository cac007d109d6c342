//! Network namespaces for tests: two of them joined by a veth pair on
//! 10.79.0.0/24 and fd79::/64 (not the bench's 10.77.0.0/16), made by the
//! test with `ip` and deleted when dropped, and a way to run code inside one.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::process::Command;

/// One test at a time: every test uses the same interface names.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The bridge side's veth.
pub const BRIDGE_NIC: &str = "rbxdp-b";
/// The peer side's veth.
pub const PEER_NIC: &str = "rbxdp-p";

/// The two namespaces; deleting them removes the veth pair too.
pub struct Namespaces {
    /// The bridge's (10.79.0.1, 10.79.0.3, fd79::1 on [`BRIDGE_NIC`]).
    pub bridge: String,
    /// The peer's (10.79.0.2, fd79::2 on [`PEER_NIC`]).
    pub peer: String,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.bridge, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `ip args`, which must succeed.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread that has entered namespace `ns` (setns affects only
/// the calling thread, and threads it starts inherit it); sockets it creates
/// stay in `ns`.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
            // SAFETY: setns on an open namespace fd; it changes only this thread.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    })
}

/// The namespaces, named after this process and `tag`; `None` (and a line
/// saying why) where they cannot be made (not root).
pub fn namespaces(tag: &str) -> Option<Namespaces> {
    namespaces_with_queues(tag, 1)
}

/// [`namespaces`] with `queues` rx and tx queues on each veth.
pub fn namespaces_with_queues(tag: &str, queues: u32) -> Option<Namespaces> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: this test needs root (network namespaces, BPF)");
        return None;
    }
    let pid = std::process::id();
    let ns = Namespaces {
        bridge: format!("rbxdp-{pid}-{tag}-b"),
        peer: format!("rbxdp-{pid}-{tag}-p"),
    };
    for n in [&ns.bridge, &ns.peer] {
        let out = Command::new("ip")
            .args(["netns", "add", n])
            .output()
            .expect("run ip");
        if !out.status.success() {
            eprintln!(
                "skipped: cannot create a network namespace: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
    }
    let (b, p) = (ns.bridge.as_str(), ns.peer.as_str());
    let q = queues.to_string();
    ip(&[
        "link",
        "add",
        BRIDGE_NIC,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "netns",
        b,
        "type",
        "veth",
        "peer",
        "name",
        PEER_NIC,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "netns",
        p,
    ]);
    for (n, nic, v4, v6) in [
        (b, BRIDGE_NIC, "10.79.0.1/24", "fd79::1/64"),
        (p, PEER_NIC, "10.79.0.2/24", "fd79::2/64"),
    ] {
        ip(&["-n", n, "addr", "add", v4, "dev", nic]);
        ip(&["-n", n, "-6", "addr", "add", v6, "dev", nic, "nodad"]);
        ip(&["-n", n, "link", "set", nic, "up"]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
    }
    // An address of the bridge's interface that is not the bridge's.
    ip(&["-n", b, "addr", "add", "10.79.0.3/24", "dev", BRIDGE_NIC]);
    Some(ns)
}
