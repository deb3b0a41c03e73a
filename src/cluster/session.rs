//! One session on a source's database: it tries for a free slot, waits to be told that one
//! was freed, and once it has one, holds it — the session-level advisory lock lives exactly
//! as long as this session, so a replica that dies frees its slots with its connections.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, SimpleQueryMessage};

use super::keys::{Keys, CLASS_ID};
use crate::conninfo::ConnInfo;
use crate::server_version::{self, ConnectError, Connection, CONNECT_TIMEOUT};

/// How the lock sessions show in `pg_stat_activity`.
const APPLICATION_NAME: &str = "pgdump-api cluster slot";

/// How long a query of ours may take before the session is taken for lost.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A session that has no slot yet.
pub(super) struct Session {
    client: Client,
    /// The backend's pid, to tell that later statements run in the same session.
    pid: String,
    events: Arc<Events>,
}

/// What the connection's driver tells the session.
struct Events {
    source: String,
    /// A notification arrived, or the connection ended.
    woken: Notify,
    closed: AtomicBool,
    /// Set once the session holds a slot, and cleared when it lets go of it on purpose.
    holding: AtomicBool,
}

/// Why a session could not do its part.
#[derive(Debug)]
pub(super) enum SessionError {
    /// No session could be opened.
    Connect(String),
    /// The database answered, but will not hold a slot for us.
    Refused(String),
    /// The session ended or stopped answering.
    Lost(String),
}

impl Session {
    /// Opens a session on `conn` for source `source`.
    pub(super) async fn open(source: &str, conn: &ConnInfo) -> Result<Session, SessionError> {
        let connected = tokio::time::timeout(
            CONNECT_TIMEOUT + Duration::from_secs(5),
            server_version::open(conn, APPLICATION_NAME),
        )
        .await
        .map_err(|_| SessionError::Connect("timed out connecting".to_owned()))?;
        let (client, connection) = connected.map_err(|err| match err {
            ConnectError::Settings(why) => SessionError::Connect(why),
            ConnectError::Postgres(err) => SessionError::Connect(server_version::describe(&err)),
        })?;
        let events = Arc::new(Events {
            source: source.to_owned(),
            woken: Notify::new(),
            closed: AtomicBool::new(false),
            holding: AtomicBool::new(false),
        });
        tokio::spawn(drive(connection, Arc::clone(&events)));
        let mut session = Session {
            client,
            pid: String::new(),
            events,
        };
        // A slot is held while its session sits idle for as long as pg_dump runs: a server
        // set to end idle sessions (PostgreSQL 14 on) must not end this one.
        let row = session
            .query(
                "SELECT pg_backend_pid(), CASE WHEN current_setting('server_version_num')::int \
                 >= 140000 THEN set_config('idle_session_timeout', '0', false) END",
            )
            .await?;
        session.pid = row.into_iter().next().flatten().unwrap_or_default();
        Ok(session)
    }

    /// Takes the first free slot of `keys`: its second key, or `None` when all are taken.
    pub(super) async fn try_lock(&self, keys: &Keys) -> Result<Option<i32>, SessionError> {
        let ids: Vec<String> = keys.object_ids().map(|id| id.to_string()).collect();
        // The LIMIT stops at the first lock taken: the executor evaluates the condition
        // row by row, as rows are asked for.
        let sql = format!(
            "SELECT pg_backend_pid(), (SELECT k FROM unnest(ARRAY[{}]::int4[]) AS k \
             WHERE pg_try_advisory_lock({CLASS_ID}, k) LIMIT 1)",
            ids.join(",")
        );
        let row = self.query(&sql).await?;
        if row.first().cloned().flatten().as_deref() != Some(&self.pid) {
            // A pooler in transaction or statement mode hands each statement to whichever
            // server connection is free: a session-level lock would stay behind on one of
            // them, held by nobody we know, or be released by someone else.
            return Err(SessionError::Refused(
                "its statements do not all run in one database session, which advisory locks \
                 need (is it behind a pooler in transaction or statement mode?)"
                    .to_owned(),
            ));
        }
        let taken = row.get(1).cloned().flatten();
        Ok(taken.and_then(|id| id.parse().ok()))
    }

