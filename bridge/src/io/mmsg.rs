//! The recvmmsg/sendmmsg over epoll driver (being written; until then it runs the poll loop).

use super::shard::{PreparedDriver, ShardSpec};

/// Prepares the driver.
pub fn prepare(spec: &ShardSpec) -> std::io::Result<PreparedDriver> {
    tracing::warn!("the mmsg driver is not built yet; running the poll loop");
    super::poll_loop::prepare(spec)
}
