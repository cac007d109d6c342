//! The packet path of a router: an SRTP packet from one endpoint is unprotected
//! by its transport, demultiplexed to its producer, and written, rewritten and
//! protected straight into the send queue for every consumer of that producer;
//! SRTCP is terminated, its keyframe requests passed on.

use std::net::SocketAddr;

use super::super::codec::red;
use super::super::quality::keyframe::KeyframeDecision;
use super::super::quality::rtx;
use super::super::quality::seen::Seen;
use super::super::quality::simulcast::LayerDecision;
use super::super::rtcp::{Nack, ReportBlock, SenderInfo};
use super::super::rtp::{AudioLevel, RtpHeader};
use super::super::rtp_ext::{Extension, abs_send_time};
use super::super::sdp::MediaKind;
use super::super::transport::demux::Demuxed;
use super::super::transport::rtcp_term::PeerFeedback;
use super::keyframe::KeyframeCause;
use super::{
    EndpointKey, ExtensionValues, Rewrite, Router, RouterIo, RouterTimer, SlotFields, activity,
    speaker, write_forwarded_body,
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
            timers,
            nack_heap,
            speakers,
            members,
            audio_last_n,
            drop_silence,
            ..
        } = self;
        let Some(sender) = endpoints.get_mut(key) else {
            return;
        };
        let Some(mut len) = sender.transport.unprotect_rtp(from, datagram, io.counters) else {
            return;
        };
        let Ok(mut header) = RtpHeader::parse(&datagram[..len]) else {
            io.counters.dropped_malformed += 1;
            return;
        };
        sender
            .transport
            .record_arrival(io.arrival, &header, &datagram[..len]);
        let mut repaired = false;
        let (pk, entry) = match sender.transport.demux.classify(&header, &datagram[..len]) {
            Demuxed::Media { producer, entry } => (producer, entry),
            Demuxed::Rtx { producer } => {
                // RFC 4588: restore the original in place and handle it as such.
                let media = sender.transport.demux.rtx_media(header.ssrc);
                let (Some((entry, media_ssrc)), Some(p)) = (media, producers.get(producer)) else {
                    io.counters.dropped_rtx += 1;
                    return;
                };
                match rtx::unwrap_in_place(&mut datagram[..len], p.pt, media_ssrc) {
                    Ok(rtx::Unwrapped::Original { len: n, .. }) => len = n,
                    Ok(rtx::Unwrapped::Padding) => {
                        io.counters.dropped_rtx_padding += 1;
                        return;
                    }
                    Err(_) => {
                        io.counters.dropped_rtx += 1;
                        return;
                    }
                }
                let Ok(h) = RtpHeader::parse(&datagram[..len]) else {
                    io.counters.dropped_malformed += 1;
                    return;
                };
                header = h;
                if p.simulcast.is_some() || p.repair.is_none() {
                    // Only a retransmission that fills a hole goes on: besides
                    // answers to the bridge's NACKs, Chrome sends RTX copies
                    // of media it sent moments ago as bandwidth probes
                    // ("redundant payload"), the more so for simulcast. Such a
                    // duplicate would be dropped by each receiver's SRTP
                    // replay check and read as a loss in its transport-cc
                    // feedback. (The packet cache below refuses a second copy
                    // of what it holds too, as it does alone for a
                    // single-stream source, where such a copy still counts in
                    // `rtx_received`.)
                    let demux = &mut sender.transport.demux;
                    if demux.seen(entry, header.sequence_number) != Seen::No {
                        io.counters.dropped_rtx += 1;
                        return;
                    }
                    demux.mark_seen(entry, header.sequence_number);
                }
                repaired = true;
                io.counters.rtx_received += 1;
                (producer, entry)
            }
            Demuxed::Unknown => {
                io.counters.dropped_unknown_ssrc += 1;
                return;
            }
        };
        let packet = &datagram[..len];
        let Some(producer) = producers.get_mut(pk) else {
            io.counters.dropped_unknown_ssrc += 1;
            return;
        };
        let red = producer.red_pt.is_some_and(|pt| pt == header.payload_type);
        if header.payload_type != producer.pt && !red {
            // Only the negotiated codec (plain or in RED) is forwarded.
            io.counters.dropped_unknown_ssrc += 1;
            return;
        }
        // A RED packet's primary encoding, for receivers that did not negotiate
        // RED (RFC 2198): read once, copied per such receiver.
        let red_primary = if red {
            let payload = header.payload_range();
            packet
                .get(payload.clone())
                .and_then(|p| red::primary(p).ok())
                .filter(|(pt, _)| *pt == producer.pt)
                .map(|(_, r)| payload.start + r.start..payload.start + r.end)
        } else {
            None
        };
        if !producer.forwarding() {
            // Muted by a moderator, or refused by the endpoint's policy.
            io.counters.dropped_policy += 1;
            return;
        }
        let now = io.now;
        let rid = sender
            .transport
            .demux
            .entries()
            .get(entry)
            .and_then(|e| e.rid);
        // A simulcast source: which layer this is (its RID's place in the
        // offer, or its SSRC's in the SIM group; an SSRC bound without either
        // counts as the first). Each layer is repaired on its own.
        let layer = producer.simulcast.as_ref().map(|_| rid.unwrap_or(0));
        if let Some(repair) = producer.repair.as_deref_mut()
            && let Some(stream) = repair.layer_mut(layer.unwrap_or(0))
        {
            let ext = stream.seq.extend(header.sequence_number);
            if repaired && stream.cache.get(ext).is_some() {
                // A second answer to the same NACK: the receivers have it.
                io.counters.dropped_rtx += 1;
                return;
            }
            stream.media_ssrc = Some(header.ssrc);
            stream.nack.handle_packet(now, header.sequence_number);
            // Too large or older than the ring: not cached, still forwarded.
            io.counters.cache_memory_bytes += stream.cache_packet(now, ext, packet);
            let next = stream.nack.poll_timeout();
            if let Some(at) = repair.scheduled.update(next) {
                nack_heap.push(at, pk);
                timers.set_earliest(RouterTimer::Nack, at);
            }
        }
        if !repaired {
            // Retransmissions stay out of the receive statistics (jitter).
            sender
                .transport
                .demux
                .record(entry, &header, io.since_epoch);
        }
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
        if !repaired && let Some(level) = audio_level.and_then(AudioLevel::parse) {
            let forward = speaker::handle_level(
                sender,
                producer,
                speakers,
                timers,
                io.counters,
                now,
                level,
                *drop_silence,
            );
            let loud_enough = forward
                && speaker::among_loudest(key, endpoints, members, speakers, *audio_last_n, now);
            if forward && !loud_enough {
                io.counters.dropped_audio_last_n += 1;
            }
            if !loud_enough {
                // Dropped as a DTX sender would not send: the receivers' sequence
                // numbers close over it, so their jitter buffers see a pause,
                // not a loss to conceal (timestamps still jump, as with DTX).
                for &ck in &producer.fanout {
                    if let Some(c) = consumers.get_mut(ck) {
                        c.close_over_dropped();
                    }
                }
                if became_active {
                    self.recount_activity(io);
                }
                return;
            }
        }
        if producer.packets == 0 && !producer.fanout.is_empty() {
            // The source's first packet: an SSRC learned from it makes the
            // source one the keyframe retry can ask (see `retry_keyframes`).
            timers.set_earliest(RouterTimer::KeyframeRetry, now);
        }
        producer.packets += 1;
        let info = if producer.kind == MediaKind::Video {
            header
                .payload(packet)
                .and_then(|p| producer.codec.parse(p).ok())
        } else {
            None
        };
        let keyframe = info.is_some_and(|i| i.keyframe);
        let mut height_learned = false;
        if let (Some(layers), Some(l)) = (producer.simulcast.as_mut(), layer) {
            let before = layers.height(l);
            layers.note_packet(l, now, info.and_then(|i| i.resolution));
            height_learned = layers.height(l) != before;
        }
        let mut reallocate = false;
        if producer.kind == MediaKind::Video {
            producer.layer_rates.note(layer.unwrap_or(0), now, len);
            let mask = producer.active_layer_mask(now);
            if mask != producer.allocated_mask || height_learned {
                // A layer started (or told its height): re-allocate before
                // this packet, so that a receiver can switch at its key frame.
                producer.allocated_mask = mask;
                reallocate = true;
            }
        }
        if reallocate {
            self.reallocate_all(io);
        }
        let Router {
            endpoints,
            producers,
            consumers,
            ..
        } = self;
        let Some(producer) = producers.get_mut(pk) else {
            return;
        };
        let abs_send_time = abs_send_time(io.since_epoch);
        let renumbered = producer.renumbered();

        let mut want_keyframe = false;
        for &ck in &producer.fanout {
            let Some(consumer) = consumers.get_mut(ck) else {
                continue;
            };
            let Some(receiver) = endpoints.get_mut(consumer.receiver) else {
                continue;
            };
            if receiver.transport.media_target().is_none() || !consumer.forwarded {
                continue;
            }
            // What this receiver gets: RED as it came, the primary alone, or
            // the plain codec (and nothing of an unreadable RED packet).
            let (pt, body, padded) = match (red, consumer.red_pt) {
                (true, Some(red_pt)) => (
                    red_pt,
                    header.header_len..header.packet_len,
                    header.padding_len > 0,
                ),
                (true, None) => match &red_primary {
                    Some(r) => (consumer.pt, r.clone(), false),
                    None => {
                        io.counters.dropped_malformed += 1;
                        continue;
                    }
                },
                (false, _) => (
                    consumer.pt,
                    header.header_len..header.packet_len,
                    header.padding_len > 0,
                ),
            };
            let Some(body) = packet.get(body) else {
                continue;
            };
            if let Some(l) = layer {
                // The wanted layer is the allocation's (`allocate.rs`).
                match consumer.layers.decide(l, keyframe) {
                    LayerDecision::Drop => continue,
                    LayerDecision::Switch => {
                        tracing::trace!(slot = consumer.ssrc, layer = l, "layer switch");
                        consumer.begin_layer()
                    }
                    LayerDecision::Forward => {}
                }
            }
            // Temporal layers above the slot's target are dropped (see
            // `Producer::renumbered` and `Consumer::set_temporal_target`).
            if renumbered
                && let Some(i) = info
                && !consumer.filter_temporal(i.temporal_id, i.layer_sync, i.keyframe, i.frame_start)
            {
                continue;
            }
            let (seq, ts) =
                match consumer.rewrite(now, header.sequence_number, header.timestamp, keyframe) {
                    Rewrite::Forward { seq, ts } => (seq, ts),
                    Rewrite::WaitingKeyframe => {
                        // The slot changed source: it asks once (throttled per source).
                        want_keyframe |= matches!(
                            producer
                                .keyframes
                                .handle_slot_switch(now, &mut consumer.keyframes),
                            KeyframeDecision::Send(_)
                        );
                        continue;
                    }
                };
            let slot = SlotFields {
                pt,
                seq,
                ts,
                ssrc: consumer.ssrc,
            };
            let negotiated = consumer.extensions;
            // VP8 numbering continued across layer switches and over dropped
            // temporal-layer pictures (simulcast sources and sources without
            // a cache: see `Producer::renumbered`).
            let numbering = info
                .filter(|_| renumbered)
                .filter(|i| {
                    i.picture_id.is_some() || i.tl0_pic_idx.is_some() || i.key_idx.is_some()
                })
                .map(|i| {
                    let (pid, tl0) =
                        consumer
                            .vp8
                            .map(i.picture_id, i.long_picture_id, i.tl0_pic_idx);
                    let key = i.key_idx.map(|k| consumer.vp8.map_key_idx(k));
                    (
                        (pid != i.picture_id).then_some(pid).flatten(),
                        (tl0 != i.tl0_pic_idx).then_some(tl0).flatten(),
                        (key != i.key_idx).then_some(key).flatten(),
                    )
                })
                .filter(|(p, t, k)| p.is_some() || t.is_some() || k.is_some());
            // For NACKs: which layer and mapping this slot packet came from
            // (the VP8 offsets just mapped included).
            consumer.note_forwarded(layer.unwrap_or(0), seq, renumbered);
            let mid = consumer.mid.as_bytes();
            let codec = producer.codec;
            let carries_twcc = negotiated.contains(Extension::TransportCc);
            let sent = receiver
                .transport
                .send_rtp(now, io.tx, carries_twcc, |out, ctx| {
                    let values = ExtensionValues {
                        mid: Some(mid),
                        audio_level,
                        abs_send_time: Some(abs_send_time),
                        twcc_seq: Some(ctx.twcc_seq),
                    };
                    let len = write_forwarded_body(
                        out,
                        header.marker,
                        body,
                        padded,
                        slot,
                        negotiated,
                        ctx.extensions,
                        &values,
                    )?;
                    if let Some((pid, tl0, key)) = numbering {
                        // Same widths: the packet's length does not change.
                        let payload = out.get_mut(len - body.len()..len)?;
                        if pid.is_some() || tl0.is_some() {
                            codec.rewrite(payload, pid, tl0).ok()?;
                        }
                        if let Some(k) = key {
                            codec.rewrite_key_idx(payload, k).ok()?;
                        }
                    }
                    Some(len)
                });
            if sent.is_some() {
                io.counters.rtp_forwarded += 1;
                let payload_len = body.len();
                consumer.reports.handle_sent(now, ts, payload_len);
            }
        }
        if want_keyframe {
            self.send_keyframe_request(pk, io);
        }
        if became_active {
            self.recount_activity(io);
        }
    }

    /// An SRTCP packet from endpoint `key`: terminated; keyframe requests are
    /// passed on (throttled) to the publishers of the slots they name, NACKs
    /// answered from the sources' caches.
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
        let compound = &datagram[..len];
        let mut wanted = [0u32; 16];
        let mut n = 0;
        let mut nacks: [Option<Nack<'_>>; 8] = [None; 8];
        let mut n_nacks = 0;
        let mut srs = [SenderInfo::default(); 4];
        let mut n_srs = 0;
        let mut blocks = [ReportBlock::default(); 16];
        let mut n_blocks = 0;
        ep.transport.handle_rtcp(
            io.now,
            io.since_epoch,
            compound,
            io.counters,
            |fb| match fb {
                PeerFeedback::Keyframe(ssrc) => {
                    if n < wanted.len() {
                        wanted[n] = ssrc;
                        n += 1;
                    }
                }
                PeerFeedback::Nack(nack) => {
                    if n_nacks < nacks.len() {
                        nacks[n_nacks] = Some(nack);
                        n_nacks += 1;
                    }
                }
                PeerFeedback::SenderReport(info) => {
                    if n_srs < srs.len() {
                        srs[n_srs] = info;
                        n_srs += 1;
                    }
                }
                PeerFeedback::ReportBlock(block) => {
                    if n_blocks < blocks.len() {
                        blocks[n_blocks] = block;
                        n_blocks += 1;
                    }
                }
            },
        );
        self.report_downlink(key, io);
        self.reallocate_on_fall(key, io);
        self.probe_downlink(key, io);
        for info in &srs[..n_srs] {
            self.handle_source_clock(key, info, io.now);
        }
        for block in &blocks[..n_blocks] {
            self.handle_report_block(key, block, io.now);
        }
        for nack in nacks[..n_nacks].iter().flatten() {
            self.answer_nack(key, nack, io);
        }
        for &ssrc in &wanted[..n] {
            let slot = self.endpoints.get(key).and_then(|ep| {
                ep.consumers.iter().copied().find_map(|ck| {
                    let c = self.consumers.get(ck)?;
                    (c.ssrc == ssrc).then_some((ck, c.source()?))
                })
            });
            if let Some((ck, pk)) = slot {
                self.request_keyframe(pk, KeyframeCause::Receiver(ck), io);
            }
        }
    }
}
