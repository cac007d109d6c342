//! Writing a receiver's copy of a forwarded RTP packet: a fresh header with the
//! slot's payload type, sequence number, timestamp and SSRC, the header
//! extensions the receiver negotiated (with the receiver's ids), then the
//! original payload and padding, byte for byte.

use super::super::rtp::RtpHeader;
use super::super::rtp_ext::{Extension, ExtensionMap, ExtensionSet, write_extension_block};

/// The slot's header fields for one forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotFields {
    /// The receiver's payload type.
    pub pt: u8,
    /// Rewritten sequence number.
    pub seq: u16,
    /// Rewritten timestamp.
    pub ts: u32,
    /// The slot's SSRC.
    pub ssrc: u32,
}

/// Extension values a forwarded packet may carry; each is written only when the
/// receiver's m-line negotiated it and its transport has an id for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtensionValues<'a> {
    /// The receiver's mid for this slot.
    pub mid: Option<&'a [u8]>,
    /// The sender's audio level byte (RFC 6464), copied as it came.
    pub audio_level: Option<&'a [u8]>,
    /// abs-send-time of this send.
    pub abs_send_time: Option<[u8; 3]>,
    /// The receiver transport's transport-wide sequence number.
    pub twcc_seq: Option<u16>,
}

/// Writes the receiver's copy of `packet` into `out` and returns its length, or
/// `None` if `out` is too small. CSRCs and the sender's extensions are not
/// copied: their ids were negotiated with the sender, not with this receiver.
pub fn write_forwarded(
    out: &mut [u8],
    packet: &[u8],
    header: &RtpHeader,
    slot: SlotFields,
    negotiated: ExtensionSet,
    ids: &ExtensionMap,
    values: &ExtensionValues<'_>,
) -> Option<usize> {
    let body = packet.get(header.header_len..header.packet_len)?;
    let padded = header.padding_len > 0;
    write_forwarded_body(
        out,
        header.marker,
        body,
        padded,
        slot,
        negotiated,
        ids,
        values,
    )
}

