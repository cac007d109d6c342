//! VP9 (RFC 9628, formerly draft-ietf-payload-vp9): the payload descriptor,
//! key frame detection, and a key frame's size from its uncompressed header
//! (VP9 bitstream specification section 6.2).
//!
//! A packet starts a key frame when its descriptor says it begins a frame
//! (B = 1) that is not inter-picture predicted (P = 0) on the base spatial
//! layer, and, where the packet carries the frame's uncompressed header, that
//! header says `frame_type = KEY_FRAME`. VP9 sources are forwarded as single
//! streams; their picture id and TL0PICIDX can be rewritten like VP8's.

use super::bits::BitReader;
use super::{CodecError, PayloadCodec, PayloadInfo};

/// The VP9 payload format.
#[derive(Debug, Clone, Copy)]
pub struct Vp9;

/// The parts of a VP9 payload descriptor the bridge reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vp9Descriptor {
    /// P: inter-picture predicted.
    pub inter_predicted: bool,
    /// B: start of a frame.
    pub begin: bool,
    /// E: end of a frame.
    pub end: bool,
    /// F: flexible mode.
    pub flexible: bool,
    /// The picture id (7 or 15 bits), if I is set.
    pub picture_id: Option<u16>,
    /// The picture id is 15 bits wide.
    pub long_picture_id: bool,
    /// Temporal layer id, if L is set.
    pub temporal_id: Option<u8>,
    /// U: switching up point.
    pub switching_up: bool,
    /// Spatial layer id, if L is set.
    pub spatial_id: Option<u8>,
    /// TL0PICIDX (non-flexible mode with L).
    pub tl0_pic_idx: Option<u8>,
    /// Z: not a reference for upper spatial layers.
    pub not_reference: bool,
    /// Descriptor length: the VP9 frame data starts here.
    pub len: usize,
    picture_id_at: Option<usize>,
    tl0_at: Option<usize>,
}

impl Vp9Descriptor {
    /// Parses the descriptor at the start of `payload`, with its scalability
    /// structure (V) skipped over.
    pub fn parse(payload: &[u8]) -> Result<Self, CodecError> {
        let mut at = 0usize;
        let take = |at: &mut usize| -> Result<u8, CodecError> {
            let b = *payload.get(*at).ok_or(CodecError::Truncated)?;
            *at += 1;
            Ok(b)
        };
        let first = take(&mut at)?;
        let mut d = Vp9Descriptor {
            inter_predicted: first & 0x40 != 0,
            flexible: first & 0x10 != 0,
            begin: first & 0x08 != 0,
            end: first & 0x04 != 0,
            not_reference: first & 0x01 != 0,
            ..Vp9Descriptor::default()
        };
        if first & 0x80 != 0 {
            d.picture_id_at = Some(at);
            let p = take(&mut at)?;
            if p & 0x80 != 0 {
                d.long_picture_id = true;
                d.picture_id = Some((u16::from(p & 0x7F) << 8) | u16::from(take(&mut at)?));
            } else {
                d.picture_id = Some(u16::from(p));
            }
        }
        if first & 0x20 != 0 {
            let l = take(&mut at)?;
            d.temporal_id = Some(l >> 5);
            d.switching_up = l & 0x10 != 0;
            d.spatial_id = Some((l >> 1) & 0x07);
            if !d.flexible {
                d.tl0_at = Some(at);
                d.tl0_pic_idx = Some(take(&mut at)?);
            }
        }
        if d.flexible && d.inter_predicted {
            // Up to three P_DIFF bytes, N set on all but the last.
            for _ in 0..3 {
                if take(&mut at)? & 0x01 == 0 {
                    break;
                }
            }
        }
        if first & 0x02 != 0 {
            // Scalability structure: N_S|Y|G, sizes, picture group.
            let ss = take(&mut at)?;
            let layers = usize::from(ss >> 5) + 1;
            if ss & 0x10 != 0 {
                at += 4 * layers;
            }
            if ss & 0x08 != 0 {
                let groups = take(&mut at)?;
                for _ in 0..groups {
                    let g = take(&mut at)?;
                    at += usize::from((g >> 2) & 0x03);
                }
            }
            if at > payload.len() {
                return Err(CodecError::Truncated);
            }
        }
        d.len = at;
        Ok(d)
    }
}

