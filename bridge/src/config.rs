//! The configuration file (`ringbridge run --config FILE`).
//!
//! One TOML file; every key has a default, so an empty file (or none) starts a
//! working bridge in dev mode. `run --config FILE` also needs a key to check
//! tokens with ([`Config::require_key`]). Unknown keys and bad values are
//! refused with the dotted key's name and what is expected (`public.listen:
//! invalid socket address "x": expected IP:PORT`). The control plane's sections
//! are defined in `ringbridge_control::config`; the media and log sections live
//! here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
    /// `[log]`: log level and format.
    pub log: LogConfig,
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
            log: LogConfig::default(),
            shutdown_timeout_s: 600,
        }
    }
}

/// `[log]`: what the bridge logs, and how (to stderr; the journal under systemd).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `log.level`: the least severe level logged, `error`, `warn`, `info`,
    /// `debug`, `trace` or `off`, or per-module directives in `RUST_LOG`'s
    /// syntax (`"info,ringbridge_control=debug"`). The `RUST_LOG` environment
    /// variable, when set, overrides it. Default `"info"`.
    pub level: String,
    /// `log.format`: `"text"` (one line per event) or `"json"` (one JSON object
    /// per line, for log shippers). Default `"text"`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Levels `log.level` accepts, alone or after `target=`.
const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Whether `level` is a level or a list of `RUST_LOG`-style directives
/// (`level` or `target=level`, comma-separated). Stricter than
/// `tracing_subscriber`'s parser, which takes any word as a target name, so
/// that a typo (`"verbose"`) is refused instead of silencing every log.
pub fn valid_log_level(level: &str) -> bool {
    let level_ok = |l: &str| LOG_LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l.trim()));
    let target_ok = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-')
    };
    !level.trim().is_empty()
        && level.split(',').all(|d| match d.split_once('=') {
            Some((target, l)) => target_ok(target.trim()) && level_ok(l),
            None => level_ok(d),
        })
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
    /// AF_XDP on `media.xdp_interface` (kernel bypass for the media
    /// datagrams); never chosen by `auto`, refused at start with the reason
    /// where it cannot run.
    Xdp,
}

