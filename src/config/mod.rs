//! Command-line flags and environment variables, turned into a typed [`Config`] once, at the
//! edge. Every setting is a flag with an environment variable (the flag wins); the names are
//! Hasura GraphQL Engine's own so that existing deployments switch by changing the binary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};

use crate::auth::cors::Cors;
use crate::auth::AuthMode;
use crate::secret::Secret;

mod auth;

pub(crate) use auth::unhonoured_auth_variable;
use auth::{auth_mode, AuthArgs};

/// Flags of `pgdump-api serve`, exactly as given; [`Config::from_args`] validates them.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Connection string of the source named `default`.
    #[arg(long, env = "HASURA_GRAPHQL_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,

    /// Admin secret; without one every caller is admin.
    #[arg(long, env = "HASURA_GRAPHQL_ADMIN_SECRET", hide_env_values = true)]
    pub(crate) admin_secret: Option<String>,

    /// Legacy name of the admin secret, used when no admin secret is set.
    #[arg(long, env = "HASURA_GRAPHQL_ACCESS_KEY", hide_env_values = true)]
    pub(crate) access_key: Option<String>,

    /// Admin secrets as a JSON list of strings (for rotation); any of them, or the admin
    /// secret, is accepted.
    #[arg(long, env = "HASURA_GRAPHQL_ADMIN_SECRETS", hide_env_values = true)]
    pub(crate) admin_secrets: Option<String>,

    /// Role of requests that carry no admin secret header.
    #[arg(long, env = "HASURA_GRAPHQL_UNAUTHORIZED_ROLE")]
    pub(crate) unauthorized_role: Option<String>,

    /// JWT configuration: Hasura's JSON object (`type` + `key`, or `jwk_url`; claims, audience,
    /// issuer, allowed_skew, header).
    #[arg(long, env = "HASURA_GRAPHQL_JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<String>,

    /// A JSON list of JWT configurations, besides --jwt-secret.
    #[arg(long, env = "HASURA_GRAPHQL_JWT_SECRETS", hide_env_values = true)]
    pub(crate) jwt_secrets: Option<String>,

    /// URL of the authentication webhook, asked about callers without the admin secret.
    #[arg(long, env = "HASURA_GRAPHQL_AUTH_HOOK")]
    pub(crate) auth_hook: Option<String>,

    /// HTTP method of the authentication webhook: GET (the default) or POST.
    #[arg(long, env = "HASURA_GRAPHQL_AUTH_HOOK_MODE")]
    pub(crate) auth_hook_mode: Option<String>,

    /// Seconds the authentication webhook has to answer; past it the caller gets a 500.
    #[arg(long, env = "HASURA_GRAPHQL_AUTH_HOOK_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) auth_hook_timeout: u64,

    /// Whether the POST webhook gets the request body (this API has no GraphQL request, so
    /// `request` is always null) [default: true].
    #[arg(long, env = "HASURA_GRAPHQL_AUTH_HOOK_SEND_REQUEST_BODY",
          num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub(crate) auth_hook_send_request_body: Option<bool>,

    /// Origins allowed cross-origin: `*` (the default), or a comma list of
    /// `scheme://host[:port]`, where the host may start with `*.` for any one subdomain.
    #[arg(long, env = "HASURA_GRAPHQL_CORS_DOMAIN")]
    pub(crate) cors_domain: Option<String>,

    /// Send no CORS headers and answer no preflight requests.
    #[arg(long, env = "HASURA_GRAPHQL_DISABLE_CORS", default_value = "false",
          num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub(crate) disable_cors: bool,

    /// Accepted for compatibility; this server has no websockets.
    #[arg(long, env = "HASURA_GRAPHQL_WS_READ_COOKIE", hide = true, default_value = "false",
          num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub(crate) ws_read_cookie: bool,

    /// Comma list of APIs to enable: metadata, graphql, pgdump, developer, config, metrics.
    #[arg(
        long,
        env = "HASURA_GRAPHQL_ENABLED_APIS",
        default_value = "metadata,graphql,pgdump,config"
    )]
    pub(crate) enabled_apis: String,

    /// Interface to listen on; `*` means all interfaces.
    #[arg(long, env = "HASURA_GRAPHQL_SERVER_HOST", default_value = "*")]
    pub(crate) server_host: String,

    /// Port to listen on; 0 picks a free one (the startup log names it).
    #[arg(long, env = "HASURA_GRAPHQL_SERVER_PORT", default_value_t = 8080)]
    pub(crate) server_port: u16,

    /// Include pg_dump's stderr (`internal`) in error bodies sent to admins.
    #[arg(long, env = "HASURA_GRAPHQL_ADMIN_INTERNAL_ERRORS", default_value = "true",
          num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub(crate) admin_internal_errors: bool,

    /// Always include `internal` in error bodies.
    #[arg(long, env = "HASURA_GRAPHQL_DEV_MODE", default_value = "false",
          num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub(crate) dev_mode: bool,

    /// Comma list of log types to write (Hasura's names: startup, http-log, …); the types only
    /// pgdump-api writes (server, pg-dump) are always written.
    #[arg(
        long,
        env = "HASURA_GRAPHQL_ENABLED_LOG_TYPES",
        default_value = "startup,http-log,webhook-log,websocket-log,jwk-refresh-log"
    )]
    pub(crate) enabled_log_types: String,

    /// Log level.
    #[arg(long, env = "HASURA_GRAPHQL_LOG_LEVEL", value_enum, ignore_case = true, default_value_t = LogLevel::Info)]
    pub(crate) log_level: LogLevel,

    /// pg_dump binary or directory holding one (repeatable; the env var is colon-separated).
    /// When unset, pg_dump is looked for in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin,
    /// `pg_config --bindir` and PATH.
    #[arg(
        long = "pg-dump-path",
        env = "HASURA_GRAPHQL_PG_DUMP_PATHS",
        value_delimiter = ':'
    )]
    pub(crate) pg_dump_paths: Vec<PathBuf>,

    /// Sources file: an exported Hasura metadata document (JSON or YAML) or a metadata
    /// directory's `databases/databases.yaml`.
    #[arg(long, env = "HASURA_GRAPHQL_SOURCES_FILE")]
    pub(crate) sources_file: Option<PathBuf>,

    /// Hasura's metadata database: its sources are followed live (`dynamic-from-file:///PATH`
    /// reads the connection string from PATH). Without it, the database of --database-url is
    /// read when it holds Hasura's metadata.
    #[arg(
        long,
        env = "HASURA_GRAPHQL_METADATA_DATABASE_URL",
        hide_env_values = true
    )]
    pub(crate) metadata_database_url: Option<String>,

    /// Milliseconds between checks of the metadata's resource_version; 0 turns polling off.
    #[arg(
        long,
        env = "HASURA_GRAPHQL_SCHEMA_SYNC_POLL_INTERVAL",
        default_value_t = 1000
    )]
    pub(crate) schema_sync_poll_interval: u64,

    /// The directory under which `dynamic_from_file` connection strings may be read.
    #[arg(long, env = "HASURA_GRAPHQL_DYNAMIC_SECRETS_ALLOWED_PATH_PREFIX")]
    pub(crate) dynamic_secrets_allowed_path_prefix: Option<String>,

    /// At most this many pg_dump processes run per source.
    #[arg(long, env = "HASURA_GRAPHQL_PG_DUMP_MAX_CONCURRENT", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) pg_dump_max_concurrent: u32,

    /// At most this many pg_dump processes run per source across every replica sharing this
    /// setting, held as PostgreSQL advisory locks in the source database; 0 means no limit.
    #[arg(long, env = "HASURA_GRAPHQL_PG_DUMP_MAX_CONCURRENT_CLUSTER", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub(crate) pg_dump_max_concurrent_cluster: u32,

    /// At most this many requests per source wait for a pg_dump slot; more get a 503.
    #[arg(long, env = "HASURA_GRAPHQL_PG_DUMP_MAX_QUEUE", default_value_t = 32)]
    pub(crate) pg_dump_max_queue: u32,

    /// Seconds a pg_dump may run, however slowly its client reads, before it is stopped;
    /// 0 means no limit.
    #[arg(long, env = "HASURA_GRAPHQL_PG_DUMP_TIMEOUT", default_value_t = 0)]
    pub(crate) pg_dump_timeout: u64,

    /// Seconds a client has to send its request headers (and, separately, its body).
    #[arg(long, env = "HASURA_GRAPHQL_REQUEST_HEADER_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) request_header_timeout: u64,

    /// Most client connections kept open; past it the oldest idle ones are closed to serve new
    /// ones. 0 (the default): the open-files limit (half of it with --upstream) less a reserve
    /// for pg_dump, at most 4096.
    #[arg(long, env = "HASURA_GRAPHQL_MAX_CONNECTIONS", default_value_t = 0)]
    pub(crate) max_connections: u32,
    /// Seconds a client may accept no bytes of a response before the connection is closed
    /// (and its pg_dump stopped).
    #[arg(long, env = "HASURA_GRAPHQL_SEND_TIMEOUT", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) send_timeout: u64,

    /// Secret for GET /v1/metrics (`Authorization: Bearer SECRET`), besides admin auth.
    #[arg(long, env = "HASURA_GRAPHQL_METRICS_SECRET", hide_env_values = true)]
    pub(crate) metrics_secret: Option<String>,

    /// Seconds that in-flight dumps get to finish after SIGTERM/SIGINT before they are stopped.
    #[arg(
        long,
        env = "HASURA_GRAPHQL_GRACEFUL_SHUTDOWN_TIMEOUT",
        default_value_t = 60
    )]
    pub(crate) graceful_shutdown_timeout: u64,

    /// Front mode: the Hasura GraphQL Engine (`http://host:port`) that every request but
    /// pgdump-api's own (POST /v1alpha1/pg_dump, the dump page and its endpoints, /healthz,
    /// /v1/metrics when enabled) is passed to; credentials other than a known admin secret are checked by
    /// asking it.
    #[arg(long, env = "HASURA_GRAPHQL_PG_DUMP_UPSTREAM")]
    pub(crate) upstream: Option<String>,
}

