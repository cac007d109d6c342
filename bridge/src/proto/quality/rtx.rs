//! RTX (RFC 4588): a retransmitted packet travels on its own SSRC and payload type with
//! its own sequence numbers, the original sequence number (OSN) in the first two bytes
//! of the payload (section 4).
//!
//! Everything works in caller buffers: [`wrap_in_place`] turns a packet into its RTX
//! form, [`unwrap_in_place`] restores the original from a received RTX packet, and
//! [`write_retransmission`] writes a slot's copy of a cached packet (plain or RTX) the way
//! the forwarding path writes slot packets: a fresh 12-byte header, no CSRCs, none of the
//! sender's header extensions (their ids were negotiated with the sender, not the
//! receiver), only the receiver's own ones given by the caller
//! ([`write_retransmission_with`]: the transport-wide sequence number, so that the
//! receiver's transport-cc feedback reports retransmissions as it does every other
//! packet).

use super::super::rtp::{self, RtpError, RtpHeader};
use super::super::rtp_ext::write_extension_block;

/// Length of the OSN field.
pub const OSN_LEN: usize = 2;

/// Why a packet could not be wrapped or unwrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtxError {
    /// The packet is not valid RTP.
    #[error("invalid RTP packet: {0}")]
    Rtp(#[from] RtpError),
    /// An RTX packet whose payload is one byte: no room for the OSN.
    #[error("RTX payload shorter than the original sequence number")]
    MissingOsn,
    /// The output buffer cannot hold the result (API misuse).
    #[error("buffer too small for the RTX packet")]
    BufferTooSmall,
    /// A retransmission's payload could not be renumbered for the slot (a
    /// cached payload without the fields its mapping rewrites).
    #[error("retransmitted payload could not be renumbered")]
    Renumber,
}

/// What a received RTX packet held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwrapped {
    /// The original packet, now in `buf[..len]` with its sequence number, SSRC and
    /// payload type restored.
    Original {
        /// Length of the restored packet.
        len: usize,
        /// The original sequence number (the OSN).
        seq: u16,
    },
    /// A padding-only packet (a bandwidth probe, RFC 4588 section 8.1 allows them):
    /// nothing to forward, but its bytes count toward the bandwidth estimate.
    Padding,
}

/// Turns the RTP packet in `buf[..len]` into its RTX form in place: payload type
/// `rtx_pt`, SSRC `rtx_ssrc`, sequence number `rtx_seq`, and the original sequence number
/// inserted before the payload. CSRCs, header extensions and padding are kept. `buf`
/// needs two spare bytes after `len`. Returns the new length.
pub fn wrap_in_place(
    buf: &mut [u8],
    len: usize,
    rtx_pt: u8,
    rtx_ssrc: u32,
    rtx_seq: u16,
) -> Result<usize, RtxError> {
    let packet = buf.get(..len).ok_or(RtxError::BufferTooSmall)?;
    let h = RtpHeader::parse(packet)?;
    let new_len = len + OSN_LEN;
    if buf.len() < new_len {
        return Err(RtxError::BufferTooSmall);
    }
    buf.copy_within(h.header_len..len, h.header_len + OSN_LEN);
    buf[h.header_len..h.header_len + OSN_LEN].copy_from_slice(&h.sequence_number.to_be_bytes());
    let out = &mut buf[..new_len];
    rtp::set_payload_type(out, rtx_pt)?;
    rtp::set_ssrc(out, rtx_ssrc)?;
    rtp::set_sequence(out, rtx_seq)?;
    Ok(new_len)
}

