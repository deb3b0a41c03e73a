//! In-process tests of the HTTP layer: the routes ([`routes`]) and the server loop's shutdown
//! over real sockets ([`run`]). What needs PostgreSQL or the real binary is tested in
//! `tests/it`.

mod routes;
mod run;

use std::path::PathBuf;
use std::sync::Arc;

use super::AppState;
use crate::config::tests::serve;
use crate::config::Config;
use crate::pg_dump::Toolbox;
use crate::sources::Sources;

/// The `default` source: nothing listens there, and no request here gets that far.
const DATABASE_URL: &str = "postgres://u:pw@127.0.0.1:1/db";
const SECRET: &str = "t0p-secret";

/// The state of `pgdump-api serve --database-url DATABASE_URL ARGS…`, without the environment,
/// and without pg_dump.
fn state(args: &[&str]) -> Arc<AppState> {
    state_of(
        config(DATABASE_URL, args),
        Toolbox::from_binaries(Vec::new()),
    )
}

/// The configuration of `pgdump-api serve --database-url URL ARGS…`, without the environment.
fn config(url: &str, args: &[&str]) -> Config {
    let args: Vec<&str> = ["--database-url", url]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    Config::from_args(serve(&args)).expect("valid flags")
}

/// The state of a configuration, with `pg_dump`.
fn state_of(config: Config, pg_dump: Toolbox) -> Arc<AppState> {
    let sources = Sources::load(None, config.database_url.as_ref(), |_| None).unwrap();
    Arc::new(AppState::new(config, sources, pg_dump))
}

/// The installed pg_dump: the one in `PGDUMP_API_TEST_PG_BIN` (as for the integration tests),
/// else whatever the server itself would find.
fn installed_pg_dump() -> Toolbox {
    let configured: Vec<PathBuf> = std::env::var_os("PGDUMP_API_TEST_PG_BIN")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    Toolbox::discover(&configured).expect("an installed pg_dump")
}
