//! RTCP (RFC 3550, RFC 4585, RFC 5104): compound packet parsing, writers for the feedback
//! and reports the bridge sends, and per-source receive statistics.
//!
//! [`packets`] walks a compound packet (after SRTCP unprotect) and yields typed views that
//! borrow it. The `write_*` functions fill a caller-owned buffer and return the length;
//! call them one after the other on the rest of a buffer to build a compound packet.
//! [`ReceiveStats`] keeps what a report block needs (RFC 3550 appendix A.3 and A.8).
//! Nothing here allocates or reads a clock.

use core::iter::FusedIterator;
use core::slice::ChunksExact;

/// Length of the common RTCP header.
pub const HEADER_LEN: usize = 4;

/// Length of one report block in an SR or RR.
pub const REPORT_BLOCK_LEN: usize = 24;

/// At most 31 report blocks fit the 5-bit count.
pub const MAX_REPORT_BLOCKS: usize = 31;

/// RTCP packet types.
pub mod pt {
    /// Sender report (RFC 3550).
    pub const SR: u8 = 200;
    /// Receiver report (RFC 3550).
    pub const RR: u8 = 201;
    /// Source description (RFC 3550).
    pub const SDES: u8 = 202;
    /// Goodbye (RFC 3550).
    pub const BYE: u8 = 203;
    /// Application-defined (RFC 3550).
    pub const APP: u8 = 204;
    /// Transport-layer feedback (RFC 4585).
    pub const RTPFB: u8 = 205;
    /// Payload-specific feedback (RFC 4585).
    pub const PSFB: u8 = 206;
    /// Extended report (RFC 3611).
    pub const XR: u8 = 207;
}

/// Feedback message types (the FMT field) this module interprets.
pub mod fmt {
    /// RTPFB generic NACK (RFC 4585 section 6.2.1).
    pub const NACK: u8 = 1;
    /// PSFB picture loss indication (RFC 4585 section 6.3.1).
    pub const PLI: u8 = 1;
    /// PSFB full intra request (RFC 5104 section 4.3.1).
    pub const FIR: u8 = 4;
    /// PSFB application layer feedback, which carries REMB.
    pub const AFB: u8 = 15;
}

/// Why an RTCP packet could not be parsed or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// Fewer bytes than a common header.
    #[error("RTCP packet shorter than its header")]
    TooShort,
    /// The version field is not 2.
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    /// The length field runs past the end of the compound packet.
    #[error("RTCP length field overruns the compound packet")]
    BadLength,
    /// The padding count is zero or larger than the packet.
    #[error("RTCP padding length is invalid")]
    BadPadding,
    /// The packet body is too short for what its header and counts announce.
    #[error("RTCP packet type {packet_type} truncated")]
    Truncated {
        /// The packet type of the offending packet.
        packet_type: u8,
    },
    /// The caller's output buffer cannot hold the packet (API misuse).
    #[error("output buffer too small for the RTCP packet")]
    BufferTooSmall,
    /// More items than the packet format can carry (API misuse).
    #[error("too many items for one RTCP packet")]
    TooManyItems,
}

/// Could `buf` be RTCP rather than RTP on an rtcp-mux port (RFC 5761 section 4)?
pub fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf, [b0, b1, ..] if b0 >> 6 == 2 && (192..=223).contains(b1))
}

/// Iterates over the packets of the compound RTCP packet `buf`; same as [`RtcpIter::new`].
pub fn packets(buf: &[u8]) -> RtcpIter<'_> {
    RtcpIter::new(buf)
}

/// Iterator over a compound packet. Yields one error and then stops if a packet is
/// malformed.
#[derive(Debug, Clone)]
pub struct RtcpIter<'a> {
    rest: &'a [u8],
}

impl<'a> RtcpIter<'a> {
    /// Iterates over the packets of the compound RTCP packet `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        RtcpIter { rest: buf }
    }
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = split_packet(self.rest).and_then(|(header, body, rest)| {
            self.rest = rest;
            RtcpPacket::parse(header, body)
        });
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

impl FusedIterator for RtcpIter<'_> {}

/// The common header of one RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    count: u8,
    packet_type: u8,
}

/// Splits off the first packet: header, body without padding, remaining bytes.
fn split_packet(buf: &[u8]) -> Result<(Header, &[u8], &[u8]), RtcpError> {
    let h: &[u8; HEADER_LEN] = buf.first_chunk().ok_or(RtcpError::TooShort)?;
    let version = h[0] >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion(version));
    }
    let len = 4 * (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1);
    let (packet, rest) = buf.split_at_checked(len).ok_or(RtcpError::BadLength)?;
    let mut body = packet.get(HEADER_LEN..).ok_or(RtcpError::TooShort)?;
    if h[0] & 0x20 != 0 {
        let pad = usize::from(*body.last().ok_or(RtcpError::BadPadding)?);
        if pad == 0 || pad > body.len() {
            return Err(RtcpError::BadPadding);
        }
        body = body.get(..body.len() - pad).ok_or(RtcpError::BadPadding)?;
    }
    let header = Header {
        count: h[0] & 0x1F,
        packet_type: h[1],
    };
    Ok((header, body, rest))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..)?.first_chunk().map(|a| u32::from_be_bytes(*a))
}

