//! The HTTP side: routes ([`app`]), the server loop with its timeouts and graceful shutdown
//! ([`run`]), the request log and the one error type. Handlers only wire the pure parts
//! together.

mod cutoff;
mod dump;
pub mod error;
mod observe;
pub mod request;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_layer::Layer;

use crate::auth::{self, ADMIN_ROLE};
use crate::config::{Api, AuthMode, Config, DumpLimits, EnabledApis, Secret};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::pg_dump::{Processes, Toolbox};
use crate::server_version::ServerVersions;
use crate::sources::Sources;
use error::ApiError;

pub use dump::BODY_LIMIT;

/// What every request may read.
#[derive(Debug)]
pub struct AppState {
    pub auth: AuthMode,
    pub enabled_apis: EnabledApis,
    pub admin_internal_errors: bool,
    pub dev_mode: bool,
    pub sources: Sources,
    pub pg_dump: Toolbox,
    /// The running pg_dump processes.
    pub processes: Processes,
    pub versions: ServerVersions,
    pub dump_limits: DumpLimits,
    pub limits: Limits,
    pub metrics: Metrics,
    pub metrics_secret: Option<Secret>,
    /// How long a client may take to send its request body.
    pub request_timeout: Duration,
    /// How long a client may accept no bytes of a response.
    pub send_timeout: Duration,
}

impl AppState {
    /// The state for a configuration, its sources and its pg_dump binaries.
    pub fn new(config: &Config, sources: Sources, pg_dump: Toolbox) -> AppState {
        let limits = Limits::new(
            sources.postgres().map(|source| source.name.as_str()),
            config.limits.max_concurrent,
            config.limits.max_queue,
        );
        AppState {
            auth: config.auth.clone(),
            enabled_apis: config.enabled_apis.clone(),
            admin_internal_errors: config.admin_internal_errors,
            dev_mode: config.dev_mode,
            metrics: Metrics::new(&pg_dump),
            sources,
            pg_dump,
            processes: Processes::default(),
            versions: ServerVersions::default(),
            dump_limits: config.limits,
            limits,
            metrics_secret: config.metrics_secret.clone(),
            request_timeout: config.request_header_timeout,
            send_timeout: config.send_timeout,
        }
    }
}

/// All routes. A disabled API's routes are absent, so they answer like unknown paths.
pub fn app(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/healthz", only(get(healthz), "GET"))
        .route("/v1/version", only(get(version), "GET"));
    if state.enabled_apis.contains(Api::Pgdump) {
        router = router.route("/v1alpha1/pg_dump", only(post(dump::pg_dump), "POST"));
    }
    if state.enabled_apis.contains(Api::Metrics) {
        router = router.route("/v1/metrics", only(get(metrics), "GET"));
    }
    router
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
        .layer(CompressionLayer::new())
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

async fn healthz() -> &'static str {
    "OK"
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

/// Prometheus metrics, for admins or holders of the metrics secret.
async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    let by_secret = match (&state.metrics_secret, bearer) {
        (Some(secret), Some(sent)) => bool::from(sent.ct_eq(secret.expose().as_bytes())),
        _ => false,
    };
    if !by_secret {
        match auth::authenticate(&state.auth, &headers) {
            Ok(role) if role == ADMIN_ROLE => {}
            Ok(_) => return ApiError::NotAdmin.into_response(),
            Err(err) => return ApiError::from(err).into_response(),
        }
    }
    let names = state.sources.postgres().map(|source| source.name.as_str());
    let text = state.metrics.render(&state.limits, names);
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        text,
    )
        .into_response()
}

/// Serves `state` on `listener` until `shutdown` completes. Clients get `header_timeout` to
/// send their request headers, and are cut off when they accept no bytes for the send
/// timeout. After `shutdown`, no new connection is accepted, in-flight requests get `grace`
/// to finish, and the pg_dump processes still running are then stopped (their sessions with
/// them) before this returns.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    header_timeout: Duration,
    grace: Duration,
) {
    let send_timeout = state.send_timeout;
    let router = app(Arc::clone(&state));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(target: "server", error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let stream = cutoff::CutOff::new(stream, send_timeout);
        let service =
            (Extension(stream.handle()), Extension(ConnectInfo(peer))).layer(router.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(target: "server", peer = %peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(target: "startup", grace_s = grace.as_secs(), "shutting down: no new connections, waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(grace) => {
            tracing::warn!(target: "startup", "grace period over: aborting the requests still running");
        }
    }
    state.processes.stop_all().await;
}
