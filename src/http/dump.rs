//! `POST /v1alpha1/pg_dump`: SPEC §2's steps in order — authenticate, read the body, parse,
//! admin check, source, options — then pg_dump's output as a streamed 200.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{self, header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::BytesMut;
use futures_util::{Stream, StreamExt};
use http_body_util::BodyExt;

use super::cutoff::{Cut, Reason};
use super::encoding::{self, Coding, Negotiated};
use super::error::ApiError;
use super::request::DumpRequest;
use super::state::AppState;
use crate::auth::ADMIN_ROLE;
use crate::metrics::Failure;
use crate::opts::{self, Format};
use crate::pg_dump::{DumpError, Hold, Output, Started, Stop, Version};
use crate::sources::Source;

/// The version of the pg_dump that wrote a response.
const PG_DUMP_VERSION: HeaderName = HeaderName::from_static("x-pg-dump-version");

/// Largest request body accepted.
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;

/// The handler: every failure becomes the one JSON error format.
pub(super) async fn pg_dump(
    State(state): State<Arc<AppState>>,
    http_version: http::Version,
    headers: HeaderMap,
    cut: Option<Extension<Cut>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Body,
) -> Response {
    // Authentication needs only the headers, so it comes first: an unauthenticated caller
    // never gets the server to read its body. Hyper skips a body that has already arrived
    // (keeping the connection) and closes the connection after the answer otherwise.
    let (role, method) = match super::authenticate(&state, &headers, peer).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let caller = Caller {
        role,
        auth: method.as_str(),
        request_id: headers
            .get("x-request-id")
            .map(|id| String::from_utf8_lossy(id.as_bytes()).into_owned())
            .unwrap_or_default(),
    };
    let reading = Instant::now();
    let read = read_body(&headers, body, state.config.request_header_timeout).await;
    let read_time = RequestReadTime(reading.elapsed());
    let body = match read {
        Ok(body) => body,
        Err(err) => return with(err.to_response(state.config.dev_mode), read_time),
    };
    let config = &state.config;
    let expose_internal =
        config.dev_mode || (caller.role == ADMIN_ROLE && config.admin_internal_errors);
    match dump(
        &state,
        &caller,
        &body,
        &headers,
        http_version,
        cut.map(|Extension(cut)| cut),
    )
    .await
    {
        Ok(response) => with(response, read_time),
        Err(err) => with(err.to_response(expose_internal), read_time),
    }
}

/// How long reading the request body took, for the log's `request_read_time`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestReadTime(pub Duration);

fn with(mut response: Response, read_time: RequestReadTime) -> Response {
    response.extensions_mut().insert(read_time);
    response
}

/// How much of an oversized body is read and dropped so that the client, still sending it,
/// gets to read the 413 instead of a broken pipe; past this the connection is simply closed.
const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;

