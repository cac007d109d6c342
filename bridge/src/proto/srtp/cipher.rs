//! The per-packet transforms, keyed once per context: AES-CM with HMAC-SHA1-80
//! (RFC 3711 sections 4.1.1 and 4.2) and AES-GCM (RFC 7714 sections 8 and 9).
//!
//! Nothing here allocates: counter blocks, nonces, AAD and tags live on the stack, and
//! aws-lc-rs keeps the expanded AES keys and the keyed HMAC state inside the key objects.
//! The callers check lengths and pick the packet index; these functions only transform.

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use super::SrtpError;
use super::kdf::{self, Kdf};
use super::profile::{CM_AUTH_KEY_LEN, CM_TAG_LEN, GCM_TAG_LEN, SRTCP_INDEX_LEN, SrtpProfile};

/// The E flag of the SRTCP index word: the payload is encrypted.
pub(super) const E_FLAG: u32 = 0x8000_0000;
/// AES-CM session salt length (112 bits).
const CM_SALT_LEN: usize = 14;
/// AES-GCM session salt length (96 bits).
const GCM_SALT_LEN: usize = 12;

/// The KDF labels of one of SRTP and SRTCP.
struct Labels {
    encryption: u8,
    auth: u8,
    salt: u8,
}

const RTP_LABELS: Labels = Labels {
    encryption: kdf::LABEL_RTP_ENCRYPTION,
    auth: kdf::LABEL_RTP_AUTH,
    salt: kdf::LABEL_RTP_SALT,
};

const RTCP_LABELS: Labels = Labels {
    encryption: kdf::LABEL_RTCP_ENCRYPTION,
    auth: kdf::LABEL_RTCP_AUTH,
    salt: kdf::LABEL_RTCP_SALT,
};

/// The session keys of one context, for SRTP and SRTCP.
#[allow(
    clippy::large_enum_variant,
    reason = "one per context, built once; boxing would add a pointer chase per packet"
)]
pub(super) enum Transform {
    /// AES_CM_128_HMAC_SHA1_80.
    Cm {
        /// SRTP keys (labels 0, 1, 2).
        rtp: CmKeys,
        /// SRTCP keys (labels 3, 4, 5).
        rtcp: CmKeys,
    },
    /// AEAD_AES_128_GCM and AEAD_AES_256_GCM.
    Gcm {
        /// SRTP keys (labels 0, 2).
        rtp: GcmKeys,
        /// SRTCP keys (labels 3, 5).
        rtcp: GcmKeys,
    },
}

