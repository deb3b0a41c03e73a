//! Which PostgreSQL major a source runs, learnt over a real connection (with the connection
//! string's TLS settings) and cached per source, so that the matching pg_dump can be chosen
//! without a round trip per request. The cache entry is dropped when a dump reports a version
//! mismatch (the server was upgraded), and is not used for a source whose connection string
//! changed since (its URL changed in Hasura's metadata); either way it is learnt again.
//!
//! The probe reads the connection string itself (tokio-postgres, not libpq), honouring the
//! host, port, user, database, password (also `PGPASSWORD` and the other `PG*` variables for
//! what the string leaves out), `options`, `target_session_attrs=read-write` and the TLS
//! settings. It does not honour a password file (`passfile`, `PGPASSFILE`, `~/.pgpass`), a
//! service file (`service`, `PGSERVICE`), GSSAPI/SSPI (Kerberos) authentication or
//! `load_balance_hosts`, and takes `sslmode=allow` as `prefer`. When it cannot learn the
//! version, the newest pg_dump runs — libpq honours all of these — and the log says why.
//!
//! [`connect`] is the one way the server itself opens a session on a source: the probe's,
//! and the cluster-wide limit's ([`crate::cluster`]).

mod tls;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::config::{Config, TargetSessionAttrs};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, SimpleQueryMessage, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::conninfo::ConnInfo;

/// How long a connection may take to be set up (the probe's: before the dump goes ahead
/// without it).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL version, of a server or of a pg_dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version {
    pub(crate) major: u32,
    pub(crate) minor: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Server versions by source name, each with the connection it was learnt over.
#[derive(Debug, Default)]
pub(crate) struct ServerVersions {
    known: Mutex<HashMap<String, (ConnInfo, Version)>>,
}

impl ServerVersions {
    /// The version of source `name`, from the cache (when learnt over this same `conn`) or a
    /// new probe.
    pub(crate) async fn get(&self, name: &str, conn: &ConnInfo) -> Result<Version, String> {
        if let Some((known, version)) = self.lock().get(name) {
            if known == conn {
                return Ok(*version);
            }
        }
        let version = probe(conn).await?;
        self.lock().insert(name.to_owned(), (conn.clone(), version));
        Ok(version)
    }

    /// Forgets what is known of `name`, so the next request probes again.
    pub(crate) fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ConnInfo, Version)>> {
        // The map stays consistent even if a holder panicked: no invariant spans entries.
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A connection to a source, as [`open`] opens it; whoever holds it must poll it.
pub(crate) type Connection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// Opens a session on `conn` the way pg_dump would (host, user, password, TLS settings; see
/// the module doc for what is not honoured), named `application_name` in
/// `pg_stat_activity`. The cluster-wide limit holds its advisory locks on such sessions.
pub(crate) async fn open(
    conn: &ConnInfo,
    application_name: &str,
) -> Result<(Client, Connection), ConnectError> {
    let mut config = client_config(conn).map_err(ConnectError::Settings)?;
    config.application_name(application_name);
    let tls = tls::settings(conn).map_err(ConnectError::Settings)?;
    // With sslmode=disable the connector is never used.
    config.ssl_mode(tls.mode);
    config
        .connect(MakeRustlsConnect::new(tls.config))
        .await
        .map_err(ConnectError::Postgres)
}

/// Why [`open`] failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The connection string cannot be used as it is (a bad port, sslmode, certificate…).
    #[error("{0}")]
    Settings(String),
    /// PostgreSQL's own words when the server refused (see [`describe`]).
    #[error("{}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
}

/// A session on `conn` named `pgdump-api`, its connection driven by a task of its own until
/// the client is dropped.
pub(crate) async fn connect(conn: &ConnInfo) -> Result<Client, String> {
    let (client, connection) = open(conn, "pgdump-api")
        .await
        .map_err(|err| err.to_string())?;
    tokio::spawn(connection);
    Ok(client)
}

/// tokio-postgres's error with the server's message (its `Display` says only `db error`).
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => err.to_string(),
    }
}