/// Reads the whole body within `timeout`, refusing more than [`BODY_LIMIT`] bytes.
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit: BODY_LIMIT };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|len| len.to_str().ok()?.parse::<u64>().ok());
    // A client waiting for `100 Continue` has sent nothing yet: answer at once.
    let waits_to_send = headers
        .get(header::EXPECT)
        .is_some_and(|expect| expect.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if declared.is_some_and(|len| len > BODY_LIMIT as u64 && (waits_to_send || len > DRAIN_LIMIT)) {
        return Err(too_large);
    }
    let read = async {
        let mut body = body;
        let mut kept = BytesMut::new();
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| ApiError::BodyRead(err.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen += data.len() as u64;
            if seen <= BODY_LIMIT as u64 {
                kept.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
        match seen > BODY_LIMIT as u64 {
            true => Err(too_large),
            false => Ok(kept.freeze()),
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout))?
}

/// Who called, as the dump's log line records it.
struct Caller {
    role: String,
    /// How the caller was authenticated (a small, fixed word).
    auth: &'static str,
    request_id: String,
}

/// What a dump's http-log line records beyond Hasura's fields: an audit record. The
/// handler fills in what it knows before the output starts; the output stream adds its
/// uncompressed size and how it ended.
#[derive(Debug, Clone)]
pub(crate) struct DumpAudit {
    pub source: String,
    /// The options as pg_dump runs them (canonical form; a derived restrict key is not here).
    pub opts: Vec<String>,
    pub clean_output: bool,
    pub role: String,
    pub auth: &'static str,
    pub pg_dump: String,
    pub progress: Arc<AuditProgress>,
}

/// The part of the audit record that the output stream writes.
#[derive(Debug, Default)]
pub(crate) struct AuditProgress {
    pub uncompressed: AtomicU64,
    /// `complete`, or why not (the metrics' failure label), once known.
    pub outcome: Mutex<Option<&'static str>>,
}

/// Steps 4–8 for an authenticated caller; `cut` ends the connection.
async fn dump(
    state: &Arc<AppState>,
    caller: &Caller,
    body: &[u8],
    headers: &HeaderMap,
    http_version: http::Version,
    cut: Option<Cut>,
) -> Result<Response, ApiError> {
    let request = DumpRequest::parse(body)?;
    if !request.unknown.is_empty() {
        // Hasura ignores them too; a misspelt `clean_output` is worth saying, though.
        // Not an http-log line: pipelines read those by Hasura's shape.
        tracing::warn!(target: "server", request_id = %caller.request_id,
            unknown_keys = %request.unknown.join(", "),
            "the request body has keys the server does not know; they are ignored");
    }
    let role = caller.role.as_str();
    if role != ADMIN_ROLE {
        return Err(ApiError::NotAdmin);
    }
    // The source as configured now; a change of the metadata from here on does not touch
    // this dump.
    let source = state
        .sources
        .get(&request.source)
        .await
        .map_err(|why| ApiError::unavailable(&request.source, why))?;
    let source = &source;
    let options = opts::parse(&request.opts, request.clean_output)?;
    let accept = headers.get_all(header::ACCEPT_ENCODING);
    let negotiated = encoding::negotiate(accept.iter().map(HeaderValue::as_bytes))
        .map_err(|_| ApiError::NotAcceptable)?;

    // Recorded in the metrics when dropped, however the request ends (a client that leaves
    // the queue included).
    let mut attempt = Attempt::new(state, &source.name);
    let slot = take_slots(state, source, &mut attempt).await?;
    let started = state
        .dumper
        .start(source, &options.args, request.clean_output, slot)
        .await;
    let Started { pg_dump, output } = match started {
        Ok(started) => started,
        Err(err) => {
            attempt.failed(Failure::of(&err));
            return Err(err.into());
        }
    };
    state.metrics.ran(&source.name, &pg_dump.to_string());
    if let (Some(limit), Some(cut)) = (state.dumper.time_limit(), &cut) {
        cut_at_time_limit(&output, limit, cut.clone());
    }
    let audit = DumpAudit {
        source: source.name.clone(),
        opts: options.args.clone(),
        clean_output: request.clean_output,
        role: caller.role.clone(),
        auth: caller.auth,
        pg_dump: pg_dump.to_string(),
        progress: Arc::default(),
    };
    attempt.progress = Some(Arc::clone(&audit.progress));
    let output = Tracked {
        inner: output,
        attempt,
        cut,
    };
    let content_type = match options.format {
        Format::Plain if !options.compressed => "application/sql; charset=utf-8",
        _ => "application/octet-stream",
    };
    let (coding, body) = encoded(output, negotiated).await;
    let mut response = streamed(content_type, pg_dump, coding, body, http_version);
    response.extensions_mut().insert(audit);
    Ok(response)
}

/// The source's slot on this replica, then its slot across replicas (when that limit is on),
/// held together until pg_dump has exited, not merely until the response ends.
async fn take_slots(
    state: &AppState,
    source: &Source,
    attempt: &mut Attempt,
) -> Result<Hold, ApiError> {
    let slot = match state.limits.acquire(&source.name).await {
        Ok(slot) => slot,
        Err(busy) => {
            attempt.failed(Failure::Busy);
            return Err(ApiError::Busy {
                name: source.name.clone(),
                running: busy.running,
                queued: busy.queued,
            });
        }
    };
    let cluster_slot = match state.cluster.acquire(source).await {
        Ok(cluster_slot) => cluster_slot,
        Err(err) => {
            attempt.failed(err.failure());
            return Err(err.into());
        }
    };
    Ok(Arc::new((slot, cluster_slot)))
}

/// The dump's output in the coding negotiated for it: a small output (read to its end, or
/// to [`encoding::SMALL_ANSWER`] bytes, to tell) goes as it is unless identity was refused.
async fn encoded(mut output: Tracked, negotiated: Negotiated) -> (Option<Coding>, Body) {
    if negotiated.coding.is_none() {
        return (None, Body::from_stream(output));
    }
    let mut start = Vec::new();
    let mut len = 0;
    if !negotiated.identity_refused {
        while len < encoding::SMALL_ANSWER {
            match output.next().await {
                Some(Ok(chunk)) => {
                    len += chunk.len();
                    start.push(Ok(chunk));
                }
                Some(Err(err)) => {
                    start.push(Err(err));
                    break;
                }
                None => break,
            }
        }
    }
    let output = futures_util::stream::iter(start).chain(output);
    match negotiated.for_answer(len) {
        Some(coding) => (
            Some(coding),
            Body::from_stream(encoding::compress(coding, output)),
        ),
        None => (None, Body::from_stream(output)),
    }
}

/// The 200 whose body is the dump's output, written by pg_dump `pg_dump`, in `coding`.
fn streamed(
    content_type: &'static str,
    pg_dump: Version,
    coding: Option<Coding>,
    body: Body,
    http_version: http::Version,
) -> Response {
    let version =
        HeaderValue::from_str(&pg_dump.to_string()).expect("a version is a valid header value");
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (PG_DUMP_VERSION, version),
            // The answer depends on Accept-Encoding, whichever coding it has.
            (header::VARY, HeaderValue::from_static("accept-encoding")),
        ],
        body,
    )
        .into_response();
    if let Some(coding) = coding {
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
    }
    if http_version < http::Version::HTTP_11 {
        // Without chunked encoding the body ends when the connection closes, so an aborted
        // dump looks complete: say so, and make the end of the connection the end of the body.
        // (An HTTP/1.0 response version keeps hyper from adding `keep-alive` for a client
        // that asked for it.)
        *response.version_mut() = http::Version::HTTP_10;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(header::WARNING, HeaderValue::from_static(HTTP_10_WARNING));
    }
    response
}

