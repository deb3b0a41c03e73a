//! The HTTP side: routes ([`app`]), the server loop with graceful shutdown ([`run`]), the
//! request log and the one error type. Handlers only wire the pure parts together.

mod dump;
pub mod error;
mod observe;
pub mod request;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;

use crate::config::{Api, AuthMode, Config, EnabledApis};
use crate::pg_dump::Toolbox;
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
    pub versions: ServerVersions,
}

impl AppState {
    /// The state for a configuration, its sources and its pg_dump binaries.
    pub fn new(config: &Config, sources: Sources, pg_dump: Toolbox) -> AppState {
        AppState {
            auth: config.auth.clone(),
            enabled_apis: config.enabled_apis.clone(),
            admin_internal_errors: config.admin_internal_errors,
            dev_mode: config.dev_mode,
            sources,
            pg_dump,
            versions: ServerVersions::default(),
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
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// Serves `state` on `listener` until `shutdown` completes; in-flight requests then get
/// `grace` to finish, after which they are dropped (and their pg_dump killed).
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!(target: "startup", grace_s = grace.as_secs(), "shutting down: no new connections, waiting for in-flight requests");
        let _ = stopping_tx.send(());
    };
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, service).with_graceful_shutdown(signal);
    tokio::select! {
        served = server.into_future() => served,
        () = async {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(target: "startup", "grace period over: aborting the requests still running");
            Ok(())
        }
    }
}
