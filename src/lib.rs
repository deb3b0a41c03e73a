//! pgdump-api: a Hasura-compatible PG Dump API server.
//!
//! - [`opts`]: pg_dump's options, parsed with its own rules, checked, re-emitted;
//! - [`clean`]: the SQL-aware filter behind `clean_output`.

pub mod clean;
pub mod opts;