/// Restores the original packet from the RTX packet in `buf` (the whole datagram after
/// SRTP unprotect): the OSN becomes the sequence number, `original_pt` and
/// `original_ssrc` (from the `apt` and the `FID` group) replace the RTX ones, and the OSN
/// is removed from the payload. Padding is kept.
pub fn unwrap_in_place(
    buf: &mut [u8],
    original_pt: u8,
    original_ssrc: u32,
) -> Result<Unwrapped, RtxError> {
    let h = RtpHeader::parse(buf)?;
    let payload = h.payload_range();
    if payload.is_empty() {
        return Ok(Unwrapped::Padding);
    }
    let osn: [u8; OSN_LEN] = buf
        .get(payload.start..payload.start + OSN_LEN)
        .filter(|_| payload.len() >= OSN_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(RtxError::MissingOsn)?;
    let seq = u16::from_be_bytes(osn);
    let len = h.packet_len;
    buf.copy_within(h.header_len + OSN_LEN..len, h.header_len);
    let out = &mut buf[..len - OSN_LEN];
    rtp::set_payload_type(out, original_pt)?;
    rtp::set_ssrc(out, original_ssrc)?;
    rtp::set_sequence(out, seq)?;
    Ok(Unwrapped::Original {
        len: len - OSN_LEN,
        seq,
    })
}

/// The header fields of a retransmission to a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmissionFields {
    /// Payload type on the wire: the slot's RTX payload type, or the slot's media one.
    pub pt: u8,
    /// Sequence number on the wire: the slot's RTX counter, or the slot sequence number.
    pub seq: u16,
    /// The slot's rewritten timestamp.
    pub ts: u32,
    /// SSRC on the wire: the slot's RTX SSRC, or the slot SSRC.
    pub ssrc: u32,
    /// The slot sequence number to put in front of the payload (RTX), or `None` (plain).
    pub osn: Option<u16>,
}

/// Writes a receiver's retransmission of the cached packet `original` into `out`: a
/// fresh 12-byte header with `fields` and the original marker bit, the OSN if any, then
/// the original payload and padding. Returns the length.
pub fn write_retransmission(
    out: &mut [u8],
    original: &[u8],
    fields: &RetransmissionFields,
) -> Result<usize, RtxError> {
    write_retransmission_with(out, original, fields, &[])
}

