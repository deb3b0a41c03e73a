//! [`AppState`]: what every request may read — the configuration as given, and what the
//! server built from it (sources, the pg_dump runner, limits, metrics).

use crate::config::Config;
use crate::front::Front;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::pg_dump::{Dumper, Toolbox};
use crate::sources::Sources;

use super::conns;

/// What every request may read: the settings as configured, and what the server built from
/// them.
#[derive(Debug)]
pub(crate) struct AppState {
    pub config: Config,
    pub sources: Sources,
    /// Runs pg_dump: the installed binaries, the servers' versions, the processes.
    pub dumper: Dumper,
    pub limits: Limits,
    pub metrics: Metrics,
    /// How many connections are kept open at most: `config.max_connections`, or the default
    /// derived from the open-files limit.
    pub max_connections: usize,
    /// Front mode: the upstream Hasura that every other request goes to.
    pub front: Option<Front>,
}

impl AppState {
    /// The state for a configuration, its sources and its pg_dump binaries.
    pub(crate) fn new(config: Config, sources: Sources, pg_dump: Toolbox) -> AppState {
        let pg_dumps = sources.postgres().count() * config.limits.max_concurrent;
        let max_connections = config
            .max_connections
            .unwrap_or_else(|| conns::default_cap(conns::open_files_limit(), pg_dumps));
        let limits = Limits::new(
            sources.postgres().map(|source| source.name.as_str()),
            config.limits.max_concurrent,
            config.limits.max_queue,
        );
        AppState {
            metrics: Metrics::new(&pg_dump),
            sources,
            dumper: Dumper::new(pg_dump, config.limits.timeout),
            limits,
            max_connections,
            front: config.upstream.clone().map(Front::new),
            config,
        }
    }
}