/// Log levels, from the most to the least verbose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// The APIs that `--enabled-apis` may name; only some have routes here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Metadata,
    Graphql,
    Pgdump,
    Developer,
    Config,
    Metrics,
}

impl Api {
    const ALL: [(Api, &'static str); 6] = [
        (Api::Metadata, "metadata"),
        (Api::Graphql, "graphql"),
        (Api::Pgdump, "pgdump"),
        (Api::Developer, "developer"),
        (Api::Config, "config"),
        (Api::Metrics, "metrics"),
    ];
}

/// The parsed `--enabled-apis` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EnabledApis(Vec<Api>);

impl EnabledApis {
    /// Parses a comma list; items are trimmed and case-insensitive.
    pub(crate) fn parse(list: &str) -> anyhow::Result<Self> {
        let mut apis = Vec::new();
        for item in list.split(',').map(str::trim) {
            let Some((api, _)) = Api::ALL
                .iter()
                .find(|(_, name)| name.eq_ignore_ascii_case(item))
            else {
                let accepted: Vec<_> = Api::ALL.iter().map(|(_, name)| *name).collect();
                bail!(
                    "invalid value {item:?} in enabled APIs {list:?}: expected a comma-separated list of {}",
                    accepted.join(", ")
                );
            };
            apis.push(*api);
        }
        Ok(EnabledApis(apis))
    }

