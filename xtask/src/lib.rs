//! pgdump-api's automation, in the manner of cargo-xtask: `xtask demo|load|bench` (what
//! `scripts/demo`, `scripts/load` and `scripts/bench` run).
//!
//! The library part is the throwaway-PostgreSQL harness ([`cluster`]) that the binary and the
//! integration tests (`tests/it/support/postgres.rs`) share.

pub mod cluster;

pub use cluster::Cluster;
