//! SRTP and SRTCP (RFC 3711) with the AES-GCM transforms of RFC 7714, keyed from
//! DTLS-SRTP (RFC 5764).
//!
//! One [`SrtpContext`] per direction of a DTLS association covers every SSRC of that
//! direction. [`contexts_from_keying_material`] splits the exported keying material into
//! the outbound (protect) and inbound (unprotect) contexts. All packet operations work
//! in place on a buffer the caller owns, and none allocates: keys and cipher objects are
//! set up when the context is built, and per-SSRC state lives in tables allocated then.
//!
//! ```text
//! receive:  n = inbound.unprotect_rtp(&mut buf[..received])?;   // buf[..n] is RTP
//! send:     n = outbound.protect_rtp(&mut buf, rtp_len)?;         // buf[..n] is SRTP
//! ```
//!
//! Crypto comes from aws-lc-rs: AES-CTR (`cipher::EncryptingKey::ctr` with a caller
//! supplied counter block) and HMAC-SHA1 for `AES_CM_128_HMAC_SHA1_80`, `aead::LessSafeKey`
//! for AES-GCM. Tags are compared in constant time.

mod cipher;
mod context;
mod error;
mod header;
mod kdf;
mod profile;
mod replay;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use self::context::{MAX_SSRCS, SrtpContext};
pub use self::error::SrtpError;
pub use self::profile::SrtpProfile;

/// Splits DTLS-SRTP keying material into the context that protects what we send and
/// the one that unprotects what we receive.
///
/// `material` is the output of the DTLS exporter with label `"EXTRACTOR-dtls_srtp"`,
/// [`SrtpProfile::keying_material_len`] bytes laid out as
/// `client_key | server_key | client_salt | server_salt` (RFC 5764 section 4.2). The
/// DTLS client sends with the client key and salt, so `we_are_client` picks the halves.
/// The bridge is `a=setup:passive`, so it is normally the server (`false`).
pub fn contexts_from_keying_material(
    profile: SrtpProfile,
    material: &[u8],
    we_are_client: bool,
) -> Result<(SrtpContext, SrtpContext), SrtpError> {
    if material.len() != profile.keying_material_len() {
        return Err(SrtpError::BadKeyLength);
    }
    let (keys, salts) = material.split_at(2 * profile.key_len());
    let (client_key, server_key) = keys.split_at(profile.key_len());
    let (client_salt, server_salt) = salts.split_at(profile.salt_len());
    let client = SrtpContext::new(profile, client_key, client_salt)?;
    let server = SrtpContext::new(profile, server_key, server_salt)?;
    Ok(if we_are_client {
        (client, server)
    } else {
        (server, client)
    })
}
