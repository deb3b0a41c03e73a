//! Sources from Hasura's own metadata, followed live. Hasura keeps its metadata document in
//! `hdb_catalog.hdb_metadata` (one row: `metadata json`, `resource_version integer`) in its
//! metadata database (`HASURA_GRAPHQL_METADATA_DATABASE_URL`, else the database of
//! `HASURA_GRAPHQL_DATABASE_URL`). [`Reader`] reads it the way Hasura's own replicas do: it
//! polls `resource_version` every `HASURA_GRAPHQL_SCHEMA_SYNC_POLL_INTERVAL` and reads the
//! document again when it changed, or when a request names a source not yet known. Each read
//! publishes a whole new snapshot of the sources (see [`LiveSources`]); a read that fails keeps
//! the last good one.
//!
//! Faults never stop the server: an unreachable database is retried with back-off and logged
//! once per outage; a document that does not parse, or a source that is invalid, is logged
//! (naming the source) and the last good definition kept. Log lines and errors name where a
//! connection string came from, never the string.

mod apply;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::config::Config;
use crate::conninfo::ConnInfo;
use crate::metrics::MetadataCounters;
use crate::sources::{self, LiveSources, RefreshRequest, Sources};

pub(crate) use apply::describe;

/// Looks up an environment variable (as the server sees it: flags win over variables).
pub(crate) type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The longest wait between two attempts to reach an unreachable metadata database.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long one read may take, connecting included.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// How long startup waits for the first read before serving without it.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the metadata is read from.
#[derive(Debug)]
enum Place {
    Url(ConnInfo),
    /// `dynamic-from-file:///PATH`: the connection string is read from PATH at each connect.
    File(PathBuf),
}

/// Which setting named the metadata database: Hasura's metadata database, or the database
/// of `--database-url`, which may or may not hold metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    MetadataUrl,
    DatabaseUrl,
}

impl Setting {
    fn name(self) -> &'static str {
        match self {
            Setting::MetadataUrl => "HASURA_GRAPHQL_METADATA_DATABASE_URL",
            Setting::DatabaseUrl => "HASURA_GRAPHQL_DATABASE_URL",
        }
    }
}

/// What the last check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// No `hdb_catalog.hdb_metadata` table.
    NoTable,
    /// The table, without a row (Hasura's empty metadata).
    Empty,
    Version(i64),
}

/// Why a read failed.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The database could not be reached or queried; the message names no secret.
    Unreachable(String),
    /// The document is not valid metadata (already logged); nothing changed.
    Invalid,
    /// A name is both in the sources file and in the metadata (only at the first read).
    Conflict(String),
}

/// Reads Hasura's metadata and publishes the sources it defines.
pub(crate) struct Reader {
    place: Place,
    setting: Setting,
    apply: apply::Apply,
    client: Option<Client>,
    seen: Option<Seen>,
    /// Whether the database is unreachable (logged once, when it became so).
    outage: bool,
    counters: MetadataCounters,
}

impl Reader {
    /// The reader for `config`, if it names a metadata database (or a database URL that may
    /// hold metadata); `base` are the sources of the sources file. Also returns the handle
    /// requests read the sources through.
    pub(crate) fn new(
        config: &Config,
        base: Sources,
        env: Env,
    ) -> anyhow::Result<Option<(Reader, LiveSources, mpsc::Receiver<RefreshRequest>)>> {
        let (url, setting) = match (&config.metadata_database_url, &config.database_url) {
            (Some(url), _) => (url, Setting::MetadataUrl),
            (None, Some(url)) => (url, Setting::DatabaseUrl),
            (None, None) => return Ok(None),
        };
        let mut fallback = Sources::default();
        if let Some(url) = &config.database_url {
            fallback.insert_database_url(url)?;
        }
        let place = match url.expose().strip_prefix("dynamic-from-file://") {
            Some(path) => Place::File(path.into()),
            None => Place::Url(
                ConnInfo::parse(url.expose())
                    .with_context(|| format!("invalid {}", setting.name()))?,
            ),
        };
        let initial = apply::merged(&base, &Default::default(), fallback.entry(sources::DEFAULT));
        let (publish, current) = watch::channel(Arc::new(initial));
        let (refresh, requests) = mpsc::channel(64);
        let reader = Reader {
            place,
            setting,
            apply: apply::Apply::new(base, fallback, config.sources_file.clone(), env, publish),
            client: None,
            seen: None,
            outage: false,
            counters: MetadataCounters::default(),
        };
        Ok(Some((reader, LiveSources::new(current, refresh), requests)))
    }

    /// The reader's metrics, to register.
    pub(crate) fn counters(&self) -> &MetadataCounters {
        &self.counters
    }

    /// The first read, at startup: a name in both the sources file and the metadata is an
    /// error; an unreachable database is logged and retried later.
    pub(crate) async fn start(&mut self) -> anyhow::Result<()> {
        match self.refresh(STARTUP_TIMEOUT).await {
            Err(Fault::Conflict(message)) => anyhow::bail!(message),
            Err(Fault::Unreachable(_)) => {
                tracing::warn!(target: "startup", setting = self.setting.name(),
                    "serving the sources of the sources file and the database URL until Hasura's metadata can be read");
            }
            _ => {}
        }
        self.apply.started();
        Ok(())
    }

