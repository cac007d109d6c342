//! The one error type of the SRTP module.

/// Why a packet could not be protected or unprotected, or a context not built.
///
/// Variants caused by what a peer sent (`TooShort`, `Malformed`, `AuthFailed`, `Replay`,
/// `TooManySsrcs` on unprotect) mean "drop the packet and count it"; the others point at
/// the caller ([`SrtpError::is_peer_error`] tells them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// The packet is shorter than its fixed header plus the SRTP/SRTCP trailer.
    #[error("packet too short for SRTP/SRTCP")]
    TooShort,
    /// The RTP/RTCP header is not valid: wrong version, or the CSRC list or header
    /// extension runs past the end of the packet.
    #[error("malformed RTP/RTCP header")]
    Malformed,
    /// The authentication tag did not verify: tampered packet, wrong keys, or a
    /// rollover counter guessed wrongly after a very long gap.
    #[error("SRTP/SRTCP authentication failed")]
    AuthFailed,
    /// The packet index was already accepted, or is too old for the replay window
    /// (or, for RTP, older than the first packet of its stream).
    #[error("replayed or too old SRTP/SRTCP packet")]
    Replay,
    /// The context already tracks its maximum number of SSRCs
    /// ([`MAX_SSRCS`](super::MAX_SSRCS)); the packet's SSRC is a new one.
    #[error("too many SSRCs in one SRTP context")]
    TooManySsrcs,
    /// The caller's buffer has no room for the authentication tag (protect), or `len`
    /// is larger than the buffer.
    #[error("buffer too small for the SRTP/SRTCP trailer")]
    BufferTooSmall,
    /// The master key, master salt or keying material length does not match the
    /// profile.
    #[error("master key, salt or keying material has the wrong length for the profile")]
    BadKeyLength,
    /// The stream used up its packet indices (2^48 RTP or 2^31 RTCP packets with one
    /// key, RFC 3711 section 9.2): the keys must be renegotiated.
    #[error("SRTP/SRTCP packet index exhausted, rekeying required")]
    IndexExhausted,
    /// The crypto library refused an operation that should not fail (a bug).
    #[error("crypto library failure")]
    Crypto,
}

impl SrtpError {
    /// True when the error was caused by what the peer sent (drop and count the
    /// packet), false when it points at the local caller or the crypto library.
    pub fn is_peer_error(&self) -> bool {
        matches!(
            self,
            Self::TooShort | Self::Malformed | Self::AuthFailed | Self::Replay | Self::TooManySsrcs
        )
    }
}
