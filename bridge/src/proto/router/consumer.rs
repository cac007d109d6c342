//! A receive slot: one `recvonly` m-line of a receiver, fed by one producer at a time.
//!
//! The receiver sees one continuous RTP stream per slot whatever source feeds it
//! (jitsi-videobridge's SSRC rewriting): the slot has a fixed SSRC announced in the
//! answer, and when the source changes, sequence numbers continue from the last one
//! sent and timestamps advance by the wall-clock time since the last packet, as
//! mediasoup's `Consumer` does on a layer or source switch.

use std::sync::Arc;
use std::time::Instant;

use super::super::codec::CodecKind;
use super::super::codec::vp8::{Vp8Continuity, Vp8Offsets};
use super::super::quality::keyframe::ReceiverKeyframeState;
use super::super::quality::nack_responder::{NackResponder, SlotRewrite};
use super::super::quality::sender_report::SlotSenderReport;
use super::super::quality::simulcast::LayerSwitch;
use super::super::quality::slot_history::SlotHistory;
use super::super::quality::temporal::{TemporalDecision, TemporalFilter};
use super::super::rtp_ext::ExtensionSet;
use super::super::sdp::MediaKind;
use super::keys::{EndpointKey, ProducerKey};

#[derive(Debug, Clone, Copy)]
struct LastSent {
    seq: u16,
    ts: u32,
    at: Instant,
}

/// One receive slot of a receiver and its rewriting state.
#[derive(Debug, Clone)]
pub struct Consumer {
    /// The receiving endpoint.
    pub receiver: EndpointKey,
    /// The receiver's m-line (shared with the source-map events).
    pub mid: Arc<str>,
    /// Audio or video.
    pub kind: MediaKind,
    /// The codec the receiver negotiated on this m-line: only sources of the
    /// same codec are mapped onto the slot. [`Consumer::new`] takes Opus for
    /// audio and VP8 for video; the router sets the answered one.
    pub codec: CodecKind,
    /// Payload type the receiver negotiated for the codec.
    pub pt: u8,
    /// Payload type the receiver negotiated for RED carrying the codec (audio):
    /// RED is forwarded as it came; without it, only the primary encoding.
    pub red_pt: Option<u8>,
    /// RTP clock rate of the codec.
    pub clock_rate: u32,
    /// The fixed SSRC of this slot, announced in the answer.
    pub ssrc: u32,
    /// Header extensions the answer negotiated on this m-line (written on
    /// every forwarded packet when the transport has their ids).
    pub extensions: ExtensionSet,
    /// The producer currently mapped onto this slot: the source of truth of the
    /// producer-consumer relation (set only through `Router::assign`).
    source: Option<ProducerKey>,
    seq_offset: u16,
    ts_offset: u32,
    first_slot_seq: u16,
    last: Option<LastSent>,
    need_sync: bool,
    waiting_keyframe: bool,
    /// Packets sent on this slot.
    pub packets_sent: u64,
    /// The slot's RTX SSRC (video slots whose receiver negotiated RTX),
    /// announced with `a=ssrc-group:FID`.
    pub rtx_ssrc: Option<u32>,
    /// Answers the receiver's NACKs from the source's cache (video slots).
    pub responder: Option<NackResponder>,
    /// The receiver's keyframe-request budget for the current source.
    pub keyframes: ReceiverKeyframeState,
    /// The slot's sender reports and the RTT they measure.
    pub reports: SlotSenderReport,
    /// The RTT toward the receiver, from its report blocks about this slot.
    pub rtt: Option<std::time::Duration>,
    /// Which layer of a simulcast source the slot carries and wants.
    pub layers: LayerSwitch,
    /// Whether the receiver's allocation forwards the slot's source (video;
    /// see `router/allocate.rs`): when not, its packets are dropped.
    pub forwarded: bool,
    /// VP8 picture id and TL0PICIDX continuity across switches.
    pub vp8: Vp8Continuity,
    /// Which temporal layers the slot forwards (see
    /// [`set_temporal_target`](Self::set_temporal_target)).
    pub temporal: TemporalFilter,
    /// The slot's recent mappings (layer and offsets per run of packets), to
    /// find a NACKed slot packet in its source's cache across layer switches.
    pub history: SlotHistory,
}

