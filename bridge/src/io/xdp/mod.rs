//! The AF_XDP data path (issue 14): an XDP program that redirects the
//! bridge's media datagrams to AF_XDP sockets, the sockets with their UMEM
//! and rings, and the framing and next-hop lookups the bridge does itself
//! once the kernel's UDP stack is out of the path.
//!
//! - [`program`]: the XDP program (hand-assembled bytecode) and its maps.
//! - [`socket`]: one XSK bound to one queue, on [`umem`] frames and [`ring`]s.
//! - [`frame`]: Ethernet/IPv4/IPv6/UDP headers and checksums.
//! - [`neigh`]: routes, neighbours and link addresses over netlink.
//! - [`neigh_watch`]: the kernel's neighbour and route changes as they happen.
//! - [`driver`]: the shard loop's backend over one XSK.
//! - [`plane`]: `media.io = "xdp"` set up at start, or refused with the reason.

pub mod driver;
pub mod frame;
pub mod neigh;
pub mod neigh_watch;
pub mod plane;
pub mod program;
pub mod ring;
pub mod socket;
pub mod umem;

pub use driver::{XdpCounters, XskIo};
pub use plane::XdpPlane;
pub use program::{AttachMode, ModeChoice, XdpProgram};
pub use socket::{CopyMode, RxFrame, XskConfig, XskSocket, XskStats};
