//! The cluster-wide dump limit (`--pg-dump-max-concurrent-cluster`): at most N pg_dumps of a
//! source at once across every replica, held by the source's database itself. A slot is a
//! session-level advisory lock (the key space is in `keys`) taken on a session of our own
//! and held until the pg_dump it was taken for has exited; a replica that dies loses its
//! sessions, so PostgreSQL frees its slots — no lease, no heartbeat, no leftover state.
//!
//! The per-replica limit ([`crate::limits`]) applies first. A request holding a local slot
//! then waits here, in order among this replica's requests for the same source: only the
//! first in line asks the database, trying every slot, then waiting for a freed slot's
//! `NOTIFY` or a bounded back-off (a replica that died announces nothing). A request that
//! is dropped — its client left — leaves the line at once and its session ends with it.
//! The time limit bounds the wait.

mod keys;
mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::metrics::Failure;
use crate::sources::Source;
use keys::Keys;
use session::{Held, Session, SessionError};

/// The first and the longest pause between two tries when no slot was announced.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// The cluster-wide limit of every source; off when its number of slots is 0.
#[derive(Debug)]
pub(crate) struct ClusterLimits {
    slots: u32,
    time_limit: Option<Duration>,
    /// Each source's line, made on first use.
    lines: Mutex<HashMap<String, Arc<Line>>>,
    metrics: ClusterMetrics,
}

/// The requests of one source waiting here, in order: the one holding `head` asks the
/// database, the others wait for it (tokio's mutex is fair: first come, first served).
#[derive(Debug, Default)]
struct Line {
    head: tokio::sync::Mutex<()>,
}

/// A cluster-wide slot: the right to run one pg_dump; dropping it frees the slot.
pub(crate) struct ClusterSlot {
    _held: Held,
    held_gauge: Gauge,
}

impl Drop for ClusterSlot {
    fn drop(&mut self) {
        self.held_gauge.dec();
    }
}

/// Why no cluster-wide slot could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    #[error("could not connect to source \"{name}\" to take a cluster-wide pg_dump slot")]
    Connect { name: String, detail: String },
    #[error(
        "source \"{name}\" cannot hold the cluster-wide pg_dump limit \
         (--pg-dump-max-concurrent-cluster), which needs PostgreSQL advisory locks: {detail}; \
         connect to the database directly (not through a pooler in transaction or statement \
         mode), or set the limit to 0"
    )]
    Refused { name: String, detail: String },
    #[error("the session waiting for a cluster-wide pg_dump slot of source \"{name}\" was lost")]
    Lost { name: String, detail: String },
    #[error(
        "no cluster-wide pg_dump slot of source \"{name}\" came free within the time limit of {} s",
        limit.as_secs()
    )]
    TimedOut { name: String, limit: Duration },
}

impl ClusterError {
    /// Operator detail, for `internal`.
    pub(crate) fn internal(&self) -> Option<String> {
        match self {
            ClusterError::Connect { detail, .. } | ClusterError::Lost { detail, .. } => {
                Some(detail.clone())
            }
            ClusterError::Refused { .. } | ClusterError::TimedOut { .. } => None,
        }
    }

    /// How the metrics count it.
    pub(crate) fn failure(&self) -> Failure {
        match self {
            ClusterError::TimedOut { .. } => Failure::Timeout,
            _ => Failure::ClusterLimit,
        }
    }

    fn of(name: &str, err: SessionError) -> ClusterError {
        let name = name.to_owned();
        match err {
            SessionError::Connect(detail) => ClusterError::Connect { name, detail },
            SessionError::Refused(detail) => ClusterError::Refused { name, detail },
            SessionError::Lost(detail) => ClusterError::Lost { name, detail },
        }
    }
}

impl ClusterLimits {
    /// At most `slots` pg_dumps per source across the cluster (0: no limit); a request waits
    /// for one no longer than `time_limit`. The metrics are registered in `registry` when the
    /// limit is on.
    pub(crate) fn new(
        slots: u32,
        time_limit: Option<Duration>,
        registry: &mut Registry,
    ) -> ClusterLimits {
        let metrics = ClusterMetrics::default();
        if slots > 0 {
            metrics.register(registry);
        }
        ClusterLimits {
            slots,
            time_limit,
            lines: Mutex::default(),
            metrics,
        }
    }

