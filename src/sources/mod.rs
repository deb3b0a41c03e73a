//! The databases that can be dumped, by name: `default` from `HASURA_GRAPHQL_DATABASE_URL`,
//! more from a sources file in the formats Hasura users already have — an exported
//! metadata document (JSON or YAML, with `sources[]`, optionally wrapped as
//! `{"metadata": …}`) or a metadata directory's `databases/databases.yaml` (a list) — and
//! from Hasura's own metadata database (see `crate::metadata`), which parses the same document.
//!
//! - `url`: a source's `database_url` in each form Hasura accepts, and where it came from;
//! - `live`: [`LiveSources`], the server's current set, replaced whole when the metadata
//!   changes.

mod live;
mod url;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::conninfo::ConnInfo;
use crate::secret::Secret;

pub(crate) use live::{LiveSources, RefreshRequest};
pub(crate) use url::{read_file, Origin, Problem, Url, ALLOWED_PATH_PREFIX};

/// The name of the source dumped when a request names none.
pub(crate) const DEFAULT: &str = "default";

/// The kinds that are PostgreSQL: Hasura's `postgres`, its short form `pg`, and `citus`.
const POSTGRES_KINDS: [&str; 3] = ["postgres", "pg", "citus"];

/// One database that can be dumped, its connection resolved.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub name: String,
    pub conn: ConnInfo,
}

/// How a source is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A PostgreSQL database.
    Postgres {
        kind: String,
        url: Url,
        origin: Origin,
    },
    /// A PostgreSQL source that cannot be used as configured (e.g. its environment variable
    /// is not set); `reason` names no secret.
    Unusable { kind: String, reason: String },
    /// A source of another kind (`mssql`, `bigquery`, …).
    Other { kind: String },
}

impl Entry {
    /// The source's kind, as configured.
    pub(crate) fn kind(&self) -> &str {
        match self {
            Entry::Postgres { kind, .. } | Entry::Unusable { kind, .. } | Entry::Other { kind } => {
                kind
            }
        }
    }
}

/// Why a source cannot be dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unavailable {
    NotFound,
    /// Configured, but not a PostgreSQL source (`mssql`, `bigquery`, …).
    NotPostgres {
        kind: String,
    },
    /// Configured, but its connection cannot be had; the reason names no secret.
    Unusable {
        reason: String,
    },
}

/// One source of a document: its name, and its entry or what is wrong with it.
pub(crate) type Parsed = (String, Result<Entry, (String, Problem)>);

/// Every configured source, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sources(BTreeMap<String, Entry>);

impl Sources {
    /// The sources of a configuration: those of `file`, if any, then `default` from the
    /// database URL unless the file has one. `env` looks up `{from_env: VAR}` references.
    pub(crate) fn load(
        file: Option<&Path>,
        database_url: Option<&Secret>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Sources> {
        let mut sources = match file {
            Some(path) => Sources::from_file(path, env)?,
            None => Sources::default(),
        };
        if let Some(url) = database_url {
            if !sources.0.contains_key(DEFAULT) {
                sources.insert_database_url(url)?;
            }
        }
        Ok(sources)
    }

    /// Adds `default` from `--database-url`.
    pub(crate) fn insert_database_url(&mut self, url: &Secret) -> anyhow::Result<()> {
        let conn = ConnInfo::parse(url.expose())
            .context("invalid --database-url / HASURA_GRAPHQL_DATABASE_URL")?;
        let entry = Entry::Postgres {
            kind: "postgres".to_owned(),
            url: Url::Fixed(conn),
            origin: Origin::DatabaseUrl,
        };
        self.0.insert(DEFAULT.to_owned(), entry);
        Ok(())
    }

    /// Reads a sources file.
    pub(crate) fn from_file(
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Sources> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read sources file {}", path.display()))?;
        Sources::from_document(&text, env)
            .with_context(|| format!("invalid sources file {}", path.display()))
    }

    /// Parses a sources document (JSON or YAML); any source that cannot be used is an error.
    pub(crate) fn from_document(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Sources> {
        let mut sources = Sources::default();
        for (name, entry) in parse_document(text, env)? {
            match entry {
                Ok(entry) => sources.0.insert(name, entry),
                Err((_, problem)) => bail!("source {name:?}: {problem}"),
            };
        }
        Ok(sources)
    }

    /// Adds (or replaces) a PostgreSQL source.
    #[cfg(test)]
    pub(crate) fn insert(&mut self, name: &str, conn: ConnInfo) {
        let entry = Entry::Postgres {
            kind: "postgres".to_owned(),
            url: Url::Fixed(conn),
            origin: Origin::Text(Vec::new()),
        };
        self.0.insert(name.to_owned(), entry);
    }

    /// Adds (or replaces) a source.
    pub(crate) fn set(&mut self, name: &str, entry: Entry) {
        self.0.insert(name.to_owned(), entry);
    }

    /// The source called `name`, as configured.
    pub(crate) fn entry(&self, name: &str) -> Option<&Entry> {
        self.0.get(name)
    }

    /// Every source, by name.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.0.iter().map(|(name, entry)| (name.as_str(), entry))
    }

    /// The PostgreSQL source called `name`, its connection resolved now (a
    /// `dynamic_from_file` file is read).
    pub(crate) fn get(&self, name: &str) -> Result<Source, Unavailable> {
        match self.0.get(name) {
            Some(Entry::Postgres { url, .. }) => match url.resolve() {
                Ok(conn) => Ok(Source {
                    name: name.to_owned(),
                    conn,
                }),
                Err(reason) => Err(Unavailable::Unusable { reason }),
            },
            Some(Entry::Unusable { reason, .. }) => Err(Unavailable::Unusable {
                reason: reason.clone(),
            }),
            Some(Entry::Other { kind }) => Err(Unavailable::NotPostgres { kind: kind.clone() }),
            None => Err(Unavailable::NotFound),
        }
    }

    /// The names of the PostgreSQL sources.
    pub(crate) fn postgres_names(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|(_, entry)| !matches!(entry, Entry::Other { .. }))
            .map(|(name, _)| name.as_str())
    }

