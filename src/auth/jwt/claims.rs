//! Where Hasura's claims are in a token (`claims_namespace`, `claims_namespace_path`,
//! `claims_format`, `claims_map`), the JSON paths that name them, and reading them out.

use serde_json::{Map, Value};

use super::{invalid_claims, missing_claim, AuthError, ALLOWED_ROLES, DEFAULT_ROLE};

/// Where Hasura's claims are in the token.
#[derive(Debug)]
pub(super) enum Claims {
    Namespace {
        at: Namespace,
        stringified: bool,
    },
    /// `claims_map`: each claim from a JSON path of the token (with a default) or a value.
    Map(Vec<(String, MapEntry)>),
}

#[derive(Debug)]
pub(super) enum Namespace {
    Key(String),
    Path { text: String, path: Vec<Step> },
}

#[derive(Debug)]
pub(super) enum MapEntry {
    Path {
        path: Vec<Step>,
        default: Option<Value>,
    },
    Value(Value),
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// Parses a JSON path of keys and indices: `$.a.b`, `$['a.b'][0]`, `$["x"]`.
pub(super) fn json_path(text: &str) -> Result<Vec<Step>, String> {
    let mut rest = text
        .strip_prefix('$')
        .ok_or_else(|| format!("{text:?} does not start with $"))?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return Err(format!("empty key in {text:?}"));
            }
            steps.push(Step::Key(after[..end].to_owned()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("unclosed [ in {text:?}"))?;
            let inner = &after[..end];
            let quoted = ['\'', '"']
                .iter()
                .find_map(|quote| inner.strip_prefix(*quote)?.strip_suffix(*quote));
            match (quoted, inner.parse()) {
                (Some(key), _) => steps.push(Step::Key(key.to_owned())),
                (None, Ok(index)) => steps.push(Step::Index(index)),
                (None, Err(_)) => return Err(format!("invalid [{inner}] in {text:?}")),
            }
            rest = &after[end + 1..];
        } else {
            return Err(format!("unexpected {rest:?} in {text:?}"));
        }
    }
    Ok(steps)
}

/// The value at `path` in `value`.
pub(super) fn at<'a>(value: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, step| match step {
        Step::Key(key) => value.get(key),
        Step::Index(index) => value.get(index),
    })
}

pub(super) fn claims_map(map: &Map<String, Value>) -> Result<Vec<(String, MapEntry)>, String> {
    let mut entries = Vec::new();
    for (name, value) in map {
        let entry = match value {
            Value::Object(object) if object.contains_key("path") => {
                let Some(Value::String(path)) = object.get("path") else {
                    return Err(format!("claims_map {name:?}: \"path\" must be a string"));
                };
                MapEntry::Path {
                    path: json_path(path).map_err(|err| format!("claims_map {name:?}: {err}"))?,
                    default: object.get("default").cloned(),
                }
            }
            value => MapEntry::Value(value.clone()),
        };
        entries.push((name.to_ascii_lowercase(), entry));
    }
    for required in [ALLOWED_ROLES, DEFAULT_ROLE] {
        if !entries.iter().any(|(name, _)| name == required) {
            return Err(format!("claims_map must have {required:?}"));
        }
    }
    Ok(entries)
}

impl Claims {
    /// Hasura's claims (`x-hasura-*`, lower case) of verified `claims`.
    pub(super) fn hasura(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<Map<String, Value>, AuthError> {
        match self {
            Claims::Namespace {
                at: namespace,
                stringified,
            } => {
                let found = match namespace {
                    Namespace::Key(key) => claims.get(key),
                    Namespace::Path { path, .. } => path_in(claims, path),
                };
                let Some(found) = found else {
                    return Err(invalid_claims(match namespace {
                        Namespace::Key(key) => format!("claims key: '{key}' not found"),
                        Namespace::Path { text, .. } => {
                            format!("claims not found at claims_namespace_path: '{text}'")
                        }
                    }));
                };
                let object = match (stringified, found) {
                    (false, Value::Object(object)) => object.clone(),
                    (false, _) => {
                        return Err(invalid_claims(
                            "expecting a json object when claims_format is json",
                        ))
                    }
                    (true, Value::String(text)) => {
                        match serde_json::from_str::<Map<String, Value>>(text) {
                            Ok(object) => object,
                            Err(_) => {
                                let location = match namespace {
                                    Namespace::Key(key) => format!("claims_namespace {key}"),
                                    Namespace::Path { text, .. } => {
                                        format!("claims_namespace_path {text}")
                                    }
                                };
                                return Err(invalid_claims(format!(
                                    "expecting stringified json at: '{location}', but found: {text}"
                                )));
                            }
                        }
                    }
                    (true, _) => {
                        return Err(invalid_claims(
                            "expecting a string when claims_format is stringified_json",
                        ))
                    }
                };
                Ok(object
                    .into_iter()
                    .map(|(key, value)| (key.to_ascii_lowercase(), value))
                    .filter(|(key, _)| key.starts_with("x-hasura-"))
                    .collect())
            }
            Claims::Map(entries) => {
                let all = Value::Object(claims.clone());
                let mut hasura = Map::new();
                for (name, entry) in entries {
                    let value = match entry {
                        MapEntry::Value(value) => value.clone(),
                        MapEntry::Path { path, default } => {
                            match at(&all, path).cloned().or_else(|| default.clone()) {
                                Some(value) => value,
                                None if name == ALLOWED_ROLES || name == DEFAULT_ROLE => {
                                    return Err(missing_claim(name))
                                }
                                None => {
                                    return Err(invalid_claims(format!(
                                        "JWT claim from claims_map, \"{name}\" not found"
                                    )))
                                }
                            }
                        }
                    };
                    hasura.insert(name.clone(), value);
                }
                Ok(hasura)
            }
        }
    }
}

/// The value at `path` among `claims`.
pub(super) fn path_in<'a>(claims: &'a Map<String, Value>, path: &[Step]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let Step::Key(key) = first else {
        return None;
    };
    at(claims.get(key)?, rest)
}
