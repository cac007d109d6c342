//! VP8 (RFC 7741): the payload descriptor, key frame detection (RFC 6386 section
//! 9.1), temporal layers, and in-place picture id / TL0PICIDX rewriting.

use super::super::rtp::RtpError;
use super::{CodecError, CodecKind, PayloadCodec, PayloadInfo};

/// The VP8 payload format.
#[derive(Debug, Clone, Copy)]
pub struct Vp8;

impl PayloadCodec for Vp8 {
    fn parse(payload: &[u8]) -> Result<PayloadInfo, CodecError> {
        let d = Vp8Descriptor::parse(payload).map_err(|_| CodecError::Truncated)?;
        Ok(PayloadInfo {
            keyframe: d.is_keyframe(),
            frame_start: d.is_frame_start(),
            temporal_id: d.temporal_id,
            spatial_id: None,
            layer_sync: d.layer_sync,
            non_reference: d.non_reference,
            picture_id: d.picture_id,
            long_picture_id: d.long_picture_id,
            tl0_pic_idx: d.tl0_pic_idx,
            key_idx: d.key_idx,
            resolution: d.resolution.filter(|_| d.is_keyframe()),
        })
    }

    fn rewrite(
        payload: &mut [u8],
        picture_id: Option<u16>,
        tl0_pic_idx: Option<u8>,
    ) -> Result<(), CodecError> {
        let d = Vp8Descriptor::parse(payload).map_err(|_| CodecError::Truncated)?;
        if let Some(id) = picture_id {
            let at = d.picture_id_at.ok_or(CodecError::NoSuchField)?;
            if d.long_picture_id {
                let field = payload.get_mut(at..at + 2).ok_or(CodecError::Truncated)?;
                field[0] = 0x80 | ((id >> 8) as u8 & 0x7F);
                field[1] = id as u8;
            } else {
                *payload.get_mut(at).ok_or(CodecError::Truncated)? = id as u8 & 0x7F;
            }
        }
        if let Some(tl0) = tl0_pic_idx {
            let at = d.tl0_at.ok_or(CodecError::NoSuchField)?;
            *payload.get_mut(at).ok_or(CodecError::Truncated)? = tl0;
        }
        Ok(())
    }
}

impl Vp8 {
    /// Overwrites KEYIDX in place (its low 5 bits of the TID/Y/KEYIDX byte).
    pub fn rewrite_key_idx(payload: &mut [u8], key_idx: u8) -> Result<(), CodecError> {
        let d = Vp8Descriptor::parse(payload).map_err(|_| CodecError::Truncated)?;
        let at = d.key_idx_at.ok_or(CodecError::NoSuchField)?;
        let b = payload.get_mut(at).ok_or(CodecError::Truncated)?;
        *b = (*b & 0xE0) | (key_idx & 0x1F);
        Ok(())
    }
}

/// Keeps a slot's VP8 picture ids and TL0PICIDX continuous when its source or
/// simulcast layer changes (each encoding numbers its own pictures): after
/// [`resync`](Self::resync), the next picture continues from the last one the
/// receiver got, as jitsi-videobridge and mediasoup rewrite them. A decoder that
/// saw picture ids jump back could take the new key frame for an old one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vp8Continuity {
    pid_offset: u16,
    tl0_offset: u8,
    key_offset: u8,
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
    last_key: Option<u8>,
    resync: bool,
    key_resync: bool,
}

/// The offsets a [`Vp8Continuity`] adds to a source's picture id, TL0PICIDX and
/// KEYIDX at one moment: what a retransmission of a packet forwarded then must
/// carry again (the slot's mapping history keeps them per segment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vp8Offsets {
    /// Added to the picture id (modulo its 7- or 15-bit width).
    pub picture_id: u16,
    /// Added to TL0PICIDX (modulo 256).
    pub tl0_pic_idx: u8,
    /// Added to KEYIDX (modulo 32).
    pub key_idx: u8,
}

impl Vp8Offsets {
    /// No renumbering: the source's own numbers.
    pub const ZERO: Vp8Offsets = Vp8Offsets {
        picture_id: 0,
        tl0_pic_idx: 0,
        key_idx: 0,
    };

