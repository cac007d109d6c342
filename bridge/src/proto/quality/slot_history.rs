//! A slot's recent mappings: which source stream and offsets produced each of
//! its recent sequence numbers, so that a receiver's NACK finds the packet in
//! the right cache even after the slot's numbering changed.
//!
//! A slot rewrites its source with constant offsets only between two events: a
//! simulcast layer switch (another SSRC, another sequence space), a dropped
//! packet the numbering closes over (a temporal layer above the slot's target,
//! silence), or a VP8 renumbering step. Each run of packets forwarded with the
//! same (layer, sequence offset, timestamp offset, VP8 offsets) is a segment,
//! starting at its first slot sequence number; the history keeps the last
//! [`SEGMENTS`] of them in a fixed array (no allocation, 16 bytes a segment).
//! A slot sequence number belongs to the newest segment that started at or
//! before it. Older than the oldest segment kept, or newer than anything sent,
//! it is not known (a cache miss for the caller).
//!
//! Chrome's L1T3 at a TL0-only target starts a segment per TL0 picture (7.5 a
//! second): [`SEGMENTS`] covers about a second there, and the slot's whole
//! recent past in the usual case of a layer switch every few seconds.

use super::super::codec::vp8::Vp8Offsets;
use super::nack_responder::SlotRewrite;

/// How many segments a slot remembers.
pub const SEGMENTS: usize = 8;

/// One run of a slot's packets forwarded with the same mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotSegment {
    /// The layer of the source the run came from (0 without simulcast).
    pub layer: u8,
    /// Its sequence and timestamp offsets; `first_slot_seq` is where it began.
    pub rewrite: SlotRewrite,
    /// The VP8 numbering offsets its packets were forwarded with.
    pub vp8: Vp8Offsets,
}

/// The last [`SEGMENTS`] segments of one slot. See the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct SlotHistory {
    segments: [SlotSegment; SEGMENTS],
    /// Index of the newest segment.
    head: u8,
    /// Segments held (at most [`SEGMENTS`]).
    len: u8,
    /// The newest slot sequence number forwarded.
    last_seq: u16,
}

impl Default for SlotHistory {
    fn default() -> Self {
        Self::new()
    }
}

impl SlotHistory {
    /// A history with nothing forwarded.
    pub fn new() -> Self {
        const EMPTY: SlotSegment = SlotSegment {
            layer: 0,
            rewrite: SlotRewrite {
                seq_offset: 0,
                ts_offset: 0,
                first_slot_seq: 0,
            },
            vp8: Vp8Offsets::ZERO,
        };
        SlotHistory {
            segments: [EMPTY; SEGMENTS],
            head: 0,
            len: 0,
            last_seq: 0,
        }
    }

