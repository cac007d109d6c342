//! UDP generic segmentation offload (`UDP_SEGMENT`), as quinn-udp does it:
//! probed once at start, switched off at run time after the first `EIO` or
//! `EINVAL` from a segmented send (some NICs and drivers refuse it, and Linux
//! offers no other way to find out).
//!
//! With GSO, `k` equal-size datagrams to one destination (the packets of one
//! video frame for one receiver) go to the kernel as one message and one trip
//! down the stack; receivers still see `k` datagrams. Nothing here relies on GRO.
//! Segmented sends are counted per shard (`segmented_sends` in its stats).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// Most datagrams in one segmented send (the kernel's `UDP_MAX_SEGMENTS`).
pub const MAX_SEGMENTS: usize = 64;

/// Most payload bytes in one segmented send: a 64 KiB IP datagram less the IPv4
/// and UDP headers (the IPv6 limit is larger, so this holds for both).
pub const MAX_BYTES: usize = 65_535 - 20 - 8;

/// Environment variable that forces GSO off when set to `1` (read when a
/// driver is prepared).
pub const DISABLE_ENV: &str = "RINGBRIDGE_DISABLE_GSO";

/// Whether the kernel accepts `UDP_SEGMENT` on a UDP socket (probed once per
/// process on a throwaway 127.0.0.1 socket), or why not.
pub fn kernel_support() -> Result<(), String> {
    static PROBED: OnceLock<Result<(), String>> = OnceLock::new();
    PROBED
        .get_or_init(|| probe_kernel().map_err(|e| e.to_string()))
        .clone()
}

fn probe_kernel() -> io::Result<()> {
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let segment: libc::c_int = 1500;
    // SAFETY: a valid socket fd, and a pointer to a c_int with its size, as
    // setsockopt(SOL_UDP, UDP_SEGMENT) expects.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&raw const segment).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether [`DISABLE_ENV`] asks for GSO off.
fn disabled_by_env() -> bool {
    std::env::var(DISABLE_ENV).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

/// A shard's GSO switch: on after a successful probe, off for good after the
/// first segmented send the kernel refuses.
#[derive(Debug, Clone)]
pub struct GsoState {
    enabled: bool,
    /// Why GSO is off (for logs), once it is.
    reason: Option<String>,
}

impl GsoState {
    /// Probes: off when [`DISABLE_ENV`] is `1` or the kernel refuses
    /// `UDP_SEGMENT`, on otherwise. Logs the outcome once, with the reason.
    pub fn probe() -> Self {
        let state = if disabled_by_env() {
            Self::off(format!("{DISABLE_ENV}=1"))
        } else {
            match kernel_support() {
                Ok(()) => Self {
                    enabled: true,
                    reason: None,
                },
                Err(e) => Self::off(format!("the kernel refused UDP_SEGMENT: {e}")),
            }
        };
        match &state.reason {
            None => tracing::info!(
                max_segments = MAX_SEGMENTS,
                max_bytes = MAX_BYTES,
                "UDP GSO on"
            ),
            Some(reason) => tracing::info!(%reason, "UDP GSO off"),
        }
        state
    }

    /// GSO off, for `reason`.
    pub fn off(reason: impl Into<String>) -> Self {
        Self {
            enabled: false,
            reason: Some(reason.into()),
        }
    }

    /// Whether sends may be segmented.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Why GSO is off, when it is.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Most datagrams per send for [`SendPlan::build`](super::batch::SendPlan::build):
    /// `Some(MAX_SEGMENTS)` when on, `None` (one datagram per message) when off.
    pub fn max_segments(&self) -> Option<usize> {
        self.enabled.then_some(MAX_SEGMENTS)
    }

    /// Call after a **segmented** send failed with `e`. On `EIO` or `EINVAL`
    /// GSO goes off for the rest of the shard's life (logged once at warn, with
    /// the error) and the answer is `true`: send that group again without
    /// segmentation. Any other error is not GSO's doing: `false`.
    ///
    /// Keeps answering `true` for `EIO`/`EINVAL` after GSO is off, because
    /// segmented messages built before the switch may still be in the pipeline
    /// (an io_uring submission queue, the rest of a sendmmsg batch).
    pub fn disable_after(&mut self, e: &io::Error) -> bool {
        if !matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) {
            return false;
        }
        if self.enabled {
            self.enabled = false;
            let reason = format!("a segmented send failed: {e}");
            tracing::warn!(error = %e, "UDP GSO send failed; halting segmentation offload");
            self.reason = Some(reason);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eio_and_einval_switch_gso_off_once_and_ask_for_a_retry() {
        let mut g = GsoState {
            enabled: true,
            reason: None,
        };
        assert_eq!(g.max_segments(), Some(MAX_SEGMENTS));
        assert!(!g.disable_after(&io::Error::from_raw_os_error(libc::EAGAIN)));
        assert!(g.enabled());
        assert!(g.disable_after(&io::Error::from_raw_os_error(libc::EIO)));
        assert!(!g.enabled());
        assert_eq!(g.max_segments(), None);
        assert!(g.reason().is_some_and(|r| r.contains("segmented send")));
        assert!(g.disable_after(&io::Error::from_raw_os_error(libc::EINVAL)));
        assert!(!g.disable_after(&io::Error::from_raw_os_error(libc::ENOBUFS)));
    }

    #[test]
    fn probe_agrees_with_the_kernel() {
        // Reads the environment but does not change it.
        let g = GsoState::probe();
        if !disabled_by_env() {
            assert_eq!(g.enabled(), kernel_support().is_ok());
        }
    }
}