/// What [`Consumer::rewrite`] decided for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Forward with these header values.
    Forward {
        /// Rewritten sequence number.
        seq: u16,
        /// Rewritten timestamp.
        ts: u32,
    },
    /// Drop: video slot waiting for a keyframe from its new source.
    WaitingKeyframe,
}

impl Consumer {
    /// A new, unmapped slot of `receiver`.
    pub fn new(
        receiver: EndpointKey,
        mid: impl Into<Arc<str>>,
        kind: MediaKind,
        pt: u8,
        clock_rate: u32,
        ssrc: u32,
    ) -> Self {
        Self {
            receiver,
            extensions: ExtensionSet::EMPTY,
            mid: mid.into(),
            kind,
            codec: if kind == MediaKind::Audio {
                CodecKind::Opus
            } else {
                CodecKind::Vp8
            },
            pt,
            red_pt: None,
            clock_rate,
            ssrc,
            source: None,
            seq_offset: 0,
            ts_offset: 0,
            first_slot_seq: 0,
            last: None,
            need_sync: true,
            waiting_keyframe: false,
            packets_sent: 0,
            rtx_ssrc: None,
            responder: None,
            keyframes: ReceiverKeyframeState::new(),
            reports: SlotSenderReport::new(ssrc, clock_rate),
            layers: LayerSwitch::default(),
            forwarded: true,
            vp8: Vp8Continuity::default(),
            temporal: TemporalFilter::default(),
            rtt: None,
            history: SlotHistory::new(),
        }
    }

    /// How the slot rewrites its current source (for answering NACKs from the
    /// source's cache); `None` before the first packet of the current source.
    pub fn slot_rewrite(&self) -> Option<SlotRewrite> {
        // (the timestamp offset also maps the source's SR clock onto the slot)
        (!self.need_sync && self.source.is_some()).then_some(SlotRewrite {
            seq_offset: self.seq_offset,
            ts_offset: self.ts_offset,
            first_slot_seq: self.first_slot_seq,
        })
    }

    /// The RTP timestamp of the last packet sent on the slot.
    pub fn last_timestamp(&self) -> Option<u32> {
        self.last.map(|l| l.ts)
    }

    /// The producer feeding this slot.
    pub fn source(&self) -> Option<ProducerKey> {
        self.source
    }

    /// Maps a (new) source onto the slot, or unmaps it with `None`. Only
    /// `Router::assign` calls this, which keeps the producers' index in step.
    ///
    /// The next forwarded packet re-bases sequence numbers and timestamps; a video
    /// slot drops packets until the new source's next keyframe.
    pub(super) fn set_source(&mut self, source: Option<ProducerKey>) {
        self.source = source;
        self.history.clear();
        self.keyframes.handle_source_change();
        self.layers.reset();
        self.restart();
    }

    /// The router dropped the source's next packet on purpose (silence, or not
    /// among the loudest): the following packets take its sequence number, so
    /// the receiver sees no gap. Before the slot's first packet there is
    /// nothing to close.
    pub fn close_over_dropped(&mut self) {
        if !self.need_sync {
            self.seq_offset = self.seq_offset.wrapping_sub(1);
        }
    }

