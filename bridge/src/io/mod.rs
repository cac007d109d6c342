//! Drivers: threads that own sockets and the clock and run a [`ShardCore`].
//!
//! This build has one driver, a non-blocking socket loop over `mio` (epoll).
//! The io_uring and recvmmsg/sendmmsg drivers slot in beside it behind the same
//! [`ShardHandle`] seam: the core does not change.
//!
//! [`ShardCore`]: crate::proto::shard::ShardCore

mod mmsg;
mod netif;
mod poll_loop;
mod shard;
mod uring;

pub use netif::host_address;
pub use shard::{
    AfterCommand, Backend, PortBinder, PreparedDriver, SendTotals, ShardCommand, ShardContext,
    ShardHandle, ShardSpec, ShardStats, ShardWaker, handle_command, spawn_shard,
};
