//! The sans-IO core of one shard: every endpoint and conference placed on it.
//!
//! A driver (the socket loop in `crate::io`) owns the sockets and the clock and
//! calls, in any order:
//! - [`ShardCore::handle_join`] / [`ShardCore::handle_leave`] for control commands,
//! - [`ShardCore::handle_receive`] for every datagram, with `now`,
//! - [`ShardCore::handle_timeout`] when [`ShardCore::poll_timeout`] is due,
//!
//! then sends everything queued in the [`TxQueue`] it passed in, drains
//! [`ShardCore::poll_event`] toward the control plane, and closes the sockets of
//! [`ShardCore::poll_released_port`]. No sockets, clock reads or threads here.
//!
//! Per packet (after warm-up) nothing is allocated: the datagram is decrypted in the
//! caller's buffer, and each receiver's copy is rewritten and encrypted straight in
//! its slot of the [`TxQueue`].

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dimpl::DtlsCertificate;
use rand::Rng;
use rand::distr::Alphanumeric;
use ringbridge_control::media::{
    ConferenceId, EndpointId, EndpointPolicy, JoinRequest, MappedSource, MediaError, MediaEvent,
    MuteRequest, RefusalReason,
};

use super::dtls::{self, DtlsOutput, DtlsTransport};
use super::endpoint::{Endpoint, EndpointState, SrtpPair};
use super::ice::{IceLite, StunOutcome};
use super::router::{Consumer, Producer, Rewrite, SourceRef, write_forwarded};
use super::sdp::{self, AnswerSection, MediaKind, Offer, SlotAnnouncement};
use super::transmit::TxQueue;
use super::{rtcp, rtp, srtp};

/// How often the bridge sends receiver reports to each publisher.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Minimum time between two keyframe requests to the same producer.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// An endpoint counts as sending audio (video) while its audio (video) arrived
/// within this window (`endpoints_sending_audio` / `_video` in `/colibri/stats`).
pub const SENDING_WINDOW: Duration = Duration::from_secs(3);

/// Granularity of the housekeeping timer when nothing sooner is due.
const TICK: Duration = Duration::from_millis(100);

/// Who sends media on a shard, counted at housekeeping over [`SENDING_WINDOW`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Endpoints whose audio arrived within the window.
    pub audio: u64,
    /// Endpoints whose video arrived within the window.
    pub video: u64,
    /// Conferences in which no endpoint sent audio or video within the window
    /// (jitsi-videobridge's `inactive_conferences`).
    pub inactive_conferences: u64,
    /// Endpoints of those conferences (jitsi-videobridge's `inactive_endpoints`).
    pub inactive_endpoints: u64,
}

/// Static configuration of a shard core.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Addresses put into the host candidates of every answer.
    pub advertise: Vec<IpAddr>,
    /// The DTLS certificate all endpoints of this shard present.
    pub certificate: DtlsCertificate,
    /// SRTP profiles accepted, in order of preference (`media.srtp_profiles`); empty
    /// means [`SrtpProfile::PREFERRED`](crate::proto::srtp::SrtpProfile::PREFERRED).
    pub srtp_profiles: Vec<crate::proto::srtp::SrtpProfile>,
}

/// Counters of one shard (cumulative since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// Datagrams received.
    pub packets_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// RTP packets forwarded (one per receiver copy).
    pub rtp_forwarded: u64,
    /// Datagrams for a port no endpoint owns any more.
    pub dropped_unknown_port: u64,
    /// Datagrams from an address that passed no ICE check.
    pub dropped_unknown_source: u64,
    /// Datagrams that do not parse (STUN, RTP or RTCP), or an unknown first byte.
    pub dropped_malformed: u64,
    /// SRTP/SRTCP authentication failures.
    pub dropped_auth: u64,
    /// SRTP/SRTCP replays.
    pub dropped_replay: u64,
    /// RTP with an SSRC no producer owns.
    pub dropped_unknown_ssrc: u64,
    /// RTP of a muted producer, or of one the endpoint's policy refuses.
    pub dropped_policy: u64,
    /// STUN requests refused (wrong username or integrity).
    pub stun_refused: u64,
    /// Endpoints whose first ICE check succeeded.
    pub ice_successes: u64,
    /// Endpoints expired without ever passing an ICE check.
    pub ice_failures: u64,
    /// DTLS associations that failed.
    pub dtls_failures: u64,
    /// DTLS associations that completed and were verified.
    pub dtls_successes: u64,
}

