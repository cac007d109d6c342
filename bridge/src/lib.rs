//! ringbridge's media plane: the sans-IO protocol core ([`proto`]), the shard
//! drivers around it ([`io`]), the [`plane`] the control plane talks to, and the
//! configuration file ([`config`]). The `ringbridge` binary wires them to the
//! control plane (`ringbridge-control`).

pub mod config;
pub mod io;
pub mod plane;
pub mod proto;
