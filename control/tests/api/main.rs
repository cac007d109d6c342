//! End-to-end tests of the control plane over real sockets on 127.0.0.1, with
//! a fake media plane.

mod abuse;
mod colibri;
mod fake;
mod operator;
mod signalling;
mod tokens;
