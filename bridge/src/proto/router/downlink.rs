//! Each receiver's bandwidth estimate (its transport's send-side estimator,
//! fed by its transport-cc feedback): reported to the control plane as
//! [`MediaEvent::ConnectionStats`] every [`CONNECTION_STATS_INTERVAL`] while
//! feedback arrives; the allocation (`allocate.rs`) divides it among the
//! receiver's video.

use std::time::Duration;

use ringbridge_control::media::MediaEvent;

use super::{EndpointKey, Router, RouterIo};

/// How often a receiver is told the bridge's estimate toward it (jvb sends
/// its `ConnectionStats` on a similar period).
pub const CONNECTION_STATS_INTERVAL: Duration = Duration::from_secs(2);

impl Router {
    /// After RTCP from endpoint `key`: reports its estimate when one is due.
    pub(super) fn report_downlink(&mut self, key: EndpointKey, io: &mut RouterIo<'_>) {
        let Some(ep) = self.endpoints.get_mut(key) else {
            return;
        };
        let Some(bps) = ep.downlink_estimate() else {
            return;
        };
        if ep.connection_stats_at.is_some_and(|at| io.now < at) {
            return;
        }
        ep.connection_stats_at = Some(io.now + CONNECTION_STATS_INTERVAL);
        tracing::debug!(endpoint = %ep.id, conference = %self.id, bps, "downlink estimate");
        io.events.push_back(MediaEvent::ConnectionStats {
            conference: self.id.clone(),
            endpoint: ep.id.clone(),
            estimated_downlink_bps: bps,
        });
    }
}
