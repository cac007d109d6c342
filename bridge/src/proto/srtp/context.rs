//! [`SrtpContext`]: one direction of one DTLS-SRTP association, all its SSRCs.

use std::fmt;

use super::cipher::{E_FLAG, Transform};
use super::header::{RTCP_FIXED_LEN, parse_rtcp, parse_rtp};
use super::replay::ReplayWindow;
use super::{SrtpError, SrtpProfile};

/// How many SSRCs one context tracks (each of SRTP and SRTCP). The per-SSRC tables are
/// allocated at this size when the context is built, so packets never allocate.
pub const MAX_SSRCS: usize = 64;

/// Largest SRTCP index (31 bits, RFC 3711 section 3.4).
const MAX_SRTCP_INDEX: u32 = 0x7fff_ffff;

/// SRTP state of one SSRC: the highest packet index (ROC << 16 | SEQ) and the replay
/// window below it.
#[derive(Debug, Clone, Copy)]
struct RtpStream {
    ssrc: u32,
    /// False until the first packet: the first sequence number fixes `s_l` with ROC 0.
    started: bool,
    window: ReplayWindow,
}

impl RtpStream {
    const fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            started: false,
            window: ReplayWindow::default_const(),
        }
    }

    /// The packet index of `seq`, guessing the ROC as in RFC 3711 appendix A.
    fn estimate_index(&self, seq: u16) -> Result<u64, SrtpError> {
        if !self.started {
            return Ok(u64::from(seq));
        }
        let highest = self.window.highest();
        let roc = (highest >> 16) as i64;
        let s_l = (highest & 0xffff) as i64;
        let seq_i = i64::from(seq);
        let v = if s_l < 0x8000 {
            if seq_i - s_l > 0x8000 { roc - 1 } else { roc }
        } else if s_l - 0x8000 > seq_i {
            roc + 1
        } else {
            roc
        };
        if v < 0 {
            // From before the first packet of the stream (whose ROC is 0).
            return Err(SrtpError::Replay);
        }
        if v > i64::from(u32::MAX) {
            return Err(SrtpError::IndexExhausted);
        }
        Ok(((v as u64) << 16) | u64::from(seq))
    }

    fn accept(&mut self, index: u64) {
        self.started = true;
        self.window.accept(index);
    }
}

/// SRTCP state of one sender SSRC.
#[derive(Debug, Clone, Copy)]
struct RtcpStream {
    ssrc: u32,
    /// The index of the next packet we protect (RFC 3711 3.4: starts at 0).
    next_index: u32,
    /// Replay window over received SRTCP indices.
    window: ReplayWindow,
}

impl RtcpStream {
    const fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            next_index: 0,
            window: ReplayWindow::default_const(),
        }
    }
}

/// The SRTP/SRTCP cryptographic context of one direction of one DTLS-SRTP association:
/// the session keys of all SSRCs the peer sends (for unprotecting) or that we send to it
/// (for protecting), with each SSRC's rollover counter, SRTCP index and replay window.
///
/// A context is used in one direction only: call `protect_*` on the outbound context and
/// `unprotect_*` on the inbound one ([`contexts_from_keying_material`] builds both).
/// All four operations work in place on a buffer the caller owns and never allocate;
/// per-SSRC state is kept for up to [`MAX_SSRCS`] SSRCs.
///
/// On unprotect, the rollover counter and replay window of an SSRC change only after the
/// packet authenticated, and an SSRC is remembered only once one of its packets did, so
/// forged packets change nothing.
///
/// [`contexts_from_keying_material`]: super::contexts_from_keying_material
pub struct SrtpContext {
    profile: SrtpProfile,
    transform: Transform,
    rtp: Vec<RtpStream>,
    rtcp: Vec<RtcpStream>,
}

