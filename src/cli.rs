//! The `pgdump-api` command line: the server's subcommand and the client's, parsed by clap.
//! The binary matches on [`Command`] and hands over to [`crate::serve`] or [`crate::client`].

use clap::{Parser, Subcommand};

use crate::client::args::{DumpArgs, MigrateArgs, SeedArgs};
use crate::config::ServeArgs;

/// The `pgdump-api` command line.
#[derive(Debug, Parser)]
#[command(
    name = "pgdump-api",
    version,
    about = "A Hasura-compatible PG Dump API: the server and its client"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `pgdump-api`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve POST /v1alpha1/pg_dump.
    Serve(Box<ServeArgs>),
    /// Dump a database through a server's PG Dump API, to a file (atomically) or stdout.
    Dump(DumpArgs),
    /// Create Hasura migrations from a server's schema.
    Migrate(MigrateArgs),
    /// Create Hasura seed files from a server's tables.
    Seed(SeedArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
