//! The databases that can be dumped, by name: `default` from `HASURA_GRAPHQL_DATABASE_URL`,
//! and more from a sources file in the formats Hasura users already have — an exported
//! metadata document (JSON or YAML, with `sources[]`, optionally wrapped as
//! `{"metadata": …}`) or a metadata directory's `databases/databases.yaml` (a list).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::conninfo::ConnInfo;
use crate::secret::Secret;

/// The name of the source dumped when a request names none.
pub(crate) const DEFAULT: &str = "default";

/// One database that can be dumped.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub name: String,
    pub conn: ConnInfo,
}

/// A configured source: a PostgreSQL database, or a source of another kind.
#[derive(Debug, Clone)]
enum Entry {
    Postgres(Source),
    Other { kind: String },
}

/// Why a source cannot be dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unavailable {
    NotFound,
    /// Configured, but not a PostgreSQL source (`mssql`, `bigquery`, …).
    NotPostgres {
        kind: String,
    },
}

/// Every configured source, by name.
#[derive(Debug, Clone, Default)]
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
                let conn = ConnInfo::parse(url.expose())
                    .context("invalid --database-url / HASURA_GRAPHQL_DATABASE_URL")?;
                sources.insert(DEFAULT, conn);
            }
        }
        Ok(sources)
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

    /// Parses a sources document (JSON or YAML).
    pub(crate) fn from_document(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Sources> {
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
                _ => bail!("expected a list of sources, or metadata with a \"sources\" list"),
            },
            _ => bail!("expected a list of sources, or metadata with a \"sources\" list"),
        };
        let mut sources = Sources::default();
        for (index, source) in list.iter().enumerate() {
            let name = source
                .get("name")
                .and_then(Value::as_str)
                .filter(|name| !name.is_empty())
                .with_context(|| format!("source #{} has no \"name\"", index + 1))?;
            if sources.0.contains_key(name) {
                bail!("source {name:?} is defined twice");
            }
            let kind = source
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("postgres");
            if kind != "postgres" {
                sources.0.insert(
                    name.to_owned(),
                    Entry::Other {
                        kind: kind.to_owned(),
                    },
                );
                continue;
            }
            let conn = connection(source, &env).with_context(|| format!("source {name:?}"))?;
            sources.insert(name, conn);
        }
        Ok(sources)
    }

    /// Adds (or replaces) a PostgreSQL source.
    pub(crate) fn insert(&mut self, name: &str, conn: ConnInfo) {
        let source = Source {
            name: name.to_owned(),
            conn,
        };
        self.0.insert(name.to_owned(), Entry::Postgres(source));
    }

    /// The PostgreSQL source called `name`.
    pub(crate) fn get(&self, name: &str) -> Result<&Source, Unavailable> {
        match self.0.get(name) {
            Some(Entry::Postgres(source)) => Ok(source),
            Some(Entry::Other { kind }) => Err(Unavailable::NotPostgres { kind: kind.clone() }),
            None => Err(Unavailable::NotFound),
        }
    }

    /// Every PostgreSQL source.
    pub(crate) fn postgres(&self) -> impl Iterator<Item = &Source> {
        self.0.values().filter_map(|entry| match entry {
            Entry::Postgres(source) => Some(source),
            Entry::Other { .. } => None,
        })
    }

    /// Every source by name: a PostgreSQL source, or the kind of another.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, Result<&Source, &str>)> {
        self.0.iter().map(|(name, entry)| match entry {
            Entry::Postgres(source) => (name.as_str(), Ok(source)),
            Entry::Other { kind } => (name.as_str(), Err(kind.as_str())),
        })
    }

    /// Whether no source is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `configuration.connection_info.database_url`: a string, `{from_env: VAR}`, or
/// `{connection_parameters: {host, port, username, password, database}}`.
fn connection(source: &Value, env: &impl Fn(&str) -> Option<String>) -> anyhow::Result<ConnInfo> {
    let url = source
        .pointer("/configuration/connection_info/database_url")
        .context("missing configuration.connection_info.database_url")?;
    if let Some(params) = url.get("connection_parameters") {
        let mut pairs = Vec::new();
        for (field, keyword) in [
            ("host", "host"),
            ("port", "port"),
            ("username", "user"),
            ("database", "dbname"),
        ] {
            if let Some(value) = params.get(field) {
                let value =
                    scalar(value, env).with_context(|| format!("connection_parameters.{field}"))?;
                pairs.push((keyword.to_owned(), value));
            }
        }
        let password = params
            .get("password")
            .map(|value| scalar(value, env))
            .transpose()
            .context("connection_parameters.password")?;
        return Ok(ConnInfo::from_params(pairs, password));
    }
    let url = scalar(url, env).context(
        "database_url must be a string, {from_env: VAR} or {connection_parameters: {...}}",
    )?;
    Ok(ConnInfo::parse(&url)?)
}

/// A string or number, or `{from_env: VAR}` resolved through `env`.
fn scalar(value: &Value, env: &impl Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Object(object) => {
            let var = object
                .get("from_env")
                .and_then(Value::as_str)
                .context("expected a string or {from_env: VAR}")?;
            env(var).with_context(|| format!("environment variable {var} is not set"))
        }
        _ => bail!("expected a string or {{from_env: VAR}}"),
    }
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
            ("{\"version\": 3}", "list of sources"),
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
