//! An endpoint as its router holds it: the transport (one participant's
//! connection) and the keys of what it publishes and receives.

use std::time::Instant;

use ringbridge_control::media::EndpointId;

use super::super::transport::Transport;
use super::keys::{ConsumerKey, ProducerKey};

/// One participant of a conference.
#[derive(Debug)]
pub struct Endpoint {
    /// Endpoint id (the control plane's).
    pub id: EndpointId,
    /// Its connection.
    pub transport: Transport,
    /// What it publishes, in m-line order (fixed at join).
    pub producers: Vec<ProducerKey>,
    /// Its receive slots, in m-line order (fixed at join).
    pub consumers: Vec<ConsumerKey>,
    /// Counted as sending audio until then (last audio packet + the window).
    pub audio_until: Option<Instant>,
    /// Counted as sending video until then.
    pub video_until: Option<Instant>,
}