impl Transform {
    /// Derives the session keys from the master key and salt.
    pub(super) fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        if master_key.len() != profile.key_len() || master_salt.len() != profile.salt_len() {
            return Err(SrtpError::BadKeyLength);
        }
        let kdf = Kdf::new(master_key, master_salt)?;
        match profile {
            SrtpProfile::Aes128CmSha1_80 => Ok(Self::Cm {
                rtp: CmKeys::derive(&kdf, RTP_LABELS)?,
                rtcp: CmKeys::derive(&kdf, RTCP_LABELS)?,
            }),
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => Ok(Self::Gcm {
                rtp: GcmKeys::derive(profile, &kdf, RTP_LABELS)?,
                rtcp: GcmKeys::derive(profile, &kdf, RTCP_LABELS)?,
            }),
        }
    }

    /// Encrypts `buf[hdr_len..len]` and writes the tag at `buf[len..]`; returns the new
    /// length. The caller has checked `buf.len() >= len + tag` and `hdr_len <= len`.
    pub(super) fn seal_rtp(
        &self,
        buf: &mut [u8],
        hdr_len: usize,
        len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        match self {
            Self::Cm { rtp, .. } => rtp.seal_rtp(buf, hdr_len, len, ssrc, index),
            Self::Gcm { rtp, .. } => rtp.seal(buf, hdr_len, len, ssrc, index),
        }
    }

    /// Authenticates the whole of `buf` as an SRTP packet and decrypts its payload in
    /// place; returns the RTP packet length. The caller has checked that the header
    /// (`hdr_len` bytes) lies before the tag.
    pub(super) fn open_rtp(
        &self,
        buf: &mut [u8],
        hdr_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        match self {
            Self::Cm { rtp, .. } => rtp.open_rtp(buf, hdr_len, ssrc, index),
            Self::Gcm { rtp, .. } => rtp.open(buf, hdr_len, ssrc, index),
        }
    }

    /// Encrypts the RTCP packet `buf[..len]` after its first 8 bytes and appends the
    /// SRTCP trailer; returns the new length. The caller has checked `len >= 8` and the
    /// room in `buf`.
    pub(super) fn seal_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
    ) -> Result<usize, SrtpError> {
        match self {
            Self::Cm { rtcp, .. } => rtcp.seal_rtcp(buf, len, ssrc, index),
            Self::Gcm { rtcp, .. } => rtcp.seal_rtcp(buf, len, ssrc, index),
        }
    }

    /// Reads the E flag and SRTCP index word of an SRTCP packet of at least
    /// `8 + rtcp_overhead` bytes.
    pub(super) fn srtcp_index_word(&self, buf: &[u8]) -> Result<u32, SrtpError> {
        let tag_len = match self {
            Self::Cm { .. } => CM_TAG_LEN,
            Self::Gcm { .. } => 0,
        };
        let end = buf.len().checked_sub(tag_len).ok_or(SrtpError::TooShort)?;
        let word = buf
            .get(..end)
            .and_then(|b| b.last_chunk::<SRTCP_INDEX_LEN>())
            .ok_or(SrtpError::TooShort)?;
        Ok(u32::from_be_bytes(*word))
    }

    /// Authenticates the whole of `buf` as an SRTCP packet and decrypts it in place if
    /// `word` (from [`srtcp_index_word`](Self::srtcp_index_word)) has the E flag; returns
    /// the RTCP packet length.
    pub(super) fn open_rtcp(
        &self,
        buf: &mut [u8],
        ssrc: u32,
        word: u32,
    ) -> Result<usize, SrtpError> {
        match self {
            Self::Cm { rtcp, .. } => rtcp.open_rtcp(buf, ssrc, word),
            Self::Gcm { rtcp, .. } => rtcp.open_rtcp(buf, ssrc, word),
        }
    }
}

/// XORs the SSRC into bytes 4..8 and the 48-bit packet index into bytes 8..14 of `block`
/// (RFC 3711 section 4.1.1; RFC 7714 sections 8.1 and 9.1 after dropping the first
/// four zero bytes, which makes the GCM nonce layout the same shifted by 4).
fn xor_ssrc_index(block: &mut [u8], ssrc: u32, index: u64) {
    let index = index.to_be_bytes();
    let src = ssrc
        .to_be_bytes()
        .into_iter()
        .chain(index.into_iter().skip(2));
    let skip = block.len().saturating_sub(10);
    for (b, s) in block.iter_mut().skip(skip).zip(src) {
        *b ^= s;
    }
}

/// AES-128-CM + HMAC-SHA1 session keys for SRTP or SRTCP.
pub(super) struct CmKeys {
    aes: EncryptingKey,
    auth: hmac::Key,
    salt: [u8; CM_SALT_LEN],
}

impl CmKeys {
    /// Derives the session encryption key, authentication key and salt.
    fn derive(kdf: &Kdf, labels: Labels) -> Result<Self, SrtpError> {
        let mut key = [0u8; 16];
        let mut auth = [0u8; CM_AUTH_KEY_LEN];
        let mut salt = [0u8; CM_SALT_LEN];
        kdf.derive(labels.encryption, &mut key)?;
        kdf.derive(labels.auth, &mut auth)?;
        kdf.derive(labels.salt, &mut salt)?;
        let keys = Self::from_session_keys(&key, &auth, salt);
        kdf::wipe(&mut key);
        kdf::wipe(&mut auth);
        keys
    }

