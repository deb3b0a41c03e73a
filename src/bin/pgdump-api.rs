//! The `pgdump-api` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use pgdump_api::cli::{Cli, Command};
use pgdump_api::client;
use pgdump_api::config::{Config, ServeArgs};

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => serve(args),
        Command::Dump(args) => client::error::report(client::dump(args)),
        Command::Migrate(args) => client::error::report(client::migrate(args)),
        Command::Seed(args) => client::error::report(client::seed(args)),
    }
}

/// `pgdump-api serve`: configuration, logging, then the server until it shuts down.
fn serve(args: ServeArgs) -> ExitCode {
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(err) => return fail(&err),
    };
    pgdump_api::logging::init(config.log_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err.into()),
    };
    match runtime.block_on(pgdump_api::serve::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// Prints the whole error chain and exits non-zero.
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("pgdump-api: error: {err:#}");
    ExitCode::FAILURE
}
