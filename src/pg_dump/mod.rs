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
//! - `output`: its output stream; `error`: how it fails.

mod binaries;
mod dumper;
mod error;
mod output;
mod process;
mod supervise;

pub use crate::server_version::Version;
pub use binaries::{PgDump, Toolbox};
pub use dumper::{Dumper, Started};
pub use error::{DumpError, StreamError};
pub use output::Output;
pub use supervise::{Hold, Stop};
