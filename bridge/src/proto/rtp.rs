//! RTP (RFC 3550): header parsing and in-place rewriting, header extensions (RFC 8285)
//! for audio level (RFC 6464) and MID (RFC 8843), extended sequence numbers and
//! timestamps. Codec payloads (VP8's descriptor) are in `codec`, writing extension
//! blocks in `rtp_ext`.
//!
//! [`RtpHeader::parse`] returns plain values and offsets rather than borrowing, so a
//! consumer can parse, then rewrite the same buffer in place with [`set_ssrc`],
//! [`set_sequence`], [`set_timestamp`] and [`set_payload_type`]. Nothing here allocates.

use core::ops::Range;

/// Length of the fixed RTP header, without CSRCs or extension.
pub const FIXED_HEADER_LEN: usize = 12;

/// The "defined by profile" value of a one-byte header extension block (RFC 8285).
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;

/// A two-byte header extension block has profile `0x100X` (RFC 8285 section 4.3).
const TWO_BYTE_PROFILE_MASK: u16 = 0xFFF0;
const TWO_BYTE_PROFILE: u16 = 0x1000;

/// Why an RTP packet or payload descriptor could not be parsed or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("RTP packet shorter than its fixed header")]
    TooShort,
    /// The version field is not 2.
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    /// The CSRC list or the header extension runs past the end of the packet.
    #[error("RTP CSRC list or header extension overruns the packet")]
    HeaderOverrun,
    /// The padding count is zero or larger than the payload.
    #[error("RTP padding length is invalid")]
    BadPadding,
    /// The VP8 payload descriptor, or the VP8 header it announces, is truncated.
    #[error("VP8 payload descriptor truncated")]
    Vp8Truncated,
    /// A payload type above 127 was given to a writer (API misuse).
    #[error("payload type {0} does not fit 7 bits")]
    InvalidPayloadType(u8),
}

/// The header extension block of a packet (RFC 3550 section 5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionBlock {
    /// The 16-bit "defined by profile" field: 0xBEDE or 0x100X for RFC 8285.
    pub profile: u16,
    /// Offset of the extension data (after its 4-byte header) in the packet.
    pub offset: usize,
    /// Length of the extension data in bytes (a multiple of 4).
    pub len: usize,
}

impl ExtensionBlock {
    /// Where the extension data lies in the packet.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// A parsed RTP header: field values and the offsets of the variable parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// The marker bit.
    pub marker: bool,
    /// The 7-bit payload type.
    pub payload_type: u8,
    /// The sequence number.
    pub sequence_number: u16,
    /// The RTP timestamp.
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: u32,
    /// Number of CSRCs (0..=15).
    pub csrc_count: u8,
    /// The header extension, if the X bit is set.
    pub extension: Option<ExtensionBlock>,
    /// Bytes before the payload: fixed header, CSRCs and extension.
    pub header_len: usize,
    /// Padding bytes at the end, including the count byte; 0 without the P bit.
    pub padding_len: usize,
    /// Length of the whole packet the header was parsed from.
    pub packet_len: usize,
}

