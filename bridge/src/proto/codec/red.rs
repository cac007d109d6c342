//! RTP payload for redundant audio data (RED, RFC 2198), as Chrome sends Opus
//! with it (`a=rtpmap:63 red/48000/2`, `a=fmtp:63 111/111`): each packet carries
//! the previous frame(s) again ahead of the current one, so a receiver recovers a
//! lost packet from the next. Unlike Opus in-band FEC (a low-bitrate SILK copy,
//! which the encoder only makes in SILK or hybrid mode and only once the
//! receiver reports loss), the redundant copy is the full frame in any mode.
//!
//! The bridge forwards RED unchanged to receivers that negotiated it, and the
//! primary encoding alone (`primary`) to those that did not.

use std::ops::Range;

/// Why a RED payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedError {
    /// The block headers, or the blocks they announce, run past the payload.
    #[error("RED block headers or blocks truncated")]
    Truncated,
}

/// The primary (newest) encoding in a RED payload: its payload type and where
/// its bytes are in `payload`.
///
/// RFC 2198 section 3: block headers are 4 bytes (`F=1`, block PT, 14-bit
/// timestamp offset, 10-bit length) for each redundant block and 1 byte
/// (`F=0`, PT) for the primary, followed by the redundant blocks in order and
/// then the primary data, which runs to the end of the payload.
pub fn primary(payload: &[u8]) -> Result<(u8, Range<usize>), RedError> {
    let mut at = 0;
    let mut redundant = 0usize;
    loop {
        let first = *payload.get(at).ok_or(RedError::Truncated)?;
        if first & 0x80 == 0 {
            let start = at + 1 + redundant;
            if start > payload.len() {
                return Err(RedError::Truncated);
            }
            return Ok((first & 0x7F, start..payload.len()));
        }
        let header = payload.get(at..at + 4).ok_or(RedError::Truncated)?;
        redundant += usize::from(u16::from_be_bytes([header[2], header[3]]) & 0x03FF);
        at += 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2198 section 3's example layout: one redundant block (PT 0, offset
    /// 160, 3 bytes here) then the primary (PT 0), as a byte vector.
    #[test]
    fn one_redundant_block_then_the_primary() {
        // F=1 PT=0, offset 160, length 3; then the primary header (PT 0).
        let mut p = vec![0x80, 0x02, 0x80, 0x03, 0x00];
        p.extend_from_slice(&[1, 2, 3]); // redundant
        p.extend_from_slice(&[9, 8, 7, 6]); // primary
        let (pt, range) = primary(&p).expect("parses");
        assert_eq!(pt, 0);
        assert_eq!(&p[range], &[9, 8, 7, 6]);
    }

    /// Chrome's Opus RED: `111/111`, two redundant blocks.
    #[test]
    fn two_redundant_blocks_of_opus() {
        let block = |len: u16, offset: u16| {
            let v = (u32::from(offset) << 10) | u32::from(len);
            let b = v.to_be_bytes();
            [0x80 | 111, b[1], b[2], b[3]]
        };
        let mut p = Vec::new();
        p.extend_from_slice(&block(2, 1920));
        p.extend_from_slice(&block(3, 960));
        p.push(111);
        p.extend_from_slice(&[0xA, 0xB]);
        p.extend_from_slice(&[0xC, 0xD, 0xE]);
        p.extend_from_slice(&[0xF0, 0xF1]);
        let (pt, range) = primary(&p).expect("parses");
        assert_eq!(pt, 111);
        assert_eq!(&p[range], &[0xF0, 0xF1]);
    }

    /// Only the primary header: the whole rest is the primary (Chrome sends
    /// that when there is nothing to repeat yet, e.g. the first packet).
    #[test]
    fn primary_only() {
        let p = [111, 1, 2, 3];
        assert_eq!(primary(&p).expect("parses"), (111, 1..4));
    }

    #[test]
    fn truncated_headers_and_blocks_are_refused() {
        assert_eq!(primary(&[]), Err(RedError::Truncated));
        assert_eq!(primary(&[0x80 | 111, 0, 0]), Err(RedError::Truncated));
        // A block of 5 bytes announced, 2 present.
        assert_eq!(
            primary(&[0x80 | 111, 0x00, 0x00, 0x05, 111, 1, 2]),
            Err(RedError::Truncated)
        );
        // Only redundant headers, no primary header.
        assert_eq!(primary(&[0x80 | 111, 0, 0, 0]), Err(RedError::Truncated));
    }

    /// Any byte string: never a panic, and a range inside the payload.
    #[test]
    fn random_payloads_never_panic() {
        let mut x = 0x1234_5678u32;
        for _ in 0..20_000 {
            let len = (x % 40) as usize;
            let p: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if let Ok((_, r)) = primary(&p) {
                assert!(r.start <= r.end && r.end == p.len());
            }
        }
    }
}
