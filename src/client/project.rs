//! The Hasura project the client works in, read as the Hasura CLI reads it: `config.yaml`
//! (found in `--project` or the nearest directory up from here), a `.env` file beside it
//! (`--envfile`), and the precedence flag, then `HASURA_GRAPHQL_*` environment, then `.env`,
//! then `config.yaml`, then the default. The config version decides the layout: v3 keeps
//! migrations and seeds per database (`migrations/DB/…`), v2 has one database and no such
//! directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use reqwest::Url;
use serde::Deserialize;

use super::args::{parse_endpoint, ConnectArgs};
use crate::secret::Secret;

/// Where a request goes when nothing says otherwise.
const DEFAULT_ENDPOINT: &str = "http://localhost:8080";
/// The PG Dump API's path, as `api_paths.pg_dump` defaults in the Hasura CLI.
const DEFAULT_PG_DUMP_PATH: &str = "v1alpha1/pg_dump";
/// The metadata API's path, as `api_paths.v1_metadata` defaults in the Hasura CLI.
const DEFAULT_METADATA_PATH: &str = "v1/metadata";

/// `config.yaml`'s keys that matter here; the others are ignored.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    version: Option<serde_norway::Value>,
    endpoint: Option<String>,
    admin_secret: Option<String>,
    /// A JSON list in a string (`'["s1","s2"]'`), as the Hasura CLI reads it; a YAML list
    /// is taken too.
    admin_secrets: Option<serde_norway::Value>,
    access_key: Option<String>,
    #[serde(default)]
    api_paths: ApiPaths,
    migrations_directory: Option<String>,
    seeds_directory: Option<String>,
    certificate_authority: Option<String>,
    insecure_skip_tls_verify: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct ApiPaths {
    pg_dump: Option<String>,
    v1_metadata: Option<String>,
}

/// How migrations and seeds are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// Config v2: `migrations/TS_NAME/up.sql`, `seeds/TS_NAME.sql`.
    V2,
    /// Config v3: `migrations/DB/TS_NAME/up.sql`, `seeds/DB/TS_NAME.sql`.
    V3,
}

/// The connection and the project, every setting resolved.
#[derive(Debug)]
pub(super) struct Settings {
    /// The PG Dump API's URL: the endpoint with `api_paths.pg_dump` after its path.
    pub url: Url,
    /// Hasura's metadata API: the endpoint with `api_paths.v1_metadata` after its path.
    pub metadata_url: Url,
    /// Sent as `x-hasura-admin-secret`.
    pub admin_secret: Option<Secret>,
    pub certificate_authority: Option<PathBuf>,
    pub insecure_skip_tls_verify: bool,
    /// The layout, or why the project has none this client writes (only `migrate` and
    /// `seed` need one; `dump` works in any project).
    layout: Result<Layout, String>,
    pub migrations_dir: PathBuf,
    pub seeds_dir: PathBuf,
}

/// The project's `config.yaml`, `None` when there is none.
fn read_config(path: &Path) -> anyhow::Result<Option<ConfigFile>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            serde_norway::from_str::<Option<ConfigFile>>(&text)
                .with_context(|| format!("could not read {}", path.display()))?
                .unwrap_or_default(),
        )),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("could not read {}", path.display())),
    }
}

