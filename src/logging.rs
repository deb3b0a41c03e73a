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

/// Installs the JSON-lines logger for this process.
pub(crate) fn init(level: LogLevel) {
    let filter = match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    };
    tracing_subscriber::registry()
        .with(JsonLines.with_filter(filter))
        .init();
}

/// Formats one event as one line.
pub(crate) fn format_line(level: &Level, target: &str, detail: Map<String, Value>) -> String {
    let log_type = if target.contains("::") || target.is_empty() {
        "server"
    } else {
        target
    };
    let line = serde_json::json!({
        "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "level": level.as_str().to_ascii_lowercase(),
        "type": log_type,
        "detail": detail,
    });
    line.to_string()
}

/// The layer that writes each event as a line.
struct JsonLines;

impl<S: Subscriber> Layer<S> for JsonLines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
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
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
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
    }
}
