//! [`JanusPeer`]: ringbridge's sans-IO [`ClientPeer`] adapted to a full ICE agent.
//!
//! `ClientPeer` is made for an ICE-lite bridge: it offers, nominates aggressively as
//! the controlling agent, never answers connectivity checks and is always the DTLS
//! client. Janus (libnice) is a full agent: it sends its own checks and only uses a
//! pair once they succeed, and for subscribers it is the offerer and the controlling
//! agent. This wrapper adds, without touching `ClientPeer`:
//!
//! - answers to Janus's Binding requests (MESSAGE-INTEGRITY with our ICE password,
//!   XOR-MAPPED-ADDRESS of the source, FINGERPRINT);
//! - a host candidate in our SDP, so Janus can check towards us at once;
//! - publisher side (we offer): `a=setup:active` instead of `actpass`, so Janus is
//!   the DTLS server and `ClientPeer` stays the DTLS client;
//! - subscriber side (Janus offers): an SDP answer (`recvonly`, `a=setup:active`),
//!   and our own checks rewritten to ICE-CONTROLLED without USE-CANDIDATE, so that
//!   Janus, the controlling agent, sees no role conflict.
//!
//! Our credentials and fingerprint are read from `ClientPeer::offer()` (the only
//! place that exposes them).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;
use ringbridge_bridge::proto::client::{ClientConfig, ClientPeer, ReceivedRtp, RtpView};
use ringbridge_bridge::proto::sdp::{MediaKind, Offer};
use ringbridge_bridge::proto::srtp::SrtpProfile;
use ringbridge_bridge::proto::stun::{
    self, BindingRequest, IceRole, IntegrityKey, Message, MessageType,
};

use super::JanusError;

/// Rewrites our outgoing checks when Janus is the controlling agent.
struct Controlled {
    remote_key: IntegrityKey,
    tie_breaker: u64,
}

/// One WebRTC connection to Janus: a [`ClientPeer`] plus the ICE answering side.
///
/// Drive it like `ClientPeer` (`poll_transmit` until `None`, `handle_receive` for
/// every datagram, `handle_timeout` at `poll_timeout`), but through these methods,
/// so that Janus's checks are answered and ours carry the right role.
pub struct JanusPeer {
    client: ClientPeer,
    local_ufrag: String,
    local_pwd: String,
    local_key: IntegrityKey,
    fingerprint: String,
    controlled: Option<Controlled>,
    queue: VecDeque<Vec<u8>>,
    checks_answered: u64,
}

impl std::fmt::Debug for JanusPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JanusPeer")
            .field("client", &self.client)
            .field("controlled", &self.controlled.is_some())
            .field("checks_answered", &self.checks_answered)
            .finish_non_exhaustive()
    }
}

/// Credentials and fingerprint from our own offer text.
fn local_transport(offer: &str) -> Option<(String, String, String)> {
    let find = |prefix: &str| {
        offer
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(prefix).map(str::to_owned))
    };
    Some((
        find("a=ice-ufrag:")?,
        find("a=ice-pwd:")?,
        find("a=fingerprint:sha-256 ")?,
    ))
}

fn candidate_lines(local: SocketAddr) -> String {
    format!(
        "a=candidate:1 1 udp 2130706431 {} {} typ host\r\na=end-of-candidates\r\n",
        local.ip(),
        local.port()
    )
}

impl JanusPeer {
    fn wrap(client: ClientPeer) -> Result<Self, JanusError> {
        // Credentials sit on m-lines: the client must be configured with at least
        // one (`subscriber` sets `audio` for that reason).
        let offer = client.offer();
        let (local_ufrag, local_pwd, fingerprint) = local_transport(&offer).ok_or_else(|| {
            JanusError::Protocol("ClientPeer offer lacks ICE credentials or fingerprint".into())
        })?;
        Ok(Self {
            local_key: IntegrityKey::new(local_pwd.as_bytes()),
            client,
            local_ufrag,
            local_pwd,
            fingerprint,
            controlled: None,
            queue: VecDeque::new(),
            checks_answered: 0,
        })
    }

