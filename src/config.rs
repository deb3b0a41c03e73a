//! Command-line flags and environment variables, turned into a typed [`Config`] once, at the
//! edge. Every setting is a flag with an environment variable (the flag wins); the names are
//! Hasura GraphQL Engine's own so that existing deployments switch by changing the binary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};

use crate::secret::Secret;

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

    /// Role of requests that carry no admin secret header.
    #[arg(long, env = "HASURA_GRAPHQL_UNAUTHORIZED_ROLE")]
    pub(crate) unauthorized_role: Option<String>,

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

    /// At most this many pg_dump processes run per source.
    #[arg(long, env = "HASURA_GRAPHQL_PG_DUMP_MAX_CONCURRENT", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) pg_dump_max_concurrent: u32,

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
    /// ones. 0 (the default): the open-files limit less a reserve for pg_dump, at most 4096.
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
    /// POST /v1alpha1/pg_dump (and /v1/metrics) is passed to; credentials other than a known
    /// admin secret are checked by asking it.
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

/// Who may call the admin endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthMode {
    /// No admin secret: every caller is admin unless it names another role.
    Open,
    /// Callers prove themselves with the admin secret; others get `unauthorized_role`.
    Secret {
        secret: Secret,
        unauthorized_role: Option<String>,
    },
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
    pub(crate) enabled_apis: EnabledApis,
    pub(crate) listen: Listen,
    pub(crate) admin_internal_errors: bool,
    pub(crate) dev_mode: bool,
    pub(crate) log_level: LogLevel,
    pub(crate) pg_dump_paths: Vec<PathBuf>,
    pub(crate) sources_file: Option<PathBuf>,
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
    /// How long one pg_dump may run.
    pub(crate) timeout: Option<Duration>,
}

