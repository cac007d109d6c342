//! A sans-IO WebRTC client peer: the far side of the bridge, built from the same
//! pieces (STUN, dimpl as DTLS client, SRTP). Used by the two-peer tests on a
//! virtual clock and by load generators.
//!
//! Shape of use: [`ClientPeer::new`] → send [`ClientPeer::offer`] to the bridge →
//! [`ClientPeer::handle_answer`] → loop { [`ClientPeer::poll_transmit`] until `None`,
//! deliver datagrams with [`ClientPeer::handle_receive`], call
//! [`ClientPeer::handle_timeout`] } and, once [`ClientPeer::is_connected`], send media
//! with [`ClientPeer::send_rtp`].
//!
//! Load generators use the allocation-free variants: [`ClientPeer::send_rtp_into`]
//! protects into a buffer the caller owns, and [`ClientPeer::handle_receive_in_place`]
//! decrypts SRTP in the caller's buffer and returns an [`RtpView`] instead of
//! queueing a [`ReceivedRtp`].

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dimpl::{Dtls, DtlsCertificate, Output};
use rand::Rng;
use rand::distr::Alphanumeric;

use super::dtls::{fingerprint_matches, sha256_fingerprint};
use super::sdp::{Fingerprint, MediaKind, Offer, format_fingerprint};
use super::srtp::{self, SrtpContext, SrtpError, SrtpProfile};
use super::stun::{self, BindingRequest, IceRole, IntegrityKey, MessageType, TransactionId};

/// Payload type the client uses for Opus.
pub const OPUS_PT: u8 = 111;
/// Payload type the client uses for VP8.
pub const VP8_PT: u8 = 96;

/// Interval between connectivity checks before the first success, and after.
const CHECK_INTERVAL: Duration = Duration::from_millis(50);
const CONSENT_INTERVAL: Duration = Duration::from_secs(5);

/// Which DTLS version the client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientDtls {
    /// Offer 1.3 and 1.2, as browsers do.
    #[default]
    Auto,
    /// DTLS 1.2 only.
    V12,
    /// DTLS 1.3 only.
    V13,
}

/// What the client publishes and how many receive slots it asks for.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// DTLS version(s) offered.
    pub dtls: ClientDtls,
    /// DTLS MTU: records are fragmented to fit (a small value splits the
    /// ClientHello across several records and datagrams).
    pub dtls_mtu: usize,
    /// Publish one Opus source.
    pub audio: bool,
    /// Publish one VP8 source.
    pub video: bool,
    /// `recvonly` audio m-lines.
    pub audio_slots: usize,
    /// `recvonly` video m-lines.
    pub video_slots: usize,
    /// SRTP profiles offered in the DTLS `use_srtp` extension, in this order
    /// ([`SrtpProfile::BROWSER_OFFER`] is what browsers offer).
    pub srtp_profiles: &'static [SrtpProfile],
}

/// Why the client could not proceed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The answer could not be used.
    #[error("bad answer: {0}")]
    BadAnswer(String),
    /// DTLS failed.
    #[error("dtls: {0}")]
    Dtls(String),
    /// SRTP failed.
    #[error("srtp: {0}")]
    Srtp(#[from] SrtpError),
    /// Not connected yet.
    #[error("not connected")]
    NotConnected,
    /// A simulcast layer the client does not publish.
    #[error("no video layer {0}")]
    NoSuchLayer(u8),
}

/// An RTP packet the client received and decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRtp {
    /// SSRC (a bridge slot SSRC).
    pub ssrc: u32,
    /// Payload type.
    pub pt: u8,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub ts: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// An RTP packet decrypted in the caller's buffer by
/// [`ClientPeer::handle_receive_in_place`]: its header fields and where its payload
/// lies in that buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpView {
    /// SSRC (a bridge slot SSRC).
    pub ssrc: u32,
    /// Payload type.
    pub pt: u8,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub ts: u32,
    /// Marker bit.
    pub marker: bool,
    /// The payload's bytes in the buffer given to
    /// [`ClientPeer::handle_receive_in_place`].
    pub payload: Range<usize>,
}

