//! The seam between the load engine and what it loads: a [`Target`] starts (or
//! finds) a media server, signals every endpoint of a [`Plan`] and hands back
//! [`Leg`]s, each a UDP socket with a [`Session`] that speaks the target's
//! transport. The engine ([`crate::engine`]) then paces media through the legs,
//! checks what comes back, and reads the CPU time of [`Target::pid`].
//!
//! # Adding a target (the Janus one, `bench/src/janus/`)
//!
//! 1. Implement [`Target`]: `start` the server pinned to [`RunOptions::target_core`]
//!    and return a value whose `Drop` stops it; `pid` is the process whose CPU
//!    time is measured (`None` when it is not ours, figures are then left out).
//! 2. In [`Target::connect`], for each [`EndpointPlan`] of the plan, make as many
//!    legs as the server needs (Janus VideoRoom: one publisher PeerConnection and
//!    one subscriber PeerConnection per remote feed; ringbridge: one leg per
//!    endpoint). A leg that publishes lists its streams in [`Leg::sends`] with the
//!    ids from [`Plan::stream_id`]; a leg that receives just returns the packets
//!    its session decrypts. The engine never looks at SSRCs to find a stream: the
//!    payload ([`crate::payload`]) names it, so any slot or feed mapping works.
//! 3. The session may finish ICE/DTLS inside `connect` (Janus wants publishers up
//!    before subscribers: call [`crate::engine::handshake`] on the legs made so
//!    far) or leave it to the engine, which handshakes every leg before media.
//! 4. Hook it into [`start`] below (`TargetKind::Janus`).
//!
//! Each published stream must reach every other endpoint of its conference
//! ([`Plan::fanout`]): loss is counted against that.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ringbridge_bridge::proto::client::{ClientPeer, RtpView};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::srtp::SrtpProfile;

use crate::BenchError;
pub use crate::shape::{EndpointPlan, Plan};

/// Which server the bench loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// ringbridge: started from the same build, or found at `--url`.
    Ringbridge,
    /// The null forwarder (`ringbridge-bench null-forwarder`): no ICE, no crypto.
    Null,
    /// Janus VideoRoom (`bench/src/janus/`).
    Janus,
}

impl TargetKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ringbridge => "ringbridge",
            Self::Null => "null",
            Self::Janus => "janus",
        }
    }
}

impl std::str::FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ringbridge" => Ok(Self::Ringbridge),
            "null" => Ok(Self::Null),
            "janus" => Ok(Self::Janus),
            other => Err(format!(
                "unknown target {other:?}: expected ringbridge, null or janus"
            )),
        }
    }
}

/// SRTP protection profile asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileChoice {
    /// AEAD_AES_128_GCM (RFC 7714), the profile the bridge prefers.
    Gcm,
    /// AES_CM_128_HMAC_SHA1_80 (RFC 3711).
    CmSha1,
}

impl ProfileChoice {
    /// The SRTP profiles the bench's DTLS clients offer for this choice: exactly one, so
    /// that every target (ringbridge, Janus) negotiates the same profile.
    pub fn offer(self) -> &'static [SrtpProfile] {
        match self {
            Self::Gcm => &[SrtpProfile::AeadAes128Gcm],
            Self::CmSha1 => &[SrtpProfile::Aes128CmSha1_80],
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gcm => "gcm",
            Self::CmSha1 => "cm-sha1",
        }
    }
}

impl std::str::FromStr for ProfileChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gcm" => Ok(Self::Gcm),
            "cm-sha1" => Ok(Self::CmSha1),
            other => Err(format!(
                "unknown profile {other:?}: expected gcm or cm-sha1"
            )),
        }
    }
}