    /// A publishing peer; `local` is the address of the UDP socket it will use (put
    /// into our host candidate). Returns the peer and the SDP offer for Janus.
    pub fn publisher(
        cfg: ClientConfig,
        local: SocketAddr,
        now: Instant,
    ) -> Result<(Self, String), JanusError> {
        let client = ClientPeer::new(cfg, now).map_err(|e| JanusError::Client(e.to_string()))?;
        let peer = Self::wrap(client)?;
        let mut offer = peer
            .client
            .offer()
            .replace("a=setup:actpass", "a=setup:active");
        // One host candidate on the first m-line (everything is BUNDLEd).
        if let Some(pos) = offer.find("a=rtcp-mux\r\n") {
            offer.insert_str(pos + "a=rtcp-mux\r\n".len(), &candidate_lines(local));
        }
        Ok((peer, offer))
    }

    /// Takes Janus's SDP answer to [`JanusPeer::publisher`]'s offer.
    pub fn handle_answer(&mut self, answer: &str, now: Instant) -> Result<(), JanusError> {
        self.client
            .handle_answer(answer, now)
            .map_err(|e| JanusError::Client(e.to_string()))
    }

    /// A subscribing peer built from Janus's SDP offer. `cfg` only sets DTLS options
    /// (nothing is published). Returns the peer and our SDP answer.
    pub fn subscriber(
        cfg: ClientConfig,
        janus_offer: &str,
        local: SocketAddr,
        now: Instant,
    ) -> Result<(Self, String), JanusError> {
        let parsed = Offer::parse_description(janus_offer)
            .map_err(|e| JanusError::Protocol(format!("Janus offer: {e}")))?;
        let cfg = ClientConfig {
            audio: true,
            video: false,
            audio_slots: 0,
            video_slots: 0,
            ..cfg
        };
        let mut client =
            ClientPeer::new(cfg, now).map_err(|e| JanusError::Client(e.to_string()))?;
        // `handle_answer` reads any description: the remote transport, the first
        // candidate, and starts DTLS as client (we answer `a=setup:active`).
        client
            .handle_answer(janus_offer, now)
            .map_err(|e| JanusError::Client(e.to_string()))?;
        let mut peer = Self::wrap(client)?;
        peer.controlled = Some(Controlled {
            remote_key: IntegrityKey::new(parsed.ice_pwd.as_bytes()),
            tie_breaker: rand::rng().random(),
        });
        let answer = peer.answer_for(&parsed, local);
        Ok((peer, answer))
    }

    fn answer_for(&self, offer: &Offer, local: SocketAddr) -> String {
        let session_id: u32 = rand::rng().random();
        let accepted = |m: &&ringbridge_bridge::proto::sdp::MediaSection| {
            m.kind != MediaKind::Other && m.codec.is_some() && m.direction.offerer_sends()
        };
        let bundle: Vec<&str> = offer
            .media
            .iter()
            .filter(accepted)
            .map(|m| m.mid.as_str())
            .collect();
        let mut s = format!(
            "v=0\r\no=- {session_id} 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\n",
            bundle.join(" ")
        );
        let mut first = true;
        for m in &offer.media {
            let kind = match m.kind {
                MediaKind::Audio => "audio",
                MediaKind::Video => "video",
                MediaKind::Other => "application",
            };
            let codec = m.codec.as_ref().filter(|_| accepted(&m));
            let Some(codec) = codec else {
                let _ = write!(
                    s,
                    "m={kind} 0 {} {}\r\nc=IN IP4 0.0.0.0\r\na=mid:{}\r\na=inactive\r\n",
                    m.protocol, m.formats, m.mid
                );
                continue;
            };
            let _ = write!(
                s,
                "m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\n\
                 a=recvonly\r\na=rtcp-mux\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\n\
                 a=fingerprint:sha-256 {}\r\na=setup:active\r\n",
                self.local_ufrag,
                self.local_pwd,
                self.fingerprint,
                pt = codec.pt,
                mid = m.mid,
            );
            codec.write_rtpmap(&mut s);
            if m.kind == MediaKind::Video {
                let _ = write!(s, "a=rtcp-fb:{} nack pli\r\n", codec.pt);
            }
            if first {
                s.push_str(&candidate_lines(local));
                first = false;
            }
        }
        s
    }

