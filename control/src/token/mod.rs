//! Jitsi-style JWTs: checking them ([`TokenVerifier`]) and making them ([`mint_token`]).
//!
//! Checks, in order, each refusal with a stable code ([`TokenError::code`]):
//!
//! 1. shape: at most [`MAX_TOKEN_LEN`] bytes, exactly three base64url segments,
//!    header and payload JSON objects without duplicate keys (`token-malformed`);
//! 2. key: the header's `kid` (bounded, see [`valid_kid`]) names a public key from
//!    `auth.jwks_file` or `auth.public_keys_dir`; without one, an HMAC header uses
//!    the configured secrets (`unknown-key` when nothing fits);
//! 3. algorithm: the header's `alg` must be the one configuration gives that key,
//!    so `none` and HS/RS confusion never reach a signature check (`bad-algorithm`);
//! 4. signature (`bad-signature`);
//! 5. claims: `exp` required (`token-expired`), `nbf` and `iat` not in the future
//!    (`token-not-yet-valid`), `auth.max_lifetime_s`, `iss` (`bad-issuer`), `aud`
//!    (`bad-audience`), `sub` (`bad-subject`), `room` (`room-mismatch`, `403`).
//!
//! Rooms are compared after [`canonical_room`] on both sides. Tokens never appear
//! in error messages or logs.

mod json;
mod keys;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use crate::config::{AuthConfig, FeaturesDefault, HmacAlgorithm};
use json::StrictJsonError;
pub use keys::{KeyConfigError, MAX_KID_LEN, kid_file_name, valid_kid};
use keys::{KeyStore, Selected, algorithm_name};

/// Largest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a token was refused. Each variant has a stable wire code ([`TokenError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token in `Authorization: Bearer` nor in `?jwt=`.
    #[error("a token is required (Authorization: Bearer or ?jwt=)")]
    Missing,
    /// Not a JWT, too large, duplicate keys, or a claim has the wrong type; the
    /// text says which.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The signature does not match.
    #[error("bad token signature")]
    BadSignature,
    /// No configured key fits the token's `kid` (or lack of one).
    #[error("no key for this token")]
    UnknownKey,
    /// The header's `alg` is not the algorithm configured for the key.
    #[error("token algorithm not accepted")]
    BadAlgorithm,
    /// `iss` is missing or not in `auth.accepted_issuers`.
    #[error("token issuer not accepted")]
    BadIssuer,
    /// No `aud` value is in `auth.accepted_audiences`.
    #[error("token audience not accepted")]
    BadAudience,
    /// `sub` is neither `auth.domain`, a tenant (subdomain) of it, nor `*`.
    #[error("token subject does not match this domain")]
    BadSubject,
    /// The token is valid but for another room.
    #[error("token is not valid for this room")]
    RoomMismatch,
}

impl TokenError {
    /// The stable machine-readable code sent as `error` in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Missing => "token-missing",
            TokenError::Malformed(_) => "token-malformed",
            TokenError::Expired => "token-expired",
            TokenError::NotYetValid => "token-not-yet-valid",
            TokenError::BadSignature => "bad-signature",
            TokenError::UnknownKey => "unknown-key",
            TokenError::BadAlgorithm => "bad-algorithm",
            TokenError::BadIssuer => "bad-issuer",
            TokenError::BadAudience => "bad-audience",
            TokenError::BadSubject => "bad-subject",
            TokenError::RoomMismatch => "room-mismatch",
        }
    }

    /// The HTTP status: `403` for a valid token used for another room, `401` otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            TokenError::RoomMismatch => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Who a checked token says the caller is (Jitsi claim set).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Identity {
    /// `context.user.id`.
    pub user_id: Option<String>,
    /// `context.user.name`: display name.
    pub name: Option<String>,
    /// `context.user.email`.
    pub email: Option<String>,
    /// `context.user.avatar`: URL of the avatar.
    pub avatar: Option<String>,
    /// `context.user.affiliation`, e.g. `owner`, `member`.
    pub affiliation: Option<String>,
    /// The top-level `moderator` claim (`true` or `"true"`).
    pub moderator: bool,
    /// `true` when affiliation is owner/moderator/teacher or `moderator` is true.
    pub owner: bool,
    /// `context.features`, verbatim (e.g. `{"recording": true}`); empty when absent.
    pub features: Map<String, Value>,
    /// Whether the token has a `context.features` object at all.
    pub has_features: bool,
    /// The `room` claim (`*` = any room), canonicalised.
    pub room: String,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
    /// `jti`, the token's id, if any.
    pub jti: Option<String>,
}

