//! Jitsi-style JWTs: checking them ([`TokenVerifier`]) and making them ([`mint_token`]).
//!
//! The algorithm comes from configuration (HS256 for now), never from the token's
//! header; a token whose header names another algorithm, `none` included, is refused
//! before its signature is even looked at. Tokens never appear in error messages or logs.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::StatusCode;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::config::AuthConfig;

/// The only algorithm accepted for now; fixed here, not read from tokens.
const ALGORITHM: Algorithm = Algorithm::HS256;
/// The same, as it appears in a JWT header.
const ALGORITHM_NAME: &str = "HS256";

/// Why a token was refused. Each variant has a stable wire code ([`TokenError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token in `Authorization: Bearer` nor in `?jwt=`.
    #[error("a token is required (Authorization: Bearer or ?jwt=)")]
    Missing,
    /// Not a JWT, or a claim has the wrong type; the text says which part.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The signature does not match, or the header names another algorithm.
    #[error("bad token signature: {0}")]
    BadSignature(&'static str),
    /// `iss` is missing or not in `auth.accepted_issuers`.
    #[error("token issuer not accepted")]
    BadIssuer,
    /// No `aud` value is in `auth.accepted_audiences`.
    #[error("token audience not accepted")]
    BadAudience,
    /// `sub` does not match `auth.domain`.
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
            TokenError::BadSignature(_) => "bad-signature",
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
    /// `context.features`, verbatim (e.g. `{"recording": true}`).
    pub features: Map<String, Value>,
    /// The `room` claim (`*` = any room).
    pub room: String,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Checks tokens against the `[auth]` configuration and one HS256 secret.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    auth: AuthConfig,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for `auth`'s claim rules and the HS256 `secret`.
    pub fn new(auth: &AuthConfig, secret: &str) -> Self {
        let mut validation = Validation::new(ALGORITHM);
        // Time and claim checks are done here, with explicit `now` and our own
        // error codes; jsonwebtoken only checks the signature.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            auth: auth.clone(),
        }
    }

    /// Checks `token` for `room` at `now_unix` (seconds since the Unix epoch).
    ///
    /// Checks, in order: header algorithm, signature, `exp`, `nbf`, `iss`, `aud`,
    /// `sub`, `room`.
    pub fn verify(&self, token: &str, room: &str, now_unix: u64) -> Result<Identity, TokenError> {
        check_header(token)?;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(map_jwt_error)?
            .claims;
        self.check_claims(&claims, room, now_unix)
    }

    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        room: &str,
        now: u64,
    ) -> Result<Identity, TokenError> {
        let leeway = self.auth.leeway_s;
        let exp = numeric_date(claims, "exp")?.ok_or(TokenError::Malformed("exp is required"))?;
        if now > exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf")?
            && nbf > now.saturating_add(leeway)
        {
            return Err(TokenError::NotYetValid);
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

        if self.auth.domain != "*" {
            match claims.get("sub") {
                Some(Value::String(sub)) if sub == "*" || *sub == self.auth.domain => {}
                _ => return Err(TokenError::BadSubject),
            }
        }

        let token_room = match claims.get("room") {
            Some(Value::String(r)) => r.as_str(),
            Some(_) => return Err(TokenError::Malformed("room must be a string")),
            None => return Err(TokenError::RoomMismatch),
        };
        if token_room != "*" && token_room != room {
            return Err(TokenError::RoomMismatch);
        }

        Ok(identity(claims, token_room, exp))
    }

    fn audience_accepted(&self, aud: &str) -> bool {
        self.auth.accepted_audiences.iter().any(|a| a == aud)
    }
}

/// Checks `token` for `room` with `auth`'s rules and `secret`, at `now_unix`.
///
/// A shorthand for [`TokenVerifier::new`] then [`TokenVerifier::verify`].
pub fn verify(
    auth: &AuthConfig,
    secret: &str,
    token: &str,
    room: &str,
    now_unix: u64,
) -> Result<Identity, TokenError> {
    TokenVerifier::new(auth, secret).verify(token, room, now_unix)
}

