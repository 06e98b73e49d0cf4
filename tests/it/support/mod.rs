//! Helpers shared by the library's integration tests.

#[cfg(feature = "verify")]
pub mod tokens;

/// 2026-01-01T00:00:00Z, the fixed clock of tests that do not run against the real one.
pub const NOW: u64 = 1_767_225_600;
