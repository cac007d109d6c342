//! The media object model, after mediasoup: a conference (Router) holds endpoints
//! (Transports); a [`Producer`] is one incoming source; a [`Consumer`] is one receive
//! slot of one receiver, and owns all per-receiver rewriting state.

mod consumer;
mod forward;
mod producer;

pub use consumer::{Consumer, Rewrite, SourceRef};
pub use forward::write_forwarded;
pub use producer::Producer;
