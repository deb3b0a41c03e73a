//! The client's flags: `dump`, `migrate create` and `seed create`, and the connection flags
//! they share. Everything that can be checked without the server — URLs, headers, names —
//! is checked here, so that a mistake is a usage error (exit status 2) before any request.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Subcommand};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;

use crate::secret::Secret;

use super::names::{SchemaName, TableName};

/// How names are written, for `--help`.
const NAMES_HELP: &str = "\
Names, not patterns: each --schema item (a comma separates items, as in the Hasura CLI) and \
each --from-table value is one exact name, sent to pg_dump \
fully quoted, so upper case, dots, `*` and `?` are taken literally (`MyTable`, `Sales`). A \
table is `TABLE` or `SCHEMA.TABLE`, split at the first dot that is not inside double quotes; \
a part written in SQL double quotes may hold dots, commas and quotes, a quote inside doubled: \
`\"my.schema\".\"Odd\"\"Name\"`, `--schema '\"a,b\"'`.";

/// Exit statuses, for `--help`.
const EXIT_HELP: &str = "\
Exit status: 0 done; 1 local failure (files, disk); 2 usage error; 3 the server rejected the \
request (HTTP error status); 4 the server could not be reached, or the response ended before \
it was complete; 129, 130, 143 stopped by SIGHUP, SIGINT, SIGTERM. On any failure no output \
file is left behind.";

/// Which server to ask, and how. Each setting is taken, as the Hasura CLI takes it, from the
/// flag, else the `HASURA_GRAPHQL_*` environment variable, else the project's `.env` file,
/// else its `config.yaml`, else the default (see [`super::project`]).
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// URL of the server (pgdump-api or Hasura GraphQL Engine); without a scheme, http://
    /// [default: config.yaml's `endpoint`, else http://localhost:8080]
    #[arg(long, env = "HASURA_GRAPHQL_ENDPOINT", value_parser = parse_endpoint)]
    pub(crate) endpoint: Option<Url>,

    /// Admin secret, sent as `x-hasura-admin-secret` [default, as the Hasura CLI picks it:
    /// the first of HASURA_GRAPHQL_ADMIN_SECRETS / `admin_secrets`, else
    /// HASURA_GRAPHQL_ADMIN_SECRET / `admin_secret`, else `access_key`; from the environment,
    /// then .env, then config.yaml].
    #[arg(long, value_parser = parse_secret)]
    pub(crate) admin_secret: Option<Secret>,

    /// CA certificate file (PEM) to trust for an https:// endpoint, besides the system's
    /// roots [default: config.yaml's `certificate_authority`].
    #[arg(
        long,
        value_name = "FILE",
        env = "HASURA_GRAPHQL_CERTIFICATE_AUTHORITY"
    )]
    pub(crate) certificate_authority: Option<PathBuf>,

    /// Do not verify the server's TLS certificate (anyone on the path can then read the
    /// admin secret and the dump) [default: config.yaml's `insecure_skip_tls_verify`].
    #[arg(long, env = "HASURA_GRAPHQL_INSECURE_SKIP_TLS_VERIFY", num_args = 0..=1,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub(crate) insecure_skip_tls_verify: Option<bool>,

    /// Hasura project directory [default: the nearest one holding config.yaml, else the
    /// current directory].
    #[arg(long, value_name = "DIR")]
    pub(crate) project: Option<PathBuf>,

    /// Environment file, relative to the project directory; its variables fill in what the
    /// environment leaves unset [default: .env].
    #[arg(long, value_name = "FILE")]
    pub(crate) envfile: Option<PathBuf>,

    /// Extra request header (repeatable).
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,

    /// No progress line and no summary on stderr (there is no progress line either when
    /// stderr is not a terminal).
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