    /// Waits for a cluster-wide slot to run a pg_dump of `source`; `None` when the limit is off.
    pub(crate) async fn acquire(
        &self,
        source: &Source,
    ) -> Result<Option<ClusterSlot>, ClusterError> {
        if self.slots == 0 {
            return Ok(None);
        }
        let label = SourceLabel {
            source: source.name.clone(),
        };
        let waiting = self.metrics.waiting.get_or_create(&label).clone();
        waiting.inc();
        let _waiting = scopeguard(move || {
            waiting.dec();
        });
        let started = Instant::now();
        let wait = self.wait_for_slot(source, &label);
        let held = match self.time_limit {
            Some(limit) => {
                tokio::time::timeout(limit, wait)
                    .await
                    .map_err(|_| ClusterError::TimedOut {
                        name: source.name.clone(),
                        limit,
                    })?
            }
            None => wait.await,
        }?;
        self.metrics
            .wait_seconds
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        let held_gauge = self.metrics.held.get_or_create(&label).clone();
        held_gauge.inc();
        Ok(Some(ClusterSlot {
            _held: held,
            held_gauge,
        }))
    }

    /// Takes the first place in the source's line, then a slot.
    async fn wait_for_slot(
        &self,
        source: &Source,
        label: &SourceLabel,
    ) -> Result<Held, ClusterError> {
        let line = self.line(&source.name);
        let keys = Keys::new(&source.name, self.slots);
        let failed = |err| ClusterError::of(&source.name, err);
        // A request counts as one wait whether it queued behind another or found every
        // slot taken.
        let count_wait = || self.metrics.waits.get_or_create(label).inc();
        let (_head, queued) = match line.head.try_lock() {
            Ok(head) => (head, false),
            Err(_) => {
                count_wait();
                (line.head.lock().await, true)
            }
        };
        let mut session = Session::open(&source.name, &source.conn)
            .await
            .map_err(failed)?;
        if let Some(id) = session.try_lock(&keys).await.map_err(failed)? {
            return Ok(session.hold(&keys, id));
        }
        if !queued {
            count_wait();
        }
        let mut backoff = BACKOFF.0;
        loop {
            match wait_on(&session, &keys, &mut backoff).await {
                Ok(id) => return Ok(session.hold(&keys, id)),
                Err(SessionError::Lost(error)) => {
                    // The database restarted, say: wait on a new session.
                    tracing::info!(target: "cluster", source = %source.name, %error,
                        "the session waiting for a cluster-wide slot ended; opening another");
                    tokio::time::sleep(jitter(backoff)).await;
                    session = Session::open(&source.name, &source.conn)
                        .await
                        .map_err(failed)?;
                }
                Err(err) => return Err(failed(err)),
            }
        }
    }

    fn line(&self, source: &str) -> Arc<Line> {
        let mut lines = self
            .lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(lines.entry(source.to_owned()).or_default())
    }
}

/// Waits on `session` until it takes a slot of `keys`: tries them all, then waits for a
/// freed slot's announcement or `backoff`, which grows up to its bound.
async fn wait_on(
    session: &Session,
    keys: &Keys,
    backoff: &mut Duration,
) -> Result<i32, SessionError> {
    session.listen(keys).await?;
    loop {
        if let Some(id) = session.try_lock(keys).await? {
            return Ok(id);
        }
        session.woken(jitter(*backoff)).await?;
        *backoff = (*backoff * 2).min(BACKOFF.1);
    }
}

/// `pause` less up to a quarter, so that replicas waiting together do not ask together.
fn jitter(pause: Duration) -> Duration {
    let random = uuid::Uuid::new_v4().as_u128() as u32;
    pause - pause / 4 * random / u32::MAX
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

/// The cluster-wide limit's metrics, by source.
#[derive(Debug)]
struct ClusterMetrics {
    held: Family<SourceLabel, Gauge>,
    waiting: Family<SourceLabel, Gauge>,
    waits: Family<SourceLabel, Counter>,
    wait_seconds: Family<SourceLabel, Histogram>,
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        ClusterMetrics {
            held: Family::default(),
            waiting: Family::default(),
            waits: Family::default(),
            wait_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 16))
            }),
        }
    }
}

impl ClusterMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "cluster_slots_held",
            "Cluster-wide pg_dump slots held by this replica",
            self.held.clone(),
        );
        registry.register(
            "cluster_waiting",
            "Requests of this replica waiting for a cluster-wide pg_dump slot",
            self.waiting.clone(),
        );
        registry.register(
            "cluster_waits",
            "Requests that found no cluster-wide pg_dump slot free at once",
            self.waits.clone(),
        );
        registry.register(
            "cluster_wait_seconds",
            "Time from holding a local slot to holding a cluster-wide one",
            self.wait_seconds.clone(),
        );
    }
}
