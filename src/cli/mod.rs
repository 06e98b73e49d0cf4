//! Subcommands of the `revbloom` binary, one module each.

pub mod cutoff;
pub mod revoke;
pub mod serve;
