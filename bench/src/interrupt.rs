//! Ctrl-C and SIGTERM. Killed by the default action, a run left its bridge
//! running and its network namespaces and veth pairs behind. With
//! [`install`], a signal sets a flag instead; the engine's loops
//! ([`check`] once a turn, one atomic load) return
//! [`BenchError::Interrupted`], and on the way out the targets' and the
//! namespaces' `Drop`s stop the bridge and delete what was made. A second
//! signal ends the process at once (exit 130), for a bench stuck somewhere
//! that does not check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::BenchError;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Routes SIGINT and SIGTERM to the flag [`check`] reads. Called once by the
/// bench's commands (not by the null forwarder, which its parent stops with a
/// signal).
pub fn install() -> std::io::Result<()> {
    let flag = FLAG
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(())
}

/// Whether a signal asked the bench to stop.
pub fn requested() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// `Err(Interrupted)` once a signal asked the bench to stop.
pub fn check() -> Result<(), BenchError> {
    if requested() {
        Err(BenchError::Interrupted)
    } else {
        Ok(())
    }
}
