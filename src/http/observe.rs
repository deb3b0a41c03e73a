//! Request ids and the request log. Every response carries `x-request-id` (the caller's, or
//! a new UUIDv4), and every request writes one `http-log` line when its response ends —
//! completely or not — so that a streamed dump is logged with its real size and duration.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

use serde_json::{json, Value};

use super::cutoff::{Cut, Reason};
use super::dump::{DumpAudit, RequestReadTime};
use super::error::ErrorSummary;
use crate::front::PassedThrough;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Middleware: assigns the request id and wraps the response body to log it at its end.
pub(super) async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|id| !id.is_empty())
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .expect("a UUID is a valid header value")
        });
    request.headers_mut().insert(REQUEST_ID, request_id.clone());
    // Logs on drop: if the client leaves before the response exists, this future is dropped
    // and the request is still logged, once.
    let mut pending = Entry {
        request_id: String::from_utf8_lossy(request_id.as_bytes()).into_owned(),
        method: request.method().to_string(),
        http_version: format!("{:?}", request.version()),
        url: request.uri().path().to_owned(),
        ip: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip().to_string()),
        status: None,
        error: None,
        started: Some(started),
        response_ms: None,
        bytes: 0,
        ended: false,
        body_error: None,
        cut: request.extensions().get::<Cut>().cloned(),
        audit: None,
        content_encoding: None,
        read_time: None,
    };
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID, request_id);
    if response.extensions().get::<PassedThrough>().is_some() {
        // Hasura writes the http-log line of what it answered; a second one here would count
        // the request twice in pipelines built for Hasura's logs.
        tracing::debug!(target: "server", request_id = %pending.request_id,
            method = %pending.method, url = %pending.url, status = response.status().as_u16(),
            "passed through to the upstream");
        pending.started = None;
        return response;
    }
    pending.status = Some(response.status().as_u16());
    pending.error = response.extensions().get::<ErrorSummary>().cloned();
    pending.audit = response.extensions().get::<DumpAudit>().cloned();
    pending.read_time = response
        .extensions()
        .get::<RequestReadTime>()
        .map(|read| read.0);
    pending.content_encoding = response
        .headers()
        .get(axum::http::header::CONTENT_ENCODING)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    pending.response_ms = Some(millis(started));
    let entry = pending.take();
    response.map(|inner| Body::new(LoggedBody { inner, entry }))
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// What one http-log line says; written when the entry is dropped.
#[derive(Default)]
struct Entry {
    request_id: String,
    method: String,
    http_version: String,
    url: String,
    ip: Option<String>,
    /// `None` while no response exists (the client left before it did).
    status: Option<u16>,
    error: Option<ErrorSummary>,
    started: Option<Instant>,
    response_ms: Option<f64>,
    bytes: u64,
    ended: bool,
    body_error: Option<String>,
    /// The connection's handle: why a response that did not end was cut off.
    cut: Option<Cut>,
    /// A dump's audit record.
    audit: Option<DumpAudit>,
    content_encoding: Option<String>,
    /// How long reading the body took, when it was read.
    read_time: Option<std::time::Duration>,
}

impl Entry {
    /// Moves the entry out, leaving one that logs nothing.
    fn take(&mut self) -> Entry {
        std::mem::take(self)
    }

    /// Hasura's `detail.operation`: the request id, sizes, times, and the error if any.
    fn operation(&self, duration_ms: f64, error: Option<&str>) -> Value {
        // Hasura's times are seconds: reading the request, and the service time after it.
        let read_s = self.read_time.map(|read| read.as_secs_f64());
        // Hasura leaves out what it does not know (`request_read_time` when no body was
        // read, `error` on success).
        let mut operation = json!({
            "request_id": self.request_id,
            "response_size": self.bytes,
            "uncompressed_response_size": self.audit.as_ref()
                .map_or(self.bytes, |audit| audit.progress.uncompressed.load(Ordering::Relaxed)),
            "query_execution_time": (duration_ms / 1000.0 - read_s.unwrap_or(0.0)).max(0.0),
            "request_mode": if self.error.is_some() { "error" } else { "non-graphql" },
        });
        if let Some(read_s) = read_s {
            operation["request_read_time"] = read_s.into();
        }
        if let Some(audit) = &self.audit {
            operation["user_vars"] = json!({ "x-hasura-role": audit.role });
        }
        match (&self.error, error) {
            // The error body, as Hasura logs its QErr.
            (Some(err), _) => {
                let mut qerr = json!({ "path": err.path, "error": err.message, "code": err.code });
                if let Some(internal) = &err.internal {
                    qerr["internal"] = internal.as_str().into();
                }
                operation["error"] = qerr;
            }
            // A response that did not end: no body says why, the log does.
            (None, Some(error)) => operation["error"] = json!({ "error": error }),
            (None, None) => {}
        }
        operation
    }

