//! RTP header extensions (RFC 8285) the bridge reads or writes, the per-transport
//! map of their negotiated ids (str0m's `rtp/ext.rs` is the model), and a writer
//! of one-byte and two-byte extension blocks that allocates nothing.
//!
//! With BUNDLE every m-line of a transport shares one id space: one id means one
//! URI on the whole transport, so the map is per transport, while which extensions
//! a given m-line negotiated is an [`ExtensionSet`].

use super::rtp::ONE_BYTE_PROFILE;

/// An extension the bridge knows by URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Extension {
    /// `urn:ietf:params:rtp-hdrext:sdes:mid` (RFC 8843).
    Mid = 0,
    /// `urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id` (RFC 8852).
    Rid = 1,
    /// `urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id` (RFC 8852).
    RepairedRid = 2,
    /// `urn:ietf:params:rtp-hdrext:ssrc-audio-level` (RFC 6464).
    AudioLevel = 3,
    /// `http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time`.
    AbsSendTime = 4,
    /// `http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01`.
    TransportCc = 5,
}

impl Extension {
    /// Every known extension.
    pub const ALL: [Extension; 6] = [
        Extension::Mid,
        Extension::Rid,
        Extension::RepairedRid,
        Extension::AudioLevel,
        Extension::AbsSendTime,
        Extension::TransportCc,
    ];

    /// The extension's URI in `a=extmap`.
    pub fn uri(self) -> &'static str {
        match self {
            Extension::Mid => "urn:ietf:params:rtp-hdrext:sdes:mid",
            Extension::Rid => "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            Extension::RepairedRid => "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
            Extension::AudioLevel => "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            Extension::AbsSendTime => "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            Extension::TransportCc => {
                "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
            }
        }
    }

    /// The known extension with this URI.
    pub fn from_uri(uri: &str) -> Option<Extension> {
        Self::ALL.into_iter().find(|e| e.uri() == uri)
    }
}

/// A set of [`Extension`]s (what one m-line negotiated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionSet(u8);

impl ExtensionSet {
    /// The empty set.
    pub const EMPTY: ExtensionSet = ExtensionSet(0);

    /// Adds `e`.
    pub fn insert(&mut self, e: Extension) {
        self.0 |= 1 << (e as u8);
    }

    /// Whether `e` is in the set.
    pub fn contains(self, e: Extension) -> bool {
        self.0 & (1 << (e as u8)) != 0
    }
}

/// The ids of the known extensions on one transport (or one m-line of an offer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionMap {
    ids: [Option<u8>; 6],
}

impl ExtensionMap {
    /// The id of `e`, if negotiated.
    pub fn id(&self, e: Extension) -> Option<u8> {
        self.ids[e as usize]
    }

    /// Sets the id of `e`. Ids 1..=255 except 15 are valid (RFC 8285: 1-14 fit the
    /// one-byte form, the others need the two-byte form).
    pub fn set(&mut self, e: Extension, id: u8) {
        if id != 0 && id != 15 {
            self.ids[e as usize] = Some(id);
        }
    }

    /// Which extension `id` names.
    pub fn extension(&self, id: u8) -> Option<Extension> {
        Extension::ALL.into_iter().find(|&e| self.id(e) == Some(id))
    }

    /// Adds the ids of `other` that do not clash with this map (BUNDLE: the first
    /// m-line that names an extension, or uses an id, wins).
    pub fn merge(&mut self, other: &ExtensionMap) {
        for e in Extension::ALL {
            if let Some(id) = other.id(e)
                && self.id(e).is_none()
                && self.extension(id).is_none()
            {
                self.ids[e as usize] = Some(id);
            }
        }
    }

    /// The extensions with an id.
    pub fn set_of(&self) -> ExtensionSet {
        let mut s = ExtensionSet::EMPTY;
        for e in Extension::ALL {
            if self.id(e).is_some() {
                s.insert(e);
            }
        }
        s
    }
}

/// Writes an RFC 8285 extension block (4-byte block header, elements, zero
/// padding to a multiple of 4) into `out`, for the elements `(id, value)`.
///
/// The one-byte form (`0xBEDE`) is used when every id is 1..=14 and every value
/// 1..=16 bytes long, else the two-byte form (`0x1000`). Returns the block's
/// length, `Some(0)` when there is no element, or `None` when `out` is too small
/// or an element cannot be written (id 0 or 15 in one-byte, value over 255 bytes).
pub fn write_extension_block(out: &mut [u8], elements: &[(u8, &[u8])]) -> Option<usize> {
    if elements.is_empty() {
        return Some(0);
    }
    let one_byte = elements
        .iter()
        .all(|(id, v)| (1..=14).contains(id) && (1..=16).contains(&v.len()));
    let data_len: usize = elements
        .iter()
        .map(|(_, v)| v.len() + if one_byte { 1 } else { 2 })
        .sum();
    let padded = data_len.div_ceil(4) * 4;
    let total = 4 + padded;
    let words = u16::try_from(padded / 4).ok()?;
    let block = out.get_mut(..total)?;
    let profile: u16 = if one_byte { ONE_BYTE_PROFILE } else { 0x1000 };
    block[0..2].copy_from_slice(&profile.to_be_bytes());
    block[2..4].copy_from_slice(&words.to_be_bytes());
    let mut at = 4;
    for &(id, value) in elements {
        if id == 0 || (one_byte && id == 15) {
            return None;
        }
        if one_byte {
            // `one_byte` guarantees 1..=16 bytes, so len - 1 fits the 4-bit field.
            block[at] = (id << 4) | (value.len() as u8 - 1);
            at += 1;
        } else {
            block[at] = id;
            block[at + 1] = u8::try_from(value.len()).ok()?;
            at += 2;
        }
        block.get_mut(at..at + value.len())?.copy_from_slice(value);
        at += value.len();
    }
    block[at..].fill(0);
    Some(total)
}

