//! The control plane's sections of the configuration file.
//!
//! The `ringbridge` binary owns the whole file; it embeds these sections. Every
//! key has a default, and unknown keys are refused (`deny_unknown_fields`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// `[public]`: the listener for signalling and colibri websockets.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PublicConfig {
    /// `public.listen`: address of the signalling listener. Default `0.0.0.0:9090`.
    pub listen: SocketAddr,
    /// `public.url`: the address people reach the public listener at, e.g.
    /// `https://meet.example.com` behind a reverse proxy (a path prefix such as
    /// `https://example.com/bridge` is kept). Used for the links that dev mode
    /// and `ringbridge token --link` print. Default: none, the links are built
    /// from `public.listen` (`http://127.0.0.1:9090` for `0.0.0.0:9090`).
    pub url: Option<String>,
    /// `public.allowed_origins`: web origins (`https://app.example.com`) whose
    /// pages may call the signalling paths (`/conferences/...`) from a browser:
    /// CORS with `Location` and `Link` exposed. `"*"` allows any origin. The
    /// bridge's own page needs none of this. Default `[]` (CORS off).
    pub allowed_origins: Vec<String>,
    /// `public.join_rate_limit`: joins (`POST /conferences/{room}/endpoints`) per
    /// second allowed from one client address, on average; more get `429
    /// rate-limited` with `Retry-After`. IPv6 addresses count by /64; behind a
    /// reverse proxy on the same host, the last `X-Forwarded-For` address is the
    /// client. 0: no limit. Default `10`.
    pub join_rate_limit: u32,
    /// `public.join_rate_burst`: joins one address may make at once before
    /// `public.join_rate_limit` applies. Default `50`.
    pub join_rate_burst: u32,
    /// `public.ws_rate_limit`: colibri websocket upgrades (`GET /colibri-ws/...`)
    /// per second from one client address, as `public.join_rate_limit`. 0: no
    /// limit. Default `10`.
    pub ws_rate_limit: u32,
    /// `public.ws_rate_burst`: websocket upgrades one address may make at once.
    /// Default `50`.
    pub ws_rate_burst: u32,
    /// `public.rate_limit_addresses`: client addresses each rate limit keeps
    /// track of; when full, the address seen first is forgotten (it starts again
    /// with a full burst). Bounds the limiters' memory (about 100 bytes an
    /// address). Default `10000`.
    pub rate_limit_addresses: usize,
}

/// Default of `public.join_rate_limit` and `public.ws_rate_limit`.
pub const DEFAULT_RATE_LIMIT: u32 = 10;
/// Default of `public.join_rate_burst` and `public.ws_rate_burst`.
pub const DEFAULT_RATE_BURST: u32 = 50;
/// Default of `public.rate_limit_addresses`.
pub const DEFAULT_RATE_LIMIT_ADDRESSES: usize = 10_000;

impl Default for PublicConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            url: None,
            allowed_origins: Vec::new(),
            join_rate_limit: DEFAULT_RATE_LIMIT,
            join_rate_burst: DEFAULT_RATE_BURST,
            ws_rate_limit: DEFAULT_RATE_LIMIT,
            ws_rate_burst: DEFAULT_RATE_BURST,
            rate_limit_addresses: DEFAULT_RATE_LIMIT_ADDRESSES,
        }
    }
}

/// `[private]`: the operator listener (health, version, stats).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PrivateConfig {
    /// `private.listen`: address of the operator listener. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
}

