//! Drivers: threads that own sockets and the clock and run a [`ShardCore`].
//!
//! Two drivers run the same core behind the [`ShardHandle`] seam: io_uring
//! (`uring`) and recvmmsg/sendmmsg over epoll (`mmsg`).
//! [`choose_backend`] resolves `media.io`.
//!
//! [`ShardCore`]: crate::proto::shard::ShardCore

pub mod batch;
pub mod gso;
mod mmsg;
mod netif;
mod select;
mod shard;
pub mod udp;
mod uring;

pub use netif::host_address;
pub use select::{BackendChoice, choose_backend};
pub use shard::{
    AfterCommand, Backend, PortBinder, PreparedDriver, SendTotals, ShardCommand, ShardContext,
    ShardHandle, ShardSpec, ShardStats, ShardWaker, handle_command, spawn_shard,
};
pub use uring::probe as probe_uring;
