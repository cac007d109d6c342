//! The sans-IO protocol core: no sockets, no clock reads, no threads.
//!
//! Everything takes `now` as an argument and writes output into buffers the
//! caller owns, so every behaviour is testable on a virtual clock.

pub mod client;
pub mod codec;
pub mod dtls;
pub mod error;
pub mod ice;
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
