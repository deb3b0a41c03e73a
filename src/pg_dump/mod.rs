//! Everything about the `pg_dump` program: the installed binaries and their versions
//! ([`Toolbox`]), and running one for a request ([`Dumper::start`]) — choosing the binary for
//! the source's server, starting it under a supervisor that stops it (SIGTERM, then SIGKILL)
//! when its output is dropped, its time limit passes or the server shuts down, and streaming
//! its output. Failures are typed: [`DumpError`] before the output starts, [`StreamError`]
//! after.
//!
//! - `binaries`: finding pg_dump binaries, their versions, the choice for a server;
//! - `dumper`: the entry point, with the retry after a stale version and the fall-back;
//! - `process`: one pg_dump's command line and start; `supervise`: its stop;
//! - `output`: its output stream; `error`: how it fails;
//! - `restrict`: the `--restrict-key` derived from the admin secret.

mod binaries;
mod dumper;
mod error;
mod output;
mod process;
mod restrict;
mod supervise;

pub(crate) use crate::server_version::Version;
pub(crate) use binaries::Toolbox;
pub(crate) use dumper::{Dumper, Started};
pub(crate) use error::{DumpError, StreamError};
pub(crate) use output::Output;
pub(crate) use restrict::RestrictKeys;
pub(crate) use supervise::{Hold, Stop};