impl Config {
    /// Validates the raw flags.
    pub(crate) fn from_args(args: ServeArgs) -> anyhow::Result<Self> {
        let enabled_apis = EnabledApis::parse(&args.enabled_apis)
            .context("invalid --enabled-apis / HASURA_GRAPHQL_ENABLED_APIS")?;
        let auth = auth_mode(args.admin_secret, args.access_key, args.unauthorized_role)?;
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
            enabled_apis,
            listen: Listen {
                host,
                port: args.server_port,
            },
            admin_internal_errors: args.admin_internal_errors,
            dev_mode: args.dev_mode,
            log_level: args.log_level,
            pg_dump_paths: args.pg_dump_paths,
            sources_file: args.sources_file,
            limits: DumpLimits {
                max_concurrent: args.pg_dump_max_concurrent as usize,
                max_queue: args.pg_dump_max_queue as usize,
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

/// The authentication mode, refusing the settings that would open the server by accident.
fn auth_mode(
    admin_secret: Option<String>,
    access_key: Option<String>,
    unauthorized_role: Option<String>,
) -> anyhow::Result<AuthMode> {
    let (secret, name) = match (admin_secret, access_key) {
        (Some(secret), _) => (secret, "--admin-secret / HASURA_GRAPHQL_ADMIN_SECRET"),
        (None, Some(key)) => (key, "--access-key / HASURA_GRAPHQL_ACCESS_KEY"),
        (None, None) => {
            if unauthorized_role.is_some_and(|role| !role.is_empty()) {
                bail!(
                    "--unauthorized-role (HASURA_GRAPHQL_UNAUTHORIZED_ROLE) requires \
                     --admin-secret (HASURA_GRAPHQL_ADMIN_SECRET) or --access-key \
                     (HASURA_GRAPHQL_ACCESS_KEY) to be set"
                );
            }
            return Ok(AuthMode::Open);
        }
    };
    // An empty secret would make an empty header an admin credential; it is nearly always
    // a variable that was meant to be filled in (`ADMIN_SECRET: ${SECRET}` with SECRET unset).
    if secret.is_empty() {
        bail!(
            "{name} is set but empty: that would let anyone in with an empty secret header; \
             set a secret, or unset the variable to serve without authentication"
        );
    }
    let unauthorized_role = unauthorized_role.filter(|role| !role.is_empty());
    // `auth::ADMIN_ROLE`, named here without importing `auth`, which imports this module.
    if unauthorized_role.as_deref() == Some("admin") {
        bail!(
            "--unauthorized-role / HASURA_GRAPHQL_UNAUTHORIZED_ROLE must not be admin: every \
             caller without the admin secret would be admin"
        );
    }
    Ok(AuthMode::Secret {
        secret: Secret::new(secret),
        unauthorized_role,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::FromArgMatches;

    /// `serve`'s flags from `args` alone: the environment variables are not read, so that a
    /// developer's own `HASURA_GRAPHQL_*` settings cannot change what a test sees.
    pub(crate) fn serve(args: &[&str]) -> ServeArgs {
        let command =
            ServeArgs::augment_args(clap::Command::new("serve")).mut_args(|arg| arg.env(None));
        let argv = ["serve"].iter().chain(args);
        let matches = command.try_get_matches_from(argv).expect("valid flags");
        ServeArgs::from_arg_matches(&matches).expect("valid flags")
    }

    #[test]
    fn enabled_apis_are_trimmed_and_case_insensitive() {
        let apis = EnabledApis::parse(" PgDump , metrics").unwrap();
        assert!(apis.contains(Api::Pgdump));
        assert!(apis.contains(Api::Metrics));
        assert!(!apis.contains(Api::Config));
    }

    #[test]
    fn unknown_or_empty_api_names_the_accepted_list() {
        for list in ["pgdump,nope", "pgdump,,config", ""] {
            let err = EnabledApis::parse(list).unwrap_err().to_string();
            assert!(
                err.contains("metadata, graphql, pgdump, developer, config, metrics"),
                "{err}"
            );
        }
    }

    #[test]
    fn defaults_match_the_reference() {
        let config = Config::from_args(serve(&[])).unwrap();
        assert_eq!(config.listen.host, "*");
        assert_eq!(config.listen.port, 8080);
        assert!(config.admin_internal_errors);
        assert!(!config.dev_mode);
        assert_eq!(config.log_level, LogLevel::Info);
        assert!(config.enabled_apis.contains(Api::Pgdump));
        assert!(!config.enabled_apis.contains(Api::Metrics));
        assert_eq!(
            config.limits,
            DumpLimits {
                max_concurrent: 4,
                max_queue: 32,
                timeout: None
            }
        );
        assert_eq!(config.graceful_shutdown_timeout, Duration::from_secs(60));
        assert_eq!(config.max_connections, None);
        let config = Config::from_args(serve(&["--max-connections", "300"])).unwrap();
        assert_eq!(config.max_connections, Some(300));
        assert_eq!(config.send_timeout, Duration::from_secs(60));
    }

    #[test]
    fn upstream_is_an_http_url_with_an_optional_base_path() {
        let of = |url: &str| Config::from_args(serve(&["--upstream", url]));
        let config = of("http://hasura:8080/").unwrap();
        assert_eq!(config.upstream.unwrap().to_string(), "http://hasura:8080/");
        let config = of("http://hasura/base/").unwrap();
        assert_eq!(config.upstream.unwrap().path(), "/base");
        assert_eq!(of("").unwrap().upstream, None);
        for bad in [
            "hasura:8080",
            "https://hasura",
            "http://hasura/?a=1",
            "ftp://x",
        ] {
            let err = format!("{:#}", of(bad).unwrap_err());
            assert!(err.contains("--upstream"), "{bad}: {err}");
        }
    }

    #[test]
    fn boolean_flags_take_an_optional_value() {
        let config =
            Config::from_args(serve(&["--dev-mode", "--admin-internal-errors", "false"])).unwrap();
        assert!(config.dev_mode);
        assert!(!config.admin_internal_errors);
    }

    #[test]
    fn access_key_is_the_fallback_secret() {
        let config = Config::from_args(serve(&["--access-key", "old"])).unwrap();
        assert_eq!(
            config.auth,
            AuthMode::Secret {
                secret: Secret::new("old"),
                unauthorized_role: None
            }
        );
        let config =
            Config::from_args(serve(&["--access-key", "old", "--admin-secret", "new"])).unwrap();
        assert!(matches!(config.auth, AuthMode::Secret { secret, .. } if secret.expose() == "new"));
    }

    #[test]
    fn empty_admin_secret_is_a_startup_error() {
        for flag in ["--admin-secret", "--access-key"] {
            let err = Config::from_args(serve(&[flag, ""]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("is set but empty"), "{err}");
            assert!(err.contains(flag), "{err}");
        }
    }

    #[test]
    fn unauthorized_role_admin_is_a_startup_error() {
        let args = ["--admin-secret", "s", "--unauthorized-role", "admin"];
        let err = Config::from_args(serve(&args)).unwrap_err().to_string();
        assert!(err.contains("must not be admin"), "{err}");
    }

    #[test]
    fn unauthorized_role_without_a_secret_is_a_startup_error() {
        let err = Config::from_args(serve(&["--unauthorized-role", "anonymous"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("requires --admin-secret"), "{err}");
        // An empty role is no role.
        assert_eq!(
            Config::from_args(serve(&["--unauthorized-role", ""]))
                .unwrap()
                .auth,
            AuthMode::Open
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let config = Config::from_args(serve(&[
            "--admin-secret",
            "hunter2",
            "--database-url",
            "postgres://u:pw@h/db",
        ]))
        .unwrap();
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("pw@"),
            "{debug}"
        );
    }
}
