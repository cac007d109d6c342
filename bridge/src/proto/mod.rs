//! The sans-IO protocol core: no sockets, no clock reads, no threads.
//!
//! Everything takes `now` as an argument and writes output into buffers the
//! caller owns, so every behaviour is testable on a virtual clock.
//!
//! Where each mechanism lives (mediasoup's object model, str0m's layout):
//!
//! | file | holds |
//! |---|---|
//! | `shard.rs` | [`shard::ShardCore`]: port and conference lookup, dispatch to routers, the timer heap, counters, activity sums |
//! | `router/mod.rs` | [`router::Router`], one per conference: its endpoints, producers and consumers (generational keys, `router/keys.rs`), the router's timers |
//! | `router/join.rs` | an endpoint built from its offer, and the SDP answer |
//! | `router/packet.rs` | the RTP path (demux, RTX unwrapping, caching, rewrite, fan-out) and the RTCP path (keyframe requests, NACKs, reports) |
//! | `router/repair.rs` | NACKs toward publishers (`Nack` timer, per simulcast layer), receivers' NACKs answered from the packet cache through the slot's mapping history |
//! | `router/reports.rs` | sender reports per slot on the source's clock, RTT from receivers' report blocks |
//! | `router/forward.rs` | writing a receiver's copy of a packet, with its extension ids |
//! | `router/slots.rs` | which producer feeds which consumer (`Router::assign`, the one place) |
//! | `router/keyframe.rs` | PLIs toward publishers through each producer's `KeyframeRequester`, retry timer |
//! | `router/activity.rs` | who sends, event-driven sending windows |
//! | `router/control.rs` | leave/expiry, mute, refused sources, policy |
//! | `router/{producer,consumer,endpoint}.rs` | the objects; `consumer.rs` has the per-receiver seq/ts rewriting |
//! | `transport/mod.rs` | [`transport::Transport`], one per endpoint: state and named timers (DTLS, consent, reports, TWCC/REMB feedback) |
//! | `quality/` | the quality mechanisms the router and transports own (cache, NACK, keyframe throttle, TWCC, REMB, SR) |
//! | `transport/ice_gate.rs` | STUN answers and the validated-source gate |
//! | `transport/dtls_srtp.rs` | DTLS handshake to keys, SRTP/SRTCP unprotect and protect |
//! | `transport/demux.rs` | the SSRC table: SSRC -> (producer, rid, RTX), from SDP and MID/RID extensions |
//! | `transport/rtcp_term.rs` | RTCP termination: receiver reports, sender reports, PLI/FIR, NACKs |
//! | `timer.rs` | `TimerTable` per object, `TimerHeap` per shard |
//! | `rtp_ext.rs` | extension URIs, the per-transport id map, the extension block writer |
//! | `codec/` | payload formats: keyframes, layers, picture-id rewriting (`vp8.rs`) |
//! | `error.rs` | [`error::CoreError`] and its mapping to the control plane's `MediaError` |
//! | `sdp.rs`, `rtp.rs`, `rtcp.rs`, `stun.rs`, `ice.rs`, `dtls.rs`, `srtp/` | wire formats and protocol engines (`dtls_key.rs`: the DTLS signing key, parsed once) |
//! | `transmit.rs` | the caller-owned send queue |
//! | `resident.rs` | buffers whose memory is resident from their allocation (no slow creep of a long run's RSS) |
//! | `client.rs` | a client peer for tests and load generators |

pub mod client;
pub mod codec;
pub mod dtls;
pub mod dtls_key;
pub mod error;
pub mod ice;
pub mod quality;
pub mod resident;
pub mod router;
pub mod rtcp;
pub mod rtp;
pub mod rtp_ext;
pub mod sdp;
pub mod shard;
pub mod srtp;
pub mod stun;
pub mod timer;
pub mod transmit;
pub mod transport;
