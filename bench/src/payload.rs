//! The bench's payload: what every synthetic RTP packet carries so that a
//! receiver can check it without any state shared with the sender.
//!
//! Layout (offsets in the RTP payload, big-endian):
//!
//! | bytes | what |
//! |---|---|
//! | 0..8 | codec prefix (the VP8 payload descriptor and frame tag, zero for audio), so the bridge sees real keyframes |
//! | 8..12 | stream id (publishing endpoint × 2 + 1 for video) |
//! | 12..16 | packet counter of the stream |
//! | 16..24 | send time, nanoseconds since the run's common `Instant` |
//! | 24..28 | CRC-32 of every other byte of the payload |
//! | 28.. | filler derived from the counter |

use std::fmt;

/// Where the bench's fields start (after the codec prefix).
pub const PREFIX_LEN: usize = 8;
/// The smallest payload that holds the bench's fields.
pub const MIN_LEN: usize = 28;

/// The VP8 prefix of the first packet of a keyframe: descriptor with S=1, frame
/// tag with P=0 and the keyframe start code (what the bridge's router detects).
pub const VP8_KEYFRAME_START: [u8; 7] = [0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a];
/// The VP8 prefix of the first packet of an inter frame (S=1, P=1).
pub const VP8_FRAME_START: [u8; 4] = [0x10, 0x01, 0x00, 0x00];
/// The VP8 prefix of the other packets of a frame (S=0).
pub const VP8_CONTINUATION: [u8; 1] = [0x00];

/// The fields the sender stamps into a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The stream: publishing endpoint × 2, + 1 for video.
    pub stream: u32,
    /// The stream's packet counter (starts at 0, +1 per packet).
    pub counter: u32,
    /// Send time in nanoseconds since the run's epoch.
    pub send_ns: u64,
}

/// Why a received payload is not one the bench sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    /// Shorter than [`MIN_LEN`].
    TooShort(usize),
    /// The checksum does not match: a byte changed on the way.
    Checksum {
        /// The CRC in the packet.
        stored: u32,
        /// The CRC of the bytes received.
        computed: u32,
    },
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(n) => write!(f, "payload of {n} bytes, at least {MIN_LEN} expected"),
            Self::Checksum { stored, computed } => {
                write!(f, "checksum {stored:08x} but bytes give {computed:08x}")
            }
        }
    }
}

impl std::error::Error for PayloadError {}

fn crc(payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&payload[..24]);
    h.update(&payload[MIN_LEN..]);
    h.finalize()
}

/// Fills `payload` (its whole length is the payload size, at least [`MIN_LEN`]):
/// `prefix` (at most [`PREFIX_LEN`] bytes, the rest of the prefix zeroed), the
/// stamp, the filler and the checksum.
///
/// # Panics
///
/// If `payload` is shorter than [`MIN_LEN`] or `prefix` longer than [`PREFIX_LEN`]:
/// both are the caller's constants, never network input.
pub fn write(payload: &mut [u8], prefix: &[u8], stamp: &Stamp) {
    assert!(payload.len() >= MIN_LEN && prefix.len() <= PREFIX_LEN);
    payload[..PREFIX_LEN].fill(0);
    payload[..prefix.len()].copy_from_slice(prefix);
    payload[8..12].copy_from_slice(&stamp.stream.to_be_bytes());
    payload[12..16].copy_from_slice(&stamp.counter.to_be_bytes());
    payload[16..24].copy_from_slice(&stamp.send_ns.to_be_bytes());
    let seed = stamp.counter.wrapping_mul(0x9E37_79B9);
    for (i, b) in payload[MIN_LEN..].iter_mut().enumerate() {
        *b = (seed >> ((i & 3) * 8)) as u8 ^ i as u8;
    }
    let sum = crc(payload);
    payload[24..28].copy_from_slice(&sum.to_be_bytes());
}

/// Checks a received payload and returns its stamp.
pub fn check(payload: &[u8]) -> Result<Stamp, PayloadError> {
    if payload.len() < MIN_LEN {
        return Err(PayloadError::TooShort(payload.len()));
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([
            payload[at],
            payload[at + 1],
            payload[at + 2],
            payload[at + 3],
        ])
    };
    let stored = be32(24);
    let computed = crc(payload);
    if stored != computed {
        return Err(PayloadError::Checksum { stored, computed });
    }
    let mut ns = [0u8; 8];
    ns.copy_from_slice(&payload[16..24]);
    Ok(Stamp {
        stream: be32(8),
        counter: be32(12),
        send_ns: u64::from_be_bytes(ns),
    })
}

/// Sequence continuity of one receive slot (one SSRC at one receiver): counts
/// the packets missing between those received and those that came late or
/// twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Continuity {
    last: Option<u16>,
    /// Sequence numbers skipped (lost, or late and counted in `late`).
    pub gaps: u64,
    /// Packets at or behind the highest sequence number seen (reordered or duplicated).
    pub late: u64,
    /// Packets received.
    pub received: u64,
}

impl Continuity {
    /// Takes the next received sequence number.
    pub fn push(&mut self, seq: u16) {
        self.received += 1;
        let Some(last) = self.last else {
            self.last = Some(seq);
            return;
        };
        let gap = seq.wrapping_sub(last.wrapping_add(1));
        if gap < 0x8000 {
            self.gaps += u64::from(gap);
            self.last = Some(seq);
        } else {
            self.late += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(len: usize, stamp: &Stamp) -> Vec<u8> {
        let mut p = vec![0u8; len];
        write(&mut p, &VP8_KEYFRAME_START, stamp);
        p
    }

    #[test]
    fn a_written_payload_checks_and_returns_its_stamp() {
        let stamp = Stamp {
            stream: 7,
            counter: 123_456,
            send_ns: 987_654_321_000,
        };
        for len in [MIN_LEN, 100, 200, 1200] {
            let p = packet(len, &stamp);
            assert_eq!(&p[..7], &VP8_KEYFRAME_START);
            assert_eq!(check(&p), Ok(stamp));
        }
    }

    #[test]
    fn any_changed_byte_fails_the_checksum() {
        let stamp = Stamp {
            stream: 1,
            counter: 2,
            send_ns: 3,
        };
        let p = packet(160, &stamp);
        for at in 0..p.len() {
            let mut bad = p.clone();
            bad[at] ^= 0x40;
            assert!(
                matches!(check(&bad), Err(PayloadError::Checksum { .. })),
                "byte {at} flipped"
            );
        }
        assert_eq!(check(&p[..20]), Err(PayloadError::TooShort(20)));
        // A truncated payload is caught too (the CRC covers the filler).
        assert!(check(&p[..150]).is_err());
    }

    #[test]
    fn continuity_counts_gaps_and_late_packets_across_wraparound() {
        let mut c = Continuity::default();
        for s in [65_533u16, 65_534, 65_535, 0, 1] {
            c.push(s);
        }
        assert_eq!((c.gaps, c.late, c.received), (0, 0, 5));
        c.push(4); // 2 and 3 missing
        assert_eq!(c.gaps, 2);
        c.push(3); // 3 arrives late
        c.push(4); // 4 again
        assert_eq!((c.gaps, c.late, c.received), (2, 2, 8));
        c.push(5);
        assert_eq!(c.gaps, 2);
    }
}
