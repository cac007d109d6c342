//! A Producer: one incoming source (one publishing m-line of one endpoint).

use super::super::quality::layer_rate::LayerRates;
use super::super::quality::simulcast::{MAX_LAYERS, SimulcastLayers};
use std::sync::Arc;
use std::time::Instant;

use ringbridge_control::media::RefusalReason;

use super::super::codec::CodecKind;
use super::super::quality::keyframe::{KeyframeConfig, KeyframeRequester};
use super::super::quality::nack::{NackConfig, NackGenerator};
use super::super::quality::rtx_cache::{RtxCache, RtxCacheConfig};
use super::super::quality::sender_report::SourceClock;
use super::super::rtp::SeqUnwrapper;
use super::super::sdp::MediaKind;
use super::super::timer::Scheduled;
use super::keys::{ConsumerKey, EndpointKey};

/// The repair state of one RTP stream of a video source: the source itself,
/// or one layer of a simulcast source (each layer has its own SSRC and
/// sequence space). Its packet cache and NACK window take their memory at the
/// stream's first packet and first gap; nothing per packet.
#[derive(Debug)]
pub struct StreamRepair {
    /// The last second (at least 512 packets) of the stream, plain RTP.
    pub cache: RtxCache,
    /// Gaps in the stream's sequence numbers, NACKed toward the sender.
    pub nack: NackGenerator,
    /// Extends the stream's sequence numbers for the cache.
    pub seq: SeqUnwrapper,
    /// The media SSRC the stream is sent on (what a NACK names), once seen.
    pub media_ssrc: Option<u32>,
    /// The cache's memory was added to the shard's `cache_memory_bytes`.
    accounted: bool,
}

impl StreamRepair {
    /// The repair state with default sizing.
    pub fn new() -> Self {
        Self {
            cache: RtxCache::new(RtxCacheConfig::default()),
            nack: NackGenerator::new(NackConfig::default()),
            seq: SeqUnwrapper::new(),
            media_ssrc: None,
            accounted: false,
        }
    }

    /// Stores `packet` (extended sequence number `ext`) in the cache; returns
    /// the bytes the cache took if this was its first packet (to be added to
    /// the shard's `cache_memory_bytes`), else 0. A packet too large or older
    /// than the ring is not cached (it is still forwarded).
    pub fn cache_packet(&mut self, now: Instant, ext: u64, packet: &[u8]) -> u64 {
        let _ = self.cache.insert(now, ext, packet);
        if !self.accounted && self.cache.allocated_bytes() == self.cache.memory_bytes() {
            self.accounted = true;
            return self.cache.memory_bytes() as u64;
        }
        0
    }

    /// The cache memory [`cache_packet`](Self::cache_packet) reported, to be
    /// taken off the shard's count when the stream goes.
    pub fn accounted_bytes(&self) -> u64 {
        if self.accounted {
            self.cache.memory_bytes() as u64
        } else {
            0
        }
    }
}

impl Default for StreamRepair {
    fn default() -> Self {
        Self::new()
    }
}

/// The repair state of one video source: a [`StreamRepair`] per simulcast
/// layer (one for a source without simulcast), made when the producer is,
/// and the one entry the router's NACK heap holds for all of them.
#[derive(Debug)]
pub struct SourceRepair {
    layers: Vec<StreamRepair>,
    /// What the router's NACK heap holds for this source (the earliest of its
    /// layers' deadlines).
    pub scheduled: Scheduled,
}

impl SourceRepair {
    /// The repair state of a source with `layers` streams (at least one, at
    /// most [`MAX_LAYERS`]).
    pub fn new(layers: usize) -> Self {
        Self {
            layers: (0..layers.clamp(1, MAX_LAYERS))
                .map(|_| StreamRepair::new())
                .collect(),
            scheduled: Scheduled::default(),
        }
    }

    /// The stream of layer `layer` (0 without simulcast).
    pub fn layer(&self, layer: u8) -> Option<&StreamRepair> {
        self.layers.get(usize::from(layer))
    }

    /// The stream of layer `layer`, mutably.
    pub fn layer_mut(&mut self, layer: u8) -> Option<&mut StreamRepair> {
        self.layers.get_mut(usize::from(layer))
    }

    /// Every layer's stream.
    pub fn layers_mut(&mut self) -> &mut [StreamRepair] {
        &mut self.layers
    }

    /// The earliest time any layer's NACK generator needs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.layers
            .iter()
            .filter_map(|l| l.nack.poll_timeout())
            .min()
    }

    /// The cache memory its layers reported (see
    /// [`StreamRepair::cache_packet`]).
    pub fn accounted_bytes(&self) -> u64 {
        self.layers.iter().map(StreamRepair::accounted_bytes).sum()
    }
}