    /// Next datagram to send to Janus (answers to its checks first).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(d) = self.queue.pop_front() {
            return Some(d);
        }
        let d = self.client.poll_transmit(now)?;
        match &self.controlled {
            Some(ctl) if matches!(d.first(), Some(0..=3)) => Some(rewrite_controlled(d, ctl)),
            _ => Some(d),
        }
    }

    /// Handles one datagram from Janus, received from `from`.
    pub fn handle_receive(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if matches!(datagram.first(), Some(0..=3))
            && let Ok(msg) = Message::parse(datagram)
            && msg.message_type() == MessageType::BINDING_REQUEST
        {
            self.answer_check(&msg, from);
            return;
        }
        self.client.handle_receive(now, datagram);
    }

    /// [`JanusPeer::handle_receive`] for load generators: Janus's checks are
    /// answered, SRTP is decrypted in place in `datagram` and returned as an
    /// [`RtpView`]; everything else goes to the client and yields `None`.
    pub fn handle_receive_in_place(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> Option<RtpView> {
        if matches!(datagram.first(), Some(0..=3)) {
            self.handle_receive(now, from, datagram);
            return None;
        }
        self.client.handle_receive_in_place(now, datagram)
    }

    fn answer_check(&mut self, msg: &Message<'_>, from: SocketAddr) {
        let for_us = msg
            .username()
            .is_some_and(|u| u.split(|b| *b == b':').next() == Some(self.local_ufrag.as_bytes()));
        if !for_us || !msg.verify_integrity(&self.local_key) {
            return;
        }
        let mut buf = vec![0u8; 128];
        if let Ok(n) =
            stun::write_binding_success(&mut buf, &msg.transaction_id(), from, &self.local_key)
        {
            buf.truncate(n);
            self.queue.push_back(buf);
            self.checks_answered += 1;
        }
    }

    /// When [`JanusPeer::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Instant {
        self.client.poll_timeout()
    }

    /// Drives DTLS retransmissions.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.client.handle_timeout(now);
    }

    /// Whether DTLS completed and SRTP keys are installed.
    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Why the client failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.client.failure()
    }

    /// The negotiated SRTP profile.
    pub fn profile(&self) -> Option<SrtpProfile> {
        self.client.profile()
    }

    /// Janus's media address (from its SDP candidate).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.client.remote_addr()
    }

    /// Binding requests from Janus answered so far.
    pub fn checks_answered(&self) -> u64 {
        self.checks_answered
    }

    /// RTP received and decrypted so far.
    pub fn received_rtp(&self) -> &[ReceivedRtp] {
        &self.client.received_rtp
    }

    /// Datagrams that failed SRTP.
    pub fn srtp_failures(&self) -> usize {
        self.client.srtp_failures
    }

    /// Protects one RTP packet of our published source of `kind`.
    pub fn send_rtp(
        &mut self,
        kind: MediaKind,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<Vec<u8>, JanusError> {
        self.client
            .send_rtp(kind, seq, ts, marker, payload)
            .map_err(|e| JanusError::Client(e.to_string()))
    }

    /// The wrapped client.
    pub fn client(&self) -> &ClientPeer {
        &self.client
    }

    /// The wrapped client, mutably (e.g. to clear `received_rtp`).
    pub fn client_mut(&mut self) -> &mut ClientPeer {
        &mut self.client
    }
}

