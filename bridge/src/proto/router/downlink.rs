//! Each receiver's bandwidth estimate (its transport's send-side estimator,
//! fed by its transport-cc feedback): reported to the control plane as
//! [`MediaEvent::ConnectionStats`] every [`CONNECTION_STATS_INTERVAL`] while
//! feedback arrives; the allocation (`allocate.rs`) spends it on the
//! receiver's video, and it is probed with padding on a slot's RTX stream
//! when that allocation would want more than it allows.

use std::time::Duration;

use ringbridge_control::media::MediaEvent;

use super::super::quality::bwe::probe::PROBE_PACKETS;
use super::super::rtp_ext::{Extension, abs_send_time};
use super::super::sdp::MediaKind;
use super::{EndpointKey, ExtensionValues, Router, RouterIo, SlotFields, write_forwarded_body};

/// A probe packet: padding only, the most one RTP packet can carry (the
/// padding count is one byte).
const PROBE_PADDING: usize = 255;

/// How often a receiver is told the bridge's estimate toward it (jvb sends
/// its `ConnectionStats` on a similar period).
pub const CONNECTION_STATS_INTERVAL: Duration = Duration::from_secs(2);

impl Router {
    /// After RTCP from endpoint `key`: reports its estimate when one is due.
    pub(super) fn report_downlink(&mut self, key: EndpointKey, io: &mut RouterIo<'_>) {
        let Some(ep) = self.endpoints.get_mut(key) else {
            return;
        };
        let Some(bps) = ep.downlink_estimate() else {
            return;
        };
        if ep.connection_stats_at.is_some_and(|at| io.now < at) {
            return;
        }
        ep.connection_stats_at = Some(io.now + CONNECTION_STATS_INTERVAL);
        tracing::debug!(endpoint = %ep.id, conference = %self.id, bps, "downlink estimate");
        io.events.push_back(MediaEvent::ConnectionStats {
            conference: self.id.clone(),
            endpoint: ep.id.clone(),
            estimated_downlink_bps: bps,
        });
    }

    /// After feedback from endpoint `key`: probes its link when its estimate
    /// is short of what its allocation wants (the bitrate of the best layers
    /// its constraints allow, `ideal_bps`). Until the estimator has seen an
    /// overuse, with a cluster of [`PROBE_PACKETS`] sent back to back when one
    /// is due; after it, with the padding that keeps what is sent at the
    /// estimate ([`SendSideBwe::padding_due`](super::super::quality::bwe::SendSideBwe::padding_due)).
    /// Either is padding-only packets on the RTX stream of one of its video
    /// slots that has RTX, has sent media and carries the transport-wide
    /// sequence number.
    pub(super) fn probe_downlink(&mut self, key: EndpointKey, io: &mut RouterIo<'_>) {
        let Router {
            endpoints,
            consumers,
            ..
        } = self;
        let Some(ep) = endpoints.get_mut(key) else {
            return;
        };
        let now = io.now;
        let mut carrier = None;
        for &ck in &ep.consumers {
            let Some(c) = consumers.get(ck) else {
                continue;
            };
            let usable = c.kind == MediaKind::Video
                && c.rtx_ssrc.is_some()
                && c.last_timestamp().is_some()
                && c.extensions.contains(Extension::TransportCc);
            if usable {
                carrier = Some(ck);
                break;
            }
        }
        let wanted = ep.allocation.ideal_bps;
        let Some(c) = carrier.and_then(|ck| consumers.get_mut(ck)) else {
            return;
        };
        let (packets, target) = match ep.transport.probe_due(now, wanted) {
            Some(target) => {
                ep.transport.start_probe(now, target);
                (PROBE_PACKETS, target)
            }
            None => {
                let bytes = ep.transport.padding_due(now, wanted);
                (bytes.div_ceil(PROBE_PADDING), 0)
            }
        };
        if packets == 0 {
            return;
        }
        let mut body = [0u8; PROBE_PADDING];
        body[PROBE_PADDING - 1] = PROBE_PADDING as u8;
        let ts = c.last_timestamp().unwrap_or(0);
        let mid = c.mid.as_bytes();
        let negotiated = c.extensions;
        let abs = abs_send_time(io.since_epoch);
        let mut sent = 0;
        for _ in 0..packets {
            let Some((pt, ssrc, seq)) = c.responder.as_mut().and_then(|r| r.take_padding()) else {
                break;
            };
            let slot = SlotFields { pt, seq, ts, ssrc };
            let ok = ep.transport.send_padding_rtp(now, io.tx, true, |out, ctx| {
                let values = ExtensionValues {
                    mid: Some(mid),
                    audio_level: None,
                    abs_send_time: Some(abs),
                    twcc_seq: Some(ctx.twcc_seq),
                };
                write_forwarded_body(
                    out,
                    false,
                    &body,
                    true,
                    slot,
                    negotiated,
                    ctx.extensions,
                    &values,
                )
            });
            if ok.is_some() {
                sent += 1;
            }
        }
        io.counters.probe_packets_sent += sent;
        if target > 0 {
            tracing::debug!(endpoint = %ep.id, target, wanted, sent, "downlink probe");
        }
    }
}