/// Everything a target needs to start and connect.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// SRTP profile asked for.
    pub profile: ProfileChoice,
    /// The bridge's I/O backend (`media.io`): `uring`, `mmsg` or `auto`.
    pub io: String,
    /// Core the target is pinned to.
    pub target_core: usize,
    /// Core the generator runs on.
    pub generator_core: usize,
    /// The `ringbridge` binary (default: next to the bench binary).
    pub bridge_bin: Option<PathBuf>,
    /// A running bridge's public URL (`--url`); the bench then starts nothing.
    pub url: Option<String>,
    /// That bridge's `auth.app_secret` (`--secret`).
    pub secret: Option<String>,
    /// How long ICE and DTLS may take for all legs together.
    pub connect_timeout: Duration,
    /// A tag that makes room names unique to this run.
    pub run_tag: String,
    /// Run ringbridge and the null forwarder in a network namespace of their
    /// own behind a veth pair, as Janus always is (`--netns`).
    pub netns: bool,
    /// Percent of the media datagrams dropped each way inside the target's
    /// namespace once every leg is connected (`--loss`; 0: none).
    pub loss_percent: u8,
    /// `media.port` for the bridge the bench starts: 0 for a port per endpoint
    /// (`media.port_range`), else single-port mode on this port.
    pub media_port: u16,
    /// Ports in the `media.port_range` of the bridge the bench starts (at
    /// least 1000; more for runs with more endpoints).
    pub media_ports: u16,
    /// Offers a target posts at once while signalling (ringbridge; 1: one after
    /// the other). `scale` posts several so that a burst of joins reaches the
    /// bridge as a burst, not at the pace of one generator thread's round trips.
    pub signalling_parallel: usize,
}

/// One UDP flow of the generator: a socket, the server's address, and the
/// protocol state that speaks to it.
pub struct Leg {
    /// Non-blocking socket bound on 127.0.0.1, or on the host end of the
    /// target's veth pair.
    pub socket: UdpSocket,
    /// Where media and control datagrams go.
    pub remote: SocketAddr,
    /// ICE/DTLS/SRTP (or plain RTP) state.
    pub session: Box<dyn Session>,
    /// Streams this leg publishes.
    pub sends: Vec<SendStream>,
    /// Index of the endpoint (in [`Plan::all`]) this leg belongs to.
    pub endpoint: usize,
}

impl std::fmt::Debug for Leg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leg")
            .field("remote", &self.remote)
            .field("sends", &self.sends)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// A stream a leg publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendStream {
    /// [`Plan::stream_id`].
    pub id: u32,
    /// Audio (Opus-shaped) or video (VP8-shaped).
    pub kind: MediaKind,
    /// The simulcast layer (0 smallest), for a simulcast video.
    pub layer: Option<u8>,
}

impl SendStream {
    /// The streams endpoint `global` of the plan publishes: its audio, then its
    /// video (three layers of the same stream id for a simulcast video).
    pub fn published_by(global: usize, ep: &EndpointPlan) -> Vec<SendStream> {
        let audio = ep.audio.then(|| SendStream {
            id: Plan::stream_id(global, false),
            kind: MediaKind::Audio,
            layer: None,
        });
        let layers: &[Option<u8>] = match (ep.video, ep.simulcast) {
            (false, _) => &[],
            (true, false) => &[None],
            (true, true) => &[Some(0), Some(1), Some(2)],
        };
        let video = layers.iter().map(|&layer| SendStream {
            id: Plan::stream_id(global, true),
            kind: MediaKind::Video,
            layer,
        });
        audio.into_iter().chain(video).collect()
    }

    /// Whether receivers get this stream: every stream but the lower layers of
    /// a simulcast video (the bridge forwards one layer per receiver, the top
    /// one when nothing constrains it).
    pub fn forwarded(&self) -> bool {
        self.layer
            .is_none_or(|l| usize::from(l) + 1 == crate::shape::SIMULCAST_LAYERS.len())
    }
}

