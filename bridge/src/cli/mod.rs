//! Operator subcommands of the `ringbridge` binary: `tune` and `config`, and
//! the systemd notification glue of `run`.

pub(crate) mod config_cmd;
pub(crate) mod systemd;
pub(crate) mod tune;