    /// Renumbers `payload` of `codec` in place with these offsets: each field
    /// the payload carries, the others left alone (the widths never change, so
    /// neither does the length). Nothing to do for zero offsets.
    pub fn apply(&self, codec: CodecKind, payload: &mut [u8]) -> Result<(), CodecError> {
        if *self == Self::ZERO {
            return Ok(());
        }
        let info = codec.parse(payload)?;
        let modulus: u16 = if info.long_picture_id { 0x8000 } else { 0x80 };
        let pid = info
            .picture_id
            .map(|p| p.wrapping_add(self.picture_id) % modulus)
            .filter(|&p| Some(p) != info.picture_id);
        let tl0 = info
            .tl0_pic_idx
            .map(|t| t.wrapping_add(self.tl0_pic_idx))
            .filter(|&t| Some(t) != info.tl0_pic_idx);
        if pid.is_some() || tl0.is_some() {
            codec.rewrite(payload, pid, tl0)?;
        }
        if let Some(k) = info.key_idx {
            let key = k.wrapping_add(self.key_idx) & 0x1F;
            if key != k {
                codec.rewrite_key_idx(payload, key)?;
            }
        }
        Ok(())
    }
}

impl Vp8Continuity {
    /// The offsets in use now (after the latest [`map`](Self::map) and
    /// [`map_key_idx`](Self::map_key_idx)).
    pub fn offsets(&self) -> Vp8Offsets {
        Vp8Offsets {
            picture_id: self.pid_offset,
            tl0_pic_idx: self.tl0_offset,
            key_idx: self.key_offset,
        }
    }

    /// The next packet starts a new numbering (a source or layer switch).
    pub fn resync(&mut self) {
        self.resync = true;
        self.key_resync = true;
    }

    /// A picture was dropped (a temporal layer above the slot's target): the
    /// pictures after it take its picture id, so the receiver sees no gap.
    /// Called once per dropped picture, at its first packet.
    pub fn skip_picture(&mut self) {
        self.pid_offset = self.pid_offset.wrapping_sub(1);
    }

    /// The receiver's KEYIDX (5 bits) for a packet carrying `key_idx`,
    /// continued across switches like the picture id.
    pub fn map_key_idx(&mut self, key_idx: u8) -> u8 {
        if let Some(last) = self.last_key
            && self.key_resync
        {
            self.key_offset = last.wrapping_add(1).wrapping_sub(key_idx) & 0x1F;
        }
        self.key_resync = false;
        let out = key_idx.wrapping_add(self.key_offset) & 0x1F;
        self.last_key = Some(out);
        out
    }

    /// The receiver's picture id and TL0PICIDX for a packet carrying `pid`
    /// (15-bit when `long`, else 7-bit) and `tl0`.
    pub fn map(
        &mut self,
        pid: Option<u16>,
        long: bool,
        tl0: Option<u8>,
    ) -> (Option<u16>, Option<u8>) {
        let modulus: u16 = if long { 0x8000 } else { 0x80 };
        if self.resync {
            self.resync = false;
            if let (Some(p), Some(last)) = (pid, self.last_pid) {
                self.pid_offset = last.wrapping_add(1).wrapping_sub(p) % modulus;
            }
            if let (Some(t), Some(last)) = (tl0, self.last_tl0) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(t);
            }
        }
        let out_pid = pid.map(|p| p.wrapping_add(self.pid_offset) % modulus);
        if let Some(p) = out_pid {
            let newer = self
                .last_pid
                .is_none_or(|last| (p.wrapping_sub(last) % modulus).wrapping_sub(1) < modulus / 2);
            if newer {
                self.last_pid = Some(p);
            }
        }
        let out_tl0 = tl0.map(|t| t.wrapping_add(self.tl0_offset));
        if let Some(t) = out_tl0
            && self
                .last_tl0
                .is_none_or(|last| t.wrapping_sub(last).wrapping_sub(1) < 0x80)
        {
            self.last_tl0 = Some(t);
        }
        (out_pid, out_tl0)
    }
}