/// A bridge slot from the answer: `mid`, kind and the SSRC the bridge sends it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredSlot {
    /// The m-line.
    pub mid: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The slot SSRC (`a=ssrc` in the answer).
    pub ssrc: u32,
}

struct Remote {
    addr: SocketAddr,
    ufrag: String,
    key: IntegrityKey,
    fingerprint: Fingerprint,
}

/// The dimpl configuration for a client with this MTU and these SRTP profiles,
/// built once per process and shared. Building one runs dimpl's provider checks
/// (a key exchange and a signature verification on P-256 and P-384 each), which
/// cost more than the client's whole DTLS handshake: a load generator that built
/// one per peer spent most of its time there (ringbridge-bench scale: 57 % of the
/// generator's CPU), not loading the bridge.
fn client_dtls_config(
    mtu: usize,
    profiles: &[SrtpProfile],
) -> Result<Arc<dimpl::Config>, ClientError> {
    type Memo = Vec<(usize, Vec<SrtpProfile>, Arc<dimpl::Config>)>;
    static BUILT: std::sync::Mutex<Memo> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, _, c)) = built
        .iter()
        .find(|(m, p, _)| *m == mtu && p.as_slice() == profiles)
    {
        return Ok(c.clone());
    }
    let config = Arc::new(
        dimpl::Config::builder()
            .mtu(mtu)
            .srtp_profiles(&super::dtls::to_dimpl(profiles))
            .build()
            .map_err(|e| ClientError::Dtls(e.to_string()))?,
    );
    built.push((mtu, profiles.to_vec(), config.clone()));
    Ok(config)
}

/// The client side of one WebRTC connection to the bridge.
pub struct ClientPeer {
    cfg: ClientConfig,
    ufrag: String,
    pwd: String,
    cert: DtlsCertificate,
    /// SSRC of the published audio source.
    pub audio_ssrc: u32,
    /// SSRC of the published video source.
    pub video_ssrc: u32,
    /// SSRC simulcast: the media SSRCs of three video layers, smallest first,
    /// announced as `a=ssrc-group:SIM` in the offer (set before
    /// [`ClientPeer::offer`]); sent with [`ClientPeer::send_rtp_layer_into`].
    pub video_layers: Option<[u32; 3]>,
    remote: Option<Remote>,
    dtls: Option<Dtls>,
    dtls_deadline: Option<Instant>,
    ice_ok: bool,
    next_check: Instant,
    tie_breaker: u64,
    outbound: Option<SrtpContext>,
    inbound: Option<SrtpContext>,
    profile: Option<SrtpProfile>,
    peer_cert_ok: bool,
    queue: VecDeque<Vec<u8>>,
    /// RTP received, in arrival order.
    pub received_rtp: Vec<ReceivedRtp>,
    /// Media SSRCs of PLIs received (keyframe requests from the bridge).
    pub received_pli: Vec<u32>,
    /// Number of RTCP receiver reports received.
    pub received_rr: usize,
    /// Every decrypted RTCP compound packet received, whole.
    pub received_rtcp: Vec<Vec<u8>>,
    /// Slots announced in the answer.
    pub slots: Vec<AnsweredSlot>,
    /// Datagrams dropped because they failed SRTP.
    pub srtp_failures: usize,
    /// Keep every decrypted RTP packet whole in [`ClientPeer::received_raw_rtp`]
    /// (off by default; tests that read header extensions turn it on).
    pub keep_raw_rtp: bool,
    /// Decrypted RTP packets, header and all, when `keep_raw_rtp` is on.
    pub received_raw_rtp: Vec<Vec<u8>>,
    failed: Option<String>,
}

