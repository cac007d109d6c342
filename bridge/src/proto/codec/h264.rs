//! H264 (RFC 6184, `packetization-mode=1`): key frame and frame start
//! detection in single NAL unit, STAP-A and FU-A packets, and a key frame's
//! size from its sequence parameter set (ITU-T H.264 section 7.3.2.1.1).
//!
//! A packet starts a key frame when it carries an SPS (type 7) or the start of
//! an IDR slice (type 5): Chrome sends SPS and PPS in a STAP-A ahead of every
//! IDR, so switching at the SPS gives the decoder everything (mediasoup's H264
//! `isKeyFrame` reads the same NAL types). H264 has no picture id to rewrite.

use super::bits::BitReader;
use super::{CodecError, PayloadCodec, PayloadInfo};

/// NAL unit types (H.264 table 7-1, RFC 6184 table 1).
const NAL_SLICE: u8 = 1;
const NAL_IDR: u8 = 5;
const NAL_SEI: u8 = 6;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// The H264 payload format.
#[derive(Debug, Clone, Copy)]
pub struct H264;

impl PayloadCodec for H264 {
    fn parse(payload: &[u8]) -> Result<PayloadInfo, CodecError> {
        let (&first, rest) = payload.split_first().ok_or(CodecError::Truncated)?;
        let mut info = PayloadInfo::default();
        match first & 0x1F {
            STAP_A => {
                // Aggregated NAL units, each after a 16-bit size.
                let mut rest = rest;
                let mut first_nal = true;
                while !rest.is_empty() {
                    let [a, b, tail @ ..] = rest else {
                        return Err(CodecError::Truncated);
                    };
                    let size = usize::from(u16::from_be_bytes([*a, *b]));
                    let nal = tail.get(..size).ok_or(CodecError::Truncated)?;
                    let (&header, body) = nal.split_first().ok_or(CodecError::Truncated)?;
                    note_nal(&mut info, header & 0x1F, body, first_nal);
                    first_nal = false;
                    rest = tail.get(size..).unwrap_or_default();
                }
            }
            FU_A => {
                let (&fu, body) = rest.split_first().ok_or(CodecError::Truncated)?;
                // S bit: the first fragment carries the start of the NAL unit.
                if fu & 0x80 != 0 {
                    note_nal(&mut info, fu & 0x1F, body, true);
                }
            }
            0 | 25..=27 | 29..=31 => {
                // Forbidden 0, STAP-B, MTAP16/24 and FU-B (interleaved mode only)
                // and reserved types: not packetization-mode 1.
                return Err(CodecError::Unsupported);
            }
            nal => note_nal(&mut info, nal, rest, true),
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

/// Records what the NAL unit of `nal_type` whose body (after its header) starts
/// with `body` says; `first` when it is the packet's first NAL unit.
fn note_nal(info: &mut PayloadInfo, nal_type: u8, body: &[u8], first: bool) {
    match nal_type {
        NAL_SPS => {
            info.keyframe = true;
            info.frame_start |= first;
            if info.resolution.is_none() {
                info.resolution = sps_resolution(body);
            }
        }
        NAL_IDR => {
            info.keyframe = true;
            info.frame_start |= first && first_mb_is_zero(body);
        }
        NAL_SLICE => info.frame_start |= first && first_mb_is_zero(body),
        NAL_SEI | NAL_PPS | NAL_AUD => info.frame_start |= first,
        _ => {}
    }
}

/// A slice whose `first_mb_in_slice` (ue(v), the slice header's first field)
/// is 0 starts a picture: its first bit is 1.
fn first_mb_is_zero(body: &[u8]) -> bool {
    body.first().is_some_and(|b| b & 0x80 != 0)
}

/// Width and height of a sequence parameter set's frames (its RBSP after the
/// NAL header), cropping applied; `None` if it is truncated or implausible.
pub fn sps_resolution(sps: &[u8]) -> Option<(u16, u16)> {
    let mut r = BitReader::rbsp(sps);
    let profile_idc = r.bits(8)?;
    let _constraints = r.bits(8)?;
    let _level_idc = r.bits(8)?;
    let _sps_id = r.ue()?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = 0;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        let _bit_depth_luma = r.ue()?;
        let _bit_depth_chroma = r.ue()?;
        let _qpprime_bypass = r.bit()?;
        if r.bit()? == 1 {
            // seq_scaling_matrix_present_flag: scaling lists (7.3.2.1.1.1) skipped.
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256).rem_euclid(256);
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    let _log2_max_frame_num = r.ue()?;
    match r.ue()? {
        0 => {
            let _log2_max_poc_lsb = r.ue()?;
        }
        1 => {
            let _delta_always_zero = r.bit()?;
            let _offset_non_ref = r.se()?;
            let _offset_top_bottom = r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    let _max_num_ref_frames = r.ue()?;
    let _gaps_allowed = r.bit()?;
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = u64::from(r.bit()?);
    if frame_mbs_only == 0 {
        let _mb_adaptive = r.bit()?;
    }
    let _direct_8x8 = r.bit()?;
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        left = u64::from(r.ue()?);
        right = u64::from(r.ue()?);
        top = u64::from(r.ue()?);
        bottom = u64::from(r.ue()?);
    }
    // Table 6-1: SubWidthC/SubHeightC; crop units per 7.4.2.1.1.
    let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let (unit_x, unit_y) = if chroma_format_idc == 0 || separate_colour_plane == 1 {
        (1, 2 - frame_mbs_only)
    } else {
        (sub_w, sub_h * (2 - frame_mbs_only))
    };
    let width = (width_mbs * 16).checked_sub((left + right) * unit_x)?;
    let height =
        ((2 - frame_mbs_only) * height_map_units * 16).checked_sub((top + bottom) * unit_y)?;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A baseline-profile SPS (profile 66, level 3.0) of a 720x404 stream from a
    /// real encoder, with emulation prevention bytes (the `00 00 03`s) and
    /// frame cropping: the test SPS of videojs/mux.js (`test/test-sps.js`),
    /// after its 0x67 NAL header.
    const SPS_720X404: [u8; 23] = [
        66, 192, 30, 217, 0, 180, 53, 249, 225, 0, 0, 3, 0, 1, 0, 0, 3, 0, 60, 15, 22, 46, 72,
    ];

    /// Writes bits MSB first, with Exp-Golomb codes, to build SPSs by hand.
    #[derive(Default)]
    struct Bits(Vec<bool>);

    impl Bits {
        fn u(&mut self, n: u8, v: u32) -> &mut Self {
            for i in (0..n).rev() {
                self.0.push((v >> i) & 1 == 1);
            }
            self
        }
        fn ue(&mut self, v: u32) -> &mut Self {
            let x = v + 1;
            let len = 32 - x.leading_zeros() as u8;
            self.u(len - 1, 0).u(len, x)
        }
        fn bytes(&self) -> Vec<u8> {
            let mut out = vec![0u8; self.0.len().div_ceil(8)];
            for (i, b) in self.0.iter().enumerate() {
                if *b {
                    out[i / 8] |= 0x80 >> (i % 8);
                }
            }
            out
        }
    }

    /// A High-profile (100) 1920x1080 SPS built from H.264 7.3.2.1.1: 120x68
    /// macroblocks (1088 lines) cropped by 4 units of 2 lines at the bottom.
    fn sps_1080p_high() -> Vec<u8> {
        let mut b = Bits::default();
        b.u(8, 100).u(8, 0).u(8, 40).ue(0); // profile, constraints, level 4.0, id
        b.ue(1).ue(0).ue(0).u(1, 0).u(1, 0); // 4:2:0, 8 bit, 8 bit, no bypass, no matrix
        b.ue(0).ue(2); // log2_max_frame_num - 4, poc type 2
        b.ue(1).u(1, 0); // one reference frame, no gaps
        b.ue(119).ue(67).u(1, 1).u(1, 1); // 120x68 MBs, frame_mbs_only, direct 8x8
        b.u(1, 1).ue(0).ue(0).ue(0).ue(4); // cropping: bottom 4
        b.u(1, 0).u(1, 1); // no VUI, stop bit
        b.bytes()
    }

    #[test]
    fn sps_sizes_from_a_real_encoder_and_from_the_spec() {
        assert_eq!(sps_resolution(&SPS_720X404), Some((720, 404)));
        assert_eq!(sps_resolution(&sps_1080p_high()), Some((1920, 1080)));
        // Truncated: no size.
        assert_eq!(sps_resolution(&SPS_720X404[..8]), None);
        assert_eq!(sps_resolution(&[]), None);
    }

    #[test]
    fn single_nal_idr_and_sps_are_key_frames_slices_are_not() {
        // Single NAL unit: SPS (0x67) carries the size.
        let mut sps = vec![0x67];
        sps.extend_from_slice(&SPS_720X404);
        let info = H264::parse(&sps).unwrap();
        assert!(info.keyframe && info.frame_start);
        assert_eq!(info.resolution, Some((720, 404)));
        // IDR slice (0x65) with first_mb_in_slice = 0 (first bit 1).
        let info = H264::parse(&[0x65, 0x88, 0x84]).unwrap();
        assert!(info.keyframe && info.frame_start);
        // Non-IDR slice (0x41): a frame start, not a key frame.
        let info = H264::parse(&[0x41, 0x9a, 0x02]).unwrap();
        assert!(!info.keyframe && info.frame_start);
        // A second slice of a picture (first_mb_in_slice > 0: first bit 0).
        let info = H264::parse(&[0x41, 0x2a]).unwrap();
        assert!(!info.frame_start);
        assert!(info.temporal_id.is_none() && info.picture_id.is_none());
    }

    #[test]
    fn stap_a_with_sps_pps_idr_as_chrome_sends_a_key_frame() {
        // STAP-A (0x78): SPS, PPS (0x68 ce 3c 80), IDR (0x65 b8 ...).
        let mut p = vec![0x78];
        p.extend_from_slice(&(1 + SPS_720X404.len() as u16).to_be_bytes());
        p.push(0x67);
        p.extend_from_slice(&SPS_720X404);
        p.extend_from_slice(&[0x00, 0x04, 0x68, 0xce, 0x3c, 0x80]);
        p.extend_from_slice(&[0x00, 0x03, 0x65, 0xb8, 0x00]);
        let info = H264::parse(&p).unwrap();
        assert!(info.keyframe && info.frame_start);
        assert_eq!(info.resolution, Some((720, 404)));
        // STAP-A of SEI and a non-IDR slice: not a key frame.
        let p = [0x78, 0x00, 0x02, 0x06, 0x05, 0x00, 0x02, 0x41, 0x9a];
        assert!(!H264::parse(&p).unwrap().keyframe);
        // A size running past the end.
        assert_eq!(
            H264::parse(&[0x78, 0x00, 0x09, 0x67, 0x42]),
            Err(CodecError::Truncated)
        );
        assert_eq!(H264::parse(&[0x78, 0x00]), Err(CodecError::Truncated));
    }

    #[test]
    fn fu_a_start_of_an_idr_is_a_key_frame_its_continuations_are_not() {
        // FU indicator 0x7c (NRI 3, type 28); FU header S=1 type 5.
        let info = H264::parse(&[0x7c, 0x85, 0x88, 0x80]).unwrap();
        assert!(info.keyframe && info.frame_start);
        // Middle (0x05) and end (0x45) fragments.
        assert!(!H264::parse(&[0x7c, 0x05, 0x11]).unwrap().keyframe);
        assert!(!H264::parse(&[0x7c, 0x45, 0x11]).unwrap().keyframe);
        // Start of a non-IDR slice.
        let info = H264::parse(&[0x5c, 0x81, 0x9a]).unwrap();
        assert!(!info.keyframe && info.frame_start);
        assert_eq!(H264::parse(&[0x7c]), Err(CodecError::Truncated));
        // Interleaved-mode packets and the forbidden type are refused.
        assert_eq!(H264::parse(&[0x79, 0, 0]), Err(CodecError::Unsupported));
        assert_eq!(H264::parse(&[0x00, 0]), Err(CodecError::Unsupported));
        assert_eq!(H264::parse(&[]), Err(CodecError::Truncated));
        assert_eq!(
            H264::rewrite(&mut [0x65], Some(1), None),
            Err(CodecError::NoSuchField)
        );
    }
}
