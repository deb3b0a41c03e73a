//! Integration tests: the real `pgdump-api` binary against a real PostgreSQL.

mod clean;
mod client;
mod dump;
mod errors;
mod process;
mod serve;
mod support;
