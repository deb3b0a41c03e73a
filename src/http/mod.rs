//! The HTTP side: routes ([`app`]), the server loop with its timeouts and graceful shutdown
//! ([`run`]), the request log and the one error type. Handlers only wire the pure parts
//! together.

mod browse;
mod conns;
mod cutoff;
mod dump;
mod encoding;
pub(crate) mod error;
mod observe;
mod page;
pub(crate) mod request;
mod state;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower_layer::Layer;

use crate::auth::{self, ADMIN_ROLE};
use crate::config::Api;
use crate::front;
use conns::{Conn, Connections, TrackBusy};
use error::ApiError;

pub(crate) use conns::{ConnHandle, TakenOver};
pub(crate) use state::AppState;

/// All routes. A disabled API's routes are absent, so they answer like unknown paths.
pub(crate) fn app(state: Arc<AppState>) -> Router {
    let front = state.front.is_some();
    let mut router = Router::new();
    router = match front {
        // In front mode the upstream's version is the one the Hasura CLI must read, and
        // health is both sides'.
        true => router
            .route("/healthz", only(get(front::healthz), "GET"))
            .route("/hasura/healthz", only(get(front::healthz), "GET")),
        false => router
            .route("/healthz", only(get(healthz), "GET"))
            // Hasura serves its health check under both paths.
            .route("/hasura/healthz", only(get(healthz), "GET"))
            .route("/v1/version", only(get(version), "GET")),
    };
    if state.config.enabled_apis.contains(Api::Pgdump) {
        router = router
            .route("/v1alpha1/pg_dump", only(post(dump::pg_dump), "POST"))
            .route(
                "/v1alpha1/pg_dump/sources",
                only(get(browse::sources), "GET"),
            )
            .route(
                "/v1alpha1/pg_dump/catalog",
                only(post(browse::catalog), "POST"),
            )
            .route("/pgdump", only(get(page::redirect), "GET"))
            .route("/pgdump/", only(get(page::index), "GET"))
            .route("/pgdump/page.js", only(get(page::script), "GET"))
            .route("/pgdump/page.css", only(get(page::style), "GET"));
    }
    if state.config.enabled_apis.contains(Api::Metrics) {
        router = router.route("/v1/metrics", only(get(metrics), "GET"));
    }
    let cors = axum::middleware::from_fn_with_state(
        Arc::new(state.config.cors.clone()),
        auth::cors::layer,
    );
    router = match front {
        // Every other request goes to the upstream, which answers CORS for it itself: ours
        // applies to our own routes only.
        true => router.route_layer(cors).fallback(front::forward),
        false => router.fallback(|| async { ApiError::NotFound }).layer(cors),
    };
    router
        .with_state(state)
        .layer(axum::middleware::from_fn(observe::observe))
}

/// A route that answers other methods with the JSON 405.
fn only(route: MethodRouter<Arc<AppState>>, allow: &'static str) -> MethodRouter<Arc<AppState>> {
    route.fallback(move || async move {
        let mut response = ApiError::MethodNotAllowed.into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        response
    })
}

/// Readiness: `OK` when this replica can serve dumps, else a 503 naming what it lacks.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.not_ready() {
        missing if missing.is_empty() => "OK".into_response(),
        missing => ApiError::NotReady(missing).into_response(),
    }
}

async fn version() -> Response {
    let body = serde_json::json!({
        "server_type": "pgdump-api",
        "version": concat!("v", env!("CARGO_PKG_VERSION")),
    });
    json_response(body.to_string())
}

fn json_response(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// For the admin-only endpoints other than the dump (which reads its body before it says
/// `access-denied`, as Hasura does): the caller must authenticate as admin.
async fn require_admin(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<(), Response> {
    match authenticate(state, headers, peer).await? {
        (role, _) if role == ADMIN_ROLE => Ok(()),
        _ => Err(ApiError::NotAdmin.to_response(state.config.dev_mode)),
    }
}

/// The caller's role and how it was learnt, or the answer that refuses it: the configured auth
/// mode, or in front mode the upstream for what pgdump-api cannot judge itself.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<(String, auth::Method), Response> {
    match &state.front {
        Some(front) => {
            let peer = peer.map(|Extension(ConnectInfo(peer))| peer);
            front::authenticate(front, state, headers, peer).await
        }
        None => (auth::authenticate(&state.config.auth, headers, &state.delegated).await)
            .map_err(|err| ApiError::from(err).to_response(state.config.dev_mode)),
    }
}

/// Prometheus metrics, for admins or holders of the metrics secret.
async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    let by_secret = match (&state.config.metrics_secret, bearer) {
        (Some(secret), Some(sent)) => bool::from(sent.ct_eq(secret.expose().as_bytes())),
        _ => false,
    };
    if !by_secret {
        if let Err(refused) = require_admin(&state, &headers, peer).await {
            return refused;
        }
    }
    let sources = state.sources.snapshot();
    let text = state
        .metrics
        .render(&state.limits, sources.postgres_names());
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let accept = headers.get_all(header::ACCEPT_ENCODING);
    // A refused identity is ignored here: metrics are small.
    let coding = encoding::negotiate(accept.iter().map(HeaderValue::as_bytes))
        .ok()
        .and_then(|negotiated| negotiated.for_answer(text.len()));
    let compressed = coding.and_then(|coding| {
        let body = encoding::compress_all(coding, text.as_bytes()).ok()?;
        Some((coding, body))
    });
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
        ],
        text,
    )
        .into_response();
    if let Some((coding, body)) = compressed {
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
        *response.body_mut() = axum::body::Body::from(body);
    }
    response
}

