//! The keys tokens may be signed with, each with the one algorithm configuration
//! gives it.
//!
//! - HMAC secrets (`auth.app_secret`, then `auth.previous_app_secrets`), with
//!   `auth.app_secret_algorithm`; used for tokens whose header names an HMAC
//!   algorithm and no known `kid`.
//! - Public keys from `auth.jwks_file` (read at start) and `auth.public_keys_dir`
//!   (looked up by `kid` as `<hex sha256(kid)>.pem`, read on first use and cached),
//!   used for tokens whose `kid` names them.
//!
//! The token header only chooses which key to look at; whether the header's `alg`
//! fits that key is checked afterwards, against the key's configured algorithm.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use tracing::warn;

use crate::config::{AuthConfig, HmacAlgorithm, PublicKeyAlgorithm};

/// Longest `kid` accepted.
pub const MAX_KID_LEN: usize = 128;

/// Public keys kept in the directory cache before it is emptied.
const DIR_CACHE_MAX: usize = 1024;

/// Why the configured keys could not be loaded (at start).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyConfigError {
    /// A key file could not be read.
    #[error("auth.{key}: cannot read {path}: {source}")]
    Io {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The JWKS file is not usable; the text says why.
    #[error("auth.jwks_file {path}: {why}")]
    Jwks {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// An HMAC secret is empty.
    #[error("auth.{0}: an HMAC secret is empty")]
    EmptySecret(&'static str),
}

/// One public key and its configured algorithm.
#[derive(Clone)]
pub(crate) struct PublicKey {
    pub(crate) key: DecodingKey,
    pub(crate) algorithm: Algorithm,
}

/// Which key(s) a token must verify against.
pub(crate) enum Selected<'a> {
    /// The HMAC secrets, newest first, all with `algorithm`.
    Secrets {
        keys: &'a [DecodingKey],
        algorithm: Algorithm,
    },
    /// One public key.
    Public(PublicKey),
}

/// Every key the verifier knows.
pub(crate) struct KeyStore {
    secrets: Vec<DecodingKey>,
    hmac_algorithm: Algorithm,
    jwks: HashMap<String, PublicKey>,
    dir: Option<(PathBuf, Algorithm)>,
    dir_cache: Mutex<HashMap<String, PublicKey>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("secrets", &self.secrets.len())
            .field("hmac_algorithm", &self.hmac_algorithm)
            .field("jwks", &self.jwks.keys().collect::<Vec<_>>())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// `alg` names of the algorithms a key can be configured with.
pub(crate) fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
    }
}

fn hmac(a: HmacAlgorithm) -> Algorithm {
    match a {
        HmacAlgorithm::HS256 => Algorithm::HS256,
        HmacAlgorithm::HS384 => Algorithm::HS384,
        HmacAlgorithm::HS512 => Algorithm::HS512,
    }
}

fn public(a: PublicKeyAlgorithm) -> Algorithm {
    match a {
        PublicKeyAlgorithm::RS256 => Algorithm::RS256,
        PublicKeyAlgorithm::RS384 => Algorithm::RS384,
        PublicKeyAlgorithm::RS512 => Algorithm::RS512,
        PublicKeyAlgorithm::ES256 => Algorithm::ES256,
        PublicKeyAlgorithm::ES384 => Algorithm::ES384,
    }
}

/// Whether `kid` is acceptable: 1 to [`MAX_KID_LEN`] characters of
/// `A-Z a-z 0-9 . _ - : /`, no `..`, not starting with `/`.
pub fn valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'))
        && !kid.contains("..")
        && !kid.starts_with('/')
}

/// The file name a `kid`'s key has in `auth.public_keys_dir`: lowercase hex
/// SHA-256 of the `kid`, then `.pem`.
pub fn kid_file_name(kid: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, kid.as_bytes());
    let mut name = String::with_capacity(68);
    for b in digest.as_ref() {
        let _ = write!(name, "{b:02x}");
    }
    name.push_str(".pem");
    name
}

impl KeyStore {
    /// Keys from `auth` plus the secret in force (`auth.app_secret` or the dev-mode
    /// one); reads the JWKS file.
    pub(crate) fn load(auth: &AuthConfig, secret: &str) -> Result<Self, KeyConfigError> {
        let mut secrets = Vec::new();
        if !secret.is_empty() {
            secrets.push(DecodingKey::from_secret(secret.as_bytes()));
        }
        for s in &auth.previous_app_secrets {
            if s.is_empty() {
                return Err(KeyConfigError::EmptySecret("previous_app_secrets"));
            }
            secrets.push(DecodingKey::from_secret(s.as_bytes()));
        }
        let jwks = match &auth.jwks_file {
            Some(path) => load_jwks(path)?,
            None => HashMap::new(),
        };
        Ok(Self {
            secrets,
            hmac_algorithm: hmac(auth.app_secret_algorithm),
            jwks,
            dir: auth
                .public_keys_dir
                .clone()
                .map(|d| (d, public(auth.public_keys_algorithm))),
            dir_cache: Mutex::new(HashMap::new()),
        })
    }

