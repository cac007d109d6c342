//! The packet path of a router: an SRTP packet from one endpoint is unprotected
//! by its transport, demultiplexed to its producer, and written, rewritten and
//! protected straight into the send queue for every consumer of that producer;
//! SRTCP is terminated, its keyframe requests passed on.

use std::net::SocketAddr;

use super::super::rtp::RtpHeader;
use super::super::rtp_ext::{Extension, abs_send_time};
use super::super::sdp::MediaKind;
use super::super::transport::demux::Demuxed;
use super::{
    Consumer, EndpointKey, ExtensionValues, Rewrite, Router, RouterIo, SlotFields, activity,
    write_forwarded,
};

impl Router {
    /// An SRTP packet from endpoint `key`: unprotected in place, demultiplexed
    /// to its producer and written, rewritten and protected for every consumer.
    pub fn handle_rtp(
        &mut self,
        key: EndpointKey,
        from: SocketAddr,
        datagram: &mut [u8],
        io: &mut RouterIo<'_>,
    ) {
        let Router {
            endpoints,
            producers,
            consumers,
            ..
        } = self;
        let Some(sender) = endpoints.get_mut(key) else {
            return;
        };
        let Some(len) = sender.transport.unprotect_rtp(from, datagram, io.counters) else {
            return;
        };
        let packet = &datagram[..len];
        let Ok(header) = RtpHeader::parse(packet) else {
            io.counters.dropped_malformed += 1;
            return;
        };
        let (pk, entry) = match sender.transport.demux.classify(&header, packet) {
            Demuxed::Media { producer, entry } => (producer, entry),
            Demuxed::Rtx { .. } => {
                // Recognised repair packets; unwrapping them is the next step.
                io.counters.dropped_rtx += 1;
                return;
            }
            Demuxed::Unknown => {
                io.counters.dropped_unknown_ssrc += 1;
                return;
            }
        };
        let Some(producer) = producers.get_mut(pk) else {
            io.counters.dropped_unknown_ssrc += 1;
            return;
        };
        if header.payload_type != producer.pt {
            // Only the negotiated codec is forwarded (no FEC or others).
            io.counters.dropped_unknown_ssrc += 1;
            return;
        }
        if !producer.forwarding() {
            // Muted by a moderator, or refused by the endpoint's policy.
            io.counters.dropped_policy += 1;
            return;
        }
        sender
            .transport
            .demux
            .record(entry, &header, io.since_epoch);
        producer.packets += 1;
        let now = io.now;
        let became_active = activity::note_packet(sender, producer.kind, now);
        let audio_level = if producer.kind == MediaKind::Audio {
            sender
                .transport
                .extensions()
                .id(Extension::AudioLevel)
                .and_then(|id| header.extension_value(packet, id))
        } else {
            None
        };
        let keyframe = producer.kind == MediaKind::Video
            && header
                .payload(packet)
                .and_then(|p| producer.codec.parse(p).ok())
                .is_some_and(|info| info.keyframe);
        let abs_send_time = abs_send_time(io.since_epoch);

        let mut want_keyframe = false;
        for &ck in &producer.fanout {
            let Some(consumer) = consumers.get_mut(ck) else {
                continue;
            };
            let Some(receiver) = endpoints.get_mut(consumer.receiver) else {
                continue;
            };
            if receiver.transport.media_target().is_none() {
                continue;
            }
            let (seq, ts) =
                match consumer.rewrite(now, header.sequence_number, header.timestamp, keyframe) {
                    Rewrite::Forward { seq, ts } => (seq, ts),
                    Rewrite::WaitingKeyframe => {
                        want_keyframe = true;
                        continue;
                    }
                };
            let slot = SlotFields {
                pt: consumer.pt,
                seq,
                ts,
                ssrc: consumer.ssrc,
            };
            let negotiated = consumer.extensions;
            let mid = consumer.mid.as_bytes();
            let sent = receiver.transport.send_rtp(io.tx, |out, ctx| {
                let values = ExtensionValues {
                    mid: Some(mid),
                    audio_level,
                    abs_send_time: Some(abs_send_time),
                    twcc_seq: Some(ctx.twcc_seq),
                };
                write_forwarded(
                    out,
                    packet,
                    &header,
                    slot,
                    negotiated,
                    ctx.extensions,
                    &values,
                )
            });
            if sent.is_some() {
                io.counters.rtp_forwarded += 1;
            }
        }
        if want_keyframe {
            self.request_keyframe(pk, io);
        }
        if became_active {
            self.recount_activity(io);
        }
    }

    /// An SRTCP packet from endpoint `key`: terminated, keyframe requests passed
    /// on to the publishers of the slots they name.
    pub fn handle_rtcp(
        &mut self,
        key: EndpointKey,
        from: SocketAddr,
        datagram: &mut [u8],
        io: &mut RouterIo<'_>,
    ) {
        let Some(ep) = self.endpoints.get_mut(key) else {
            return;
        };
        let Some(len) = ep.transport.unprotect_rtcp(from, datagram, io.counters) else {
            return;
        };
        let mut wanted = [0u32; 16];
        let mut n = 0;
        ep.transport
            .handle_rtcp(io.since_epoch, &datagram[..len], io.counters, |ssrc| {
                if n < wanted.len() {
                    wanted[n] = ssrc;
                    n += 1;
                }
            });
        for &ssrc in &wanted[..n] {
            let source = self.endpoints.get(key).and_then(|ep| {
                ep.consumers
                    .iter()
                    .filter_map(|&ck| self.consumers.get(ck))
                    .find(|c| c.ssrc == ssrc)
                    .and_then(Consumer::source)
            });
            if let Some(pk) = source {
                self.request_keyframe(pk, io);
            }
        }
    }
}
