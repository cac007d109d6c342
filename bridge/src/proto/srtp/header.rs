//! The few RTP/RTCP header fields SRTP needs, parsed with bounds checks.

use super::SrtpError;

/// RTP fixed header length (RFC 3550 section 5.1).
const RTP_FIXED_LEN: usize = 12;
/// RTCP header plus sender SSRC: the part SRTCP leaves unencrypted.
pub(super) const RTCP_FIXED_LEN: usize = 8;

/// What SRTP needs from an RTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RtpHeader {
    /// Length of the header including CSRCs and the header extension: where the
    /// encrypted payload starts.
    pub(super) len: usize,
    pub(super) seq: u16,
    pub(super) ssrc: u32,
}

/// Parses the RTP header at the start of `packet`, which must hold the whole header.
pub(super) fn parse_rtp(packet: &[u8]) -> Result<RtpHeader, SrtpError> {
    let Some(&[b0, _, s0, s1, _, _, _, _, x0, x1, x2, x3]) = packet.first_chunk::<RTP_FIXED_LEN>()
    else {
        return Err(SrtpError::TooShort);
    };
    if b0 >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    let csrc_count = usize::from(b0 & 0x0f);
    let mut len = RTP_FIXED_LEN + 4 * csrc_count;
    if b0 & 0x10 != 0 {
        // RFC 3550 5.3.1: 16-bit profile, 16-bit length in 32-bit words, then the words.
        let Some(&[_, _, l0, l1]) = packet.get(len..).and_then(|rest| rest.first_chunk::<4>())
        else {
            return Err(SrtpError::Malformed);
        };
        len += 4 + 4 * usize::from(u16::from_be_bytes([l0, l1]));
    }
    if len > packet.len() {
        return Err(SrtpError::Malformed);
    }
    Ok(RtpHeader {
        len,
        seq: u16::from_be_bytes([s0, s1]),
        ssrc: u32::from_be_bytes([x0, x1, x2, x3]),
    })
}

/// Checks the first RTCP header of `packet` and returns the sender SSRC, which keys the
/// SRTCP state (RFC 3711 section 3.4).
pub(super) fn parse_rtcp(packet: &[u8]) -> Result<u32, SrtpError> {
    let Some(&[b0, _, _, _, x0, x1, x2, x3]) = packet.first_chunk::<RTCP_FIXED_LEN>() else {
        return Err(SrtpError::TooShort);
    };
    if b0 >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    Ok(u32::from_be_bytes([x0, x1, x2, x3]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plain_header() {
        let p = [
            0x80, 0x60, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 0xaa,
        ];
        let h = parse_rtp(&p).unwrap();
        assert_eq!(
            h,
            RtpHeader {
                len: 12,
                seq: 0x1234,
                ssrc: 0xdead_beef
            }
        );
    }

    #[test]
    fn csrcs_and_extension_are_part_of_the_header() {
        let mut p = vec![0x92, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
        p.extend_from_slice(&[0; 8]); // 2 CSRCs
        p.extend_from_slice(&[0xbe, 0xde, 0, 2]); // extension of 2 words
        p.extend_from_slice(&[0; 8]);
        assert_eq!(parse_rtp(&p).unwrap().len, 12 + 8 + 4 + 8);
        // The header may end exactly at the end of the packet (empty payload).
        p.truncate(12 + 8 + 4 + 8);
        assert_eq!(parse_rtp(&p).unwrap().len, p.len());
    }

    #[test]
    fn truncated_headers_are_errors() {
        assert_eq!(parse_rtp(&[0x80; 11]), Err(SrtpError::TooShort));
        assert_eq!(parse_rtp(&[0x40; 12]), Err(SrtpError::Malformed));
        // 15 CSRCs announced, none present.
        let mut p = [0u8; 12];
        p[0] = 0x8f;
        assert_eq!(parse_rtp(&p), Err(SrtpError::Malformed));
        // Extension bit set but no extension header.
        p[0] = 0x90;
        assert_eq!(parse_rtp(&p), Err(SrtpError::Malformed));
        // Extension length runs past the end.
        let mut p = vec![
            0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0xff, 0xff,
        ];
        p.extend_from_slice(&[0; 16]);
        assert_eq!(parse_rtp(&p), Err(SrtpError::Malformed));
    }

    #[test]
    fn every_prefix_of_a_header_is_handled() {
        let mut p = vec![0x93, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
        p.extend_from_slice(&[1; 12]);
        p.extend_from_slice(&[0x10, 0x00, 0, 3]);
        p.extend_from_slice(&[2; 12]);
        for n in 0..p.len() {
            assert!(parse_rtp(&p[..n]).is_err(), "prefix {n}");
        }
        assert_eq!(parse_rtp(&p).unwrap().len, p.len());
    }

    #[test]
    fn rtcp_header() {
        assert_eq!(parse_rtcp(&[0x80, 200, 0, 1, 1, 2, 3, 4]), Ok(0x0102_0304));
        assert_eq!(
            parse_rtcp(&[0x80, 200, 0, 1, 1, 2, 3]),
            Err(SrtpError::TooShort)
        );
        assert_eq!(
            parse_rtcp(&[0x00, 200, 0, 1, 1, 2, 3, 4]),
            Err(SrtpError::Malformed)
        );
    }
}