    /// Builds the transform from session keys directly (test vectors use these).
    pub(super) fn from_session_keys(
        key: &[u8],
        auth: &[u8],
        salt: [u8; CM_SALT_LEN],
    ) -> Result<Self, SrtpError> {
        let key = UnboundCipherKey::new(&AES_128, key).map_err(|_| SrtpError::BadKeyLength)?;
        Ok(Self {
            aes: EncryptingKey::ctr(key).map_err(|_| SrtpError::Crypto)?,
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth),
            salt,
        })
    }

    /// XORs the AES-CM keystream for (`ssrc`, `index`) into `data`.
    pub(super) fn apply_keystream(
        &self,
        ssrc: u32,
        index: u64,
        data: &mut [u8],
    ) -> Result<(), SrtpError> {
        if data.is_empty() {
            return Ok(());
        }
        let mut iv = [0u8; 16];
        iv[..CM_SALT_LEN].copy_from_slice(&self.salt);
        xor_ssrc_index(&mut iv[..CM_SALT_LEN], ssrc, index);
        let context = EncryptionContext::Iv128(FixedLength::from(iv));
        self.aes
            .less_safe_encrypt(data, context)
            .map(|_| ())
            .map_err(|_| SrtpError::Crypto)
    }

    /// HMAC-SHA1 over `data || trailer`, truncated to 80 bits.
    fn tag(&self, data: &[u8], trailer: &[u8]) -> [u8; CM_TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.auth);
        ctx.update(data);
        ctx.update(trailer);
        let full = ctx.sign();
        let mut tag = [0u8; CM_TAG_LEN];
        tag.copy_from_slice(&full.as_ref()[..CM_TAG_LEN]);
        tag
    }

    /// Checks the 80-bit tag at the end of `buf` in constant time; returns the length
    /// before the tag.
    fn verify(&self, buf: &[u8], trailer: &[u8]) -> Result<usize, SrtpError> {
        let (authenticated, received) = buf
            .split_last_chunk::<CM_TAG_LEN>()
            .ok_or(SrtpError::TooShort)?;
        let expected = self.tag(authenticated, trailer);
        verify_slices_are_equal(&expected, received).map_err(|_| SrtpError::AuthFailed)?;
        Ok(authenticated.len())
    }

    fn seal_rtp(
        &self,
        buf: &mut [u8],
        hdr_len: usize,
        len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let (packet, rest) = buf
            .split_at_mut_checked(len)
            .ok_or(SrtpError::BufferTooSmall)?;
        let payload = packet.get_mut(hdr_len..).ok_or(SrtpError::Malformed)?;
        self.apply_keystream(ssrc, index, payload)?;
        // RFC 3711 4.2: the authenticated portion is followed by the ROC.
        let roc = ((index >> 16) as u32).to_be_bytes();
        let tag = self.tag(packet, &roc);
        rest.get_mut(..CM_TAG_LEN)
            .ok_or(SrtpError::BufferTooSmall)?
            .copy_from_slice(&tag);
        Ok(len + CM_TAG_LEN)
    }

    fn open_rtp(
        &self,
        buf: &mut [u8],
        hdr_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let roc = ((index >> 16) as u32).to_be_bytes();
        let len = self.verify(buf, &roc)?;
        let payload = buf.get_mut(hdr_len..len).ok_or(SrtpError::Malformed)?;
        self.apply_keystream(ssrc, index, payload)?;
        Ok(len)
    }

    fn seal_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
    ) -> Result<usize, SrtpError> {
        let end = len + SRTCP_INDEX_LEN + CM_TAG_LEN;
        let packet = buf.get_mut(..end).ok_or(SrtpError::BufferTooSmall)?;
        let payload = packet.get_mut(8..len).ok_or(SrtpError::TooShort)?;
        self.apply_keystream(ssrc, u64::from(index), payload)?;
        let (authenticated, tag_out) = packet.split_at_mut(len + SRTCP_INDEX_LEN);
        if let Some(word) = authenticated.last_chunk_mut::<SRTCP_INDEX_LEN>() {
            *word = (E_FLAG | index).to_be_bytes();
        }
        tag_out.copy_from_slice(&self.tag(authenticated, &[]));
        Ok(end)
    }

    fn open_rtcp(&self, buf: &mut [u8], ssrc: u32, word: u32) -> Result<usize, SrtpError> {
        let len = self
            .verify(buf, &[])?
            .checked_sub(SRTCP_INDEX_LEN)
            .ok_or(SrtpError::TooShort)?;
        if word & E_FLAG != 0 {
            let payload = buf.get_mut(8..len).ok_or(SrtpError::TooShort)?;
            self.apply_keystream(ssrc, u64::from(word & !E_FLAG), payload)?;
        }
        Ok(len)
    }
}