impl Default for PrivateConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// `[auth]`: how tokens are checked. Names follow Prosody's token settings.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `auth.app_id`: the application id; also the `iss` of tokens that
    /// `ringbridge token` makes. Default `"ringbridge"`.
    pub app_id: String,
    /// `auth.app_secret`: the HMAC secret (algorithm `auth.app_secret_algorithm`).
    /// Default: none, which means dev mode (`run` makes a random secret and
    /// prints a join link).
    pub app_secret: Option<String>,
    /// `auth.accepted_issuers`: allowed `iss` values. Default `["ringbridge"]`.
    pub accepted_issuers: Vec<String>,
    /// `auth.accepted_audiences`: allowed `aud` values. Default `["ringbridge"]`.
    pub accepted_audiences: Vec<String>,
    /// `auth.domain`: the token's `sub` must equal this, or be `"*"`.
    /// Default `"*"` (any subject).
    pub domain: String,
    /// `auth.leeway_s`: clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    /// Default `30`.
    pub leeway_s: u64,
    /// `auth.app_secret_algorithm`: the one algorithm tokens signed with
    /// `auth.app_secret` (and `auth.previous_app_secrets`) must use: `HS256`,
    /// `HS384` or `HS512`. Default `"HS256"`. Never taken from a token's header.
    pub app_secret_algorithm: HmacAlgorithm,
    /// `auth.previous_app_secrets`: older HMAC secrets still accepted, so that
    /// `app_secret` can rotate without a flag day. Default `[]`.
    pub previous_app_secrets: Vec<String>,
    /// `auth.public_keys_dir`: folder of PEM public keys, looked up by the token's
    /// `kid` as `<hex sha256(kid)>.pem` (the ASAP convention Jitsi uses); read when
    /// a `kid` is first seen, so keys can be added while running. Default: none.
    pub public_keys_dir: Option<PathBuf>,
    /// `auth.public_keys_algorithm`: the algorithm of every key in
    /// `auth.public_keys_dir`: `RS256`, `RS384`, `RS512`, `ES256` or `ES384`.
    /// Default `"RS256"`.
    pub public_keys_algorithm: PublicKeyAlgorithm,
    /// `auth.jwks_file`: a JWKS file (`{"keys": [...]}`) of public keys, each with a
    /// `kid`; a key's algorithm is its `alg`, or RS256 for RSA and ES256/ES384 for
    /// P-256/P-384 keys. Read at start. Default: none.
    pub jwks_file: Option<PathBuf>,
    /// `auth.max_lifetime_s`: refuse tokens whose `exp` is more than this many
    /// seconds after their `iat` (or `nbf`, or now). Default: none (no limit).
    pub max_lifetime_s: Option<u64>,
    /// `auth.owner_grace_s`: when the last owner leaves, the conference ends after
    /// this many seconds unless an owner joins again. Default `60`.
    pub owner_grace_s: u64,
    /// `auth.features_default`: what a token without a `context.features` claim
    /// may do: `"allow"` (everything, the Jitsi behaviour) or `"deny"`.
    /// Default `"allow"`.
    pub features_default: FeaturesDefault,
    /// `auth.enforce_expiry`: expire endpoints when their token's `exp` passes
    /// (warned on the colibri websocket 60 s before), unless a fresh token arrives on
    /// `PUT /conferences/{room}/endpoints/{id}/token`. Default `false`.
    pub enforce_expiry: bool,
    /// `auth.single_use_jti`: at most one live endpoint per token `jti`; tokens
    /// without `jti` are unaffected. Default `false`.
    pub single_use_jti: bool,
}

/// `auth.app_secret_algorithm`: the HMAC algorithm of the shared secrets.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum HmacAlgorithm {
    /// HMAC-SHA256 (the default).
    #[default]
    HS256,
    /// HMAC-SHA384.
    HS384,
    /// HMAC-SHA512.
    HS512,
}

/// `auth.public_keys_algorithm`: the algorithm of the keys in `auth.public_keys_dir`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum PublicKeyAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (the default).
    #[default]
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
}

