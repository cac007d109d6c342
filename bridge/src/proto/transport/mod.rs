//! One endpoint's transport, sans-IO: the ICE-lite gate (`ice_gate.rs`), DTLS and
//! SRTP (`dtls_srtp.rs`), the receive demux ([`demux`]) and RTCP termination
//! ([`rtcp_term`]); this file holds the state and its timers, and the publisher's
//! bandwidth feedback: transport-cc feedback from a
//! [`TwccReceiver`], or REMB from a [`RembEstimator`], as the answer
//! negotiated. Later the pacer.
//!
//! A [`Transport`] never sees another endpoint: the [`Router`](super::router::Router)
//! that owns it hands it datagrams (`handle_stun`, `handle_dtls`, `unprotect_*`),
//! asks it to protect and queue what goes to its peer (`send_rtp`, `send_rtcp`),
//! and calls [`Transport::handle_timeout`] when [`Transport::poll_timeout`] is due.

pub mod demux;
mod dtls_srtp;
mod ice_gate;
pub mod rtcp_term;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dimpl::DtlsCertificate;
use rand::Rng;
use rand::distr::Alphanumeric;

use super::dtls::DtlsTransport;
use super::ice::IceLite;
use super::quality::bwe::{BweConfig, BweStats, SendSideBwe};
use super::quality::remb::{self, RembConfig, RembEstimator};
use super::quality::twcc::{TwccConfig, TwccReceiver, transport_sequence_number};
use super::rtp::RtpHeader;
use super::rtp_ext::{Extension, ExtensionMap};
use super::sdp::{Fingerprint, SendSideFeedback};
use super::shard::ShardCounters;
use super::timer::{Scheduled, TimerName, TimerTable};
use super::transmit::TxQueue;
use demux::Demux;
use dtls_srtp::SrtpPair;

/// How often the bridge sends receiver reports to each publisher.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Lifecycle of a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportState {
    /// Waiting for ICE checks and the DTLS handshake.
    Connecting,
    /// DTLS done and verified; SRTP flows.
    Connected,
}

/// Why a transport is finished (the endpoint is removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// The DTLS association failed or timed out.
    DtlsFailed,
    /// No consent check for 30 s (RFC 7675).
    ConsentExpired,
}

impl TransportFailure {
    /// The reason reported in `MediaEvent::EndpointExpired`.
    pub fn reason(self) -> &'static str {
        match self {
            TransportFailure::DtlsFailed => "dtls-failed",
            TransportFailure::ConsentExpired => "consent-expired",
        }
    }
}

/// The named timers of a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportTimer {
    /// DTLS retransmission or handshake timeout.
    Dtls,
    /// ICE consent expiry.
    Consent,
    /// Next receiver report.
    Report,
    /// Next transport-cc feedback or REMB check.
    Feedback,
}

impl TimerName for TransportTimer {
    const COUNT: usize = 4;
    fn index(self) -> usize {
        self as usize
    }
    fn from_index(index: usize) -> Self {
        match index {
            0 => TransportTimer::Dtls,
            1 => TransportTimer::Consent,
            2 => TransportTimer::Report,
            _ => TransportTimer::Feedback,
        }
    }
}

/// How often a REMB estimator is asked whether an estimate is due (it sends
/// every second, or at once on a drop).
pub const REMB_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The publisher's bandwidth feedback state (one per transport).
#[derive(Debug)]
enum Feedback {
    None,
    Twcc(Box<TwccReceiver>),
    Remb(Box<RembEstimator>),
}

/// What a transport needs from the shard to be built.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Local UDP port the endpoint owns.
    pub port: u16,
    /// Index of the shard the endpoint lives on, encoded in its local ufrag
    /// (see [`ice::local_ufrag`](super::ice::local_ufrag)).
    pub shard: usize,
    /// The local UDP port its datagrams leave from and that the answer's
    /// candidates name: `port` itself, or in single-port mode (`media.port`)
    /// the shared port, `port` then being only the endpoint's key on its shard.
    pub send_port: u16,
    /// The shard's DTLS configuration.
    pub dtls_config: Arc<dimpl::Config>,
    /// The shard's certificate.
    pub certificate: DtlsCertificate,
    /// The peer's certificate fingerprint, from the offer.
    pub remote_fingerprint: Fingerprint,
    /// The peer's ICE ufrag, from the offer.
    pub remote_ufrag: String,
    /// Header extension ids of the whole (BUNDLE) transport.
    pub extensions: ExtensionMap,
    /// The bandwidth feedback the answer negotiated for the peer's sending.
    pub feedback: SendSideFeedback,
}

