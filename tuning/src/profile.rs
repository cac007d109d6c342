//! The sysctl profile: `tuning/profiles/ringbridge.conf`, parsed.

use crate::TuneError;

/// The profile text shipped with ringbridge (`tuning/profiles/ringbridge.conf`).
pub const PROFILE: &str = include_str!("../profiles/ringbridge.conf");

/// The key whose value is replaced by the configured media port range.
pub(crate) const RESERVED_PORTS: &str = "net.ipv4.ip_local_reserved_ports";

/// What the profile wants for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// Each whitespace-separated field at least this value (one field for most
    /// keys, three for `net.ipv4.udp_mem`).
    AtLeast(Vec<u64>),
    /// A port list that must contain every port of `first..=last`.
    Ports(u16, u16),
}

impl std::fmt::Display for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wanted::AtLeast(v) => {
                let v: Vec<String> = v.iter().map(u64::to_string).collect();
                write!(f, ">= {}", v.join(" "))
            }
            Wanted::Ports(a, b) => write!(f, "contains {a}-{b}"),
        }
    }
}

/// One key of the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Dotted sysctl key, e.g. `net.core.rmem_max`.
    pub key: String,
    /// What the profile wants.
    pub wanted: Wanted,
}

/// The parsed profile for one media port range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    settings: Vec<Setting>,
}

impl Profile {
    /// The embedded profile, with `net.ipv4.ip_local_reserved_ports` set to
    /// `port_range` (`media.port_range`).
    pub fn embedded(port_range: [u16; 2]) -> Result<Profile, TuneError> {
        Profile::parse(PROFILE, port_range)
    }

    /// Parses a profile in sysctl.d format (`key = value`, `#` comments). Only
    /// active lines count: the commented opt-in section is not applied.
    pub fn parse(text: &str, port_range: [u16; 2]) -> Result<Profile, TuneError> {
        let [first, last] = port_range;
        if first == 0 || first > last {
            return Err(TuneError::PortRange(first, last));
        }
        let mut settings = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let err = |message: String| TuneError::Profile {
                line: i + 1,
                message,
            };
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| err(format!("expected `key = value`, got `{line}`")))?;
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(err(format!("bad key `{key}`")));
            }
            let wanted = if key == RESERVED_PORTS {
                Wanted::Ports(first, last)
            } else {
                let fields: Result<Vec<u64>, _> =
                    value.split_whitespace().map(str::parse::<u64>).collect();
                match fields {
                    Ok(f) if !f.is_empty() => Wanted::AtLeast(f),
                    _ => return Err(err(format!("`{key}`: expected numbers, got `{value}`"))),
                }
            };
            settings.push(Setting {
                key: key.to_owned(),
                wanted,
            });
        }
        Ok(Profile { settings })
    }

    /// The keys, in profile order.
    pub fn settings(&self) -> &[Setting] {
        &self.settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_profile_has_every_key_with_a_reason() {
        let p = Profile::embedded([12000, 13000]).expect("parses");
        let keys: Vec<&str> = p.settings().iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "net.core.rmem_max",
                "net.core.wmem_max",
                "net.core.rmem_default",
                "net.core.wmem_default",
                "net.core.netdev_max_backlog",
                "net.ipv4.udp_mem",
                "net.ipv4.udp_rmem_min",
                "net.ipv4.ip_local_reserved_ports",
            ]
        );
        assert!(
            p.settings()
                .iter()
                .any(|s| s.wanted == Wanted::Ports(12000, 13000))
        );
        // Every active line is preceded by a comment giving its reason.
        let lines: Vec<&str> = PROFILE.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if !l.trim().is_empty() && !l.starts_with('#') {
                assert!(i > 0 && lines[i - 1].starts_with('#'), "no reason for {l}");
            }
        }
        // Busy polling is opt-in: present, but commented out.
        assert!(PROFILE.contains("# net.core.busy_poll"));
        assert!(!keys.contains(&"net.core.busy_poll"));
    }

    #[test]
    fn bad_profiles_are_refused() {
        assert!(Profile::parse("net.core.rmem_max 5\n", [1, 2]).is_err());
        assert!(Profile::parse("net.core.rmem_max = lots\n", [1, 2]).is_err());
        assert!(Profile::parse("a b = 1\n", [1, 2]).is_err());
        assert!(Profile::parse("", [0, 2]).is_err());
        assert!(Profile::parse("", [3, 2]).is_err());
    }
}
