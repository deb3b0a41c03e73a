//! [`AppState`]: what every request may read — the configuration as given, and what the
//! server built from it (sources, the pg_dump runner, limits, metrics).

use crate::catalog;
use crate::cluster::ClusterLimits;
use crate::config::Config;
use crate::delegated::Delegated;
use crate::front::Front;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::pg_dump::{Dumper, RestrictKeys, Toolbox};
use crate::sources::{Entry, LiveSources};

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
    /// The limits across replicas, taken after `limits`.
    pub cluster: ClusterLimits,
    pub metrics: Metrics,
    /// How many connections are kept open at most: `config.max_connections`, or the default
    /// derived from the open-files limit.
    pub max_connections: usize,
    /// Front mode: the upstream Hasura that every other request goes to.
    pub front: Option<Front>,
    /// The connections that requests waiting on the upstream or the webhook may hold.
    pub delegated: Delegated,
    /// Catalog reads running at once (each holds a session in its source's database); more
    /// wait their turn.
    pub catalog_reads: tokio::sync::Semaphore,
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
        let max_connections = config.max_connections.unwrap_or_else(|| {
            // In front mode a client connection may hold one to the upstream as well.
            let files = match config.upstream {
                Some(_) => conns::open_files_limit().map(|limit| limit / 2),
                None => conns::open_files_limit(),
            };
            conns::default_cap(files, pg_dumps)
        });
        let limits = Limits::new(
            snapshot.postgres_names(),
            config.limits.max_concurrent,
            config.limits.max_queue,
        );
        // Dumps are byte-stable per deployment: the restrict key comes from the admin secret.
        let secret = config.auth.admin_secrets().first();
        let mut metrics = Metrics::new(&pg_dump);
        let cluster = ClusterLimits::new(
            config.limits.max_concurrent_cluster,
            config.limits.timeout,
            metrics.registry_mut(),
        );
        AppState {
            metrics,
            cluster,
            sources,
            dumper: Dumper::new(pg_dump, config.limits.timeout, RestrictKeys::new(secret)),
            limits,
            max_connections,
            front: config.upstream.clone().map(Front::new),
            delegated: Delegated::new(max_connections),
            catalog_reads: tokio::sync::Semaphore::new(catalog::CONCURRENT_READS),
            config,
        }
    }

    /// What keeps this replica from serving dumps (for `/healthz`); empty when it is ready.
    pub(crate) fn not_ready(&self) -> Vec<String> {
        let mut missing = Vec::new();
        // A source whose connection cannot be had (an unset variable) does not count.
        let sources = self.sources.snapshot();
        let usable = sources
            .entries()
            .any(|(_, entry)| matches!(entry, Entry::Postgres { .. }));
        if !usable {
            missing.push("no PostgreSQL source is loaded".to_owned());
        }
        let binaries = self.dumper.toolbox().binaries();
        if binaries.is_empty() {
            missing.push("no pg_dump binary is configured".to_owned());
        } else if !binaries.iter().any(|binary| binary.path.is_file()) {
            let paths: Vec<String> = binaries
                .iter()
                .map(|binary| binary.path.display().to_string())
                .collect();
            missing.push(format!(
                "no pg_dump binary is there any more: {}",
                paths.join(", ")
            ));
        }
        missing
    }
}
