//! STUN messages (RFC 5389/8489) as an ICE-lite agent needs them (RFC 8445 attributes).
//!
//! [`Message::parse`] borrows the datagram and validates its framing once, so the accessors
//! afterwards cannot fail. The writers (`write_*`) fill a buffer the caller owns and return
//! the number of bytes written. Nothing in this module allocates.
//!
//! Per RFC 5389 section 15.4, attributes that follow MESSAGE-INTEGRITY are ignored by every
//! accessor, except FINGERPRINT.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aws_lc_rs::{constant_time, hmac};

/// The magic cookie every RFC 5389 message carries at bytes 4..8.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Length of the fixed STUN header.
pub const HEADER_LEN: usize = 20;

/// Length of a MESSAGE-INTEGRITY (HMAC-SHA1) value.
pub const INTEGRITY_LEN: usize = 20;

/// The value FINGERPRINT's CRC-32 is XOR-ed with (RFC 5389 section 15.5).
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Attribute header plus HMAC-SHA1 value.
const INTEGRITY_ATTR_LEN: usize = 4 + INTEGRITY_LEN;

/// Attribute header plus CRC-32 value.
const FINGERPRINT_ATTR_LEN: usize = 4 + 4;

/// RFC 8489 section 14.3: USERNAME is less than 513 bytes.
const MAX_USERNAME_LEN: usize = 512;

/// RFC 8489 section 14.8: the reason phrase is at most 763 bytes.
const MAX_REASON_LEN: usize = 763;

/// Error code 400: the request was malformed.
pub const ERROR_BAD_REQUEST: u16 = 400;
/// Error code 401: the request lacked valid credentials (sent without MESSAGE-INTEGRITY).
pub const ERROR_UNAUTHORIZED: u16 = 401;
/// Error code 420: the request carried a comprehension-required attribute we do not know.
pub const ERROR_UNKNOWN_ATTRIBUTE: u16 = 420;
/// Error code 487: ICE role conflict (RFC 8445 section 7.3.1.1).
pub const ERROR_ROLE_CONFLICT: u16 = 487;

/// Attribute types (IANA "STUN Attributes" registry) that this module knows by name.
pub mod attr {
    /// MAPPED-ADDRESS (RFC 5389).
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME (RFC 5389).
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY, HMAC-SHA1 (RFC 5389).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE (RFC 5389).
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES (RFC 5389).
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// REALM (RFC 5389).
    pub const REALM: u16 = 0x0014;
    /// NONCE (RFC 5389).
    pub const NONCE: u16 = 0x0015;
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489).
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// XOR-MAPPED-ADDRESS (RFC 5389).
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PRIORITY (RFC 8445).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (RFC 8445).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// SOFTWARE (RFC 5389).
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT (RFC 5389).
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (RFC 8445).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (RFC 8445).
    pub const ICE_CONTROLLING: u16 = 0x802A;
}

/// Why a STUN message could not be parsed or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    /// The datagram is shorter than the 20-byte header.
    #[error("STUN message shorter than its 20-byte header")]
    TooShort,
    /// The leading bits are not zero or the magic cookie is wrong.
    #[error("not a STUN message (leading bits or magic cookie)")]
    NotStun,
    /// The length field is not a multiple of 4 or disagrees with the datagram size.
    #[error("STUN length field {declared} does not match the {actual}-byte body")]
    BadLength {
        /// The header's message length.
        declared: u16,
        /// Bytes actually following the header.
        actual: usize,
    },
    /// An attribute's declared length runs past the end of the message.
    #[error("STUN attribute {attr_type:#06x} overruns the message")]
    AttributeOverrun {
        /// The offending attribute's type.
        attr_type: u16,
    },
    /// A known attribute has a value of the wrong size or content.
    #[error("STUN attribute {attr_type:#06x} has an invalid value")]
    BadAttribute {
        /// The offending attribute's type.
        attr_type: u16,
    },
    /// FINGERPRINT is not the last attribute.
    #[error("STUN FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    /// The caller's output buffer cannot hold the message (API misuse).
    #[error("output buffer too small for the STUN message")]
    BufferTooSmall,
    /// A value given to a writer is longer than the protocol allows (API misuse).
    #[error("value too long for a STUN attribute")]
    ValueTooLong,
    /// An error code outside 300..=699 was given to a writer (API misuse).
    #[error("invalid STUN error code {0}")]
    InvalidErrorCode(u16),
}

/// The class of a STUN message (RFC 5389 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request (C1 C0 = 0b00).
    Request,
    /// An indication (0b01).
    Indication,
    /// A success response (0b10).
    SuccessResponse,
    /// An error response (0b11).
    ErrorResponse,
}

/// A STUN method (12 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    /// The Binding method, the only one ICE uses.
    pub const BINDING: Method = Method(0x001);
}

/// A STUN message type: class and method, packed as in RFC 5389 figure 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType {
    /// Request, indication or response.
    pub class: Class,
    /// The method (Binding for ICE).
    pub method: Method,
}

impl MessageType {
    /// A Binding request.
    pub const BINDING_REQUEST: MessageType = MessageType {
        class: Class::Request,
        method: Method::BINDING,
    };
    /// A Binding success response.
    pub const BINDING_SUCCESS: MessageType = MessageType {
        class: Class::SuccessResponse,
        method: Method::BINDING,
    };
    /// A Binding error response.
    pub const BINDING_ERROR: MessageType = MessageType {
        class: Class::ErrorResponse,
        method: Method::BINDING,
    };

    /// Decodes the 14 low bits of the header's first two bytes.
    pub fn from_u16(raw: u16) -> Self {
        let class = match ((raw >> 7) & 0b10) | ((raw >> 4) & 0b01) {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        };
        let method = (raw & 0x000F) | ((raw >> 1) & 0x0070) | ((raw >> 2) & 0x0F80);
        MessageType {
            class,
            method: Method(method),
        }
    }