/// The VP8 payload descriptor at the start of a VP8 RTP payload (RFC 7741 section 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// N: the frame is not used as a reference by other frames.
    pub non_reference: bool,
    /// S: this packet starts a VP8 partition.
    pub start_of_partition: bool,
    /// PID: the partition index (0..=7).
    pub partition_index: u8,
    /// The picture id, 7 or 15 bits, if the I bit is set.
    pub picture_id: Option<u16>,
    /// Whether the picture id is the 15-bit form (M bit).
    pub long_picture_id: bool,
    /// TL0PICIDX, if the L bit is set.
    pub tl0_pic_idx: Option<u8>,
    /// The temporal layer index, if the T bit is set.
    pub temporal_id: Option<u8>,
    /// Y: layer sync (only meaningful with `temporal_id`).
    pub layer_sync: bool,
    /// KEYIDX, if the K bit is set.
    pub key_idx: Option<u8>,
    /// Length of the descriptor; the VP8 payload starts here.
    pub len: usize,
    /// Width and height of a key frame (RFC 6386 section 9.1: 14 bits each after
    /// the start code; the scaling bits dropped), when the packet carries them.
    pub resolution: Option<(u16, u16)>,
    /// This packet starts a key frame (see [`Vp8Descriptor::is_keyframe`]).
    keyframe: bool,
    /// Where the picture id lies in the payload (for rewriting).
    picture_id_at: Option<usize>,
    /// Where TL0PICIDX lies in the payload (for rewriting).
    tl0_at: Option<usize>,
    /// Where the TID/Y/KEYIDX byte lies, when it carries KEYIDX.
    key_idx_at: Option<usize>,
}

impl Vp8Descriptor {
    /// Parses the descriptor at the start of `payload` (the RTP payload) and, if the packet
    /// starts a frame, looks at the VP8 frame tag after it to tell whether it is a key frame.
    pub fn parse(payload: &[u8]) -> Result<Self, RtpError> {
        let mut rest = payload;
        let mut take = || -> Result<u8, RtpError> {
            let (&b, tail) = rest.split_first().ok_or(RtpError::Vp8Truncated)?;
            rest = tail;
            Ok(b)
        };
        let first = take()?;
        let mut d = Vp8Descriptor {
            non_reference: first & 0x20 != 0,
            start_of_partition: first & 0x10 != 0,
            partition_index: first & 0x07,
            picture_id: None,
            long_picture_id: false,
            tl0_pic_idx: None,
            temporal_id: None,
            layer_sync: false,
            key_idx: None,
            len: 0,
            resolution: None,
            keyframe: false,
            picture_id_at: None,
            tl0_at: None,
            key_idx_at: None,
        };
        if first & 0x80 != 0 {
            let x = take()?;
            if x & 0x80 != 0 {
                d.picture_id_at = Some(2);
                let p = take()?;
                if p & 0x80 != 0 {
                    d.long_picture_id = true;
                    d.picture_id = Some((u16::from(p & 0x7F) << 8) | u16::from(take()?));
                } else {
                    d.picture_id = Some(u16::from(p));
                }
            }
            if x & 0x40 != 0 {
                d.tl0_at = Some(
                    2 + d
                        .picture_id_at
                        .map_or(0, |_| 1 + usize::from(d.long_picture_id)),
                );
                d.tl0_pic_idx = Some(take()?);
            }
            if x & 0x30 != 0 {
                let at = 2
                    + d.picture_id_at
                        .map_or(0, |_| 1 + usize::from(d.long_picture_id))
                    + usize::from(d.tl0_at.is_some());
                let tk = take()?;
                if x & 0x20 != 0 {
                    d.temporal_id = Some(tk >> 6);
                    d.layer_sync = tk & 0x20 != 0;
                }
                if x & 0x10 != 0 {
                    d.key_idx = Some(tk & 0x1F);
                    d.key_idx_at = Some(at);
                }
            }
        }
        d.len = payload.len() - rest.len();
        if d.is_frame_start() {
            // RFC 6386 section 9.1: frame tag bit 0 (P) is 0 for key frames, and a key
            // frame's 3-byte tag is followed by the start code 9d 01 2a.
            match rest {
                [tag, _, _, 0x9d, 0x01, 0x2a, tail @ ..] => {
                    d.keyframe = tag & 0x01 == 0;
                    if let [w0, w1, h0, h1, ..] = *tail {
                        d.resolution = Some((
                            u16::from_le_bytes([w0, w1]) & 0x3FFF,
                            u16::from_le_bytes([h0, h1]) & 0x3FFF,
                        ));
                    }
                }
                [tag, ..] if tag & 0x01 == 0 => return Err(RtpError::Vp8Truncated),
                [_, ..] => {}
                [] => return Err(RtpError::Vp8Truncated),
            }
        }
        Ok(d)
    }