/// The `(id, value)` elements of an extension block for a receiver: each
/// candidate that has a value, was negotiated on the receiver's m-line and has
/// an id on its transport, in the candidates' order; and how many there are.
pub fn negotiated_elements<'a, const N: usize>(
    candidates: [(Extension, Option<&'a [u8]>); N],
    negotiated: ExtensionSet,
    ids: &ExtensionMap,
) -> ([(u8, &'a [u8]); N], usize) {
    let mut elements: [(u8, &[u8]); N] = [(0, &[]); N];
    let mut n = 0;
    for (e, value) in candidates {
        if let (true, Some(id), Some(v)) = (negotiated.contains(e), ids.id(e), value) {
            elements[n] = (id, v);
            n += 1;
        }
    }
    (elements, n)
}

/// [`write_forwarded`] with the payload given: `body` (payload and padding, with
/// `padded` saying whether it ends in RTP padding) follows the fresh header. The
/// router gives a RED packet's primary encoding here for receivers without RED.
#[allow(clippy::too_many_arguments)]
pub fn write_forwarded_body(
    out: &mut [u8],
    marker: bool,
    body: &[u8],
    padded: bool,
    slot: SlotFields,
    negotiated: ExtensionSet,
    ids: &ExtensionMap,
    values: &ExtensionValues<'_>,
) -> Option<usize> {
    let twcc = values.twcc_seq.map(u16::to_be_bytes);
    let abs = values.abs_send_time;
    let candidates: [(Extension, Option<&[u8]>); 4] = [
        (Extension::Mid, values.mid),
        (Extension::AudioLevel, values.audio_level),
        (Extension::AbsSendTime, abs.as_ref().map(|v| &v[..])),
        (Extension::TransportCc, twcc.as_ref().map(|v| &v[..])),
    ];
    let (elements, n) = negotiated_elements(candidates, negotiated, ids);
    let ext_len = write_extension_block(out.get_mut(12..)?, &elements[..n])?;
    let len = 12 + ext_len + body.len();
    let dst = out.get_mut(..len)?;
    let padding = if padded { 0x20 } else { 0 };
    let x = if ext_len > 0 { 0x10 } else { 0 };
    dst[0] = 0x80 | padding | x;
    dst[1] = (u8::from(marker) << 7) | (slot.pt & 0x7F);
    dst[2..4].copy_from_slice(&slot.seq.to_be_bytes());
    dst[4..8].copy_from_slice(&slot.ts.to_be_bytes());
    dst[8..12].copy_from_slice(&slot.ssrc.to_be_bytes());
    dst[12 + ext_len..].copy_from_slice(body);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT: SlotFields = SlotFields {
        pt: 100,
        seq: 500,
        ts: 600,
        ssrc: 0xDEAD_BEEF,
    };

    fn sender_packet() -> Vec<u8> {
        // V=2, X=1, CC=1, M=1 PT=96, seq 7, ts 9, ssrc 0x11, one CSRC, one-byte ext block.
        let mut pkt = vec![0x91, 0xE0, 0, 7, 0, 0, 0, 9, 0, 0, 0, 0x11, 0, 0, 0, 0x22];
        pkt.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0]);
        pkt.extend_from_slice(b"payload");
        pkt
    }

    #[test]
    fn forwarded_copy_has_slot_fields_and_no_sender_extensions() {
        let pkt = sender_packet();
        let header = RtpHeader::parse(&pkt).expect("valid packet");
        let mut out = [0u8; 64];
        let ids = ExtensionMap::default();
        let n = write_forwarded(
            &mut out,
            &pkt,
            &header,
            SLOT,
            ExtensionSet::EMPTY,
            &ids,
            &ExtensionValues::default(),
        )
        .expect("fits");
        let copy = RtpHeader::parse(&out[..n]).expect("copy parses");
        assert_eq!(copy.payload_type, 100);
        assert!(copy.marker);
        assert_eq!(copy.sequence_number, 500);
        assert_eq!(copy.timestamp, 600);
        assert_eq!(copy.ssrc, 0xDEAD_BEEF);
        assert_eq!(copy.csrc_count, 0);
        assert!(copy.extension.is_none());
        assert_eq!(copy.payload(&out[..n]), Some(&b"payload"[..]));
        let none = ExtensionValues::default();
        assert_eq!(
            write_forwarded(
                &mut out[..10],
                &pkt,
                &header,
                SLOT,
                ExtensionSet::EMPTY,
                &ids,
                &none
            ),
            None
        );
    }

    #[test]
    fn receiver_ids_are_used_for_negotiated_extensions_only() {
        let mut pkt = sender_packet();
        // Padding: 3 bytes, count byte last.
        pkt[0] |= 0x20;
        pkt.extend_from_slice(&[0, 0, 3]);
        let header = RtpHeader::parse(&pkt).expect("valid packet");
        let mut ids = ExtensionMap::default();
        ids.set(Extension::Mid, 9);
        ids.set(Extension::AudioLevel, 4);
        ids.set(Extension::AbsSendTime, 2);
        ids.set(Extension::TransportCc, 17); // two-byte id
        let mut negotiated = ExtensionSet::EMPTY;
        for e in [
            Extension::Mid,
            Extension::AudioLevel,
            Extension::AbsSendTime,
            Extension::TransportCc,
        ] {
            negotiated.insert(e);
        }
        let values = ExtensionValues {
            mid: Some(b"3"),
            audio_level: Some(&[0x85]),
            abs_send_time: Some([1, 2, 3]),
            twcc_seq: Some(0xABCD),
        };
        let mut out = [0u8; 128];
        let n = write_forwarded(&mut out, &pkt, &header, SLOT, negotiated, &ids, &values)
            .expect("fits");
        let copy = RtpHeader::parse(&out[..n]).expect("copy parses");
        let p = &out[..n];
        assert_eq!(copy.mid(p, 9), Some(&b"3"[..]));
        assert_eq!(copy.extension_value(p, 4), Some(&[0x85][..]));
        assert_eq!(copy.extension_value(p, 2), Some(&[1, 2, 3][..]));
        assert_eq!(copy.extension_value(p, 17), Some(&[0xAB, 0xCD][..]));
        assert_eq!(
            copy.extension_value(p, 1),
            None,
            "the sender's id 1 is gone"
        );
        // Payload and padding byte-identical.
        assert_eq!(&p[copy.header_len..], &pkt[header.header_len..]);
        assert_eq!(copy.padding_len, 3);

        // Only mid negotiated on this m-line: the others are left out.
        let mut only_mid = ExtensionSet::EMPTY;
        only_mid.insert(Extension::Mid);
        let n =
            write_forwarded(&mut out, &pkt, &header, SLOT, only_mid, &ids, &values).expect("fits");
        let copy = RtpHeader::parse(&out[..n]).expect("copy parses");
        assert_eq!(copy.extensions(&out[..n]).count(), 1);
        assert_eq!(
            &out[..2],
            &[0x90 | 0x20, 0x80 | 100],
            "one-byte form, X and P set"
        );
    }
}