/// The project's env file (`envfile`, else `.env`). As the Hasura CLI: a missing `.env` is no
/// error, a missing named file is.
fn read_dotenv(dir: &Path, envfile: Option<&Path>) -> anyhow::Result<HashMap<String, String>> {
    let envfile = envfile.unwrap_or(Path::new(".env"));
    let path = dir.join(envfile);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(parse_dotenv(&text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && envfile == Path::new(".env") => {
            Ok(HashMap::new())
        }
        Err(err) => Err(err).with_context(|| format!("could not read {}", path.display())),
    }
}

impl Settings {
    /// Resolves `args` against the environment, the project's `.env` and its `config.yaml`.
    pub(super) fn resolve(args: &ConnectArgs) -> anyhow::Result<Settings> {
        let dir = project_dir(args.project.as_deref())?;
        let config_path = dir.join("config.yaml");
        let config = read_config(&config_path)?;
        let dotenv = read_dotenv(&dir, args.envfile.as_deref())?;
        let lookup = Lookup {
            dotenv: &dotenv,
            config: config.as_ref(),
        };
        let layout = layout(config.as_ref(), &config_path).map_err(|err| format!("{err:#}"));

        let endpoint = match &args.endpoint {
            Some(url) => url.clone(),
            None => {
                let (value, from) = lookup
                    .get(
                        "HASURA_GRAPHQL_ENDPOINT",
                        |c| c.endpoint.clone(),
                        "endpoint",
                    )
                    .unwrap_or_else(|| (DEFAULT_ENDPOINT.to_owned(), "the default".to_owned()));
                parse_endpoint(&value).map_err(|err| anyhow::anyhow!("invalid {from}: {err}"))?
            }
        };
        let pg_dump_path = lookup
            .get(
                "HASURA_GRAPHQL_API_PATHS_PG_DUMP",
                |c| c.api_paths.pg_dump.clone(),
                "api_paths.pg_dump",
            )
            .map_or_else(|| DEFAULT_PG_DUMP_PATH.to_owned(), |(value, _)| value);
        let metadata_path = lookup
            .get(
                "HASURA_GRAPHQL_API_PATHS_V1_METADATA",
                |c| c.api_paths.v1_metadata.clone(),
                "api_paths.v1_metadata",
            )
            .map_or_else(|| DEFAULT_METADATA_PATH.to_owned(), |(value, _)| value);
        let admin_secret = match &args.admin_secret {
            Some(secret) => Some(secret.clone()),
            None => admin_secret(&lookup)?,
        };
        let certificate_authority = match &args.certificate_authority {
            Some(path) => Some(path.clone()),
            None => lookup
                .get(
                    "HASURA_GRAPHQL_CERTIFICATE_AUTHORITY",
                    |c| c.certificate_authority.clone(),
                    "certificate_authority",
                )
                // A relative path in the project's files is relative to the project.
                .map(|(value, _)| dir.join(value)),
        };
        let insecure_skip_tls_verify = match args.insecure_skip_tls_verify {
            Some(skip) => skip,
            None => match lookup.get(
                "HASURA_GRAPHQL_INSECURE_SKIP_TLS_VERIFY",
                |c| c.insecure_skip_tls_verify.as_ref().map(yaml_scalar),
                "insecure_skip_tls_verify",
            ) {
                Some((value, from)) => parse_bool(&value)
                    .with_context(|| format!("invalid {from}: expected true or false"))?,
                None => false,
            },
        };
        // `migrations_directory` defaults to `migrations`, `seeds_directory` to `seeds`.
        let directory = |key: &str, field: fn(&ConfigFile) -> Option<String>, name: &str| {
            let default = name.trim_end_matches("_directory");
            let value = lookup.get(key, field, name);
            dir.join(value.map_or_else(|| default.to_owned(), |(value, _)| value))
        };
        Ok(Settings {
            url: api_url(&endpoint, &pg_dump_path),
            metadata_url: api_url(&endpoint, &metadata_path),
            admin_secret,
            certificate_authority,
            insecure_skip_tls_verify,
            layout,
            migrations_dir: directory(
                "HASURA_GRAPHQL_MIGRATIONS_DIRECTORY",
                |c| c.migrations_directory.clone(),
                "migrations_directory",
            ),
            seeds_dir: directory(
                "HASURA_GRAPHQL_SEEDS_DIRECTORY",
                |c| c.seeds_directory.clone(),
                "seeds_directory",
            ),
        })
    }

    /// How the project lays out migrations and seeds.
    pub(super) fn layout(&self) -> anyhow::Result<Layout> {
        self.layout.clone().map_err(anyhow::Error::msg)
    }

    /// The directory of a new migration of `database`.
    pub(super) fn migration_dir(&self, database: &str, name: &str) -> anyhow::Result<PathBuf> {
        Ok(self
            .per_database(&self.migrations_dir, database)?
            .join(name))
    }

    /// The directory of the seeds of `database`.
    pub(super) fn seeds_dir(&self, database: &str) -> anyhow::Result<PathBuf> {
        self.per_database(&self.seeds_dir, database)
    }

    fn per_database(&self, dir: &Path, database: &str) -> anyhow::Result<PathBuf> {
        Ok(match self.layout()? {
            Layout::V3 => dir.join(database),
            Layout::V2 => dir.to_owned(),
        })
    }
}

/// The environment, then `.env`, then a key of `config.yaml`: the value and where it was.
struct Lookup<'a> {
    dotenv: &'a HashMap<String, String>,
    config: Option<&'a ConfigFile>,
}