    /// Encodes class and method into the header's type field.
    pub fn to_u16(self) -> u16 {
        let c: u16 = match self.class {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::SuccessResponse => 0b10,
            Class::ErrorResponse => 0b11,
        };
        let m = self.method.0;
        (m & 0x000F)
            | ((m & 0x0070) << 1)
            | ((m & 0x0F80) << 2)
            | ((c & 0b01) << 4)
            | ((c & 0b10) << 7)
    }
}

/// The 96-bit transaction id of a STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub [u8; 12]);

/// The ICE role a request claims, with its tie-breaker (RFC 8445 section 7.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceRole {
    /// ICE-CONTROLLING was present.
    Controlling {
        /// The sender's tie-breaker.
        tie_breaker: u64,
    },
    /// ICE-CONTROLLED was present.
    Controlled {
        /// The sender's tie-breaker.
        tie_breaker: u64,
    },
}

/// A parsed ERROR-CODE attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// The numeric code, 300..=699 (class * 100 + number).
    pub code: u16,
    /// The reason phrase as sent (should be UTF-8, not checked).
    pub reason: &'a [u8],
}

/// One attribute of a parsed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// The attribute type.
    pub attr_type: u16,
    /// The value, without padding.
    pub value: &'a [u8],
    /// Offset of the attribute header from the start of the message.
    pub offset: usize,
}

/// A precomputed HMAC-SHA1 key for MESSAGE-INTEGRITY.
///
/// For ICE short-term credentials the key is the ICE password (`a=ice-pwd`) as bytes.
/// Build it once per endpoint; checking and signing then do no key setup per packet.
#[derive(Clone)]
pub struct IntegrityKey(hmac::Key);

impl IntegrityKey {
    /// Prepares `key` for HMAC-SHA1.
    pub fn new(key: &[u8]) -> Self {
        IntegrityKey(hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key))
    }

    fn sign(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        for part in parts {
            ctx.update(part);
        }
        ctx.sign()
    }
}

impl fmt::Debug for IntegrityKey {
    // Key material stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IntegrityKey(..)")
    }
}

/// RFC 7983 demultiplexing plus the magic cookie: could `buf` be a STUN message?
///
/// Cheap enough to run on every datagram; [`Message::parse`] does the full validation.
pub fn is_stun(buf: &[u8]) -> bool {
    match buf.get(..8) {
        Some(&[b0, _, _, _, c0, c1, c2, c3]) => {
            b0 <= 3
                && buf.len() >= HEADER_LEN
                && u32::from_be_bytes([c0, c1, c2, c3]) == MAGIC_COOKIE
        }
        _ => false,
    }
}

/// Checks MESSAGE-INTEGRITY of the raw message `msg` with `key` (RFC 5389 section 15.4).
///
/// False if the message does not parse, has no MESSAGE-INTEGRITY or the HMAC differs.
/// Prefer [`Message::verify_integrity`] with a cached [`IntegrityKey`] on the packet path.
pub fn verify_integrity(msg: &[u8], key: &[u8]) -> bool {
    Message::parse(msg).is_ok_and(|m| m.verify_integrity(&IntegrityKey::new(key)))
}

/// Checks FINGERPRINT of the raw message `msg` (RFC 5389 section 15.5).
///
/// False if the message does not parse, has no FINGERPRINT or the CRC differs.
pub fn verify_fingerprint(msg: &[u8]) -> bool {
    Message::parse(msg).is_ok_and(|m| m.verify_fingerprint())
}

/// A validated STUN message borrowing its datagram.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    buf: &'a [u8],
    message_type: MessageType,
    transaction_id: TransactionId,
}