/// `[media]`: the UDP media plane.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// `media.port_range`: inclusive UDP port range; each endpoint gets one port
    /// (unless `media.port` is set). Default `[10000, 20000]`.
    pub port_range: [u16; 2],
    /// `media.port`: single-port mode. When not 0, every endpoint of every
    /// shard shares this one UDP port (one `SO_REUSEPORT` socket per shard,
    /// datagrams steered to the owning shard by source address) and
    /// `media.port_range` is unused. Default `0` (off: a port per endpoint).
    pub port: u16,
    /// `media.advertise`: addresses put into ICE host candidates.
    /// Default `[]`: the host's first non-loopback IPv4 address (127.0.0.1 if none).
    pub advertise: Vec<IpAddr>,
    /// `media.bind`: local address the media sockets bind to, the UDP ports and
    /// the ICE-TCP port. Default `"0.0.0.0"`.
    pub bind: IpAddr,
    /// `media.tcp_port`: the ICE-TCP fallback's TCP port on `media.bind` (RFC 6544
    /// passive candidates, RFC 4571 framing), offered in every answer below the
    /// UDP candidates; `0` turns it off. Default `4443`.
    pub tcp_port: u16,
    /// `media.io`: `"auto"`, `"uring"`, `"mmsg"` or `"xdp"`. Default `"auto"`
    /// (which never picks `"xdp"`).
    pub io: IoBackend,
    /// `media.xdp_interface`: with `media.io = "xdp"`, the network interface
    /// (the one `media.bind` is on) whose rx queue `i` shard `i`'s AF_XDP
    /// socket binds to; unused otherwise. Default `""`.
    pub xdp_interface: String,
    /// `media.cores`: cores for shard threads; empty means all cores but the first
    /// (which the control plane uses), or core 0 on a single-core host. Default `[]`.
    pub cores: Vec<usize>,
    /// `media.srtp_profiles`: the SRTP profiles the bridge accepts in DTLS-SRTP, in its
    /// order of preference; it picks the first one the client offers. Names as in
    /// RFC 5764 and RFC 7714. Default
    /// `["SRTP_AEAD_AES_128_GCM", "SRTP_AEAD_AES_256_GCM", "SRTP_AES128_CM_HMAC_SHA1_80"]`.
    pub srtp_profiles: Vec<SrtpProfile>,
    /// `media.video_start_bitrate_kbps`: the bandwidth estimate (kbit/s) a
    /// publishing browser starts from, sent in the answer as VP8's
    /// `x-google-start-bitrate`. Chrome's own start is 300 kbit/s, from which a
    /// 720p camera takes about 25 s to reach 1280x720; its probes and the
    /// bridge's TWCC feedback correct a start that is too high within a second.
    /// 0 sends none. Default `1500`.
    pub video_start_bitrate_kbps: u32,
    /// `media.audio_last_n`: forward each conference's audio only from its N
    /// loudest speakers (by smoothed RFC 6464 level above each one's noise
    /// floor; the dominant speaker always), dropping the others' packets. 0
    /// forwards everyone's audio. Default `0`.
    pub audio_last_n: u32,
    /// `media.drop_silence`: drop silent audio (RFC 6464 level 127) after the
    /// first 3 packets of a run, as jitsi-videobridge does. Saves bandwidth, but
    /// a browser whose microphone sends no DTX conceals the pause (Chromium
    /// counts 5-7% of its audio concealed under 5% loss with this on, 1-1.5%
    /// off). Default `false`.
    pub drop_silence: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            port_range: [10_000, 20_000],
            port: 0,
            advertise: Vec::new(),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            tcp_port: 4443,
            io: IoBackend::Auto,
            xdp_interface: String::new(),
            cores: Vec::new(),
            srtp_profiles: SrtpProfile::PREFERRED.to_vec(),
            video_start_bitrate_kbps: 1500,
            audio_last_n: 0,
            drop_silence: false,
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
    /// The TOML is malformed, has an unknown key or a value of the wrong type;
    /// the text names the dotted key and the reason.
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
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::Parse(describe_toml_error(text, None, &e)))?;
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::Parse(describe_toml_error(text, Some(&path), e.inner()))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Whether a key to check tokens with is configured: `auth.app_secret`,
    /// `auth.public_keys_dir` or `auth.jwks_file`.
    pub fn has_key(&self) -> bool {
        self.auth.app_secret.is_some()
            || self.auth.public_keys_dir.is_some()
            || self.auth.jwks_file.is_some()
    }

    /// What `run --config FILE` adds to [`Config::validate`]: a key to check
    /// tokens with ([`Config::has_key`]). Without one, only dev mode (`run`
    /// without `--config`, or `run --dev`) starts, with a throwaway secret.
    pub fn require_key(&self) -> Result<(), ConfigError> {
        if self.has_key() {
            return Ok(());
        }
        Err(ConfigError::Invalid {
            key: "auth.app_secret",
            expected: "not set, nor auth.public_keys_dir or auth.jwks_file: a configured \
                       bridge needs a key to check tokens with. Set a secret of at least 16 \
                       characters (`ringbridge config init-secret FILE` writes a random one), \
                       or start with `run --dev` for a throwaway secret and a join link"
                .into(),
        })
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
        if self.media.io == IoBackend::Xdp {
            if self.media.xdp_interface.is_empty() {
                return invalid(
                    "media.xdp_interface",
                    "the interface to run AF_XDP on, with media.io = \"xdp\"",
                );
            }
            if self.media.bind.is_unspecified() {
                return invalid(
                    "media.bind",
                    "with media.io = \"xdp\", the interface's address (the bridge frames \
                     its datagrams itself and sends from it)",
                );
            }
            if self.media.port != 0 {
                return invalid(
                    "media.port",
                    "0 with media.io = \"xdp\" (single-port mode is not supported over AF_XDP)",
                );
            }
        }
        if self.media.port != 0 && self.media.port < 1024 {
            return invalid(
                "media.port",
                "0 (a port per endpoint from media.port_range) or a UDP port from 1024 to 65535",
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
        if let Some((a, b)) = listeners_collide(self.public.listen, self.private.listen) {
            return Err(ConfigError::Invalid {
                key: "private.listen",
                expected: format!(
                    "{b} collides with public.listen {a}: both need TCP port {} on the same \
                     address{}; give the listeners different ports",
                    a.port(),
                    if a.ip() == b.ip() {
                        String::new()
                    } else {
                        " (an unspecified address such as 0.0.0.0 covers every address)".into()
                    }
                ),
            });
        }
        if self.media.tcp_port != 0 {
            let tcp = SocketAddr::new(self.media.bind, self.media.tcp_port);
            for (name, listen) in [
                ("public.listen", self.public.listen),
                ("private.listen", self.private.listen),
            ] {
                if let Some((a, b)) = listeners_collide(tcp, listen) {
                    return Err(ConfigError::Invalid {
                        key: "media.tcp_port",
                        expected: format!(
                            "{a} (on media.bind) collides with {name} {b}: both need TCP port \
                             {} on the same address; pick another port, or 0 to turn ICE-TCP off",
                            a.port()
                        ),
                    });
                }
            }
        }
        if let Some(url) = &self.public.url
            && !valid_public_url(url)
        {
            return Err(ConfigError::Invalid {
                key: "public.url",
                expected: format!(
                    "expected an http:// or https:// URL with a host and no query or fragment, \
                     e.g. \"https://meet.example.com\", got {url:?}"
                ),
            });
        }
        if !valid_log_level(&self.log.level) {
            return Err(ConfigError::Invalid {
                key: "log.level",
                expected: format!(
                    "expected error, warn, info, debug, trace or off, or directives such as \
                     \"info,ringbridge_control=debug\", got {:?}",
                    self.log.level
                ),
            });
        }
        if self.load.max_packet_rate == 0 {
            return invalid("load.max_packet_rate", "a packet rate of at least 1");
        }
        if self.public.join_rate_limit > 0 && self.public.join_rate_burst == 0 {
            return invalid(
                "public.join_rate_burst",
                "at least 1 while public.join_rate_limit is set (0 turns the limit off)",
            );
        }
        if self.public.ws_rate_limit > 0 && self.public.ws_rate_burst == 0 {
            return invalid(
                "public.ws_rate_burst",
                "at least 1 while public.ws_rate_limit is set (0 turns the limit off)",
            );
        }
        if !(1..=10_000_000).contains(&self.public.rate_limit_addresses) {
            return invalid("public.rate_limit_addresses", "1 to 10000000 addresses");
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

/// `Some((public, private))` when the two listeners cannot both be bound: the
/// same TCP port on the same address, or on an unspecified address of the same
/// family (`0.0.0.0` covers every IPv4 address; `::` every address).
fn listeners_collide(public: SocketAddr, private: SocketAddr) -> Option<(SocketAddr, SocketAddr)> {
    if public.port() == 0 || public.port() != private.port() {
        return None;
    }
    let (a, b) = (public.ip(), private.ip());
    let covers = |wide: IpAddr, other: IpAddr| {
        wide.is_unspecified() && (wide.is_ipv6() || wide.is_ipv4() == other.is_ipv4())
    };
    (a == b || covers(a, b) || covers(b, a)).then_some((public, private))
}

/// `public.url`: `http://` or `https://`, a host, no whitespace, query or fragment.
fn valid_public_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split('/').next().unwrap_or("");
        !host.is_empty()
            && !r.contains(|c: char| c.is_whitespace() || c == '?' || c == '#' || c == '"')
    })
}

/// One line naming the dotted key and the reason, e.g. `public.listen:
/// invalid socket address "x": expected IP:PORT (line 3)`. `path` is
/// `serde_path_to_error`'s (`.` for the top level), or `None` for a TOML
/// syntax error.
fn describe_toml_error(text: &str, path: Option<&str>, e: &toml::de::Error) -> String {
    let span = e.span();
    let raw = span
        .clone()
        .and_then(|s| text.get(s))
        .map_or(String::new(), |r| r.trim().to_owned());
    let at = span
        .map(|s| {
            let upto = text.get(..s.start).unwrap_or(text);
            format!(" (line {})", upto.matches('\n').count() + 1)
        })
        .unwrap_or_default();
    let message = e.message().trim();
    let Some(path) = path else {
        return format!("TOML syntax error{at}: {message}");
    };
    let path = if path == "." { "" } else { path };
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((name, expected)) = rest.split_once('`')
    {
        // serde_path_to_error's path already ends with the unknown key.
        let key = if path == name || path.ends_with(&format!(".{name}")) {
            path.to_owned()
        } else if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        let expected = expected.trim_start_matches(',').trim();
        return format!("{key}: unknown key; {expected}{at}");
    }
    let reason = match message {
        "invalid socket address syntax" => {
            format!("invalid socket address {raw}: expected IP:PORT, e.g. \"0.0.0.0:9090\"")
        }
        "invalid IP address syntax" => {
            format!("invalid IP address {raw}: expected e.g. \"203.0.113.7\" or \"2001:db8::7\"")
        }
        m => m.to_owned(),
    };
    if path.is_empty() {
        format!("{reason}{at}")
    } else {
        format!("{path}: {reason}{at}")
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
        assert_eq!(c.media.port, 0, "single-port mode is off by default");
        assert!(c.media.advertise.is_empty());
        assert_eq!(c.media.bind.to_string(), "0.0.0.0");
        assert_eq!(c.media.tcp_port, 4443);
        assert_eq!(c.media.io, IoBackend::Auto);
        assert!(c.media.cores.is_empty());
        assert_eq!(c.media.srtp_profiles, SrtpProfile::PREFERRED);
        assert_eq!(c.media.video_start_bitrate_kbps, 1500);
        assert_eq!(c.media.audio_last_n, 0);
        assert!(!c.media.drop_silence);
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
        assert_eq!(c.load.max_conferences, 0);
        assert_eq!(c.load.max_endpoints_per_conference, 500);
        assert_eq!(
            (c.public.join_rate_limit, c.public.join_rate_burst),
            (10, 50)
        );
        assert_eq!((c.public.ws_rate_limit, c.public.ws_rate_burst), (10, 50));
        assert_eq!(c.public.rate_limit_addresses, 10_000);
        assert_eq!(c.shutdown_timeout_s, 600);
        assert_eq!(c.public.url, None);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.log.format, LogFormat::Text);
        assert!(!c.has_key(), "the defaults are dev mode's");
    }

    #[test]
    fn bad_config_names_the_key() {
        let cases = [
            (
                "[media]\nport_rnage = [1, 2]\n",
                "media.port_rnage: unknown key",
            ),
            ("[media]\nport_range = [20000, 10000]\n", "media.port_range"),
            ("[media]\nport_range = [0, 10]\n", "media.port_range"),
            (
                "[media]\nio = \"epoll\"\n",
                "media.io: unknown variant `epoll`",
            ),
            ("[media]\nadvertise = [\"0.0.0.0\"]\n", "media.advertise"),
            (
                "[media]\nadvertise = [\"not-an-ip\"]\n",
                "media.advertise[0]: invalid IP address \"not-an-ip\"",
            ),
            ("[media]\nsrtp_profiles = []\n", "media.srtp_profiles"),
            ("[media]\ntcp_port = 70000\n", "media.tcp_port"),
            ("[media]\ntcp_port = -1\n", "media.tcp_port"),
            ("[media]\ntcp_port = \"4443\"\n", "media.tcp_port"),
            (
                "[media]\ntcp_port = 9090\n",
                "media.tcp_port: 0.0.0.0:9090 (on media.bind) collides with public.listen 0.0.0.0:9090",
            ),
            (
                "[media]\ntcp_port = 8080\nbind = \"127.0.0.1\"\n",
                "media.tcp_port: 127.0.0.1:8080 (on media.bind) collides with private.listen",
            ),
            (
                "[media]\nsrtp_profiles = [\"AES_CM_128_HMAC_SHA1_80\"]\n",
                "SRTP_AES128_CM_HMAC_SHA1_80",
            ),
            (
                "[public]\nlisten = \"nowhere\"\n",
                "public.listen: invalid socket address \"nowhere\": expected IP:PORT",
            ),
            (
                "[private]\nlisten = \"127.0.0.1\"\n",
                "private.listen: invalid socket address \"127.0.0.1\"",
            ),
            ("[media]\nport_range = [1, 70000]\n", "media.port_range[1]"),
            ("[media]\nport = 80\n", "media.port: 0 (a port per endpoint"),
            ("[media]\nport = 70000\n", "media.port"),
            ("[media]\nport = \"10000\"\n", "media.port"),
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
            ("bogus = 1\n", "bogus: unknown key"),
            ("[log]\nlevel = \"verbose\"\n", "log.level"),
            ("[log]\nlevel = \"info,ringbridge=loud\"\n", "log.level"),
            ("[log]\nformat = \"xml\"\n", "log.format: unknown variant"),
            ("[public]\nurl = \"meet.example.com\"\n", "public.url"),
            ("[public]\nurl = \"https://x/?a=b\"\n", "public.url"),
            (
                "[public]\nlisten = \"127.0.0.1:8080\"\n",
                "private.listen: 127.0.0.1:8080 collides with public.listen 127.0.0.1:8080",
            ),
            (
                "[public]\nlisten = \"0.0.0.0:7000\"\n[private]\nlisten = \"127.0.0.1:7000\"\n",
                "private.listen: 127.0.0.1:7000 collides with public.listen 0.0.0.0:7000",
            ),
            (
                "[public]\nlisten = \"[::]:7000\"\n[private]\nlisten = \"127.0.0.1:7000\"\n",
                "collides",
            ),
            ("not toml at all [\n", "TOML syntax error (line 1)"),
            ("[media]\ncores = [4096]\n", "media.cores"),
            ("[load]\nmax_packet_rate = 0\n", "load.max_packet_rate"),
            ("[load]\nmax_packet_rate = -5\n", "max_packet_rate"),
            ("[load]\nmax_pkt_rate = 5\n", "max_pkt_rate"),
            ("[load]\nmax_conferences = -1\n", "load.max_conferences"),
            (
                "[load]\nmax_endpoints_per_conference = \"many\"\n",
                "load.max_endpoints_per_conference",
            ),
            ("[public]\njoin_rate_burst = 0\n", "public.join_rate_burst"),
            ("[public]\nws_rate_burst = 0\n", "public.ws_rate_burst"),
            (
                "[public]\njoin_rate_limit = 1.5\n",
                "public.join_rate_limit",
            ),
            ("[public]\nws_rate_limit = -1\n", "public.ws_rate_limit"),
            (
                "[public]\nrate_limit_addresses = 0\n",
                "public.rate_limit_addresses",
            ),
            ("shutdown_timeout_s = 100000\n", "shutdown_timeout_s"),
            ("shutdown_timeout_s = \"10m\"\n", "shutdown_timeout_s"),
        ];
        for (text, key) in cases {
            let err = Config::parse(text).expect_err(text).to_string();
            assert!(
                err.contains(key),
                "error for {text:?} should name {key}: {err}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn listeners_on_different_ports_or_addresses_do_not_collide() {
        for text in [
            "[public]\nlisten = \"127.0.0.1:7000\"\n[private]\nlisten = \"127.0.0.2:7000\"\n",
            "[public]\nlisten = \"0.0.0.0:7000\"\n[private]\nlisten = \"[::1]:7000\"\n",
            "[public]\nlisten = \"127.0.0.1:0\"\n[private]\nlisten = \"127.0.0.1:0\"\n",
            "[public]\nurl = \"https://meet.example.com/bridge/\"\n",
            "[log]\nlevel = \"warn,ringbridge_control=debug\"\nformat = \"json\"\n",
            "[media]\ntcp_port = 0\n",
            "[media]\ntcp_port = 9090\nbind = \"10.0.0.1\"\n[public]\nlisten = \"127.0.0.1:9090\"\n",
            "[media]\ntcp_port = 10000\n",
            // Limits off: a burst of 0 is then fine.
            "[public]\njoin_rate_limit = 0\njoin_rate_burst = 0\nws_rate_limit = 0\n",
            "[load]\nmax_conferences = 100\nmax_endpoints_per_conference = 0\n",
        ] {
            Config::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        }
    }

    #[test]
    fn a_configured_bridge_needs_a_key() {
        let none = Config::parse("").expect("parses");
        let err = none.require_key().expect_err("no key").to_string();
        assert!(err.starts_with("auth.app_secret: not set"), "{err}");
        for text in [
            "[auth]\napp_secret = \"0123456789abcdef\"\n",
            "[auth]\npublic_keys_dir = \"/etc/ringbridge/keys\"\n",
            "[auth]\njwks_file = \"/etc/ringbridge/jwks.json\"\n",
        ] {
            let cfg = Config::parse(text).expect("parses");
            assert!(cfg.require_key().is_ok(), "{text}");
        }
    }

    #[test]
    fn log_levels() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "info,ringbridge_bridge::io=trace",
            "warn, hyper=error",
        ] {
            assert!(valid_log_level(ok), "{ok}");
        }
        for bad in ["", "verbose", "info,", "=debug", "a b=info", "ringbridge=5"] {
            assert!(!valid_log_level(bad), "{bad}");
        }
    }

    #[test]
    fn xdp_needs_an_interface_a_specific_bind_address_and_a_port_per_endpoint() {
        let ok = "[media]\nio = \"xdp\"\nxdp_interface = \"eth0\"\nbind = \"192.0.2.1\"\n";
        let cfg = Config::parse(ok).expect("parses");
        assert_eq!(cfg.media.io, IoBackend::Xdp);
        assert_eq!(cfg.media.xdp_interface, "eth0");
        for (text, key) in [
            (
                "[media]\nio = \"xdp\"\nbind = \"192.0.2.1\"\n",
                "media.xdp_interface",
            ),
            (
                "[media]\nio = \"xdp\"\nxdp_interface = \"eth0\"\n",
                "media.bind",
            ),
            (
                "[media]\nio = \"xdp\"\nxdp_interface = \"eth0\"\nbind = \"192.0.2.1\"\nport = 10000\n",
                "media.port",
            ),
        ] {
            let err = Config::parse(text).expect_err(key).to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