/// Examples of `dump`, for `--help`.
const DUMP_EXAMPLES: &str = "\
Examples:
  # The whole database, to a file that appears only once complete:
  pgdump-api dump -o db.sql --endpoint https://hasura.example.com --admin-secret \"$SECRET\"
  # The schema of one source, as replayable SQL, to stdout:
  pgdump-api dump --source reporting --clean -- --schema-only
  # Inside a Hasura project (endpoint and secret from config.yaml and .env):
  pgdump-api dump -o data.sql -- --data-only --table public.authors";

/// Examples of `migrate create`, for `--help`.
const MIGRATE_EXAMPLES: &str = "\
Examples:
  # Inside a Hasura project: migrations/default/TIMESTAMP_init/up.sql (config v3)
  pgdump-api migrate create init --from-server
  # Two schemas of another database, against a given server:
  pgdump-api migrate create init --from-server --schema public,Sales --database-name reporting \\
      --endpoint https://hasura.example.com --admin-secret \"$SECRET\"";

/// Examples of `seed create`, for `--help`.
const SEED_EXAMPLES: &str = "\
Examples:
  # Inside a Hasura project: seeds/default/TIMESTAMP_authors.sql (config v3)
  pgdump-api seed create authors --from-table authors
  # Several tables, one of them in a schema with upper case:
  pgdump-api seed create data --from-table authors Sales.Orders --database-name reporting";

/// `pgdump-api dump`.
#[derive(Debug, Args)]
#[command(after_help = format!("{EXIT_HELP}\n\n{DUMP_EXAMPLES}"))]
pub struct DumpArgs {
    /// Database to dump, by its source name on the server [default: the server's `default`].
    #[arg(long, value_name = "NAME")]
    pub(crate) source: Option<String>,

    /// Ask for `clean_output`, SQL that a client other than psql can replay (pg_dump's own
    /// --clean goes after `--`)
    #[arg(long)]
    pub(crate) clean: bool,

    /// Write the dump to FILE, atomically: it appears only once complete [default: stdout].
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) connect: ConnectArgs,

    /// pg_dump options, after `--` (e.g. `-- --schema-only -n public`).
    #[arg(last = true, value_name = "PG_DUMP_OPTS")]
    pub(crate) pg_dump_opts: Vec<String>,
}

/// `pgdump-api migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub(crate) command: MigrateCommand,
}

/// The subcommands of `pgdump-api migrate`.
#[derive(Debug, Subcommand)]
pub(crate) enum MigrateCommand {
    /// Create a Hasura migration (`migrations/DB/TIMESTAMP_NAME/up.sql`; config v2:
    /// `migrations/TIMESTAMP_NAME/up.sql`) from the server's schema.
    // The name first: clap's own usage line (`--from-server <NAME>`) reads as if the switch
    // took the name as its value.
    #[command(
        override_usage = "pgdump-api migrate create <NAME> --from-server [OPTIONS]",
        after_help = format!("{NAMES_HELP}\n\n{EXIT_HELP}\n\n{MIGRATE_EXAMPLES}")
    )]
    Create(MigrateCreateArgs),
}

/// `pgdump-api migrate create`.
#[derive(Debug, Args)]
pub(crate) struct MigrateCreateArgs {
    /// Name of the migration; its directory is `TIMESTAMP_NAME`.
    #[arg(value_parser = parse_file_name)]
    pub(crate) name: String,

    /// Take the schema from the server (required: the one kind of migration made here).
    #[arg(long, required = true)]
    pub(crate) from_server: bool,

    /// Schemas to include, comma-separated (repeatable) [default: public].
    #[arg(long = "schema", value_name = "SCHEMA,…", value_parser = parse_schemas)]
    pub(crate) schemas: Vec<Vec<SchemaName>>,

    /// Database (source) name: on the server, and in the migrations directory.
    #[arg(long, value_name = "NAME", default_value = "default", value_parser = parse_file_name)]
    pub(crate) database_name: String,

    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// `pgdump-api seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(subcommand)]
    pub(crate) command: SeedCommand,
}

