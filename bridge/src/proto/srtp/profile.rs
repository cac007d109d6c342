//! SRTP protection profiles (RFC 5764 section 4.1.2, RFC 7714 section 14.2).

/// Length of the HMAC-SHA1 authentication key of the AES-CM profile (RFC 3711 section 8.1).
pub(super) const CM_AUTH_KEY_LEN: usize = 20;
/// Length of the truncated HMAC-SHA1 tag of `*_80` profiles.
pub(super) const CM_TAG_LEN: usize = 10;
/// Length of the AES-GCM tag (RFC 7714 section 7).
pub(super) const GCM_TAG_LEN: usize = 16;
/// Length of the E flag plus 31-bit SRTCP index that every SRTCP packet carries.
pub(super) const SRTCP_INDEX_LEN: usize = 4;

/// An SRTP protection profile: cipher, key lengths and tag sizes.
///
/// Only the profiles browsers negotiate today are supported;
/// [`AeadAes128Gcm`](Self::AeadAes128Gcm) is the preferred one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// `SRTP_AES128_CM_HMAC_SHA1_80` (RFC 3711, RFC 5764): AES-128 counter mode with an
    /// 80-bit HMAC-SHA1 tag for both SRTP and SRTCP.
    Aes128CmSha1_80,
    /// `SRTP_AEAD_AES_128_GCM` (RFC 7714): AES-128-GCM with a 16-byte tag.
    AeadAes128Gcm,
    /// `SRTP_AEAD_AES_256_GCM` (RFC 7714): AES-256-GCM with a 16-byte tag.
    AeadAes256Gcm,
}

impl SrtpProfile {
    /// The bridge's order of preference, and the default of `media.srtp_profiles`:
    /// AES-128-GCM first (DESIGN.md), then AES-256-GCM, then AES-CM with HMAC-SHA1.
    pub const PREFERRED: &'static [SrtpProfile] = &[
        Self::AeadAes128Gcm,
        Self::AeadAes256Gcm,
        Self::Aes128CmSha1_80,
    ];

    /// What browsers and aiortc offer, in their order: both GCM profiles (256 first),
    /// then AES-CM. The default offer of the client in [`crate::proto::client`].
    pub const BROWSER_OFFER: &'static [SrtpProfile] = &[
        Self::AeadAes256Gcm,
        Self::AeadAes128Gcm,
        Self::Aes128CmSha1_80,
    ];

    /// The registered name (RFC 5764 section 4.1.2, RFC 7714 section 14.2), as used in
    /// `media.srtp_profiles` and in logs and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Aes128CmSha1_80 => "SRTP_AES128_CM_HMAC_SHA1_80",
            Self::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
            Self::AeadAes256Gcm => "SRTP_AEAD_AES_256_GCM",
        }
    }

    /// The profile with this registered name (see [`SrtpProfile::name`]), if supported.
    /// OpenSSL's `SRTP_AES128_CM_SHA1_80` (also Janus's and aiortc's) is accepted too.
    pub fn from_name(name: &str) -> Option<Self> {
        if name == "SRTP_AES128_CM_SHA1_80" {
            return Some(Self::Aes128CmSha1_80);
        }
        [
            Self::Aes128CmSha1_80,
            Self::AeadAes128Gcm,
            Self::AeadAes256Gcm,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }

    /// The profile for a DTLS-SRTP protection profile identifier (the `use_srtp`
    /// extension value: 0x0001, 0x0007, 0x0008), if supported.
    pub const fn from_dtls_id(id: u16) -> Option<Self> {
        match id {
            0x0001 => Some(Self::Aes128CmSha1_80),
            0x0007 => Some(Self::AeadAes128Gcm),
            0x0008 => Some(Self::AeadAes256Gcm),
            _ => None,
        }
    }

    /// The DTLS-SRTP protection profile identifier (RFC 5764 section 4.1.2, RFC 7714
    /// section 14.2).
    pub const fn dtls_id(self) -> u16 {
        match self {
            Self::Aes128CmSha1_80 => 0x0001,
            Self::AeadAes128Gcm => 0x0007,
            Self::AeadAes256Gcm => 0x0008,
        }
    }

    /// Whether the profile is an AEAD (AES-GCM) one.
    pub const fn is_aead(self) -> bool {
        !matches!(self, Self::Aes128CmSha1_80)
    }

    /// Length in bytes of the master key, which is also the session encryption key
    /// length: 16, or 32 for AES-256-GCM.
    pub const fn key_len(self) -> usize {
        match self {
            Self::Aes128CmSha1_80 | Self::AeadAes128Gcm => 16,
            Self::AeadAes256Gcm => 32,
        }
    }

    /// Length in bytes of the master salt, which is also the session salt length:
    /// 14 for AES-CM, 12 for AES-GCM.
    pub const fn salt_len(self) -> usize {
        match self {
            Self::Aes128CmSha1_80 => 14,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => 12,
        }
    }

    /// Length in bytes of the session authentication key: 20 for HMAC-SHA1, 0 for AEAD
    /// profiles (GCM authenticates with the encryption key).
    pub const fn auth_key_len(self) -> usize {
        match self {
            Self::Aes128CmSha1_80 => CM_AUTH_KEY_LEN,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => 0,
        }
    }

    /// Length of the DTLS-SRTP exported keying material for this profile:
    /// `2 * (key_len + salt_len)` (RFC 5764 section 4.2).
    pub const fn keying_material_len(self) -> usize {
        2 * (self.key_len() + self.salt_len())
    }

    /// Bytes that protecting adds to an RTP packet: the authentication tag (10 or 16).
    pub const fn rtp_overhead(self) -> usize {
        match self {
            Self::Aes128CmSha1_80 => CM_TAG_LEN,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => GCM_TAG_LEN,
        }
    }

    /// Bytes that protecting adds to an RTCP packet: the E flag and SRTCP index (4) plus
    /// the authentication tag (10 or 16).
    pub const fn rtcp_overhead(self) -> usize {
        SRTCP_INDEX_LEN + self.rtp_overhead()
    }
}

impl std::fmt::Display for SrtpProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for SrtpProfile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown SRTP profile {name:?}: expected SRTP_AEAD_AES_128_GCM, \
                 SRTP_AEAD_AES_256_GCM or SRTP_AES128_CM_HMAC_SHA1_80"
            ))
        })
    }
}
