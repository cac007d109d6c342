//! Joining: one endpoint built from its offer (a transport, a producer per
//! publishing m-line, a consumer per receiving one) and the SDP answer.

use super::super::quality::simulcast::SimulcastLayers;
use std::net::IpAddr;
use std::sync::Arc;

use dimpl::DtlsCertificate;
use rand::Rng;
use ringbridge_control::media::{EndpointId, EndpointPolicy};

use super::super::codec::CodecKind;
use super::super::error::CoreError;
use super::super::quality::dominant_speaker::SpeakerActivity;
use super::super::quality::nack_responder::{NackResponder, SlotOutput, SlotRtx};
use super::super::sdp::{self, AnswerSection, MediaKind, Offer, SlotAnnouncement};
use super::super::transport::demux::ReceiveRoute;
use super::super::transport::{Transport, TransportConfig};
use super::producer::SourceRepair;
use super::{Consumer, Endpoint, EndpointKey, Producer, Router, RouterIo};

/// What the shard lends a router to build an endpoint.
#[derive(Debug, Clone, Copy)]
pub struct JoinContext<'a> {
    /// The shard's DTLS configuration.
    pub dtls_config: &'a Arc<dimpl::Config>,
    /// The shard's certificate.
    pub certificate: &'a DtlsCertificate,
    /// SHA-256 fingerprint of the certificate.
    pub fingerprint: &'a [u8],
    /// Addresses put into host candidates.
    pub advertise: &'a [IpAddr],
    /// The ICE-TCP port put into passive TCP candidates, if any.
    pub tcp_port: Option<u16>,
    /// The shard's index (encoded in local ufrags).
    pub shard: usize,
    /// `x-google-start-bitrate` for publishers' video, kbit/s; 0 for none.
    pub video_start_bitrate_kbps: u32,
    /// The shared UDP port in single-port mode (`media.port`), sent from and
    /// put into the candidates instead of the endpoint's own port.
    pub single_port: Option<u16>,
}

