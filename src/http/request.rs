//! The pg_dump request body, read the way Hasura reads it: JSON (whatever the Content-Type),
//! `opts` required, `clean_output` and `source` optional, unknown keys ignored, the first of
//! duplicate keys wins, and shape errors reported with the JSON path of the first problem —
//! in the words of Hasura's parser (aeson), so that what a caller matches on stays the same.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use crate::sources;

/// A well-formed `POST /v1alpha1/pg_dump` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DumpRequest {
    pub opts: Vec<String>,
    pub clean_output: bool,
    pub source: String,
    /// Keys the server does not know (`clean_ouput`): ignored, as Hasura ignores them, but
    /// worth a warning.
    pub unknown: Vec<String>,
}

impl DumpRequest {
    /// Parses a request body: invalid JSON → `invalid-json`, wrong shape → `parse-failed`.
    pub(crate) fn parse(body: &[u8]) -> Result<DumpRequest, ApiError> {
        let top: TopLevel =
            serde_json::from_slice(body).map_err(|err| ApiError::InvalidJson(aeson(body, &err)))?;
        // Hasura's instances: `withObject "Object"`, `withArray "[]"` for the list,
        // `withText "String"` for its items and the source, `withBool "Bool"`.
        let fields = match top {
            TopLevel::Object(fields) => fields,
            TopLevel::Other(kind) => return Err(shape("$", expected("Object", "Object", kind))),
        };
        // Checked in the order Hasura's parser reads the fields.
        let source = match fields.source {
            None | Some(Value::Null) => sources::DEFAULT.to_owned(),
            Some(Value::String(name)) if name.is_empty() => {
                return Err(shape("$.source", "empty string not allowed".to_owned()))
            }
            Some(Value::String(name)) => name,
            Some(other) => {
                return Err(shape(
                    "$.source",
                    expected("String", "String", kind(&other)),
                ))
            }
        };
        let opts = match fields.opts {
            None => return Err(shape("$", "key \"opts\" not found".to_owned())),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(opt) => Ok(opt),
                    other => Err(shape(
                        &format!("$.opts[{i}]"),
                        expected("String", "String", kind(&other)),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(shape("$.opts", expected("[]", "Array", kind(&other)))),
        };
        let clean_output = match fields.clean_output {
            None | Some(Value::Null) => false,
            Some(Value::Bool(clean)) => clean,
            Some(other) => {
                return Err(shape(
                    "$.clean_output",
                    expected("Bool", "Boolean", kind(&other)),
                ))
            }
        };
        Ok(DumpRequest {
            opts,
            clean_output,
            source,
            unknown: fields.unknown,
        })
    }
}

fn shape(path: &str, message: String) -> ApiError {
    ApiError::ParseFailed {
        path: path.to_owned(),
        message,
    }
}

/// aeson's type mismatch inside a named parser (`withArray "[]"`).
fn expected(parser: &str, wanted: &str, found: &str) -> String {
    format!("parsing {parser} failed, expected {wanted}, but encountered {found}")
}

/// How much of the input aeson's "not a valid json value at '…'" quotes, at most.
const QUOTED: usize = 100;

/// A syntax error in the words of aeson's `eitherDecode'`, which Hasura returns: input that
/// ends too soon is `not enough input`, text after the value `endOfInput`, and something that
/// is no JSON value `Failed reading: not a valid json value at 'REST'` (the rest of the input
/// without whitespace); other mistakes keep serde_json's description, without its position.
fn aeson(body: &[u8], err: &serde_json::Error) -> String {
    let full = err.to_string();
    let what = full.split(" at line ").next().unwrap_or(&full);
    let message = match err.classify() {
        serde_json::error::Category::Eof => "not enough input".to_owned(),
        _ if what == "trailing characters" => "endOfInput".to_owned(),
        _ if what == "expected value" => {
            let at = offset(body, err.line(), err.column()).min(body.len());
            let rest: String = String::from_utf8_lossy(&body[at..])
                .chars()
                .filter(|c| !c.is_whitespace())
                .take(QUOTED)
                .collect();
            format!("Failed reading: not a valid json value at '{rest}'")
        }
        _ => format!("Failed reading: {what}"),
    };
    format!("Error in $: {message}")
}

/// The byte offset of serde_json's 1-based `line` and `column` (the offending byte).
fn offset(body: &[u8], line: usize, column: usize) -> usize {
    let line_start = match line {
        0 | 1 => 0,
        n => body
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(n - 2)
            .map_or(body.len(), |(at, _)| at + 1),
    };
    line_start + column.saturating_sub(1)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Object",
    }
}

/// The body's top-level value: an object's known fields (first occurrence kept), or the kind
/// of whatever else it was. Syntax errors stay serde_json errors.
enum TopLevel {
    Object(Box<Fields>),
    Other(&'static str),
}

#[derive(Default)]
struct Fields {
    opts: Option<Value>,
    clean_output: Option<Value>,
    source: Option<Value>,
    unknown: Vec<String>,
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

/// How many unknown keys are kept for the warning.
const MAX_UNKNOWN: usize = 8;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "opts" => &mut fields.opts,
                "clean_output" => &mut fields.clean_output,
                "source" => &mut fields.source,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    if fields.unknown.len() < MAX_UNKNOWN && !fields.unknown.contains(&key) {
                        fields.unknown.push(key);
                    }
                    continue;
                }
            };
            if slot.is_some() {
                map.next_value::<IgnoredAny>()?;
            } else {
                *slot = Some(map.next_value()?);
            }
        }
        Ok(TopLevel::Object(Box::new(fields)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TopLevel, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TopLevel::Other("Array"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel::Other("Boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other("Number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other("Number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other("Number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel::Other("String"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<TopLevel, E> {
        Ok(TopLevel::Other("Null"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<DumpRequest, (String, String, String)> {
        DumpRequest::parse(body.as_bytes()).map_err(|err| {
            let path = match &err {
                ApiError::ParseFailed { path, .. } => path.clone(),
                _ => "$".to_owned(),
            };
            (err.code().to_owned(), path, err.to_string())
        })
    }

    fn failed(path: &str, message: &str) -> Result<DumpRequest, (String, String, String)> {
        Err(("parse-failed".into(), path.into(), message.into()))
    }

    #[test]
    fn well_formed_bodies() {
        assert_eq!(
            parse(r#"{"opts":["-O","-x"],"clean_output":true,"source":"db2","extra":1}"#),
            Ok(DumpRequest {
                opts: vec!["-O".into(), "-x".into()],
                clean_output: true,
                source: "db2".into(),
                unknown: vec!["extra".into()],
            })
        );
        assert_eq!(
            parse(r#"{"opts":[],"clean_output":null,"source":null}"#),
            Ok(DumpRequest {
                opts: vec![],
                clean_output: false,
                source: "default".into(),
                unknown: vec![],
            })
        );
    }

    #[test]
    fn first_duplicate_key_wins() {
        let request = parse(r#"{"opts":["-s"],"opts":7,"source":"a","source":"b"}"#).unwrap();
        assert_eq!(request.opts, vec!["-s".to_owned()]);
        assert_eq!(request.source, "a");
    }

    #[test]
    fn shape_errors_name_the_path() {
        let cases = [
            (
                "[]",
                failed(
                    "$",
                    "parsing Object failed, expected Object, but encountered Array",
                ),
            ),
            (
                "\"x\"",
                failed(
                    "$",
                    "parsing Object failed, expected Object, but encountered String",
                ),
            ),
            ("{}", failed("$", "key \"opts\" not found")),
            (
                r#"{"opts":"-s"}"#,
                failed(
                    "$.opts",
                    "parsing [] failed, expected Array, but encountered String",
                ),
            ),
            (
                r#"{"opts":null}"#,
                failed(
                    "$.opts",
                    "parsing [] failed, expected Array, but encountered Null",
                ),
            ),
            (
                r#"{"opts":["-s",1]}"#,
                failed(
                    "$.opts[1]",
                    "parsing String failed, expected String, but encountered Number",
                ),
            ),
            (
                r#"{"opts":[],"clean_output":"yes"}"#,
                failed(
                    "$.clean_output",
                    "parsing Bool failed, expected Boolean, but encountered String",
                ),
            ),
            (
                r#"{"opts":[],"source":5}"#,
                failed(
                    "$.source",
                    "parsing String failed, expected String, but encountered Number",
                ),
            ),
            (
                r#"{"opts":[],"source":""}"#,
                failed("$.source", "empty string not allowed"),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse(body), expected, "{body}");
        }
    }

    /// The messages aeson gives for the same bodies (as Hasura and its users' tests see them).
    #[test]
    fn invalid_json_in_aesons_words() {
        for (body, message) in [
            ("", "Error in $: not enough input"),
            ("{", "Error in $: not enough input"),
            ("{\"opts\":[", "Error in $: not enough input"),
            ("{\"opts\":[]} x", "Error in $: endOfInput"),
            (
                "}{ x = 2",
                "Error in $: Failed reading: not a valid json value at '}{x=2'",
            ),
            (
                "BAAAAAD JSON",
                "Error in $: Failed reading: not a valid json value at 'BAAAAADJSON'",
            ),
            (
                "{\"opts\":\n  [x]}",
                "Error in $: Failed reading: not a valid json value at 'x]}'",
            ),
        ] {
            let (code, path, got) = parse(body).unwrap_err();
            assert_eq!(
                (code.as_str(), path.as_str(), got.as_str()),
                ("invalid-json", "$", message),
                "{body:?}"
            );
        }
        let long = "z".repeat(1000);
        let (_, _, got) = parse(&long).unwrap_err();
        assert!(got.len() < 200, "{got}");
        let (_, _, got) = parse("{\"opts\" 1}").unwrap_err();
        assert!(got.starts_with("Error in $: Failed reading: "), "{got}");
        assert!(!got.contains("line"), "{got}");
    }
}
