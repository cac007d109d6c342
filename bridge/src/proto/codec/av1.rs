//! AV1 (the AOM "RTP Payload Format for AV1", v1.0): the aggregation header,
//! key frame detection, and a key frame's size from its sequence header OBU
//! (AV1 bitstream specification section 5.5).
//!
//! A packet starts a key frame when its aggregation header has N = 1 (the
//! first packet of a coded video sequence, which begins with a key frame) and
//! its first OBU element is not the continuation of an earlier one (Z = 0).
//! AV1 sources are forwarded as single streams; there is no picture id to
//! rewrite.

use super::bits::BitReader;
use super::{CodecError, PayloadCodec, PayloadInfo};

/// OBU types (AV1 spec section 6.2.2).
const OBU_SEQUENCE_HEADER: u8 = 1;
const OBU_TEMPORAL_DELIMITER: u8 = 2;
const OBU_FRAME_HEADER: u8 = 3;
const OBU_FRAME: u8 = 6;

/// The AV1 payload format.
#[derive(Debug, Clone, Copy)]
pub struct Av1;

/// Reads a leb128 value (AV1 spec 4.10.5, at most 8 bytes) at the start of
/// `data`: the value and the bytes it took.
fn leb128(data: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in data.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((usize::try_from(value).ok()?, i + 1));
        }
    }
    None
}

impl PayloadCodec for Av1 {
    fn parse(payload: &[u8]) -> Result<PayloadInfo, CodecError> {
        let (&agg, rest) = payload.split_first().ok_or(CodecError::Truncated)?;
        let continuation = agg & 0x80 != 0; // Z
        let new_sequence = agg & 0x08 != 0; // N
        let w = (agg >> 4) & 0x03;
        let mut info = PayloadInfo::default();
        if rest.is_empty() {
            return Err(CodecError::Truncated);
        }
        // The first OBU element: with W = 1 it fills the packet, otherwise a
        // leb128 length precedes it.
        let element = if w == 1 {
            rest
        } else {
            let (len, n) = leb128(rest).ok_or(CodecError::Truncated)?;
            let end = n.checked_add(len).ok_or(CodecError::Truncated)?;
            rest.get(n..end).ok_or(CodecError::Truncated)?
        };
        if continuation {
            // The middle or end of an OBU: nothing to read in it.
            return Ok(info);
        }
        let (&header, mut obu) = element.split_first().ok_or(CodecError::Truncated)?;
        let obu_type = (header >> 3) & 0x0F;
        if header & 0x04 != 0 {
            // Extension header: temporal_id (3 bits), spatial_id (2 bits).
            let (&ext, tail) = obu.split_first().ok_or(CodecError::Truncated)?;
            info.temporal_id = Some(ext >> 5);
            info.spatial_id = Some((ext >> 3) & 0x03);
            obu = tail;
        }
        if header & 0x02 != 0 {
            // obu_has_size_field (RTP senders should clear it; allowed).
            let (len, n) = leb128(obu).ok_or(CodecError::Truncated)?;
            obu = obu.get(n..).ok_or(CodecError::Truncated)?;
            obu = obu.get(..len.min(obu.len())).unwrap_or_default();
        }
        info.frame_start = matches!(
            obu_type,
            OBU_SEQUENCE_HEADER | OBU_TEMPORAL_DELIMITER | OBU_FRAME_HEADER | OBU_FRAME
        );
        info.keyframe = new_sequence;
        if new_sequence && obu_type == OBU_SEQUENCE_HEADER {
            info.resolution = sequence_header_size(obu);
        }
        Ok(info)
    }

    fn rewrite(_: &mut [u8], picture_id: Option<u16>, tl0: Option<u8>) -> Result<(), CodecError> {
        if picture_id.is_some() || tl0.is_some() {
            return Err(CodecError::NoSuchField);
        }
        Ok(())
    }
}

