//! An endpoint as its router holds it: the transport (one participant's
//! connection) and the keys of what it publishes and receives. Only the router
//! changes it; everyone else reads.

use std::sync::Arc;
use std::time::Instant;

use ringbridge_control::media::EndpointId;
use ringbridge_control::receiver_constraints::ReceiverConstraints;

use super::super::quality::dominant_speaker::SpeakerActivity;
use super::super::quality::upgrade_hold::UpgradeHold;
use super::super::transport::Transport;
use super::allocate::AllocationState;
use super::keys::{ConsumerKey, ProducerKey};

/// One participant of a conference.
#[derive(Debug)]
pub struct Endpoint {
    pub(super) id: EndpointId,
    /// The id again, shared: the owner named in other receivers' source maps.
    pub(super) name: Arc<str>,
    /// Boxed: a transport is about 12 KiB, and the router's endpoint slot map would
    /// copy it on every growth (a tenth of `Router::join`'s time in
    /// `ringbridge-bench scale`).
    pub(super) transport: Box<Transport>,
    /// What it publishes, in m-line order (fixed at join).
    pub(super) producers: Vec<ProducerKey>,
    /// Its receive slots, in m-line order (fixed at join).
    pub(super) consumers: Vec<ConsumerKey>,
    /// Counted as sending audio until then (last audio packet + the window).
    pub(super) audio_until: Option<Instant>,
    /// Counted as sending video until then.
    pub(super) video_until: Option<Instant>,
    /// The audio levels it sent lately (dominant speaker identification).
    pub(super) speaker: SpeakerActivity,
    /// When its next `ConnectionStats` event is due (none before its first
    /// estimate).
    pub(super) connection_stats_at: Option<Instant>,
    /// What it wants to receive (its `ReceiverVideoConstraints`).
    pub(super) constraints: ReceiverConstraints,
    /// The estimate its allocation may spend (rises held for 2 s).
    pub(super) budget_hold: UpgradeHold,
    /// Its last video allocation.
    pub(super) allocation: AllocationState,
}

impl Endpoint {
    /// Endpoint id (the control plane's).
    pub fn id(&self) -> &EndpointId {
        &self.id
    }

    /// Its connection.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// What it publishes, in m-line order.
    pub fn producers(&self) -> &[ProducerKey] {
        &self.producers
    }

    /// Its receive slots, in m-line order.
    pub fn consumers(&self) -> &[ConsumerKey] {
        &self.consumers
    }

    /// The bandwidth estimate toward this endpoint as a receiver, in bits per
    /// second, from its transport-cc feedback on what the bridge sends it
    /// ([`SendSideBwe`](super::super::quality::bwe::SendSideBwe), starting at
    /// 300 kbit/s); `None` until its first feedback.
    pub fn downlink_estimate(&self) -> Option<u64> {
        self.transport.downlink_estimate()
    }

    /// What its video allocation may spend, bits per second: the estimate
    /// less what drains a standing queue toward it
    /// ([`drain`](super::super::quality::bwe::drain)), or before the first
    /// feedback the estimator's start value (300 kbit/s), so that layers
    /// whose bitrate is measured by then are held to it until feedback and
    /// probes raise the estimate. `None` (unlimited) when transport-cc was
    /// not negotiated: nothing will ever measure the link.
    pub fn downlink_budget(&self) -> Option<u64> {
        self.transport.downlink_budget()
    }

    /// What it wants to receive (its `ReceiverVideoConstraints` so far).
    pub fn constraints(&self) -> &ReceiverConstraints {
        &self.constraints
    }

    /// The video sources its last allocation forwards, in priority order.
    pub fn forwarded_sources(&self) -> &[Arc<str>] {
        &self.allocation.forwarded
    }
}