/// What a key frame's uncompressed header says, where the packet carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameHeader {
    /// `frame_type = KEY_FRAME` with this size, if it could be read.
    Key(Option<(u16, u16)>),
    /// An inter frame or a shown existing frame.
    NotKey,
}

/// Reads the uncompressed header at the start of a frame (VP9 spec 6.2).
fn frame_header(data: &[u8]) -> Option<FrameHeader> {
    let mut r = BitReader::new(data);
    if r.bits(2)? != 2 {
        return None; // frame_marker
    }
    let low = r.bit()?;
    let high = r.bit()?;
    let profile = (high << 1) | low;
    if profile == 3 {
        r.bit()?; // reserved_zero
    }
    if r.bit()? == 1 {
        return Some(FrameHeader::NotKey); // show_existing_frame
    }
    if r.bit()? == 1 {
        return Some(FrameHeader::NotKey); // frame_type: NON_KEY_FRAME
    }
    let _show_frame = r.bit()?;
    let _error_resilient = r.bit()?;
    let size = (|| {
        if r.bits(24)? != 0x49_83_42 {
            return None; // frame_sync_code
        }
        // color_config
        if profile >= 2 {
            r.bit()?; // ten_or_twelve_bit
        }
        let color_space = r.bits(3)?;
        if color_space != 7 {
            r.bit()?; // color_range
            if profile == 1 || profile == 3 {
                r.bits(3)?; // subsampling_x, subsampling_y, reserved_zero
            }
        } else if profile == 1 || profile == 3 {
            r.bit()?; // reserved_zero
        }
        let w = r.bits(16)? + 1;
        let h = r.bits(16)? + 1;
        Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
    })();
    Some(FrameHeader::Key(size))
}

impl PayloadCodec for Vp9 {
    fn parse(payload: &[u8]) -> Result<PayloadInfo, CodecError> {
        let d = Vp9Descriptor::parse(payload)?;
        let base_layer = d.spatial_id.is_none_or(|s| s == 0);
        let mut keyframe = d.begin && !d.inter_predicted && base_layer;
        let mut resolution = None;
        if keyframe {
            match payload.get(d.len..).and_then(frame_header) {
                Some(FrameHeader::Key(size)) => resolution = size,
                Some(FrameHeader::NotKey) => keyframe = false,
                None => {}
            }
        }
        Ok(PayloadInfo {
            keyframe,
            frame_start: d.begin && base_layer,
            temporal_id: d.temporal_id,
            spatial_id: d.spatial_id,
            layer_sync: d.switching_up,
            non_reference: d.not_reference,
            picture_id: d.picture_id,
            long_picture_id: d.long_picture_id,
            tl0_pic_idx: d.tl0_pic_idx,
            key_idx: None,
            resolution,
        })
    }