    /// Every PostgreSQL source whose connection can be had now.
    pub(crate) fn postgres(&self) -> impl Iterator<Item = Source> + '_ {
        self.postgres_names().filter_map(|name| self.get(name).ok())
    }

    /// Whether no source is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The sources of a metadata document (JSON or YAML), in order. A document that is not one
/// (not JSON or YAML, no list of sources, a source without a name, a name twice) is an error;
/// a PostgreSQL source whose URL cannot be had is returned with its problem, prefixed by its
/// kind.
pub(crate) fn parse_document(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<Parsed>> {
    let document: Value = if text.trim_start().starts_with(['{', '[']) {
        serde_json::from_str(text).context("not valid JSON")?
    } else {
        serde_norway::from_str(text).context("not valid YAML")?
    };
    let metadata = match document.get("metadata") {
        Some(metadata) if metadata.is_object() => metadata,
        _ => &document,
    };
    let list = match metadata {
        Value::Array(list) => list,
        Value::Object(object) => match object.get("sources") {
            Some(Value::Array(list)) => list,
            // Hasura's empty metadata has no sources at all.
            None if object.contains_key("version") => return Ok(Vec::new()),
            _ => bail!("expected a list of sources, or metadata with a \"sources\" list"),
        },
        _ => bail!("expected a list of sources, or metadata with a \"sources\" list"),
    };
    let mut parsed: Vec<Parsed> = Vec::new();
    for (index, source) in list.iter().enumerate() {
        let name = source
            .get("name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .with_context(|| format!("source #{} has no \"name\"", index + 1))?;
        if parsed.iter().any(|(seen, _)| seen == name) {
            bail!("source {name:?} is defined twice");
        }
        let kind = source
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("postgres")
            .to_owned();
        let entry = if POSTGRES_KINDS.contains(&kind.as_str()) {
            match url::database_url(source, &env) {
                Ok((url, origin)) => Ok(Entry::Postgres { kind, url, origin }),
                Err(problem) => Err((kind, problem)),
            }
        } else {
            Ok(Entry::Other { kind })
        };
        parsed.push((name.to_owned(), entry));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        (var == "PG_URL").then(|| "postgres://u:pw@db:5432/app".to_owned())
    }

    const DATABASES_YAML: &str = r#"
- name: default
  kind: postgres
  configuration:
    connection_info:
      database_url:
        from_env: PG_URL
      isolation_level: read-committed
      pool_settings:
        connection_lifetime: 600
        idle_timeout: 180
        max_connections: 50
        retries: 1
      use_prepared_statements: true
  tables: "!include default/tables/tables.yaml"
- name: reporting
  kind: postgres
  configuration:
    connection_info:
      database_url:
        connection_parameters:
          host: reports.internal
          port: 5433
          username: reader
          password: s3cret
          database: reports
- name: warehouse
  kind: bigquery
  configuration:
    service_account:
      from_env: BIGQUERY_SA
"#;

    #[test]
    fn a_metadata_directory_databases_yaml() {
        let sources = Sources::from_document(DATABASES_YAML, env).unwrap();
        let default = sources.get("default").unwrap();
        assert_eq!(sources.entry("default").unwrap().kind(), "postgres");
        assert_eq!(default.conn.public(), "postgres://u@db:5432/app");
        assert_eq!(default.conn.password(), Some(&b"pw"[..]));
        let reporting = sources.get("reporting").unwrap();
        assert_eq!(
            reporting.conn.public(),
            "host='reports.internal' port='5433' user='reader' dbname='reports'"
        );
        assert_eq!(reporting.conn.password(), Some(&b"s3cret"[..]));
        assert_eq!(
            sources.get("warehouse").unwrap_err(),
            Unavailable::NotPostgres {
                kind: "bigquery".into()
            }
        );
        assert_eq!(sources.get("nope").unwrap_err(), Unavailable::NotFound);
    }

    #[test]
    fn an_exported_metadata_document() {
        let exported = r#"{"resource_version": 3, "metadata": {"version": 3, "sources": [
            {"name": "main", "kind": "postgres", "tables": [],
             "configuration": {"connection_info": {"database_url": "postgres://a@h/m"}}}]}}"#;
        let sources = Sources::from_document(exported, env).unwrap();
        assert_eq!(
            sources.get("main").unwrap().conn.public(),
            "postgres://a@h/m"
        );
        let bare = "version: 3\nsources:\n- name: x\n  kind: postgres\n  configuration:\n    connection_info:\n      database_url: postgres://b@h/x\n";
        assert!(Sources::from_document(bare, env).unwrap().get("x").is_ok());
    }

    #[test]
    fn the_database_url_adds_default_unless_the_file_has_it() {
        let url = Secret::new("postgres://other@h/db");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("databases.yaml");
        std::fs::write(&file, DATABASES_YAML).unwrap();
        let sources = Sources::load(Some(&file), Some(&url), env).unwrap();
        assert_eq!(
            sources.get("default").unwrap().conn.public(),
            "postgres://u@db:5432/app"
        );
        let sources = Sources::load(None, Some(&url), env).unwrap();
        assert_eq!(
            sources.get("default").unwrap().conn.public(),
            "postgres://other@h/db"
        );
    }

    #[test]
    fn pg_and_citus_are_postgres_and_empty_metadata_has_no_sources() {
        let doc = r#"{"version": 3, "sources": [
            {"name": "a", "kind": "pg", "configuration": {"connection_info": {"database_url": "postgres://a@h/a"}}},
            {"name": "c", "kind": "citus", "configuration": {"connection_info": {"database_url": "postgres://c@h/c"}}},
            {"name": "r", "kind": "cockroach", "configuration": {}}]}"#;
        let sources = Sources::from_document(doc, env).unwrap();
        assert!(sources.get("a").is_ok() && sources.get("c").is_ok());
        assert_eq!(
            sources.get("r").unwrap_err(),
            Unavailable::NotPostgres {
                kind: "cockroach".into()
            }
        );
        assert_eq!(sources.postgres_names().collect::<Vec<_>>(), ["a", "c"]);
        assert!(Sources::from_document(r#"{"version": 3}"#, env)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn errors_name_the_file_the_source_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("databases.yaml");
        std::fs::write(&file, DATABASES_YAML).unwrap();
        let err = Sources::from_file(&file, |_| None).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("databases.yaml"), "{text}");
        assert!(text.contains("\"default\""), "{text}");
        assert!(text.contains("PG_URL is not set"), "{text}");
        for (document, says) in [
            ("[{\"kind\": \"postgres\"}]", "no \"name\""),
            ("{\"version\": 3, \"sources\": {}}", "list of sources"),
            ("- name: a\n  kind: postgres\n", "database_url"),
            (
                "- name: a\n  configuration: {connection_info: {database_url: [1]}}\n",
                "database_url must be",
            ),
            ("{not json", "not valid JSON"),
        ] {
            let err = format!("{:#}", Sources::from_document(document, env).unwrap_err());
            assert!(err.contains(says), "{document}: {err}");
        }
    }
}
