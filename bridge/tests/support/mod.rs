//! Test support shared by integration tests and benches.

pub mod harness;
pub mod net;
pub mod netns;
pub mod simulcast;