impl Identity {
    /// Whether the token grants feature `name` (`true` or `"true"`); without a
    /// `context.features` claim, `default` decides.
    pub fn feature(&self, name: &str, default: FeaturesDefault) -> bool {
        if self.has_features {
            truthy(self.features.get(name))
        } else {
            default == FeaturesDefault::Allow
        }
    }
}

/// The canonical form of a room name, used on both sides of every comparison and
/// as the conference id: percent-decoded once, NFKC-normalised, lowercased.
/// `None` when the percent-decoding is not UTF-8.
pub fn canonical_room(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            decoded.push(v);
            i += 3;
            continue;
        }
        decoded.push(b);
        i += 1;
    }
    let text = String::from_utf8(decoded).ok()?;
    Some(text.nfkc().collect::<String>().to_lowercase())
}

/// Checks tokens against the `[auth]` configuration and its keys.
pub struct TokenVerifier {
    keys: KeyStore,
    auth: AuthConfig,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("auth", &self.auth)
            .field("keys", &self.keys)
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier for `auth`'s claim rules and keys; `secret` is the HMAC secret in
    /// force (`auth.app_secret`, or dev mode's random one; empty: none). Reads
    /// `auth.jwks_file`.
    pub fn new(auth: &AuthConfig, secret: &str) -> Result<Self, KeyConfigError> {
        Ok(Self {
            keys: KeyStore::load(auth, secret)?,
            auth: auth.clone(),
        })
    }

    /// The `[auth]` configuration this verifier applies.
    pub fn auth(&self) -> &AuthConfig {
        &self.auth
    }

