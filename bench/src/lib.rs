//! ringbridge-bench: the load-test harness. Synthetic WebRTC endpoints that
//! really signal, do ICE, DTLS and SRTP against a bridge, check every packet
//! they get back, and measure the bridge's CPU time per forwarded packet,
//! side by side with a null forwarder (and Janus, when compiled in).
//!
//! - [`target`]: the seam between the engine and what it loads.
//! - [`engine`]: the single-threaded, batched, paced generator and checker.
//! - [`ringbridge`], [`null`]: the targets.
//! - [`verify`]: which received packets are decrypted and checked, and how
//!   the others are accounted from their headers.
//! - [`report`], [`plot`]: what comes out.
//! - [`knee`], [`scale`], [`soak`], [`flood`]: the searches and long runs
//!   built on them.

pub mod engine;
pub mod flood;
pub mod interrupt;
pub mod janus;
pub mod knee;
pub mod mmsg;
pub mod netns;
pub mod null;
pub mod payload;
pub mod plot;
pub mod report;
pub mod ringbridge;
pub mod runner;
pub mod scale;
pub mod shape;
pub mod soak;
pub mod sys;
pub mod target;
pub mod verify;

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A bad flag or flag combination.
    #[error("{0}")]
    Config(String),
    /// The target could not be started or reached.
    #[error("target: {0}")]
    Target(String),
    /// Signalling, ICE or DTLS failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The feature is not compiled in.
    #[error("{0}")]
    Unavailable(String),
    /// SIGINT or SIGTERM: the run stopped, its targets were stopped and its
    /// namespaces removed.
    #[error("interrupted: the targets were stopped and the namespaces removed")]
    Interrupted,
    /// An I/O error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}
