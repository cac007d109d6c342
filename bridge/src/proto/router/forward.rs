//! Writing a receiver's copy of a forwarded RTP packet.

use super::super::rtp::RtpHeader;

/// Writes the receiver's copy of `packet` into `out`: a fresh 12-byte header with
/// the slot's payload type, sequence number, timestamp and SSRC, followed by the
/// original payload (and padding). CSRCs and header extensions are not forwarded:
/// their ids were negotiated with the sender, not with this receiver.
///
/// Returns the length written, or `None` if `out` is too small.
pub fn write_forwarded(
    out: &mut [u8],
    packet: &[u8],
    header: &RtpHeader,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
) -> Option<usize> {
    let body = packet.get(header.header_len..header.packet_len)?;
    let len = 12 + body.len();
    let dst = out.get_mut(..len)?;
    let padding = if header.padding_len > 0 { 0x20 } else { 0 };
    dst[0] = 0x80 | padding;
    dst[1] = (u8::from(header.marker) << 7) | (pt & 0x7F);
    dst[2..4].copy_from_slice(&seq.to_be_bytes());
    dst[4..8].copy_from_slice(&ts.to_be_bytes());
    dst[8..12].copy_from_slice(&ssrc.to_be_bytes());
    dst[12..].copy_from_slice(body);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_copy_has_slot_fields_and_no_extensions() {
        // V=2, X=1, CC=1, M=1 PT=96, seq 7, ts 9, ssrc 0x11, one CSRC, one-byte ext block.
        let mut pkt = vec![0x91, 0xE0, 0, 7, 0, 0, 0, 9, 0, 0, 0, 0x11, 0, 0, 0, 0x22];
        pkt.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0]);
        pkt.extend_from_slice(b"payload");
        let header = RtpHeader::parse(&pkt).expect("valid packet");
        let mut out = [0u8; 64];
        let n = write_forwarded(&mut out, &pkt, &header, 100, 500, 600, 0xDEAD_BEEF).expect("fits");
        let copy = RtpHeader::parse(&out[..n]).expect("copy parses");
        assert_eq!(copy.payload_type, 100);
        assert!(copy.marker);
        assert_eq!(copy.sequence_number, 500);
        assert_eq!(copy.timestamp, 600);
        assert_eq!(copy.ssrc, 0xDEAD_BEEF);
        assert_eq!(copy.csrc_count, 0);
        assert!(copy.extension.is_none());
        assert_eq!(copy.payload(&out[..n]), Some(&b"payload"[..]));
        assert_eq!(
            write_forwarded(&mut out[..10], &pkt, &header, 100, 1, 1, 1),
            None
        );
    }
}
