//! RTP as the bridge reads it after SRTP: the header and its extensions (one- and
//! two-byte), the transport-wide sequence number, the payload formats of every
//! codec the bridge forwards (Opus, VP8, H264, VP9, AV1: key frame detection,
//! SPS / uncompressed header / sequence header sizes) and their rewrite, RED's
//! primary block (RFC 2198) and the RTX unwrap (RFC 4588).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbridge_bridge::proto::codec::{CodecKind, h264, red};
use ringbridge_bridge::proto::quality::rtx;
use ringbridge_bridge::proto::quality::twcc::transport_sequence_number;
use ringbridge_bridge::proto::rtp::{RtpHeader, Vp8Descriptor};

fuzz_target!(|data: &[u8]| {
    // Vp8Descriptor and the codecs also see payloads on their own.
    let _ = Vp8Descriptor::parse(data);
    let _ = h264::sps_resolution(data);
    if let Ok(h) = RtpHeader::parse(data) {
        let _ = h.payload_range();
        let _ = h.csrcs(data).count();
        for e in h.extensions(data) {
            let _ = e;
        }
        for id in [1u8, 2, 3, 4, 5, 14, 15] {
            let _ = h.extension_value(data, id);
            let _ = h.audio_level(data, id);
            let _ = h.mid(data, id);
            let _ = transport_sequence_number(&h, data, id);
        }
        if let Some(payload) = h.payload(data) {
            if let Ok((_, r)) = red::primary(payload) {
                assert!(r.start <= r.end && r.end == payload.len());
            }
            for codec in [
                CodecKind::Vp8,
                CodecKind::Opus,
                CodecKind::H264,
                CodecKind::Vp9,
                CodecKind::Av1,
            ] {
                let info = codec.parse(payload);
                let mut p = payload.to_vec();
                let _ = codec.rewrite(&mut p, Some(0x7fff), Some(7));
                let _ = codec.rewrite(&mut p, Some(3), None);
                let _ = codec.rewrite_key_idx(&mut p, 0x1f);
                // A rewrite never changes what the packet is.
                if let Ok(before) = info {
                    let after = codec.parse(&p).expect("a rewritten payload still parses");
                    assert_eq!(before.keyframe, after.keyframe);
                    assert_eq!(before.temporal_id, after.temporal_id);
                }
            }
        }
    }
    let mut buf = data.to_vec();
    let _ = rtx::unwrap_in_place(&mut buf, 96, 0x1234_5678);
});