impl Lookup<'_> {
    fn get(
        &self,
        env_key: &str,
        field: impl Fn(&ConfigFile) -> Option<String>,
        config_key: &str,
    ) -> Option<(String, String)> {
        let nonempty = |value: &String| !value.is_empty();
        if let Some(value) = std::env::var(env_key).ok().filter(nonempty) {
            return Some((value, format!("{env_key} (environment)")));
        }
        if let Some(value) = self.dotenv.get(env_key).filter(|v| nonempty(v)) {
            return Some((value.clone(), format!("{env_key} (.env)")));
        }
        let value = field(self.config?).filter(nonempty)?;
        Some((value, format!("config.yaml's {config_key}")))
    }
}

/// The admin secret as the Hasura CLI picks it when no flag gives one: the first of
/// `admin_secrets` (`HASURA_GRAPHQL_ADMIN_SECRETS`, a JSON list), else `admin_secret`, else
/// the deprecated `access_key`; each from the environment, `.env` or `config.yaml`.
fn admin_secret(lookup: &Lookup<'_>) -> anyhow::Result<Option<Secret>> {
    let list = lookup.get(
        "HASURA_GRAPHQL_ADMIN_SECRETS",
        |c| match c.admin_secrets.as_ref()? {
            serde_norway::Value::String(text) => Some(text.clone()),
            other => serde_json::to_string(other).ok(),
        },
        "admin_secrets",
    );
    if let Some((list, from)) = list {
        let secrets: Vec<String> = serde_json::from_str(&list).map_err(|_| {
            anyhow::anyhow!("invalid {from}: expected a list like [\"secret1\", \"secret2\"]")
        })?;
        if let Some(first) = secrets.into_iter().next() {
            return Ok(Some(Secret::new(first)));
        }
    }
    let secret = lookup
        .get(
            "HASURA_GRAPHQL_ADMIN_SECRET",
            |c| c.admin_secret.clone(),
            "admin_secret",
        )
        .or_else(|| {
            lookup.get(
                "HASURA_GRAPHQL_ACCESS_KEY",
                |c| c.access_key.clone(),
                "access_key",
            )
        });
    Ok(secret.map(|(value, _)| Secret::new(value)))
}

/// The project's layout from `version`: 3 is v3, 2 is v2; config v1 (no version) is refused,
/// since its migrations are files this client does not write. Without a config.yaml: v3.
fn layout(config: Option<&ConfigFile>, path: &Path) -> anyhow::Result<Layout> {
    let Some(config) = config else {
        return Ok(Layout::V3);
    };
    let version = config.version.as_ref().map(yaml_scalar);
    match version.as_deref().map(str::trim) {
        Some("3") => Ok(Layout::V3),
        Some("2") => Ok(Layout::V2),
        None | Some("1") => bail!(
            "{} is a config v1 project (no `version: 2` or `version: 3`); upgrade it with \
             `hasura scripts update-project-v2` (or v3) first",
            path.display()
        ),
        Some(other) => bail!("{} has version {other:?}; expected 2 or 3", path.display()),
    }
}

