//! Choosing the shards' I/O backend from `media.io`.

use super::shard::Backend;
use crate::config::IoBackend;

/// The backend to run and, when `auto` fell back, the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendChoice {
    /// The backend.
    pub backend: Backend,
    /// Why io_uring is not used, when it was wanted or tried.
    pub fallback_reason: Option<String>,
}

/// Resolves `media.io`: `auto` probes io_uring and falls back to mmsg with the
/// reason (it never picks `xdp`); `uring` refuses to start with the reason;
/// `mmsg` is taken as is; `xdp` too, its probe being
/// [`XdpPlane::start`](super::xdp::XdpPlane::start), which refuses with the reason.
pub fn choose_backend(wanted: IoBackend) -> Result<BackendChoice, String> {
    match wanted {
        IoBackend::Mmsg => Ok(BackendChoice {
            backend: Backend::Mmsg,
            fallback_reason: None,
        }),
        IoBackend::Xdp => Ok(BackendChoice {
            backend: Backend::Xdp,
            fallback_reason: None,
        }),
        IoBackend::Uring => match super::uring::probe() {
            Ok(()) => Ok(BackendChoice {
                backend: Backend::Uring,
                fallback_reason: None,
            }),
            Err(reason) => Err(format!(
                "media.io = \"uring\" but io_uring cannot run here: {reason}"
            )),
        },
        IoBackend::Auto => match super::uring::probe() {
            Ok(()) => Ok(BackendChoice {
                backend: Backend::Uring,
                fallback_reason: None,
            }),
            Err(reason) => Ok(BackendChoice {
                backend: Backend::Mmsg,
                fallback_reason: Some(reason),
            }),
        },
    }
}
