//! Front mode (`--upstream`): pgdump-api stands in front of a Hasura GraphQL Engine, so that
//! one address serves the Hasura CLI, the console and every client. pgdump-api answers
//! `POST /v1alpha1/pg_dump` (and its metrics) itself; every other request — any method, path
//! and query, WebSocket upgrades included — goes to the upstream through hyper's client,
//! bodies streamed both ways. Credentials other than a known admin secret are judged by the
//! upstream itself ([`auth`]).

mod auth;
mod headers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::OwnedSemaphorePermit;

use crate::http::error::ApiError;
use crate::http::{AppState, ConnHandle, TakenOver};

/// How long an idle connection to the upstream is kept for the next request.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// How long the upstream may take to answer a health check or an auth check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Each direction's buffer in a WebSocket tunnel: frames are small, tunnels many.
const TUNNEL_BUFFER: usize = 4096;
/// The upstream and the client that reaches it; its connections are pooled.
#[derive(Debug)]
pub(crate) struct Front {
    /// `http://host:port` and a base path without a trailing `/`.
    upstream: Uri,
    client: Client<HttpConnector, Body>,
}

impl Front {
    pub(crate) fn new(upstream: Uri) -> Front {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        Front { upstream, client }
    }

    /// The upstream's URL for a path and query of ours.
    fn url(&self, path_and_query: &str) -> Uri {
        let base = self.upstream.path().trim_end_matches('/');
        let authority = self
            .upstream
            .authority()
            .expect("the upstream has an authority");
        format!("http://{authority}{base}{path_and_query}")
            .parse()
            .expect("a valid authority and a valid path make a valid URI")
    }

    /// Sends `request` to the upstream; the answer's body streams as it arrives.
    async fn send(&self, request: axum::http::Request<Body>) -> Result<Response, ApiError> {
        match self.client.request(request).await {
            Ok(response) => Ok(response.map(Body::new)),
            Err(err) => Err(ApiError::Upstream(error_chain(&err))),
        }
    }
}

/// An error and its causes on one line: hyper's own message says little ("client error
/// (Connect)"), its source says what happened.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The router's fallback in front mode: the request, passed to the upstream; its answer,
/// passed back. A client that leaves drops this future or the response body, and with them
/// the upstream request.
pub(crate) async fn forward(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let Some(front) = &state.front else {
        return ApiError::NotFound.into_response();
    };
    // A place among the requests that wait on another service, held until the answer's body
    // is done, or while a tunnel is open: never the last connections an admin needs.
    let passing = match state.delegated.hold() {
        Ok(passing) => passing,
        Err(full) => return ApiError::from(full).into_response(),
    };
    match pass(front, request, passing).await {
        Ok(mut response) => {
            response.extensions_mut().insert(PassedThrough);
            response
        }
        Err(err) => err.into_response(),
    }
}

/// Marks an answer the upstream gave (a response extension): the upstream logs that request
/// in its own http-log, so pgdump-api's request log leaves it out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassedThrough;

async fn pass(
    front: &Front,
    mut request: Request,
    passing: OwnedSemaphorePermit,
) -> Result<Response, ApiError> {
    // An `Upgrade` in an HTTP/1.0 request is ignored (RFC 9110, 7.8): its connection cannot
    // switch, so the upstream's must not either.
    let upgrade =
        request.version() == Version::HTTP_11 && headers::wants_upgrade(request.headers());
    let client_side = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    let handle = parts.extensions.remove::<ConnHandle>();
    headers::for_upstream(&mut parts.headers, peer, upgrade);
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut outgoing = axum::http::Request::new(body);
    *outgoing.method_mut() = parts.method;
    *outgoing.uri_mut() = front.url(path_and_query);
    *outgoing.version_mut() = Version::HTTP_11;
    *outgoing.headers_mut() = parts.headers;
    let mut response = front.send(outgoing).await?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_side) = client_side else {
            return Err(ApiError::Upstream(
                "the upstream switched protocols unasked".to_owned(),
            ));
        };
        let upstream_side = hyper::upgrade::on(&mut response);
        let hold = handle.map(|handle| handle.take_over());
        tokio::spawn(tunnel(client_side, upstream_side, hold, passing));
        headers::strip_hop_by_hop(response.headers_mut(), true);
        return Ok(response);
    }
    headers::strip_hop_by_hop(response.headers_mut(), false);
    // The answer's body holds the permit: the request passes through until it is sent.
    Ok(response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _passing = &passing;
            frame
        }))
    }))
}

/// Once both sides have switched protocols, copies bytes both ways until either side closes,
/// or the server shuts down; `_passing` is its place among the requests passing through.
async fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    hold: Option<TakenOver>,
    _passing: OwnedSemaphorePermit,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(err) => {
            tracing::debug!(target: "server", error = %err, "an upgrade did not complete");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    let copy = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        TUNNEL_BUFFER,
        TUNNEL_BUFFER,
    );
    let shutdown = async {
        match &hold {
            Some(hold) => hold.close_requested().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        copied = copy => if let Err(err) = copied {
            tracing::debug!(target: "server", error = %err, "a tunnel ended with an error");
        },
        () = shutdown => {},
    }
}

/// `GET /healthz` in front mode: 200 only when pgdump-api is ready (else its own 503) and the
/// upstream's own `/healthz` answers 200; the upstream's status and body are passed on.
pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let Some(front) = &state.front else {
        return ApiError::NotFound.into_response();
    };
    // Ready only when both sides are: ours first, without a round trip.
    let missing = state.not_ready();
    if !missing.is_empty() {
        return ApiError::NotReady(missing).into_response();
    }
    let mut request = axum::http::Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = front.url("/healthz");
    match tokio::time::timeout(CHECK_TIMEOUT, front.send(request)).await {
        Ok(Ok(mut response)) => {
            headers::strip_hop_by_hop(response.headers_mut(), false);
            response
        }
        Ok(Err(err)) => err.into_response(),
        Err(_) => ApiError::Upstream(format!(
            "no answer to /healthz within {} s",
            CHECK_TIMEOUT.as_secs()
        ))
        .into_response(),
    }
}

pub(crate) use auth::authenticate;
