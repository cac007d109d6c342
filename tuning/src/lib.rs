//! Host tuning for ringbridge: the sysctl profile and the code behind
//! `ringbridge tune check` and `ringbridge tune apply`, plus the systemd
//! notification protocol the bridge speaks when it runs as a `Type=notify` unit.
//!
//! Every function that reads or writes the host takes a [`Host`], a root folder
//! that stands for `/`. The binary uses `/`; tests build a fake `proc/`, `sys/`
//! and `etc/` tree in a temporary folder, so they never change the machine they
//! run on. With any other root than `/`, nothing outside that tree is touched.
//!
//! ```
//! use ringbridge_tuning::{Host, Profile};
//! let profile = Profile::embedded([10000, 20000]).expect("embedded profile parses");
//! assert!(profile.settings().iter().any(|s| s.key == "net.core.rmem_max"));
//! let report = ringbridge_tuning::check(&Host::new("/nonexistent"), &profile, &[1]);
//! assert!(!report.findings.is_empty());
//! ```

pub mod cpulist;
mod host;
mod profile;
pub mod systemd;
pub mod unit;

pub use host::{ApplyReport, Finding, Report, SysctlWrite, Verdict, apply, below_profile, check};
pub use profile::{PROFILE, Profile, Setting, Wanted};

use std::path::{Path, PathBuf};

/// Where `apply` writes the profile, relative to the host root.
pub const SYSCTL_FILE: &str = "etc/sysctl.d/90-ringbridge.conf";

/// The memlock limit (bytes) below which `check` reports the limit that
/// `ringbridge.service` grants as off.
///
/// io_uring's rings and registered buffers are charged to `RLIMIT_MEMLOCK` on
/// kernels before 5.12; 64 MiB covers a shard's rings and buffer ring with room.
pub const MIN_MEMLOCK: u64 = 64 * 1024 * 1024;

/// The machine to check or tune: a root folder standing for `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    root: PathBuf,
}

impl Host {
    /// A host rooted at `root` (`/` for the real machine).
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    /// The real machine (`/`).
    pub fn live() -> Host {
        Host::new("/")
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` (absolute or relative, e.g. `/proc/interrupts`) inside the root.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The `/proc/sys` file of a sysctl key (`net.core.rmem_max`).
    pub fn sysctl_path(&self, key: &str) -> PathBuf {
        self.path(&format!("proc/sys/{}", key.replace('.', "/")))
    }
}

/// Why tuning failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuneError {
    /// A profile line is not `key = value`, or a value is not what the key needs.
    #[error("profile line {line}: {message}")]
    Profile {
        /// 1-based line number in the profile.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The port range is empty or starts at 0.
    #[error("port range {0}-{1}: expected 1 <= first <= last")]
    PortRange(u16, u16),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}
