//! Drivers: threads that own sockets and the clock and run a [`ShardCore`].
//!
//! One loop ([`driver`]) runs the core over either backend behind the [`Io`]
//! seam: io_uring (`uring`), recvmmsg/sendmmsg over epoll (`mmsg`) or AF_XDP
//! ([`xdp`], with its own framing; started by [`spawn_xdp_shard`]); they
//! differ only in how they wait, receive and send. [`choose_backend`] resolves
//! `media.io`. The send side both share (failure reasons, per-socket backlogs)
//! is in [`send`], the bounded event channel to the control plane in
//! [`events`]. ICE-TCP (RFC 6544/4571): the framing in [`tcp`], a shard's
//! connections in [`tcp_conns`], the listener that hands them to shards in
//! [`tcp_listen`].
//!
//! [`ShardCore`]: crate::proto::shard::ShardCore

pub mod batch;
mod bpf;
pub mod driver;
pub mod events;
pub mod gso;
mod mmsg;
mod netif;
pub mod rx_time;
mod select;
pub mod send;
mod shard;
pub mod single_port;
pub mod steer_bpf;
pub mod tcp;
pub mod tcp_conns;
pub mod tcp_listen;
pub mod udp;
mod uring;
pub mod xdp;

pub use driver::Io;
pub use events::{EVENT_QUEUE, ShardEventReceiver, ShardEventSender, event_channel};
pub use netif::host_address;
pub use select::{BackendChoice, choose_backend};
pub use send::{SendFailure, SendTotals};
pub use shard::{
    AfterCommand, Backend, PortBinder, PreparedDriver, ShardCommand, ShardContext, ShardHandle,
    ShardSpec, ShardStats, ShardWaker, handle_command, spawn_shard, spawn_xdp_shard,
};
pub use single_port::SinglePort;
pub use tcp_conns::{TcpConns, TcpHandoff, TcpStats};
pub use tcp_listen::{TcpListenerHandle, TcpListenerStats, spawn_tcp_listener};
pub use uring::probe as probe_uring;