/// Re-signs one of `ClientPeer`'s checks as ICE-CONTROLLED without USE-CANDIDATE.
fn rewrite_controlled(d: Vec<u8>, ctl: &Controlled) -> Vec<u8> {
    let Ok(msg) = Message::parse(&d) else {
        return d;
    };
    if msg.message_type() != MessageType::BINDING_REQUEST {
        return d;
    }
    let Some(username) = msg.username() else {
        return d;
    };
    let req = BindingRequest {
        transaction_id: msg.transaction_id(),
        username,
        priority: msg.priority().unwrap_or(1_853_824_767),
        role: IceRole::Controlled {
            tie_breaker: ctl.tie_breaker,
        },
        use_candidate: false,
    };
    let mut buf = vec![0u8; 256];
    match stun::write_binding_request(&mut buf, &req, &ctl.remote_key) {
        Ok(n) => {
            buf.truncate(n);
            buf
        }
        Err(_) => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbridge_bridge::proto::client::ClientDtls;

    fn cfg() -> ClientConfig {
        ClientConfig {
            dtls: ClientDtls::V12,
            dtls_mtu: 1200,
            srtp_profiles: SrtpProfile::BROWSER_OFFER,
            audio: true,
            video: true,
            audio_slots: 0,
            video_slots: 0,
        }
    }

    #[test]
    fn publisher_offer_is_active_with_a_candidate() -> Result<(), JanusError> {
        let local: SocketAddr = ([10, 77, 3, 1], 40000).into();
        let (_, offer) = JanusPeer::publisher(cfg(), local, Instant::now())?;
        assert!(offer.contains("a=setup:active\r\n"));
        assert!(!offer.contains("actpass"));
        assert_eq!(
            offer
                .matches("a=candidate:1 1 udp 2130706431 10.77.3.1 40000 typ host")
                .count(),
            1
        );
        Ok(())
    }

    #[test]
    fn answers_checks_and_rewrites_role_for_a_janus_offer() -> Result<(), JanusError> {
        let now = Instant::now();
        let janus_pwd = "abcdefghijklmnopqrstuvwx";
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 10.77.3.2\r\ns=VideoRoom\r\nt=0 0\r\na=group:BUNDLE a v\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 10.77.3.2\r\na=sendonly\r\na=mid:a\r\n\
             a=rtcp-mux\r\na=ice-ufrag:jufr\r\na=ice-pwd:{janus_pwd}\r\n\
             a=fingerprint:sha-256 {fp}\r\na=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\n\
             a=ssrc:11 cname:janus\r\na=candidate:1 1 udp 2015363327 10.77.3.2 20000 typ host\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 10.77.3.2\r\na=sendonly\r\na=mid:v\r\n\
             a=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=ssrc:22 cname:janus\r\n",
            fp = ["AB"; 32].join(":")
        );
        let local: SocketAddr = ([10, 77, 3, 1], 40000).into();
        let (mut peer, answer) = JanusPeer::subscriber(cfg(), &offer, local, now)?;
        assert!(answer.contains("a=group:BUNDLE a v\r\n"));
        assert!(answer.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"));
        assert!(answer.contains("m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"));
        assert_eq!(answer.matches("a=recvonly").count(), 2);
        assert!(answer.contains("a=setup:active"));
        assert_eq!(peer.remote_addr(), Some(([10, 77, 3, 2], 20000).into()));

        // Our check goes out as ICE-CONTROLLED, without USE-CANDIDATE, signed with
        // Janus's password.
        let check = peer
            .poll_transmit(now)
            .ok_or_else(|| JanusError::Protocol("no check".into()))?;
        let msg = Message::parse(&check).map_err(|e| JanusError::Protocol(e.to_string()))?;
        assert!(matches!(msg.ice_role(), Some(IceRole::Controlled { .. })));
        assert!(!msg.use_candidate());
        assert!(msg.verify_integrity(&IntegrityKey::new(janus_pwd.as_bytes())));

        // Janus's check is answered with our password.
        let username = format!("{}:jufr", peer.local_ufrag);
        let req = BindingRequest {
            transaction_id: stun::TransactionId([7; 12]),
            username: username.as_bytes(),
            priority: 1,
            role: IceRole::Controlling { tie_breaker: 1 },
            use_candidate: true,
        };
        let mut buf = [0u8; 256];
        let n = stun::write_binding_request(&mut buf, &req, &peer.local_key)
            .map_err(|e| JanusError::Protocol(e.to_string()))?;
        let from: SocketAddr = ([10, 77, 3, 2], 20000).into();
        peer.handle_receive(now, from, &buf[..n]);
        let resp = peer
            .poll_transmit(now)
            .ok_or_else(|| JanusError::Protocol("no response".into()))?;
        let msg = Message::parse(&resp).map_err(|e| JanusError::Protocol(e.to_string()))?;
        assert_eq!(msg.message_type(), MessageType::BINDING_SUCCESS);
        assert_eq!(msg.transaction_id(), stun::TransactionId([7; 12]));
        assert_eq!(msg.xor_mapped_address(), Some(from));
        assert!(msg.verify_integrity(&IntegrityKey::new(peer.local_pwd.as_bytes())));
        assert_eq!(peer.checks_answered(), 1);
        Ok(())
    }
}