    /// Forgets everything (the slot changed source: what came before is in
    /// another source's cache).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// How many segments are held.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether nothing was forwarded since the last [`clear`](Self::clear).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn newest(&self) -> Option<&SlotSegment> {
        (self.len > 0)
            .then(|| self.segments.get(usize::from(self.head)))
            .flatten()
    }

    /// Records that slot packet `slot_seq` was forwarded from `layer` with
    /// `seq_offset`, `ts_offset` and `vp8` offsets. A change of any of them
    /// starts a segment at `slot_seq` (dropping the oldest when full); a late
    /// packet older than the newest segment's start with a changed mapping is
    /// not recorded (it cannot be told apart from that segment's packets).
    pub fn note(
        &mut self,
        layer: u8,
        slot_seq: u16,
        seq_offset: u16,
        ts_offset: u32,
        vp8: Vp8Offsets,
    ) {
        let same = self.newest().is_some_and(|s| {
            s.layer == layer
                && s.rewrite.seq_offset == seq_offset
                && s.rewrite.ts_offset == ts_offset
                && s.vp8 == vp8
        });
        let newer = self.len == 0 || {
            let d = slot_seq.wrapping_sub(self.last_seq);
            d != 0 && d < 0x8000
        };
        if !same {
            let starts_after = self
                .newest()
                .is_none_or(|s| slot_seq.wrapping_sub(s.rewrite.first_slot_seq) < 0x8000);
            if !starts_after {
                return;
            }
            let head = if self.len == 0 {
                0
            } else {
                (usize::from(self.head) + 1) % SEGMENTS
            };
            if let Some(s) = self.segments.get_mut(head) {
                *s = SlotSegment {
                    layer,
                    rewrite: SlotRewrite {
                        seq_offset,
                        ts_offset,
                        first_slot_seq: slot_seq,
                    },
                    vp8,
                };
            }
            // Both below SEGMENTS (8).
            self.head = head as u8;
            self.len = (self.len + 1).min(SEGMENTS as u8);
        }
        if newer {
            self.last_seq = slot_seq;
        }
    }

    /// The segment slot sequence number `slot_seq` was forwarded in, if the
    /// history still holds it.
    pub fn lookup(&self, slot_seq: u16) -> Option<SlotSegment> {
        let back = self.last_seq.wrapping_sub(slot_seq);
        if self.len == 0 || back >= 0x8000 {
            return None; // nothing sent, or newer than anything sent
        }
        (0..usize::from(self.len))
            .map(|k| (usize::from(self.head) + SEGMENTS - k) % SEGMENTS)
            .filter_map(|i| self.segments.get(i))
            .find(|s| self.last_seq.wrapping_sub(s.rewrite.first_slot_seq) >= back)
            .copied()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NO_VP8: Vp8Offsets = Vp8Offsets::ZERO;

    #[test]
    fn a_slot_seq_maps_back_to_its_layer_and_offsets_across_switches() {
        let mut h = SlotHistory::new();
        assert_eq!(h.lookup(5), None);
        // Layer 2 from source seq 30_000 as slot 100..=109 (offset 100 - 30_000).
        let off2 = 100u16.wrapping_sub(30_000);
        for k in 0..10u16 {
            h.note(2, 100 + k, off2, 7, NO_VP8);
        }
        assert_eq!(h.len(), 1);
        // A switch to layer 0 (source seq 500 as slot 110), VP8 renumbered.
        let off0 = 110u16.wrapping_sub(500);
        let vp8 = Vp8Offsets {
            picture_id: 3,
            tl0_pic_idx: 1,
            key_idx: 2,
        };
        for k in 0..5u16 {
            h.note(0, 110 + k, off0, 99, vp8);
        }
        assert_eq!(h.len(), 2);
        let before = h.lookup(105).unwrap();
        assert_eq!((before.layer, before.rewrite.seq_offset), (2, off2));
        assert_eq!(105u16.wrapping_sub(before.rewrite.seq_offset), 30_005);
        assert_eq!(before.vp8, NO_VP8);
        let after = h.lookup(112).unwrap();
        assert_eq!(
            (after.layer, after.rewrite.ts_offset, after.vp8),
            (0, 99, vp8)
        );
        assert_eq!(after.rewrite.first_slot_seq, 110);
        assert_eq!(112u16.wrapping_sub(after.rewrite.seq_offset), 502);
        // Before anything recorded, and newer than anything sent: unknown.
        assert_eq!(h.lookup(99), None);
        assert_eq!(h.lookup(115), None);
        // Cleared at a source change.
        h.clear();
        assert_eq!(h.lookup(112), None);
    }

    #[test]
    fn the_oldest_segments_are_forgotten_and_sequence_numbers_wrap() {
        let mut h = SlotHistory::new();
        // Ten segments of 3 packets each, crossing the 16-bit wrap; the offset
        // steps down by one per segment (a dropped packet closed over).
        let start = 65_520u16;
        for seg in 0..10u16 {
            for k in 0..3u16 {
                let slot = start.wrapping_add(seg * 3 + k);
                h.note(1, slot, 0u16.wrapping_sub(seg), 0, NO_VP8);
            }
        }
        assert_eq!(h.len(), SEGMENTS);
        // Segments 0 and 1 are gone; 2..=9 map with their own offsets.
        assert_eq!(h.lookup(start), None);
        assert_eq!(h.lookup(start.wrapping_add(5)), None);
        for seg in 2..10u16 {
            for k in 0..3u16 {
                let slot = start.wrapping_add(seg * 3 + k);
                let s = h.lookup(slot).unwrap();
                assert_eq!(s.rewrite.seq_offset, 0u16.wrapping_sub(seg), "{slot}");
            }
        }
    }

    #[test]
    fn a_late_packet_keeps_its_place_and_does_not_split_a_segment() {
        let mut h = SlotHistory::new();
        for slot in [10u16, 11, 13, 12, 14] {
            h.note(0, slot, 5, 0, NO_VP8);
        }
        assert_eq!(h.len(), 1);
        assert_eq!(h.lookup(12).unwrap().rewrite.first_slot_seq, 10);
        assert_eq!(h.lookup(15), None);
        // A late packet with another mapping before the newest start: ignored.
        h.note(1, 20, 9, 0, NO_VP8);
        h.note(0, 19, 5, 0, NO_VP8);
        assert_eq!(h.len(), 2);
        assert_eq!(h.lookup(19).unwrap().layer, 0);
        assert_eq!(h.lookup(20).unwrap().layer, 1);
    }
}