    /// Follows the metadata until the server stops: every `interval` (none: only when asked
    /// on `requests`), retrying with back-off while the database is unreachable.
    pub(crate) async fn run(
        mut self,
        interval: Option<Duration>,
        mut requests: mpsc::Receiver<RefreshRequest>,
    ) {
        let mut failures = 0u32;
        // A deadline rather than a sleep per turn, so that requests do not put attempts off.
        let mut next = self.next_attempt(interval, failures);
        loop {
            let mut due = false;
            let mut waiting = Vec::new();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => due = true,
                request = requests.recv() => match request {
                    Some(request) => waiting.push(request),
                    None => return,
                },
            }
            while let Ok(request) = requests.try_recv() {
                waiting.push(request);
            }
            // While unreachable, a request does not wait for another attempt: the back-off
            // keeps trying.
            if due || !self.outage {
                match self.refresh(READ_TIMEOUT).await {
                    Err(Fault::Unreachable(_)) => failures = failures.saturating_add(1),
                    _ => failures = 0,
                }
                next = self.next_attempt(interval, failures);
            }
            for request in waiting {
                let _ = request.send(());
            }
        }
    }

    /// When to look next: after `interval`, or sooner with back-off while the database is
    /// unreachable; never (`None`) when there is nothing to poll.
    fn next_attempt(&self, interval: Option<Duration>, failures: u32) -> Option<Instant> {
        let wait = match (&self.seen, self.outage) {
            // Never read, or unreachable: retry with back-off.
            (None, _) | (_, true) => Some(backoff(failures)),
            // `--database-url`'s database holds no metadata: look again only when asked.
            (Some(Seen::NoTable), false) if self.setting == Setting::DatabaseUrl => None,
            _ => interval,
        };
        wait.map(|wait| Instant::now() + wait)
    }

    /// Checks `resource_version`, and reads the document when it changed.
    async fn refresh(&mut self, limit: Duration) -> Result<(), Fault> {
        let checked = tokio::time::timeout(limit, self.check()).await;
        let result = match checked {
            Ok(result) => result,
            Err(_) => Err(Fault::Unreachable("timed out".to_owned())),
        };
        match &result {
            Err(Fault::Unreachable(error)) => {
                self.client = None;
                self.counters.failed("unreachable");
                if !self.outage {
                    self.outage = true;
                    tracing::warn!(target: "schema-sync", setting = self.setting.name(), %error,
                        "Hasura's metadata database is unreachable: keeping the sources in use and retrying");
                }
            }
            _ if self.outage => {
                self.outage = false;
                tracing::info!(target: "schema-sync", setting = self.setting.name(),
                    "Hasura's metadata database is reachable again");
            }
            _ => {}
        }
        if matches!(result, Err(Fault::Invalid)) {
            self.counters.failed("invalid");
        }
        result
    }

    async fn check(&mut self) -> Result<(), Fault> {
        let seen = self
            .query("SELECT resource_version FROM hdb_catalog.hdb_metadata")
            .await?
            .0;
        if self.seen == Some(seen) {
            return Ok(());
        }
        let (seen, document) = match seen {
            Seen::Version(_) => {
                self.query("SELECT resource_version, metadata FROM hdb_catalog.hdb_metadata")
                    .await?
            }
            other => (other, None),
        };
        if seen == Seen::NoTable && self.seen.is_none() {
            tracing::info!(target: "schema-sync", setting = self.setting.name(),
                "no Hasura metadata (hdb_catalog.hdb_metadata) in this database yet");
        }
        if seen == Seen::NoTable && self.setting == Setting::DatabaseUrl {
            // Not polled: no session is kept open in a database that is only dumped.
            self.client = None;
        }
        // A bad document is not read again until it changes.
        self.seen = Some(seen);
        let version = match seen {
            Seen::Version(version) => version,
            _ => 0,
        };
        let all_valid = self.apply.apply(document.as_deref(), version)?;
        self.counters.refreshed(version);
        if !all_valid {
            self.counters.failed("invalid");
        }
        Ok(())
    }

    /// Runs `sql` (one row of `resource_version` and maybe the document) on the metadata
    /// database, connecting first if need be.
    async fn query(&mut self, sql: &str) -> Result<(Seen, Option<String>), Fault> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let conn = match &self.place {
                Place::Url(conn) => conn.clone(),
                Place::File(path) => sources::read_file(path).map_err(|why| {
                    Fault::Unreachable(format!("dynamic-from-file {}: {why}", path.display()))
                })?,
            };
            let client = crate::server_version::connect(&conn)
                .await
                .map_err(Fault::Unreachable)?;
            self.client = Some(client);
        }
        let client = self.client.as_ref().expect("connected above");
        let messages = match client.simple_query(sql).await {
            Ok(messages) => messages,
            Err(err) if err.code() == Some(&SqlState::UNDEFINED_TABLE) => {
                return Ok((Seen::NoTable, None))
            }
            Err(err) => return Err(Fault::Unreachable(crate::server_version::describe(&err))),
        };
        let rows: Vec<_> = messages
            .iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .collect();
        let row = match rows.as_slice() {
            [] => return Ok((Seen::Empty, None)),
            [row] => row,
            _ => {
                tracing::error!(target: "schema-sync", setting = self.setting.name(),
                    "multiple rows in hdb_catalog.hdb_metadata: keeping the sources in use");
                return Err(Fault::Invalid);
            }
        };
        let version = row
            .get(0)
            .and_then(|version| version.parse().ok())
            .ok_or(Fault::Invalid)?;
        let document = row.try_get(1).ok().flatten().map(str::to_owned);
        Ok((Seen::Version(version), document))
    }
}

/// 1 s, 2 s, 4 s, … up to [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(5)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let waits: Vec<_> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
