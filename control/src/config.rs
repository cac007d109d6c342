//! The control plane's sections of the configuration file.
//!
//! The `ringbridge` binary owns the whole file; it embeds these sections. Every
//! key has a default, and unknown keys are refused (`deny_unknown_fields`).

use std::net::SocketAddr;

use serde::Deserialize;

/// `[public]`: the listener for signalling and colibri websockets.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PublicConfig {
    /// `public.listen`: address of the signalling listener. Default `0.0.0.0:9090`.
    pub listen: SocketAddr,
}

impl Default for PublicConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
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
    /// `auth.app_secret`: HS256 secret. Default: none, which means dev mode
    /// (`run` makes a random secret and prints a join link).
    pub app_secret: Option<String>,
    /// `auth.accepted_issuers`: allowed `iss` values. Default `["ringbridge"]`.
    pub accepted_issuers: Vec<String>,
    /// `auth.accepted_audiences`: allowed `aud` values. Default `["ringbridge"]`.
    pub accepted_audiences: Vec<String>,
    /// `auth.domain`: the token's `sub` must equal this, or be `"*"`.
    /// Default `"*"` (any subject).
    pub domain: String,
    /// `auth.leeway_s`: clock skew allowed on `exp` and `nbf`, in seconds. Default `30`.
    pub leeway_s: u64,
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
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        assert_eq!(PublicConfig::default().listen.to_string(), "0.0.0.0:9090");
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
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let auth = AuthConfig {
            app_secret: Some("hunter2".into()),
            ..AuthConfig::default()
        };
        let shown = format!("{auth:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
