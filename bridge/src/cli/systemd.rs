//! `Type=notify` glue for `run`: READY, WATCHDOG and STOPPING, each a no-op
//! when the bridge was not started by systemd.

use std::time::Duration;

use ringbridge_tuning::systemd;

/// Sends `state`; a failure is logged, never fatal (the bridge works without systemd).
pub(crate) fn notify(state: &'static str) {
    match systemd::notify(state) {
        Ok(true) => tracing::debug!(state, "told systemd"),
        Ok(false) => {}
        Err(e) => tracing::warn!(state, error = %e, "cannot notify systemd"),
    }
}

/// Pings the systemd watchdog from the control runtime at half of
/// `$WATCHDOG_USEC` while `healthy` says the media plane makes progress. A hung
/// control runtime or a stuck shard stops the pings, and systemd restarts the
/// bridge.
pub(crate) fn spawn_watchdog(healthy: impl Fn() -> Result<(), String> + Send + 'static) {
    let Some(every) = systemd::watchdog_interval() else {
        return;
    };
    let every = every.max(Duration::from_millis(100));
    tracing::info!(
        interval_ms = every.as_millis() as u64,
        "systemd watchdog on"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match healthy() {
                Ok(()) => notify(systemd::WATCHDOG),
                Err(reason) => tracing::error!(%reason, "media plane unhealthy; watchdog not fed"),
            }
        }
    });
}