/// Refuses any header whose `alg` is not the configured algorithm, before the
/// signature is checked (so `none` and algorithm confusion never get further).
fn check_header(token: &str) -> Result<(), TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("a JWT has three dot-separated parts"));
    };
    let raw = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed("header is not base64url"))?;
    let header: Map<String, Value> =
        serde_json::from_slice(&raw).map_err(|_| TokenError::Malformed("header is not JSON"))?;
    match header.get("alg") {
        Some(Value::String(alg)) if alg == ALGORITHM_NAME => Ok(()),
        _ => Err(TokenError::BadSignature("token algorithm not accepted")),
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature("signature does not match"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            TokenError::BadSignature("token algorithm not accepted")
        }
        ErrorKind::Base64(_) => TokenError::Malformed("not base64url"),
        ErrorKind::Json(_) => TokenError::Malformed("payload is not a JSON object"),
        ErrorKind::Utf8(_) => TokenError::Malformed("not UTF-8"),
        _ => TokenError::Malformed("not a valid JWT"),
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
    Identity {
        user_id: string_field(user, "id"),
        name: string_field(user, "name"),
        email: string_field(user, "email"),
        avatar: string_field(user, "avatar"),
        affiliation,
        moderator,
        owner,
        features: context
            .and_then(|c| c.get("features"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        room: room.to_owned(),
        expires_at: exp,
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

/// Makes an HS256 token that [`TokenVerifier`] with the same `auth` and `secret` accepts.
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
        "context": { "user": user },
    });
    let token = jsonwebtoken::encode(
        &Header::new(ALGORITHM),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret";
    const NOW: u64 = 1_700_000_000;

    fn auth() -> AuthConfig {
        AuthConfig {
            app_secret: Some(SECRET.into()),
            domain: "meet.example.com".into(),
            ..AuthConfig::default()
        }
    }

    fn sign(claims: &Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign")
    }

    fn base_claims() -> Value {
        serde_json::json!({
            "iss": "ringbridge", "aud": "ringbridge", "sub": "meet.example.com",
            "room": "room1", "exp": NOW + 600, "nbf": NOW - 10,
            "context": {"user": {"id": "u1", "name": "Ann", "email": "a@example.com",
                                  "avatar": "https://x/a.png", "affiliation": "member"},
                        "features": {"recording": true}},
        })
    }

    fn with(mut v: Value, key: &str, val: Value) -> Value {
        v[key] = val;
        v
    }

    fn check(claims: &Value, room: &str) -> Result<Identity, TokenError> {
        verify(&auth(), SECRET, &sign(claims), room, NOW)
    }

    #[test]
    fn valid_token_gives_identity() {
        let id = check(&base_claims(), "room1").expect("valid");
        assert_eq!(id.user_id.as_deref(), Some("u1"));
        assert_eq!(id.name.as_deref(), Some("Ann"));
        assert_eq!(id.email.as_deref(), Some("a@example.com"));
        assert_eq!(id.avatar.as_deref(), Some("https://x/a.png"));
        assert!(!id.owner);
        assert_eq!(id.features.get("recording"), Some(&Value::Bool(true)));
        assert_eq!(id.room, "room1");
        assert_eq!(id.expires_at, NOW + 600);
    }

    #[test]
    fn owner_from_affiliation_or_moderator() {
        for aff in ["owner", "moderator", "teacher", "Owner"] {
            let mut c = base_claims();
            c["context"]["user"]["affiliation"] = Value::String(aff.into());
            assert!(check(&c, "room1").expect("valid").owner, "{aff}");
        }
        let c = with(base_claims(), "moderator", Value::Bool(true));
        assert!(check(&c, "room1").expect("valid").owner);
        let c = with(base_claims(), "moderator", Value::String("true".into()));
        assert!(check(&c, "room1").expect("valid").owner);
    }

    #[test]
    fn time_claims() {
        let c = with(base_claims(), "exp", (NOW - 31).into());
        assert_eq!(check(&c, "room1"), Err(TokenError::Expired));
        // Within the 30 s leeway.
        let c = with(base_claims(), "exp", (NOW - 29).into());
        assert!(check(&c, "room1").is_ok());
        let c = with(base_claims(), "nbf", (NOW + 31).into());
        assert_eq!(check(&c, "room1"), Err(TokenError::NotYetValid));
        let c = with(base_claims(), "nbf", (NOW + 29).into());
        assert!(check(&c, "room1").is_ok());
        let mut c = base_claims();
        c.as_object_mut().expect("object").remove("exp");
        assert_eq!(
            check(&c, "room1").map_err(|e| e.code()),
            Err("token-malformed")
        );
        let c = with(base_claims(), "exp", "soon".into());
        assert_eq!(
            check(&c, "room1").map_err(|e| e.code()),
            Err("token-malformed")
        );
    }

    #[test]
    fn issuer_audience_subject() {
        let c = with(base_claims(), "iss", "other".into());
        assert_eq!(check(&c, "room1"), Err(TokenError::BadIssuer));
        let c = with(base_claims(), "aud", "other".into());
        assert_eq!(check(&c, "room1"), Err(TokenError::BadAudience));
        let c = with(base_claims(), "aud", serde_json::json!(["x", "ringbridge"]));
        assert!(check(&c, "room1").is_ok());
        let c = with(base_claims(), "aud", serde_json::json!(["x", "y"]));
        assert_eq!(check(&c, "room1"), Err(TokenError::BadAudience));
        let c = with(base_claims(), "sub", "other.example.com".into());
        assert_eq!(check(&c, "room1"), Err(TokenError::BadSubject));
        let c = with(base_claims(), "sub", "*".into());
        assert!(check(&c, "room1").is_ok());
        // auth.domain "*" accepts any subject.
        let any = AuthConfig {
            domain: "*".into(),
            ..auth()
        };
        let c = with(base_claims(), "sub", "other.example.com".into());
        assert!(verify(&any, SECRET, &sign(&c), "room1", NOW).is_ok());
    }

    #[test]
    fn room_claim() {
        assert_eq!(
            check(&base_claims(), "room2"),
            Err(TokenError::RoomMismatch)
        );
        assert_eq!(TokenError::RoomMismatch.status(), StatusCode::FORBIDDEN);
        let c = with(base_claims(), "room", "*".into());
        assert_eq!(check(&c, "anything").expect("valid").room, "*");
    }

    #[test]
    fn signature_and_algorithm() {
        let token = sign(&base_claims());
        // Wrong secret.
        assert_eq!(
            verify(&auth(), "other-secret", &token, "room1", NOW).map_err(|e| e.code()),
            Err("bad-signature")
        );
        // Changed payload, original signature.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&with(base_claims(), "room", "*".into())).expect("json"));
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(
            verify(&auth(), SECRET, &tampered, "room1", NOW).map_err(|e| e.code()),
            Err("bad-signature")
        );
        // alg none, no signature.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let none = format!("{header}.{}.", parts[1]);
        assert_eq!(
            verify(&auth(), SECRET, &none, "room1", NOW).map_err(|e| e.code()),
            Err("bad-signature")
        );
        // HS512 with the same secret is refused too: the algorithm is fixed.
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &base_claims(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign");
        assert_eq!(
            verify(&auth(), SECRET, &hs512, "room1", NOW).map_err(|e| e.code()),
            Err("bad-signature")
        );
        for junk in ["", "abc", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert_eq!(
                verify(&auth(), SECRET, junk, "room1", NOW).map_err(|e| e.code()),
                Err("token-malformed"),
                "{junk}"
            );
        }
    }

    #[test]
    fn random_secrets_differ() {
        let (a, b) = (random_secret(), random_secret());
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).map(|k| k.len()).ok(), Some(32));
    }

    #[test]
    fn minted_token_round_trips() {
        let req = TokenRequest {
            room: "room1".into(),
            owner: true,
            name: Some("Host".into()),
            ttl: Duration::from_secs(3600),
            now_unix: NOW,
        };
        let token = mint_token(&auth(), SECRET, &req).expect("mint");
        let id = verify(&auth(), SECRET, &token, "room1", NOW + 10).expect("valid");
        assert!(id.owner);
        assert_eq!(id.name.as_deref(), Some("Host"));
        assert_eq!(id.affiliation.as_deref(), Some("owner"));
        assert_eq!(id.expires_at, NOW + 3600);
        assert_eq!(id.user_id.as_deref().map(str::len), Some(16));
        assert_eq!(
            verify(&auth(), SECRET, &token, "room1", NOW + 3600 + 31),
            Err(TokenError::Expired)
        );
        let member = mint_token(
            &auth(),
            SECRET,
            &TokenRequest {
                owner: false,
                name: None,
                ..req
            },
        )
        .expect("mint");
        let id = verify(&auth(), SECRET, &member, "room1", NOW).expect("valid");
        assert!(!id.owner);
        assert_eq!(id.affiliation.as_deref(), Some("member"));
        assert!(matches!(
            mint_token(
                &auth(),
                "",
                &TokenRequest {
                    room: "r".into(),
                    owner: false,
                    name: None,
                    ttl: Duration::from_secs(1),
                    now_unix: NOW
                }
            ),
            Err(MintError::EmptySecret)
        ));
    }
}
