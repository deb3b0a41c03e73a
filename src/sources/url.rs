//! A source's `configuration.connection_info.database_url`, resolved as Hasura resolves it
//! (`resolveUrlConf`): a string (with `{{VAR}}` templates filled from the environment),
//! `{from_env: VAR}`, `{connection_parameters: {host, port, username, password, database}}`
//! or `{dynamic_from_file: PATH}`, the last read at dump time and only under
//! `HASURA_GRAPHQL_DYNAMIC_SECRETS_ALLOWED_PATH_PREFIX`. Nothing here ever puts a connection
//! string or a password into an error or a log line: [`Origin`] says where a URL came from
//! instead.

use std::fmt;
use std::path::{Path, PathBuf};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use crate::conninfo::ConnInfo;

/// The variable that allows `dynamic_from_file`, and under which directory.
pub(crate) const ALLOWED_PATH_PREFIX: &str = "HASURA_GRAPHQL_DYNAMIC_SECRETS_ALLOWED_PATH_PREFIX";

/// Where a source's connection string comes from: safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A string in the document, filled from these variables (`{{VAR}}`), if any.
    Text(Vec<String>),
    Env(String),
    Params,
    File(PathBuf),
    /// `--database-url` / `HASURA_GRAPHQL_DATABASE_URL`.
    DatabaseUrl,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Text(vars) if vars.is_empty() => f.write_str("database_url string"),
            Origin::Text(vars) => write!(f, "database_url template of {}", vars.join(", ")),
            Origin::Env(var) => write!(f, "from_env {var}"),
            Origin::Params => f.write_str("connection_parameters"),
            Origin::File(path) => write!(f, "dynamic_from_file {}", path.display()),
            Origin::DatabaseUrl => f.write_str("HASURA_GRAPHQL_DATABASE_URL"),
        }
    }
}

/// A connection string as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Url {
    Fixed(ConnInfo),
    /// Read from `path` before each dump; `prefix` is the allowed directory.
    FromFile {
        path: PathBuf,
        prefix: PathBuf,
    },
}

/// Why a source's URL cannot be had. Neither names a connection string or a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The configuration is malformed.
    Invalid(String),
    /// Well-formed, but what it refers to is missing (an environment variable, the allowed
    /// prefix).
    Unresolved(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Invalid(why) | Problem::Unresolved(why) => f.write_str(why),
        }
    }
}

impl Url {
    /// The connection, reading a `dynamic_from_file` file now.
    pub(crate) fn resolve(&self) -> Result<ConnInfo, String> {
        match self {
            Url::Fixed(conn) => Ok(conn.clone()),
            Url::FromFile { path, prefix } => read_dynamic(path, prefix),
        }
    }
}