    /// Sets the highest temporal layer this slot forwards (VP8 with temporal
    /// layers: 0 for TL0 alone, 7.5 fps with Chrome's L1T3; 1 for 15 fps); `None`
    /// (the default) forwards every layer. Lowering takes effect at the next
    /// frame, raising at the next layer sync frame or key frame. Sequence
    /// numbers and picture ids close over what is dropped.
    ///
    /// Applies to simulcast sources (how Chrome sends temporal layers; their
    /// NACK answers are renumbered through the slot's
    /// [`history`](Self::history)) and sources without a cache; a single-stream
    /// source with a cache is forwarded whole (`Producer::renumbered`).
    pub fn set_temporal_target(&mut self, target: Option<u8>) {
        self.temporal.set_target(target);
    }

    /// The highest temporal layer wanted; `None` for all.
    pub fn temporal_target(&self) -> Option<u8> {
        self.temporal.target()
    }

    /// Decides whether a packet of temporal layer `tid` goes to this slot and,
    /// when it does not, closes the receiver's numbering over it (its sequence
    /// number, and its picture id at a picture's first packet). Returns whether
    /// to forward.
    pub fn filter_temporal(
        &mut self,
        tid: Option<u8>,
        layer_sync: bool,
        keyframe: bool,
        frame_start: bool,
    ) -> bool {
        match self.temporal.decide(tid, layer_sync, keyframe, frame_start) {
            TemporalDecision::Forward => true,
            TemporalDecision::Drop { picture_start } => {
                if !self.need_sync && !self.waiting_keyframe {
                    self.close_over_dropped();
                    if picture_start {
                        self.vp8.skip_picture();
                    }
                }
                false
            }
        }
    }

    /// Records that the packet just rewritten to `slot_seq` (by
    /// [`rewrite`](Self::rewrite)) came from `layer` of the source (0 without
    /// simulcast), for answering NACKs; `renumbered` when its VP8 numbering
    /// went through [`vp8`](Self::vp8) (see `Producer::renumbered`).
    pub fn note_forwarded(&mut self, layer: u8, slot_seq: u16, renumbered: bool) {
        let vp8 = if renumbered {
            self.vp8.offsets()
        } else {
            Vp8Offsets::ZERO
        };
        self.history
            .note(layer, slot_seq, self.seq_offset, self.ts_offset, vp8);
    }

    /// Starts forwarding a new layer of the same simulcast source at its key
    /// frame: numbering re-based as for a new source.
    pub fn begin_layer(&mut self) {
        self.need_sync = true;
        self.waiting_keyframe = false;
        self.vp8.resync();
    }

    /// Restarts the stream from the same source (after an unmute): re-based
    /// numbering, and video waits for a keyframe.
    pub fn restart(&mut self) {
        self.need_sync = true;
        self.vp8.resync();
        self.waiting_keyframe = self.kind == MediaKind::Video && self.source.is_some();
    }

    /// Whether the slot is waiting for a keyframe (and so wants one
    /// requested); never while its allocation does not forward it.
    pub fn is_waiting_keyframe(&self) -> bool {
        self.forwarded && (self.waiting_keyframe || self.layers.pending())
    }