/// AES-GCM session keys for SRTP or SRTCP.
pub(super) struct GcmKeys {
    aead: LessSafeKey,
    salt: [u8; GCM_SALT_LEN],
}

impl GcmKeys {
    /// Derives the session key and salt (GCM has no separate authentication key).
    fn derive(profile: SrtpProfile, kdf: &Kdf, labels: Labels) -> Result<Self, SrtpError> {
        let mut key = [0u8; 32];
        let key = key
            .get_mut(..profile.key_len())
            .ok_or(SrtpError::BadKeyLength)?;
        let mut salt = [0u8; GCM_SALT_LEN];
        kdf.derive(labels.encryption, key)?;
        kdf.derive(labels.salt, &mut salt)?;
        let keys = Self::from_session_keys(key, salt);
        kdf::wipe(key);
        keys
    }

    /// Builds the transform from a session key (16 or 32 bytes) and salt directly.
    pub(super) fn from_session_keys(
        key: &[u8],
        salt: [u8; GCM_SALT_LEN],
    ) -> Result<Self, SrtpError> {
        let algorithm = match key.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            _ => return Err(SrtpError::BadKeyLength),
        };
        let key = UnboundKey::new(algorithm, key).map_err(|_| SrtpError::BadKeyLength)?;
        Ok(Self {
            aead: LessSafeKey::new(key),
            salt,
        })
    }

    /// The 96-bit IV: `00 00 || SSRC || index (48 bits)` XOR salt. For SRTCP the index
    /// is `00 00 || 0 || 31-bit SRTCP index`, which is the same layout.
    fn nonce(&self, ssrc: u32, index: u64) -> Nonce {
        let mut iv = self.salt;
        xor_ssrc_index(&mut iv, ssrc, index);
        Nonce::assume_unique_for_key(iv)
    }

    /// SRTP (RFC 7714 section 8): AAD is the header, the payload is encrypted, the tag
    /// follows it.
    fn seal(
        &self,
        buf: &mut [u8],
        hdr_len: usize,
        len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let (header, rest) = buf
            .split_at_mut_checked(hdr_len)
            .ok_or(SrtpError::Malformed)?;
        let payload_len = len.checked_sub(hdr_len).ok_or(SrtpError::Malformed)?;
        let (payload, tag_out) = rest
            .split_at_mut_checked(payload_len)
            .ok_or(SrtpError::BufferTooSmall)?;
        let tag_out = tag_out
            .get_mut(..GCM_TAG_LEN)
            .ok_or(SrtpError::BufferTooSmall)?;
        let tag = self
            .aead
            .seal_in_place_separate_tag(self.nonce(ssrc, index), Aad::from(&*header), payload)
            .map_err(|_| SrtpError::Crypto)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(len + GCM_TAG_LEN)
    }

    fn open(
        &self,
        buf: &mut [u8],
        hdr_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let (header, rest) = buf
            .split_at_mut_checked(hdr_len)
            .ok_or(SrtpError::Malformed)?;
        if rest.len() < GCM_TAG_LEN {
            return Err(SrtpError::TooShort);
        }
        let plain = self
            .aead
            .open_in_place(self.nonce(ssrc, index), Aad::from(&*header), rest)
            .map_err(|_| SrtpError::AuthFailed)?;
        Ok(hdr_len + plain.len())
    }

    /// SRTCP (RFC 7714 section 9): `header(8) || ciphertext || tag || E|index`, with AAD
    /// `header(8) || E|index`.
    fn seal_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
    ) -> Result<usize, SrtpError> {
        let end = len + GCM_TAG_LEN + SRTCP_INDEX_LEN;
        let packet = buf.get_mut(..end).ok_or(SrtpError::BufferTooSmall)?;
        let word = (E_FLAG | index).to_be_bytes();
        let (header, rest) = packet.split_at_mut_checked(8).ok_or(SrtpError::TooShort)?;
        let mut aad = [0u8; 12];
        aad[..8].copy_from_slice(header);
        aad[8..].copy_from_slice(&word);
        let (payload, trailer) = rest
            .split_at_mut_checked(len - 8)
            .ok_or(SrtpError::TooShort)?;
        let tag = self
            .aead
            .seal_in_place_separate_tag(self.nonce(ssrc, u64::from(index)), Aad::from(aad), payload)
            .map_err(|_| SrtpError::Crypto)?;
        let (tag_out, word_out) = trailer.split_at_mut(GCM_TAG_LEN);
        tag_out.copy_from_slice(tag.as_ref());
        word_out.copy_from_slice(&word);
        Ok(end)
    }

    fn open_rtcp(&self, buf: &mut [u8], ssrc: u32, word: u32) -> Result<usize, SrtpError> {
        let nonce = self.nonce(ssrc, u64::from(word & !E_FLAG));
        let word_bytes = word.to_be_bytes();
        let end = buf
            .len()
            .checked_sub(SRTCP_INDEX_LEN)
            .ok_or(SrtpError::TooShort)?;
        let len = end.checked_sub(GCM_TAG_LEN).ok_or(SrtpError::TooShort)?;
        if len < 8 {
            return Err(SrtpError::TooShort);
        }
        if word & E_FLAG != 0 {
            let (header, rest) = buf.split_at_mut(8);
            let mut aad = [0u8; 12];
            aad[..8].copy_from_slice(header);
            aad[8..].copy_from_slice(&word_bytes);
            let sealed = rest.get_mut(..end - 8).ok_or(SrtpError::TooShort)?;
            self.aead
                .open_in_place(nonce, Aad::from(aad), sealed)
                .map_err(|_| SrtpError::AuthFailed)?;
        } else {
            // RFC 7714 9.2: unencrypted, the AAD is the whole RTCP packet then E|index,
            // which the tag separates on the wire. Move the tag out and the index word
            // next to the packet so the AAD is one slice; the buffer is dropped anyway if
            // authentication fails.
            let mut tag = [0u8; GCM_TAG_LEN];
            tag.copy_from_slice(buf.get(len..end).ok_or(SrtpError::TooShort)?);
            let aad = buf
                .get_mut(..len + SRTCP_INDEX_LEN)
                .ok_or(SrtpError::TooShort)?;
            if let Some(w) = aad.last_chunk_mut::<SRTCP_INDEX_LEN>() {
                *w = word_bytes;
            }
            self.aead
                .open_in_place(nonce, Aad::from(&*aad), &mut tag)
                .map_err(|_| SrtpError::AuthFailed)?;
        }
        Ok(len)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::hex;
    use super::*;

    const GCM_KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
    const GCM_KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const GCM_SALT: &str = "517569642070726f2071756f";
    /// RFC 7714 section 16: SSRC 0x5501a0b2, sequence 0xf17b, ROC 0.
    const RTP: &str = concat!(
        "8040f17b8041f8d35501a0b2",
        "47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573"
    );
    /// RFC 7714 section 16.1.1.
    const SRTP_128: &str = concat!(
        "8040f17b8041f8d35501a0b2",
        "f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833",
        "899d7f27beb16a9152cf765ee4390cce"
    );
    /// RFC 7714 section 16.2.1.
    const SRTP_256: &str = concat!(
        "8040f17b8041f8d35501a0b2",
        "32b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a0276ffae0f1ba63799b87b",
        "7aa3db36dfffd6b0f9bb7878d7a76c13"
    );
    /// The RTCP packet of RFC 7714 sections 17.1 to 17.3 (SSRC "Mars").
    const RTCP: &str = concat!(
        "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61",
        "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef"
    );
    /// RFC 7714 section 17.1.
    const SRTCP_128: &str = concat!(
        "81c8000d4d617273",
        "63e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275b",
        "c84aa45896cf4d2fc5abf87245d9eade",
        "800005d4"
    );
    /// RFC 7714 section 17.2.
    const SRTCP_256: &str = concat!(
        "81c8000d4d617273",
        "d50ae4d1f5ce5d304ba297e47d470c282c3ece5dbffe0a50a2eaa5c1110555be8415f658c61de0476f1b6fad",
        "1d1eb30c4446839f57ff6f6cb26ac3be",
        "800005d4"
    );
    /// RFC 7714 section 17.3: AEAD_AES_128_GCM, authenticated but not encrypted.
    const SRTCP_128_AUTH_ONLY: &str = concat!(
        "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61",
        "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
        "841dd9683dd78ec92ae58790125f62b3",
        "000005d4"
    );
    const SRTCP_INDEX: u32 = 0x5d4;

    fn gcm(key: &str) -> GcmKeys {
        let salt: [u8; 12] = hex(GCM_SALT).try_into().unwrap();
        GcmKeys::from_session_keys(&hex(key), salt).unwrap()
    }

    /// RFC 3711 appendix B.2: the AES-CM keystream, including the counter values near
    /// the end of a 2^16-block segment.
    #[test]
    fn rfc3711_b2_aes_cm_keystream() {
        let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
        let keys =
            CmKeys::from_session_keys(&hex("2B7E151628AED2A6ABF7158809CF4F3C"), &[0; 20], salt)
                .unwrap();
        let mut stream = vec![0u8; 16 * 0xff02];
        keys.apply_keystream(0, 0, &mut stream).unwrap();
        let block = |n: usize| stream[16 * n..16 * (n + 1)].to_vec();
        assert_eq!(block(0), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
        assert_eq!(block(1), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
        assert_eq!(block(2), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
        assert_eq!(block(0xfeff), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
        assert_eq!(block(0xff00), hex("362B7C3C6773516318A077D7FC5073AE"));
        assert_eq!(block(0xff01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
    }

    /// RFC 7714 sections 16.1.1 and 16.2.1 (encryption) and 16.1.2 and 16.2.2
    /// (decryption) for AEAD_AES_128_GCM and AEAD_AES_256_GCM.
    #[test]
    fn rfc7714_16_srtp_gcm() {
        for (key, expected) in [(GCM_KEY_128, SRTP_128), (GCM_KEY_256, SRTP_256)] {
            let keys = gcm(key);
            let plain = hex(RTP);
            let mut buf = plain.clone();
            buf.resize(plain.len() + GCM_TAG_LEN, 0);
            let n = keys
                .seal(&mut buf, 12, plain.len(), 0x5501_a0b2, 0xf17b)
                .unwrap();
            assert_eq!(&buf[..n], &hex(expected)[..]);
            let n = keys.open(&mut buf, 12, 0x5501_a0b2, 0xf17b).unwrap();
            assert_eq!(&buf[..n], &plain[..]);
            // A wrong index (so a wrong IV) does not authenticate.
            let mut buf = hex(expected);
            assert_eq!(
                keys.open(&mut buf, 12, 0x5501_a0b2, 0x1_f17b),
                Err(SrtpError::AuthFailed)
            );
        }
    }

    /// RFC 7714 sections 17.1 and 17.2: SRTCP with AES-128-GCM and AES-256-GCM.
    #[test]
    fn rfc7714_17_srtcp_gcm() {
        for (key, expected) in [(GCM_KEY_128, SRTCP_128), (GCM_KEY_256, SRTCP_256)] {
            let keys = gcm(key);
            let plain = hex(RTCP);
            let mut buf = plain.clone();
            buf.resize(plain.len() + GCM_TAG_LEN + SRTCP_INDEX_LEN, 0);
            let n = keys
                .seal_rtcp(&mut buf, plain.len(), 0x4d61_7273, SRTCP_INDEX)
                .unwrap();
            assert_eq!(&buf[..n], &hex(expected)[..]);
            let n = keys
                .open_rtcp(&mut buf, 0x4d61_7273, E_FLAG | SRTCP_INDEX)
                .unwrap();
            assert_eq!(&buf[..n], &plain[..]);
        }
    }

    /// RFC 7714 section 17.3: an unencrypted, authenticated SRTCP packet (E flag clear).
    #[test]
    fn rfc7714_17_3_srtcp_gcm_auth_only() {
        let keys = gcm(GCM_KEY_128);
        let mut buf = hex(SRTCP_128_AUTH_ONLY);
        let n = keys.open_rtcp(&mut buf, 0x4d61_7273, SRTCP_INDEX).unwrap();
        assert_eq!(&buf[..n], &hex(RTCP)[..]);
        let mut buf = hex(SRTCP_128_AUTH_ONLY);
        buf[20] ^= 1;
        assert_eq!(
            keys.open_rtcp(&mut buf, 0x4d61_7273, SRTCP_INDEX),
            Err(SrtpError::AuthFailed)
        );
    }
}