impl RtpHeader {
    /// Parses the header of the RTP packet `buf` (the whole packet, after SRTP unprotect).
    pub fn parse(buf: &[u8]) -> Result<Self, RtpError> {
        let fixed: &[u8; FIXED_HEADER_LEN] = buf.first_chunk().ok_or(RtpError::TooShort)?;
        let version = fixed[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = fixed[0] & 0x20 != 0;
        let has_extension = fixed[0] & 0x10 != 0;
        let csrc_count = fixed[0] & 0x0F;
        let mut header_len = FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
        if header_len > buf.len() {
            return Err(RtpError::HeaderOverrun);
        }
        let extension = if has_extension {
            let ext: &[u8; 4] = buf
                .get(header_len..)
                .and_then(|b| b.first_chunk())
                .ok_or(RtpError::HeaderOverrun)?;
            let profile = u16::from_be_bytes([ext[0], ext[1]]);
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            let start = header_len + 4;
            let end = start + 4 * words;
            if end > buf.len() {
                return Err(RtpError::HeaderOverrun);
            }
            header_len = end;
            Some(ExtensionBlock {
                profile,
                offset: start,
                len: end - start,
            })
        } else {
            None
        };
        let padding_len = if has_padding {
            let count = usize::from(*buf.last().ok_or(RtpError::TooShort)?);
            if count == 0 || header_len + count > buf.len() {
                return Err(RtpError::BadPadding);
            }
            count
        } else {
            0
        };
        Ok(RtpHeader {
            marker: fixed[1] & 0x80 != 0,
            payload_type: fixed[1] & 0x7F,
            sequence_number: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
            csrc_count,
            extension,
            header_len,
            padding_len,
            packet_len: buf.len(),
        })
    }

    /// Where the payload lies in the packet (between the header and the padding).
    pub fn payload_range(&self) -> Range<usize> {
        self.header_len..self.packet_len.saturating_sub(self.padding_len)
    }

    /// The payload of `buf`, which must be the packet this header was parsed from.
    pub fn payload<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        buf.get(self.payload_range())
    }

    /// The CSRCs of `buf`, which must be the packet this header was parsed from.
    pub fn csrcs<'a>(&self, buf: &'a [u8]) -> impl Iterator<Item = u32> + 'a {
        let end = FIXED_HEADER_LEN + 4 * usize::from(self.csrc_count);
        buf.get(FIXED_HEADER_LEN..end)
            .unwrap_or_default()
            .chunks_exact(4)
            .filter_map(|c| c.try_into().ok().map(u32::from_be_bytes))
    }

    /// The RFC 8285 extension elements of `buf` (empty if there is no extension block or
    /// its profile is neither one-byte nor two-byte).
    pub fn extensions<'a>(&self, buf: &'a [u8]) -> HeaderExtensions<'a> {
        let (data, form) = match &self.extension {
            Some(ext) if ext.profile == ONE_BYTE_PROFILE => (buf.get(ext.range()), Form::OneByte),
            Some(ext) if ext.profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE => {
                (buf.get(ext.range()), Form::TwoByte)
            }
            _ => (None, Form::OneByte),
        };
        HeaderExtensions {
            data: data.unwrap_or_default(),
            form,
        }
    }

    /// The value of the first extension element with `id` (as negotiated by `a=extmap`).
    pub fn extension_value<'a>(&self, buf: &'a [u8], id: u8) -> Option<&'a [u8]> {
        self.extensions(buf).find(|e| e.id == id).map(|e| e.data)
    }

    /// The ssrc-audio-level value (RFC 6464) carried with extension `id`.
    pub fn audio_level(&self, buf: &[u8], id: u8) -> Option<AudioLevel> {
        AudioLevel::parse(self.extension_value(buf, id)?)
    }

    /// The MID (RFC 8843 `urn:ietf:params:rtp-hdrext:sdes:mid`) carried with extension `id`.
    pub fn mid<'a>(&self, buf: &'a [u8], id: u8) -> Option<&'a [u8]> {
        self.extension_value(buf, id).filter(|v| !v.is_empty())
    }
}

/// An RFC 6464 client-to-mixer audio level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// The V bit: the sender's voice activity detection thinks this is speech.
    pub voice_activity: bool,
    /// The level in -dBov, 0 (loudest) to 127 (silence).
    pub level: u8,
}

impl AudioLevel {
    /// The level of silence, and of a muted source: -127 dBov (RFC 6464 section 3).
    pub const SILENCE: u8 = 127;

    /// The level in an extension element's value (its first byte: the V bit and
    /// 7 bits of -dBov); `None` for an empty value. Either form of RFC 8285 works:
    /// the two-byte form may pad the value, the byte after it is ignored.
    pub fn parse(value: &[u8]) -> Option<AudioLevel> {
        let &b = value.first()?;
        Some(AudioLevel {
            voice_activity: b & 0x80 != 0,
            level: b & 0x7F,
        })
    }

