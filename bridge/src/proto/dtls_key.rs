//! The bridge's DTLS signing key, parsed once instead of once per association.
//!
//! dimpl loads the certificate's private key (PKCS#8 DER) through its
//! [`KeyProvider`] every time it creates a handshake engine, i.e. at every join:
//! about 70 µs of ASN.1 and P-256 public-key computation per join, 3.5% of the
//! bridge's CPU in `ringbridge-bench scale` (issue 13 item 6). The bridge signs with
//! one certificate per shard for its whole life, so [`CachedKeyProvider`] keeps the
//! parsed P-256 key pairs of the last few distinct keys and hands each engine a
//! handle on the shared one. Keys it does not cache (P-384, SEC1) go to dimpl's own
//! aws-lc-rs provider, as before. The cache is taken on the join path only, never on
//! the media path.

use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use dimpl::crypto::{Buf, CryptoProvider, KeyProvider, SigningKey};
use dimpl::{CryptoError, CryptoOperation, HashAlgorithm, SignatureAlgorithm};

/// How many distinct keys the cache holds (one per shard certificate; tests make
/// more, the oldest is dropped).
pub const CACHED_KEYS: usize = 8;

/// A parsed key pair and the DER it came from.
type CachedKey = (Box<[u8]>, Arc<EcdsaKeyPair>);

/// A [`KeyProvider`] that parses each P-256 PKCS#8 key once. See the module
/// documentation.
#[derive(Debug, Default)]
pub struct CachedKeyProvider {
    /// Parsed keys by DER, newest last.
    keys: Mutex<Vec<CachedKey>>,
}

/// The process's key cache, the one [`provider`] installs.
static KEYS: CachedKeyProvider = CachedKeyProvider {
    keys: Mutex::new(Vec::new()),
};

/// dimpl's aws-lc-rs provider with its key provider replaced by the process's
/// [`CachedKeyProvider`].
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        key_provider: &KEYS,
        ..dimpl::crypto::aws_lc_rs::default_provider()
    }
}

impl CachedKeyProvider {
    /// The parsed P-256 key of `der`, from the cache or parsed now (and cached);
    /// `None` when `der` is no P-256 PKCS#8 key.
    pub fn p256(&self, der: &[u8]) -> Option<Arc<EcdsaKeyPair>> {
        // A poisoned lock only means another join panicked while holding it; the
        // list itself is always consistent.
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, k)) = keys.iter().find(|(d, _)| &d[..] == der) {
            return Some(k.clone());
        }
        let key = Arc::new(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der).ok()?);
        if keys.len() >= CACHED_KEYS {
            keys.remove(0);
        }
        keys.push((der.into(), key.clone()));
        Some(key)
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.keys.lock().map_or(0, |k| k.len())
    }

    /// Whether no key is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl KeyProvider for CachedKeyProvider {
    fn load_private_key(&self, key_der: &[u8]) -> Result<Box<dyn SigningKey>, CryptoError> {
        match self.p256(key_der) {
            Some(key) => Ok(Box::new(SharedP256Key(key))),
            None => dimpl::crypto::aws_lc_rs::default_provider()
                .key_provider
                .load_private_key(key_der),
        }
    }
}

/// A handle on a cached P-256 key pair: ECDSA with SHA-256 only (aws-lc-rs fixes the
/// hash with the key, as dimpl's own provider does).
#[derive(Debug)]
struct SharedP256Key(Arc<EcdsaKeyPair>);

impl SigningKey for SharedP256Key {
    fn sign(
        &mut self,
        data: &[u8],
        hash_alg: HashAlgorithm,
        out: &mut Buf,
    ) -> Result<(), CryptoError> {
        if hash_alg != HashAlgorithm::SHA256 {
            return Err(CryptoError::SigningKeyHashMismatch {
                key_hash: HashAlgorithm::SHA256,
                requested: hash_alg,
            });
        }
        let signature = self
            .0
            .sign(&SystemRandom::new(), data)
            .map_err(|_| CryptoError::OperationFailed(CryptoOperation::Sign))?;
        out.clear();
        out.extend_from_slice(signature.as_ref());
        Ok(())
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }

    fn hash_algorithm(&self) -> HashAlgorithm {
        HashAlgorithm::SHA256
    }

    fn supported_hash_algorithms(&self) -> &[HashAlgorithm] {
        &[HashAlgorithm::SHA256]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, KeyPair, UnparsedPublicKey};

    #[test]
    fn a_key_is_parsed_once_and_its_signatures_verify() {
        let cache = CachedKeyProvider::default();
        let cert = dimpl::certificate::generate_self_signed_certificate().unwrap();
        let a = cache.p256(&cert.private_key).unwrap();
        let b = cache.p256(&cert.private_key).unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "the second engine shares the parsed key"
        );
        assert_eq!(cache.len(), 1);
        let mut key = cache.load_private_key(&cert.private_key).unwrap();
        assert_eq!(key.hash_algorithm(), HashAlgorithm::SHA256);
        let mut sig = Buf::new();
        key.sign(b"handshake transcript", HashAlgorithm::SHA256, &mut sig)
            .unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, a.public_key().as_ref())
            .verify(b"handshake transcript", &sig)
            .unwrap();
        assert!(
            key.sign(b"x", HashAlgorithm::SHA384, &mut sig).is_err(),
            "the hash is fixed with the key"
        );
    }

    #[test]
    fn the_cache_is_bounded_and_refuses_what_is_no_key() {
        let cache = CachedKeyProvider::default();
        for _ in 0..CACHED_KEYS + 3 {
            let cert = dimpl::certificate::generate_self_signed_certificate().unwrap();
            cache.p256(&cert.private_key).unwrap();
        }
        assert_eq!(cache.len(), CACHED_KEYS);
        assert!(cache.p256(b"not a key").is_none());
        assert!(cache.load_private_key(b"not a key").is_err());
        assert_eq!(cache.len(), CACHED_KEYS);
    }
}
