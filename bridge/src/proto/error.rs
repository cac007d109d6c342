//! The core's own error type for control operations (join, leave, mute, ...), and
//! how it maps onto the control plane's [`MediaError`] (and so onto HTTP codes).
//!
//! Packet-path failures are never errors here: a malformed or unwanted packet is
//! dropped and counted in [`ShardCounters`](super::shard::ShardCounters).

use ringbridge_control::media::MediaError;

use super::sdp::SdpError;

/// Why the shard core refused a control operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The offer cannot be served; the text is safe to show to the client.
    #[error("bad offer: {0}")]
    BadOffer(#[from] SdpError),
    /// The driver handed the core a port that an endpoint still owns: an internal
    /// conflict between driver and core, not something the client did.
    #[error("port {0} already in use")]
    PortInUse(u16),
    /// The conference already has an endpoint with this id. Endpoint ids are
    /// chosen by the control plane, so this too is an internal conflict.
    #[error("endpoint {0} already exists")]
    DuplicateEndpoint(String),
    /// No such conference on this shard.
    #[error("conference not found")]
    ConferenceNotFound,
    /// No such endpoint in the conference.
    #[error("endpoint not found")]
    EndpointNotFound,
    /// The endpoint publishes no source of that name.
    #[error("source not found")]
    SourceNotFound,
}

/// The control plane's meaning of each core error.
///
/// - `BadOffer` is the client's fault: `400 bad-offer` with the parser's text.
/// - `PortInUse` and `DuplicateEndpoint` are conflicts inside the bridge (the
///   driver's port binding, or the control plane's random endpoint id, collided
///   with live state). The user did nothing wrong and a retry succeeds, so they map
///   to [`MediaError::Unavailable`] (`503 unavailable`), the control plane's code
///   for "the media plane cannot do this now"; `Overloaded` would tell the operator
///   a capacity story that is not true, and `BadOffer` would blame the client.
/// - the `*NotFound` variants map to [`MediaError::NotFound`].
impl From<CoreError> for MediaError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::BadOffer(why) => MediaError::BadOffer(why.to_string()),
            CoreError::PortInUse(_) | CoreError::DuplicateEndpoint(_) => MediaError::Unavailable,
            CoreError::ConferenceNotFound
            | CoreError::EndpointNotFound
            | CoreError::SourceNotFound => MediaError::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_the_control_planes_meaning() {
        let bad = CoreError::from(SdpError::Missing("a=fingerprint"));
        assert!(
            matches!(MediaError::from(bad), MediaError::BadOffer(t) if t.contains("a=fingerprint"))
        );
        assert!(matches!(
            MediaError::from(CoreError::PortInUse(10_000)),
            MediaError::Unavailable
        ));
        assert!(matches!(
            MediaError::from(CoreError::DuplicateEndpoint("a".into())),
            MediaError::Unavailable
        ));
        for e in [
            CoreError::ConferenceNotFound,
            CoreError::EndpointNotFound,
            CoreError::SourceNotFound,
        ] {
            assert!(matches!(MediaError::from(e), MediaError::NotFound));
        }
    }
}