/// The subcommands of `pgdump-api seed`.
#[derive(Debug, Subcommand)]
pub(crate) enum SeedCommand {
    /// Create a Hasura seed file (`seeds/DB/TIMESTAMP_NAME.sql`; config v2:
    /// `seeds/TIMESTAMP_NAME.sql`) from tables' rows.
    // The name first: after `--from-table`, which takes several values, it would be a table.
    #[command(
        override_usage = "pgdump-api seed create <NAME> --from-table <TABLE>... [OPTIONS]",
        after_help = format!("{NAMES_HELP}\n\n{EXIT_HELP}\n\n{SEED_EXAMPLES}")
    )]
    Create(SeedCreateArgs),
}

/// `pgdump-api seed create`.
#[derive(Debug, Args)]
pub(crate) struct SeedCreateArgs {
    /// Name of the seed; its file is `TIMESTAMP_NAME.sql`.
    #[arg(value_parser = parse_file_name)]
    pub(crate) name: String,

    /// Table whose rows to take (repeatable, or several after one flag).
    #[arg(long = "from-table", value_name = "TABLE", required = true, num_args = 1..,
          value_parser = parse_table)]
    pub(crate) tables: Vec<TableName>,

    /// Database (source) name: on the server, and in the seeds directory.
    #[arg(long, value_name = "NAME", default_value = "default", value_parser = parse_file_name)]
    pub(crate) database_name: String,

    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

fn parse_secret(input: &str) -> Result<Secret, String> {
    Ok(Secret::new(input))
}

fn parse_schemas(input: &str) -> Result<Vec<SchemaName>, String> {
    SchemaName::parse_list(input)
        .map_err(|err| format!("{err} (see --help for how names are written)"))
}

fn parse_table(input: &str) -> Result<TableName, String> {
    TableName::parse(input).map_err(|err| format!("{err} (see --help for how names are written)"))
}

/// A name that becomes one path component.
fn parse_file_name(input: &str) -> Result<String, String> {
    if input.is_empty() || input == "." || input == ".." || input.contains(['/', '\0']) {
        return Err("expected a name that can be a file name (no `/`)".to_owned());
    }
    Ok(input.to_owned())
}

/// Reads `Name: value` into a header.
pub(crate) fn parse_header(input: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = input
        .split_once(':')
        .ok_or_else(|| format!("expected 'Name: value', got {input:?}"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("invalid header name {:?}", name.trim()))?;
    let mut value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("invalid value for header {name}"))?;
    // It may be a credential (Authorization, a cookie): keep it out of Debug output.
    value.set_sensitive(true);
    Ok((name, value))
}

/// Reads an `http://` or `https://` URL; without a scheme (`127.0.0.1:8080`), http://.
pub(crate) fn parse_endpoint(input: &str) -> Result<Url, String> {
    let input = input.trim();
    let url = match input.contains("://") {
        true => Url::parse(input),
        false => Url::parse(&format!("http://{input}")),
    }
    .map_err(|err| format!("{err}"))?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(url),
        _ => Err("expected an http:// or https:// URL".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_urls() {
        assert!(parse_endpoint("http://localhost:8080").is_ok());
        assert!(parse_endpoint("ftp://h").is_err());
        assert!(parse_endpoint("http://").is_err());
    }

    #[test]
    fn an_endpoint_without_a_scheme_is_http() {
        for (input, url) in [
            ("localhost:8080", "http://localhost:8080/"),
            ("127.0.0.1:8080", "http://127.0.0.1:8080/"),
            ("h.example/hasura", "http://h.example/hasura"),
        ] {
            assert_eq!(parse_endpoint(input).unwrap().as_str(), url, "{input}");
        }
    }

    #[test]
    fn headers_are_name_colon_value() {
        let (name, value) = parse_header("X-Hasura-Role: admin").unwrap();
        assert_eq!(name, "x-hasura-role");
        assert_eq!(value, "admin");
        let (_, value) = parse_header("Authorization:Bearer a:b").unwrap();
        assert_eq!(value, "Bearer a:b");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }
}
