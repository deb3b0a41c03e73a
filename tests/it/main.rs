//! Integration tests: the real `pgdump-api` binary against a real PostgreSQL.

mod clean;
mod clean_security;
mod client;
mod dump;
mod errors;
mod matrix;
mod process;
mod reliability;
mod serve;
mod support;