/// The media state of one shard.
pub struct ShardCore {
    cfg: ShardConfig,
    fingerprint: Vec<u8>,
    dtls_config: Arc<dimpl::Config>,
    endpoints: Vec<Option<Endpoint>>,
    free: Vec<usize>,
    by_port: HashMap<u16, usize>,
    conferences: HashMap<ConferenceId, Vec<usize>>,
    events: VecDeque<MediaEvent>,
    released_ports: Vec<u16>,
    /// Scratch: the consumers of the producer being forwarded.
    targets: Vec<(usize, usize)>,
    /// Scratch: producers to ask for a keyframe after the current packet.
    keyframe_wanted: Vec<SourceRef>,
    /// Scratch: one RTCP or DTLS datagram being built.
    scratch: Box<[u8; 2048]>,
    counters: ShardCounters,
    next_housekeeping: Option<Instant>,
    /// Endpoints that sent audio and video within [`SENDING_WINDOW`], as of the
    /// last housekeeping.
    activity: Activity,
    /// Origin of the shard's media clock (RTCP arrival times).
    epoch: Instant,
}

impl std::fmt::Debug for ShardCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardCore")
            .field("endpoints", &self.endpoint_count())
            .field("conferences", &self.conferences.len())
            .finish_non_exhaustive()
    }
}

impl ShardCore {
    /// A shard with no endpoints; `now` is the origin of its media clock.
    pub fn new(cfg: ShardConfig, now: Instant) -> Self {
        let fingerprint = dtls::sha256_fingerprint(&cfg.certificate.certificate);
        let dtls_config = dtls::server_config(&cfg.srtp_profiles);
        Self {
            cfg,
            fingerprint,
            dtls_config,
            endpoints: Vec::new(),
            free: Vec::new(),
            by_port: HashMap::new(),
            conferences: HashMap::new(),
            events: VecDeque::new(),
            released_ports: Vec::new(),
            targets: Vec::with_capacity(64),
            keyframe_wanted: Vec::with_capacity(16),
            scratch: Box::new([0; 2048]),
            counters: ShardCounters::default(),
            next_housekeeping: None,
            activity: Activity::default(),
            epoch: now,
        }
    }

    /// Cumulative counters.
    pub fn counters(&self) -> &ShardCounters {
        &self.counters
    }

    /// Live endpoints.
    pub fn endpoint_count(&self) -> usize {
        self.by_port.len()
    }

    /// Live conferences.
    pub fn conference_count(&self) -> usize {
        self.conferences.len()
    }

    /// Endpoints in the largest conference.
    pub fn largest_conference(&self) -> usize {
        self.conferences.values().map(Vec::len).max().unwrap_or(0)
    }

    /// The endpoint that owns `port`, if any (for tests and diagnostics).
    pub fn endpoint_by_port(&self, port: u16) -> Option<&Endpoint> {
        self.by_port
            .get(&port)
            .and_then(|&i| self.endpoints.get(i)?.as_ref())
    }

    /// Adds an endpoint on local `port` and returns the SDP answer, with no limit on
    /// what it publishes ([`EndpointPolicy::default`]).
    pub fn handle_join(
        &mut self,
        now: Instant,
        req: &JoinRequest,
        port: u16,
    ) -> Result<String, MediaError> {
        self.handle_join_with_policy(now, req, port, EndpointPolicy::default())
    }