/// The `database_url` of a source object, resolved through `env`.
pub(crate) fn database_url(
    source: &Value,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(Url, Origin), Problem> {
    let url = source
        .pointer("/configuration/connection_info/database_url")
        .ok_or_else(|| invalid("missing configuration.connection_info.database_url"))?;
    let object =
        match url {
            Value::String(text) => {
                let (text, vars) = fill_template(text, env)?;
                return Ok((fixed(&text)?, Origin::Text(vars)));
            }
            Value::Object(object) => object,
            _ => return Err(invalid(
                "database_url must be a string, {from_env: VAR}, {connection_parameters: {...}} \
                 or {dynamic_from_file: PATH}",
            )),
        };
    let forms = ["from_env", "connection_parameters", "dynamic_from_file"];
    let given: Vec<_> = forms
        .iter()
        .filter(|key| object.contains_key(**key))
        .collect();
    if given.len() != 1 {
        let which = if given.is_empty() {
            "Either"
        } else {
            "Only one of"
        };
        return Err(invalid(&format!(
            "database_url: {which} \"from_env\", \"connection_parameters\" or \"dynamic_from_file\" should be provided"
        )));
    }
    match *given[0] {
        "from_env" => {
            let var = object["from_env"]
                .as_str()
                .ok_or_else(|| invalid("database_url.from_env must be a string"))?;
            let text = env(var).ok_or_else(|| unset(var))?;
            Ok((fixed(&text)?, Origin::Env(var.to_owned())))
        }
        "connection_parameters" => Ok((
            params(&object["connection_parameters"], env)?,
            Origin::Params,
        )),
        _ => {
            let path = object["dynamic_from_file"]
                .as_str()
                .ok_or_else(|| invalid("database_url.dynamic_from_file must be a string"))?;
            let prefix = env(ALLOWED_PATH_PREFIX).filter(|prefix| !prefix.is_empty());
            let Some(prefix) = prefix else {
                return Err(Problem::Unresolved(format!(
                    "dynamic_from_file requires {ALLOWED_PATH_PREFIX} to be set and non-empty"
                )));
            };
            let url = Url::FromFile {
                path: path.into(),
                prefix: prefix.into(),
            };
            Ok((url, Origin::File(path.into())))
        }
    }
}

fn invalid(why: &str) -> Problem {
    Problem::Invalid(why.to_owned())
}

fn unset(var: &str) -> Problem {
    Problem::Unresolved(format!("environment variable {var} is not set"))
}

/// A connection string from the configuration or the environment.
fn fixed(text: &str) -> Result<Url, Problem> {
    ConnInfo::parse(text)
        .map(Url::Fixed)
        .map_err(|err| Problem::Invalid(err.to_string()))
}

/// Hasura's URL templates: each `{{VAR}}` is the variable's value; every missing variable is
/// named. An unclosed `{{` is text.
fn fill_template(
    text: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>), Problem> {
    let (mut out, mut vars, mut missing) = (String::new(), Vec::new(), Vec::new());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let var = &rest[start + 2..start + 2 + len];
        match env(var) {
            Some(value) => out.push_str(&value),
            None => missing.push(var.to_owned()),
        }
        vars.push(var.to_owned());
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    if !missing.is_empty() {
        return Err(Problem::Unresolved(format!(
            "environment variables not set: {}",
            missing.join(", ")
        )));
    }
    Ok((out, vars))
}

/// `{host, port, username, password, database}`; Hasura requires all but the password. Each
/// value may also be `{from_env: VAR}`.
fn params(params: &Value, env: &impl Fn(&str) -> Option<String>) -> Result<Url, Problem> {
    let mut pairs = Vec::new();
    for (field, keyword) in [
        ("host", "host"),
        ("port", "port"),
        ("username", "user"),
        ("database", "dbname"),
    ] {
        let value = params
            .get(field)
            .ok_or_else(|| invalid(&format!("connection_parameters.{field} is missing")))?;
        pairs.push((keyword.to_owned(), scalar(value, field, env)?));
    }
    let password = match params.get("password") {
        None | Some(Value::Null) => None,
        Some(value) => Some(scalar(value, "password", env)?),
    };
    Ok(Url::Fixed(ConnInfo::from_params(pairs, password)))
}

/// A string or number, or `{from_env: VAR}` resolved through `env`.
fn scalar(
    value: &Value,
    field: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, Problem> {
    let var = match value {
        Value::String(text) => return Ok(text.clone()),
        Value::Number(number) => return Ok(number.to_string()),
        Value::Object(object) => object.get("from_env").and_then(Value::as_str),
        _ => None,
    };
    let var = var.ok_or_else(|| {
        invalid(&format!(
            "connection_parameters.{field}: expected a string or {{from_env: VAR}}"
        ))
    })?;
    env(var).ok_or_else(|| unset(var))
}

/// Reads a `dynamic_from_file` connection string, as Hasura does before each connection:
/// the file must lie under the allowed prefix once both are canonical (here compared by whole
/// path components), its content is trimmed, and a URI's password is percent-encoded.
fn read_dynamic(path: &Path, prefix: &Path) -> Result<ConnInfo, String> {
    let shown = path.display();
    let prefix = std::fs::canonicalize(prefix)
        .map_err(|err| format!("{ALLOWED_PATH_PREFIX} {}: {err}", prefix.display()))?;
    let canonical =
        std::fs::canonicalize(path).map_err(|err| format!("dynamic_from_file {shown}: {err}"))?;
    if !canonical.starts_with(&prefix) {
        return Err(format!(
            "dynamic_from_file {shown}: when canonicalized, the path is not under the allowed \
             prefix set by {ALLOWED_PATH_PREFIX}"
        ));
    }
    read_file(&canonical).map_err(|err| format!("dynamic_from_file {shown}: {err}"))
}

/// Reads a connection string from a file as Hasura does for `dynamic_from_file` (and
/// `dynamic-from-file://` metadata URLs): trimmed, a URI's password percent-encoded. The
/// error names neither the content nor the path.
pub(crate) fn read_file(path: &Path) -> Result<ConnInfo, String> {
    let text = std::fs::read(path).map_err(|err| format!("could not read it: {err}"))?;
    let text = String::from_utf8_lossy(&text);
    ConnInfo::parse(&encode_password(text.trim())).map_err(|err| err.to_string())
}

/// What Hasura's `encodeURLPassword` keeps: the URI's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes the password of a URI (everything between the user name's `:` and the
/// last `@`), so that rotated passwords holding `@`, `/` or `:` work unencoded, as in Hasura.
fn encode_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match auth.split_once(':') {
        None => url.to_owned(),
        Some((user, password)) => {
            let password = utf8_percent_encode(password, UNRESERVED);
            format!("{scheme}://{user}:{password}@{host}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        match var {
            "PG_URL" => Some("postgres://u:pw@db:5432/app".to_owned()),
            "HOST" => Some("db.internal".to_owned()),
            "PW" => Some("s3cret".to_owned()),
            _ => None,
        }
    }

    fn resolve(url: Value) -> Result<(ConnInfo, Origin), Problem> {
        let source =
            serde_json::json!({"configuration": {"connection_info": {"database_url": url}}});
        let (url, origin) = database_url(&source, &env)?;
        Ok((url.resolve().unwrap(), origin))
    }

    #[test]
    fn every_form_hasura_accepts() {
        let (conn, origin) = resolve("postgres://a:pw@h/db".into()).unwrap();
        assert_eq!(
            (conn.public(), origin),
            ("postgres://a@h/db", Origin::Text(vec![]))
        );
        let (conn, origin) = resolve("postgres://a:{{PW}}@{{HOST}}/db".into()).unwrap();
        assert_eq!(conn.public(), "postgres://a@db.internal/db");
        assert_eq!(conn.password(), Some(&b"s3cret"[..]));
        assert_eq!(origin.to_string(), "database_url template of PW, HOST");
        let (conn, origin) = resolve(serde_json::json!({"from_env": "PG_URL"})).unwrap();
        assert_eq!(
            (conn.public(), origin.to_string()),
            ("postgres://u@db:5432/app", "from_env PG_URL".into())
        );
        let params = serde_json::json!({"connection_parameters": {
            "host": {"from_env": "HOST"}, "port": 5433, "username": "r", "password": "p w", "database": "d"}});
        let (conn, origin) = resolve(params).unwrap();
        assert_eq!(
            conn.public(),
            "host='db.internal' port='5433' user='r' dbname='d'"
        );
        assert_eq!(
            (conn.password(), origin),
            (Some(&b"p w"[..]), Origin::Params)
        );
    }

    #[test]
    fn problems_name_the_variable_never_the_url() {
        let unset = resolve(serde_json::json!({"from_env": "NOPE"})).unwrap_err();
        assert_eq!(
            unset,
            Problem::Unresolved("environment variable NOPE is not set".into())
        );
        let template = resolve("postgres://{{A}}:{{PW}}@{{B}}/db".into()).unwrap_err();
        assert_eq!(template.to_string(), "environment variables not set: A, B");
        let bad = resolve("postgres://u:Zq9@Wk4@h/db".into()).unwrap_err();
        assert!(
            matches!(&bad, Problem::Invalid(why) if !why.contains("Zq9")),
            "{bad:?}"
        );
        let both = resolve(serde_json::json!({"from_env": "PG_URL", "dynamic_from_file": "/x"}))
            .unwrap_err();
        assert!(both.to_string().contains("Only one of"), "{both}");
        let missing =
            resolve(serde_json::json!({"connection_parameters": {"host": "h"}})).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("connection_parameters.port is missing"),
            "{missing}"
        );
        let no_prefix = resolve(serde_json::json!({"dynamic_from_file": "/x"})).unwrap_err();
        assert!(
            matches!(&no_prefix, Problem::Unresolved(why) if why.contains(ALLOWED_PATH_PREFIX))
        );
    }

    #[test]
    fn dynamic_from_file_is_read_under_the_prefix_only() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("secrets");
        std::fs::create_dir(&allowed).unwrap();
        let file = allowed.join("db");
        std::fs::write(&file, "  postgres://u:p@ss/w:rd@h:5432/db\n").unwrap();
        let url = Url::FromFile {
            path: file.clone(),
            prefix: allowed.clone(),
        };
        let conn = url.resolve().unwrap();
        assert_eq!(conn.public(), "postgres://u@h:5432/db");
        assert_eq!(conn.password(), Some(&b"p@ss/w:rd"[..]));
        std::fs::write(dir.path().join("other"), "postgres://x@h/db").unwrap();
        let escape = Url::FromFile {
            path: allowed.join("../other"),
            prefix: allowed.clone(),
        };
        let err = escape.resolve().unwrap_err();
        assert!(err.contains("not under the allowed prefix"), "{err}");
        // A sibling directory that merely shares the prefix's name is not under it.
        let sibling = dir.path().join("secrets-other");
        std::fs::create_dir(&sibling).unwrap();
        std::fs::write(sibling.join("db"), "postgres://x@h/db").unwrap();
        let url = Url::FromFile {
            path: sibling.join("db"),
            prefix: allowed,
        };
        assert!(url.resolve().is_err());
    }
}
