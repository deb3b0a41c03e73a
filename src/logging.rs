//! Log lines in Hasura's shape, one JSON object per line on stdout:
//! `{"timestamp":…,"level":…,"type":…,"detail":{…}}`. `type` is the event's target when it
//! names a log type (`http-log`, `startup`, …) and `server` otherwise; `detail` holds the
//! event's fields. Callers never pass secrets, passwords or dump content as fields.

use std::fmt;
use std::io::Write;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::LogLevel;

/// Hasura's log types, which `HASURA_GRAPHQL_ENABLED_LOG_TYPES` turns on and off; the
/// types only pgdump-api writes (`server`, `pg-dump`) are always on.
const HASURA_TYPES: [&str; 8] = [
    "startup",
    "http-log",
    "webhook-log",
    "websocket-log",
    "query-log",
    "jwk-refresh-log",
    "livequery-poller-log",
    "action-handler-log",
];

/// Fields whose value is a JSON document, written as such (`detail.http_info`).
const JSON_FIELDS: [&str; 3] = ["http_info", "operation", "dump"];

/// Installs the JSON-lines logger for this process, writing the log types in `enabled`
/// (a comma list, as `HASURA_GRAPHQL_ENABLED_LOG_TYPES`).
pub(crate) fn init(level: LogLevel, enabled: &str) {
    let filter = match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    };
    let enabled: Vec<String> = enabled
        .split(',')
        .map(|kind| kind.trim().to_owned())
        .filter(|kind| !kind.is_empty())
        .collect();
    tracing_subscriber::registry()
        .with(JsonLines { enabled }.with_filter(filter))
        .init();
}

/// Whether lines of `log_type` are written.
fn is_enabled(enabled: &[String], log_type: &str) -> bool {
    !HASURA_TYPES.contains(&log_type) || enabled.iter().any(|kind| kind == log_type)
}

/// A fatal error, before or after the logger exists: one `startup` line at `error` level
/// on stdout, as Hasura writes its fatal startup errors.
pub(crate) fn fatal(message: &str) {
    let mut detail = Map::new();
    detail.insert("kind".into(), "fatal_error".into());
    detail.insert("info".into(), message.into());
    let mut line = format_line(&Level::ERROR, "startup", detail);
    line.push('\n');
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

/// Hasura's timestamp: `2024-05-01T12:00:00.123+0000` (UTC, milliseconds, `%z` offset).
fn timestamp(now: SystemTime) -> String {
    let rfc3339 = humantime::format_rfc3339_millis(now).to_string();
    match rfc3339.strip_suffix('Z') {
        Some(local) => format!("{local}+0000"),
        None => rfc3339,
    }
}

/// The log type of an event's target.
fn log_type(target: &str) -> &str {
    if target.contains("::") || target.is_empty() {
        "server"
    } else {
        target
    }
}

/// Formats one event as one line.
pub(crate) fn format_line(level: &Level, target: &str, detail: Map<String, Value>) -> String {
    let log_type = log_type(target);
    let line = serde_json::json!({
        "timestamp": timestamp(SystemTime::now()),
        "level": level.as_str().to_ascii_lowercase(),
        "type": log_type,
        "detail": detail,
    });
    line.to_string()
}

/// The layer that writes each event as a line.
struct JsonLines {
    enabled: Vec<String>,
}

impl<S: Subscriber> Layer<S> for JsonLines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        if !is_enabled(&self.enabled, log_type(metadata.target())) {
            return;
        }
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let mut line = format_line(metadata.level(), metadata.target(), fields.0);
        line.push('\n');
        // A closed stdout must not take the server down with it.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

/// Collects an event's fields; `None` options are left out.
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // Milliseconds to the microsecond are plenty.
        let rounded = (value * 1000.0).round() / 1000.0;
        self.0.insert(field.name().to_owned(), rounded.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        let value = match JSON_FIELDS.contains(&field.name()) {
            true => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            false => text.into(),
        };
        if !value.is_null() {
            self.0.insert(field.name().to_owned(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_hasuras_shape() {
        let mut detail = Map::new();
        detail.insert("status".into(), 200.into());
        let line = format_line(&Level::INFO, "http-log", detail);
        let value: Value = serde_json::from_str(&line).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["timestamp", "level", "type", "detail"]);
        assert_eq!(value["level"], "info");
        assert_eq!(value["type"], "http-log");
        assert_eq!(value["detail"]["status"], 200);
        let line = format_line(&Level::WARN, "pgdump_api::http", Map::new());
        assert!(line.contains(r#""type":"server""#), "{line}");
        // Hasura's format: milliseconds and a numeric offset.
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_714_564_800_123);
        assert_eq!(timestamp(time), "2024-05-01T12:00:00.123+0000");
    }

    #[test]
    fn enabled_log_types_filter_hasuras_types_only() {
        let enabled = vec!["startup".to_owned()];
        assert!(is_enabled(&enabled, "startup"));
        assert!(!is_enabled(&enabled, "http-log"));
        assert!(is_enabled(&enabled, "server"));
        assert!(is_enabled(&enabled, "pg-dump"));
    }
}
