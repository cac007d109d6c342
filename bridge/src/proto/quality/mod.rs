//! Media quality mechanisms, each a self-contained sans-IO state machine with its own
//! virtual-clock tests, to be owned by the Transport (per endpoint) and the Router (per
//! conference): packet cache and RTX (RFC 4588), NACK generation toward senders and
//! NACK answering toward receivers (RFC 4585), keyframe request throttling, transport-wide
//! congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01),
//! a receive-side estimate sent as REMB, and sender reports per slot.
//!
//! Every type here takes `now: Instant` as an argument, writes into caller-owned buffers
//! and never allocates per packet (`bridge/tests/quality_no_alloc.rs` counts). The rings
//! an endpoint may never need are taken late, so that a join costs little memory: the
//! packet cache and a slot's retransmission record at their first use, the NACK window,
//! the send history and the TWCC arrivals in a few doubling steps up to their caps.
//! The layout follows str0m: `rtp/rtcp/{nack,twcc}.rs`, `streams/rtx_cache.rs`, `bwe/`.

//! Who owns what, once wired in:
//! - per video source (Producer), per simulcast layer where it has layers:
//!   [`rtx_cache::RtxCache`], [`nack::NackGenerator`]; per source:
//!   [`keyframe::KeyframeRequester`], and the source's last SR as a
//!   [`sender_report::SourceClock`]; a simulcast source's [`simulcast::SimulcastLayers`];
//! - per slot (Consumer): [`nack_responder::NackResponder`] with the slot's
//!   [`slot_history::SlotHistory`] of mappings,
//!   [`keyframe::ReceiverKeyframeState`], [`sender_report::SlotSenderReport`],
//!   [`simulcast::LayerSwitch`], [`temporal::TemporalFilter`];
//! - per Transport toward its receiver: a [`bwe::SendSideBwe`] fed by the
//!   receiver's transport-cc feedback;
//! - per publishing Transport: [`twcc::TwccReceiver`] (when transport-cc was
//!   negotiated) or [`remb::RembEstimator`] (REMB with abs-send-time only);
//! - [`rtx`] is stateless: unwrap a publisher's RTX before anything else sees it;
//! - per endpoint: a [`dominant_speaker::SpeakerActivity`] of its audio levels, and
//!   per conference (Router) a [`dominant_speaker::DominantSpeaker`];
//! - [`stats::QualityStats`] sums every object's counters for the metrics.

pub mod allocation;
pub mod bwe;
pub mod dominant_speaker;
pub mod keyframe;
pub mod layer_rate;
pub mod nack;
pub mod nack_responder;
pub mod remb;
pub mod rtx;
pub mod rtx_cache;
pub mod seen;
pub mod sender_report;
pub mod simulcast;
pub mod slot_history;
pub mod stats;
pub mod temporal;
pub mod twcc;
pub mod upgrade_hold;
