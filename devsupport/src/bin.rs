//! Where the workspace, its target folder and the `ringbridge` binary are.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Cargo's target folder: `CARGO_TARGET_DIR` (relative to the workspace root when
/// relative), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The `ringbridge` binary under test.
///
/// `RINGBRIDGE_BIN` when set (`scripts/test.sh` builds a release binary and sets it;
/// a relative path is taken from the workspace root); otherwise builds it once per
/// process with `cargo build --release -p ringbridge-bridge --bin ringbridge` in the
/// workspace root and returns `target/release/ringbridge`. Panics if that build
/// fails: a test cannot go on without the binary.
pub fn ringbridge_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("RINGBRIDGE_BIN") {
            let bin = PathBuf::from(bin);
            let bin = if bin.is_absolute() {
                bin
            } else {
                workspace_root().join(bin)
            };
            assert!(
                bin.is_file(),
                "RINGBRIDGE_BIN={} is not a file",
                bin.display()
            );
            return bin;
        }
        eprintln!("RINGBRIDGE_BIN not set: building the release ringbridge binary");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "--release",
                "-p",
                "ringbridge-bridge",
                "--bin",
                "ringbridge",
            ])
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
        assert!(
            status.success(),
            "building the ringbridge binary failed: {status}"
        );
        let bin = target_dir().join("release").join("ringbridge");
        assert!(bin.is_file(), "{} missing after the build", bin.display());
        bin
    })
    .clone()
}

/// The `ringbridge-bench` binary (the load-test harness, whose `flood`
/// subcommand the end-to-end flood test runs as a separate process).
///
/// `RINGBRIDGE_BENCH_BIN` when set (relative paths from the workspace root);
/// otherwise builds it once per process with `cargo build --release -p
/// ringbridge-bench --bin ringbridge-bench` and returns
/// `target/release/ringbridge-bench`. Release, as the bridge: a flood from a
/// debug build would not be the highest rate one core can send. Panics if the
/// build fails.
pub fn bench_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("RINGBRIDGE_BENCH_BIN") {
            let bin = workspace_root().join(PathBuf::from(bin));
            assert!(
                bin.is_file(),
                "RINGBRIDGE_BENCH_BIN={} is not a file",
                bin.display()
            );
            return bin;
        }
        eprintln!("RINGBRIDGE_BENCH_BIN not set: building the release ringbridge-bench binary");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "--release",
                "-p",
                "ringbridge-bench",
                "--bin",
                "ringbridge-bench",
            ])
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
        assert!(
            status.success(),
            "building the ringbridge-bench binary failed: {status}"
        );
        let bin = target_dir().join("release").join("ringbridge-bench");
        assert!(bin.is_file(), "{} missing after the build", bin.display());
        bin
    })
    .clone()
}
