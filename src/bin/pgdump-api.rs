//! The `pgdump-api` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use pgdump_api::cli::{Cli, Command};
use pgdump_api::{client, launcher, serve};

fn main() -> ExitCode {
    match Cli::parse_args().command {
        Command::Serve(args) => serve::main(*args),
        Command::Dump(args) => client::error::report(client::dump(args)),
        Command::Migrate(args) => client::error::report(client::migrate(args)),
        Command::Seed(args) => client::error::report(client::seed(args)),
        Command::ExecPgDump(args) => launcher::main(args),
    }
}
