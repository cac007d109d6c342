//! Codec payload handling: what the router needs to know from inside an RTP
//! payload (keyframes, frame starts, temporal and spatial layers) and the hooks
//! to rewrite codec-level numbering (VP8 picture id, TL0PICIDX) per receiver.
//! One file per codec: VP8, H264 (packetization mode 1), VP9 and AV1.

pub mod av1;
mod bits;
pub mod h264;
pub mod red;
pub mod vp8;
pub mod vp9;

/// Why a payload could not be read or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The payload descriptor (or the codec header it announces) is truncated.
    #[error("payload descriptor truncated")]
    Truncated,
    /// A packetization the bridge does not take (H264 interleaved mode).
    #[error("unsupported packetization")]
    Unsupported,
    /// The rewrite asked for a field the packet does not carry.
    #[error("payload has no such field to rewrite")]
    NoSuchField,
}

/// What one RTP payload says about the frame it belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PayloadInfo {
    /// The first packet of a key frame: a receiver may start decoding here.
    pub keyframe: bool,
    /// The first packet of a frame.
    pub frame_start: bool,
    /// Temporal layer, if the codec says.
    pub temporal_id: Option<u8>,
    /// Spatial layer, if the codec says.
    pub spatial_id: Option<u8>,
    /// A switch up to `temporal_id` is possible at this frame.
    pub layer_sync: bool,
    /// The frame is not a reference for others (droppable).
    pub non_reference: bool,
    /// Codec-level picture id, if present.
    pub picture_id: Option<u16>,
    /// The picture id is 15 bits wide (else 7).
    pub long_picture_id: bool,
    /// Temporal-layer-0 picture index, if present.
    pub tl0_pic_idx: Option<u8>,
    /// VP8 KEYIDX (5 bits), if present.
    pub key_idx: Option<u8>,
    /// A key frame's width and height, where the packet carries them.
    pub resolution: Option<(u16, u16)>,
}

/// A codec's payload format: parse, and rewrite codec-level numbering in place.
pub trait PayloadCodec {
    /// Reads the payload descriptor at the start of `payload`.
    fn parse(payload: &[u8]) -> Result<PayloadInfo, CodecError>;

    /// Overwrites the picture id and TL0PICIDX of `payload` in place (each when
    /// `Some`), keeping the fields' widths; the payload length never changes.
    fn rewrite(
        payload: &mut [u8],
        picture_id: Option<u16>,
        tl0_pic_idx: Option<u8>,
    ) -> Result<(), CodecError>;
}

/// Opus (RFC 7587): no payload descriptor; every packet decodes on its own.
#[derive(Debug, Clone, Copy)]
pub struct Opus;

impl PayloadCodec for Opus {
    fn parse(_payload: &[u8]) -> Result<PayloadInfo, CodecError> {
        Ok(PayloadInfo {
            keyframe: true,
            frame_start: true,
            ..PayloadInfo::default()
        })
    }

    fn rewrite(_: &mut [u8], picture_id: Option<u16>, tl0: Option<u8>) -> Result<(), CodecError> {
        if picture_id.is_some() || tl0.is_some() {
            return Err(CodecError::NoSuchField);
        }
        Ok(())
    }
}

/// The codecs the bridge forwards, for dispatch without `dyn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecKind {
    /// Opus audio.
    Opus,
    /// VP8 video.
    Vp8,
    /// H264 video, packetization mode 1.
    H264,
    /// VP9 video.
    Vp9,
    /// AV1 video.
    Av1,
}

impl CodecKind {
    /// The codec of an `a=rtpmap` encoding name, if the bridge forwards it.
    pub fn from_name(name: &str) -> Option<CodecKind> {
        if name.eq_ignore_ascii_case("opus") {
            Some(CodecKind::Opus)
        } else if name.eq_ignore_ascii_case("vp8") {
            Some(CodecKind::Vp8)
        } else if name.eq_ignore_ascii_case("h264") {
            Some(CodecKind::H264)
        } else if name.eq_ignore_ascii_case("vp9") {
            Some(CodecKind::Vp9)
        } else if name.eq_ignore_ascii_case("av1") {
            Some(CodecKind::Av1)
        } else {
            None
        }
    }

    /// [`PayloadCodec::parse`] of this codec.
    pub fn parse(self, payload: &[u8]) -> Result<PayloadInfo, CodecError> {
        match self {
            CodecKind::Opus => Opus::parse(payload),
            CodecKind::Vp8 => vp8::Vp8::parse(payload),
            CodecKind::H264 => h264::H264::parse(payload),
            CodecKind::Vp9 => vp9::Vp9::parse(payload),
            CodecKind::Av1 => av1::Av1::parse(payload),
        }
    }

    /// Overwrites a VP8 payload's KEYIDX in place (5 bits; the TID and Y bits
    /// around it kept); other codecs have none.
    pub fn rewrite_key_idx(self, payload: &mut [u8], key_idx: u8) -> Result<(), CodecError> {
        match self {
            CodecKind::Vp8 => vp8::Vp8::rewrite_key_idx(payload, key_idx),
            _ => Err(CodecError::NoSuchField),
        }
    }

    /// [`PayloadCodec::rewrite`] of this codec.
    pub fn rewrite(
        self,
        payload: &mut [u8],
        picture_id: Option<u16>,
        tl0_pic_idx: Option<u8>,
    ) -> Result<(), CodecError> {
        match self {
            CodecKind::Opus => Opus::rewrite(payload, picture_id, tl0_pic_idx),
            CodecKind::Vp8 => vp8::Vp8::rewrite(payload, picture_id, tl0_pic_idx),
            CodecKind::H264 => h264::H264::rewrite(payload, picture_id, tl0_pic_idx),
            CodecKind::Vp9 => vp9::Vp9::rewrite(payload, picture_id, tl0_pic_idx),
            CodecKind::Av1 => av1::Av1::rewrite(payload, picture_id, tl0_pic_idx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_by_name() {
        assert_eq!(CodecKind::from_name("VP8"), Some(CodecKind::Vp8));
        assert_eq!(CodecKind::from_name("opus"), Some(CodecKind::Opus));
        assert_eq!(CodecKind::from_name("H264"), Some(CodecKind::H264));
        assert_eq!(CodecKind::from_name("vp9"), Some(CodecKind::Vp9));
        assert_eq!(CodecKind::from_name("AV1"), Some(CodecKind::Av1));
        assert_eq!(CodecKind::from_name("H265"), None);
        // IDR start in an FU-A, a VP9 key frame start without its header, and
        // an AV1 new coded video sequence.
        assert!(
            CodecKind::H264
                .parse(&[0x7c, 0x85, 0x88])
                .expect("h264")
                .keyframe
        );
        assert!(CodecKind::Vp9.parse(&[0x08]).expect("vp9").keyframe);
        assert!(CodecKind::Av1.parse(&[0x18, 0x30]).expect("av1").keyframe);
        let info = CodecKind::Opus.parse(&[1, 2]).expect("opus");
        assert!(info.keyframe && info.temporal_id.is_none());
        assert_eq!(
            CodecKind::Opus.rewrite(&mut [0], Some(1), None),
            Err(CodecError::NoSuchField)
        );
        let key = [0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a];
        assert!(CodecKind::Vp8.parse(&key).expect("vp8").keyframe);
        assert_eq!(CodecKind::Vp8.parse(&[0x80]), Err(CodecError::Truncated));
    }
}