/// A YAML scalar as text (`3`, `"3"`, `true`).
fn yaml_scalar(value: &serde_norway::Value) -> String {
    match value {
        serde_norway::Value::String(text) => text.clone(),
        serde_norway::Value::Number(number) => number.to_string(),
        serde_norway::Value::Bool(flag) => flag.to_string(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// A boolean as Go's strconv.ParseBool reads it (which the Hasura CLI uses).
fn parse_bool(value: &str) -> anyhow::Result<bool> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => bail!("{value:?} is not a boolean"),
    }
}

/// `ENDPOINT/PATH`, keeping any path prefix the endpoint has (`https://h/hasura`).
pub(super) fn api_url(endpoint: &Url, path: &str) -> Url {
    let mut url = endpoint.clone();
    let joined = format!(
        "{}/{}",
        url.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url.set_query(None);
    url
}

/// The Hasura project: `--project`, else the nearest directory up from here holding
/// `config.yaml` (as the Hasura CLI looks for it), else the current directory.
fn project_dir(project: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(project) = project {
        return Ok(project.to_owned());
    }
    let cwd = std::env::current_dir().context("could not read the current directory")?;
    Ok(cwd
        .ancestors()
        .find(|dir| dir.join("config.yaml").is_file())
        .unwrap_or(&cwd)
        .to_owned())
}

/// Reads a `.env` file as the Hasura CLI's dotenv library does, for what matters here:
/// `KEY=VALUE` (or `KEY: VALUE`) lines, an optional `export `, `#` comments, values in single
/// quotes taken literally and in double quotes with `\n`, `\"` and `\\` escapes; an unquoted
/// value ends at ` #`. Variables in values are not expanded.
pub(super) fn parse_dotenv(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some(split) = line.find(['=', ':']) else {
            continue;
        };
        let (key, value) = (line[..split].trim(), line[split + 1..].trim());
        if key.is_empty() {
            continue;
        }
        vars.insert(key.to_owned(), dotenv_value(value));
    }
    vars
}

fn dotenv_value(value: &str) -> String {
    if let Some(rest) = value.strip_prefix('\'') {
        return rest
            .split_once('\'')
            .map_or(rest, |(inner, _)| inner)
            .to_owned();
    }
    if let Some(rest) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                },
                c => out.push(c),
            }
        }
        return out;
    }
    match value.find(" #") {
        Some(comment) => value[..comment].trim_end().to_owned(),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines() {
        let vars = parse_dotenv(
            "# comment\n\
             HASURA_GRAPHQL_ENDPOINT=http://h:8080\n\
             export HASURA_GRAPHQL_ADMIN_SECRET='s3 #cret'\n\
             QUOTED=\"a\\\"b\\nc\"\n\
             PLAIN=value # trailing comment\n\
             COLON: yes\n\
             \n\
             EMPTY=\n",
        );
        assert_eq!(vars["HASURA_GRAPHQL_ENDPOINT"], "http://h:8080");
        assert_eq!(vars["HASURA_GRAPHQL_ADMIN_SECRET"], "s3 #cret");
        assert_eq!(vars["QUOTED"], "a\"b\nc");
        assert_eq!(vars["PLAIN"], "value");
        assert_eq!(vars["COLON"], "yes");
        assert_eq!(vars["EMPTY"], "");
    }

    #[test]
    fn the_api_path_follows_the_endpoints_path() {
        for (endpoint, path, url) in [
            (
                "http://localhost:8080",
                "v1alpha1/pg_dump",
                "http://localhost:8080/v1alpha1/pg_dump",
            ),
            (
                "https://h.example/hasura/",
                "v1alpha1/pg_dump",
                "https://h.example/hasura/v1alpha1/pg_dump",
            ),
            ("http://h/x?y=1", "/custom/dump", "http://h/x/custom/dump"),
        ] {
            let endpoint = parse_endpoint(endpoint).unwrap();
            assert_eq!(api_url(&endpoint, path).as_str(), url);
        }
    }

    #[test]
    fn versions_choose_the_layout() {
        let config = |yaml: &str| serde_norway::from_str::<ConfigFile>(yaml).unwrap();
        let path = Path::new("config.yaml");
        assert_eq!(layout(None, path).unwrap(), Layout::V3);
        assert_eq!(
            layout(Some(&config("version: 3")), path).unwrap(),
            Layout::V3
        );
        assert_eq!(
            layout(Some(&config("version: \"2\"")), path).unwrap(),
            Layout::V2
        );
        let err = layout(Some(&config("endpoint: http://h")), path).unwrap_err();
        assert!(err.to_string().contains("config v1"), "{err}");
        assert!(layout(Some(&config("version: 4")), path).is_err());
    }

    #[test]
    fn booleans_read_as_go_reads_them() {
        assert!(parse_bool("true").unwrap());
        assert!(parse_bool("1").unwrap());
        assert!(!parse_bool("False").unwrap());
        assert!(parse_bool("yes").is_err());
    }
}