/// One source an endpoint publishes.
#[derive(Debug)]
pub struct Producer {
    /// The endpoint that publishes it.
    pub owner: EndpointKey,
    /// The publisher's m-line.
    pub mid: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The codec forwarded.
    pub codec: CodecKind,
    /// Payload type the publisher uses for the codec.
    pub pt: u8,
    /// Payload type of its RTX stream, if offered.
    pub rtx_pt: Option<u8>,
    /// Payload type of RED (RFC 2198) carrying the codec, if negotiated (audio).
    pub red_pt: Option<u8>,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Jitsi source name: `{endpoint}-a0`, `{endpoint}-v0`, ... Shared with
    /// the allocation state and the source-map events that name it.
    pub source_name: Arc<str>,
    /// When a keyframe was last requested from the publisher.
    pub last_keyframe_request: Option<Instant>,
    /// Throttles keyframe requests toward the publisher.
    pub keyframes: KeyframeRequester,
    /// The layers of a simulcast source (video m-lines with send RIDs or an
    /// `a=ssrc-group:SIM`).
    pub simulcast: Option<SimulcastLayers>,
    /// Cache and NACK generation (video sources; per layer for simulcast).
    pub repair: Option<Box<SourceRepair>>,
    /// The source's clock, from the publisher's last sender report.
    pub clock: Option<SourceClock>,
    /// Packets received and accepted for forwarding.
    pub packets: u64,
    /// The m-line is marked as a screen (`a=content:slides`).
    pub screen: bool,
    /// Muted by a moderator: packets are dropped, not forwarded.
    pub muted: bool,
    /// Refused by the endpoint's policy: never mapped onto a slot, never forwarded.
    pub refused: Option<RefusalReason>,
    /// Measured bitrate of each layer (layer 0 without simulcast), for the
    /// allocator.
    pub layer_rates: LayerRates,
    /// The active layers (bit per layer) the last allocation saw; a change
    /// re-allocates.
    pub(super) allocated_mask: u8,
    /// The `maxHeight` last sent to the publisher as `SenderSourceConstraints`
    /// (0 before any: jvb's initial value, not sent).
    pub(super) announced_max_height: i32,
    /// Audio packets of silence (RFC 6464 level 127) in a row, up to the latest.
    pub silent_run: u32,
    /// The consumers this producer feeds: an index derived from
    /// [`Consumer::source`](super::Consumer::source), the source of truth, and
    /// maintained in exactly one place (`Router::assign`).
    pub(super) fanout: Vec<ConsumerKey>,
}

impl Producer {
    /// A producer with no consumers yet.
    pub fn new(
        owner: EndpointKey,
        mid: String,
        kind: MediaKind,
        codec: CodecKind,
        pt: u8,
        clock_rate: u32,
        source_name: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            owner,
            mid,
            kind,
            codec,
            pt,
            rtx_pt: None,
            red_pt: None,
            clock_rate,
            source_name: source_name.into(),
            last_keyframe_request: None,
            keyframes: KeyframeRequester::new(KeyframeConfig::default()),
            simulcast: None,
            repair: None,
            clock: None,
            packets: 0,
            screen: false,
            muted: false,
            refused: None,
            silent_run: 0,
            layer_rates: LayerRates::new(),
            allocated_mask: 0,
            announced_max_height: 0,
            fanout: Vec::with_capacity(16),
        }
    }

    /// Whether packets of this producer may be forwarded now.
    pub fn forwarding(&self) -> bool {
        !self.muted && self.refused.is_none()
    }

    /// The layers that arrive now, a bit per layer (layer 0 alone without
    /// simulcast).
    pub fn active_layer_mask(&self, now: Instant) -> u8 {
        let count = self
            .simulcast
            .as_ref()
            .map_or(1, SimulcastLayers::count)
            .min(MAX_LAYERS);
        (0..count as u8)
            .filter(|&l| self.layer_rates.active(l, now))
            .fold(0, |m, l| m | (1 << l))
    }

    /// Whether its slots may drop its temporal layers and rewrite its VP8
    /// numbering: simulcast sources (each slot's mapping history records the
    /// VP8 offsets, and retransmissions are renumbered with them) and sources
    /// without a packet cache. A single-stream source with a cache is
    /// forwarded whole.
    pub fn renumbered(&self) -> bool {
        self.simulcast.is_some() || self.repair.is_none()
    }

    /// The consumers it feeds now.
    pub fn consumers(&self) -> &[ConsumerKey] {
        &self.fanout
    }
}
