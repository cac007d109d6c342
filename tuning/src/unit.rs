//! What the `ringbridge.service` unit grants the bridge: its `LimitMEMLOCK=`,
//! read from the unit file and its drop-ins under a [`Host`] root, merged as
//! systemd merges them. `tune check` runs from a shell, whose own limit says
//! nothing about the service's.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use crate::Host;

/// The bridge's unit.
pub const UNIT: &str = "ringbridge.service";

/// Unit folders, highest precedence first (systemd's order for system units).
pub const UNIT_DIRS: &[&str] = &[
    "etc/systemd/system",
    "run/systemd/system",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];

/// Where the bridge's memlock limit comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemlockGrant {
    /// No `ringbridge.service` under any unit folder.
    NoUnit,
    /// The unit (with its drop-ins) sets no `LimitMEMLOCK=`.
    Unset {
        /// The unit file.
        unit: PathBuf,
    },
    /// The last `LimitMEMLOCK=` that applies.
    Set {
        /// Its value as written (`infinity`, `64M`, `8388608:infinity`, ...).
        value: String,
        /// The soft limit in bytes; `None` for `infinity`.
        bytes: Option<u64>,
        /// The file it is set in.
        file: PathBuf,
    },
    /// A value systemd would refuse.
    Invalid {
        /// The value as written.
        value: String,
        /// The file it is set in.
        file: PathBuf,
    },
}

/// The memlock limit `host`'s `ringbridge.service` grants.
pub fn memlock_grant(host: &Host) -> MemlockGrant {
    let Some(unit) = UNIT_DIRS
        .iter()
        .map(|d| host.path(&format!("{d}/{UNIT}")))
        .find(|p| p.is_file())
    else {
        return MemlockGrant::NoUnit;
    };
    // Drop-ins: one per file name, the highest-precedence folder's; applied in
    // file name order, after the unit file.
    let mut dropins: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in UNIT_DIRS.iter().rev() {
        let Ok(entries) = fs::read_dir(host.path(&format!("{dir}/{UNIT}.d"))) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                dropins.insert(name, e.path());
            }
        }
    }
    let mut last: Option<(String, PathBuf)> = None;
    for file in std::iter::once(unit.clone()).chain(dropins.into_values()) {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                section = line.to_owned();
            } else if section == "[Service]"
                && let Some((k, v)) = line.split_once('=')
                && k.trim() == "LimitMEMLOCK"
            {
                let v = v.trim();
                // An empty assignment resets what came before.
                last = (!v.is_empty()).then(|| (v.to_owned(), file.clone()));
            }
        }
    }
    match last {
        None => MemlockGrant::Unset { unit },
        Some((value, file)) => match parse_limit(&value) {
            Some(bytes) => MemlockGrant::Set { value, bytes, file },
            None => MemlockGrant::Invalid { value, file },
        },
    }
}

/// `DefaultLimitMEMLOCK=` from `etc/systemd/system.conf` and its drop-ins
/// (`system.conf.d/*.conf`, later files winning): `Some((value, soft bytes))`.
pub fn default_memlock(host: &Host) -> Option<(String, Option<u64>)> {
    let mut files = vec![host.path("etc/systemd/system.conf")];
    if let Ok(entries) = fs::read_dir(host.path("etc/systemd/system.conf.d")) {
        let mut more: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        more.sort();
        files.extend(more);
    }
    let mut last = None;
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            if let Some((k, v)) = line.trim().split_once('=')
                && k.trim() == "DefaultLimitMEMLOCK"
                && let Some(bytes) = parse_limit(v.trim())
            {
                last = Some((v.trim().to_owned(), bytes));
            }
        }
    }
    last
}

/// A systemd resource limit (`infinity`, `65536`, `64K`, `8M`, `1G`, or
/// `soft:hard`): the soft limit in bytes, `Some(None)` for infinity, `None`
/// when it does not parse.
pub fn parse_limit(value: &str) -> Option<Option<u64>> {
    let soft = value.split(':').next()?.trim();
    if soft.eq_ignore_ascii_case("infinity") {
        return Some(None);
    }
    let split = soft
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(soft.len());
    let (num, unit) = soft.split_at(split);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit("infinity"), Some(None));
        assert_eq!(parse_limit("65536"), Some(Some(65_536)));
        assert_eq!(parse_limit("64K"), Some(Some(65_536)));
        assert_eq!(parse_limit("8M"), Some(Some(8 << 20)));
        assert_eq!(parse_limit("1G:infinity"), Some(Some(1 << 30)));
        assert_eq!(parse_limit("lots"), None);
        assert_eq!(parse_limit("8Q"), None);
    }
}
