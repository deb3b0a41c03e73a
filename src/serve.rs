//! `pgdump-api serve`: from a validated [`Config`] to a listening server — find pg_dump,
//! set up the sources, bind, log where it listens, and stop on SIGTERM or SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::net::TcpListener;

use crate::auth::AuthMode;
use crate::config::{unhonoured_auth_variable, Config, ServeArgs};
use crate::http::{self, AppState};
use crate::launcher::Launcher;
use crate::metadata::{self, Env};
use crate::pg_dump::Toolbox;
use crate::sources::{Entry, LiveSources, Sources, ALLOWED_PATH_PREFIX};

/// `pgdump-api serve`: configuration, logging, then the server until it shuts down.
pub fn main(args: ServeArgs) -> ExitCode {
    let vars: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    let declared = ServeArgs::variables();
    let declared: Vec<&str> = declared.iter().map(String::as_str).collect();
    if let Some(name) = unhonoured_auth_variable(vars.iter().map(String::as_str), &declared) {
        return fail(&anyhow::anyhow!(
            "{name} is set, but pgdump-api does not support it: refusing to start rather than \
             ignore an authentication or CORS setting; unset it"
        ));
    }
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(err) => return fail(&err),
    };
    crate::logging::init(config.log_level, &config.enabled_log_types);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err.into()),
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// Logs the whole error chain as a JSON line (as Hasura logs a fatal startup error), prints
/// it on stderr too, and exits non-zero.
fn fail(err: &anyhow::Error) -> ExitCode {
    crate::logging::fatal(&format!("{err:#}"));
    eprintln!("pgdump-api: error: {err:#}");
    ExitCode::FAILURE
}

/// Runs the server until a shutdown signal.
async fn serve(config: Config) -> anyhow::Result<()> {
    config
        .auth
        .prepare()
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let toolbox = Toolbox::discover(&config.pg_dump_paths)?;
    for binary in toolbox.binaries() {
        tracing::info!(target: "startup", path = %binary.path.display(), version = %binary.version, "found pg_dump");
    }
    let env = environment(&config);
    let file_sources = Sources::load(config.sources_file.as_deref(), None, |var| env(var))?;
    let (sources, reader) = match metadata::Reader::new(&config, file_sources.clone(), env)? {
        Some((mut reader, live, requests)) => {
            reader.start().await?;
            (live, Some((reader, requests)))
        }
        None if file_sources.is_empty() => bail!(
            "no database to dump: set --database-url / HASURA_GRAPHQL_DATABASE_URL, \
             --metadata-database-url / HASURA_GRAPHQL_METADATA_DATABASE_URL \
             or --sources-file / HASURA_GRAPHQL_SOURCES_FILE"
        ),
        None => (LiveSources::from(file_sources), None),
    };
    let listener = bind(&config.listen.host, config.listen.port)
        .await
        .with_context(|| {
            format!(
                "could not listen on {}:{}",
                config.listen.host, config.listen.port
            )
        })?;
    let address = listener.local_addr().context("no local address")?;
    // In front mode the upstream judges every caller without a known secret.
    if config.auth == AuthMode::Open && config.upstream.is_none() && !address.ip().is_loopback() {
        tracing::warn!(target: "startup", address = %address,
            "no admin secret is set: anyone who can reach this server can dump the database; set --admin-secret / HASURA_GRAPHQL_ADMIN_SECRET");
    }
    let poll_interval = config.schema_sync_poll_interval;
    let mut state = AppState::new(config, sources, toolbox);
    state.dumper.launch_through(Launcher::resolve());
    if let Some((reader, _)) = &reader {
        state.metrics.register_metadata(reader.counters());
    }
    let state = Arc::new(state);
    log_sources(&state.sources.snapshot());
    if let Some((reader, requests)) = reader {
        tokio::spawn(reader.run(poll_interval, requests));
    }
    tracing::info!(target: "startup", address = %address, version = env!("CARGO_PKG_VERSION"),
        max_connections = state.max_connections, "listening");
    tokio::spawn(learn_server_versions(Arc::clone(&state)));
    http::run(listener, state, shutdown_signal()).await;
    tracing::info!(target: "startup", "stopped");
    Ok(())
}

/// How `{from_env: VAR}` and the like are resolved: the process's environment, where the
/// flags that stand for Hasura's variables win.
fn environment(config: &Config) -> Env {
    let database_url = config.database_url.clone();
    let prefix = config.dynamic_secrets_allowed_path_prefix.clone();
    Arc::new(move |var| match var {
        "HASURA_GRAPHQL_DATABASE_URL" => database_url.as_ref().map(|url| url.expose().to_owned()),
        ALLOWED_PATH_PREFIX => prefix.clone(),
        _ => std::env::var(var).ok(),
    })
}

/// One line per source: its name, its kind and where its connection string comes from.
fn log_sources(sources: &Sources) {
    for (name, entry) in sources.entries() {
        let (kind, url_from) = (entry.kind(), metadata::describe(entry));
        match entry {
            Entry::Unusable { .. } => {
                tracing::warn!(target: "startup", source = name, kind, url_from, "source cannot be used")
            }
            _ => tracing::info!(target: "startup", source = name, kind, url_from, "source"),
        }
    }
}

/// Learns every source's server version in the background, so that the first dump does not
/// wait for it and a missing pg_dump shows in the log at startup.
async fn learn_server_versions(state: Arc<AppState>) {
    let sources = state.sources.snapshot();
    for source in sources.postgres() {
        let source = &source;
        match state.dumper.server_version(source).await {
            Ok(server) => match state.dumper.toolbox().for_server(server) {
                Some(pg_dump) => tracing::info!(target: "startup", source = %source.name,
                    server_version = %server, pg_dump = %pg_dump.version, "source ready"),
                None => tracing::warn!(target: "startup", source = %source.name,
                    server_version = %server, "no installed pg_dump can dump this source"),
            },
            Err(error) => tracing::warn!(target: "startup", source = %source.name, %error,
                "could not learn the server version yet"),
        }
    }
}

/// Binds `host:port`; `*` is every interface: dual-stack `::`, or `0.0.0.0` without IPv6.
async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    if host != "*" {
        return TcpListener::bind((host, port)).await;
    }
    match TcpListener::bind(("::", port)).await {
        Ok(listener) => Ok(listener),
        Err(_) => TcpListener::bind(("0.0.0.0", port)).await,
    }
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
