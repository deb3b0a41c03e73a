//! The `pgdump-api` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use pgdump_api::config::{Cli, Command, Config};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
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
    }
}

/// Prints the whole error chain and exits non-zero.
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("pgdump-api: error: {err:#}");
    ExitCode::FAILURE
}