    fn rewrite(
        payload: &mut [u8],
        picture_id: Option<u16>,
        tl0_pic_idx: Option<u8>,
    ) -> Result<(), CodecError> {
        let d = Vp9Descriptor::parse(payload)?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The start of a profile 0 VP9 key frame's uncompressed header, built from
    /// the VP9 spec section 6.2 for 1280x720: frame_marker 2, profile 0,
    /// show_existing_frame 0, frame_type 0 (KEY_FRAME), show_frame 1,
    /// error_resilient 0, sync code 49 83 42, color_space 1 (BT.601),
    /// color_range 0, width - 1 = 1279, height - 1 = 719 (libvpx writes this).
    const KEY_HEADER_720P: [u8; 9] = [
        0x82, // 10 0 0 | 0 0 1 0
        0x49, 0x83, 0x42, // frame_sync_code
        0x20, // color_space 001, color_range 0, then width - 1 = 0x04FF ...
        0x4F, 0xF0, // ... and height - 1 = 0x02CF ...
        0x2C, 0xF0, // ... and 4 bits of padding
    ];

    /// An inter frame's first header byte: frame_type 1.
    const INTER_HEADER: [u8; 2] = [0b1000_0110, 0x00];

    #[test]
    fn the_hand_built_header_reads_as_a_720p_key_frame() {
        assert_eq!(
            frame_header(&KEY_HEADER_720P),
            Some(FrameHeader::Key(Some((1280, 720))))
        );
        assert_eq!(frame_header(&INTER_HEADER), Some(FrameHeader::NotKey));
        assert_eq!(frame_header(&[0x00]), None, "frame_marker must be 2");
    }

    #[test]
    fn vp9_key_frame_with_picture_id_layers_and_scalability_structure() {
        // I L B E V (Chrome's key frame): 15-bit picture id 0x1234, TID 0 U 0
        // SID 0 D 0, TL0PICIDX 9, SS: N_S 0, Y, G; 1280x720; one group: TID 0,
        // U 0, R 0.
        let mut p = vec![0b1010_1110, 0x80 | 0x12, 0x34, 0x00, 9];
        p.extend_from_slice(&[0b0001_1000, 0x05, 0x00, 0x02, 0xD0, 1, 0x00]);
        let d = Vp9Descriptor::parse(&p).unwrap();
        assert_eq!(d.len, p.len());
        p.extend_from_slice(&KEY_HEADER_720P);
        let info = Vp9::parse(&p).unwrap();
        assert!(info.keyframe && info.frame_start);
        assert_eq!(info.picture_id, Some(0x1234));
        assert!(info.long_picture_id);
        assert_eq!(info.tl0_pic_idx, Some(9));
        assert_eq!((info.temporal_id, info.spatial_id), (Some(0), Some(0)));
        assert_eq!(info.resolution, Some((1280, 720)));

        // Rewriting keeps the widths; the frame data is untouched.
        let before = p.clone();
        Vp9::rewrite(&mut p, Some(0x7FFE), Some(200)).unwrap();
        let info = Vp9::parse(&p).unwrap();
        assert_eq!(
            (info.picture_id, info.tl0_pic_idx),
            (Some(0x7FFE), Some(200))
        );
        assert_eq!(p[5..], before[5..]);
    }

    #[test]
    fn vp9_inter_frames_continuations_and_upper_spatial_layers_are_not_key_frames() {
        // P set (inter predicted), B set, 7-bit picture id.
        let mut p = vec![0b1100_1000, 0x05];
        p.extend_from_slice(&INTER_HEADER);
        let info = Vp9::parse(&p).unwrap();
        assert!(!info.keyframe && info.frame_start);
        // B = 0: a continuation.
        assert!(!Vp9::parse(&[0b1000_0100, 0x05, 0xAA]).unwrap().keyframe);
        // P = 0 on spatial layer 1 (an upper layer of an SVC key picture).
        let info = Vp9::parse(&[0b0010_1000, 0b0001_0010, 3, 0x82]).unwrap();
        assert_eq!(info.spatial_id, Some(1));
        assert!(!info.keyframe);
        // P = 0 but the header says inter frame: not a key frame.
        let mut p = vec![0b0000_1000];
        p.extend_from_slice(&INTER_HEADER);
        assert!(!Vp9::parse(&p).unwrap().keyframe);
        // Flexible mode with P_DIFFs (N on the first): TID 2, U.
        let info = Vp9::parse(&[0b0111_1000, 0b0101_0000, 0x03, 0x02, 0x86]).unwrap();
        assert_eq!(info.temporal_id, Some(2));
        assert!(info.layer_sync);
        assert_eq!(info.tl0_pic_idx, None);
    }

    #[test]
    fn vp9_truncated_descriptors_are_errors() {
        for bad in [
            &[][..],
            &[0x80],                    // I without picture id
            &[0x80, 0x80],              // M without its second byte
            &[0x20],                    // L without the layer byte
            &[0x20, 0x00],              // non-flexible L without TL0PICIDX
            &[0x50],                    // flexible P without P_DIFF
            &[0x02],                    // V without SS
            &[0x02, 0b0001_0000, 0x05], // SS sizes cut short
        ] {
            assert_eq!(Vp9::parse(bad), Err(CodecError::Truncated), "{bad:02x?}");
        }
        assert_eq!(
            Vp9::rewrite(&mut [0x08, 0x82], Some(1), None),
            Err(CodecError::NoSuchField)
        );
    }
}