impl fmt::Debug for SrtpContext {
    /// Shows the profile and the SSRCs tracked, never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("rtp_ssrcs", &self.rtp.len())
            .field("rtcp_ssrcs", &self.rtcp.len())
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// Derives the session keys (RFC 3711 section 4.3, key derivation rate 0) from one
    /// direction's master key and master salt.
    ///
    /// Fails with [`SrtpError::BadKeyLength`] unless `master_key` is
    /// [`SrtpProfile::key_len`] and `master_salt` [`SrtpProfile::salt_len`] bytes long.
    pub fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        Ok(Self {
            profile,
            transform: Transform::new(profile, master_key, master_salt)?,
            rtp: Vec::with_capacity(MAX_SSRCS),
            rtcp: Vec::with_capacity(MAX_SSRCS),
        })
    }

    /// The protection profile.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// The rollover counter of `ssrc`'s SRTP stream (of the highest packet protected or
    /// authenticated so far), or `None` if the SSRC has not been seen.
    pub fn rtp_roc(&self, ssrc: u32) -> Option<u32> {
        self.rtp
            .iter()
            .find(|s| s.ssrc == ssrc)
            .map(|s| (s.window.highest() >> 16) as u32)
    }

    /// Protects the RTP packet `buf[..len]` in place: encrypts its payload and appends
    /// the tag; returns the SRTP packet length, `len + profile.rtp_overhead()`.
    ///
    /// `buf` must have room for the tag after `len`. The rollover counter is tracked
    /// from the sequence numbers (RFC 3711 appendix A, as the receiver does), so
    /// retransmissions of older packets get the right one. A sequence number that would
    /// need a rollover counter below 0 (before the stream's first packet) fails with
    /// [`SrtpError::Replay`]; on any error the context is unchanged.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let packet = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        let header = parse_rtp(packet)?;
        if buf.len() < len + self.profile.rtp_overhead() {
            return Err(SrtpError::BufferTooSmall);
        }
        let slot = rtp_slot_or_insert(&mut self.rtp, header.ssrc)?;
        let index = slot.estimate_index(header.seq)?;
        let out = self
            .transform
            .seal_rtp(buf, header.len, len, header.ssrc, index)?;
        slot.accept(index);
        Ok(out)
    }

    /// Unprotects the SRTP packet that is all of `buf` in place: checks replay,
    /// authenticates, decrypts; returns the RTP packet length (`buf[..n]` is the packet).
    ///
    /// Errors: [`SrtpError::Replay`] for a packet index already accepted or older than
    /// the 128-packet window, [`SrtpError::AuthFailed`] for a bad tag;
    /// [`SrtpError::TooShort`] / [`SrtpError::Malformed`] for a bad header. On error
    /// the context is unchanged and `buf` must be dropped.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let before_tag = buf
            .len()
            .checked_sub(self.profile.rtp_overhead())
            .ok_or(SrtpError::TooShort)?;
        let header = parse_rtp(buf.get(..before_tag).ok_or(SrtpError::TooShort)?)?;
        let pos = self.rtp.iter().position(|s| s.ssrc == header.ssrc);
        if pos.is_none() && self.rtp.len() >= MAX_SSRCS {
            return Err(SrtpError::TooManySsrcs);
        }
        let mut stream = match pos.and_then(|i| self.rtp.get(i)) {
            Some(s) => *s,
            None => RtpStream::new(header.ssrc),
        };
        let index = stream.estimate_index(header.seq)?;
        stream.window.check(index)?;
        let n = self
            .transform
            .open_rtp(buf, header.len, header.ssrc, index)?;
        stream.accept(index);
        store(&mut self.rtp, pos, stream);
        Ok(n)
    }

    /// Protects the (compound) RTCP packet `buf[..len]` in place: encrypts everything
    /// after the first 8 bytes and appends `E|SRTCP index` and the tag; returns the
    /// SRTCP packet length, `len + profile.rtcp_overhead()`.
    ///
    /// The SRTCP index counts per sender SSRC (bytes 4..8) from 0.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let packet = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        let ssrc = parse_rtcp(packet)?;
        if buf.len() < len + self.profile.rtcp_overhead() {
            return Err(SrtpError::BufferTooSmall);
        }
        let slot = rtcp_slot_or_insert(&mut self.rtcp, ssrc)?;
        let index = slot.next_index;
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::IndexExhausted);
        }
        let out = self.transform.seal_rtcp(buf, len, ssrc, index)?;
        slot.next_index = index + 1;
        Ok(out)
    }

    /// Unprotects the SRTCP packet that is all of `buf` in place; returns the RTCP
    /// packet length. Packets with the E flag clear are authenticated only.
    ///
    /// Errors as [`unprotect_rtp`](Self::unprotect_rtp); the replay window is over the
    /// SRTCP index of the sender SSRC.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        if buf.len() < RTCP_FIXED_LEN + self.profile.rtcp_overhead() {
            return Err(SrtpError::TooShort);
        }
        let ssrc = parse_rtcp(buf)?;
        let word = self.transform.srtcp_index_word(buf)?;
        let index = word & !E_FLAG;
        let pos = self.rtcp.iter().position(|s| s.ssrc == ssrc);
        if pos.is_none() && self.rtcp.len() >= MAX_SSRCS {
            return Err(SrtpError::TooManySsrcs);
        }
        let mut stream = match pos.and_then(|i| self.rtcp.get(i)) {
            Some(s) => *s,
            None => RtcpStream::new(ssrc),
        };
        stream.window.check(u64::from(index))?;
        let n = self.transform.open_rtcp(buf, ssrc, word)?;
        stream.window.accept(u64::from(index));
        store(&mut self.rtcp, pos, stream);
        Ok(n)
    }
}