/// Serves `state` on `listener` until `shutdown` completes. Clients get the request-header
/// timeout to send their request headers, and are cut off when they accept no bytes for the
/// send timeout. At most `state.max_connections` connections are kept: past that, or when the
/// process runs out of file descriptors, the oldest idle ones are closed (see [`conns`]).
/// After `shutdown`, no new connection is accepted, idle connections are closed, in-flight
/// requests get the graceful-shutdown timeout to finish; then the connections still open are
/// dropped and the pg_dump processes still running are stopped (their sessions with them)
/// before this returns.
pub(crate) async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let connections = Connections::new(state.max_connections);
    let header_timeout = state.config.request_header_timeout;
    let send_timeout = state.config.send_timeout;
    let grace = state.config.graceful_shutdown_timeout;
    let router = app(Arc::clone(&state));
    // Every connection's task, so that none outlives `run`.
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener, &connections) => accepted,
            () = &mut shutdown => break,
        };
        // Shared with a tunnel that takes the connection over (an upgrade in front mode).
        let registered = Arc::new(connections.open());
        let conn = Arc::clone(registered.conn());
        let stream = cutoff::CutOff::new(stream, send_timeout);
        let extensions = (
            Extension(stream.handle()),
            Extension(ConnectInfo(peer)),
            Extension(ConnHandle(Arc::clone(&registered))),
        );
        let service = extensions.layer(router.clone());
        let service = TrackBusy::new(TowerToHyperService::new(service), Arc::clone(&conn));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        // Reap the tasks that ended, so the set holds only live connections.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            if let Err(err) = serve_connection(connection, &conn).await {
                tracing::debug!(target: "server", peer = %peer, error = %err, "connection ended with an error");
            }
            // Only now, with its socket closed (or handed to a tunnel, which holds its own
            // registration), does the connection leave the registry.
            drop(registered);
        });
    }
    drop(listener);
    tracing::info!(target: "startup", grace_s = grace.as_secs(), "shutting down: no new connections, waiting for in-flight requests");
    connections.close_all();
    let drained = async {
        while !connections.is_empty() {
            connections.changed().await;
        }
    };
    tokio::select! {
        () = drained => {},
        () = tokio::time::sleep(grace) => {
            tracing::warn!(target: "startup", "grace period over: aborting the requests still running");
        }
    }
    // Dropping a connection drops its response body, which stops its pg_dump; then wait
    // until every pg_dump has exited.
    tasks.shutdown().await;
    state.dumper.stop_all().await;
}

/// The next connection, once there is room for it. Over the cap with nothing idle to close,
/// it waits until a connection ends or falls idle (then that one is closed to make room); out
/// of file descriptors, it closes idle connections and backs off.
async fn accept(listener: &TcpListener, connections: &Connections) -> (TcpStream, SocketAddr) {
    loop {
        while connections.over_cap() {
            connections.changed().await;
        }
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(err) if conns::out_of_files(&err) => {
                // Logged once per period of pressure, not per failed accept.
                connections.out_of_files(&err);
                tokio::select! {
                    () = connections.changed() => {},
                    () = tokio::time::sleep(Duration::from_millis(100)) => {},
                }
            }
            // A client that left before its connection was accepted, and the like.
            Err(err) => tracing::debug!(target: "server", error = %err, "accept failed"),
        }
    }
}

/// Drives one connection until it ends, or until it is asked to close: then a request in
/// flight is finished first; an idle kept-alive connection closes at once (after flushing
/// what it wrote); one still waiting for its request headers gets [`CLOSE_GRACE`] to
/// complete them, and is dropped after that.
async fn serve_connection<I, S, B>(
    connection: hyper::server::conn::http1::UpgradeableConnection<I, S>,
    conn: &Conn,
) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(connection);
    tokio::select! {
        ended = connection.as_mut() => return ended,
        () = conn.close_requested() => {}
    }
    connection.as_mut().graceful_shutdown();
    match tokio::time::timeout(CLOSE_GRACE, connection.as_mut()).await {
        Ok(ended) => ended,
        Err(_) if conn.is_busy() => connection.await,
        Err(_) => Ok(()),
    }
}

/// How long a connection asked to close may take to finish what it was doing before it is
/// dropped, unless a request is in flight.
const CLOSE_GRACE: Duration = Duration::from_millis(100);
