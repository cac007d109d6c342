//! Operator subcommands of the `ringbridge` binary: `tune` and `config`, the
//! systemd notification glue and the logging of `run`, and the join links of
//! dev mode and `token --link`.

pub(crate) mod allocator;
pub(crate) mod config_cmd;
pub(crate) mod dev;
pub(crate) mod link;
pub(crate) mod logging;
pub(crate) mod systemd;
pub(crate) mod tune;