    /// S = 1 and PID = 0: the first packet of a frame.
    pub fn is_frame_start(&self) -> bool {
        self.start_of_partition && self.partition_index == 0
    }

    /// The first packet of a key frame: a frame start whose VP8 frame tag has P = 0 (and
    /// the key frame start code). A router waiting for a key frame switches on this.
    pub fn is_keyframe(&self) -> bool {
        self.keyframe
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A VP8 key frame's first bytes: frame tag with P = 0, then the start code.
    const KEY_TAG: [u8; 10] = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
    /// An inter frame's frame tag (P = 1).
    const DELTA_TAG: [u8; 3] = [0x31, 0x02, 0x00];

    #[test]
    fn vp8_keyframe_with_all_fields() {
        // X, S, PID 0; I L T K; 15-bit picture id 0x1234; TL0PICIDX 7; TID 2, Y, KEYIDX 3.
        let mut p = vec![0x90, 0xF0, 0x80 | 0x12, 0x34, 7, 0b1010_0011];
        p.extend_from_slice(&KEY_TAG);
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert!(d.is_frame_start());
        assert!(d.is_keyframe());
        assert_eq!(d.picture_id, Some(0x1234));
        assert!(d.long_picture_id);
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert_eq!(d.temporal_id, Some(2));
        assert!(d.layer_sync);
        assert_eq!(d.key_idx, Some(3));
        assert_eq!(d.len, 6);
        // RFC 6386 9.1: 14-bit width and height, little endian, after the start code.
        assert_eq!(d.resolution, Some((640, 480)));
        assert_eq!(Vp8::parse(&p).unwrap().resolution, Some((640, 480)));
    }

    #[test]
    fn picture_ids_continue_across_a_switch_and_wrap() {
        let mut c = Vp8Continuity::default();
        // The first source passes through unchanged.
        assert_eq!(
            c.map(Some(0x7FFE), true, Some(250)),
            (Some(0x7FFE), Some(250))
        );
        assert_eq!(
            c.map(Some(0x7FFF), true, Some(251)),
            (Some(0x7FFF), Some(251))
        );
        // A late packet of an older picture does not move "last".
        assert_eq!(
            c.map(Some(0x7FFD), true, Some(249)),
            (Some(0x7FFD), Some(249))
        );
        // Switch to a layer numbered far away: continues at 0 (15-bit wrap), 252.
        c.resync();
        assert_eq!(c.map(Some(100), true, Some(7)), (Some(0), Some(252)));
        assert_eq!(c.map(Some(101), true, Some(8)), (Some(1), Some(253)));
        assert_eq!(c.map(Some(101), true, None), (Some(1), None));
        // 7-bit picture ids wrap at 128.
        let mut s = Vp8Continuity::default();
        assert_eq!(s.map(Some(127), false, None), (Some(127), None));
        s.resync();
        assert_eq!(s.map(Some(5), false, None), (Some(0), None));
        assert_eq!(s.map(Some(6), false, None), (Some(1), None));
    }

    #[test]
    fn vp8_keyframe_resolution_drops_the_scaling_bits_and_needs_all_four_bytes() {
        // 1280x720 with horizontal and vertical scale 2 (top two bits 10).
        let mut p = vec![0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a];
        p.extend_from_slice(&(1280u16 | 0x8000).to_le_bytes());
        p.extend_from_slice(&(720u16 | 0x8000).to_le_bytes());
        assert_eq!(
            Vp8Descriptor::parse(&p).unwrap().resolution,
            Some((1280, 720))
        );
        p.truncate(10);
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert!(d.is_keyframe());
        assert_eq!(d.resolution, None);
    }

    #[test]
    fn vp8_delta_frames_and_continuations() {
        // Short picture id, delta frame.
        let mut p = vec![0x90, 0x80, 0x05];
        p.extend_from_slice(&DELTA_TAG);
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert!(d.is_frame_start());
        assert!(!d.is_keyframe());
        assert_eq!(d.picture_id, Some(5));
        assert!(!d.long_picture_id);
        assert_eq!(d.tl0_pic_idx, None);
        assert_eq!(d.len, 3);
        // Continuation packet of a key frame (S = 0): not a key frame start, and the bytes
        // after the descriptor are not a frame tag.
        let d = Vp8Descriptor::parse(&[0x00, 0x10, 0x02]).unwrap();
        assert!(!d.is_frame_start());
        assert!(!d.is_keyframe());
        // Start of partition 1: not a frame start.
        let d = Vp8Descriptor::parse(&[0x11, 0x10]).unwrap();
        assert!(!d.is_frame_start());
        // Minimal descriptor, key frame.
        let mut p = vec![0x10];
        p.extend_from_slice(&KEY_TAG);
        assert!(Vp8Descriptor::parse(&p).unwrap().is_keyframe());
    }

    #[test]
    fn vp8_truncated_descriptors_are_errors() {
        for bad in [
            &[][..],
            &[0x80],             // X without the extension byte
            &[0x80, 0x80],       // I without the picture id
            &[0x80, 0x80, 0x80], // M without the second picture id byte
            &[0x80, 0x40],       // L without TL0PICIDX
            &[0x80, 0x20],       // T without TID byte
            &[0x10],             // frame start without a frame tag
            &[0x10, 0x10, 0x02], // key frame tag without the start code
        ] {
            assert_eq!(
                Vp8Descriptor::parse(bad),
                Err(RtpError::Vp8Truncated),
                "{bad:02x?}"
            );
        }
    }

    #[test]
    fn vp8_picture_id_and_tl0_are_rewritten_in_place_keeping_their_width() {
        // 15-bit picture id 0x1234, TL0PICIDX 7, TID 2: rewritten to 0x7FFF / 200.
        let mut p = vec![0x90, 0xE0, 0x80 | 0x12, 0x34, 7, 0b1010_0000];
        p.extend_from_slice(&KEY_TAG);
        let before = p.clone();
        Vp8::rewrite(&mut p, Some(0xFFFF), Some(200)).unwrap();
        let info = Vp8::parse(&p).unwrap();
        assert_eq!(info.picture_id, Some(0x7FFF), "masked to 15 bits");
        assert_eq!(info.tl0_pic_idx, Some(200));
        assert_eq!(info.temporal_id, Some(2));
        assert!(info.keyframe);
        assert_eq!(p.len(), before.len());
        assert_eq!(p[6..], before[6..], "VP8 payload untouched");
        // 7-bit picture id without TL0PICIDX.
        let mut p = vec![0x90, 0x80, 0x05];
        p.extend_from_slice(&DELTA_TAG);
        Vp8::rewrite(&mut p, Some(0x1FF), None).unwrap();
        assert_eq!(Vp8::parse(&p).unwrap().picture_id, Some(0x7F));
        assert_eq!(
            Vp8::rewrite(&mut p, None, Some(1)),
            Err(CodecError::NoSuchField)
        );
        // No extension byte at all: nothing to rewrite.
        let mut p = vec![0x10];
        p.extend_from_slice(&KEY_TAG);
        assert_eq!(
            Vp8::rewrite(&mut p, Some(1), None),
            Err(CodecError::NoSuchField)
        );
        assert_eq!(
            Vp8::rewrite(&mut [0x80], Some(1), None),
            Err(CodecError::Truncated)
        );
    }

    #[test]
    fn vp8_dropped_pictures_leave_no_gap_and_keyidx_continues_across_a_switch() {
        let mut c = Vp8Continuity::default();
        assert_eq!(c.map(Some(10), true, Some(1)), (Some(10), Some(1)));
        // Picture 11 (TL2) dropped: 12 is sent as 11, 13 as 12.
        c.skip_picture();
        assert_eq!(c.map(Some(12), true, Some(1)), (Some(11), Some(1)));
        assert_eq!(c.map(Some(13), true, Some(2)), (Some(12), Some(2)));
        // KEYIDX: as it comes, then continued after a switch.
        assert_eq!(c.map_key_idx(30), 30);
        assert_eq!(c.map_key_idx(31), 31);
        c.resync();
        assert_eq!(c.map(Some(500), true, Some(90)), (Some(13), Some(3)));
        assert_eq!(c.map_key_idx(4), 0, "31 + 1, wrapped at 5 bits");
        assert_eq!(c.map_key_idx(5), 1);
        // Rewriting KEYIDX keeps TID and Y around it.
        let mut p = vec![0x90, 0x30, 0b1010_0011];
        p.extend_from_slice(&DELTA_TAG);
        Vp8::rewrite_key_idx(&mut p, 0x3E).unwrap();
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert_eq!(
            (d.temporal_id, d.layer_sync, d.key_idx),
            (Some(2), true, Some(0x1E))
        );
        // With picture id and TL0PICIDX before it: the byte after them.
        let mut p = vec![0x90, 0xF0, 0x80, 0x01, 9, 0b0100_0001];
        p.extend_from_slice(&DELTA_TAG);
        Vp8::rewrite_key_idx(&mut p, 7).unwrap();
        assert_eq!(p[5], 0b0100_0111);
        assert_eq!(Vp8::parse(&p).unwrap().key_idx, Some(7));
        // No K bit: nothing to rewrite.
        let mut p = vec![0x90, 0x20, 0b0100_0000];
        p.extend_from_slice(&DELTA_TAG);
        assert_eq!(
            Vp8::rewrite_key_idx(&mut p, 1),
            Err(CodecError::NoSuchField)
        );
    }

    #[test]
    fn recorded_offsets_renumber_a_cached_packet_as_it_was_forwarded() {
        let mut c = Vp8Continuity::default();
        assert_eq!(
            c.map(Some(0x7FF0), true, Some(200)),
            (Some(0x7FF0), Some(200))
        );
        assert_eq!(c.map_key_idx(3), 3);
        c.resync();
        // The new layer's picture 20, TL0 9, KEYIDX 30 goes out as 0x7FF1, 201, 4.
        assert_eq!(c.map(Some(20), true, Some(9)), (Some(0x7FF1), Some(201)));
        assert_eq!(c.map_key_idx(30), 4);
        let offsets = c.offsets();
        // The same packet from the cache, renumbered with the recorded offsets.
        let mut p = vec![0x90, 0xF0, 0x80, 20, 9, 0b0100_0000 | 30];
        p.extend_from_slice(&DELTA_TAG);
        offsets.apply(CodecKind::Vp8, &mut p).unwrap();
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert_eq!(
            (d.picture_id, d.tl0_pic_idx, d.key_idx, d.temporal_id),
            (Some(0x7FF1), Some(201), Some(4), Some(1))
        );
        // A 7-bit picture id wraps at 128; zero offsets change nothing.
        let mut p = vec![0x90, 0x80, 0x7F];
        p.extend_from_slice(&DELTA_TAG);
        let o = Vp8Offsets {
            picture_id: 2,
            ..Vp8Offsets::ZERO
        };
        o.apply(CodecKind::Vp8, &mut p).unwrap();
        assert_eq!(Vp8::parse(&p).unwrap().picture_id, Some(1));
        let before = p.clone();
        Vp8Offsets::ZERO.apply(CodecKind::Vp8, &mut p).unwrap();
        assert_eq!(p, before);
        // A truncated payload is an error, never a panic.
        assert_eq!(
            o.apply(CodecKind::Vp8, &mut [0x90]),
            Err(CodecError::Truncated)
        );
    }

    /// RFC 7741 section 4.6 example layouts: TID/Y/KEYIDX and the layer fields.
    #[test]
    fn vp8_layer_information_reaches_payload_info() {
        // X; T only: TID 1, Y = 0.
        let mut p = vec![0x90, 0x20, 0b0100_0000];
        p.extend_from_slice(&DELTA_TAG);
        let info = Vp8::parse(&p).unwrap();
        assert_eq!(info.temporal_id, Some(1));
        assert!(!info.layer_sync && !info.keyframe && info.frame_start);
        // N bit: non-reference frame.
        let mut p = vec![0x30];
        p.extend_from_slice(&DELTA_TAG);
        assert!(Vp8::parse(&p).unwrap().non_reference);
    }
}
