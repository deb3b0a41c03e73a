//! Who may dump, in front mode, decided exactly as the upstream decides it. An admin secret
//! header is checked here when pgdump-api knows the secret; any other credential — a JWT in
//! `Authorization` or a cookie, headers an auth webhook judges, none at all (the unauthorized
//! role) — goes to the upstream on an admin-only metadata call that changes nothing. The
//! upstream's 200 makes the caller admin; its 4xx is passed back word for word.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};

use super::{headers, Front, CHECK_TIMEOUT};
use crate::auth::{self, ADMIN_ROLE};
use crate::http::error::ApiError;
use crate::http::AppState;

/// An admin-only metadata call that reads and changes nothing of consequence: the Hasura CLI
/// itself sends it on every command.
const ADMIN_CHECK: &str = r#"{"type":"get_catalog_state","args":{}}"#;

/// Most of the admin check's answer read before its connection is given up instead.
const ANSWER_LIMIT: usize = 1024 * 1024;

const SECRET_HEADERS: [&str; 2] = ["x-hasura-admin-secret", "x-hasura-access-key"];

/// The caller's role for a pg_dump request in front mode and how it was learnt, or the
/// response that refuses it.
pub(crate) async fn authenticate(
    front: &Front,
    state: &AppState,
    sent: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<(String, auth::Method), Response> {
    let mode = &state.config.auth;
    let sends_secret = SECRET_HEADERS.iter().any(|name| sent.contains_key(*name));
    if sends_secret && !mode.admin_secrets().is_empty() {
        return (auth::authenticate(mode, sent, &state.delegated).await)
            .map_err(|err| ApiError::from(err).into_response());
    }
    // Waiting on the upstream holds a place, as a passed-through request does.
    let _place = state
        .delegated
        .hold()
        .map_err(|full| ApiError::from(full).into_response())?;
    let role = ask_upstream(front, sent, peer).await?;
    Ok((role, auth::Method::Upstream))
}

/// Sends the caller's headers with [`ADMIN_CHECK`] to the upstream's metadata API, naming the
/// caller in `X-Forwarded-For` as a passed-through request would.
async fn ask_upstream(
    front: &Front,
    sent: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<String, Response> {
    let mut headers = sent.clone();
    headers::for_upstream(&mut headers, peer, false);
    // The request is ours: only its credentials are the caller's.
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_ENCODING,
        header::ACCEPT_ENCODING,
    ] {
        headers.remove(name);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut request = axum::http::Request::new(Body::from(ADMIN_CHECK));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = front.url("/v1/metadata");
    *request.headers_mut() = headers;
    let response = match tokio::time::timeout(CHECK_TIMEOUT, front.send(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => return Err(err.into_response()),
        Err(_) => {
            let waited = CHECK_TIMEOUT.as_secs();
            let why = format!("no answer to the admin check within {waited} s");
            return Err(ApiError::Upstream(why).into_response());
        }
    };
    match response.status() {
        StatusCode::OK => {
            // Read to its end (it is small), so that the connection goes back to the pool.
            let body = Limited::new(response.into_body(), ANSWER_LIMIT);
            let _ = tokio::time::timeout(CHECK_TIMEOUT, body.collect()).await;
            Ok(ADMIN_ROLE.to_owned())
        }
        status if status.is_client_error() => Err(refusal(response)),
        status => {
            Err(ApiError::Upstream(format!("the admin check answered {status}")).into_response())
        }
    }
}

/// The upstream's refusal, as the caller gets it: its status, content type and body.
fn refusal(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let mut refused = Response::new(body);
    *refused.status_mut() = parts.status;
    for name in [header::CONTENT_TYPE, header::WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            refused.headers_mut().insert(name, value.clone());
        }
    }
    refused
}