impl<'a> Message<'a> {
    /// Parses and validates `buf`, which must be exactly one STUN message.
    ///
    /// Checks the header, that the length field matches `buf`, that every attribute fits,
    /// that the attributes this module interprets have well-formed values, and that
    /// FINGERPRINT, if present, is last.
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        let header: &[u8; HEADER_LEN] = buf
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(StunError::TooShort)?;
        let raw_type = u16::from_be_bytes([header[0], header[1]]);
        let declared = u16::from_be_bytes([header[2], header[3]]);
        let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if raw_type & 0xC000 != 0 || cookie != MAGIC_COOKIE {
            return Err(StunError::NotStun);
        }
        let actual = buf.len() - HEADER_LEN;
        if !declared.is_multiple_of(4) || usize::from(declared) != actual {
            return Err(StunError::BadLength { declared, actual });
        }
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&header[8..]);
        let msg = Message {
            buf,
            message_type: MessageType::from_u16(raw_type),
            transaction_id: TransactionId(tid),
        };

        let mut pos = HEADER_LEN;
        let mut after_integrity = false;
        while let Some((a, next)) = read_attribute(buf, pos)? {
            if a.attr_type == attr::FINGERPRINT {
                if next != buf.len() {
                    return Err(StunError::FingerprintNotLast);
                }
                validate_value(&a)?;
            } else if !after_integrity {
                validate_value(&a)?;
            }
            if a.attr_type == attr::MESSAGE_INTEGRITY {
                after_integrity = true;
            }
            pos = next;
        }
        Ok(msg)
    }

    /// The raw message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Class and method.
    pub fn message_type(&self) -> MessageType {
        self.message_type
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        self.transaction_id
    }

    /// Is this a Binding request?
    pub fn is_binding_request(&self) -> bool {
        self.message_type == MessageType::BINDING_REQUEST
    }

    /// All attributes in order, including any after MESSAGE-INTEGRITY.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            buf: self.buf,
            pos: HEADER_LEN,
        }
    }

    /// The value of the first attribute of type `attr_type` that counts (not after
    /// MESSAGE-INTEGRITY, except FINGERPRINT).
    pub fn attribute(&self, attr_type: u16) -> Option<&'a [u8]> {
        self.find(attr_type).map(|a| a.value)
    }

    /// USERNAME, for ICE `remote-ufrag:local-ufrag` seen from the sender.
    pub fn username(&self) -> Option<&'a [u8]> {
        self.attribute(attr::USERNAME)
    }

    /// PRIORITY (RFC 8445 section 7.1.1).
    pub fn priority(&self) -> Option<u32> {
        self.attribute(attr::PRIORITY).and_then(be_u32)
    }

    /// Whether USE-CANDIDATE is present (the controlling agent nominates this pair).
    pub fn use_candidate(&self) -> bool {
        self.find(attr::USE_CANDIDATE).is_some()
    }

    /// ICE-CONTROLLING's tie-breaker.
    pub fn ice_controlling(&self) -> Option<u64> {
        self.attribute(attr::ICE_CONTROLLING).and_then(be_u64)
    }

    /// ICE-CONTROLLED's tie-breaker.
    pub fn ice_controlled(&self) -> Option<u64> {
        self.attribute(attr::ICE_CONTROLLED).and_then(be_u64)
    }

    /// The role the sender claims; ICE-CONTROLLING wins if (wrongly) both are present.
    pub fn ice_role(&self) -> Option<IceRole> {
        if let Some(tie_breaker) = self.ice_controlling() {
            Some(IceRole::Controlling { tie_breaker })
        } else {
            self.ice_controlled()
                .map(|tie_breaker| IceRole::Controlled { tie_breaker })
        }
    }

    /// XOR-MAPPED-ADDRESS, decoded (IPv4 or IPv6).
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        let v = self.attribute(attr::XOR_MAPPED_ADDRESS)?;
        decode_xor_address(v, &self.transaction_id)
    }

    /// ERROR-CODE.
    pub fn error_code(&self) -> Option<ErrorCode<'a>> {
        let v = self.attribute(attr::ERROR_CODE)?;
        match v {
            [_, _, class, number, reason @ ..] => Some(ErrorCode {
                code: u16::from(class & 0x07) * 100 + u16::from(*number),
                reason,
            }),
            _ => None,
        }
    }

    /// The MESSAGE-INTEGRITY value (HMAC-SHA1).
    pub fn message_integrity(&self) -> Option<&'a [u8; INTEGRITY_LEN]> {
        self.attribute(attr::MESSAGE_INTEGRITY)
            .and_then(|v| v.try_into().ok())
    }

    /// The FINGERPRINT value as sent.
    pub fn fingerprint(&self) -> Option<u32> {
        self.attribute(attr::FINGERPRINT).and_then(be_u32)
    }

    /// Checks MESSAGE-INTEGRITY against `key` in constant time (RFC 5389 section 15.4):
    /// the HMAC covers the message up to MESSAGE-INTEGRITY, with the header's length
    /// field adjusted to end at it.
    pub fn verify_integrity(&self, key: &IntegrityKey) -> bool {
        let Some(mi) = self.find(attr::MESSAGE_INTEGRITY) else {
            return false;
        };
        let Some(covered) = self.buf.get(..mi.offset) else {
            return false;
        };
        let (Some(type_field), Some(rest)) = (covered.get(..2), covered.get(4..)) else {
            return false;
        };
        let Ok(len) = u16::try_from(mi.offset + INTEGRITY_ATTR_LEN - HEADER_LEN) else {
            return false;
        };
        let tag = key.sign(&[type_field, &len.to_be_bytes(), rest]);
        constant_time::verify_slices_are_equal(tag.as_ref(), mi.value).is_ok()
    }

    /// Checks FINGERPRINT: CRC-32 of everything before it, XOR 0x5354554e.
    pub fn verify_fingerprint(&self) -> bool {
        let Some(fp) = self.find(attr::FINGERPRINT) else {
            return false;
        };
        let (Some(covered), Some(sent)) = (self.buf.get(..fp.offset), be_u32(fp.value)) else {
            return false;
        };
        crc32fast::hash(covered) ^ FINGERPRINT_XOR == sent
    }

    fn find(&self, attr_type: u16) -> Option<Attribute<'a>> {
        let mut after_integrity = false;
        for a in self.attributes() {
            if a.attr_type == attr_type && (!after_integrity || attr_type == attr::FINGERPRINT) {
                return Some(a);
            }
            if a.attr_type == attr::MESSAGE_INTEGRITY {
                after_integrity = true;
            }
        }
        None
    }
}

/// Iterator over a parsed message's attributes, see [`Message::attributes`].
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Attribute<'a>> {
        match read_attribute(self.buf, self.pos) {
            Ok(Some((a, next))) => {
                self.pos = next;
                Some(a)
            }
            // Unreachable after `Message::parse`, but stop rather than loop or panic.
            Ok(None) | Err(_) => {
                self.pos = self.buf.len();
                None
            }
        }
    }
}