    /// Adds an endpoint on local `port` whose publishing `policy` limits, and
    /// returns the SDP answer. Refused sources are reported as
    /// [`MediaEvent::ForwardingRefused`] and never mapped onto a slot.
    pub fn handle_join_with_policy(
        &mut self,
        now: Instant,
        req: &JoinRequest,
        port: u16,
        policy: EndpointPolicy,
    ) -> Result<String, MediaError> {
        let offer =
            Offer::parse(&req.offer_sdp).map_err(|e| MediaError::BadOffer(e.to_string()))?;
        if self.by_port.contains_key(&port) {
            return Err(MediaError::Overloaded(format!(
                "port {port} already in use"
            )));
        }
        if let Some(members) = self.conferences.get(&req.conference)
            && members.iter().any(|&i| {
                self.endpoints
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(|e| e.id == req.endpoint)
            })
        {
            return Err(MediaError::BadOffer(format!(
                "endpoint {} already exists",
                req.endpoint
            )));
        }

        let mut rng = rand::rng();
        let ufrag: String = (&mut rng)
            .sample_iter(Alphanumeric)
            .take(8)
            .map(char::from)
            .collect();
        let pwd: String = (&mut rng)
            .sample_iter(Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();

        let mut producers = Vec::new();
        let mut slots = Vec::new();
        let mut sections = Vec::with_capacity(offer.media.len());
        let (mut audio_n, mut video_n) = (0, 0);
        for m in &offer.media {
            let usable = m.kind != MediaKind::Other
                && m.codec.is_some()
                && m.direction != sdp::Direction::Inactive;
            let Some(codec) = m.codec.as_ref().filter(|_| usable) else {
                sections.push(AnswerSection {
                    accepted: false,
                    slot: None,
                });
                continue;
            };
            if m.direction.offerer_sends() {
                let name = match m.kind {
                    MediaKind::Audio => {
                        audio_n += 1;
                        format!("{}-a{}", req.endpoint, audio_n - 1)
                    }
                    _ => {
                        video_n += 1;
                        format!("{}-v{}", req.endpoint, video_n - 1)
                    }
                };
                let mut producer = Producer::new(
                    m.mid.clone(),
                    m.kind,
                    m.ssrcs.first().copied(),
                    codec.pt,
                    codec.clock_rate,
                    name,
                );
                producer.screen = m
                    .content
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case("slides"));
                producers.push(producer);
            }
            let slot = if m.direction.offerer_receives() {
                let ssrc = loop {
                    let s: u32 = rng.random();
                    if s != 0 && !offer.media.iter().any(|m| m.ssrcs.contains(&s)) {
                        break s;
                    }
                };
                slots.push(Consumer::new(
                    m.mid.clone(),
                    m.kind,
                    codec.pt,
                    codec.clock_rate,
                    ssrc,
                ));
                Some(SlotAnnouncement {
                    ssrc,
                    stream_id: format!("ringbridge-{}", req.endpoint),
                    track_id: format!("slot-{}", m.mid),
                })
            } else {
                None
            };
            sections.push(AnswerSection {
                accepted: true,
                slot,
            });
        }

        let answer = sdp::write_answer(
            &offer,
            &sections,
            &sdp::LocalTransport {
                ice_ufrag: &ufrag,
                ice_pwd: &pwd,
                fingerprint_sha256: &self.fingerprint,
                addresses: &self.cfg.advertise,
                port,
            },
            rng.random::<u64>() >> 2,
        );

        let mid_ext_id = offer.media.iter().find_map(|m| m.mid_ext_id);
        apply_policy(&mut producers, policy);
        let endpoint = Endpoint {
            id: req.endpoint.clone(),
            conference: req.conference.clone(),
            port,
            state: EndpointState::Connecting,
            ice: IceLite::new(ufrag, pwd, offer.ice_ufrag.clone(), now),
            dtls: DtlsTransport::new(
                self.dtls_config.clone(),
                self.cfg.certificate.clone(),
                offer.fingerprint.clone(),
                now,
            ),
            dtls_deadline: None,
            srtp: None,
            producers,
            slots,
            rtcp_ssrc: rng.random::<u32>() | 1,
            mid_ext_id,
            next_report: now + REPORT_INTERVAL,
            created: now,
            negotiated: None,
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.endpoints[i] = Some(endpoint);
                i
            }
            None => {
                self.endpoints.push(Some(endpoint));
                self.endpoints.len() - 1
            }
        };
        self.by_port.insert(port, index);
        // Housekeeping (consent expiry among it) runs from the first join, not from
        // the first datagram: an endpoint whose packets never arrive must expire too.
        if self.next_housekeeping.is_none() {
            self.next_housekeeping = Some(now + TICK);
        }
        self.conferences
            .entry(req.conference.clone())
            .or_default()
            .push(index);
        self.report_refusals(index, |_| true);
        self.rebalance(&req.conference);
        Ok(answer)
    }

    /// Changes the policy of a joined endpoint, at once; unknown endpoints are
    /// ignored (a joining endpoint gets its policy with `handle_join_with_policy`).
    pub fn set_policy(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        policy: EndpointPolicy,
    ) {
        let Some(index) = self.find_endpoint(conference, endpoint) else {
            return;
        };
        let Some(ep) = self.endpoints[index].as_mut() else {
            return;
        };
        let before: Vec<Option<RefusalReason>> = ep.producers.iter().map(|p| p.refused).collect();
        apply_policy(&mut ep.producers, policy);
        let newly: Vec<bool> = ep
            .producers
            .iter()
            .zip(&before)
            .map(|(p, b)| p.refused.is_some() && b.is_none())
            .collect();
        for (p, refused) in newly.iter().enumerate() {
            if *refused {
                self.unmap_producer(index, p);
            }
        }
        self.report_refusals(index, |p| newly.get(p).copied().unwrap_or(false));
        let conference = conference.clone();
        self.rebalance(&conference);
    }

    /// Mutes or unmutes an endpoint's producers. Muted producers keep their slots
    /// (so unmuting resumes at once, from the next keyframe) but nothing is
    /// forwarded.
    pub fn handle_mute(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        mute: MuteRequest,
    ) -> Result<(), MediaError> {
        let index = self
            .find_endpoint(conference, endpoint)
            .ok_or(MediaError::NotFound)?;
        let Some(ep) = self.endpoints[index].as_mut() else {
            return Err(MediaError::NotFound);
        };
        let mut resumed = Vec::new();
        for (p, producer) in ep.producers.iter_mut().enumerate() {
            let want = match producer.kind {
                MediaKind::Audio => mute.audio,
                MediaKind::Video => mute.video,
                _ => None,
            };
            if let Some(muted) = want {
                if producer.muted && !muted {
                    resumed.push(p);
                }
                producer.muted = muted;
            }
        }
        // Resuming re-bases the receivers' slots, as a source switch does, so
        // their sequence numbers show no gap and video restarts on a keyframe.
        for p in resumed {
            let source = SourceRef {
                endpoint: index,
                producer: p,
            };
            let consumers = self.endpoints[index]
                .as_ref()
                .and_then(|e| e.producers.get(p))
                .map(|pr| pr.consumers.clone())
                .unwrap_or_default();
            for (r, s) in consumers {
                if let Some(slot) = self.endpoints[r].as_mut().and_then(|e| e.slots.get_mut(s)) {
                    slot.assign(Some(source));
                }
            }
        }
        Ok(())
    }

    /// Stops forwarding the producer named `source` of an endpoint, for `reason`:
    /// its slots are freed (and refilled) and a
    /// [`MediaEvent::ForwardingRefused`] is queued.
    pub fn handle_refuse_source(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        source: &str,
        reason: RefusalReason,
    ) -> Result<(), MediaError> {
        let index = self
            .find_endpoint(conference, endpoint)
            .ok_or(MediaError::NotFound)?;
        let p = self.endpoints[index]
            .as_ref()
            .and_then(|e| e.producers.iter().position(|p| p.source_name == source))
            .ok_or(MediaError::NotFound)?;
        let Some(producer) = self.endpoints[index]
            .as_mut()
            .and_then(|e| e.producers.get_mut(p))
        else {
            return Err(MediaError::NotFound);
        };
        if producer.refused.is_some() {
            return Ok(());
        }
        producer.refused = Some(reason);
        if reason == RefusalReason::ScreenSharingNotGranted {
            // Remembered as a screen, so a later policy keeps it refused.
            producer.screen = true;
        }
        self.unmap_producer(index, p);
        self.report_refusals(index, |i| i == p);
        let conference = conference.clone();
        self.rebalance(&conference);
        Ok(())
    }

    fn find_endpoint(&self, conference: &ConferenceId, endpoint: &EndpointId) -> Option<usize> {
        self.conferences
            .get(conference)?
            .iter()
            .copied()
            .find(|&i| {
                self.endpoints
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(|e| &e.id == endpoint)
            })
    }

    /// Frees every slot producer `p` of endpoint `index` feeds, and reports the
    /// receivers' changed maps.
    fn unmap_producer(&mut self, index: usize, p: usize) {
        let consumers = match self.endpoints[index]
            .as_mut()
            .and_then(|e| e.producers.get_mut(p))
        {
            Some(producer) => std::mem::take(&mut producer.consumers),
            None => return,
        };
        for &(r, s) in &consumers {
            if let Some(slot) = self.endpoints[r].as_mut().and_then(|e| e.slots.get_mut(s)) {
                slot.assign(None);
            }
        }
        let mut seen = Vec::new();
        for (r, _) in consumers {
            if !seen.contains(&r) {
                seen.push(r);
                self.announce_sources(r);
            }
        }
    }

    /// Queues a [`MediaEvent::ForwardingRefused`] for each refused producer of
    /// endpoint `index` that `which` selects.
    fn report_refusals(&mut self, index: usize, which: impl Fn(usize) -> bool) {
        let Some(ep) = self.endpoints[index].as_ref() else {
            return;
        };
        for (p, producer) in ep.producers.iter().enumerate() {
            if let Some(reason) = producer.refused
                && which(p)
            {
                self.events.push_back(MediaEvent::ForwardingRefused {
                    conference: ep.conference.clone(),
                    endpoint: ep.id.clone(),
                    source: producer.source_name.clone(),
                    reason,
                });
            }
        }
    }

    /// Removes an endpoint at the control plane's request; its port is released.
    pub fn handle_leave(
        &mut self,
        conference: &ConferenceId,
        endpoint: &EndpointId,
    ) -> Result<(), MediaError> {
        let index = self
            .conferences
            .get(conference)
            .and_then(|members| {
                members.iter().copied().find(|&i| {
                    self.endpoints
                        .get(i)
                        .and_then(Option::as_ref)
                        .is_some_and(|e| &e.id == endpoint)
                })
            })
            .ok_or(MediaError::NotFound)?;
        self.remove_endpoint(index, None);
        Ok(())
    }

    /// Next event for the control plane.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// Next local port whose endpoint is gone (the driver closes its socket).
    pub fn poll_released_port(&mut self) -> Option<u16> {
        self.released_ports.pop()
    }

    /// When [`ShardCore::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.by_port.is_empty() {
            return None;
        }
        let dtls = self
            .endpoints
            .iter()
            .flatten()
            .filter_map(|e| e.dtls_deadline)
            .min();
        match (dtls, self.next_housekeeping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles one datagram received on local `port` from `from`.
    ///
    /// `datagram` is exactly the received bytes; it is decrypted in place.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        port: u16,
        from: SocketAddr,
        datagram: &mut [u8],
        tx: &mut TxQueue,
    ) {
        self.counters.packets_received += 1;
        self.counters.bytes_received += datagram.len() as u64;
        if self.next_housekeeping.is_none() {
            self.next_housekeeping = Some(now + TICK);
        }
        let Some(&index) = self.by_port.get(&port) else {
            self.counters.dropped_unknown_port += 1;
            return;
        };
        match datagram.first() {
            Some(0..=3) => self.handle_stun(now, index, from, datagram, tx),
            Some(20..=63) => self.handle_dtls(now, index, from, datagram, tx),
            Some(128..=191) => {
                let is_rtcp = datagram.get(1).is_some_and(|b| (192..=223).contains(b));
                if is_rtcp {
                    self.handle_rtcp(now, index, from, datagram, tx);
                } else {
                    self.handle_rtp(now, index, from, datagram, tx);
                }
            }
            _ => self.counters.dropped_malformed += 1,
        }
    }

    fn handle_stun(
        &mut self,
        now: Instant,
        index: usize,
        from: SocketAddr,
        datagram: &[u8],
        tx: &mut TxQueue,
    ) {
        let Some(ep) = self.endpoints[index].as_mut() else {
            return;
        };
        let mut outcome = None;
        let was_checked = ep.ice.selected().is_some();
        tx.push_with(ep.port, from, |out| {
            match ep.ice.handle_stun(now, from, datagram, out) {
                StunOutcome::Respond(n) => Some(n),
                StunOutcome::Dropped(reason) => {
                    outcome = Some(reason);
                    None
                }
            }
        });
        if let Some(reason) = outcome {
            self.counters.stun_refused += 1;
            tracing::debug!(endpoint = %ep.id, ?reason, %from, "stun dropped");
        } else if !was_checked && ep.ice.selected().is_some() {
            self.counters.ice_successes += 1;
        }
    }

    fn handle_dtls(
        &mut self,
        now: Instant,
        index: usize,
        from: SocketAddr,
        datagram: &[u8],
        tx: &mut TxQueue,
    ) {
        let Some(ep) = self.endpoints[index].as_mut() else {
            return;
        };
        if !ep.ice.is_validated(from) {
            self.counters.dropped_unknown_source += 1;
            return;
        }
        let result = ep.dtls.handle_packet(now, datagram);
        if let Err(e) = result {
            tracing::info!(endpoint = %ep.id, error = %e, "dtls failed");
            self.counters.dtls_failures += 1;
            self.remove_endpoint(index, Some("dtls-failed"));
            return;
        }
        self.drain_dtls(index, tx);
    }

    /// Sends what DTLS has to send and picks up a completed handshake.
    fn drain_dtls(&mut self, index: usize, tx: &mut TxQueue) {
        let Some(ep) = self.endpoints[index].as_mut() else {
            return;
        };
        let failed = loop {
            match ep.dtls.poll_output(&mut self.scratch[..]) {
                Ok(DtlsOutput::Packet(p)) => {
                    if let Some(to) = ep.ice.selected() {
                        tx.push(ep.port, to, p);
                    }
                }
                Ok(DtlsOutput::Continue) => {}
                Ok(DtlsOutput::Timeout(t)) => {
                    ep.dtls_deadline = Some(t);
                    break None;
                }
                Ok(DtlsOutput::Connected(keys)) => {
                    match srtp::contexts_from_keying_material(keys.profile, &keys.material, false) {
                        Ok((outbound, inbound)) => {
                            ep.srtp = Some(SrtpPair { outbound, inbound });
                            ep.state = EndpointState::Connected;
                            ep.negotiated = Some((keys.profile.name(), keys.version));
                            self.counters.dtls_successes += 1;
                            tracing::info!(
                                endpoint = %ep.id,
                                conference = %ep.conference,
                                srtp_profile = keys.profile.name(),
                                dtls_version = keys.version,
                                "endpoint connected"
                            );
                            self.events.push_back(MediaEvent::EndpointConnected {
                                conference: ep.conference.clone(),
                                endpoint: ep.id.clone(),
                            });
                        }
                        Err(e) => break Some(e.to_string()),
                    }
                }
                Err(e) => break Some(e.to_string()),
            }
        };
        if let Some(error) = failed {
            tracing::info!(endpoint = %ep.id, %error, "dtls failed");
            self.counters.dtls_failures += 1;
            self.remove_endpoint(index, Some("dtls-failed"));
        }
    }

    fn handle_rtp(
        &mut self,
        now: Instant,
        index: usize,
        from: SocketAddr,
        datagram: &mut [u8],
        tx: &mut TxQueue,
    ) {
        let Some(ep) = self.endpoints[index].as_mut() else {
            return;
        };
        if !ep.ice.is_validated(from) {
            self.counters.dropped_unknown_source += 1;
            return;
        }
        let Some(srtp) = ep.srtp.as_mut() else {
            self.counters.dropped_unknown_source += 1;
            return;
        };
        let len = match srtp.inbound.unprotect_rtp(datagram) {
            Ok(n) => n,
            Err(e) => {
                self.count_srtp_error(&e);
                return;
            }
        };
        let packet = &datagram[..len];
        let Ok(header) = rtp::RtpHeader::parse(packet) else {
            self.counters.dropped_malformed += 1;
            return;
        };
        let mid = ep.mid_ext_id.and_then(|id| header.mid(packet, id));
        let Some(pi) = ep.find_producer(header.ssrc, mid) else {
            self.counters.dropped_unknown_ssrc += 1;
            return;
        };
        let producer = &mut ep.producers[pi];
        if header.payload_type != producer.pt {
            // Only the negotiated codec is forwarded (no RTX, FEC or others).
            self.counters.dropped_unknown_ssrc += 1;
            return;
        }
        if !producer.forwarding() {
            // Muted by a moderator, or refused by the endpoint's policy.
            self.counters.dropped_policy += 1;
            return;
        }
        producer.handle_packet(
            header.ssrc,
            header.sequence_number,
            header.timestamp,
            now.saturating_duration_since(self.epoch),
        );
        let keyframe = producer.kind == MediaKind::Video
            && header
                .payload(packet)
                .and_then(|p| rtp::Vp8Descriptor::parse(p).ok())
                .is_some_and(|d| d.is_keyframe());
        self.targets.clear();
        self.targets.extend_from_slice(&producer.consumers);
        let source = SourceRef {
            endpoint: index,
            producer: pi,
        };

        let mut want_keyframe = false;
        for &(r, s) in &self.targets {
            let Some(receiver) = self.endpoints.get_mut(r).and_then(Option::as_mut) else {
                continue;
            };
            let Some(to) = receiver.media_target() else {
                continue;
            };
            let (Some(slot), Some(srtp)) = (receiver.slots.get_mut(s), receiver.srtp.as_mut())
            else {
                continue;
            };
            if slot.source != Some(source) {
                continue;
            }
            let (seq, ts) =
                match slot.rewrite(now, header.sequence_number, header.timestamp, keyframe) {
                    Rewrite::Forward { seq, ts } => (seq, ts),
                    Rewrite::WaitingKeyframe => {
                        want_keyframe = true;
                        continue;
                    }
                };
            let pt = slot.pt;
            let ssrc = slot.ssrc;
            let sent = tx.push_with(receiver.port, to, |out| {
                let n = write_forwarded(out, packet, &header, pt, seq, ts, ssrc)?;
                srtp.outbound.protect_rtp(out, n).ok()
            });
            if sent.is_some() {
                self.counters.rtp_forwarded += 1;
            }
        }
        if want_keyframe {
            self.request_keyframe(now, source, tx);
        }
    }

    fn handle_rtcp(
        &mut self,
        now: Instant,
        index: usize,
        from: SocketAddr,
        datagram: &mut [u8],
        tx: &mut TxQueue,
    ) {
        let Some(ep) = self.endpoints[index].as_mut() else {
            return;
        };
        if !ep.ice.is_validated(from) {
            self.counters.dropped_unknown_source += 1;
            return;
        }
        let Some(srtp) = ep.srtp.as_mut() else {
            self.counters.dropped_unknown_source += 1;
            return;
        };
        let len = match srtp.inbound.unprotect_rtcp(datagram) {
            Ok(n) => n,
            Err(e) => {
                self.count_srtp_error(&e);
                return;
            }
        };
        self.keyframe_wanted.clear();
        for packet in rtcp::RtcpIter::new(&datagram[..len]) {
            let Ok(packet) = packet else {
                self.counters.dropped_malformed += 1;
                break;
            };
            match packet {
                rtcp::RtcpPacket::SenderReport(sr) => {
                    if let Some(p) = ep
                        .producers
                        .iter_mut()
                        .find(|p| p.ssrc == Some(sr.sender_ssrc()))
                    {
                        p.handle_sender_report(
                            sr.info.ntp_timestamp,
                            now.saturating_duration_since(self.epoch),
                        );
                    }
                }
                rtcp::RtcpPacket::Pli(pli) => {
                    if let Some(source) = ep
                        .slot_by_ssrc(pli.media_ssrc)
                        .and_then(|s| ep.slots[s].source)
                    {
                        self.keyframe_wanted.push(source);
                    }
                }
                rtcp::RtcpPacket::Fir(fir) => {
                    for media_ssrc in fir.media_ssrcs() {
                        if let Some(source) =
                            ep.slot_by_ssrc(media_ssrc).and_then(|s| ep.slots[s].source)
                        {
                            self.keyframe_wanted.push(source);
                        }
                    }
                }
                // Receiver reports, NACKs and REMB end here: RTCP is terminated.
                _ => {}
            }
        }
        for i in 0..self.keyframe_wanted.len() {
            let source = self.keyframe_wanted[i];
            self.request_keyframe(now, source, tx);
        }
    }

    /// Sends a PLI to the publisher of `source`, at most every
    /// [`KEYFRAME_REQUEST_INTERVAL`].
    fn request_keyframe(&mut self, now: Instant, source: SourceRef, tx: &mut TxQueue) {
        let Some(ep) = self
            .endpoints
            .get_mut(source.endpoint)
            .and_then(Option::as_mut)
        else {
            return;
        };
        let Some(to) = ep.media_target() else { return };
        let sender_ssrc = ep.rtcp_ssrc;
        let (Some(producer), Some(srtp)) =
            (ep.producers.get_mut(source.producer), ep.srtp.as_mut())
        else {
            return;
        };
        let Some(media_ssrc) = producer.ssrc else {
            return;
        };
        if producer
            .last_keyframe_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        producer.last_keyframe_request = Some(now);
        tx.push_with(ep.port, to, |out| {
            let n = rtcp::write_pli(out, sender_ssrc, media_ssrc).ok()?;
            srtp.outbound.protect_rtcp(out, n).ok()
        });
    }

    /// Timers: DTLS retransmissions, consent expiry, receiver reports and
    /// keyframe retries.
    pub fn handle_timeout(&mut self, now: Instant, tx: &mut TxQueue) {
        let housekeeping = self.next_housekeeping.is_none_or(|t| now >= t);
        for index in 0..self.endpoints.len() {
            let Some(ep) = self.endpoints[index].as_mut() else {
                continue;
            };
            if ep.dtls_deadline.is_some_and(|t| now >= t) {
                ep.dtls_deadline = None;
                if let Err(e) = ep.dtls.handle_timeout(now) {
                    tracing::info!(endpoint = %ep.id, error = %e, "dtls timed out");
                    self.counters.dtls_failures += 1;
                    self.remove_endpoint(index, Some("dtls-failed"));
                    continue;
                }
                self.drain_dtls(index, tx);
            }
            if !housekeeping {
                continue;
            }
            let Some(ep) = self.endpoints[index].as_mut() else {
                continue;
            };
            if now >= ep.ice.consent_deadline() {
                if ep.ice.selected().is_none() {
                    self.counters.ice_failures += 1;
                }
                tracing::info!(endpoint = %ep.id, conference = %ep.conference, "consent expired");
                self.remove_endpoint(index, Some("consent-expired"));
                continue;
            }
            if ep.state == EndpointState::Connected && now >= ep.next_report {
                ep.next_report = now + REPORT_INTERVAL;
                Self::send_receiver_report(ep, now.saturating_duration_since(self.epoch), tx);
            }
            self.keyframe_wanted.clear();
            if let Some(ep) = self.endpoints[index].as_ref() {
                for slot in &ep.slots {
                    if slot.is_waiting_keyframe()
                        && let Some(source) = slot.source
                    {
                        self.keyframe_wanted.push(source);
                    }
                }
            }
            for i in 0..self.keyframe_wanted.len() {
                let source = self.keyframe_wanted[i];
                self.request_keyframe(now, source, tx);
            }
        }
        if housekeeping {
            self.next_housekeeping = (!self.by_port.is_empty()).then(|| now + TICK);
            self.activity = self.count_activity(now);
        }
    }

    /// Who sends what, as of the last housekeeping (every 100 ms while endpoints
    /// exist).
    pub fn activity(&self) -> Activity {
        self.activity
    }

    fn count_activity(&self, now: Instant) -> Activity {
        let since_epoch = now.saturating_duration_since(self.epoch);
        let recent = |p: &Producer, kind: MediaKind| {
            p.kind == kind
                && p.last_packet
                    .is_some_and(|t| since_epoch.saturating_sub(t) <= SENDING_WINDOW)
        };
        let mut activity = Activity::default();
        // A conference lives on one shard, so a shard can tell whether any of its
        // endpoints sends. No allocation: this runs on the media thread.
        for members in self.conferences.values() {
            let mut any = false;
            for ep in members
                .iter()
                .filter_map(|&i| self.endpoints.get(i)?.as_ref())
            {
                let audio = ep.producers.iter().any(|p| recent(p, MediaKind::Audio));
                let video = ep.producers.iter().any(|p| recent(p, MediaKind::Video));
                activity.audio += u64::from(audio);
                activity.video += u64::from(video);
                any |= audio || video;
            }
            if !any {
                activity.inactive_conferences += 1;
                activity.inactive_endpoints += members.len() as u64;
            }
        }
        activity
    }

    fn send_receiver_report(ep: &mut Endpoint, since_epoch: Duration, tx: &mut TxQueue) {
        let (Some(to), Some(srtp)) = (ep.ice.selected(), ep.srtp.as_mut()) else {
            return;
        };
        let mut blocks = [rtcp::ReportBlock::default(); 8];
        let mut n = 0;
        for p in ep.producers.iter_mut() {
            if n == blocks.len() {
                break;
            }
            if let Some(block) = p.poll_report_block(since_epoch) {
                blocks[n] = block;
                n += 1;
            }
        }
        if n == 0 {
            return;
        }
        let sender = ep.rtcp_ssrc;
        tx.push_with(ep.port, to, |out| {
            let len = rtcp::write_receiver_report(out, sender, &blocks[..n]).ok()?;
            srtp.outbound.protect_rtcp(out, len).ok()
        });
    }

    fn count_srtp_error(&mut self, e: &srtp::SrtpError) {
        match e {
            srtp::SrtpError::Replay => self.counters.dropped_replay += 1,
            srtp::SrtpError::AuthFailed => self.counters.dropped_auth += 1,
            _ => self.counters.dropped_malformed += 1,
        }
    }

    /// Maps every unconsumed producer of the conference onto a free slot of the
    /// right kind on each other endpoint, in join order, and reports changed maps.
    fn rebalance(&mut self, conference: &ConferenceId) {
        let Some(members) = self.conferences.get(conference).cloned() else {
            return;
        };
        let mut changed: Vec<usize> = Vec::new();
        for &r in &members {
            for &e in &members {
                if e == r {
                    continue;
                }
                let n_producers = self.endpoints[e]
                    .as_ref()
                    .map_or(0, |ep| ep.producers.len());
                for p in 0..n_producers {
                    let source = SourceRef {
                        endpoint: e,
                        producer: p,
                    };
                    let Some(kind) = self.endpoints[e]
                        .as_ref()
                        .and_then(|ep| ep.producers.get(p))
                        .filter(|pr| pr.refused.is_none())
                        .map(|pr| pr.kind)
                    else {
                        continue;
                    };
                    let Some(receiver) = self.endpoints[r].as_mut() else {
                        continue;
                    };
                    if receiver.slots.iter().any(|s| s.source == Some(source)) {
                        continue;
                    }
                    let Some(s) = receiver
                        .slots
                        .iter()
                        .position(|s| s.source.is_none() && s.kind == kind)
                    else {
                        continue;
                    };
                    receiver.slots[s].assign(Some(source));
                    if let Some(sender) = self.endpoints[e].as_mut() {
                        sender.producers[p].consumers.push((r, s));
                    }
                    if !changed.contains(&r) {
                        changed.push(r);
                    }
                }
            }
        }
        for r in changed {
            self.announce_sources(r);
        }
    }

    /// Queues a `SourcesMapChanged` event with the receiver's whole current map.
    fn announce_sources(&mut self, receiver: usize) {
        let Some(ep) = self.endpoints[receiver].as_ref() else {
            return;
        };
        let sources = ep
            .slots
            .iter()
            .filter_map(|slot| {
                let src = slot.source?;
                let sender = self.endpoints.get(src.endpoint)?.as_ref()?;
                let producer = sender.producers.get(src.producer)?;
                Some(MappedSource {
                    source: producer.source_name.clone(),
                    owner: sender.id.0.clone(),
                    ssrc: slot.ssrc,
                    video: slot.kind == MediaKind::Video,
                    mid: slot.mid.clone(),
                })
            })
            .collect();
        self.events.push_back(MediaEvent::SourcesMapChanged {
            conference: ep.conference.clone(),
            receiver: ep.id.clone(),
            sources,
        });
    }

    /// Removes an endpoint, unmaps its sources and slots, and refills freed slots.
    fn remove_endpoint(&mut self, index: usize, reason: Option<&'static str>) {
        let Some(ep) = self.endpoints.get_mut(index).and_then(Option::take) else {
            return;
        };
        self.by_port.remove(&ep.port);
        self.released_ports.push(ep.port);
        self.free.push(index);
        let mut changed = Vec::new();
        for producer in &ep.producers {
            for &(r, s) in &producer.consumers {
                if let Some(slot) = self.endpoints[r].as_mut().and_then(|e| e.slots.get_mut(s)) {
                    slot.assign(None);
                    if !changed.contains(&r) {
                        changed.push(r);
                    }
                }
            }
        }
        for (s, slot) in ep.slots.iter().enumerate() {
            if let Some(src) = slot.source
                && let Some(p) = self.endpoints[src.endpoint]
                    .as_mut()
                    .and_then(|e| e.producers.get_mut(src.producer))
            {
                p.consumers.retain(|&c| c != (index, s));
            }
        }
        if let Some(members) = self.conferences.get_mut(&ep.conference) {
            members.retain(|&i| i != index);
            if members.is_empty() {
                self.conferences.remove(&ep.conference);
            }
        }
        if let Some(reason) = reason {
            self.events.push_back(MediaEvent::EndpointExpired {
                conference: ep.conference.clone(),
                endpoint: ep.id.clone(),
                reason,
            });
        }
        for r in &changed {
            self.announce_sources(*r);
        }
        self.rebalance(&ep.conference);
    }
}

/// Marks the video producers `policy` does not allow as refused: without screen
/// sharing, screens (`a=content:slides`) and every camera after the first.
/// Producers it allows lose an earlier policy refusal.
fn apply_policy(producers: &mut [Producer], policy: EndpointPolicy) {
    let mut camera_seen = false;
    for p in producers.iter_mut().filter(|p| p.kind == MediaKind::Video) {
        p.refused = if policy.screen_sharing {
            None
        } else if p.screen {
            Some(RefusalReason::ScreenSharingNotGranted)
        } else if camera_seen {
            Some(RefusalReason::OneVideoSourceOnly)
        } else {
            camera_seen = true;
            None
        };
    }
}
