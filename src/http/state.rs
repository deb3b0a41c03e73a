//! [`AppState`]: what every request may read — the configuration as given, and what the
//! server built from it (sources, the pg_dump runner, limits, metrics).

use crate::config::Config;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::pg_dump::{Dumper, RestrictKeys, Toolbox};
use crate::sources::LiveSources;

use super::conns;

/// What every request may read: the settings as configured, and what the server built from
/// them.
#[derive(Debug)]
pub(crate) struct AppState {
    pub config: Config,
    /// The sources as they are now (they follow Hasura's metadata when it is configured).
    pub sources: LiveSources,
    /// Runs pg_dump: the installed binaries, the servers' versions, the processes.
    pub dumper: Dumper,
    pub limits: Limits,
    pub metrics: Metrics,
    /// How many connections are kept open at most: `config.max_connections`, or the default
    /// derived from the open-files limit.
    pub max_connections: usize,
}

impl AppState {
    /// The state for a configuration, its sources and its pg_dump binaries.
    pub(crate) fn new(
        config: Config,
        sources: impl Into<LiveSources>,
        pg_dump: Toolbox,
    ) -> AppState {
        let sources = sources.into();
        let snapshot = sources.snapshot();
        let pg_dumps = snapshot.postgres_names().count() * config.limits.max_concurrent;
        let max_connections = config
            .max_connections
            .unwrap_or_else(|| conns::default_cap(conns::open_files_limit(), pg_dumps));
        let limits = Limits::new(
            snapshot.postgres_names(),
            config.limits.max_concurrent,
            config.limits.max_queue,
        );
        // Dumps are byte-stable per deployment: the restrict key comes from the admin secret.
        let secret = config.auth.admin_secrets().first();
        AppState {
            metrics: Metrics::new(&pg_dump),
            sources,
            dumper: Dumper::new(pg_dump, config.limits.timeout, RestrictKeys::new(secret)),
            limits,
            max_connections,
            config,
        }
    }
}