/// Output of [`Transport::send_rtp`]'s writer: the transport-wide values a
/// forwarded packet may carry.
#[derive(Debug, Clone, Copy)]
pub struct SendContext<'a> {
    /// The receiver's extension ids.
    pub extensions: &'a ExtensionMap,
    /// The transport-wide sequence number for this packet.
    pub twcc_seq: u16,
}

/// One endpoint's connection.
pub struct Transport {
    port: u16,
    send_port: u16,
    state: TransportState,
    ice: IceLite,
    dtls: DtlsTransport,
    srtp: Option<SrtpPair>,
    /// The receive demux (SSRC table).
    pub demux: Demux,
    extensions: ExtensionMap,
    rtcp_ssrc: u32,
    twcc_seq: u16,
    timers: TimerTable<TransportTimer, { TransportTimer::COUNT }>,
    /// What the shard's timer heap holds for this transport.
    pub scheduled: Scheduled,
    negotiated: Option<(&'static str, &'static str)>,
    feedback: Feedback,
    /// The estimate toward the peer as a receiver, fed by its transport-cc
    /// feedback (where the transport-wide sequence number is in the bundle's
    /// extensions).
    bwe: Option<Box<SendSideBwe>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("port", &self.port)
            .field("state", &self.state)
            .field("ice", &self.ice)
            .field("negotiated", &self.negotiated)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A new transport with fresh ICE credentials, created at `now`.
    pub fn new(cfg: TransportConfig, now: Instant) -> Self {
        let mut rng = rand::rng();
        let random: String = (&mut rng)
            .sample_iter(Alphanumeric)
            .take(8)
            .map(char::from)
            .collect();
        let ufrag = super::ice::local_ufrag(cfg.shard, &random);
        let pwd: String = (&mut rng)
            .sample_iter(Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        let ice = IceLite::new(ufrag, pwd, cfg.remote_ufrag, now);
        let bwe = cfg
            .extensions
            .id(Extension::TransportCc)
            .map(|_| Box::new(SendSideBwe::new(BweConfig::default())));
        let mut timers = TimerTable::default();
        timers.set(TransportTimer::Consent, ice.consent_deadline());
        timers.set(TransportTimer::Report, now + REPORT_INTERVAL);
        Self {
            port: cfg.port,
            send_port: cfg.send_port,
            state: TransportState::Connecting,
            ice,
            dtls: DtlsTransport::new(
                cfg.dtls_config,
                cfg.certificate,
                cfg.remote_fingerprint,
                now,
            ),
            srtp: None,
            demux: Demux::new(&cfg.extensions),
            extensions: cfg.extensions,
            rtcp_ssrc: rng.random::<u32>() | 1,
            twcc_seq: rng.random(),
            timers,
            scheduled: Scheduled::default(),
            negotiated: None,
            feedback: match cfg.feedback {
                SendSideFeedback::None => Feedback::None,
                SendSideFeedback::Twcc => {
                    Feedback::Twcc(Box::new(TwccReceiver::new(TwccConfig::default())))
                }
                SendSideFeedback::Remb => {
                    Feedback::Remb(Box::new(RembEstimator::new(RembConfig::default())))
                }
            },
            bwe,
        }
    }

    /// The send-side estimate toward this endpoint as a receiver, bits per
    /// second: `None` until its first transport-cc feedback (or when the
    /// transport-wide sequence number was not negotiated).
    pub fn downlink_estimate(&self) -> Option<u64> {
        self.bwe.as_deref().and_then(SendSideBwe::estimate)
    }

    /// The rate a probe cluster toward this endpoint should aim at, if one is
    /// due for layers that want `wanted_bps` (see [`SendSideBwe::probe_due`]).
    pub fn probe_due(&mut self, now: Instant, wanted_bps: u64) -> Option<u64> {
        self.bwe.as_deref_mut()?.probe_due(now, wanted_bps)
    }

    /// Bytes of padding due toward this endpoint for layers that want
    /// `wanted_bps` (see [`SendSideBwe::padding_due`]); 0 without an estimator.
    pub fn padding_due(&mut self, now: Instant, wanted_bps: u64) -> usize {
        self.bwe
            .as_deref_mut()
            .map_or(0, |bwe| bwe.padding_due(now, wanted_bps))
    }

    /// The next probe-cluster-many packets sent are a probe aiming at `target_bps`.
    pub fn start_probe(&mut self, now: Instant, target_bps: u64) {
        if let Some(bwe) = self.bwe.as_deref_mut() {
            bwe.start_probe(now, target_bps);
        }
    }

    /// What a video allocation toward this endpoint may spend, including the
    /// start value (before any feedback), if there is an estimator: the
    /// estimate less what drains a standing queue ([`SendSideBwe::budget`]).
    pub fn downlink_budget(&self) -> Option<u64> {
        self.bwe.as_deref().map(SendSideBwe::budget)
    }

    /// Whether loss holds the send-side estimate down now
    /// ([`SendSideBwe::losing`]).
    pub fn downlink_losing(&self) -> bool {
        self.bwe.as_deref().is_some_and(SendSideBwe::losing)
    }

    /// Whether the link toward this endpoint is congested now: losing, or
    /// queueing past [`STANDING_QUEUE`](crate::proto::quality::bwe::STANDING_QUEUE)
    /// ([`SendSideBwe::congested`]).
    pub fn downlink_congested(&self) -> bool {
        self.bwe.as_deref().is_some_and(SendSideBwe::congested)
    }

    /// How long the queue toward the peer holds a packet now, as its
    /// transport-cc feedback shows it ([`SendSideBwe::queue_delay`]); zero
    /// without a send-side estimator.
    pub fn downlink_queue_delay(&self) -> Duration {
        self.bwe
            .as_deref()
            .map_or(Duration::ZERO, SendSideBwe::queue_delay)
    }

    /// The send-side estimator's counters, if there is one.
    pub fn bwe_stats(&self) -> Option<BweStats> {
        self.bwe.as_deref().map(SendSideBwe::stats)
    }

    /// Records an incoming RTP packet for the peer's bandwidth estimation (its
    /// transport-wide sequence number, or its abs-send-time), before anything
    /// else looks at it: RTX and padding probes count too.
    pub fn record_arrival(&mut self, now: Instant, header: &RtpHeader, packet: &[u8]) {
        match &mut self.feedback {
            Feedback::None => {}
            Feedback::Twcc(twcc) => {
                if let Some(seq) = self
                    .extensions
                    .id(Extension::TransportCc)
                    .and_then(|id| transport_sequence_number(header, packet, id))
                {
                    twcc.handle_packet(now, seq);
                    if let Some(at) = twcc.poll_timeout() {
                        self.timers.set_earliest(TransportTimer::Feedback, at);
                    }
                }
            }
            Feedback::Remb(remb) => {
                if let Some(abs) = self
                    .extensions
                    .id(Extension::AbsSendTime)
                    .and_then(|id| remb::abs_send_time(header, packet, id))
                {
                    remb.handle_packet(now, abs, packet.len());
                    self.timers
                        .set_earliest(TransportTimer::Feedback, now + REMB_POLL_INTERVAL);
                }
            }
        }
    }

    /// Sends the transport-cc feedback or REMB that is due.
    fn send_feedback(&mut self, now: Instant, tx: &mut TxQueue, counters: &mut ShardCounters) {
        if self.state != TransportState::Connected {
            return;
        }
        let media_ssrc = self
            .demux
            .entries()
            .iter()
            .find(|e| !e.rtx)
            .map_or(0, |e| e.ssrc);
        let mut feedback = std::mem::replace(&mut self.feedback, Feedback::None);
        match &mut feedback {
            Feedback::None => {}
            Feedback::Twcc(twcc) => {
                // What did not fit one packet follows in the next (a bounded loop).
                for _ in 0..4 {
                    let sent = self.send_rtcp(tx, |out, sender| {
                        twcc.poll_feedback(now, out, sender, media_ssrc)
                            .ok()
                            .flatten()
                    });
                    if sent.is_none() {
                        break;
                    }
                    counters.twcc_feedback_sent += 1;
                }
                if let Some(at) = twcc.poll_timeout() {
                    self.timers.set(
                        TransportTimer::Feedback,
                        at.max(now + Duration::from_millis(1)),
                    );
                }
            }
            Feedback::Remb(remb) => {
                let mut ssrcs = [0u32; 8];
                let mut n = 0;
                for e in self.demux.entries().iter().filter(|e| !e.rtx) {
                    if n < ssrcs.len() {
                        ssrcs[n] = e.ssrc;
                        n += 1;
                    }
                }
                if n > 0
                    && self
                        .send_rtcp(tx, |out, sender| {
                            remb.write_remb(now, out, sender, &ssrcs[..n])
                                .ok()
                                .filter(|&len| len > 0)
                        })
                        .is_some()
                {
                    counters.remb_sent += 1;
                }
            }
        }
        self.feedback = feedback;
    }

    /// The endpoint's key on its shard (its own local UDP port unless in
    /// single-port mode).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The local UDP port its datagrams leave from.
    pub fn send_port(&self) -> u16 {
        self.send_port
    }

    /// Whether `from` passed an ICE check of this endpoint.
    pub fn is_validated(&self, from: SocketAddr) -> bool {
        self.ice.is_validated(from)
    }

    /// Lifecycle state.
    pub fn state(&self) -> TransportState {
        self.state
    }

    /// Our ICE username fragment (for the answer).
    pub fn local_ufrag(&self) -> &str {
        self.ice.local_ufrag()
    }

    /// Our ICE password (for the answer; never logged).
    pub fn local_pwd(&self) -> &str {
        self.ice.local_pwd()
    }

    /// Negotiated SRTP profile and DTLS version, once connected.
    pub fn negotiated(&self) -> Option<(&'static str, &'static str)> {
        self.negotiated
    }

    /// The transport's header extension ids.
    pub fn extensions(&self) -> &ExtensionMap {
        &self.extensions
    }

    /// Whether an ICE check selected an address.
    pub fn ice_selected(&self) -> bool {
        self.ice.selected().is_some()
    }

    /// Where to send media to this endpoint, if it is reachable and keyed.
    pub fn media_target(&self) -> Option<SocketAddr> {
        if self.state == TransportState::Connected {
            self.ice.selected()
        } else {
            None
        }
    }

    /// When [`Transport::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// Timers: DTLS retransmissions, consent expiry, receiver reports.
    /// `Ok(true)` when DTLS completed during the call.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        since_epoch: Duration,
        tx: &mut TxQueue,
        scratch: &mut [u8],
        counters: &mut ShardCounters,
    ) -> Result<bool, TransportFailure> {
        let mut connected = false;
        while let Some(timer) = self.timers.take_expired(now) {
            match timer {
                TransportTimer::Dtls => {
                    if let Err(e) = self.dtls.handle_timeout(now) {
                        tracing::info!(port = self.port, error = %e, "dtls timed out");
                        counters.dtls_failures += 1;
                        return Err(TransportFailure::DtlsFailed);
                    }
                    connected |= self.drain_dtls(tx, scratch, counters)?;
                }
                TransportTimer::Consent => {
                    let deadline = self.ice.consent_deadline();
                    if now >= deadline {
                        if self.ice.selected().is_none() {
                            counters.ice_failures += 1;
                        }
                        return Err(TransportFailure::ConsentExpired);
                    }
                    self.timers.set(TransportTimer::Consent, deadline);
                }
                TransportTimer::Feedback => self.send_feedback(now, tx, counters),
                TransportTimer::Report => {
                    self.timers
                        .set(TransportTimer::Report, now + REPORT_INTERVAL);
                    if self.state == TransportState::Connected {
                        self.send_receiver_report(since_epoch, tx);
                    }
                }
            }
        }
        Ok(connected)
    }
}
