//! Integration tests: the real `pgdump-api` binary against a real PostgreSQL.

mod clean;
mod clean_security;
mod client;
mod connections;
mod deploy;
mod dump;
mod errors;
mod matrix;
mod probe;
mod process;
mod reliability;
mod retry;
mod serve;
mod stalls;
mod support;