impl Router {
    /// Adds endpoint `id` on local `port` from its parsed `offer`, publishing
    /// within `policy`; returns its key and the SDP answer.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &mut self,
        id: &EndpointId,
        offer: &Offer,
        port: u16,
        policy: EndpointPolicy,
        ctx: JoinContext<'_>,
        io: &mut RouterIo<'_>,
    ) -> Result<(EndpointKey, String), CoreError> {
        if self.find(id).is_some() {
            return Err(CoreError::DuplicateEndpoint(id.0.clone()));
        }
        let extensions = offer.extension_map();
        let transport = Box::new(Transport::new(
            TransportConfig {
                port,
                shard: ctx.shard,
                send_port: ctx.single_port.unwrap_or(port),
                dtls_config: ctx.dtls_config.clone(),
                certificate: ctx.certificate.clone(),
                remote_fingerprint: offer.fingerprint.clone(),
                remote_ufrag: offer.ice_ufrag.clone(),
                extensions,
                feedback: sdp::send_side_feedback(offer),
            },
            io.now,
        ));
        let key = self.endpoints.insert(Endpoint {
            id: id.clone(),
            name: id.0.as_str().into(),
            transport,
            producers: Vec::new(),
            consumers: Vec::new(),
            audio_until: None,
            video_until: None,
            speaker: SpeakerActivity::new(),
            connection_stats_at: None,
            constraints: Default::default(),
            allocation: Default::default(),
            budget_hold: Default::default(),
        });

        let mut rng = rand::rng();
        let mut sections = Vec::with_capacity(offer.media.len());
        let (mut audio_n, mut video_n) = (0, 0);
        let mut producers = Vec::new();
        let mut consumers = Vec::new();
        let mut routes = Vec::new();
        for m in &offer.media {
            let usable = m.kind != MediaKind::Other
                && m.codec.is_some()
                && m.direction != sdp::Direction::Inactive;
            let Some((codec, kind)) = m
                .codec
                .as_ref()
                .filter(|_| usable)
                .and_then(|c| Some((c, CodecKind::from_name(&c.name)?)))
            else {
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
                        format!("{id}-a{}", audio_n - 1)
                    }
                    _ => {
                        video_n += 1;
                        format!("{id}-v{}", video_n - 1)
                    }
                };
                let mut producer = Producer::new(
                    key,
                    m.mid.clone(),
                    m.kind,
                    kind,
                    codec.pt,
                    codec.clock_rate,
                    name,
                );
                producer.rtx_pt = m.rtx_pt;
                producer.red_pt = m.red_pt;
                // RID simulcast, or SSRC simulcast (a SIM group, no RIDs).
                let layers = m.rids.len().max(m.sim_ssrcs.len());
                if m.kind == MediaKind::Video && layers > 0 {
                    producer.simulcast = Some(SimulcastLayers::new(layers));
                }
                if m.kind == MediaKind::Video {
                    // A cache and NACK window per layer (each has its own
                    // sequence space); their memory is counted in
                    // `cache_memory_bytes` when a layer's first packet takes it.
                    producer.repair = Some(Box::new(SourceRepair::new(layers.max(1))));
                }
                producer.screen = m
                    .content
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case("slides"));
                let pk = self.producers.insert(producer);
                producers.push(pk);
                routes.push((
                    ReceiveRoute {
                        mid: m.mid.clone(),
                        producer: pk,
                        pt: codec.pt,
                        rtx_pt: m.rtx_pt,
                        red_pt: m.red_pt,
                        clock_rate: codec.clock_rate,
                        rids: m.rids.clone(),
                        announced: false,
                    },
                    m,
                ));
            }
            let slot = if m.direction.offerer_receives() {
                let mut fresh_ssrc = |taken: u32| loop {
                    let s: u32 = rng.random();
                    if s != 0
                        && s != taken
                        && !offer
                            .media
                            .iter()
                            .any(|m| m.ssrcs.contains(&s) || m.rtx_ssrcs.iter().any(|r| r.1 == s))
                    {
                        break s;
                    }
                };
                let ssrc = fresh_ssrc(0);
                let mut consumer =
                    Consumer::new(key, m.mid.clone(), m.kind, codec.pt, codec.clock_rate, ssrc);
                consumer.codec = kind;
                consumer.extensions = sdp::answer_extensions(&extensions, m, true);
                consumer.red_pt = m.red_pt;
                if m.kind == MediaKind::Video {
                    let rtx = m.rtx_pt.map(|pt| SlotRtx {
                        pt,
                        ssrc: fresh_ssrc(ssrc),
                    });
                    consumer.rtx_ssrc = rtx.map(|r| r.ssrc);
                    consumer.responder = Some(NackResponder::new(
                        SlotOutput {
                            pt: codec.pt,
                            ssrc,
                            rtx,
                        },
                        rng.random(),
                    ));
                }
                let rtx_ssrc = consumer.rtx_ssrc;
                consumers.push(self.consumers.insert(consumer));
                Some(SlotAnnouncement {
                    ssrc,
                    rtx_ssrc,
                    stream_id: format!("ringbridge-{id}"),
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

        let Some(ep) = self.endpoints.get_mut(key) else {
            return Err(CoreError::EndpointNotFound);
        };
        for (route, m) in routes {
            ep.transport
                .demux
                .add_simulcast_route(route, &m.ssrcs, &m.rtx_ssrcs, &m.sim_ssrcs);
        }
        ep.producers = producers;
        ep.consumers = consumers;
        let answer = sdp::write_answer(
            offer,
            &sections,
            &sdp::LocalTransport {
                ice_ufrag: ep.transport.local_ufrag(),
                ice_pwd: ep.transport.local_pwd(),
                fingerprint_sha256: ctx.fingerprint,
                addresses: ctx.advertise,
                port: ep.transport.send_port(),
                tcp_port: ctx.tcp_port,
                video_start_bitrate_kbps: ctx.video_start_bitrate_kbps,
            },
            rng.random::<u64>() >> 2,
        );
        self.members.push(key);
        if self.timers.get(super::RouterTimer::SenderReports).is_none() {
            self.timers.set(
                super::RouterTimer::SenderReports,
                io.now + super::reports::SENDER_REPORT_INTERVAL,
            );
        }
        self.apply_policy(key, policy);
        self.report_refusals(key, |_| true, io);
        self.rebalance_joined(key, io);
        self.recount_activity(io);
        io.activity_changed = true;
        Ok((key, answer))
    }
}
