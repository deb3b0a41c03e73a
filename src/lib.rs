//! pgdump-api: a Hasura-compatible PG Dump API server.
//!
//! A request travels through these modules in order:
//! - [`http`]: routes, request ids, the request log and the one error type;
//! - [`auth`]: the caller's role (admin secrets, JWT, auth webhook) and CORS;
//! - [`sources`] and [`conninfo`]: which database, and its connection string with the
//!   password held apart from pg_dump's command line; [`metadata`] follows the sources of
//!   Hasura's own metadata database;
//! - [`opts`]: pg_dump's options, parsed with its own rules, checked, re-emitted;
//! - [`server_version`]: the source's PostgreSQL version, learnt once, so that
//!   [`pg_dump`] can choose the matching pg_dump, run it, and stream its output;
//! - [`clean`]: the SQL-aware filter behind `clean_output`.
//!
//! In front mode, [`front`] passes every other request to the Hasura behind pgdump-api and
//! asks it to judge credentials other than a known admin secret.
//!
//! [`limits`] bounds how many pg_dump run and wait per source, [`cluster`] how many run per
//! source across every replica (with advisory locks in the source database), [`metrics`]
//! counts what happens to dumps.
//!
//! [`cli`] is the command line; [`config`] turns `serve`'s flags and environment into a
//! typed configuration, [`serve`] starts the server from it, and [`logging`] writes
//! Hasura-shaped JSON log lines. [`secret`] keeps secrets out of `Debug` output.
//! [`launcher`] starts each pg_dump so that it dies with the server, even a `kill -9`'d one.
//!
//! [`client`] is the other side: the `dump`, `migrate create` and `seed create` commands,
//! which call any server that speaks the PG Dump API and write what it sends atomically.
//!
//! Only what the binary, the property tests and the benchmarks use is public (`cli`,
//! `serve::main`, the client commands, `launcher::main`, and the pure cores `opts` and
//! `clean`); everything else is crate-private, so that the compiler points at dead code.

#![deny(unreachable_pub)]

mod auth;
mod catalog;
pub mod clean;
pub mod cli;
pub mod client;
mod cluster;
pub mod config;
mod conninfo;
mod delegated;
mod front;
mod http;
pub mod launcher;
mod limits;
mod logging;
mod metadata;
mod metrics;
pub mod opts;
mod pg_dump;
mod secret;
pub mod serve;
mod server_version;
mod sources;