    /// Checks `token` for `room` (as in the URL; canonicalised here) at `now_unix`
    /// (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, room: &str, now_unix: u64) -> Result<Identity, TokenError> {
        let claims = self.verify_signature(token)?;
        self.check_claims(&claims, room, now_unix)
    }

    /// Shape, key, algorithm and signature; returns the payload.
    fn verify_signature(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("token is larger than 8 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "a JWT has exactly three dot-separated parts",
            ));
        };
        let b64url = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if header_b64.is_empty()
            || payload_b64.is_empty()
            || !b64url(header_b64)
            || !b64url(payload_b64)
            || !b64url(signature)
        {
            return Err(TokenError::Malformed("a part is not base64url"));
        }
        let header = decode_object(header_b64, "header")?;
        let payload = decode_object(payload_b64, "payload")?;

        let alg = match header.get("alg") {
            Some(Value::String(a)) => a.as_str(),
            _ => return Err(TokenError::Malformed("header has no alg string")),
        };
        if header.contains_key("crit") {
            // RFC 7515 4.1.11: extensions we do not understand must be refused.
            return Err(TokenError::Malformed("header has crit extensions"));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) if valid_kid(k) => Some(k.as_str()),
            Some(_) => {
                return Err(TokenError::Malformed(
                    "kid must be 1 to 128 characters of A-Z a-z 0-9 . _ - : / without ..",
                ));
            }
        };
        let selected = self.keys.select(alg, kid).ok_or(TokenError::UnknownKey)?;
        let message = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        let ok = match selected {
            Selected::Public(key) => {
                if alg != algorithm_name(key.algorithm) {
                    return Err(TokenError::BadAlgorithm);
                }
                check_signature(signature, message, &key.key, key.algorithm)?
            }
            Selected::Secrets { keys, algorithm } => {
                if alg != algorithm_name(algorithm) {
                    return Err(TokenError::BadAlgorithm);
                }
                let mut ok = false;
                for key in keys {
                    if check_signature(signature, message, key, algorithm)? {
                        ok = true;
                        break;
                    }
                }
                ok
            }
        };
        if ok {
            Ok(payload)
        } else {
            Err(TokenError::BadSignature)
        }
    }

    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        room: &str,
        now: u64,
    ) -> Result<Identity, TokenError> {
        let leeway = self.auth.leeway_s;
        let exp = numeric_date(claims, "exp")?.ok_or(TokenError::Malformed("exp is required"))?;
        let nbf = numeric_date(claims, "nbf")?;
        let iat = numeric_date(claims, "iat")?;
        if now > exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        for t in [nbf, iat].into_iter().flatten() {
            if t > now.saturating_add(leeway) {
                return Err(TokenError::NotYetValid);
            }
        }
        if let Some(max) = self.auth.max_lifetime_s {
            let from = iat.or(nbf).unwrap_or(now);
            if exp.saturating_sub(from) > max {
                return Err(TokenError::Malformed(
                    "token lifetime exceeds auth.max_lifetime_s",
                ));
            }
        }

        match claims.get("iss") {
            Some(Value::String(iss)) if self.auth.accepted_issuers.iter().any(|a| a == iss) => {}
            _ => return Err(TokenError::BadIssuer),
        }

        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => self.audience_accepted(aud),
            Some(Value::Array(auds)) => auds
                .iter()
                .any(|a| a.as_str().is_some_and(|a| self.audience_accepted(a))),
            _ => false,
        };
        if !audience_ok {
            return Err(TokenError::BadAudience);
        }

        let sub = match claims.get("sub") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(TokenError::Malformed("sub must be a string")),
        };
        if self.auth.domain != "*" && !sub.is_some_and(|s| self.subject_accepted(s)) {
            return Err(TokenError::BadSubject);
        }

        let token_room = match claims.get("room") {
            Some(Value::String(r)) => {
                canonical_room(r).ok_or(TokenError::Malformed("room is not UTF-8"))?
            }
            Some(_) => return Err(TokenError::Malformed("room must be a string")),
            None => return Err(TokenError::RoomMismatch),
        };
        if token_room != "*" && Some(&token_room) != canonical_room(room).as_ref() {
            return Err(TokenError::RoomMismatch);
        }

        let jti = match claims.get("jti") {
            None => None,
            Some(Value::String(j)) if !j.is_empty() && j.len() <= 256 => Some(j.clone()),
            Some(_) => return Err(TokenError::Malformed("jti must be a short string")),
        };

        let mut id = identity(claims, &token_room, exp);
        id.jti = jti;
        Ok(id)
    }

    fn audience_accepted(&self, aud: &str) -> bool {
        self.auth.accepted_audiences.iter().any(|a| a == aud)
    }

    /// `sub` is the domain, a tenant (subdomain) of it, or `*`; case-insensitive.
    fn subject_accepted(&self, sub: &str) -> bool {
        let domain = self.auth.domain.to_ascii_lowercase();
        let sub = sub.to_ascii_lowercase();
        sub == "*"
            || sub == domain
            || sub
                .strip_suffix(&domain)
                .and_then(|t| t.strip_suffix('.'))
                .is_some_and(|tenant| !tenant.is_empty())
    }
}

/// Checks `token` for `room` with `auth`'s rules and `secret`, at `now_unix`.
///
/// A shorthand for [`TokenVerifier::new`] then [`TokenVerifier::verify`]; a key
/// configuration that does not load refuses every token (`unknown-key`).
pub fn verify(
    auth: &AuthConfig,
    secret: &str,
    token: &str,
    room: &str,
    now_unix: u64,
) -> Result<Identity, TokenError> {
    TokenVerifier::new(auth, secret)
        .map_err(|_| TokenError::UnknownKey)?
        .verify(token, room, now_unix)
}

fn decode_object(b64: &str, which: &'static str) -> Result<Map<String, Value>, TokenError> {
    let raw = URL_SAFE_NO_PAD.decode(b64).map_err(|_| {
        TokenError::Malformed(if which == "header" {
            "header is not base64url"
        } else {
            "payload is not base64url"
        })
    })?;
    json::parse_object(&raw).map_err(|e| {
        TokenError::Malformed(match (e, which) {
            (StrictJsonError::DuplicateKey, _) => "a JSON object has a duplicate key",
            (StrictJsonError::NotAnObject, "header") => "header is not a JSON object",
            (StrictJsonError::NotAnObject, _) => "payload is not a JSON object",
        })
    })
}

fn check_signature(
    signature: &str,
    message: &[u8],
    key: &jsonwebtoken::DecodingKey,
    algorithm: Algorithm,
) -> Result<bool, TokenError> {
    match jsonwebtoken::crypto::verify(signature, message, key, algorithm) {
        Ok(ok) => Ok(ok),
        Err(e) => match e.kind() {
            jsonwebtoken::errors::ErrorKind::Base64(_) => {
                Err(TokenError::Malformed("signature is not base64url"))
            }
            _ => Ok(false),
        },
    }
}

