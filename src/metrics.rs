//! Prometheus metrics of the dumps: how many started, succeeded and failed (by source and
//! reason), bytes streamed, how long they took, how many run and wait per source, and which
//! pg_dump versions are installed and in use; and, when sources come from Hasura's metadata,
//! its `resource_version` and how often it was read. Served at `GET /v1/metrics` when
//! `metrics` is an enabled API.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::limits::Limits;
use crate::pg_dump::{DumpError, StreamError, Toolbox};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    source: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    source: String,
    version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstalledLabels {
    version: String,
    path: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// What the metadata reader records: shared handles, registered by
/// [`Metrics::register_metadata`].
#[derive(Debug, Clone, Default)]
pub(crate) struct MetadataCounters {
    resource_version: Gauge,
    refreshes: Counter,
    failures: Family<ReasonLabel, Counter>,
}

impl MetadataCounters {
    /// The document at `resource_version` was read and is in use.
    pub(crate) fn refreshed(&self, resource_version: i64) {
        self.refreshes.inc();
        self.resource_version.set(resource_version);
    }

    /// A read failed: `unreachable` (the database) or `invalid` (the document or a source).
    pub(crate) fn failed(&self, reason: &'static str) {
        self.failures.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// Why a dump did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The source's line was full.
    Busy,
    /// pg_dump could not be started.
    Spawn,
    /// pg_dump exited with an error.
    PgDump,
    /// No pattern matched.
    NoMatch,
    /// No installed pg_dump fits the server.
    VersionMismatch,
    /// The time limit passed.
    Timeout,
    /// The client left before the dump ended.
    ClientGone,
    /// The client accepted no bytes for the send timeout and was dropped.
    SendTimeout,
    /// No cluster-wide slot could be had (the time limit aside).
    ClusterLimit,
}

impl Failure {
    /// Why a dump failed: the one classification, which the metrics record and the error
    /// response's status and code follow.
    pub(crate) fn of(err: &DumpError) -> Failure {
        match err {
            DumpError::VersionMismatch { .. } => Failure::VersionMismatch,
            DumpError::Spawn { .. } => Failure::Spawn,
            DumpError::Failed { .. } => Failure::PgDump,
            DumpError::NoMatch { .. } => Failure::NoMatch,
            DumpError::TimedOut { .. } => Failure::Timeout,
        }
    }

    /// Why a dump's output ended early, after it had started.
    pub(crate) fn of_stream(err: &StreamError) -> Failure {
        match err {
            StreamError::Dump(err) => Failure::of(err),
            StreamError::Read(_) => Failure::PgDump,
        }
    }

    /// The failure's name, in the metrics and the dump's log line.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Failure::Busy => "busy",
            Failure::Spawn => "spawn",
            Failure::PgDump => "pg_dump_error",
            Failure::NoMatch => "no_match",
            Failure::VersionMismatch => "version_mismatch",
            Failure::Timeout => "timeout",
            Failure::ClientGone => "client_gone",
            Failure::SendTimeout => "send_timeout",
            Failure::ClusterLimit => "cluster_limit",
        }
    }
}

/// Every metric, registered once.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    started: Family<SourceLabel, Counter>,
    succeeded: Family<SourceLabel, Counter>,
    failed: Family<FailureLabels, Counter>,
    bytes: Family<SourceLabel, Counter>,
    duration: Family<SourceLabel, Histogram>,
    running: Family<SourceLabel, Gauge>,
    queued: Family<SourceLabel, Gauge>,
    runs_by_version: Family<VersionLabels, Counter>,
    /// Serializes scrapes: the load gauges are set from the limits just before encoding.
    scrape: Mutex<()>,
}

