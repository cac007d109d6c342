//! What ringbridge's end-to-end tests (`tests/`) and load-test harness (`bench/`)
//! share to drive a real bridge process:
//!
//! - [`ringbridge_bin`]: the `ringbridge` binary under test;
//! - [`bench_bin`]: the `ringbridge-bench` binary (load and flood generator);
//! - [`http_request`]: a tiny blocking HTTP/1.1 client for signalling and operator
//!   checks.
//!
//! Not part of the bridge: nothing here ships in the `ringbridge` binary.

mod bin;
mod http;

pub use bin::{bench_bin, ringbridge_bin, target_dir, workspace_root};
pub use http::{HttpResponse, http_request, http_request_within};