/// The `Warning` of a dump sent over HTTP/1.0.
const HTTP_10_WARNING: &str = "199 pgdump-api \"HTTP/1.0 cannot mark a dump that fails midway: \
    the response ends when the connection closes, complete or not; use HTTP/1.1 to tell them apart\"";

/// One dump request from validation to the end of its output, as the metrics see it.
struct Attempt {
    state: Arc<AppState>,
    source: String,
    started: Instant,
    bytes: u64,
    /// `None` until the dump ended; still `None` when dropped means the client left.
    outcome: Option<Result<(), Failure>>,
    /// The audit record's part, once the output started.
    progress: Option<Arc<AuditProgress>>,
}

impl Attempt {
    fn new(state: &Arc<AppState>, source: &str) -> Attempt {
        state.metrics.started(source);
        Attempt {
            state: Arc::clone(state),
            source: source.to_owned(),
            started: Instant::now(),
            bytes: 0,
            outcome: None,
            progress: None,
        }
    }

    /// Records why the dump failed before its output started.
    fn failed(&mut self, why: Failure) {
        self.outcome = Some(Err(why));
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let metrics = &self.state.metrics;
        metrics.streamed(&self.source, self.bytes);
        let outcome = self.outcome.unwrap_or(Err(Failure::ClientGone));
        metrics.finished(&self.source, outcome, self.started.elapsed());
        if let Some(progress) = &self.progress {
            progress.uncompressed.store(self.bytes, Ordering::Relaxed);
            let label = outcome.map_or_else(Failure::label, |()| "complete");
            *progress
                .outcome
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(label);
        }
    }
}

/// When pg_dump was stopped by the time limit, ends the connection too: a client that stopped
/// reading would otherwise hold it until the send timeout, and its response would never end.
fn cut_at_time_limit(output: &Output, limit: Duration, cut: Cut) {
    let exited = output.exited();
    tokio::spawn(async move {
        if exited.await == Some(Stop::TimeLimit) {
            cut.cut(Reason::Stopped(DumpError::TimedOut { limit }.to_string()));
        }
    });
}

/// The output stream of a running dump: counts its bytes and records how the dump ended.
struct Tracked {
    inner: Output,
    attempt: Attempt,
    /// The connection's handle, to tell a send timeout from a client that left.
    cut: Option<Cut>,
}

impl Drop for Tracked {
    /// Dropped before its end: why.
    fn drop(&mut self) {
        if self.attempt.outcome.is_some() {
            return;
        }
        let send_timeout = matches!(
            self.cut.as_ref().and_then(Cut::reason),
            Some(Reason::SendTimeout(_))
        );
        self.attempt.outcome = Some(Err(match self.inner.stopped() {
            Some(Stop::TimeLimit) => Failure::Timeout,
            _ if send_timeout => Failure::SendTimeout,
            _ => Failure::ClientGone,
        }));
    }
}

impl Stream for Tracked {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        let attempt = &mut self.attempt;
        match polled {
            Poll::Ready(Some(Ok(chunk))) => {
                attempt.bytes += chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(err))) => {
                attempt.outcome = Some(Err(Failure::of_stream(&err)));
                // The body's edge: hyper aborts the response with this error.
                Poll::Ready(Some(Err(err.into())))
            }
            Poll::Ready(None) => {
                attempt.outcome.get_or_insert(Ok(()));
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