/// [`write_retransmission`] with the receiver's header extensions `(id, value)` in an
/// RFC 8285 block after the fixed header; the OSN, as RFC 4588 section 4 puts it,
/// starts the payload after that block.
pub fn write_retransmission_with(
    out: &mut [u8],
    original: &[u8],
    fields: &RetransmissionFields,
    extensions: &[(u8, &[u8])],
) -> Result<usize, RtxError> {
    let h = RtpHeader::parse(original)?;
    let body = original
        .get(h.header_len..h.packet_len)
        .ok_or(RtxError::Rtp(RtpError::TooShort))?;
    if fields.pt > 0x7F {
        return Err(RtxError::Rtp(RtpError::InvalidPayloadType(fields.pt)));
    }
    let ext_len = write_extension_block(
        out.get_mut(rtp::FIXED_HEADER_LEN..)
            .ok_or(RtxError::BufferTooSmall)?,
        extensions,
    )
    .ok_or(RtxError::BufferTooSmall)?;
    let osn_len = if fields.osn.is_some() { OSN_LEN } else { 0 };
    let at = rtp::FIXED_HEADER_LEN + ext_len;
    let len = at + osn_len + body.len();
    let dst = out.get_mut(..len).ok_or(RtxError::BufferTooSmall)?;
    let padding = if h.padding_len > 0 { 0x20 } else { 0 };
    let x = if ext_len > 0 { 0x10 } else { 0 };
    dst[0] = 0x80 | padding | x;
    dst[1] = (u8::from(h.marker) << 7) | fields.pt;
    dst[2..4].copy_from_slice(&fields.seq.to_be_bytes());
    dst[4..8].copy_from_slice(&fields.ts.to_be_bytes());
    dst[8..12].copy_from_slice(&fields.ssrc.to_be_bytes());
    if let Some(osn) = fields.osn {
        dst[at..at + OSN_LEN].copy_from_slice(&osn.to_be_bytes());
    }
    dst[at + osn_len..].copy_from_slice(body);
    Ok(len)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An original VP8 packet by hand: V=2, X=1, CC=1, M=1, PT=96, seq 0xFFFE,
    /// ts 0x01020304, SSRC 0x11223344, CSRC 0xC5C5C5C5, one-byte extension block with
    /// id 1 (abs-send-time, 3 bytes), payload "VP8!", no padding.
    const ORIGINAL: [u8; 32] = [
        0x91, 0xE0, 0xFF, 0xFE, 0x01, 0x02, 0x03, 0x04, 0x11, 0x22, 0x33, 0x44, 0xC5, 0xC5, 0xC5,
        0xC5, 0xBE, 0xDE, 0x00, 0x01, 0x12, 0xAA, 0xBB, 0xCC, b'V', b'P', b'8', b'!', 0, 0, 0, 0,
    ];

    /// Its RTX form on PT 97, SSRC 0x55667788, RTX seq 0x0007: the OSN 0xFFFE goes
    /// between the extension block and the payload (RFC 4588 section 4, figure 2).
    const RTX: [u8; 34] = [
        0x91, 0xE1, 0x00, 0x07, 0x01, 0x02, 0x03, 0x04, 0x55, 0x66, 0x77, 0x88, 0xC5, 0xC5, 0xC5,
        0xC5, 0xBE, 0xDE, 0x00, 0x01, 0x12, 0xAA, 0xBB, 0xCC, 0xFF, 0xFE, b'V', b'P', b'8', b'!',
        0, 0, 0, 0,
    ];

    #[test]
    fn wraps_a_packet_into_rfc4588_form() {
        let mut buf = [0u8; 64];
        buf[..32].copy_from_slice(&ORIGINAL);
        let n = wrap_in_place(&mut buf, 32, 97, 0x5566_7788, 7).unwrap();
        assert_eq!(&buf[..n], &RTX);
        // No room for the OSN: refused, nothing half-written.
        let mut tight = ORIGINAL;
        assert_eq!(
            wrap_in_place(&mut tight, 32, 97, 1, 1),
            Err(RtxError::BufferTooSmall)
        );
        assert_eq!(tight, ORIGINAL);
    }

    #[test]
    fn unwraps_an_rtx_packet_back_to_the_original() {
        let mut buf = RTX;
        let u = unwrap_in_place(&mut buf, 96, 0x1122_3344).unwrap();
        assert_eq!(
            u,
            Unwrapped::Original {
                len: 32,
                seq: 0xFFFE
            }
        );
        assert_eq!(&buf[..32], &ORIGINAL);
        // Round trip over many sequence numbers, with padding kept intact.
        for seq in [0u16, 1, 0x7FFF, 0x8000, 0xFFFF] {
            let mut p = [0u8; 40];
            p[..12].copy_from_slice(&[0xA0, 96, 0, 0, 0, 0, 0, 9, 0, 0, 0, 5]);
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p[12..16].copy_from_slice(b"data");
            p[19] = 4; // 4 padding bytes (16..20), count in the last one
            let original: Vec<u8> = p[..20].to_vec();
            let n = wrap_in_place(&mut p, 20, 101, 77, seq.wrapping_add(9)).unwrap();
            assert_eq!(n, 22);
            let h = RtpHeader::parse(&p[..n]).unwrap();
            assert_eq!(h.padding_len, 4);
            assert_eq!(h.payload(&p[..n]).unwrap()[..2], seq.to_be_bytes());
            let u = unwrap_in_place(&mut p[..n], 96, 5).unwrap();
            assert_eq!(u, Unwrapped::Original { len: 20, seq });
            assert_eq!(&p[..20], &original[..]);
        }
    }

    #[test]
    fn padding_only_rtx_is_a_probe() {
        // Header, then 200 padding bytes (P bit, count 200 in the last byte): a probe.
        let mut p = vec![0xA0, 97, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        p.resize(12 + 200, 0);
        *p.last_mut().unwrap() = 200;
        assert_eq!(unwrap_in_place(&mut p, 96, 5).unwrap(), Unwrapped::Padding);
        // One payload byte: no OSN, malformed.
        let mut p = vec![0x80, 97, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0xAB];
        assert_eq!(unwrap_in_place(&mut p, 96, 5), Err(RtxError::MissingOsn));
        // Not RTP at all.
        assert!(matches!(
            unwrap_in_place(&mut [0x80, 97, 0], 96, 5),
            Err(RtxError::Rtp(RtpError::TooShort))
        ));
    }

    /// A slot's RTX fields: PT 101, RTX seq 40, OSN (slot seq) 500.
    const SLOT_RTX: RetransmissionFields = RetransmissionFields {
        pt: 101,
        seq: 40,
        ts: 0xA0B0_C0D0,
        ssrc: 0xDEAD_0001,
        osn: Some(500),
    };

    #[test]
    fn a_retransmission_with_the_receivers_extensions_puts_the_osn_after_their_block() {
        let mut out = [0u8; 64];
        let rtx = SLOT_RTX;
        // The receiver's mid (id 1, "0") and transport-wide number (id 5, 0x1234).
        let n =
            write_retransmission_with(&mut out, &ORIGINAL, &rtx, &[(1, b"0"), (5, &[0x12, 0x34])])
                .unwrap();
        assert_eq!(
            &out[..n],
            &[
                0x90,
                0x80 | 101,
                0,
                40,
                0xA0,
                0xB0,
                0xC0,
                0xD0,
                0xDE,
                0xAD,
                0,
                1,
                // One-byte extension block, 2 words: (1, "0"), (5, 0x1234), padding.
                0xBE,
                0xDE,
                0,
                2,
                0x10,
                b'0',
                0x51,
                0x12,
                0x34,
                0,
                0,
                0,
                // RFC 4588 section 4: the OSN starts the payload.
                0x01,
                0xF4,
                b'V',
                b'P',
                b'8',
                b'!',
                0,
                0,
                0,
                0
            ]
        );
        let h = RtpHeader::parse(&out[..n]).unwrap();
        assert_eq!(h.extension_value(&out[..n], 5), Some(&[0x12, 0x34][..]));
        assert_eq!(h.extension_value(&out[..n], 1), Some(&b"0"[..]));
        // The receiver's side of RTX restores the original payload from it.
        let u = unwrap_in_place(&mut out[..n], 96, 0x1122_3344).unwrap();
        let Unwrapped::Original { len, seq } = u else {
            panic!("{u:?}")
        };
        assert_eq!(seq, 500);
        let restored = RtpHeader::parse(&out[..len]).unwrap();
        assert_eq!(restored.payload(&out[..len]).unwrap(), b"VP8!\0\0\0\0");
        // Too small for the block: refused, nothing half-written counted.
        assert_eq!(
            write_retransmission_with(&mut out[..20], &ORIGINAL, &rtx, &[(5, &[0x12, 0x34])]),
            Err(RtxError::BufferTooSmall)
        );
    }

    #[test]
    fn writes_plain_and_rtx_retransmissions_for_a_slot() {
        let mut out = [0u8; 64];
        let rtx = SLOT_RTX;
        let n = write_retransmission(&mut out, &ORIGINAL, &rtx).unwrap();
        assert_eq!(
            &out[..n],
            &[
                0x80,
                0x80 | 101,
                0,
                40,
                0xA0,
                0xB0,
                0xC0,
                0xD0,
                0xDE,
                0xAD,
                0,
                1,
                0x01,
                0xF4,
                b'V',
                b'P',
                b'8',
                b'!',
                0,
                0,
                0,
                0
            ]
        );
        // The receiver unwraps it into the slot's packet 500.
        let u = unwrap_in_place(&mut out[..n], 100, 0xDEAD_0000).unwrap();
        assert_eq!(u, Unwrapped::Original { len: 20, seq: 500 });
        let h = RtpHeader::parse(&out[..20]).unwrap();
        assert_eq!(
            (h.payload_type, h.sequence_number, h.ssrc, h.marker),
            (100, 500, 0xDEAD_0000, true)
        );
        // Plain: slot fields, no OSN.
        let plain = RetransmissionFields {
            pt: 100,
            seq: 500,
            osn: None,
            ssrc: 0xDEAD_0000,
            ..rtx
        };
        let n = write_retransmission(&mut out, &ORIGINAL, &plain).unwrap();
        assert_eq!(n, 20);
        assert_eq!(&out[12..20], b"VP8!\0\0\0\0");
        assert_eq!(
            write_retransmission(&mut out[..21], &ORIGINAL, &rtx),
            Err(RtxError::BufferTooSmall)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x0123_4567_89AB_CDEFu64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut buf = [0u8; 80];
        for _ in 0..50_000 {
            let len = (next() % 64) as usize;
            for b in buf.iter_mut().take(len) {
                *b = next() as u8;
            }
            if len > 0 && next() % 2 == 0 {
                buf[0] = (buf[0] & 0x3F) | 0x80;
            }
            let mut copy = buf;
            if let Ok(Unwrapped::Original { len: n, .. }) = unwrap_in_place(&mut copy[..len], 96, 1)
            {
                assert_eq!(n + OSN_LEN, len);
                assert!(RtpHeader::parse(&copy[..n]).is_ok());
            }
            let mut copy = buf;
            if let Ok(n) = wrap_in_place(&mut copy, len, 97, 2, 3) {
                assert_eq!(n, len + OSN_LEN);
            }
            let mut out = [0u8; 80];
            let fields = RetransmissionFields {
                pt: 100,
                seq: 1,
                ts: 2,
                ssrc: 3,
                osn: Some(4),
            };
            let _ = write_retransmission(&mut out, &buf[..len], &fields);
        }
    }
}
