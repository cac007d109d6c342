//! The configuration file (`ringbridge run --config FILE`).
//!
//! One TOML file; every key has a default, so an empty file (or none) starts a
//! working bridge. Unknown keys and bad values are refused with the key's name and
//! what is expected. The control plane's sections are defined in
//! `ringbridge_control::config`; the media section lives here.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::proto::srtp::SrtpProfile;
use ringbridge_control::config::{AuthConfig, LoadConfig, PrivateConfig, PublicConfig};
use serde::Deserialize;

/// The embedded default configuration, with every key and its default, commented.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `server_id`: this bridge's id in colibri websocket URLs. Default `"default-id"`.
    pub server_id: String,
    /// `[public]`: signalling and colibri websockets.
    pub public: PublicConfig,
    /// `[private]`: operator endpoints (health, version, stats).
    pub private: PrivateConfig,
    /// `[media]`: the UDP media plane.
    pub media: MediaConfig,
    /// `[auth]`: token checking.
    pub auth: AuthConfig,
    /// `[load]`: the packet rate that counts as fully loaded (`stress_level`).
    pub load: LoadConfig,
    /// `shutdown_timeout_s`: how long a graceful shutdown (SIGTERM, or `POST
    /// /colibri/shutdown`) waits for conferences to end before stopping anyway,
    /// in seconds. Default `600`.
    pub shutdown_timeout_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_id: "default-id".into(),
            public: PublicConfig::default(),
            private: PrivateConfig::default(),
            media: MediaConfig::default(),
            auth: AuthConfig::default(),
            load: LoadConfig::default(),
            shutdown_timeout_s: 600,
        }
    }
}

/// I/O backend of the shards.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    /// io_uring where it runs, else recvmmsg/sendmmsg (one log line says why).
    #[default]
    Auto,
    /// io_uring; refused at start, with the reason, where it cannot run.
    Uring,
    /// recvmmsg/sendmmsg over epoll.
    Mmsg,
}

/// `[media]`: the UDP media plane.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// `media.port_range`: inclusive UDP port range; each endpoint gets one port.
    /// Default `[10000, 20000]`.
    pub port_range: [u16; 2],
    /// `media.advertise`: addresses put into ICE host candidates.
    /// Default `[]`: the host's first non-loopback IPv4 address (127.0.0.1 if none).
    pub advertise: Vec<IpAddr>,
    /// `media.bind`: local address the media sockets bind to. Default `"0.0.0.0"`.
    pub bind: IpAddr,
    /// `media.io`: `"auto"`, `"uring"` or `"mmsg"`. Default `"auto"`.
    pub io: IoBackend,
    /// `media.cores`: cores for shard threads; empty means all cores but the first
    /// (which the control plane uses), or core 0 on a single-core host. Default `[]`.
    pub cores: Vec<usize>,
    /// `media.srtp_profiles`: the SRTP profiles the bridge accepts in DTLS-SRTP, in its
    /// order of preference; it picks the first one the client offers. Names as in
    /// RFC 5764 and RFC 7714. Default
    /// `["SRTP_AEAD_AES_128_GCM", "SRTP_AEAD_AES_256_GCM", "SRTP_AES128_CM_HMAC_SHA1_80"]`.
    pub srtp_profiles: Vec<SrtpProfile>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            port_range: [10_000, 20_000],
            advertise: Vec::new(),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            io: IoBackend::Auto,
            cores: Vec::new(),
            srtp_profiles: SrtpProfile::PREFERRED.to_vec(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("{0}")]
    Parse(String),
    /// A key has a value outside what it accepts.
    #[error("{key}: {expected}")]
    Invalid {
        /// Dotted key name.
        key: &'static str,
        /// What is expected instead.
        expected: String,
    },
}

impl Config {
    /// Parses and validates a configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, expected: &str| {
            Err(ConfigError::Invalid {
                key,
                expected: expected.to_owned(),
            })
        };
        if self.server_id.is_empty()
            || self.server_id.len() > 64
            || !self
                .server_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return invalid("server_id", "1 to 64 characters of [A-Za-z0-9._-]");
        }
        let [lo, hi] = self.media.port_range;
        if lo == 0 || lo > hi {
            return invalid(
                "media.port_range",
                "[first, last] with 1 <= first <= last <= 65535",
            );
        }
        if self.media.advertise.iter().any(|a| a.is_unspecified()) {
            return invalid("media.advertise", "concrete addresses, not 0.0.0.0 or ::");
        }
        if self.media.srtp_profiles.is_empty() {
            return invalid("media.srtp_profiles", "at least one SRTP profile");
        }
        if let Some(secret) = &self.auth.app_secret
            && secret.len() < 16
        {
            return invalid("auth.app_secret", "at least 16 characters");
        }
        if self.auth.accepted_issuers.is_empty() {
            return invalid("auth.accepted_issuers", "at least one issuer");
        }
        if self.auth.accepted_audiences.is_empty() {
            return invalid("auth.accepted_audiences", "at least one audience");
        }
        if self.load.max_packet_rate == 0 {
            return invalid("load.max_packet_rate", "a packet rate of at least 1");
        }
        if self.shutdown_timeout_s > 86_400 {
            return invalid("shutdown_timeout_s", "at most 86400 seconds (one day)");
        }
        let cores = available_cores();
        if let Some(&c) = self.media.cores.iter().find(|&&c| c >= cores) {
            return Err(ConfigError::Invalid {
                key: "media.cores",
                expected: format!("core ids below {cores} (this host's core count), got {c}"),
            });
        }
        Ok(())
    }
}