    /// Rewrites one packet of the current source for this slot.
    pub fn rewrite(&mut self, now: Instant, seq: u16, ts: u32, keyframe_start: bool) -> Rewrite {
        if self.waiting_keyframe {
            if !keyframe_start {
                return Rewrite::WaitingKeyframe;
            }
            self.waiting_keyframe = false;
        }
        if self.need_sync {
            let (base_seq, base_ts) = match self.last {
                Some(last) => {
                    let elapsed = now.saturating_duration_since(last.at);
                    let ticks = (elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000)
                        .clamp(1, u128::from(u32::MAX / 2)) as u32;
                    (last.seq.wrapping_add(1), last.ts.wrapping_add(ticks))
                }
                None => (seq, ts),
            };
            self.seq_offset = base_seq.wrapping_sub(seq);
            self.ts_offset = base_ts.wrapping_sub(ts);
            self.first_slot_seq = base_seq;
            self.need_sync = false;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        let newer = match self.last {
            None => true,
            Some(last) => {
                let d = out_seq.wrapping_sub(last.seq);
                d != 0 && d < 0x8000
            }
        };
        if newer {
            self.last = Some(LastSent {
                seq: out_seq,
                ts: out_ts,
                at: now,
            });
        }
        self.packets_sent += 1;
        Rewrite::Forward {
            seq: out_seq,
            ts: out_ts,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use slotmap::SlotMap;

    use super::*;

    fn keys() -> (EndpointKey, ProducerKey, ProducerKey) {
        let mut e: SlotMap<EndpointKey, ()> = SlotMap::with_key();
        let mut p: SlotMap<ProducerKey, ()> = SlotMap::with_key();
        (e.insert(()), p.insert(()), p.insert(()))
    }

    fn forward(c: &mut Consumer, now: Instant, seq: u16, ts: u32, kf: bool) -> (u16, u32) {
        match c.rewrite(now, seq, ts, kf) {
            Rewrite::Forward { seq, ts } => (seq, ts),
            Rewrite::WaitingKeyframe => panic!("unexpected drop"),
        }
    }

    #[test]
    fn a_slot_holds_under_1_kib_until_it_repairs() {
        // A receiver has a slot per source of its conference (18 in a meeting of ten):
        // the per-slot retransmission record (3 KiB) lives on the heap and only from
        // the slot's first retransmission on.
        use crate::proto::quality::nack_responder::{NackResponder, SlotOutput};
        let (r, _, _) = keys();
        let mut c = Consumer::new(r, "1", MediaKind::Video, 100, 90_000, 7);
        c.responder = Some(NackResponder::new(
            SlotOutput {
                pt: 100,
                ssrc: 7,
                rtx: None,
            },
            0,
        ));
        let inline = core::mem::size_of::<Consumer>();
        let heap = c
            .responder
            .as_ref()
            .map_or(0, NackResponder::allocated_bytes);
        assert!(inline + heap < 1024, "{inline} + {heap} bytes");
    }

    #[test]
    fn slot_stream_stays_continuous_across_a_source_switch() {
        let t0 = Instant::now();
        let (r, a, b) = keys();
        let mut c = Consumer::new(r, "3", MediaKind::Audio, 111, 48_000, 7);
        c.set_source(Some(a));
        assert_eq!(forward(&mut c, t0, 65_534, 1000, false), (65_534, 1000));
        assert_eq!(
            forward(&mut c, t0 + Duration::from_millis(20), 65_535, 1960, false),
            (65_535, 1960)
        );
        assert_eq!(
            forward(&mut c, t0 + Duration::from_millis(40), 0, 2920, false),
            (0, 2920)
        );

        // Source B has unrelated numbering; the receiver sees seq 1 next and a
        // timestamp advanced by the 100 ms that passed.
        c.set_source(Some(b));
        let t1 = t0 + Duration::from_millis(140);
        assert_eq!(
            forward(&mut c, t1, 30_000, 777_777, false),
            (1, 2920 + 4800)
        );
        assert_eq!(
            forward(
                &mut c,
                t1 + Duration::from_millis(20),
                30_001,
                777_777 + 960,
                false
            ),
            (2, 2920 + 4800 + 960)
        );
    }

    #[test]
    fn video_slot_waits_for_a_keyframe_of_its_new_source() {
        let t0 = Instant::now();
        let (r, a, _) = keys();
        let mut c = Consumer::new(r, "4", MediaKind::Video, 96, 90_000, 9);
        c.set_source(Some(a));
        assert!(c.is_waiting_keyframe());
        assert_eq!(c.rewrite(t0, 10, 100, false), Rewrite::WaitingKeyframe);
        assert_eq!(forward(&mut c, t0, 11, 3100, true), (11, 3100));
        assert!(!c.is_waiting_keyframe());
        assert_eq!(forward(&mut c, t0, 12, 3100, false), (12, 3100));
        // Reordered older packet keeps its relative place.
        assert_eq!(forward(&mut c, t0, 9, 100, false), (9, 100));
    }
}
