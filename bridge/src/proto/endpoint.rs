//! One participant's connection: its ICE, DTLS and SRTP state, what it publishes
//! (producers) and its receive slots (consumers).

use std::net::SocketAddr;
use std::time::Instant;

use ringbridge_control::media::{ConferenceId, EndpointId};

use super::dtls::DtlsTransport;
use super::ice::IceLite;
use super::router::{Consumer, Producer};
use super::srtp::SrtpContext;

/// Lifecycle of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// Waiting for ICE checks and the DTLS handshake.
    Connecting,
    /// DTLS done and verified; SRTP flows.
    Connected,
    /// Gone; waiting to be removed.
    Closed,
}

/// The SRTP contexts of a connected endpoint.
#[derive(Debug)]
pub struct SrtpPair {
    /// Protects what the bridge sends to this endpoint.
    pub outbound: SrtpContext,
    /// Unprotects what this endpoint sends.
    pub inbound: SrtpContext,
}

/// One participant's connection on a shard.
#[derive(Debug)]
pub struct Endpoint {
    /// Endpoint id (control plane's).
    pub id: EndpointId,
    /// Conference it belongs to.
    pub conference: ConferenceId,
    /// Local UDP port owned by this endpoint.
    pub port: u16,
    /// Lifecycle state.
    pub state: EndpointState,
    /// ICE-lite agent.
    pub ice: IceLite,
    /// DTLS association.
    pub dtls: DtlsTransport,
    /// Next time the DTLS engine wants `handle_timeout`.
    pub dtls_deadline: Option<Instant>,
    /// SRTP contexts once connected.
    pub srtp: Option<SrtpPair>,
    /// What this endpoint publishes.
    pub producers: Vec<Producer>,
    /// This endpoint's receive slots.
    pub slots: Vec<Consumer>,
    /// SSRC the bridge uses as RTCP sender toward this endpoint.
    pub rtcp_ssrc: u32,
    /// One-byte header extension id of `sdes:mid`, if negotiated.
    pub mid_ext_id: Option<u8>,
    /// When the next receiver report is due.
    pub next_report: Instant,
    /// When the endpoint was created.
    pub created: Instant,
    /// Negotiated SRTP profile and DTLS version, for logs and stats.
    pub negotiated: Option<(&'static str, &'static str)>,
}

impl Endpoint {
    /// Where to send to this endpoint, if it is reachable and keyed.
    pub fn media_target(&self) -> Option<SocketAddr> {
        if self.state == EndpointState::Connected {
            self.ice.selected()
        } else {
            None
        }
    }

    /// Index of the producer that owns `ssrc`, learning it from the mid when the
    /// offer announced none for that m-line.
    pub fn find_producer(&mut self, ssrc: u32, mid: Option<&[u8]>) -> Option<usize> {
        if let Some(i) = self.producers.iter().position(|p| p.ssrc == Some(ssrc)) {
            return Some(i);
        }
        let mid = mid?;
        let i = self
            .producers
            .iter()
            .position(|p| p.ssrc.is_none() && p.mid.as_bytes() == mid)?;
        self.producers[i].ssrc = Some(ssrc);
        Some(i)
    }

    /// Index of the slot whose SSRC is `ssrc`.
    pub fn slot_by_ssrc(&self, ssrc: u32) -> Option<usize> {
        self.slots.iter().position(|s| s.ssrc == ssrc)
    }
}
