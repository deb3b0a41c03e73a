//! `POST /v1alpha1/pg_dump`: SPEC §2's steps in order — read the body, authenticate, parse,
//! admin check, source, options — then pg_dump's output as a streamed 200.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::error::ApiError;
use super::request::DumpRequest;
use super::AppState;
use crate::auth::{self, ADMIN_ROLE};
use crate::opts::{self, Format};
use crate::pg_dump::{self, DumpError};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The handler: every failure becomes the one JSON error format.
pub async fn pg_dump(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(&headers, body).await {
        Ok(body) => body,
        Err(err) => return err.to_response(state.dev_mode),
    };
    let role = match auth::authenticate(&state.auth, &headers) {
        Ok(role) => role,
        Err(err) => return ApiError::from(err).to_response(state.dev_mode),
    };
    let expose_internal = state.dev_mode || (role == ADMIN_ROLE && state.admin_internal_errors);
    match dump(&state, &role, &body).await {
        Ok(response) => response,
        Err(err) => err.to_response(expose_internal),
    }
}

/// Reads the whole body, refusing more than [`BODY_LIMIT`] bytes.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit: BODY_LIMIT };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|len| len.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT as u64) {
        return Err(too_large);
    }
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(too_large),
        Err(err) => Err(ApiError::BodyRead(err.to_string())),
    }
}

/// Steps 4–8 for an authenticated caller.
async fn dump(state: &AppState, role: &str, body: &[u8]) -> Result<Response, ApiError> {
    let request = DumpRequest::parse(body)?;
    if role != ADMIN_ROLE {
        return Err(ApiError::NotAdmin);
    }
    let source = state
        .sources
        .get(&request.source)
        .ok_or_else(|| ApiError::SourceNotFound(request.source.clone()))?;
    let options = opts::parse(&request.opts, request.clean_output)?;
    let binary = state.pg_dump.newest().ok_or_else(|| DumpError::Spawn {
        detail: "no pg_dump binary is configured".to_owned(),
    })?;
    let output = pg_dump::start(
        &binary.path,
        &options.args,
        &source.conn,
        request.clean_output,
    )
    .await?;
    let content_type = match options.format {
        Format::Plain if !options.compressed => "application/sql; charset=utf-8",
        _ => "application/octet-stream",
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        Body::from_stream(output),
    )
        .into_response())
}