/// Connects to `conn` and asks for `server_version_num`.
pub(crate) async fn probe(conn: &ConnInfo) -> Result<Version, String> {
    let query = async {
        let client = connect(conn).await?;
        client
            .simple_query("SHOW server_version_num")
            .await
            .map_err(|err| describe(&err))
    };
    let messages = tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(5), query)
        .await
        .map_err(|_| "timed out asking the server for its version".to_owned())?
        .map_err(|err| format!("could not ask the server for its version: {err}"))?;
    let num = messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0)?.parse::<u32>().ok(),
            _ => None,
        })
        .ok_or("the server did not report server_version_num")?;
    Ok(from_version_num(num))
}

/// `170002` → 17.2; `90624` → 9.6.
pub(crate) fn from_version_num(num: u32) -> Version {
    if num >= 100_000 {
        Version {
            major: num / 10_000,
            minor: num % 10_000,
        }
    } else {
        Version {
            major: num / 10_000,
            minor: num / 100 % 100,
        }
    }
}

/// The connection as tokio-postgres takes it, with libpq's environment variables and
/// defaults for what the string leaves out. Parameters that only matter to pg_dump are
/// ignored here.
fn client_config(conn: &ConnInfo) -> Result<Config, String> {
    let env = |key: &str| std::env::var(key).ok().filter(|value| !value.is_empty());
    let param =
        |key: &str, env_key: &str| conn.param(key).map(str::to_owned).or_else(|| env(env_key));
    let mut config = Config::new();
    config
        .application_name("pgdump-api")
        .connect_timeout(CONNECT_TIMEOUT);
    let hosts = param("host", "PGHOST").unwrap_or_else(default_socket_dir);
    for host in hosts.split(',') {
        match host {
            "" => config.host_path(default_socket_dir()),
            path if path.starts_with('/') || path.starts_with('@') => config.host_path(path),
            name => config.host(name),
        };
    }
    if let Some(addrs) = param("hostaddr", "PGHOSTADDR") {
        for addr in addrs.split(',').filter(|addr| !addr.is_empty()) {
            let ip = addr
                .parse()
                .map_err(|_| format!("invalid hostaddr {addr:?}"))?;
            config.hostaddr(ip);
        }
    }
    for port in param("port", "PGPORT").unwrap_or_default().split(',') {
        let port = if port.is_empty() { "5432" } else { port };
        config.port(port.parse().map_err(|_| format!("invalid port {port:?}"))?);
    }
    let user = param("user", "PGUSER")
        .or_else(|| env("USER"))
        .or_else(|| env("LOGNAME"))
        .unwrap_or_else(|| "postgres".to_owned());
    let dbname = param("dbname", "PGDATABASE").unwrap_or_else(|| user.clone());
    config.user(&user).dbname(&dbname);
    match conn.password() {
        Some(password) => {
            config.password(password);
        }
        None => {
            if let Some(password) = env("PGPASSWORD") {
                config.password(password);
            }
        }
    }
    if let Some(options) = param("options", "PGOPTIONS") {
        config.options(&options);
    }
    if param("target_session_attrs", "PGTARGETSESSIONATTRS").as_deref() == Some("read-write") {
        config.target_session_attrs(TargetSessionAttrs::ReadWrite);
    }
    Ok(config)
}

/// Where libpq looks for the server's socket when no host is given.
fn default_socket_dir() -> String {
    if std::path::Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql".to_owned()
    } else {
        "/tmp".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers() {
        assert_eq!(
            from_version_num(170002),
            Version {
                major: 17,
                minor: 2
            }
        );
        assert_eq!(
            from_version_num(120022),
            Version {
                major: 12,
                minor: 22
            }
        );
        assert_eq!(from_version_num(90624), Version { major: 9, minor: 6 });
    }

    #[test]
    fn unknown_sslmode_is_an_error() {
        let conn = ConnInfo::parse("postgres://u@h/db?sslmode=sometimes").unwrap();
        assert!(tls::settings(&conn).is_err());
    }
}