    /// Chooses the key(s) for a token with header `alg` and `kid` (already checked
    /// with [`valid_kid`]). `None`: no key fits (`unknown-key`).
    pub(crate) fn select(&self, alg: &str, kid: Option<&str>) -> Option<Selected<'_>> {
        if let Some(kid) = kid
            && let Some(key) = self.public_key(kid)
        {
            return Some(Selected::Public(key));
        }
        // A `kid` no public key has: HMAC issuers sometimes set one; the secrets
        // are tried only for HMAC headers, so nothing else reaches them.
        let hmac_header = alg.starts_with("HS");
        if self.secrets.is_empty() || (kid.is_some() && !hmac_header) {
            return None;
        }
        Some(Selected::Secrets {
            keys: &self.secrets,
            algorithm: self.hmac_algorithm,
        })
    }

    fn public_key(&self, kid: &str) -> Option<PublicKey> {
        if let Some(k) = self.jwks.get(kid) {
            return Some(k.clone());
        }
        let (dir, algorithm) = self.dir.as_ref()?;
        {
            let cache = self
                .dir_cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(k) = cache.get(kid) {
                return Some(k.clone());
            }
        }
        let key = read_pem(dir, kid, *algorithm)?;
        let mut cache = self
            .dir_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= DIR_CACHE_MAX {
            cache.clear();
        }
        cache.insert(kid.to_owned(), key.clone());
        Some(key)
    }
}

/// Reads `<dir>/<hex sha256(kid)>.pem`; a missing file is an unknown key, an
/// unreadable or wrong-type one is logged and also unknown.
fn read_pem(dir: &Path, kid: &str, algorithm: Algorithm) -> Option<PublicKey> {
    let path = dir.join(kid_file_name(kid));
    let pem = match std::fs::read(&path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read a public key");
            return None;
        }
    };
    let key = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
        _ => DecodingKey::from_rsa_pem(&pem),
    };
    match key {
        Ok(key) => Some(PublicKey { key, algorithm }),
        Err(e) => {
            warn!(path = %path.display(), error = %e, algorithm = algorithm_name(algorithm),
                  "public key file does not hold a key for auth.public_keys_algorithm");
            None
        }
    }
}

fn load_jwks(path: &Path) -> Result<HashMap<String, PublicKey>, KeyConfigError> {
    let bad = |why: String| KeyConfigError::Jwks {
        path: path.to_owned(),
        why,
    };
    let text = std::fs::read(path).map_err(|source| KeyConfigError::Io {
        key: "jwks_file",
        path: path.to_owned(),
        source,
    })?;
    let set: JwkSet = serde_json::from_slice(&text).map_err(|e| bad(format!("not a JWKS: {e}")))?;
    let mut keys = HashMap::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or_else(|| bad(format!("key {i} has no kid")))?;
        if !valid_kid(&kid) {
            return Err(bad(format!(
                "key {i}: kid must be 1 to {MAX_KID_LEN} characters of A-Z a-z 0-9 . _ - : /"
            )));
        }
        let algorithm = jwk_algorithm(jwk).map_err(|why| bad(format!("key {kid:?}: {why}")))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(format!("key {kid:?}: {e}")))?;
        if keys
            .insert(kid.clone(), PublicKey { key, algorithm })
            .is_some()
        {
            return Err(bad(format!("kid {kid:?} appears twice")));
        }
    }
    Ok(keys)
}

/// The algorithm of a JWKS key: its `alg`, else what its type implies. Symmetric
/// keys are refused: secrets belong in `auth.app_secret`.
fn jwk_algorithm(jwk: &Jwk) -> Result<Algorithm, String> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Err("only P-256 and P-384 curves are supported".into()),
        },
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric keys are not accepted here; use auth.app_secret".into());
        }
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
    };
    let Some(stated) = jwk.common.key_algorithm else {
        return Ok(implied);
    };
    let stated = match stated {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        other => return Err(format!("alg {other:?} is not a signature algorithm")),
    };
    let same_family = matches!(
        (implied, stated),
        (
            Algorithm::RS256,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ) | (Algorithm::ES256, Algorithm::ES256)
            | (Algorithm::ES384, Algorithm::ES384)
            | (Algorithm::EdDSA, Algorithm::EdDSA)
    );
    if same_family {
        Ok(stated)
    } else {
        Err("alg does not fit the key type".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_rules() {
        for ok in ["a", "jitsi/key-1", "k.2024_01:x", &"k".repeat(MAX_KID_LEN)] {
            assert!(valid_kid(ok), "{ok}");
        }
        let long = "k".repeat(MAX_KID_LEN + 1);
        for bad in [
            "",
            "../etc/passwd",
            "a/../b",
            "/abs",
            "a b",
            "a\0b",
            "é",
            "a\\b",
            long.as_str(),
        ] {
            assert!(!valid_kid(bad), "{bad:?}");
        }
    }

    #[test]
    fn kid_file_name_is_hex_sha256() {
        // sha256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            kid_file_name("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.pem"
        );
    }
}
