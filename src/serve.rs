//! `pgdump-api serve`: from a validated [`Config`] to a listening server — find pg_dump,
//! set up the sources, bind, log where it listens, and stop on SIGTERM or SIGINT.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::net::TcpListener;

use crate::config::{AuthMode, Config};
use crate::http::{self, AppState};
use crate::pg_dump::Toolbox;
use crate::sources::Sources;

/// Runs the server until a shutdown signal.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let toolbox = Toolbox::discover(&config.pg_dump_paths)?;
    for binary in toolbox.binaries() {
        tracing::info!(target: "startup", path = %binary.path.display(), version = %binary.version, "found pg_dump");
    }
    let sources = Sources::from_database_url(config.database_url.as_ref());
    if sources.is_empty() {
        bail!("no database to dump: set --database-url or HASURA_GRAPHQL_DATABASE_URL");
    }
    let listener = TcpListener::bind((config.listen.host.as_str(), config.listen.port))
        .await
        .with_context(|| {
            format!(
                "could not listen on {}:{}",
                config.listen.host, config.listen.port
            )
        })?;
    let address = listener.local_addr().context("no local address")?;
    if config.auth == AuthMode::Open && !is_loopback(address.ip()) {
        tracing::warn!(target: "startup", address = %address,
            "no admin secret is set: anyone who can reach this server can dump the database; set --admin-secret / HASURA_GRAPHQL_ADMIN_SECRET");
    }
    tracing::info!(target: "startup", address = %address, version = env!("CARGO_PKG_VERSION"), "listening");
    let state = Arc::new(AppState::new(&config, sources, toolbox));
    http::run(
        listener,
        state,
        shutdown_signal(),
        config.graceful_shutdown_timeout,
    )
    .await
    .context("server failed")?;
    tracing::info!(target: "startup", "stopped");
    Ok(())
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!(target: "startup", "could not install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
