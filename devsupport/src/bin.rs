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
    BIN.get_or_init(|| release_bin("RINGBRIDGE_BIN", "ringbridge-bridge", "ringbridge"))
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
        release_bin(
            "RINGBRIDGE_BENCH_BIN",
            "ringbridge-bench",
            "ringbridge-bench",
        )
    })
    .clone()
}

/// The release binary `bin` of package `package`: the path in environment
/// variable `env` when set (relative to the workspace root), else built with
/// `cargo build --release -p <package> --bin <bin>`. Panics when the path is
/// not a file or the build fails.
fn release_bin(env: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        let path = workspace_root().join(PathBuf::from(path));
        assert!(path.is_file(), "{env}={} is not a file", path.display());
        return path;
    }
    eprintln!("{env} not set: building the release {bin} binary");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--release", "-p", package, "--bin", bin])
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    assert!(
        status.success(),
        "building the {bin} binary failed: {status}"
    );
    let path = target_dir().join("release").join(bin);
    assert!(path.is_file(), "{} missing after the build", path.display());
    path
}