/// Number of cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_config_parses_to_the_defaults() {
        let parsed = Config::parse(DEFAULT_CONFIG).expect("default config parses");
        assert_eq!(parsed, Config::default());
        assert_eq!(Config::parse("").expect("empty config"), Config::default());
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.server_id, "default-id");
        assert_eq!(c.public.listen.to_string(), "0.0.0.0:9090");
        assert_eq!(c.private.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.media.port_range, [10_000, 20_000]);
        assert!(c.media.advertise.is_empty());
        assert_eq!(c.media.bind.to_string(), "0.0.0.0");
        assert_eq!(c.media.io, IoBackend::Auto);
        assert!(c.media.cores.is_empty());
        assert_eq!(c.media.srtp_profiles, SrtpProfile::PREFERRED);
        assert_eq!(c.auth.app_id, "ringbridge");
        assert_eq!(c.auth.app_secret, None);
        assert_eq!(c.auth.accepted_issuers, vec!["ringbridge".to_owned()]);
        assert_eq!(c.auth.accepted_audiences, vec!["ringbridge".to_owned()]);
        assert_eq!(c.auth.domain, "*");
        assert_eq!(c.auth.leeway_s, 30);
        assert_eq!(c.auth.owner_grace_s, 60);
        assert!(!c.auth.enforce_expiry && !c.auth.single_use_jti);
        assert_eq!(c.auth.max_lifetime_s, None);
        assert_eq!(c.load.max_packet_rate, 50_000);
        assert_eq!(c.shutdown_timeout_s, 600);
    }

    #[test]
    fn bad_config_names_the_key() {
        let cases = [
            ("[media]\nport_rnage = [1, 2]\n", "port_rnage"),
            ("[media]\nport_range = [20000, 10000]\n", "media.port_range"),
            ("[media]\nport_range = [0, 10]\n", "media.port_range"),
            ("[media]\nio = \"epoll\"\n", "epoll"),
            ("[media]\nadvertise = [\"0.0.0.0\"]\n", "media.advertise"),
            ("[media]\nadvertise = [\"not-an-ip\"]\n", "advertise"),
            ("[media]\nsrtp_profiles = []\n", "media.srtp_profiles"),
            (
                "[media]\nsrtp_profiles = [\"AES_CM_128_HMAC_SHA1_80\"]\n",
                "SRTP_AES128_CM_HMAC_SHA1_80",
            ),
            ("[public]\nlisten = \"nowhere\"\n", "listen"),
            ("[auth]\napp_secret = \"short\"\n", "auth.app_secret"),
            ("[auth]\nleeway_s = -1\n", "leeway_s"),
            (
                "[auth]\napp_secret_algorithm = \"none\"\n",
                "app_secret_algorithm",
            ),
            (
                "[auth]\npublic_keys_algorithm = \"HS256\"\n",
                "public_keys_algorithm",
            ),
            ("[auth]\nfeatures_default = \"maybe\"\n", "features_default"),
            ("[auth]\nowner_grace_s = -1\n", "owner_grace_s"),
            ("server_id = \"has space\"\n", "server_id"),
            ("bogus = 1\n", "bogus"),
            ("[media]\ncores = [4096]\n", "media.cores"),
            ("[load]\nmax_packet_rate = 0\n", "load.max_packet_rate"),
            ("[load]\nmax_packet_rate = -5\n", "max_packet_rate"),
            ("[load]\nmax_pkt_rate = 5\n", "max_pkt_rate"),
            ("shutdown_timeout_s = 100000\n", "shutdown_timeout_s"),
            ("shutdown_timeout_s = \"10m\"\n", "shutdown_timeout_s"),
        ];
        for (text, key) in cases {
            let err = Config::parse(text).expect_err(text).to_string();
            assert!(
                err.contains(key),
                "error for {text:?} should name {key}: {err}"
            );
        }
    }
}