/// `max_frame_width` and `max_frame_height` of a sequence header OBU's payload
/// (AV1 spec 5.5.1); `None` when it is truncated or carries timing info (its
/// decoder model fields are not read here).
fn sequence_header_size(obu: &[u8]) -> Option<(u16, u16)> {
    let mut r = BitReader::new(obu);
    let _seq_profile = r.bits(3)?;
    let _still_picture = r.bit()?;
    if r.bit()? == 1 {
        // reduced_still_picture_header
        let _seq_level_idx = r.bits(5)?;
    } else {
        if r.bit()? == 1 {
            return None; // timing_info_present_flag
        }
        let initial_display_delay = r.bit()? == 1;
        let points = r.bits(5)? + 1;
        for _ in 0..points {
            let _idc = r.bits(12)?;
            if r.bits(5)? > 7 {
                let _seq_tier = r.bit()?;
            }
            if initial_display_delay && r.bit()? == 1 {
                let _delay = r.bits(4)?;
            }
        }
    }
    let wbits = r.bits(4)? as u8 + 1;
    let hbits = r.bits(4)? as u8 + 1;
    let w = r.bits(wbits)? + 1;
    let h = r.bits(hbits)? + 1;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The start of a sequence header OBU payload built from the AV1 spec 5.5
    /// for 1280x720: seq_profile 0, still 0, reduced 0, timing_info 0,
    /// initial_display_delay 0, one operating point (idc 0, seq_level_idx 8
    /// (level 4.0), tier 0), frame_width_bits 11, frame_height_bits 10,
    /// max_frame_width - 1 = 1279, max_frame_height - 1 = 719.
    const SEQ_720P: [u8; 8] = [0x00, 0x00, 0x00, 0x42, 0xA6, 0x7F, 0xD9, 0xE0];

    /// A key frame's first packet as libwebrtc sends it: aggregation header
    /// Z=0 Y=1 W=2 N=1 (0x68), a sequence header OBU element with its length,
    /// then the start of a frame OBU (type 6, 0x30) filling the rest.
    fn key_packet() -> Vec<u8> {
        let mut p = vec![0x68, 1 + SEQ_720P.len() as u8, 0x08];
        p.extend_from_slice(&SEQ_720P);
        p.extend_from_slice(&[0x30, 0x10, 0x00]);
        p
    }

    #[test]
    fn av1_new_sequence_packet_is_a_key_frame_with_its_size() {
        let info = Av1::parse(&key_packet()).unwrap();
        assert!(info.keyframe && info.frame_start);
        assert_eq!(info.resolution, Some((1280, 720)));
        // The same with obu_has_size_field set on the sequence header (0x0A).
        let mut p = vec![0x58, 0x0A, SEQ_720P.len() as u8];
        p.extend_from_slice(&SEQ_720P);
        assert_eq!(Av1::parse(&p).unwrap().resolution, Some((1280, 720)));
    }

    #[test]
    fn av1_delta_frames_and_continuations_are_not_key_frames() {
        // Z=0 Y=0 W=1 N=0: one frame OBU (0x30) with an extension (0x34):
        // temporal_id 2, spatial_id 1.
        let info = Av1::parse(&[0x10, 0x34, 0b0100_1000, 0xAA]).unwrap();
        assert!(!info.keyframe && info.frame_start);
        assert_eq!((info.temporal_id, info.spatial_id), (Some(2), Some(1)));
        // Z=1: the rest of an OBU from the previous packet, N ignored.
        let info = Av1::parse(&[0x98, 0xAA, 0xBB]).unwrap();
        assert!(!info.keyframe && !info.frame_start);
        // A tile group OBU (type 4, 0x20) starts no frame.
        assert!(!Av1::parse(&[0x10, 0x20, 0x00]).unwrap().frame_start);
    }

    #[test]
    fn av1_truncated_packets_are_errors_and_timing_info_gives_no_size() {
        for bad in [
            &[][..],
            &[0x08],             // aggregation header alone
            &[0x28, 0x05, 0x08], // length past the end
            &[0x28, 0x80],       // unterminated leb128
            &[0x18, 0x0C],       // extension flag without the extension byte
        ] {
            assert_eq!(Av1::parse(bad), Err(CodecError::Truncated), "{bad:02x?}");
        }
        let mut timing = SEQ_720P;
        timing[0] |= 0b0000_0100; // timing_info_present_flag
        assert_eq!(sequence_header_size(&timing), None);
        assert_eq!(sequence_header_size(&SEQ_720P[..5]), None);
        assert_eq!(leb128(&[0xE5, 0x8E, 0x26]), Some((624_485, 3)));
    }
}