/// The state of `ssrc`, added if new. The tables were allocated with room for
/// [`MAX_SSRCS`], so adding never reallocates.
fn rtp_slot_or_insert(
    streams: &mut Vec<RtpStream>,
    ssrc: u32,
) -> Result<&mut RtpStream, SrtpError> {
    let pos = match streams.iter().position(|s| s.ssrc == ssrc) {
        Some(pos) => pos,
        None if streams.len() < MAX_SSRCS => {
            streams.push(RtpStream::new(ssrc));
            streams.len() - 1
        }
        None => return Err(SrtpError::TooManySsrcs),
    };
    streams.get_mut(pos).ok_or(SrtpError::TooManySsrcs)
}

/// As [`rtp_slot_or_insert`], for SRTCP.
fn rtcp_slot_or_insert(
    streams: &mut Vec<RtcpStream>,
    ssrc: u32,
) -> Result<&mut RtcpStream, SrtpError> {
    let pos = match streams.iter().position(|s| s.ssrc == ssrc) {
        Some(pos) => pos,
        None if streams.len() < MAX_SSRCS => {
            streams.push(RtcpStream::new(ssrc));
            streams.len() - 1
        }
        None => return Err(SrtpError::TooManySsrcs),
    };
    streams.get_mut(pos).ok_or(SrtpError::TooManySsrcs)
}

/// Writes back the state of an authenticated packet's stream. The caller checked that a
/// new stream fits, so `push` does not reallocate.
fn store<T>(streams: &mut Vec<T>, pos: Option<usize>, stream: T) {
    match pos.and_then(|i| streams.get_mut(i)) {
        Some(slot) => *slot = stream,
        None => streams.push(stream),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn stream_at(index: u64) -> RtpStream {
        let mut s = RtpStream::new(1);
        s.accept(index);
        s
    }

    /// RFC 3711 appendix A, including both wrap directions.
    #[test]
    fn roc_estimation() {
        let s = stream_at(100);
        assert_eq!(s.estimate_index(101), Ok(101));
        assert_eq!(s.estimate_index(50), Ok(50));
        assert_eq!(s.estimate_index(100 + 0x8000), Ok(100 + 0x8000));
        // Far above s_l while s_l is small: the previous ROC, which is -1 here.
        assert_eq!(s.estimate_index(0xfff0), Err(SrtpError::Replay));
        let s = stream_at((5 << 16) | 10);
        assert_eq!(s.estimate_index(0xfff0), Ok((4 << 16) | 0xfff0));
        let s = stream_at((5 << 16) | 0xfff0);
        assert_eq!(s.estimate_index(3), Ok((6 << 16) | 3));
        assert_eq!(s.estimate_index(0xffee), Ok((5 << 16) | 0xffee));
        let s = stream_at((u64::from(u32::MAX) << 16) | 0xfff0);
        assert_eq!(s.estimate_index(3), Err(SrtpError::IndexExhausted));
        // The first packet fixes ROC 0 whatever its sequence number.
        assert_eq!(RtpStream::new(1).estimate_index(0xfff0), Ok(0xfff0));
    }
}