    /// Asks to be told whenever a slot of `keys` is freed. A hot standby refuses `LISTEN`
    /// (though not advisory locks): there the back-off alone paces the tries.
    pub(super) async fn listen(&self, keys: &Keys) -> Result<(), SessionError> {
        match self.query(&format!("LISTEN {}", keys.channel())).await {
            Ok(_) => Ok(()),
            Err(SessionError::Refused(error)) => {
                tracing::debug!(target: "cluster", source = %self.events.source, %error,
                    "cannot LISTEN for freed slots; polling only");
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Waits until a slot is announced as freed, or for `backoff` at most (a replica that
    /// died announces nothing). An error when the session ended meanwhile.
    pub(super) async fn woken(&self, backoff: Duration) -> Result<(), SessionError> {
        tokio::select! {
            () = self.events.woken.notified() => {}
            () = tokio::time::sleep(backoff) => {}
        }
        match self.events.closed.load(Ordering::SeqCst) {
            true => Err(SessionError::Lost("the connection ended".to_owned())),
            false => Ok(()),
        }
    }

    /// Holds the slot `object_id` of `keys`, which this session has taken.
    pub(super) fn hold(self, keys: &Keys, object_id: i32) -> Held {
        self.events.holding.store(true, Ordering::SeqCst);
        Held {
            client: Some(self.client),
            events: self.events,
            release: format!(
                "SELECT pg_advisory_unlock({CLASS_ID}, {object_id}); NOTIFY {}",
                keys.channel()
            ),
        }
    }

    /// Runs `sql` and returns its first row's values.
    async fn query(&self, sql: &str) -> Result<Vec<Option<String>>, SessionError> {
        let messages = tokio::time::timeout(QUERY_TIMEOUT, self.client.simple_query(sql))
            .await
            .map_err(|_| SessionError::Lost("the database did not answer".to_owned()))?
            .map_err(|err| match err.as_db_error() {
                // FATAL and PANIC end the session (a restart, an administrator's
                // pg_terminate_backend): the slot was not refused, the session was lost.
                Some(db) if db.severity() == "ERROR" => {
                    SessionError::Refused(format!("{}: {}", db.severity(), db.message()))
                }
                _ => SessionError::Lost(err.to_string()),
            })?;
        let row = messages.iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        });
        Ok(row.unwrap_or_default())
    }
}

/// A slot, held by its session until dropped; then it is released and announced.
pub(super) struct Held {
    client: Option<Client>,
    events: Arc<Events>,
    /// The statements that free the slot and announce it.
    release: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.events.holding.store(false, Ordering::SeqCst);
        let Some(client) = self.client.take() else {
            return;
        };
        let release = std::mem::take(&mut self.release);
        // Ending the session would free the slot by itself; unlocking first lets the
        // announcement reach the waiting replicas only once the slot is free. Without a
        // runtime (the server is going away), the session simply ends.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(QUERY_TIMEOUT, client.simple_query(&release)).await;
            });
        }
    }
}

/// Drives the connection: passes notifications on, and says when it ended — with a warning
/// when it held a slot, which the database has then freed under a running pg_dump.
async fn drive(mut connection: Connection, events: Arc<Events>) {
    let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
    let error = loop {
        match messages.next().await {
            Some(Ok(AsyncMessage::Notification(_))) => events.woken.notify_one(),
            Some(Ok(_)) => {}
            Some(Err(err)) => break Some(err),
            None => break None,
        }
    };
    events.closed.store(true, Ordering::SeqCst);
    events.woken.notify_one();
    if events.holding.load(Ordering::SeqCst) {
        let error = error.map_or_else(|| "the connection closed".to_owned(), |e| e.to_string());
        tracing::warn!(target: "cluster", source = %events.source, %error,
            "lost the session holding a cluster-wide pg_dump slot: the database freed the slot while its pg_dump runs on");
    }
}
