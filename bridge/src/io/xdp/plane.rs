//! `media.io = "xdp"`: the XDP program on `media.xdp_interface` and the
//! shard's AF_XDP socket, set up once at start with every reason it cannot
//! run turned into one sentence (no such interface, no BPF permission, the
//! interface refuses XDP, queue 0 taken), so the bridge refuses to start
//! saying why instead of running without media.
//!
//! No bpffs is needed: the program is attached through a BPF link held by
//! this process, so it detaches when the bridge exits, however it exits.
//!
//! Shard `i` binds its XSK to rx queue `i`, so the interface needs a queue
//! per shard. An XSK only receives from its own queue, and the NIC's RSS
//! picks the queue by flow, not by the endpoint's port: the program redirects
//! from queue `i` only shard `i`'s ports and passes the rest to the kernel,
//! whose socket of the owning shard gets them (the slow path). Flow steering
//! rules that send each shard's port range to its queue (`ethtool -N ...
//! action i`) put every datagram on the fast path; the bridge does not set
//! them up itself.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use super::driver::{WAKER, XskIo};
use super::neigh;
use super::program::{AttachMode, ModeChoice, XdpProgram};
use super::socket::{CopyMode, XskConfig, XskSocket};
use crate::io::driver;
use crate::io::shard::{PreparedDriver, ShardSpec};

/// The XDP program and the socket waiting for its shard.
#[derive(Debug)]
pub struct XdpPlane {
    prog: XdpProgram,
    ifindex: u32,
    local: IpAddr,
    copy: CopyMode,
    /// By shard: its socket until its driver takes it.
    xsks: Vec<Mutex<Option<XskSocket>>>,
}

impl XdpPlane {
    /// Attaches the program to `interface` (native mode, else generic) for
    /// datagrams to `local`, shard `i` owning `shard_ports[i]` (inclusive),
    /// and binds shard `i`'s XSK to queue `i`. The error is the reason, as
    /// one sentence.
    pub fn start(
        interface: &str,
        local: IpAddr,
        shard_ports: &[(u16, u16)],
    ) -> Result<Self, String> {
        if shard_ports.is_empty() {
            return Err("no shard".into());
        }
        if local.is_unspecified() {
            return Err("media.bind must be the interface's address".into());
        }
        let ifindex = neigh::ifindex(interface)
            .map_err(|e| format!("no interface named {interface:?} ({e})"))?;
        let ranges: Vec<_> = shard_ports.iter().map(|&(lo, hi)| lo..=hi).collect();
        let prog = XdpProgram::attach(ifindex, &ranges, ModeChoice::NativeThenGeneric).map_err(
            |e| match e.kind() {
                io::ErrorKind::PermissionDenied => {
                    format!("no BPF permission (needs root, or CAP_BPF with CAP_NET_ADMIN): {e}")
                }
                io::ErrorKind::ResourceBusy => {
                    format!("{interface} already has another XDP program: {e}")
                }
                _ => format!("{interface} refuses the XDP program: {e}"),
            },
        )?;
        prog.add_address(local)
            .map_err(|e| format!("cannot add {local} to the XDP address map: {e}"))?;
        let mut xsks = Vec::with_capacity(shard_ports.len());
        let mut copy = CopyMode::Copy;
        for q in 0..shard_ports.len() as u32 {
            let xsk = XskSocket::bind(ifindex, q, XskConfig::default()).map_err(|e| {
                match e.raw_os_error() {
                    Some(libc::EBUSY) => {
                        format!("queue {q} of {interface} is taken by another AF_XDP socket: {e}")
                    }
                    Some(libc::EINVAL) => format!(
                        "{interface} has no rx queue {q} (each of the {} shards needs its own \
                         queue): {e}",
                        shard_ports.len()
                    ),
                    _ => format!("cannot bind an AF_XDP socket to queue {q} of {interface}: {e}"),
                }
            })?;
            prog.set_socket(q, xsk.as_raw_fd())
                .map_err(|e| format!("cannot put the AF_XDP socket into the XSKMAP: {e}"))?;
            copy = xsk.mode();
            xsks.push(Mutex::new(Some(xsk)));
        }
        Ok(Self {
            copy,
            prog,
            ifindex,
            local,
            xsks,
        })
    }

    /// Native or generic XDP.
    pub fn attach_mode(&self) -> AttachMode {
        self.prog.mode()
    }

    /// Copy or zero-copy.
    pub fn copy_mode(&self) -> CopyMode {
        self.copy
    }

    /// `/colibri/stats` `io_backend`: `xdp` with both modes.
    pub fn backend_name(&self) -> &'static str {
        match (self.prog.mode(), self.copy) {
            (AttachMode::Native, CopyMode::ZeroCopy) => "xdp (native, zero-copy)",
            (AttachMode::Native, CopyMode::Copy) => "xdp (native, copy)",
            (AttachMode::Generic, CopyMode::ZeroCopy) => "xdp (generic, zero-copy)",
            (AttachMode::Generic, CopyMode::Copy) => "xdp (generic, copy)",
        }
    }

    /// The driver of shard `spec.index` (its XSK was bound at start).
    pub fn prepare(self: &Arc<Self>, spec: &ShardSpec) -> io::Result<PreparedDriver> {
        let xsk = self
            .xsks
            .get(spec.index)
            .and_then(|m| m.lock().unwrap_or_else(|e| e.into_inner()).take())
            .ok_or_else(|| {
                io::Error::other(format!("no AF_XDP socket left for shard {}", spec.index))
            })?;
        let poll = mio::Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        let plane = self.clone();
        Ok(PreparedDriver {
            waker,
            run: Box::new(move |ctx| {
                match XskIo::new(xsk, plane.ifindex, plane.local, poll) {
                    Ok(io) => driver::run(ctx, io),
                    Err(e) => tracing::error!(
                        shard = ctx.spec.index,
                        error = %e,
                        "AF_XDP backend cannot be set up; shard stops"
                    ),
                }
                // The program stays attached as long as a shard runs.
                drop(plane);
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_or_an_unspecified_address_is_refused_with_the_reason() {
        let local: IpAddr = "192.0.2.1".parse().expect("ip");
        let e = XdpPlane::start("rb-no-such0", local, &[(10000, 10099)]).expect_err("refused");
        assert!(e.starts_with("no interface named \"rb-no-such0\""), "{e}");
        let e = XdpPlane::start("rb-no-such0", "0.0.0.0".parse().expect("ip"), &[(1, 2)])
            .expect_err("refused");
        assert!(e.contains("media.bind"), "{e}");
        assert!(XdpPlane::start("rb-no-such0", local, &[]).is_err());
    }
}