/// The 24-bit abs-send-time value (6.18 fixed-point seconds, wrapping every 64 s)
/// for a send time `since` an arbitrary origin.
pub fn abs_send_time(since: std::time::Duration) -> [u8; 3] {
    // 64-bit arithmetic only (this runs per forwarded packet): whole seconds in
    // the top 6 bits, the fraction in the low 18.
    let frac = (u64::from(since.subsec_nanos()) << 18) / 1_000_000_000;
    let v = ((since.as_secs() << 18) | frac) as u32 & 0x00FF_FFFF;
    let b = v.to_be_bytes();
    [b[1], b[2], b[3]]
}

#[cfg(test)]
mod tests {
    use super::super::rtp::RtpHeader;
    use super::*;

    fn packet_with(block: &[u8]) -> Vec<u8> {
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(block);
        p.extend_from_slice(b"pay");
        p
    }

    #[test]
    fn one_byte_block_parses_back() {
        let mut out = [0xFFu8; 64];
        let n = write_extension_block(&mut out, &[(1, &[0x85]), (3, b"mid7"), (14, &[1, 2, 3])])
            .expect("fits");
        assert_eq!(n % 4, 0);
        assert_eq!(&out[..2], &[0xBE, 0xDE]);
        let p = packet_with(&out[..n]);
        let h = RtpHeader::parse(&p).expect("parses");
        assert_eq!(h.extension_value(&p, 1), Some(&[0x85][..]));
        assert_eq!(h.mid(&p, 3), Some(&b"mid7"[..]));
        assert_eq!(h.extension_value(&p, 14), Some(&[1, 2, 3][..]));
        assert_eq!(h.extensions(&p).count(), 3, "padding is not an element");
        assert_eq!(h.payload(&p), Some(&b"pay"[..]));
    }

    #[test]
    fn two_byte_block_when_an_id_or_a_value_needs_it() {
        let mut out = [0u8; 64];
        let long = [7u8; 17];
        let n = write_extension_block(&mut out, &[(1, &[0x85]), (2, &long)]).expect("fits");
        assert_eq!(&out[..2], &[0x10, 0x00]);
        let p = packet_with(&out[..n]);
        let h = RtpHeader::parse(&p).expect("parses");
        assert_eq!(h.extension_value(&p, 2), Some(&long[..]));
        assert_eq!(h.extension_value(&p, 1), Some(&[0x85][..]));
        let n = write_extension_block(&mut out, &[(200, b"x")]).expect("fits");
        let p = packet_with(&out[..n]);
        let h = RtpHeader::parse(&p).expect("parses");
        assert_eq!(h.extension_value(&p, 200), Some(&b"x"[..]));
    }

    #[test]
    fn writer_refuses_what_does_not_fit() {
        let mut out = [0u8; 7];
        assert_eq!(write_extension_block(&mut out, &[(1, &[1, 2, 3, 4])]), None);
        assert_eq!(write_extension_block(&mut out, &[]), Some(0));
        assert_eq!(write_extension_block(&mut [0u8; 64], &[(0, b"x")]), None);
    }

    #[test]
    fn map_merges_bundle_ids_first_wins() {
        let mut a = ExtensionMap::default();
        a.set(Extension::Mid, 1);
        let mut b = ExtensionMap::default();
        b.set(Extension::Mid, 9);
        b.set(Extension::AudioLevel, 1); // clashes with a's id 1: ignored
        b.set(Extension::AbsSendTime, 3);
        a.merge(&b);
        assert_eq!(a.id(Extension::Mid), Some(1));
        assert_eq!(a.id(Extension::AudioLevel), None);
        assert_eq!(a.id(Extension::AbsSendTime), Some(3));
        assert_eq!(a.extension(3), Some(Extension::AbsSendTime));
        assert_eq!(
            Extension::from_uri("urn:ietf:params:rtp-hdrext:sdes:mid"),
            Some(Extension::Mid)
        );
        let s = a.set_of();
        assert!(s.contains(Extension::Mid) && !s.contains(Extension::TransportCc));
    }

    #[test]
    fn abs_send_time_is_6_18_fixed_point() {
        use std::time::Duration;
        assert_eq!(abs_send_time(Duration::from_secs(1)), [0x04, 0x00, 0x00]);
        assert_eq!(
            abs_send_time(Duration::from_millis(500)),
            [0x02, 0x00, 0x00]
        );
        assert_eq!(abs_send_time(Duration::from_secs(64)), [0, 0, 0], "wraps");
        // 65.25 s: 1.25 s after the wrap = 0x050000.
        assert_eq!(
            abs_send_time(Duration::from_millis(65_250)),
            [0x05, 0x00, 0x00]
        );
        // One 2^-18 s step.
        assert_eq!(abs_send_time(Duration::from_nanos(3815)), [0, 0, 1]);
    }
}