    /// Whether this is the level of silence (RFC 6464: 127, -127 dBov).
    pub fn is_silence(self) -> bool {
        self.level == Self::SILENCE
    }
}

/// One RFC 8285 header extension element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderExtension<'a> {
    /// The local identifier from `a=extmap`.
    pub id: u8,
    /// The element's data.
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    OneByte,
    TwoByte,
}

/// Iterator over the elements of an RFC 8285 extension block. A malformed element (its
/// length running past the block) ends the iteration.
#[derive(Debug, Clone)]
pub struct HeaderExtensions<'a> {
    data: &'a [u8],
    form: Form,
}

impl<'a> Iterator for HeaderExtensions<'a> {
    type Item = HeaderExtension<'a>;

    fn next(&mut self) -> Option<HeaderExtension<'a>> {
        loop {
            let (&first, rest) = self.data.split_first()?;
            // Id 0 is a padding byte in both forms.
            if first == 0 {
                self.data = rest;
                continue;
            }
            let (id, len, rest) = match self.form {
                Form::OneByte => {
                    let id = first >> 4;
                    // Id 15 means "stop processing" (RFC 8285 section 4.2).
                    if id == 15 {
                        self.data = &[];
                        return None;
                    }
                    (id, usize::from(first & 0x0F) + 1, rest)
                }
                Form::TwoByte => {
                    let Some((&len, rest)) = rest.split_first() else {
                        self.data = &[];
                        return None;
                    };
                    (first, usize::from(len), rest)
                }
            };
            let Some((data, rest)) = rest.split_at_checked(len) else {
                self.data = &[];
                return None;
            };
            self.data = rest;
            return Some(HeaderExtension { id, data });
        }
    }
}