/// Reads a NumericDate claim (integer, or a float as some issuers write it).
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && *f >= 0.0) {
                // Truncation is what a NumericDate with a fraction means here.
                Ok(Some(f as u64))
            } else {
                Err(TokenError::Malformed(
                    "a date claim is not a non-negative number",
                ))
            }
        }
        Some(_) => Err(TokenError::Malformed("a date claim is not a number")),
    }
}

fn string_field(obj: Option<&Map<String, Value>>, name: &str) -> Option<String> {
    match obj?.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn identity(claims: &Map<String, Value>, room: &str, exp: u64) -> Identity {
    let context = claims.get("context").and_then(Value::as_object);
    let user = context
        .and_then(|c| c.get("user"))
        .and_then(Value::as_object);
    let affiliation = string_field(user, "affiliation");
    let moderator = truthy(claims.get("moderator"));
    let owner = moderator
        || affiliation.as_deref().is_some_and(|a| {
            ["owner", "moderator", "teacher"]
                .iter()
                .any(|o| a.eq_ignore_ascii_case(o))
        });
    let features = context
        .and_then(|c| c.get("features"))
        .and_then(Value::as_object);
    Identity {
        user_id: string_field(user, "id"),
        name: string_field(user, "name"),
        email: string_field(user, "email"),
        avatar: string_field(user, "avatar"),
        affiliation,
        moderator,
        owner,
        has_features: features.is_some(),
        features: features.cloned().unwrap_or_default(),
        room: room.to_owned(),
        expires_at: exp,
        jti: None,
    }
}

/// A fresh random HS256 secret (256 bits, base64url), for dev mode when no
/// `auth.app_secret` is configured.
pub fn random_secret() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// What [`mint_token`] should put into a token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The `room` claim (`*` = any room).
    pub room: String,
    /// `true` makes `context.user.affiliation` `owner`, else `member`.
    pub owner: bool,
    /// `context.user.name`, if any.
    pub name: Option<String>,
    /// Lifetime: `exp` is `now_unix + ttl`.
    pub ttl: Duration,
    /// Current time, seconds since the Unix epoch (`iat` and `nbf`).
    pub now_unix: u64,
}

/// Why [`mint_token`] could not make a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The secret is empty.
    #[error("the app secret is empty")]
    EmptySecret,
    /// Signing failed.
    #[error("cannot sign token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// Makes an HMAC token (`auth.app_secret_algorithm`) that [`TokenVerifier`] with the same `auth` and `secret` accepts.
///
/// `iss` = `auth.app_id`; `aud` = the first accepted audience (or `app_id`);
/// `sub` = `auth.domain`; `context.user.id` is random. Used by `ringbridge token`
/// and by dev mode's join link.
pub fn mint_token(
    auth: &AuthConfig,
    secret: &str,
    req: &TokenRequest,
) -> Result<String, MintError> {
    if secret.is_empty() {
        return Err(MintError::EmptySecret);
    }
    let aud = auth
        .accepted_audiences
        .first()
        .unwrap_or(&auth.app_id)
        .clone();
    let mut user = Map::new();
    user.insert(
        "id".into(),
        Value::String(format!("{:016x}", rand::random::<u64>())),
    );
    if let Some(name) = &req.name {
        user.insert("name".into(), Value::String(name.clone()));
    }
    user.insert(
        "affiliation".into(),
        Value::String(if req.owner { "owner" } else { "member" }.into()),
    );
    let claims = serde_json::json!({
        "iss": auth.app_id,
        "aud": aud,
        "sub": auth.domain,
        "room": req.room,
        "iat": req.now_unix,
        "nbf": req.now_unix,
        "exp": req.now_unix.saturating_add(req.ttl.as_secs()),
        "jti": format!("{:032x}", rand::random::<u128>()),
        "context": { "user": user },
    });
    let algorithm = match auth.app_secret_algorithm {
        HmacAlgorithm::HS256 => Algorithm::HS256,
        HmacAlgorithm::HS384 => Algorithm::HS384,
        HmacAlgorithm::HS512 => Algorithm::HS512,
    };
    let token = jsonwebtoken::encode(
        &Header::new(algorithm),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?;
    Ok(token)
}

#[cfg(test)]
mod tests;