impl std::fmt::Debug for ClientPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPeer")
            .field("ufrag", &self.ufrag)
            .field("ice_ok", &self.ice_ok)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl ClientPeer {
    /// A client with fresh credentials and certificate.
    pub fn new(cfg: ClientConfig, now: Instant) -> Result<Self, ClientError> {
        let mut rng = rand::rng();
        let cert = dimpl::certificate::generate_self_signed_certificate()
            .map_err(|e| ClientError::Dtls(format!("{e:?}")))?;
        Ok(Self {
            cfg,
            ufrag: (&mut rng)
                .sample_iter(Alphanumeric)
                .take(8)
                .map(char::from)
                .collect(),
            pwd: (&mut rng)
                .sample_iter(Alphanumeric)
                .take(24)
                .map(char::from)
                .collect(),
            cert,
            audio_ssrc: rng.random::<u32>() | 1,
            video_ssrc: rng.random::<u32>() | 2,
            video_layers: None,
            remote: None,
            dtls: None,
            dtls_deadline: None,
            ice_ok: false,
            next_check: now,
            tie_breaker: rng.random(),
            outbound: None,
            inbound: None,
            profile: None,
            peer_cert_ok: false,
            queue: VecDeque::new(),
            received_rtp: Vec::new(),
            received_pli: Vec::new(),
            received_rr: 0,
            received_rtcp: Vec::new(),
            slots: Vec::new(),
            srtp_failures: 0,
            keep_raw_rtp: false,
            received_raw_rtp: Vec::new(),
            failed: None,
        })
    }

    /// The SDP offer: publishing m-lines first, then the receive slots.
    pub fn offer(&self) -> String {
        let fp = format_fingerprint(&sha256_fingerprint(&self.cert.certificate));
        let mut mids = Vec::new();
        let mut body = String::new();
        let mut add = |kind: MediaKind, dir: &str, ssrc: Option<u32>| {
            let mid = mids.len().to_string();
            let (m, pt, rtpmap) = match kind {
                MediaKind::Audio => ("audio", OPUS_PT, "opus/48000/2"),
                _ => ("video", VP8_PT, "VP8/90000"),
            };
            let _ = write!(
                body,
                "m={m} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\na={dir}\r\n\
                 a=rtcp-mux\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {fp}\r\n\
                 a=setup:actpass\r\na=rtpmap:{pt} {rtpmap}\r\n",
                self.ufrag, self.pwd
            );
            if kind == MediaKind::Video {
                let _ = write!(body, "a=rtcp-fb:{pt} nack pli\r\n");
            }
            match (kind, ssrc, self.video_layers) {
                (MediaKind::Video, Some(_), Some(layers)) => {
                    let _ = write!(
                        body,
                        "a=ssrc-group:SIM {} {} {}\r\n",
                        layers[0], layers[1], layers[2]
                    );
                    for l in layers {
                        let _ = write!(body, "a=ssrc:{l} cname:client\r\n");
                    }
                }
                (_, Some(ssrc), _) => {
                    let _ = write!(body, "a=ssrc:{ssrc} cname:client\r\n");
                }
                _ => {}
            }
            mids.push(mid);
        };
        if self.cfg.audio {
            add(MediaKind::Audio, "sendonly", Some(self.audio_ssrc));
        }
        if self.cfg.video {
            add(MediaKind::Video, "sendonly", Some(self.video_ssrc));
        }
        for _ in 0..self.cfg.audio_slots {
            add(MediaKind::Audio, "recvonly", None);
        }
        for _ in 0..self.cfg.video_slots {
            add(MediaKind::Video, "recvonly", None);
        }
        format!(
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\n{body}",
            mids.join(" ")
        )
    }

    /// Takes the bridge's answer and starts ICE and DTLS.
    pub fn handle_answer(&mut self, answer: &str, now: Instant) -> Result<(), ClientError> {
        let parsed =
            Offer::parse_description(answer).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        let addr = *parsed
            .candidates
            .first()
            .ok_or_else(|| ClientError::BadAnswer("no candidate".into()))?;
        self.slots = answer_slots(answer);
        self.remote = Some(Remote {
            addr,
            ufrag: parsed.ice_ufrag.clone(),
            key: IntegrityKey::new(parsed.ice_pwd.as_bytes()),
            fingerprint: parsed.fingerprint.clone(),
        });
        let config = client_dtls_config(self.cfg.dtls_mtu, self.cfg.srtp_profiles)?;
        let mut dtls = match self.cfg.dtls {
            ClientDtls::Auto => Dtls::new_auto(config, self.cert.clone(), now),
            ClientDtls::V12 => Dtls::new_12(config, self.cert.clone(), now),
            ClientDtls::V13 => Dtls::new_13(config, self.cert.clone(), now),
        };
        dtls.set_active(true);
        self.dtls = Some(dtls);
        self.next_check = now;
        Ok(())
    }

    /// Whether DTLS completed and SRTP keys are installed.
    pub fn is_connected(&self) -> bool {
        self.outbound.is_some() && self.inbound.is_some()
    }

    /// The negotiated SRTP profile.
    pub fn profile(&self) -> Option<SrtpProfile> {
        self.profile
    }

    /// Why the client failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Stops sending connectivity checks from `now` on (to let consent expire at
    /// the bridge).
    pub fn stop_checks(&mut self, now: Instant) {
        self.next_check = now + Duration::from_secs(1_000_000);
    }

    /// The bridge's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote.as_ref().map(|r| r.addr)
    }

    /// Next datagram to send to the bridge, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let remote = self.remote.as_ref()?;
        if now >= self.next_check {
            self.next_check = now
                + if self.ice_ok {
                    CONSENT_INTERVAL
                } else {
                    CHECK_INTERVAL
                };
            let username = format!("{}:{}", remote.ufrag, self.ufrag);
            let mut tid = [0u8; 12];
            rand::rng().fill(&mut tid);
            let req = BindingRequest {
                transaction_id: TransactionId(tid),
                username: username.as_bytes(),
                priority: 1_853_824_767,
                role: IceRole::Controlling {
                    tie_breaker: self.tie_breaker,
                },
                use_candidate: true,
            };
            let mut buf = vec![0u8; 256];
            if let Ok(n) = stun::write_binding_request(&mut buf, &req, &remote.key) {
                buf.truncate(n);
                return Some(buf);
            }
        }
        if self.ice_ok {
            self.drain_dtls(now);
        }
        self.queue.pop_front()
    }

    fn drain_dtls(&mut self, now: Instant) {
        let Some(dtls) = self.dtls.as_mut() else {
            return;
        };
        if self.dtls_deadline.is_none_or(|t| now >= t) {
            if let Err(e) = dtls.handle_timeout(now) {
                self.failed = Some(e.to_string());
                return;
            }
            self.dtls_deadline = None;
        }
        let mut buf = vec![0u8; 2048];
        loop {
            match dtls.poll_output(&mut buf) {
                Output::Packet(p) => self.queue.push_back(p.to_vec()),
                Output::Timeout(t) => {
                    self.dtls_deadline = Some(t);
                    break;
                }
                Output::PeerCert(der) => {
                    self.peer_cert_ok = self
                        .remote
                        .as_ref()
                        .is_some_and(|r| fingerprint_matches(&r.fingerprint, der));
                }
                Output::KeyingMaterial(km, profile) => {
                    let Some(profile) = super::dtls::from_dimpl(profile) else {
                        self.failed = Some(format!("unsupported SRTP profile {profile:?}"));
                        return;
                    };
                    if !self.peer_cert_ok {
                        self.failed =
                            Some("bridge certificate does not match its fingerprint".into());
                        return;
                    }
                    match srtp::contexts_from_keying_material(profile, &km, true) {
                        Ok((out, inb)) => {
                            self.outbound = Some(out);
                            self.inbound = Some(inb);
                            self.profile = Some(profile);
                        }
                        Err(e) => self.failed = Some(e.to_string()),
                    }
                }
                Output::BufferTooSmall { needed } => buf.resize(needed, 0),
                _ => {}
            }
        }
    }

    /// When [`ClientPeer::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Instant {
        match self.dtls_deadline {
            Some(t) => t.min(self.next_check),
            None => self.next_check,
        }
    }

    /// Drives DTLS retransmissions.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ice_ok {
            self.drain_dtls(now);
        }
    }

    /// Handles one datagram from the bridge.
    pub fn handle_receive(&mut self, now: Instant, datagram: &[u8]) {
        match datagram.first() {
            Some(0..=3) => {
                if let Ok(msg) = stun::Message::parse(datagram)
                    && msg.message_type() == MessageType::BINDING_SUCCESS
                    && self
                        .remote
                        .as_ref()
                        .is_some_and(|r| msg.verify_integrity(&r.key))
                {
                    if !self.ice_ok {
                        self.next_check = now + CONSENT_INTERVAL;
                    }
                    self.ice_ok = true;
                }
            }
            Some(20..=63) => {
                if let Some(dtls) = self.dtls.as_mut() {
                    if let Err(e) = dtls
                        .handle_timeout(now)
                        .and_then(|()| dtls.handle_packet(datagram))
                    {
                        self.failed = Some(e.to_string());
                    }
                    self.drain_dtls(now);
                }
            }
            Some(128..=191) => self.handle_srtp(datagram),
            _ => {}
        }
    }

    /// [`ClientPeer::handle_receive`] for load generators: an SRTP packet is
    /// decrypted in place in `datagram` and returned as an [`RtpView`] (it is not
    /// added to [`ClientPeer::received_rtp`]); everything else (STUN, DTLS,
    /// SRTCP) goes to [`ClientPeer::handle_receive`] and yields `None`. A packet
    /// that fails SRTP counts in [`ClientPeer::srtp_failures`].
    pub fn handle_receive_in_place(
        &mut self,
        now: Instant,
        datagram: &mut [u8],
    ) -> Option<RtpView> {
        let is_rtp = matches!(datagram.first(), Some(128..=191))
            && !datagram.get(1).is_some_and(|b| (192..=223).contains(b));
        if !is_rtp {
            self.handle_receive(now, datagram);
            return None;
        }
        let inbound = self.inbound.as_mut()?;
        let Ok(n) = inbound.unprotect_rtp(datagram) else {
            self.srtp_failures += 1;
            return None;
        };
        let h = super::rtp::RtpHeader::parse(datagram.get(..n)?).ok()?;
        Some(RtpView {
            ssrc: h.ssrc,
            pt: h.payload_type,
            seq: h.sequence_number,
            ts: h.timestamp,
            marker: h.marker,
            payload: h.payload_range(),
        })
    }

    fn handle_srtp(&mut self, datagram: &[u8]) {
        let Some(inbound) = self.inbound.as_mut() else {
            return;
        };
        let mut buf = datagram.to_vec();
        let is_rtcp = buf.get(1).is_some_and(|b| (192..=223).contains(b));
        if is_rtcp {
            let Ok(n) = inbound.unprotect_rtcp(&mut buf) else {
                self.srtp_failures += 1;
                return;
            };
            self.received_rtcp.push(buf[..n].to_vec());
            let mut rest = &buf[..n];
            // Walk the compound packet: PT 201 = RR, PT 206 FMT 1 = PLI.
            while rest.len() >= 8 {
                let words = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
                let len = (words + 1) * 4;
                if len > rest.len() {
                    break;
                }
                match (rest[1], rest[0] & 0x1F) {
                    (201, _) => self.received_rr += 1,
                    (206, 1) if len >= 12 => self
                        .received_pli
                        .push(u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]])),
                    _ => {}
                }
                rest = &rest[len..];
            }
        } else {
            let Ok(n) = inbound.unprotect_rtp(&mut buf) else {
                self.srtp_failures += 1;
                return;
            };
            if let Ok(h) = super::rtp::RtpHeader::parse(&buf[..n]) {
                self.received_rtp.push(ReceivedRtp {
                    ssrc: h.ssrc,
                    pt: h.payload_type,
                    seq: h.sequence_number,
                    ts: h.timestamp,
                    marker: h.marker,
                    payload: h.payload(&buf[..n]).unwrap_or_default().to_vec(),
                });
                if self.keep_raw_rtp {
                    self.received_raw_rtp.push(buf[..n].to_vec());
                }
            }
        }
    }

    /// Protects one RTP packet of the published source of `kind` and returns it.
    pub fn send_rtp(
        &mut self,
        kind: MediaKind,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let mut buf = vec![0u8; 12 + payload.len() + 32];
        let n = self.send_rtp_into(kind, seq, ts, marker, payload, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// [`ClientPeer::send_rtp`] without allocating: writes the protected packet
    /// into `out` and returns its length. `out` needs room for the 12-byte
    /// header, the payload and the SRTP tag (32 bytes covers every profile).
    pub fn send_rtp_into(
        &mut self,
        kind: MediaKind,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, ClientError> {
        let ctx = self.outbound.as_mut().ok_or(ClientError::NotConnected)?;
        let (pt, ssrc) = match kind {
            MediaKind::Audio => (OPUS_PT, self.audio_ssrc),
            _ => (VP8_PT, self.video_ssrc),
        };
        let len = 12 + payload.len();
        let Some(packet) = out.get_mut(..len) else {
            return Err(SrtpError::BufferTooSmall.into());
        };
        packet[0] = 0x80;
        packet[1] = (u8::from(marker) << 7) | pt;
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..8].copy_from_slice(&ts.to_be_bytes());
        packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
        packet[12..].copy_from_slice(payload);
        Ok(ctx.protect_rtp(out, len)?)
    }

    /// [`ClientPeer::send_rtp_into`] for video layer `layer` (0..=2) of an SSRC
    /// simulcast publisher ([`ClientPeer::video_layers`]).
    #[allow(clippy::too_many_arguments)]
    pub fn send_rtp_layer_into(
        &mut self,
        layer: u8,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, ClientError> {
        let ssrc = self
            .video_layers
            .and_then(|l| l.get(usize::from(layer)).copied())
            .ok_or(ClientError::NoSuchLayer(layer))?;
        let video = self.video_ssrc;
        self.video_ssrc = ssrc;
        let r = self.send_rtp_into(MediaKind::Video, seq, ts, marker, payload, out);
        self.video_ssrc = video;
        r
    }

    /// Protects an RTP packet the caller built whole (any SSRC, payload type or
    /// header extension: RTX, padding, MID), for tests that need what
    /// [`ClientPeer::send_rtp`] does not write.
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, ClientError> {
        let out = self.outbound.as_mut().ok_or(ClientError::NotConnected)?;
        let mut buf = vec![0u8; packet.len() + 32];
        buf[..packet.len()].copy_from_slice(packet);
        let n = out.protect_rtp(&mut buf, packet.len())?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Protects one RTCP packet (e.g. a PLI the test builds) for the bridge.
    pub fn send_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, ClientError> {
        let out = self.outbound.as_mut().ok_or(ClientError::NotConnected)?;
        let mut buf = vec![0u8; packet.len() + 64];
        buf[..packet.len()].copy_from_slice(packet);
        let n = out.protect_rtcp(&mut buf, packet.len())?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// Slots (`a=sendonly` + `a=ssrc`) of an answer, in m-line order.
fn answer_slots(answer: &str) -> Vec<AnsweredSlot> {
    let mut slots = Vec::new();
    let mut cur: Option<(String, MediaKind, bool, Option<u32>)> = None;
    let mut flush = |c: Option<(String, MediaKind, bool, Option<u32>)>| {
        if let Some((mid, kind, true, Some(ssrc))) = c {
            slots.push(AnsweredSlot { mid, kind, ssrc });
        }
    };
    for line in answer.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            flush(cur.take());
            let kind = if m.starts_with("audio") {
                MediaKind::Audio
            } else if m.starts_with("video") {
                MediaKind::Video
            } else {
                MediaKind::Other
            };
            cur = Some((String::new(), kind, false, None));
        } else if let Some(c) = cur.as_mut() {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                c.0 = mid.to_owned();
            } else if line == "a=sendonly" {
                c.2 = true;
            } else if let Some(rest) = line.strip_prefix("a=ssrc:")
                && c.3.is_none()
            {
                c.3 = rest.split_whitespace().next().and_then(|s| s.parse().ok());
            }
        }
    }
    flush(cur);
    slots
}