    /// Ours, under a name Hasura does not use: a dump's audit record (`null` for other
    /// requests).
    fn dump_record(&self, complete: bool, send_timed_out: bool) -> Value {
        let Some(audit) = &self.audit else {
            return Value::Null;
        };
        let outcome = match *audit
            .progress
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            Some("complete") if !complete => "client_gone",
            Some(outcome) => outcome,
            None if send_timed_out => "send_timeout",
            None => "client_gone",
        };
        json!({
            "source": audit.source,
            "opts": audit.opts,
            "clean_output": audit.clean_output,
            "role": audit.role,
            "auth": audit.auth,
            "pg_dump_version": audit.pg_dump,
            "uncompressed_bytes": audit.progress.uncompressed.load(Ordering::Relaxed),
            "wire_bytes": self.bytes,
            "completed": complete,
            "outcome": outcome,
        })
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let Some(started) = self.started else {
            return;
        };
        let mut send_timeout = None;
        if !self.ended && self.body_error.is_none() {
            match self.cut.as_ref().and_then(Cut::reason) {
                // The dump failed while its client was not reading: as if it had been.
                Some(Reason::Stopped(message)) => self.body_error = Some(message.clone()),
                Some(reason @ Reason::SendTimeout(_)) => send_timeout = Some(reason.to_string()),
                None => {}
            }
        }
        let complete = self.status.is_some() && self.ended && self.body_error.is_none();
        let duration_ms = millis(started);
        let (code, error, internal) = match &self.error {
            Some(err) => (
                Some(err.code),
                Some(err.message.as_str()),
                err.internal.as_deref(),
            ),
            None if self.status.is_none() => (
                None,
                Some("client closed the connection before the response"),
                None,
            ),
            None => (
                None,
                self.body_error.as_deref().or(send_timeout.as_deref()),
                None,
            ),
        };
        // Hasura's shape, which log pipelines built for Hasura read.
        let http_info = json!({
            "status": self.status,
            "method": self.method,
            "ip": self.ip,
            "url": self.url,
            "http_version": self.http_version,
            "content_encoding": self.content_encoding,
        });
        let operation = self.operation(duration_ms, error);
        let dump = self.dump_record(complete, send_timeout.is_some());
        macro_rules! http_log {
            ($level:ident) => {
                tracing::$level!(
                    target: "http-log",
                    http_info = %http_info,
                    operation = %operation,
                    dump = %dump,
                    request_id = %self.request_id,
                    status = self.status,
                    method = %self.method,
                    url = %self.url,
                    ip = self.ip.as_deref(),
                    bytes = self.bytes,
                    response_ms = self.response_ms,
                    duration_ms,
                    complete,
                    code,
                    error,
                    internal,
                )
            };
        }
        if self.status.is_some_and(|status| status >= 500) || self.body_error.is_some() {
            http_log!(error);
        } else if !complete || self.status == Some(401) {
            http_log!(warn);
        } else {
            http_log!(info);
        }
    }
}

/// A response body that counts what it sends; its entry logs when the body is dropped.
struct LoggedBody {
    inner: Body,
    entry: Entry,
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.entry.bytes += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(err))) => self.entry.body_error = Some(err.to_string()),
            Poll::Ready(None) => self.entry.ended = true,
            Poll::Pending => {}
        }
        if self.inner.is_end_stream() {
            self.entry.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