fn field<const N: usize>(buf: &mut [u8], at: usize) -> Result<&mut [u8; N], RtpError> {
    buf.get_mut(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or(RtpError::TooShort)
}

/// Overwrites the SSRC of the RTP packet in `buf`.
pub fn set_ssrc(buf: &mut [u8], ssrc: u32) -> Result<(), RtpError> {
    *field::<4>(buf, 8)? = ssrc.to_be_bytes();
    Ok(())
}

/// Overwrites the sequence number of the RTP packet in `buf`.
pub fn set_sequence(buf: &mut [u8], sequence_number: u16) -> Result<(), RtpError> {
    *field::<2>(buf, 2)? = sequence_number.to_be_bytes();
    Ok(())
}

/// Overwrites the timestamp of the RTP packet in `buf`.
pub fn set_timestamp(buf: &mut [u8], timestamp: u32) -> Result<(), RtpError> {
    *field::<4>(buf, 4)? = timestamp.to_be_bytes();
    Ok(())
}

/// Overwrites the payload type of the RTP packet in `buf`, keeping the marker bit.
pub fn set_payload_type(buf: &mut [u8], payload_type: u8) -> Result<(), RtpError> {
    if payload_type > 0x7F {
        return Err(RtpError::InvalidPayloadType(payload_type));
    }
    let [b] = field::<1>(buf, 1)?;
    *b = (*b & 0x80) | payload_type;
    Ok(())
}

/// Sets or clears the marker bit of the RTP packet in `buf`.
pub fn set_marker(buf: &mut [u8], marker: bool) -> Result<(), RtpError> {
    let [b] = field::<1>(buf, 1)?;
    *b = (*b & 0x7F) | if marker { 0x80 } else { 0 };
    Ok(())
}

/// Extends wrapping `BITS`-bit counters to `u64`, relative to the highest value seen.
fn extend(highest: &mut Option<u64>, value: u64, bits: u32) -> u64 {
    let modulus = 1u64 << bits;
    let ext = match *highest {
        // Start in cycle 1 so that values reordered to just before the first one still
        // get a smaller extended number instead of going below zero.
        None => modulus + value,
        Some(h) => {
            let forward = value.wrapping_sub(h) & (modulus - 1);
            if forward < modulus / 2 {
                h + forward
            } else {
                h.saturating_sub(modulus - forward)
            }
        }
    };
    if highest.is_none_or(|h| ext > h) {
        *highest = Some(ext);
    }
    ext
}

/// Extends 16-bit RTP sequence numbers to 64 bits across wraps and reordering.
///
/// Each value is placed within half the sequence space (32768) of the highest one seen.
/// Extended numbers are monotonic in the sender's order but start in cycle 1 (the first
/// value `s` maps to `65536 + s`), so compare and subtract them; do not put them on the
/// wire as they are (see `rtcp::ReceiveStats` for the RFC 3550 extended highest sequence).
#[derive(Debug, Clone, Default)]
pub struct SeqUnwrapper {
    highest: Option<u64>,
}

impl SeqUnwrapper {
    /// An unwrapper that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The extended value of `seq`; updates the highest value seen.
    pub fn extend(&mut self, seq: u16) -> u64 {
        extend(&mut self.highest, u64::from(seq), 16)
    }

    /// The highest extended value returned so far.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

/// Extends 32-bit RTP timestamps to 64 bits; same rules as [`SeqUnwrapper`] with half the
/// 32-bit space as the reordering window (the first value `t` maps to `2^32 + t`).
#[derive(Debug, Clone, Default)]
pub struct TimestampUnwrapper {
    highest: Option<u64>,
}

impl TimestampUnwrapper {
    /// An unwrapper that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The extended value of `timestamp`; updates the highest value seen.
    pub fn extend(&mut self, timestamp: u32) -> u64 {
        extend(&mut self.highest, u64::from(timestamp), 32)
    }

    /// The highest extended value returned so far.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

/// The VP8 payload descriptor now lives with the codec code.
pub use super::codec::vp8::Vp8Descriptor;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Builds an RTP packet: fixed header, `csrcs`, optional extension block, payload and
    /// `padding` bytes (last one holding the count).
    #[allow(clippy::too_many_arguments)]
    fn packet(
        marker: bool,
        pt: u8,
        seq: u16,
        ts: u32,
        ssrc: u32,
        csrcs: &[u32],
        ext: Option<(u16, &[u8])>,
        payload: &[u8],
        padding: u8,
    ) -> Vec<u8> {
        let mut p = vec![
            0x80 | if padding > 0 { 0x20 } else { 0 }
                | if ext.is_some() { 0x10 } else { 0 }
                | csrcs.len() as u8,
            (if marker { 0x80 } else { 0 }) | pt,
        ];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        for c in csrcs {
            p.extend_from_slice(&c.to_be_bytes());
        }
        if let Some((profile, data)) = ext {
            assert_eq!(data.len() % 4, 0);
            p.extend_from_slice(&profile.to_be_bytes());
            p.extend_from_slice(&((data.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(data);
        }
        p.extend_from_slice(payload);
        if padding > 0 {
            p.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
            p.push(padding);
        }
        p
    }

    #[test]
    fn parses_plain_header() {
        let p = packet(
            true,
            111,
            0xBEEF,
            0xDEAD_BEEF,
            0x1234_5678,
            &[],
            None,
            b"opus",
            0,
        );
        let h = RtpHeader::parse(&p).unwrap();
        assert!(h.marker);
        assert_eq!(h.payload_type, 111);
        assert_eq!(h.sequence_number, 0xBEEF);
        assert_eq!(h.timestamp, 0xDEAD_BEEF);
        assert_eq!(h.ssrc, 0x1234_5678);
        assert_eq!(h.csrc_count, 0);
        assert_eq!(h.extension, None);
        assert_eq!(h.header_len, 12);
        assert_eq!(h.padding_len, 0);
        assert_eq!(h.payload(&p), Some(&b"opus"[..]));
    }

    #[test]
    fn parses_csrcs_extension_and_padding() {
        let ext = [0x10, 0xAA, 0x21, 0x61, 0x62, 0x00, 0x00, 0x00];
        let p = packet(
            false,
            96,
            1,
            2,
            3,
            &[0xC1, 0xC2],
            Some((ONE_BYTE_PROFILE, &ext)),
            b"payload",
            4,
        );
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.csrc_count, 2);
        assert_eq!(h.csrcs(&p).collect::<Vec<_>>(), [0xC1, 0xC2]);
        assert_eq!(
            h.extension,
            Some(ExtensionBlock {
                profile: ONE_BYTE_PROFILE,
                offset: 24,
                len: 8,
            })
        );
        assert_eq!(h.header_len, 32);
        assert_eq!(h.padding_len, 4);
        assert_eq!(h.payload_range(), 32..39);
        assert_eq!(h.payload(&p), Some(&b"payload"[..]));
        let exts: Vec<_> = h.extensions(&p).collect();
        assert_eq!(
            exts,
            [
                HeaderExtension {
                    id: 1,
                    data: &[0xAA]
                },
                HeaderExtension { id: 2, data: b"ab" }
            ]
        );
        assert_eq!(
            h.audio_level(&p, 1),
            Some(AudioLevel {
                voice_activity: true,
                level: 0x2A
            })
        );
        assert_eq!(h.mid(&p, 2), Some(&b"ab"[..]));
        assert_eq!(h.mid(&p, 3), None);
    }

    #[test]
    fn one_byte_extension_padding_and_stop() {
        // padding byte, id 1 (1 byte), id 15 (stop), then bytes that must be ignored.
        let ext = [0x00, 0x10, 0x85, 0xF0, 0x20, 0x01, 0x00, 0x00];
        let p = packet(
            false,
            96,
            1,
            2,
            3,
            &[],
            Some((ONE_BYTE_PROFILE, &ext)),
            &[],
            0,
        );
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.extensions(&p).count(), 1);
        assert_eq!(
            h.audio_level(&p, 1),
            Some(AudioLevel {
                voice_activity: true,
                level: 5
            })
        );
        assert_eq!(h.extension_value(&p, 2), None);
        // An element claiming 16 bytes in a 4-byte block ends the iteration, no panic.
        let ext = [0x1F, 0x01, 0x02, 0x03];
        let p = packet(
            false,
            96,
            1,
            2,
            3,
            &[],
            Some((ONE_BYTE_PROFILE, &ext)),
            &[],
            0,
        );
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.extensions(&p).count(), 0);
    }

    /// RFC 6464 section 3: the level element in the one-byte form (`ID | len=0`,
    /// then `V | level`) and the two-byte form (`ID`, `len=1`, `V | level`, and
    /// a padding byte), as whole packets; the silence value 127.
    #[test]
    fn rfc6464_audio_level_vectors() {
        // One-byte form: ID 1, len 0; V=1, level 33 (-33 dBov); one element
        // padded to a 32-bit word. Opus payload byte 0xFC.
        let one_byte: [u8; 21] = [
            0x90, 0x6F, 0x12, 0x34, // V=2, X=1; PT 111; seq 0x1234
            0x00, 0x00, 0x03, 0xC0, // timestamp 960
            0xDE, 0xAD, 0xBE, 0xEF, // SSRC
            0xBE, 0xDE, 0x00, 0x01, // one-byte profile, 1 word
            0x10, 0xA1, 0x00, 0x00, // ID=1 len=0 | V=1 level=33 | padding
            0xFC,
        ];
        let h = RtpHeader::parse(&one_byte).expect("parses");
        assert_eq!(
            h.audio_level(&one_byte, 1),
            Some(AudioLevel {
                voice_activity: true,
                level: 33
            })
        );
        assert_eq!(h.payload(&one_byte), Some(&[0xFC][..]));
        // Two-byte form: ID 1, len 1; V=0, level 127 (silence); padding.
        let two_byte: [u8; 21] = [
            0x90, 0x6F, 0x12, 0x35, 0x00, 0x00, 0x07, 0x80, 0xDE, 0xAD, 0xBE, 0xEF, //
            0x10, 0x00, 0x00, 0x01, // two-byte profile, 1 word
            0x01, 0x01, 0x7F, 0x00, // ID=1 | len=1 | V=0 level=127 | padding
            0xFC,
        ];
        let h = RtpHeader::parse(&two_byte).expect("parses");
        let level = h.audio_level(&two_byte, 1).expect("level");
        assert_eq!(
            level,
            AudioLevel {
                voice_activity: false,
                level: 127
            }
        );
        assert!(level.is_silence());
        // The value alone: the V bit is the top bit, the level the low 7.
        assert_eq!(
            AudioLevel::parse(&[0xFF]),
            Some(AudioLevel {
                voice_activity: true,
                level: 127
            })
        );
        assert_eq!(
            AudioLevel::parse(&[0x00]).map(|l| l.is_silence()),
            Some(false)
        );
        assert_eq!(AudioLevel::parse(&[]), None);
    }

    #[test]
    fn two_byte_extensions() {
        // id 3 with 0 bytes, padding, id 4 "mid0", id 1 audio level.
        let ext = [3, 0, 0, 4, 4, b'm', b'i', b'd', b'0', 1, 1, 0x7F];
        let p = packet(false, 96, 1, 2, 3, &[], Some((0x1000, &ext)), &[], 0);
        let h = RtpHeader::parse(&p).unwrap();
        let exts: Vec<_> = h.extensions(&p).collect();
        assert_eq!(exts.len(), 3);
        assert_eq!(exts[0], HeaderExtension { id: 3, data: &[] });
        assert_eq!(h.mid(&p, 4), Some(&b"mid0"[..]));
        assert_eq!(
            h.audio_level(&p, 1),
            Some(AudioLevel {
                voice_activity: false,
                level: 127
            })
        );
        // Unknown profile: no elements.
        let p = packet(false, 96, 1, 2, 3, &[], Some((0xABCD, &ext)), &[], 0);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.extensions(&p).count(), 0);
        // Two-byte element overrunning the block.
        let ext = [5, 200, 0, 0];
        let p = packet(false, 96, 1, 2, 3, &[], Some((0x1001, &ext)), &[], 0);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.extensions(&p).count(), 0);
    }

    #[test]
    fn rewrites_in_place() {
        let mut p = packet(true, 100, 7, 8, 9, &[1], None, b"x", 0);
        set_ssrc(&mut p, 0xAABB_CCDD).unwrap();
        set_sequence(&mut p, 0xFFFF).unwrap();
        set_timestamp(&mut p, 0x0102_0304).unwrap();
        set_payload_type(&mut p, 96).unwrap();
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(
            (
                h.ssrc,
                h.sequence_number,
                h.timestamp,
                h.payload_type,
                h.marker
            ),
            (0xAABB_CCDD, 0xFFFF, 0x0102_0304, 96, true)
        );
        assert_eq!(h.csrcs(&p).collect::<Vec<_>>(), [1]);
        set_marker(&mut p, false).unwrap();
        let h = RtpHeader::parse(&p).unwrap();
        assert!(!h.marker);
        assert_eq!(h.payload_type, 96);
        assert_eq!(
            set_payload_type(&mut p, 128),
            Err(RtpError::InvalidPayloadType(128))
        );
        let mut short = [0x80u8; 11];
        assert_eq!(set_ssrc(&mut short, 1), Err(RtpError::TooShort));
        assert_eq!(set_sequence(&mut short[..3], 1), Err(RtpError::TooShort));
        assert_eq!(set_timestamp(&mut short[..7], 1), Err(RtpError::TooShort));
        assert_eq!(set_payload_type(&mut [], 1), Err(RtpError::TooShort));
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(RtpHeader::parse(&[]), Err(RtpError::TooShort));
        assert_eq!(RtpHeader::parse(&[0x80; 11]), Err(RtpError::TooShort));
        let mut p = packet(false, 96, 1, 2, 3, &[], None, b"abc", 0);
        p[0] = 0x40;
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::BadVersion(1)));
        // CSRC count larger than the packet.
        let mut p = packet(false, 96, 1, 2, 3, &[], None, b"abcd", 0);
        p[0] |= 0x02;
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::HeaderOverrun));
        // X bit set but no room for the extension header.
        let mut p = packet(false, 96, 1, 2, 3, &[], None, b"ab", 0);
        p[0] |= 0x10;
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::HeaderOverrun));
        // Extension length beyond the packet.
        let ext = [0u8; 4];
        let mut p = packet(
            false,
            96,
            1,
            2,
            3,
            &[],
            Some((ONE_BYTE_PROFILE, &ext)),
            &[],
            0,
        );
        p[15] = 2;
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::HeaderOverrun));
        // Padding count zero, and larger than the payload.
        let mut p = packet(false, 96, 1, 2, 3, &[], None, b"abc", 2);
        *p.last_mut().unwrap() = 0;
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::BadPadding));
        *p.last_mut().unwrap() = 6;
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::BadPadding));
        *p.last_mut().unwrap() = 5;
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.payload(&p), Some(&[][..]));
        // P bit on a bare 12-byte header: the count byte lies inside the header.
        let mut p = packet(false, 96, 1, 2, 3, &[], None, &[], 0);
        p[0] |= 0x20;
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::BadPadding));
    }

    #[test]
    fn seq_unwrapper_handles_wrap_and_reordering() {
        let mut u = SeqUnwrapper::new();
        let base = u.extend(65533);
        assert_eq!(base, 65536 + 65533);
        assert_eq!(u.extend(65535), base + 2);
        assert_eq!(u.extend(1), base + 4); // wrapped
        assert_eq!(u.extend(65534), base + 1); // late, from before the wrap
        assert_eq!(u.extend(0), base + 3);
        assert_eq!(u.highest(), Some(base + 4));
        assert_eq!(u.extend(65532), base - 1); // older than the first packet
        assert_eq!(u.extend(2), base + 5);
        // A jump forward of less than half the space is taken as a loss burst.
        assert_eq!(u.extend(2 + 30000), base + 30005);
        // Many cycles.
        let mut u = SeqUnwrapper::new();
        let first = u.extend(0);
        let mut last = first;
        for i in 1..=300_000u64 {
            last = u.extend((i % 65536) as u16);
        }
        assert_eq!(last - first, 300_000);
    }

    #[test]
    fn timestamp_unwrapper_handles_wrap() {
        let mut u = TimestampUnwrapper::new();
        let base = u.extend(u32::MAX - 1000);
        assert_eq!(u.extend(500), base + 1501);
        assert_eq!(u.extend(u32::MAX - 2000), base - 1000);
        assert_eq!(u.highest(), Some(base + 1501));
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x0123_4567_89AB_CDEF);
        let mut buf = [0u8; 96];
        for _ in 0..50_000 {
            let len = (rng.next() % 96) as usize;
            for b in buf.iter_mut().take(len) {
                *b = rng.next() as u8;
            }
            if len > 0 && rng.next().is_multiple_of(2) {
                buf[0] = (buf[0] & 0x3F) | 0x80;
            }
            let p = &buf[..len];
            if let Ok(h) = RtpHeader::parse(p) {
                assert!(h.header_len <= h.packet_len - h.padding_len);
                let _ = h.payload(p).unwrap();
                let _ = h.csrcs(p).count();
                let _ = h.extensions(p).count();
                let _ = (h.audio_level(p, 1), h.mid(p, 2));
                let _ = h.payload(p).map(Vp8Descriptor::parse);
            }
            let _ = Vp8Descriptor::parse(p);
        }
    }
}
