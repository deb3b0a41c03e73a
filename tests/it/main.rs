//! Integration tests: the real `pgdump-api` binary against a real PostgreSQL.

mod auth;
mod clean;
mod clean_security;
mod client;
mod client_project;
mod cluster;
mod connections;
mod deathsig;
mod deploy;
mod dump;
mod encoding;
mod errors;
mod front;
mod matrix;
mod metadata;
mod page;
mod parity;
mod probe;
mod process;
mod reliability;
mod retry;
mod review;
mod serve;
mod stalls;
mod support;