/// Reads the attribute whose header starts at `pos`; `None` at the end of the message.
/// Returns the attribute and the offset of the next one (after padding).
fn read_attribute(buf: &[u8], pos: usize) -> Result<Option<(Attribute<'_>, usize)>, StunError> {
    let Some(rest) = buf.get(pos..) else {
        return Ok(None);
    };
    let (attr_type, len) = match rest {
        [] => return Ok(None),
        [t0, t1, l0, l1, ..] => (
            u16::from_be_bytes([*t0, *t1]),
            usize::from(u16::from_be_bytes([*l0, *l1])),
        ),
        // A partial attribute header: the message length is a multiple of 4, so this only
        // happens with a corrupt message.
        [t0, t1, ..] => {
            return Err(StunError::AttributeOverrun {
                attr_type: u16::from_be_bytes([*t0, *t1]),
            });
        }
        [_] => return Err(StunError::AttributeOverrun { attr_type: 0 }),
    };
    let value = rest
        .get(4..4 + len)
        .ok_or(StunError::AttributeOverrun { attr_type })?;
    let next = (pos + 4 + padded(len)).min(buf.len());
    Ok(Some((
        Attribute {
            attr_type,
            value,
            offset: pos,
        },
        next,
    )))
}

fn validate_value(a: &Attribute<'_>) -> Result<(), StunError> {
    let ok = match a.attr_type {
        attr::MESSAGE_INTEGRITY => a.value.len() == INTEGRITY_LEN,
        attr::FINGERPRINT | attr::PRIORITY => a.value.len() == 4,
        attr::ICE_CONTROLLING | attr::ICE_CONTROLLED => a.value.len() == 8,
        attr::USE_CANDIDATE => a.value.is_empty(),
        attr::XOR_MAPPED_ADDRESS => {
            matches!(
                a.value,
                [_, 0x01, ..] if a.value.len() == 8
            ) || matches!(a.value, [_, 0x02, ..] if a.value.len() == 20)
        }
        attr::ERROR_CODE => {
            matches!(a.value, [_, _, class, number, ..] if (3..=6).contains(&(class & 0x07)) && *number < 100)
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(StunError::BadAttribute {
            attr_type: a.attr_type,
        })
    }
}

fn padded(len: usize) -> usize {
    (len + 3) & !3
}

fn be_u32(v: &[u8]) -> Option<u32> {
    v.try_into().ok().map(u32::from_be_bytes)
}

fn be_u64(v: &[u8]) -> Option<u64> {
    v.try_into().ok().map(u64::from_be_bytes)
}

/// The 16 bytes IPv6 addresses are XOR-ed with: magic cookie then transaction id.
fn xor_pad(tid: &TransactionId) -> [u8; 16] {
    let mut pad = [0u8; 16];
    pad[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    pad[4..].copy_from_slice(&tid.0);
    pad
}

fn decode_xor_address(v: &[u8], tid: &TransactionId) -> Option<SocketAddr> {
    let (family, xport, addr) = match v {
        [_, family, p0, p1, addr @ ..] => (*family, u16::from_be_bytes([*p0, *p1]), addr),
        _ => return None,
    };
    let port = xport ^ (MAGIC_COOKIE >> 16) as u16;
    let pad = xor_pad(tid);
    let ip = match family {
        0x01 => {
            let a: [u8; 4] = addr.try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(u32::from_be_bytes(a) ^ MAGIC_COOKIE))
        }
        0x02 => {
            let mut a: [u8; 16] = addr.try_into().ok()?;
            for (b, p) in a.iter_mut().zip(pad) {
                *b ^= p;
            }
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Encodes XOR-MAPPED-ADDRESS into `out`, returning the value length (8 or 20).
fn encode_xor_address(addr: SocketAddr, tid: &TransactionId, out: &mut [u8; 20]) -> usize {
    let xport = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    out[0] = 0;
    out[2..4].copy_from_slice(&xport.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = 0x01;
            out[4..8].copy_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
            8
        }
        IpAddr::V6(ip) => {
            out[1] = 0x02;
            let pad = xor_pad(tid);
            for ((o, a), p) in out[4..].iter_mut().zip(ip.octets()).zip(pad) {
                *o = a ^ p;
            }
            20
        }
    }
}

/// Serialises a message into a caller-owned buffer, attribute by attribute.
struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Writer<'b> {
    fn new(buf: &'b mut [u8], ty: MessageType, tid: &TransactionId) -> Result<Self, StunError> {
        let mut w = Writer { buf, len: 0 };
        w.put(&ty.to_u16().to_be_bytes())?;
        w.put(&[0, 0])?;
        w.put(&MAGIC_COOKIE.to_be_bytes())?;
        w.put(&tid.0)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), StunError> {
        let end = self.len + bytes.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(StunError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Writes an attribute whose value is the concatenation of `parts`, then zero padding.
    fn attr(&mut self, attr_type: u16, parts: &[&[u8]]) -> Result<(), StunError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len16 = u16::try_from(len).map_err(|_| StunError::ValueTooLong)?;
        self.put(&attr_type.to_be_bytes())?;
        self.put(&len16.to_be_bytes())?;
        for p in parts {
            self.put(p)?;
        }
        self.put(&[0u8; 3][..padded(len) - len])
    }

    /// Sets the header's length field as if the message ended `extra` bytes after `len`.
    fn set_length(&mut self, extra: usize) -> Result<(), StunError> {
        let body =
            u16::try_from(self.len + extra - HEADER_LEN).map_err(|_| StunError::ValueTooLong)?;
        self.buf
            .get_mut(2..4)
            .ok_or(StunError::BufferTooSmall)?
            .copy_from_slice(&body.to_be_bytes());
        Ok(())
    }

    fn integrity(&mut self, key: &IntegrityKey) -> Result<(), StunError> {
        self.set_length(INTEGRITY_ATTR_LEN)?;
        let tag = key.sign(&[self.buf.get(..self.len).ok_or(StunError::BufferTooSmall)?]);
        self.attr(attr::MESSAGE_INTEGRITY, &[tag.as_ref()])
    }

    fn fingerprint(&mut self) -> Result<(), StunError> {
        self.set_length(FINGERPRINT_ATTR_LEN)?;
        let covered = self.buf.get(..self.len).ok_or(StunError::BufferTooSmall)?;
        let crc = crc32fast::hash(covered) ^ FINGERPRINT_XOR;
        self.attr(attr::FINGERPRINT, &[&crc.to_be_bytes()])
    }

    fn finish(mut self) -> Result<usize, StunError> {
        self.set_length(0)?;
        Ok(self.len)
    }
}

/// Writes a Binding success response to the request with `tid`: XOR-MAPPED-ADDRESS of the
/// request's source `mapped`, MESSAGE-INTEGRITY with `key` (the local ICE password) and
/// FINGERPRINT. Returns the message length (64 bytes for IPv4, 76 for IPv6).
pub fn write_binding_success(
    buf: &mut [u8],
    tid: &TransactionId,
    mapped: SocketAddr,
    key: &IntegrityKey,
) -> Result<usize, StunError> {
    let mut w = Writer::new(buf, MessageType::BINDING_SUCCESS, tid)?;
    let mut xor = [0u8; 20];
    let n = encode_xor_address(mapped, tid, &mut xor);
    w.attr(attr::XOR_MAPPED_ADDRESS, &[&xor[..n]])?;
    w.integrity(key)?;
    w.fingerprint()?;
    w.finish()
}

/// Writes a Binding error response to the request with `tid`: ERROR-CODE `code` (300..=699,
/// e.g. [`ERROR_BAD_REQUEST`], [`ERROR_UNAUTHORIZED`], [`ERROR_ROLE_CONFLICT`]) with
/// `reason`, MESSAGE-INTEGRITY if `key` is given, and FINGERPRINT.
///
/// Pass no key when the request itself failed authentication (400 or 401, RFC 5389
/// section 10.1.2).
pub fn write_binding_error(
    buf: &mut [u8],
    tid: &TransactionId,
    code: u16,
    reason: &str,
    key: Option<&IntegrityKey>,
) -> Result<usize, StunError> {
    if !(300..=699).contains(&code) {
        return Err(StunError::InvalidErrorCode(code));
    }
    if reason.len() > MAX_REASON_LEN {
        return Err(StunError::ValueTooLong);
    }
    let mut w = Writer::new(buf, MessageType::BINDING_ERROR, tid)?;
    // `code` is at most 699, so both parts fit a byte.
    let head = [0, 0, (code / 100) as u8, (code % 100) as u8];
    w.attr(attr::ERROR_CODE, &[&head, reason.as_bytes()])?;
    if let Some(key) = key {
        w.integrity(key)?;
    }
    w.fingerprint()?;
    w.finish()
}

/// What goes into a Binding request (ICE connectivity check, RFC 8445 section 7.1).
#[derive(Debug, Clone, Copy)]
pub struct BindingRequest<'a> {
    /// A fresh random transaction id.
    pub transaction_id: TransactionId,
    /// `remote-ufrag:local-ufrag`.
    pub username: &'a [u8],
    /// The candidate priority the sender would give a peer-reflexive candidate.
    pub priority: u32,
    /// ICE-CONTROLLING or ICE-CONTROLLED with the tie-breaker.
    pub role: IceRole,
    /// Nominate the pair (only meaningful when controlling).
    pub use_candidate: bool,
}

/// Writes a Binding request (client side, for tests and the load-test harness): USERNAME,
/// the role attribute, PRIORITY, optional USE-CANDIDATE, MESSAGE-INTEGRITY with `key` (the
/// remote ICE password) and FINGERPRINT.
pub fn write_binding_request(
    buf: &mut [u8],
    req: &BindingRequest<'_>,
    key: &IntegrityKey,
) -> Result<usize, StunError> {
    if req.username.len() > MAX_USERNAME_LEN {
        return Err(StunError::ValueTooLong);
    }
    let mut w = Writer::new(buf, MessageType::BINDING_REQUEST, &req.transaction_id)?;
    w.attr(attr::USERNAME, &[req.username])?;
    match req.role {
        IceRole::Controlling { tie_breaker } => {
            w.attr(attr::ICE_CONTROLLING, &[&tie_breaker.to_be_bytes()])?
        }
        IceRole::Controlled { tie_breaker } => {
            w.attr(attr::ICE_CONTROLLED, &[&tie_breaker.to_be_bytes()])?
        }
    }
    w.attr(attr::PRIORITY, &[&req.priority.to_be_bytes()])?;
    if req.use_candidate {
        w.attr(attr::USE_CANDIDATE, &[])?;
    }
    w.integrity(key)?;
    w.fingerprint()?;
    w.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
    const RFC_TID: TransactionId = TransactionId([
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ]);

    /// RFC 5769 section 2.1: sample request (note the 0x20 padding after USERNAME).
    const REQ_2_1: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,
        0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,
        0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
        0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
        0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5,
        0x7a, 0x3b, 0xcf,
    ];

    /// RFC 5769 section 2.2: sample IPv4 response.
    const RESP_2_2: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1,
        0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
        0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00,
        0x04, 0xc0, 0x7d, 0x4c, 0x96,
    ];

    /// RFC 5769 section 2.3: sample IPv6 response.
    const RESP_2_3: [u8; 92] = [
        0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01,
        0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9,
        0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb,
        0x0b, 0x4c,
    ];

    /// RFC 5769 section 2.4: request with long-term authentication.
    const REQ_2_4: [u8; 116] = [
        0x00, 0x01, 0x00, 0x60, 0x21, 0x12, 0xa4, 0x42, 0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72,
        0xc0, 0x29, 0xda, 0x41, 0x2e, 0x00, 0x06, 0x00, 0x12, 0xe3, 0x83, 0x9e, 0xe3, 0x83, 0x88,
        0xe3, 0x83, 0xaa, 0xe3, 0x83, 0x83, 0xe3, 0x82, 0xaf, 0xe3, 0x82, 0xb9, 0x00, 0x00, 0x00,
        0x15, 0x00, 0x1c, 0x66, 0x2f, 0x2f, 0x34, 0x39, 0x39, 0x6b, 0x39, 0x35, 0x34, 0x64, 0x36,
        0x4f, 0x4c, 0x33, 0x34, 0x6f, 0x4c, 0x39, 0x46, 0x53, 0x54, 0x76, 0x79, 0x36, 0x34, 0x73,
        0x41, 0x00, 0x14, 0x00, 0x0b, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x6f, 0x72,
        0x67, 0x00, 0x00, 0x08, 0x00, 0x14, 0xf6, 0x70, 0x24, 0x65, 0x6d, 0xd6, 0x4a, 0x3e, 0x02,
        0xb8, 0xe0, 0x71, 0x2e, 0x85, 0xc9, 0xa2, 0x8c, 0xa8, 0x96, 0x66,
    ];

    #[test]
    fn rfc5769_sample_request() {
        let m = Message::parse(&REQ_2_1).unwrap();
        assert_eq!(m.message_type(), MessageType::BINDING_REQUEST);
        assert!(m.is_binding_request());
        assert_eq!(m.transaction_id(), RFC_TID);
        assert_eq!(m.attribute(attr::SOFTWARE), Some(&b"STUN test client"[..]));
        assert_eq!(m.username(), Some(&b"evtj:h6vY"[..]));
        assert_eq!(m.priority(), Some(0x6e00_01ff));
        assert_eq!(m.ice_controlled(), Some(0x932f_f9b1_5126_3b36));
        assert_eq!(m.ice_controlling(), None);
        assert_eq!(
            m.ice_role(),
            Some(IceRole::Controlled {
                tie_breaker: 0x932f_f9b1_5126_3b36
            })
        );
        assert!(!m.use_candidate());
        assert_eq!(m.fingerprint(), Some(0xe57a_3bcf));
        assert_eq!(
            m.message_integrity().unwrap()[..4],
            [0x9a, 0xea, 0xa7, 0x0c]
        );
        assert!(m.verify_integrity(&IntegrityKey::new(PASSWORD)));
        assert!(verify_integrity(&REQ_2_1, PASSWORD));
        assert!(!verify_integrity(&REQ_2_1, b"VOkJxbRl1RmTxUk/WvJxBT"));
        assert!(verify_fingerprint(&REQ_2_1));
        assert!(is_stun(&REQ_2_1));
        let types: Vec<u16> = m.attributes().map(|a| a.attr_type).collect();
        assert_eq!(
            types,
            [
                attr::SOFTWARE,
                attr::PRIORITY,
                attr::ICE_CONTROLLED,
                attr::USERNAME,
                attr::MESSAGE_INTEGRITY,
                attr::FINGERPRINT
            ]
        );
    }

    #[test]
    fn rfc5769_ipv4_response() {
        let m = Message::parse(&RESP_2_2).unwrap();
        assert_eq!(m.message_type(), MessageType::BINDING_SUCCESS);
        assert_eq!(m.transaction_id(), RFC_TID);
        assert_eq!(m.attribute(attr::SOFTWARE), Some(&b"test vector"[..]));
        assert_eq!(
            m.xor_mapped_address(),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        assert!(m.verify_integrity(&IntegrityKey::new(PASSWORD)));
        assert!(m.verify_fingerprint());
    }

    #[test]
    fn rfc5769_ipv6_response() {
        let m = Message::parse(&RESP_2_3).unwrap();
        assert_eq!(m.message_type(), MessageType::BINDING_SUCCESS);
        assert_eq!(
            m.xor_mapped_address(),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
        assert!(m.verify_integrity(&IntegrityKey::new(PASSWORD)));
        assert!(m.verify_fingerprint());
    }

    #[test]
    fn rfc5769_long_term_auth_request() {
        let m = Message::parse(&REQ_2_4).unwrap();
        assert_eq!(m.message_type(), MessageType::BINDING_REQUEST);
        assert_eq!(
            m.username(),
            Some("\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}".as_bytes())
        );
        assert_eq!(
            m.attribute(attr::NONCE),
            Some(&b"f//499k954d6OL34oL9FSTvy64sA"[..])
        );
        assert_eq!(m.attribute(attr::REALM), Some(&b"example.org"[..]));
        assert_eq!(m.fingerprint(), None);
        assert!(!m.verify_fingerprint());
        // Long-term key: MD5("\u{30DE}...\u{30B9}:example.org:TheMatrIX"), where
        // "TheMatrIX" is the RFC's password "The\u{AD}M\u{AA}tr\u{2168}" after SASLprep;
        // computed outside the test because aws-lc-rs offers no MD5.
        let key = [
            0xe8, 0xca, 0x7a, 0xd5, 0x9d, 0x5e, 0xb0, 0x51, 0x8e, 0x31, 0x29, 0x11, 0xd2, 0xda,
            0xb2, 0xa9,
        ];
        assert!(m.verify_integrity(&IntegrityKey::new(&key)));
    }

    #[test]
    fn message_type_codec_round_trips() {
        assert_eq!(MessageType::BINDING_REQUEST.to_u16(), 0x0001);
        assert_eq!(MessageType::BINDING_SUCCESS.to_u16(), 0x0101);
        assert_eq!(MessageType::BINDING_ERROR.to_u16(), 0x0111);
        assert_eq!(
            MessageType::from_u16(0x0011),
            MessageType {
                class: Class::Indication,
                method: Method::BINDING
            }
        );
        for raw in 0..0x4000u16 {
            assert_eq!(MessageType::from_u16(raw).to_u16(), raw);
        }
    }

    #[test]
    fn integrity_ignores_attributes_after_it_except_fingerprint() {
        // Insert an unknown attribute after MESSAGE-INTEGRITY, before FINGERPRINT: the MI
        // must still verify (its length adjustment ends at MI) and the attribute must be
        // invisible to accessors.
        let mut buf = [0u8; 120];
        buf[..REQ_2_1.len() - 8].copy_from_slice(&REQ_2_1[..REQ_2_1.len() - 8]);
        let mut len = REQ_2_1.len() - 8;
        buf[len..len + 8].copy_from_slice(&[0x00, 0x06, 0x00, 0x03, b'x', b'y', b'z', 0]);
        len += 8;
        buf[2..4].copy_from_slice(&((len + 8 - HEADER_LEN) as u16).to_be_bytes());
        let crc = crc32fast::hash(&buf[..len]) ^ FINGERPRINT_XOR;
        buf[len..len + 4].copy_from_slice(&[0x80, 0x28, 0x00, 0x04]);
        buf[len + 4..len + 8].copy_from_slice(&crc.to_be_bytes());
        len += 8;
        let m = Message::parse(&buf[..len]).unwrap();
        assert!(m.verify_integrity(&IntegrityKey::new(PASSWORD)));
        assert!(m.verify_fingerprint());
        assert_eq!(m.username(), Some(&b"evtj:h6vY"[..]));
        assert_eq!(m.attributes().count(), 7);
    }

    #[test]
    fn binding_success_round_trips() {
        let key = IntegrityKey::new(b"local-ice-password");
        for addr in ["203.0.113.9:61000", "[2001:db8::1]:9"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut buf = [0u8; 128];
            let n = write_binding_success(&mut buf, &RFC_TID, addr, &key).unwrap();
            assert_eq!(n, if addr.is_ipv4() { 64 } else { 76 });
            let m = Message::parse(&buf[..n]).unwrap();
            assert_eq!(m.message_type(), MessageType::BINDING_SUCCESS);
            assert_eq!(m.transaction_id(), RFC_TID);
            assert_eq!(m.xor_mapped_address(), Some(addr));
            assert!(m.verify_integrity(&key));
            assert!(!m.verify_integrity(&IntegrityKey::new(b"other")));
            assert!(m.verify_fingerprint());
            assert!(is_stun(&buf[..n]));
            // Every shorter buffer is refused, none panics.
            for short in 0..n {
                assert_eq!(
                    write_binding_success(&mut buf[..short], &RFC_TID, addr, &key),
                    Err(StunError::BufferTooSmall)
                );
            }
        }
    }

    #[test]
    fn binding_error_round_trips() {
        let key = IntegrityKey::new(b"pw");
        let mut buf = [0u8; 128];
        let n = write_binding_error(&mut buf, &RFC_TID, ERROR_UNAUTHORIZED, "Unauthorized", None)
            .unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.message_type(), MessageType::BINDING_ERROR);
        assert_eq!(
            m.error_code(),
            Some(ErrorCode {
                code: 401,
                reason: b"Unauthorized"
            })
        );
        assert!(m.message_integrity().is_none());
        assert!(m.verify_fingerprint());

        let n = write_binding_error(
            &mut buf,
            &RFC_TID,
            ERROR_ROLE_CONFLICT,
            "Role Conflict",
            Some(&key),
        )
        .unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.error_code().unwrap().code, 487);
        assert_eq!(m.error_code().unwrap().reason, b"Role Conflict");
        assert!(m.verify_integrity(&key));
        assert!(m.verify_fingerprint());

        let n = write_binding_error(&mut buf, &RFC_TID, ERROR_BAD_REQUEST, "", None).unwrap();
        assert_eq!(
            Message::parse(&buf[..n])
                .unwrap()
                .error_code()
                .unwrap()
                .code,
            400
        );

        assert_eq!(
            write_binding_error(&mut buf, &RFC_TID, 200, "OK", None),
            Err(StunError::InvalidErrorCode(200))
        );
        let long = "x".repeat(MAX_REASON_LEN + 1);
        assert_eq!(
            write_binding_error(&mut [0u8; 2048], &RFC_TID, 400, &long, None),
            Err(StunError::ValueTooLong)
        );
    }

    #[test]
    fn binding_request_round_trips() {
        let key = IntegrityKey::new(b"remote-ice-password");
        let mut buf = [0u8; 256];
        for (role, nominate) in [
            (
                IceRole::Controlling {
                    tie_breaker: 0x0123_4567_89ab_cdef,
                },
                true,
            ),
            (IceRole::Controlled { tie_breaker: 42 }, false),
        ] {
            let req = BindingRequest {
                transaction_id: TransactionId([7; 12]),
                username: b"bridgeufrag:clientufrag",
                priority: 0x6e00_01ff,
                role,
                use_candidate: nominate,
            };
            let n = write_binding_request(&mut buf, &req, &key).unwrap();
            let m = Message::parse(&buf[..n]).unwrap();
            assert!(m.is_binding_request());
            assert_eq!(m.transaction_id(), req.transaction_id);
            assert_eq!(m.username(), Some(&b"bridgeufrag:clientufrag"[..]));
            assert_eq!(m.priority(), Some(0x6e00_01ff));
            assert_eq!(m.ice_role(), Some(role));
            assert_eq!(m.use_candidate(), nominate);
            assert!(m.verify_integrity(&key));
            assert!(verify_integrity(&buf[..n], b"remote-ice-password"));
            assert!(verify_fingerprint(&buf[..n]));
        }
        let long = [b'u'; MAX_USERNAME_LEN + 1];
        let req = BindingRequest {
            transaction_id: TransactionId([0; 12]),
            username: &long,
            priority: 1,
            role: IceRole::Controlling { tie_breaker: 1 },
            use_candidate: false,
        };
        assert_eq!(
            write_binding_request(&mut [0u8; 1024], &req, &key),
            Err(StunError::ValueTooLong)
        );
    }

    #[test]
    fn tampering_breaks_integrity_and_fingerprint() {
        let key = IntegrityKey::new(PASSWORD);
        // Flip each bit covered by the HMAC (skipping the length field, which changes
        // framing) and check that the MI no longer verifies.
        let mi_offset = REQ_2_1.len() - 8 - INTEGRITY_ATTR_LEN;
        for i in (0..mi_offset).filter(|i| !(2..4).contains(i)) {
            let mut b = REQ_2_1;
            b[i] ^= 0x01;
            if let Ok(m) = Message::parse(&b) {
                assert!(!m.verify_integrity(&key), "byte {i}");
                assert!(!m.verify_fingerprint(), "byte {i}");
            }
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(Message::parse(&[]).unwrap_err(), StunError::TooShort);
        assert_eq!(
            Message::parse(&REQ_2_1[..19]).unwrap_err(),
            StunError::TooShort
        );
        // Truncated body: length field disagrees.
        assert!(matches!(
            Message::parse(&REQ_2_1[..100]),
            Err(StunError::BadLength {
                declared: 0x58,
                actual: 80
            })
        ));
        // Length not a multiple of four.
        let mut b = REQ_2_1;
        b[3] = 0x57;
        assert!(matches!(
            Message::parse(&b),
            Err(StunError::BadLength { .. })
        ));
        // Leading bits and cookie.
        let mut b = REQ_2_1;
        b[0] = 0x40;
        assert_eq!(Message::parse(&b).unwrap_err(), StunError::NotStun);
        assert!(!is_stun(&b));
        let mut b = REQ_2_1;
        b[7] = 0x43;
        assert_eq!(Message::parse(&b).unwrap_err(), StunError::NotStun);
        assert!(!is_stun(&b));
        // SOFTWARE claims more bytes than the message has.
        let mut b = REQ_2_1;
        b[22..24].copy_from_slice(&0x0100u16.to_be_bytes());
        assert_eq!(
            Message::parse(&b).unwrap_err(),
            StunError::AttributeOverrun {
                attr_type: attr::SOFTWARE
            }
        );
        // PRIORITY with a 3-byte value.
        let mut b = REQ_2_1;
        b[43] = 3;
        assert_eq!(
            Message::parse(&b).unwrap_err(),
            StunError::BadAttribute {
                attr_type: attr::PRIORITY
            }
        );
        // FINGERPRINT not last: swap the order by declaring MI as FINGERPRINT.
        let mut b = REQ_2_1;
        b[76..80].copy_from_slice(&[0x80, 0x28, 0x00, 0x04]);
        assert_eq!(
            Message::parse(&b).unwrap_err(),
            StunError::FingerprintNotLast
        );
        // XOR-MAPPED-ADDRESS with an unknown family.
        let mut b = RESP_2_2;
        b[41] = 0x03;
        assert_eq!(
            Message::parse(&b).unwrap_err(),
            StunError::BadAttribute {
                attr_type: attr::XOR_MAPPED_ADDRESS
            }
        );
        // Header only, no attributes: valid, but nothing to verify.
        let mut b = [0u8; 20];
        b[..20].copy_from_slice(&REQ_2_1[..20]);
        b[3] = 0;
        let m = Message::parse(&b).unwrap();
        assert!(!m.verify_integrity(&IntegrityKey::new(PASSWORD)));
        assert!(!m.verify_fingerprint());
        assert!(!is_stun(&b[..19]));
        assert!(!verify_integrity(&b[..7], PASSWORD));
    }

    /// xorshift64*, deterministic and dependency-free.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    fn exercise(buf: &[u8], key: &IntegrityKey) {
        let _ = is_stun(buf);
        let _ = verify_fingerprint(buf);
        if let Ok(m) = Message::parse(buf) {
            let _ = m.verify_integrity(key);
            let _ = (m.username(), m.priority(), m.use_candidate(), m.ice_role());
            let _ = (
                m.xor_mapped_address(),
                m.error_code(),
                m.message_integrity(),
            );
            let _ = (m.fingerprint(), m.attributes().count());
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let key = IntegrityKey::new(PASSWORD);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut buf = [0u8; 160];
        for _ in 0..20_000 {
            let len = (rng.next() % 160) as usize;
            for b in buf.iter_mut().take(len) {
                *b = rng.next() as u8;
            }
            // Give half the inputs a valid header so the attribute walk gets exercised.
            if len >= 20 && rng.next().is_multiple_of(2) {
                buf[0] &= 0x3F;
                buf[2..4].copy_from_slice(&((len as u16 - 20) & !3).to_be_bytes());
                buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                let len = 20 + ((len - 20) & !3);
                exercise(&buf[..len], &key);
            } else {
                exercise(&buf[..len], &key);
            }
        }
        // Mutations of valid messages reach the deeper checks.
        for base in [&REQ_2_1[..], &RESP_2_2[..], &RESP_2_3[..], &REQ_2_4[..]] {
            for _ in 0..5_000 {
                let mut b = [0u8; 128];
                b[..base.len()].copy_from_slice(base);
                for _ in 0..=(rng.next() % 4) {
                    let i = (rng.next() as usize) % base.len();
                    b[i] = rng.next() as u8;
                }
                let len = if rng.next().is_multiple_of(4) {
                    (rng.next() as usize) % (base.len() + 1)
                } else {
                    base.len()
                };
                exercise(&b[..len], &key);
            }
        }
    }
}