impl Metrics {
    /// Registers every metric; the installed pg_dump binaries are recorded once.
    pub(crate) fn new(toolbox: &Toolbox) -> Metrics {
        let mut registry = Registry::with_prefix("pgdump");
        let started = Family::<SourceLabel, Counter>::default();
        let succeeded = Family::<SourceLabel, Counter>::default();
        let failed = Family::<FailureLabels, Counter>::default();
        let bytes = Family::<SourceLabel, Counter>::default();
        let duration = Family::<SourceLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 18))
        });
        let running = Family::<SourceLabel, Gauge>::default();
        let queued = Family::<SourceLabel, Gauge>::default();
        let runs_by_version = Family::<VersionLabels, Counter>::default();
        let installed = Family::<InstalledLabels, Gauge>::default();
        for binary in toolbox.binaries() {
            installed
                .get_or_create(&InstalledLabels {
                    version: binary.version.to_string(),
                    path: binary.path.display().to_string(),
                })
                .set(1);
        }
        registry.register(
            "dumps_started",
            "Dump requests that passed validation",
            started.clone(),
        );
        registry.register(
            "dumps_succeeded",
            "Dumps streamed to the end",
            succeeded.clone(),
        );
        registry.register(
            "dumps_failed",
            "Dumps that failed, by reason",
            failed.clone(),
        );
        registry.register("bytes_streamed", "Bytes of dump output sent", bytes.clone());
        registry.register(
            "dump_duration_seconds",
            "Time from request to the end of the dump",
            duration.clone(),
        );
        registry.register(
            "dumps_running",
            "pg_dump processes running",
            running.clone(),
        );
        registry.register(
            "dumps_queued",
            "Requests waiting for a pg_dump slot",
            queued.clone(),
        );
        registry.register(
            "pg_dump_runs",
            "pg_dump runs by the pg_dump version used",
            runs_by_version.clone(),
        );
        registry.register("pg_dump_installed", "Installed pg_dump binaries", installed);
        Metrics {
            registry,
            started,
            succeeded,
            failed,
            bytes,
            duration,
            running,
            queued,
            runs_by_version,
            scrape: Mutex::new(()),
        }
    }

    /// Adds the metadata reader's metrics.
    pub(crate) fn register_metadata(&mut self, counters: &MetadataCounters) {
        let registry = &mut self.registry;
        registry.register(
            "metadata_resource_version",
            "resource_version of the Hasura metadata in use",
            counters.resource_version.clone(),
        );
        registry.register(
            "metadata_refreshes",
            "Reads of Hasura's metadata document that were put in use",
            counters.refreshes.clone(),
        );
        registry.register(
            "metadata_refresh_failures",
            "Failed reads of Hasura's metadata, by reason (unreachable, invalid)",
            counters.failures.clone(),
        );
    }

    /// The registry, for a module that registers metrics of its own.
    pub(crate) fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    fn source(source: &str) -> SourceLabel {
        SourceLabel {
            source: source.to_owned(),
        }
    }

    /// A request passed validation and asks for a dump.
    pub(crate) fn started(&self, source: &str) {
        self.started.get_or_create(&Self::source(source)).inc();
    }

    /// pg_dump `version` runs for `source`.
    pub(crate) fn ran(&self, source: &str, version: &str) {
        let labels = VersionLabels {
            source: source.to_owned(),
            version: version.to_owned(),
        };
        self.runs_by_version.get_or_create(&labels).inc();
    }

    /// Output bytes sent for `source`.
    pub(crate) fn streamed(&self, source: &str, bytes: u64) {
        self.bytes
            .get_or_create(&Self::source(source))
            .inc_by(bytes);
    }

    /// A dump ended, successfully or not, after `elapsed`.
    pub(crate) fn finished(&self, source: &str, outcome: Result<(), Failure>, elapsed: Duration) {
        match outcome {
            Ok(()) => {
                self.succeeded.get_or_create(&Self::source(source)).inc();
            }
            Err(reason) => {
                let labels = FailureLabels {
                    source: source.to_owned(),
                    reason: reason.label(),
                };
                self.failed.get_or_create(&labels).inc();
            }
        }
        self.duration
            .get_or_create(&Self::source(source))
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition, with the running and queued gauges read from `limits` now, for
    /// the sources there are now (a source gone from the metadata leaves no stale gauge).
    pub(crate) fn render<'a>(
        &self,
        limits: &Limits,
        sources: impl Iterator<Item = &'a str>,
    ) -> String {
        let _scrape = self
            .scrape
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.running.clear();
        self.queued.clear();
        for source in sources {
            let (running, queued) = limits.load(source);
            let label = Self::source(source);
            self.running.get_or_create(&label).set(running as i64);
            self.queued.get_or_create(&label).set(queued as i64);
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new(&Toolbox::from_binaries(Vec::new()));
        let limits = Limits::new(["default"], 2, 2);
        metrics.started("default");
        metrics.ran("default", "15.18");
        metrics.streamed("default", 1234);
        metrics.finished("default", Ok(()), Duration::from_millis(30));
        metrics.finished("default", Err(Failure::Timeout), Duration::from_secs(1));
        let text = metrics.render(&limits, ["default"].into_iter());
        for expected in [
            "pgdump_dumps_started_total{source=\"default\"} 1",
            "pgdump_dumps_succeeded_total{source=\"default\"} 1",
            "pgdump_dumps_failed_total{source=\"default\",reason=\"timeout\"} 1",
            "pgdump_bytes_streamed_total{source=\"default\"} 1234",
            "pgdump_dump_duration_seconds_count{source=\"default\"} 2",
            "pgdump_dumps_running{source=\"default\"} 0",
            "pgdump_pg_dump_runs_total{source=\"default\",version=\"15.18\"} 1",
        ] {
            assert!(text.contains(expected), "{expected} not in\n{text}");
        }
    }

    #[test]
    fn a_removed_source_leaves_no_load_gauges() {
        let metrics = Metrics::new(&Toolbox::from_binaries(Vec::new()));
        let limits = Limits::new(["default", "billing"], 2, 2);
        let both = metrics.render(&limits, ["default", "billing"].into_iter());
        assert!(
            both.contains("pgdump_dumps_queued{source=\"billing\"} 0"),
            "{both}"
        );
        let one = metrics.render(&limits, ["default"].into_iter());
        assert!(
            !one.contains("pgdump_dumps_running{source=\"billing\"}"),
            "{one}"
        );
        assert!(
            !one.contains("pgdump_dumps_queued{source=\"billing\"}"),
            "{one}"
        );
        assert!(
            one.contains("pgdump_dumps_running{source=\"default\"} 0"),
            "{one}"
        );
    }

    #[test]
    fn renders_the_metadata_counters() {
        let mut metrics = Metrics::new(&Toolbox::from_binaries(Vec::new()));
        let counters = MetadataCounters::default();
        metrics.register_metadata(&counters);
        counters.refreshed(7);
        counters.failed("unreachable");
        let text = metrics.render(&Limits::new([], 1, 1), std::iter::empty());
        for expected in [
            "pgdump_metadata_resource_version 7",
            "pgdump_metadata_refreshes_total 1",
            "pgdump_metadata_refresh_failures_total{reason=\"unreachable\"} 1",
        ] {
            assert!(text.contains(expected), "{expected} not in\n{text}");
        }
    }
}