/// One packet of a compound RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket<'a> {
    /// SR.
    SenderReport(SenderReport<'a>),
    /// RR.
    ReceiverReport(ReceiverReport<'a>),
    /// SDES, not interpreted.
    SourceDescription(SourceDescription<'a>),
    /// BYE.
    Bye(Bye<'a>),
    /// RTPFB generic NACK.
    Nack(Nack<'a>),
    /// PSFB picture loss indication.
    Pli(Pli),
    /// PSFB full intra request.
    Fir(Fir<'a>),
    /// PSFB REMB (draft-alvestrand-rmcat-remb).
    Remb(Remb<'a>),
    /// Anything else (APP, XR, other feedback such as transport-cc).
    Unknown(UnknownPacket<'a>),
}

impl<'a> RtcpPacket<'a> {
    fn parse(h: Header, body: &'a [u8]) -> Result<Self, RtcpError> {
        let truncated = RtcpError::Truncated {
            packet_type: h.packet_type,
        };
        let count = usize::from(h.count);
        let ssrc_at = |at: usize| be_u32(body, at).ok_or(truncated);
        Ok(match (h.packet_type, h.count) {
            (pt::SR, _) => {
                let blocks = body
                    .get(24..24 + count * REPORT_BLOCK_LEN)
                    .ok_or(truncated)?;
                let ntp_hi = ssrc_at(4)?;
                let ntp_lo = ssrc_at(8)?;
                RtcpPacket::SenderReport(SenderReport {
                    info: SenderInfo {
                        ssrc: ssrc_at(0)?,
                        ntp_timestamp: (u64::from(ntp_hi) << 32) | u64::from(ntp_lo),
                        rtp_timestamp: ssrc_at(12)?,
                        packet_count: ssrc_at(16)?,
                        octet_count: ssrc_at(20)?,
                    },
                    blocks,
                })
            }
            (pt::RR, _) => {
                let blocks = body.get(4..4 + count * REPORT_BLOCK_LEN).ok_or(truncated)?;
                RtcpPacket::ReceiverReport(ReceiverReport {
                    ssrc: ssrc_at(0)?,
                    blocks,
                })
            }
            (pt::SDES, _) => RtcpPacket::SourceDescription(SourceDescription {
                chunk_count: h.count,
                body,
            }),
            (pt::BYE, _) => {
                let (ssrcs, rest) = body.split_at_checked(4 * count).ok_or(truncated)?;
                let reason = match rest.split_first() {
                    None => None,
                    Some((&len, text)) => Some(text.get(..usize::from(len)).ok_or(truncated)?),
                };
                RtcpPacket::Bye(Bye { ssrcs, reason })
            }
            (pt::RTPFB, fmt::NACK) => {
                let fci = fci(body, 4).ok_or(truncated)?;
                RtcpPacket::Nack(Nack {
                    sender_ssrc: ssrc_at(0)?,
                    media_ssrc: ssrc_at(4)?,
                    fci,
                })
            }
            (pt::PSFB, fmt::PLI) => RtcpPacket::Pli(Pli {
                sender_ssrc: ssrc_at(0)?,
                media_ssrc: ssrc_at(4)?,
            }),
            (pt::PSFB, fmt::FIR) => {
                let fci = fci(body, 8).ok_or(truncated)?;
                RtcpPacket::Fir(Fir {
                    sender_ssrc: ssrc_at(0)?,
                    media_ssrc: ssrc_at(4)?,
                    fci,
                })
            }
            (pt::PSFB, fmt::AFB) if body.get(8..12) == Some(b"REMB") => {
                let [num, exp_mant, m1, m2] = *body
                    .get(12..)
                    .and_then(|b| b.first_chunk::<4>())
                    .ok_or(truncated)?;
                let ssrcs = body.get(16..16 + 4 * usize::from(num)).ok_or(truncated)?;
                let exponent = u32::from(exp_mant >> 2);
                let mantissa =
                    (u64::from(exp_mant & 0x03) << 16) | (u64::from(m1) << 8) | u64::from(m2);
                // An 18-bit mantissa shifted by up to 63 overflows u64: saturate.
                let bitrate = u64::try_from(u128::from(mantissa) << exponent).unwrap_or(u64::MAX);
                RtcpPacket::Remb(Remb {
                    sender_ssrc: ssrc_at(0)?,
                    bitrate_bps: bitrate,
                    ssrcs,
                })
            }
            _ => RtcpPacket::Unknown(UnknownPacket {
                packet_type: h.packet_type,
                count: h.count,
                body,
            }),
        })
    }
}

/// The FCI of a feedback message: after the two SSRCs, a whole number of `entry`-byte
/// entries, at least one.
fn fci(body: &[u8], entry: usize) -> Option<&[u8]> {
    let fci = body.get(8..)?;
    (!fci.is_empty() && fci.len().is_multiple_of(entry)).then_some(fci)
}

/// The sender information block of an SR, also the input of [`write_sender_report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// SSRC of the sender.
    pub ssrc: u32,
    /// 64-bit NTP timestamp of the report.
    pub ntp_timestamp: u64,
    /// RTP timestamp corresponding to `ntp_timestamp`.
    pub rtp_timestamp: u32,
    /// Packets sent so far.
    pub packet_count: u32,
    /// Payload octets sent so far.
    pub octet_count: u32,
}

/// A report block (RFC 3550 section 6.4.1), parsed or to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, a signed 24-bit value (duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles << 16 | highest).
    pub extended_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received (LSR), 0 if none.
    pub last_sr: u32,
    /// Delay since that SR in 1/65536 s (DLSR), 0 if none.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn from_bytes(b: &[u8; REPORT_BLOCK_LEN]) -> Self {
        // Constant indices into a fixed-size array: checked at compile time.
        ReportBlock {
            ssrc: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            fraction_lost: b[4],
            // Sign-extend the 24-bit cumulative loss.
            cumulative_lost: i32::from_be_bytes([b[5], b[6], b[7], 0]) >> 8,
            extended_highest_seq: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            jitter: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
            last_sr: u32::from_be_bytes([b[16], b[17], b[18], b[19]]),
            delay_since_last_sr: u32::from_be_bytes([b[20], b[21], b[22], b[23]]),
        }
    }

    fn to_bytes(self) -> [u8; REPORT_BLOCK_LEN] {
        let mut b = [0u8; REPORT_BLOCK_LEN];
        b[..4].copy_from_slice(&self.ssrc.to_be_bytes());
        let lost = self
            .cumulative_lost
            .clamp(-0x80_0000, 0x7F_FFFF)
            .to_be_bytes();
        b[4] = self.fraction_lost;
        b[5..8].copy_from_slice(&lost[1..]);
        b[8..12].copy_from_slice(&self.extended_highest_seq.to_be_bytes());
        b[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        b[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        b[20..24].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
        b
    }
}

/// Iterator over the report blocks of an SR or RR.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a>(ChunksExact<'a, u8>);

impl<'a> ReportBlocks<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        ReportBlocks(bytes.chunks_exact(REPORT_BLOCK_LEN))
    }
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        self.0
            .next()
            .and_then(|c| c.first_chunk())
            .map(ReportBlock::from_bytes)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}

/// Iterator over a list of SSRCs (BYE, REMB).
#[derive(Debug, Clone)]
pub struct Ssrcs<'a>(ChunksExact<'a, u8>);

impl<'a> Ssrcs<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Ssrcs(bytes.chunks_exact(4))
    }
}

impl Iterator for Ssrcs<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        self.0
            .next()
            .and_then(|c| c.first_chunk())
            .map(|a| u32::from_be_bytes(*a))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Ssrcs<'_> {}

/// A sender report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport<'a> {
    /// The sender information.
    pub info: SenderInfo,
    blocks: &'a [u8],
}

