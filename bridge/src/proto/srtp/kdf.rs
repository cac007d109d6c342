//! SRTP key derivation: the AES-CM PRF of RFC 3711 section 4.3 with a key derivation
//! rate of 0, which RFC 7714 section 11 reuses for AES-GCM (AES-256-CM PRF for 256-bit
//! keys, as in RFC 6188).

use aws_lc_rs::cipher::{AES_128, AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;

use super::SrtpError;

/// Label of the SRTP encryption key (RFC 3711 section 4.3.1).
pub(super) const LABEL_RTP_ENCRYPTION: u8 = 0x00;
/// Label of the SRTP authentication key.
pub(super) const LABEL_RTP_AUTH: u8 = 0x01;
/// Label of the SRTP salt.
pub(super) const LABEL_RTP_SALT: u8 = 0x02;
/// Label of the SRTCP encryption key (RFC 3711 section 4.3.2).
pub(super) const LABEL_RTCP_ENCRYPTION: u8 = 0x03;
/// Label of the SRTCP authentication key.
pub(super) const LABEL_RTCP_AUTH: u8 = 0x04;
/// Label of the SRTCP salt.
pub(super) const LABEL_RTCP_SALT: u8 = 0x05;

/// Longest master salt the PRF takes (112 bits).
const MAX_SALT_LEN: usize = 14;

/// The PRF keyed with one master key and salt.
pub(super) struct Kdf {
    aes: EncryptingKey,
    /// The master salt left-aligned in a counter block; shorter (GCM) salts are padded
    /// with zeros, as libsrtp does.
    salt_block: [u8; 16],
}

impl Kdf {
    /// Keys the PRF. The master key must be 16 or 32 bytes, the salt at most 14.
    pub(super) fn new(master_key: &[u8], master_salt: &[u8]) -> Result<Self, SrtpError> {
        let algorithm = match master_key.len() {
            16 => &AES_128,
            32 => &AES_256,
            _ => return Err(SrtpError::BadKeyLength),
        };
        if master_salt.len() > MAX_SALT_LEN {
            return Err(SrtpError::BadKeyLength);
        }
        let key = UnboundCipherKey::new(algorithm, master_key).map_err(|_| SrtpError::Crypto)?;
        let aes = EncryptingKey::ctr(key).map_err(|_| SrtpError::Crypto)?;
        let mut salt_block = [0u8; 16];
        salt_block[..master_salt.len()].copy_from_slice(master_salt);
        Ok(Self { aes, salt_block })
    }

    /// Fills `out` with the session key for `label`: AES-CM keystream starting at the
    /// block `(master_salt XOR label << 48) << 16` (key derivation rate 0).
    pub(super) fn derive(&self, label: u8, out: &mut [u8]) -> Result<(), SrtpError> {
        let mut iv = self.salt_block;
        iv[7] ^= label;
        out.fill(0);
        let context = EncryptionContext::Iv128(FixedLength::from(iv));
        self.aes
            .less_safe_encrypt(out, context)
            .map(|_| ())
            .map_err(|_| SrtpError::Crypto)
    }
}

/// Best-effort erasure of key material on the stack once the cipher objects hold it.
pub(super) fn wipe(secret: &mut [u8]) {
    secret.fill(0);
    std::hint::black_box(secret);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::hex;
    use super::*;

    /// RFC 3711 appendix B.3.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let kdf = Kdf::new(
            &hex("E1F97A0D3E018BE0D64FA32C06DE4139"),
            &hex("0EC675AD498AFEEBB6960B3AABE6"),
        )
        .unwrap();
        let mut key = [0u8; 16];
        kdf.derive(LABEL_RTP_ENCRYPTION, &mut key).unwrap();
        assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut salt = [0u8; 14];
        kdf.derive(LABEL_RTP_SALT, &mut salt).unwrap();
        assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        // The RFC prints 94 bytes of the auth keystream; SHA1-80 uses the first 20.
        let mut auth = [0u8; 94];
        kdf.derive(LABEL_RTP_AUTH, &mut auth).unwrap();
        assert_eq!(
            auth.to_vec(),
            hex(concat!(
                "CEBE321F6FF7716B6FD4AB49AF256A15",
                "6D38BAA48F0A0ACF3C34E2359E6CDBCE",
                "E049646C43D9327AD175578EF7227098",
                "6371C10C9A369AC2F94A8C5FBCDDDC25",
                "6D6E919A48B610EF17C2041E47403576",
                "6B68642C59BBFC2F34DB60DBDFB2"
            ))
        );
    }

    /// RFC 6188 section 7.2: the AES-256-CM PRF that AEAD_AES_256_GCM also uses.
    #[test]
    fn rfc6188_aes256_key_derivation() {
        let kdf = Kdf::new(
            &hex("f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6"),
            &hex("3b04803de51ee7c96423ab5b78d2"),
        )
        .unwrap();
        let mut key = [0u8; 32];
        kdf.derive(LABEL_RTP_ENCRYPTION, &mut key).unwrap();
        assert_eq!(
            key.to_vec(),
            hex("5ba1064e30ec51613cad926c5a28ef731ec7fb397f70a960653caf06554cd8c4")
        );
        let mut salt = [0u8; 14];
        kdf.derive(LABEL_RTP_SALT, &mut salt).unwrap();
        assert_eq!(salt.to_vec(), hex("fa31791685ca444a9e07c6c64e93"));
        let mut auth = [0u8; 20];
        kdf.derive(LABEL_RTP_AUTH, &mut auth).unwrap();
        assert_eq!(
            auth.to_vec(),
            hex("fd9c32d39ed5fbb5a9dc96b30818454d1313dc05")
        );
    }

    #[test]
    fn labels_give_different_keys_and_lengths_are_checked() {
        let kdf = Kdf::new(&[7; 16], &[9; 12]).unwrap();
        let mut seen = Vec::new();
        for label in [
            LABEL_RTP_ENCRYPTION,
            LABEL_RTP_AUTH,
            LABEL_RTP_SALT,
            LABEL_RTCP_ENCRYPTION,
            LABEL_RTCP_AUTH,
            LABEL_RTCP_SALT,
        ] {
            let mut k = [0u8; 16];
            kdf.derive(label, &mut k).unwrap();
            assert!(!seen.contains(&k));
            seen.push(k);
        }
        assert_eq!(
            Kdf::new(&[0; 24], &[0; 14]).err(),
            Some(SrtpError::BadKeyLength)
        );
        assert_eq!(
            Kdf::new(&[0; 16], &[0; 15]).err(),
            Some(SrtpError::BadKeyLength)
        );
    }
}