/// `auth.features_default`: the features of a token without `context.features`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FeaturesDefault {
    /// Every feature is granted (what Jitsi does). The default.
    #[default]
    Allow,
    /// No feature is granted.
    Deny,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            app_id: "ringbridge".into(),
            app_secret: None,
            accepted_issuers: vec!["ringbridge".into()],
            accepted_audiences: vec!["ringbridge".into()],
            domain: "*".into(),
            leeway_s: 30,
            app_secret_algorithm: HmacAlgorithm::HS256,
            previous_app_secrets: Vec::new(),
            public_keys_dir: None,
            public_keys_algorithm: PublicKeyAlgorithm::RS256,
            jwks_file: None,
            max_lifetime_s: None,
            owner_grace_s: 60,
            features_default: FeaturesDefault::Allow,
            enforce_expiry: false,
            single_use_jti: false,
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    // The secret is never printed, not even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("app_id", &self.app_id)
            .field(
                "app_secret",
                &self.app_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("accepted_issuers", &self.accepted_issuers)
            .field("accepted_audiences", &self.accepted_audiences)
            .field("domain", &self.domain)
            .field("leeway_s", &self.leeway_s)
            .field("app_secret_algorithm", &self.app_secret_algorithm)
            .field(
                "previous_app_secrets",
                &format_args!("<{} redacted>", self.previous_app_secrets.len()),
            )
            .field("public_keys_dir", &self.public_keys_dir)
            .field("public_keys_algorithm", &self.public_keys_algorithm)
            .field("jwks_file", &self.jwks_file)
            .field("max_lifetime_s", &self.max_lifetime_s)
            .field("owner_grace_s", &self.owner_grace_s)
            .field("features_default", &self.features_default)
            .field("enforce_expiry", &self.enforce_expiry)
            .field("single_use_jti", &self.single_use_jti)
            .finish()
    }
}

/// `[load]`: how busy the bridge may get; drives `stress_level` in
/// `/colibri/stats` and `/metrics`, as jitsi-videobridge's load management.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LoadConfig {
    /// `load.max_packet_rate`: packets per second (received plus sent) at which
    /// the bridge counts as fully loaded, `stress_level` 1.0. Default `50000`,
    /// jitsi-videobridge's packet-rate load threshold. Above it (`stress_level`
    /// over 1) a join that would open a new conference gets `503 overloaded`;
    /// joins into running conferences go on.
    pub max_packet_rate: u64,
    /// `load.max_conferences`: conferences the bridge hosts at most; a join that
    /// would open one more gets `503 too-many-conferences`. 0: no cap (the media
    /// port range and `load.max_packet_rate` still bound the load). Default `0`.
    pub max_conferences: usize,
    /// `load.max_endpoints_per_conference`: endpoints one conference holds at
    /// most; a join into a full one gets `403 conference-full`. 0: no cap.
    /// Default `500`.
    pub max_endpoints_per_conference: usize,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            max_packet_rate: 50_000,
            max_conferences: 0,
            max_endpoints_per_conference: 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        assert_eq!(PublicConfig::default().listen.to_string(), "0.0.0.0:9090");
        assert_eq!(PublicConfig::default().url, None);
        assert!(PublicConfig::default().allowed_origins.is_empty());
        let public = PublicConfig::default();
        assert_eq!((public.join_rate_limit, public.join_rate_burst), (10, 50));
        assert_eq!((public.ws_rate_limit, public.ws_rate_burst), (10, 50));
        assert_eq!(public.rate_limit_addresses, 10_000);
        let load = LoadConfig::default();
        assert_eq!(load.max_packet_rate, 50_000);
        assert_eq!(load.max_conferences, 0);
        assert_eq!(load.max_endpoints_per_conference, 500);
        assert_eq!(
            PrivateConfig::default().listen.to_string(),
            "127.0.0.1:8080"
        );
        let auth = AuthConfig::default();
        assert_eq!(auth.app_id, "ringbridge");
        assert_eq!(auth.app_secret, None);
        assert_eq!(auth.accepted_issuers, vec!["ringbridge".to_owned()]);
        assert_eq!(auth.accepted_audiences, vec!["ringbridge".to_owned()]);
        assert_eq!(auth.domain, "*");
        assert_eq!(auth.leeway_s, 30);
        assert_eq!(auth.app_secret_algorithm, HmacAlgorithm::HS256);
        assert!(auth.previous_app_secrets.is_empty());
        assert_eq!(auth.public_keys_dir, None);
        assert_eq!(auth.public_keys_algorithm, PublicKeyAlgorithm::RS256);
        assert_eq!(auth.jwks_file, None);
        assert_eq!(auth.max_lifetime_s, None);
        assert_eq!(auth.owner_grace_s, 60);
        assert_eq!(auth.features_default, FeaturesDefault::Allow);
        assert!(!auth.enforce_expiry);
        assert!(!auth.single_use_jti);
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let auth = AuthConfig {
            app_secret: Some("hunter2".into()),
            previous_app_secrets: vec!["older-secret".into()],
            ..AuthConfig::default()
        };
        let shown = format!("{auth:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("older-secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