impl<'a> SenderReport<'a> {
    /// SSRC of the sender.
    pub fn sender_ssrc(&self) -> u32 {
        self.info.ssrc
    }

    /// The middle 32 bits of the NTP timestamp: what a report block echoes as LSR.
    pub fn ntp_middle(&self) -> u32 {
        (self.info.ntp_timestamp >> 16) as u32
    }

    /// The report blocks.
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks::new(self.blocks)
    }
}

/// A receiver report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    /// SSRC of the reporter.
    pub ssrc: u32,
    blocks: &'a [u8],
}

impl<'a> ReceiverReport<'a> {
    /// The report blocks.
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks::new(self.blocks)
    }
}

/// A source description packet, passed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceDescription<'a> {
    /// Number of chunks announced in the header.
    pub chunk_count: u8,
    /// The raw chunks.
    pub body: &'a [u8],
}

/// A BYE packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bye<'a> {
    ssrcs: &'a [u8],
    /// The optional reason for leaving.
    pub reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    /// The sources that leave.
    pub fn ssrcs(&self) -> Ssrcs<'a> {
        Ssrcs::new(self.ssrcs)
    }
}

/// A generic NACK (RFC 4585 section 6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nack<'a> {
    /// SSRC of the packet sender (the receiver asking).
    pub sender_ssrc: u32,
    /// SSRC of the media source whose packets are missing.
    pub media_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Nack<'a> {
    /// The PID/BLP pairs.
    pub fn entries(&self) -> impl Iterator<Item = NackEntry> + 'a {
        self.fci.chunks_exact(4).filter_map(|c| match *c {
            [p0, p1, b0, b1] => Some(NackEntry {
                pid: u16::from_be_bytes([p0, p1]),
                blp: u16::from_be_bytes([b0, b1]),
            }),
            _ => None,
        })
    }

    /// Every sequence number reported lost, in packet order.
    pub fn lost_sequence_numbers(&self) -> impl Iterator<Item = u16> + 'a {
        self.entries().flat_map(NackEntry::sequence_numbers)
    }
}

/// One PID/BLP pair of a NACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackEntry {
    /// A lost packet's sequence number.
    pub pid: u16,
    /// Bit i set: `pid + i + 1` is lost too.
    pub blp: u16,
}

impl NackEntry {
    /// `pid` and the sequence numbers flagged in `blp`.
    pub fn sequence_numbers(self) -> impl Iterator<Item = u16> {
        let NackEntry { pid, blp } = self;
        core::iter::once(pid).chain(
            (0..16u16)
                .filter(move |i| (blp >> i) & 1 == 1)
                .map(move |i| pid.wrapping_add(i + 1)),
        )
    }
}

/// A picture loss indication (RFC 4585 section 6.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pli {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the media source that should send a key frame.
    pub media_ssrc: u32,
}

/// A full intra request (RFC 5104 section 4.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fir<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// The header's media SSRC (RFC 5104 says 0; the targets are in the entries).
    pub media_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Fir<'a> {
    /// The sources asked for a key frame (the SSRCs of [`Fir::entries`]).
    pub fn media_ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.entries().map(|e| e.ssrc)
    }

    /// The FCI entries: which sources should send a key frame.
    pub fn entries(&self) -> impl Iterator<Item = FirEntry> + 'a {
        self.fci.chunks_exact(8).filter_map(|c| match *c {
            [s0, s1, s2, s3, seq, ..] => Some(FirEntry {
                ssrc: u32::from_be_bytes([s0, s1, s2, s3]),
                seq_nr: seq,
            }),
            _ => None,
        })
    }
}

/// One FIR FCI entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirEntry {
    /// The media source that should send a key frame.
    pub ssrc: u32,
    /// Command sequence number; a repeated number is a retransmitted request.
    pub seq_nr: u8,
}

/// Receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remb<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// The estimate in bits per second (saturated at `u64::MAX`).
    pub bitrate_bps: u64,
    ssrcs: &'a [u8],
}

impl<'a> Remb<'a> {
    /// The media sources the estimate applies to.
    pub fn ssrcs(&self) -> Ssrcs<'a> {
        Ssrcs::new(self.ssrcs)
    }
}

/// A packet this module does not interpret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownPacket<'a> {
    /// The packet type.
    pub packet_type: u8,
    /// The 5-bit count or FMT field.
    pub count: u8,
    /// The body after the common header, without padding.
    pub body: &'a [u8],
}

/// Serialises one RTCP packet into a caller-owned buffer.
struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Writer<'b> {
    /// Starts a packet whose total length will be `len` bytes (a multiple of 4).
    fn new(buf: &'b mut [u8], count: u8, packet_type: u8, len: usize) -> Result<Self, RtcpError> {
        if buf.len() < len {
            return Err(RtcpError::BufferTooSmall);
        }
        let words = u16::try_from(len / 4 - 1).map_err(|_| RtcpError::TooManyItems)?;
        let mut w = Writer { buf, len: 0 };
        w.put(&[0x80 | (count & 0x1F), packet_type])?;
        w.put(&words.to_be_bytes())?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), RtcpError> {
        let end = self.len + bytes.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(RtcpError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn u32(&mut self, v: u32) -> Result<(), RtcpError> {
        self.put(&v.to_be_bytes())
    }
}

/// Writes a PLI asking `media_ssrc` for a key frame. Returns 12.
pub fn write_pli(buf: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Result<usize, RtcpError> {
    let mut w = Writer::new(buf, fmt::PLI, pt::PSFB, 12)?;
    w.u32(sender_ssrc)?;
    w.u32(media_ssrc)?;
    Ok(w.len)
}

/// Writes a FIR asking `media_ssrc` for a key frame with command sequence number `seq_nr`
/// (increment it per new request). The header's media SSRC is 0 as RFC 5104 requires.
/// Returns 20.
pub fn write_fir(
    buf: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    seq_nr: u8,
) -> Result<usize, RtcpError> {
    let mut w = Writer::new(buf, fmt::FIR, pt::PSFB, 20)?;
    w.u32(sender_ssrc)?;
    w.u32(0)?;
    w.u32(media_ssrc)?;
    w.put(&[seq_nr, 0, 0, 0])?;
    Ok(w.len)
}

/// Writes a generic NACK for `media_ssrc` with the given PID/BLP pairs (at least one).
pub fn write_nack(
    buf: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    entries: &[NackEntry],
) -> Result<usize, RtcpError> {
    if entries.is_empty() {
        return Err(RtcpError::TooManyItems);
    }
    let mut w = Writer::new(buf, fmt::NACK, pt::RTPFB, 12 + 4 * entries.len())?;
    w.u32(sender_ssrc)?;
    w.u32(media_ssrc)?;
    for e in entries {
        w.put(&e.pid.to_be_bytes())?;
        w.put(&e.blp.to_be_bytes())?;
    }
    Ok(w.len)
}

/// Writes a REMB with `bitrate_bps` for `ssrcs` (at most 255).
pub fn write_remb(
    buf: &mut [u8],
    sender_ssrc: u32,
    bitrate_bps: u64,
    ssrcs: &[u32],
) -> Result<usize, RtcpError> {
    let num = u8::try_from(ssrcs.len()).map_err(|_| RtcpError::TooManyItems)?;
    let mut exponent = 0u32;
    while bitrate_bps >> exponent > 0x3_FFFF {
        exponent += 1;
    }
    let mantissa = (bitrate_bps >> exponent) as u32;
    let mut w = Writer::new(buf, fmt::AFB, pt::PSFB, 20 + 4 * ssrcs.len())?;
    w.u32(sender_ssrc)?;
    w.u32(0)?;
    w.put(b"REMB")?;
    // exponent < 64 and mantissa < 2^18, so the shifts keep each part in its field.
    w.put(&[
        num,
        ((exponent as u8) << 2) | (mantissa >> 16) as u8,
        (mantissa >> 8) as u8,
        mantissa as u8,
    ])?;
    for s in ssrcs {
        w.u32(*s)?;
    }
    Ok(w.len)
}

/// Writes a receiver report from `ssrc` with up to 31 `blocks`.
pub fn write_receiver_report(
    buf: &mut [u8],
    ssrc: u32,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpError> {
    let count = report_count(blocks)?;
    let mut w = Writer::new(buf, count, pt::RR, 8 + REPORT_BLOCK_LEN * blocks.len())?;
    w.u32(ssrc)?;
    for b in blocks {
        w.put(&b.to_bytes())?;
    }
    Ok(w.len)
}

/// Writes a sender report with up to 31 `blocks`.
pub fn write_sender_report(
    buf: &mut [u8],
    info: &SenderInfo,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpError> {
    let count = report_count(blocks)?;
    let mut w = Writer::new(buf, count, pt::SR, 28 + REPORT_BLOCK_LEN * blocks.len())?;
    w.u32(info.ssrc)?;
    w.put(&info.ntp_timestamp.to_be_bytes())?;
    w.u32(info.rtp_timestamp)?;
    w.u32(info.packet_count)?;
    w.u32(info.octet_count)?;
    for b in blocks {
        w.put(&b.to_bytes())?;
    }
    Ok(w.len)
}

fn report_count(blocks: &[ReportBlock]) -> Result<u8, RtcpError> {
    if blocks.len() > MAX_REPORT_BLOCKS {
        return Err(RtcpError::TooManyItems);
    }
    // At most 31 by the check above.
    Ok(blocks.len() as u8)
}

/// What a receiver knows about one incoming source, enough for its report block
/// (RFC 3550 appendix A.3 for loss, A.8 for jitter).
///
/// Feed every received packet with [`handle_packet`](Self::handle_packet) and every SR from
/// the source with [`handle_sender_report`](Self::handle_sender_report); take a report
/// block with [`poll_report_block`](Self::poll_report_block) when sending an RR, which
/// also starts the next "fraction lost" interval. The caller supplies all times.
///
/// Source restarts (RFC 3550 A.1 probation and large sequence jumps) are not detected
/// here: a large forward jump counts as loss.
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    ssrc: u32,
    /// Lowest and highest extended sequence numbers seen.
    base_seq: u64,
    max_seq: u64,
    /// `base_seq` rounded down to its cycle when the first packet arrived: the origin of
    /// the reported extended highest sequence number.
    cycle_origin: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Jitter in RTP timestamp units, times 16 (RFC 3550 A.8 integer form).
    jitter_q4: u64,
    last_transit: Option<u32>,
    /// LSR (middle 32 bits of the SR's NTP time) and the SR's arrival in 1/65536 s.
    last_sr: Option<(u32, u64)>,
}

impl ReceiveStats {
    /// Statistics for the source `ssrc`, with nothing received yet.
    pub fn new(ssrc: u32) -> Self {
        ReceiveStats {
            ssrc,
            base_seq: 0,
            max_seq: 0,
            cycle_origin: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter_q4: 0,
            last_transit: None,
            last_sr: None,
        }
    }

    /// The source these statistics are about.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Records a received packet: its extended sequence number (from
    /// [`super::rtp::SeqUnwrapper`]), its RTP timestamp and its arrival time converted to
    /// the same clock (RTP clock rate units; only differences matter).
    pub fn handle_packet(&mut self, ext_seq: u64, rtp_timestamp: u32, arrival: u64) {
        if self.received == 0 {
            self.base_seq = ext_seq;
            self.max_seq = ext_seq;
            self.cycle_origin = ext_seq & !0xFFFF;
        } else {
            self.base_seq = self.base_seq.min(ext_seq);
            self.max_seq = self.max_seq.max(ext_seq);
        }
        self.received += 1;

        // Transit times are relative, so 32-bit wrapping arithmetic is exact enough.
        let transit = (arrival as u32).wrapping_sub(rtp_timestamp);
        if let Some(last) = self.last_transit {
            let d = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// Records an SR from this source: its NTP timestamp and its arrival time in 1/65536 s
    /// (the DLSR unit).
    pub fn handle_sender_report(&mut self, ntp_timestamp: u64, arrival_q16: u64) {
        self.last_sr = Some(((ntp_timestamp >> 16) as u32, arrival_q16));
    }

    /// Packets received, duplicates included.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected: highest minus lowest extended sequence number, plus one.
    pub fn expected(&self) -> u64 {
        if self.received == 0 {
            0
        } else {
            self.max_seq - self.base_seq + 1
        }
    }

    /// Cumulative packets lost (negative with duplicates).
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_q4 >> 4).unwrap_or(u32::MAX)
    }

    /// The extended highest sequence number as RFC 3550 reports it: cycles counted from
    /// the first packet's cycle, in the upper 16 bits.
    pub fn extended_highest_seq(&self) -> u32 {
        self.max_seq.saturating_sub(self.cycle_origin) as u32
    }

    /// The report block for this source at `now_q16` (1/65536 s, same clock as
    /// [`handle_sender_report`](Self::handle_sender_report)); `None` before the first
    /// packet. Starts a new interval for "fraction lost".
    pub fn poll_report_block(&mut self, now_q16: u64) -> Option<ReportBlock> {
        if self.received == 0 {
            return None;
        }
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((lsr, at)) => (
                lsr,
                u32::try_from(now_q16.saturating_sub(at)).unwrap_or(u32::MAX),
            ),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            extended_highest_seq: self.extended_highest_seq(),
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::rtp::SeqUnwrapper;
    use super::*;

    fn all(buf: &[u8]) -> Vec<RtcpPacket<'_>> {
        packets(buf).collect::<Result<Vec<_>, _>>().unwrap()
    }

    #[test]
    fn sr_with_block_and_sdes() {
        let block = ReportBlock {
            ssrc: 0x0102_0304,
            fraction_lost: 25,
            cumulative_lost: -3,
            extended_highest_seq: 0x0001_0005,
            jitter: 77,
            last_sr: 0xAABB_CCDD,
            delay_since_last_sr: 65536,
        };
        let info = SenderInfo {
            ssrc: 0xDEAD_BEEF,
            ntp_timestamp: 0xE1E2_E3E4_0000_8000,
            rtp_timestamp: 90_000,
            packet_count: 10,
            octet_count: 12_000,
        };
        let mut buf = [0u8; 128];
        let n = write_sender_report(&mut buf, &info, &[block]).unwrap();
        assert_eq!(n, 52);
        // SDES: one chunk, CNAME "ab", end, padded to a word.
        let sdes = [
            0x81, 202, 0x00, 0x03, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, b'a', b'b', 0, 0, 0, 0,
        ];
        buf[n..n + sdes.len()].copy_from_slice(&sdes);
        let total = n + sdes.len();
        assert!(is_rtcp(&buf[..total]));
        let ps = all(&buf[..total]);
        assert_eq!(ps.len(), 2);
        let RtcpPacket::SenderReport(sr) = ps[0] else {
            panic!("{:?}", ps[0])
        };
        assert_eq!(sr.info, info);
        assert_eq!(sr.sender_ssrc(), 0xDEAD_BEEF);
        assert_eq!(sr.ntp_middle(), 0xE3E4_0000);
        assert_eq!(sr.report_blocks().collect::<Vec<_>>(), [block]);
        let RtcpPacket::SourceDescription(sd) = ps[1] else {
            panic!("{:?}", ps[1])
        };
        assert_eq!(sd.chunk_count, 1);
        assert_eq!(sd.body.len(), 12);
    }

    #[test]
    fn rr_round_trips_including_extremes() {
        let blocks: Vec<ReportBlock> = (0..31)
            .map(|i| ReportBlock {
                ssrc: i,
                fraction_lost: i as u8,
                cumulative_lost: if i.is_multiple_of(2) {
                    -(i as i32)
                } else {
                    0x7F_FFFF
                },
                extended_highest_seq: i * 1000,
                jitter: i,
                last_sr: i,
                delay_since_last_sr: i,
            })
            .collect();
        let mut buf = [0u8; 1024];
        let n = write_receiver_report(&mut buf, 42, &blocks).unwrap();
        assert_eq!(n, 8 + 31 * 24);
        let ps = all(&buf[..n]);
        let [RtcpPacket::ReceiverReport(rr)] = ps[..] else {
            panic!("{ps:?}")
        };
        assert_eq!(rr.ssrc, 42);
        assert_eq!(rr.report_blocks().len(), 31);
        assert_eq!(rr.report_blocks().collect::<Vec<_>>(), blocks);
        // Out-of-range loss is clamped to 24 bits.
        let clamp = ReportBlock {
            cumulative_lost: i32::MIN,
            ..ReportBlock::default()
        };
        let n = write_receiver_report(&mut buf, 1, &[clamp]).unwrap();
        let RtcpPacket::ReceiverReport(rr) = all(&buf[..n])[0] else {
            panic!()
        };
        assert_eq!(
            rr.report_blocks().next().unwrap().cumulative_lost,
            -0x80_0000
        );
        // Empty RR, and too many blocks.
        let n = write_receiver_report(&mut buf, 1, &[]).unwrap();
        assert_eq!(&buf[..n], &[0x80, 201, 0, 1, 0, 0, 0, 1]);
        let too_many = [ReportBlock::default(); 32];
        assert_eq!(
            write_receiver_report(&mut buf, 1, &too_many),
            Err(RtcpError::TooManyItems)
        );
        assert_eq!(
            write_receiver_report(&mut buf[..31], 1, &blocks[..1]),
            Err(RtcpError::BufferTooSmall)
        );
    }

    #[test]
    fn pli_fir_nack_remb_round_trip_as_one_compound() {
        let mut buf = [0u8; 256];
        let mut n = write_receiver_report(&mut buf, 1, &[]).unwrap();
        n += write_pli(&mut buf[n..], 1, 0xCAFE).unwrap();
        n += write_fir(&mut buf[n..], 1, 0xF00D, 9).unwrap();
        let entries = [
            NackEntry {
                pid: 65534,
                blp: 0b101,
            },
            NackEntry { pid: 100, blp: 0 },
        ];
        n += write_nack(&mut buf[n..], 1, 0xBEEF, &entries).unwrap();
        n += write_remb(&mut buf[n..], 1, 1_500_000, &[0xA, 0xB]).unwrap();
        let ps = all(&buf[..n]);
        assert_eq!(ps.len(), 5);
        assert_eq!(
            ps[1],
            RtcpPacket::Pli(Pli {
                sender_ssrc: 1,
                media_ssrc: 0xCAFE
            })
        );
        let RtcpPacket::Fir(fir) = ps[2] else {
            panic!()
        };
        assert_eq!((fir.sender_ssrc, fir.media_ssrc), (1, 0));
        assert_eq!(
            fir.entries().collect::<Vec<_>>(),
            [FirEntry {
                ssrc: 0xF00D,
                seq_nr: 9
            }]
        );
        assert_eq!(fir.media_ssrcs().collect::<Vec<_>>(), [0xF00D]);
        let RtcpPacket::Nack(nack) = ps[3] else {
            panic!()
        };
        assert_eq!(nack.media_ssrc, 0xBEEF);
        assert_eq!(nack.entries().collect::<Vec<_>>(), entries);
        assert_eq!(
            nack.lost_sequence_numbers().collect::<Vec<_>>(),
            [65534, 65535, 1, 100]
        );
        let RtcpPacket::Remb(remb) = &ps[4] else {
            panic!()
        };
        assert_eq!(remb.sender_ssrc, 1);
        // 1.5 Mbit/s needs a 3-bit shift to fit 18 bits: exact.
        assert_eq!(remb.bitrate_bps, 1_500_000);
        assert_eq!(remb.ssrcs().collect::<Vec<_>>(), [0xA, 0xB]);
    }

    #[test]
    fn parses_known_chrome_style_packets() {
        // A PLI as Chrome sends it (reduced-size, alone).
        let pli = [0x81, 0xCE, 0x00, 0x02, 0, 0, 0, 1, 0x12, 0x34, 0x56, 0x78];
        assert_eq!(
            all(&pli),
            [RtcpPacket::Pli(Pli {
                sender_ssrc: 1,
                media_ssrc: 0x1234_5678
            })]
        );
        // REMB built by hand: one SSRC, exponent 2, mantissa 0x1_2345.
        let remb = [
            0x8F,
            0xCE,
            0x00,
            0x05,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            b'R',
            b'E',
            b'M',
            b'B',
            1,
            (2 << 2) | 0x01,
            0x23,
            0x45,
            0x11,
            0x22,
            0x33,
            0x44,
        ];
        let ps = all(&remb);
        let RtcpPacket::Remb(r) = &ps[0] else {
            panic!()
        };
        assert_eq!(r.bitrate_bps, 0x01_2345 << 2);
        assert_eq!(r.ssrcs().collect::<Vec<_>>(), [0x1122_3344]);
        // AFB that is not REMB, and transport-cc: Unknown.
        let mut afb = remb;
        afb[12] = b'X';
        assert!(matches!(
            all(&afb)[0],
            RtcpPacket::Unknown(UnknownPacket {
                packet_type: pt::PSFB,
                count: 15,
                ..
            })
        ));
        let twcc = [0x8F, 205, 0x00, 0x02, 0, 0, 0, 1, 0, 0, 0, 2];
        assert!(matches!(
            all(&twcc)[0],
            RtcpPacket::Unknown(UnknownPacket {
                packet_type: pt::RTPFB,
                count: 15,
                body
            }) if body.len() == 8
        ));
        // BYE with two SSRCs and a reason.
        let bye = [
            0x82, 203, 0x00, 0x04, 0, 0, 0, 1, 0, 0, 0, 2, 3, b'b', b'y', b'e', 0, 0, 0, 0,
        ];
        let ps = all(&bye);
        let RtcpPacket::Bye(b) = &ps[0] else { panic!() };
        assert_eq!(b.ssrcs().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(b.reason, Some(&b"bye"[..]));
        // RR with padding (P bit, 4 padding bytes).
        let rr = [0xA0, 201, 0x00, 0x02, 0, 0, 0, 9, 0, 0, 0, 4];
        let ps = all(&rr);
        let RtcpPacket::ReceiverReport(r) = &ps[0] else {
            panic!()
        };
        assert_eq!(r.ssrc, 9);
        assert_eq!(r.report_blocks().count(), 0);
    }

    #[test]
    fn malformed_packets_are_errors() {
        let cases: &[(&[u8], RtcpError)] = &[
            (&[0x80, 201, 0], RtcpError::TooShort),
            (&[0x40, 201, 0, 1, 0, 0, 0, 1], RtcpError::BadVersion(1)),
            // Length says 3 words, only 2 present.
            (&[0x80, 201, 0, 2, 0, 0, 0, 1], RtcpError::BadLength),
            // RR announcing one block without it.
            (
                &[0x81, 201, 0, 1, 0, 0, 0, 1],
                RtcpError::Truncated { packet_type: 201 },
            ),
            // SR without the sender info.
            (
                &[0x80, 200, 0, 1, 0, 0, 0, 1],
                RtcpError::Truncated { packet_type: 200 },
            ),
            // Padding count 0 and larger than the packet.
            (&[0xA0, 201, 0, 1, 0, 0, 0, 0], RtcpError::BadPadding),
            (&[0xA0, 201, 0, 1, 0, 0, 0, 9], RtcpError::BadPadding),
            // PLI missing the media SSRC.
            (
                &[0x81, 206, 0, 1, 0, 0, 0, 1],
                RtcpError::Truncated { packet_type: 206 },
            ),
            // NACK without FCI.
            (
                &[0x81, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2],
                RtcpError::Truncated { packet_type: 205 },
            ),
            // FIR with a 4-byte FCI (entries are 8).
            (
                &[0x84, 206, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2],
                RtcpError::Truncated { packet_type: 206 },
            ),
            // BYE with a reason longer than the packet.
            (
                &[0x81, 203, 0, 2, 0, 0, 0, 1, 9, b'x', 0, 0],
                RtcpError::Truncated { packet_type: 203 },
            ),
            // REMB announcing 2 SSRCs, carrying 1.
            (
                &[
                    0x8F, 206, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 2, 0, 0, 1, 0,
                    0, 0, 7,
                ],
                RtcpError::Truncated { packet_type: 206 },
            ),
        ];
        for (bytes, err) in cases {
            let mut it = packets(bytes);
            assert_eq!(it.next(), Some(Err(*err)), "{bytes:02x?}");
            assert_eq!(it.next(), None);
        }
        // A good packet followed by garbage yields the packet, then the error, then stops.
        let mut buf = [0u8; 16];
        let n = write_pli(&mut buf, 1, 2).unwrap();
        buf[n] = 0x80;
        let mut it = packets(&buf[..n + 2]);
        assert!(matches!(it.next(), Some(Ok(RtcpPacket::Pli(_)))));
        assert_eq!(it.next(), Some(Err(RtcpError::TooShort)));
        assert_eq!(it.next(), None);
        assert_eq!(packets(&[]).next(), None);
        assert!(!is_rtcp(&[0x80, 96]));
        assert!(!is_rtcp(&[0x80]));
    }

    #[test]
    fn writers_refuse_small_buffers() {
        let mut buf = [0u8; 64];
        for short in 0..12 {
            assert_eq!(
                write_pli(&mut buf[..short], 1, 2),
                Err(RtcpError::BufferTooSmall)
            );
        }
        for short in 0..20 {
            assert_eq!(
                write_fir(&mut buf[..short], 1, 2, 3),
                Err(RtcpError::BufferTooSmall)
            );
        }
        assert_eq!(
            write_sender_report(&mut buf[..27], &SenderInfo::default(), &[]),
            Err(RtcpError::BufferTooSmall)
        );
        assert_eq!(
            write_nack(&mut buf, 1, 2, &[]),
            Err(RtcpError::TooManyItems)
        );
        assert_eq!(
            write_remb(&mut buf, 1, 1, &[0; 256]),
            Err(RtcpError::TooManyItems)
        );
    }

    #[test]
    fn remb_encodes_large_and_small_bitrates() {
        let mut buf = [0u8; 32];
        for bps in [0, 1, 0x3_FFFF, 0x4_0000, 10_000_000_000, u64::MAX] {
            let n = write_remb(&mut buf, 1, bps, &[5]).unwrap();
            let ps = all(&buf[..n]);
            let RtcpPacket::Remb(r) = &ps[0] else {
                panic!()
            };
            // Truncation to an 18-bit mantissa loses at most 1 part in 2^17.
            assert!(
                r.bitrate_bps <= bps && bps - r.bitrate_bps <= bps >> 17,
                "{bps}"
            );
        }
    }

    #[test]
    fn receive_stats_counts_loss_reordering_and_wrap() {
        let mut u = SeqUnwrapper::new();
        let mut s = ReceiveStats::new(0x5555);
        assert_eq!(s.poll_report_block(0), None);
        // 65530..=65535, 0..=9 with 2 and 3 lost, 65534 arriving after 1 (reordered),
        // and 5 duplicated.
        let order: [u16; 15] = [
            65530, 65531, 65532, 65533, 65535, 0, 1, 65534, 4, 5, 5, 6, 7, 8, 9,
        ];
        for (i, seq) in order.into_iter().enumerate() {
            let ext = u.extend(seq);
            // Constant transit time: zero jitter.
            s.handle_packet(ext, u32::from(seq) * 960, u64::from(seq) * 960 + 5_000);
            assert!(i < 5 || s.extended_highest_seq() >= 65535);
        }
        assert_eq!(s.expected(), 16);
        assert_eq!(s.received(), 15);
        assert_eq!(s.cumulative_lost(), 1); // 2 lost, 1 duplicate
        assert_eq!(s.extended_highest_seq(), 0x0001_0009);
        s.handle_sender_report(0x1111_2222_3333_4444, 1000 << 16);
        let rb = s.poll_report_block((1000 << 16) + 32768).unwrap();
        assert_eq!(rb.ssrc, 0x5555);
        assert_eq!(rb.cumulative_lost, 1);
        assert_eq!(rb.fraction_lost, 16); // 1 lost of 16: 256 / 16
        assert_eq!(rb.extended_highest_seq, 0x0001_0009);
        assert_eq!(rb.last_sr, 0x2222_3333);
        assert_eq!(rb.delay_since_last_sr, 32768);
        // Next interval: 10..=19 all received, no loss in the interval.
        for seq in 10u16..20 {
            s.handle_packet(
                u.extend(seq),
                u32::from(seq) * 960,
                u64::from(seq) * 960 + 5_000,
            );
        }
        let rb = s.poll_report_block(2000 << 16).unwrap();
        assert_eq!(rb.fraction_lost, 0);
        assert_eq!(rb.cumulative_lost, 1);
        // Interval with 5 of 10 lost.
        for seq in (20u16..30).step_by(2) {
            s.handle_packet(
                u.extend(seq),
                u32::from(seq) * 960,
                u64::from(seq) * 960 + 5_000,
            );
        }
        let rb = s.poll_report_block(3000 << 16).unwrap();
        assert_eq!(s.expected(), 16 + 10 + 9);
        assert_eq!(rb.fraction_lost, ((4i64 << 8) / 9) as u8);
        assert_eq!(rb.jitter, 0);
    }

    #[test]
    fn receive_stats_jitter_converges() {
        // Packets every 960 ticks whose arrival alternates 0 and +160 ticks late: |D| is 160
        // each time, so J converges to 160 (J += (|D| - J) / 16).
        let mut s = ReceiveStats::new(1);
        for i in 0..2000u64 {
            let late = if i.is_multiple_of(2) { 0 } else { 160 };
            s.handle_packet(65536 + i, (i * 960) as u32, i * 960 + late);
        }
        assert!((155..=160).contains(&s.jitter()), "{}", s.jitter());
        // Timestamps and arrival clocks wrapping past 2^32 keep working.
        let mut s = ReceiveStats::new(1);
        let start = u64::from(u32::MAX) - 5 * 960;
        for i in 0..100u64 {
            s.handle_packet(65536 + i, (start + i * 960) as u32, start + i * 960 + 7);
        }
        assert_eq!(s.jitter(), 0);
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

    fn exercise(buf: &[u8]) {
        for p in packets(buf).take(64) {
            match p {
                Ok(RtcpPacket::SenderReport(sr)) => {
                    let _ = sr.report_blocks().count();
                }
                Ok(RtcpPacket::ReceiverReport(rr)) => {
                    let _ = rr.report_blocks().count();
                }
                Ok(RtcpPacket::Bye(b)) => {
                    let _ = b.ssrcs().count();
                }
                Ok(RtcpPacket::Nack(n)) => {
                    let _ = n.lost_sequence_numbers().count();
                }
                Ok(RtcpPacket::Fir(f)) => {
                    let _ = f.entries().count();
                }
                Ok(RtcpPacket::Remb(r)) => {
                    let _ = r.ssrcs().count();
                }
                _ => {}
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
        let mut buf = [0u8; 128];
        for _ in 0..50_000 {
            let len = (rng.next() % 128) as usize;
            for b in buf.iter_mut().take(len) {
                *b = rng.next() as u8;
            }
            // Plausible headers get past the version check and into the bodies.
            if len >= 4 && rng.next().is_multiple_of(2) {
                buf[0] = 0x80 | (buf[0] & 0x3F);
                buf[1] = 200 + (buf[1] % 8);
                buf[2] = 0;
                buf[3] %= (len / 4) as u8;
            }
            exercise(&buf[..len]);
        }
    }
}