/// The transport of one leg, sans-IO: the engine owns the socket and the clock.
pub trait Session {
    /// Next control datagram (STUN, DTLS, registration) to send, if any. Called
    /// every few milliseconds, not per packet: it may allocate.
    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>>;
    /// Runs timers (DTLS retransmissions).
    fn handle_timeout(&mut self, now: Instant);
    /// Whether media can flow (ICE and DTLS done, keys installed).
    fn is_connected(&self) -> bool;
    /// Why the session failed, if it did.
    fn failure(&self) -> Option<String>;
    /// Writes one media packet of the leg's source of `kind` into `out` (the
    /// 12-byte RTP header, `payload`, and any SRTP tag) and returns its length.
    /// Must not allocate.
    fn write_rtp(
        &mut self,
        kind: MediaKind,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, String>;
    /// [`Session::write_rtp`] for layer `layer` of a simulcast video. The
    /// default publishes no layers.
    #[allow(clippy::too_many_arguments)]
    fn write_rtp_layer(
        &mut self,
        layer: u8,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, String> {
        let _ = (seq, ts, marker, payload, out);
        Err(format!("this target publishes no simulcast layer {layer}"))
    }
    /// Takes one received datagram, decrypting in place; returns the RTP packet
    /// it held, or `None` for control traffic and packets that failed. Must not
    /// allocate for media.
    fn handle_datagram(&mut self, now: Instant, datagram: &mut [u8]) -> Option<RtpView>;
    /// Datagrams that failed authentication or decryption.
    fn auth_failures(&self) -> u64;
    /// The negotiated SRTP profile (`None` for plain RTP).
    fn profile(&self) -> Option<&'static str>;
}

/// A server under load.
pub trait Target {
    /// `ringbridge`, `null` or `janus`.
    fn name(&self) -> &'static str;
    /// The process whose CPU time is measured; `None` when it is not measured
    /// (a bridge the bench did not start).
    fn pid(&self) -> Option<u32>;
    /// The server's I/O backend, when it says (`uring`, `mmsg`).
    fn io_backend(&self) -> Option<String>;
    /// How the generator reaches it: `"loopback"` or `"veth"` (a network
    /// namespace of its own, [`crate::netns`]).
    fn network(&self) -> &'static str {
        "loopback"
    }
    /// The network namespace it runs in, if any (`--loss` drops datagrams there).
    fn netns_name(&self) -> Option<&str> {
        None
    }
    /// Signals every endpoint of `plan` and returns its legs.
    fn connect(&mut self, plan: &Plan, opts: &RunOptions) -> Result<Vec<Leg>, BenchError>;
}

/// Starts the target of `kind` with `opts`.
pub fn start(kind: TargetKind, opts: &RunOptions) -> Result<Box<dyn Target>, BenchError> {
    match kind {
        TargetKind::Ringbridge => Ok(Box::new(crate::ringbridge::RingbridgeTarget::start(opts)?)),
        TargetKind::Null => Ok(Box::new(crate::null::NullTarget::start(opts)?)),
        TargetKind::Janus => janus(opts),
    }
}

/// Whether `--target janus` is compiled in.
pub const JANUS_AVAILABLE: bool = true;

fn janus(opts: &RunOptions) -> Result<Box<dyn Target>, BenchError> {
    crate::janus::bench_target::start(opts)
}

/// The [`Session`] of a WebRTC leg: the bridge crate's sans-IO [`ClientPeer`].
impl Session for ClientPeer {
    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        ClientPeer::poll_transmit(self, now)
    }
    fn handle_timeout(&mut self, now: Instant) {
        ClientPeer::handle_timeout(self, now);
    }
    fn is_connected(&self) -> bool {
        ClientPeer::is_connected(self)
    }
    fn failure(&self) -> Option<String> {
        ClientPeer::failure(self).map(str::to_owned)
    }
    fn write_rtp(
        &mut self,
        kind: MediaKind,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, String> {
        self.send_rtp_into(kind, seq, ts, marker, payload, out)
            .map_err(|e| e.to_string())
    }
    fn write_rtp_layer(
        &mut self,
        layer: u8,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, String> {
        self.send_rtp_layer_into(layer, seq, ts, marker, payload, out)
            .map_err(|e| e.to_string())
    }
    fn handle_datagram(&mut self, now: Instant, datagram: &mut [u8]) -> Option<RtpView> {
        self.handle_receive_in_place(now, datagram)
    }
    fn auth_failures(&self) -> u64 {
        self.srtp_failures as u64
    }
    fn profile(&self) -> Option<&'static str> {
        ClientPeer::profile(self).map(|p| p.name())
    }
}
