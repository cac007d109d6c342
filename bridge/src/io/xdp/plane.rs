//! `media.io = "xdp"`: the XDP program on `media.xdp_interface` and the
//! shard's AF_XDP socket, set up once at start with every reason it cannot
//! run turned into one sentence (no such interface, no BPF permission, the
//! interface refuses XDP, queue 0 taken), so the bridge refuses to start
//! saying why instead of running without media.
//!
//! No bpffs is needed: the program is attached through a BPF link held by
//! this process, so it detaches when the bridge exits, however it exits.
//!
//! One shard for now: an XSK only receives from the rx queue it is bound to,
//! and the NIC's RSS picks the queue, not the endpoint's port; more shards
//! need either flow steering rules per port range or a cross-queue hand-off
//! (as in single-port mode), neither of which exists yet.

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
    xsk: Mutex<Option<XskSocket>>,
}

impl XdpPlane {
    /// Attaches the program to `interface` (native mode, else generic) for
    /// datagrams to `local` on `ports`, and binds an XSK to its queue 0.
    /// The error is the reason, as one sentence.
    pub fn start(
        interface: &str,
        local: IpAddr,
        ports: (u16, u16),
        shards: usize,
    ) -> Result<Self, String> {
        if shards != 1 {
            return Err(format!(
                "AF_XDP runs one shard for now (no cross-queue hand-off yet); media.cores gives \
                 {shards}"
            ));
        }
        if local.is_unspecified() {
            return Err("media.bind must be the interface's address".into());
        }
        let ifindex = neigh::ifindex(interface)
            .map_err(|e| format!("no interface named {interface:?} ({e})"))?;
        let prog = XdpProgram::attach(ifindex, 1, ports.0..=ports.1, ModeChoice::NativeThenGeneric)
            .map_err(|e| match e.kind() {
                io::ErrorKind::PermissionDenied => {
                    format!("no BPF permission (needs root, or CAP_BPF with CAP_NET_ADMIN): {e}")
                }
                io::ErrorKind::ResourceBusy => {
                    format!("{interface} already has another XDP program: {e}")
                }
                _ => format!("{interface} refuses the XDP program: {e}"),
            })?;
        prog.add_address(local)
            .map_err(|e| format!("cannot add {local} to the XDP address map: {e}"))?;
        let xsk = XskSocket::bind(ifindex, 0, XskConfig::default()).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::EBUSY) => {
                    format!("queue 0 of {interface} is taken by another AF_XDP socket: {e}")
                }
                _ => format!("cannot bind an AF_XDP socket to queue 0 of {interface}: {e}"),
            }
        })?;
        prog.set_socket(0, xsk.as_raw_fd())
            .map_err(|e| format!("cannot put the AF_XDP socket into the XSKMAP: {e}"))?;
        Ok(Self {
            copy: xsk.mode(),
            prog,
            ifindex,
            local,
            xsk: Mutex::new(Some(xsk)),
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

    /// The driver of shard `spec.index` (its XSK was bound at start; a
    /// second shard is refused).
    pub fn prepare(self: &Arc<Self>, spec: &ShardSpec) -> io::Result<PreparedDriver> {
        let xsk = self
            .xsk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| io::Error::other("the AF_XDP socket has a shard already"))?;
        let _ = spec;
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
    fn a_missing_interface_or_several_shards_are_refused_with_the_reason() {
        let local: IpAddr = "192.0.2.1".parse().expect("ip");
        let e = XdpPlane::start("rb-no-such0", local, (10000, 10099), 1).expect_err("refused");
        assert!(e.starts_with("no interface named \"rb-no-such0\""), "{e}");
        let e = XdpPlane::start("lo", local, (10000, 10099), 2).expect_err("refused");
        assert!(e.contains("one shard"), "{e}");
        let e =
            XdpPlane::start("lo", "0.0.0.0".parse().expect("ip"), (1, 2), 1).expect_err("refused");
        assert!(e.contains("media.bind"), "{e}");
    }
}