    /// Whether `api` is enabled.
    pub(crate) fn contains(&self, api: Api) -> bool {
        self.0.contains(&api)
    }
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listen {
    /// A host name or IP address; `*` means every interface, IPv6 and IPv4 where the system
    /// has IPv6 (`::`, dual-stack), else IPv4 (`0.0.0.0`).
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// How `pgdump-api serve` runs, validated.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) database_url: Option<Secret>,
    pub(crate) auth: AuthMode,
    pub(crate) cors: Cors,
    pub(crate) enabled_apis: EnabledApis,
    pub(crate) listen: Listen,
    pub(crate) admin_internal_errors: bool,
    pub(crate) dev_mode: bool,
    pub(crate) log_level: LogLevel,
    pub(crate) enabled_log_types: String,
    pub(crate) pg_dump_paths: Vec<PathBuf>,
    pub(crate) sources_file: Option<PathBuf>,
    pub(crate) metadata_database_url: Option<Secret>,
    /// `None`: no polling.
    pub(crate) schema_sync_poll_interval: Option<Duration>,
    pub(crate) dynamic_secrets_allowed_path_prefix: Option<String>,
    pub(crate) limits: DumpLimits,
    pub(crate) request_header_timeout: Duration,
    /// `None`: derived from the open-files limit.
    pub(crate) max_connections: Option<usize>,
    pub(crate) send_timeout: Duration,
    pub(crate) metrics_secret: Option<Secret>,
    pub(crate) graceful_shutdown_timeout: Duration,
    /// Front mode's upstream: scheme `http`, an authority, and a base path without a
    /// trailing `/` (often empty).
    pub(crate) upstream: Option<axum::http::Uri>,
}

/// How much pg_dump work the server takes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DumpLimits {
    /// pg_dump processes per source.
    pub(crate) max_concurrent: usize,
    /// Requests waiting per source.
    pub(crate) max_queue: usize,
    /// pg_dump processes per source across every replica; 0: no such limit.
    pub(crate) max_concurrent_cluster: u32,
    /// How long one pg_dump may run.
    pub(crate) timeout: Option<Duration>,
}

impl Config {
    /// Validates the raw flags.
    pub(crate) fn from_args(args: ServeArgs) -> anyhow::Result<Self> {
        let enabled_apis = EnabledApis::parse(&args.enabled_apis)
            .context("invalid --enabled-apis / HASURA_GRAPHQL_ENABLED_APIS")?;
        let auth = auth_mode(AuthArgs {
            admin_secret: args.admin_secret,
            access_key: args.access_key,
            admin_secrets: args.admin_secrets,
            unauthorized_role: args.unauthorized_role,
            jwt_secret: args.jwt_secret,
            jwt_secrets: args.jwt_secrets,
            auth_hook: args.auth_hook,
            auth_hook_mode: args.auth_hook_mode,
            auth_hook_send_request_body: args.auth_hook_send_request_body.unwrap_or(true),
            auth_hook_timeout: Duration::from_secs(args.auth_hook_timeout),
        })?;
        // Nothing to act on: pgdump-api reads no credentials on websockets (in front mode they
        // pass through to the upstream, which reads them).
        let _ = args.ws_read_cookie;
        let cors = Cors::parse(args.cors_domain.as_deref(), args.disable_cors).map_err(|err| {
            anyhow::anyhow!("invalid --cors-domain / HASURA_GRAPHQL_CORS_DOMAIN: {err}")
        })?;
        let host = match args.server_host.trim() {
            "*" => "*".to_owned(),
            "" => bail!("--server-host / HASURA_GRAPHQL_SERVER_HOST must not be empty"),
            host => host.to_owned(),
        };
        Ok(Config {
            database_url: args
                .database_url
                .filter(|url| !url.is_empty())
                .map(Secret::new),
            auth,
            cors,
            enabled_apis,
            listen: Listen {
                host,
                port: args.server_port,
            },
            admin_internal_errors: args.admin_internal_errors,
            dev_mode: args.dev_mode,
            log_level: args.log_level,
            enabled_log_types: args.enabled_log_types,
            pg_dump_paths: args.pg_dump_paths,
            sources_file: args.sources_file,
            metadata_database_url: args
                .metadata_database_url
                .filter(|url| !url.is_empty())
                .map(Secret::new),
            schema_sync_poll_interval: (args.schema_sync_poll_interval > 0)
                .then(|| Duration::from_millis(args.schema_sync_poll_interval)),
            dynamic_secrets_allowed_path_prefix: args.dynamic_secrets_allowed_path_prefix,
            limits: DumpLimits {
                max_concurrent: args.pg_dump_max_concurrent as usize,
                max_queue: args.pg_dump_max_queue as usize,
                max_concurrent_cluster: args.pg_dump_max_concurrent_cluster,
                timeout: (args.pg_dump_timeout > 0)
                    .then(|| Duration::from_secs(args.pg_dump_timeout)),
            },
            request_header_timeout: Duration::from_secs(args.request_header_timeout),
            max_connections: (args.max_connections > 0).then_some(args.max_connections as usize),
            send_timeout: Duration::from_secs(args.send_timeout),
            metrics_secret: args
                .metrics_secret
                .filter(|s| !s.is_empty())
                .map(Secret::new),
            graceful_shutdown_timeout: Duration::from_secs(args.graceful_shutdown_timeout),
            upstream: args
                .upstream
                .filter(|url| !url.trim().is_empty())
                .map(|url| upstream(url.trim()))
                .transpose()
                .context("invalid --upstream / HASURA_GRAPHQL_PG_DUMP_UPSTREAM")?,
        })
    }
}

/// The upstream's URL: `http://host[:port][/base]`, without query or fragment.
fn upstream(url: &str) -> anyhow::Result<axum::http::Uri> {
    let uri: axum::http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => bail!(
            "{url:?}: https upstreams are not supported; reach Hasura over http inside the \
             deployment (pgdump-api in front of it terminates nothing but HTTP)"
        ),
        _ => bail!("{url:?}: expected http://HOST[:PORT]"),
    }
    if uri.authority().is_none() || uri.query().is_some() || url.contains('#') {
        bail!("{url:?}: expected http://HOST[:PORT][/PATH], without query or fragment");
    }
    let base = uri.path().trim_end_matches('/');
    let authority = uri.authority().expect("checked above");
    Ok(format!("http://{authority}{base}")
        .parse()
        .expect("a part of a valid URI is valid"))
}

impl ServeArgs {
    /// The environment variables that `serve` reads.
    pub(crate) fn variables() -> Vec<String> {
        let command = ServeArgs::augment_args(clap::Command::new("serve"));
        command
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|name| name.to_string_lossy().into_owned())
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests;
