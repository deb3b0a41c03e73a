//! The one error type of the request path. Each variant knows its HTTP status, its wire
//! `code`, its message and `path`, and the optional `internal` detail; [`ApiError::to_response`]
//! is the only place that writes an error body.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;
use crate::catalog::CatalogError;
use crate::cluster::ClusterError;
use crate::metrics::Failure;
use crate::pg_dump::DumpError;
use crate::sources::Unavailable;

/// Everything that can go wrong between a request and its dump.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("resource does not exist")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive within {} s", .0.as_secs())]
    BodyTimeout(Duration),
    #[error("invalid \"x-hasura-admin-secret\"/\"x-hasura-access-key\"")]
    InvalidSecret,
    #[error("\"x-hasura-admin-secret\"/\"x-hasura-access-key\" required, but not found")]
    SecretRequired,
    /// A JWT or the auth webhook refused the caller.
    #[error("{message}")]
    AuthRefused {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    #[error("{0}")]
    InvalidJson(String),
    #[error("{message}")]
    ParseFailed { path: String, message: String },
    #[error("You have to be an admin to access this endpoint")]
    NotAdmin,
    #[error("source \"{0}\" not found")]
    SourceNotFound(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("source \"{name}\" is of kind \"{kind}\": only postgres sources can be dumped")]
    NotSupported { name: String, kind: String },
    /// Configured, but its connection cannot be had (an unset environment variable, …).
    #[error("source \"{name}\" cannot be used: {reason}")]
    SourceUnusable { name: String, reason: String },
    #[error("{message}")]
    InvalidParams { index: usize, message: String },
    #[error("Accept-Encoding refuses every coding this server sends (zstd, gzip, identity)")]
    NotAcceptable,
    #[error(
        "source \"{name}\" is busy: {running} dumps running and {queued} waiting; retry later"
    )]
    Busy {
        name: String,
        running: usize,
        queued: usize,
    },
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("not ready: {}", .0.join("; "))]
    NotReady(Vec<String>),
    /// Front mode: the upstream could not be reached, or did not answer as it must.
    #[error("the upstream Hasura GraphQL Engine did not answer: {0}")]
    Upstream(String),
    /// As many requests as may wait on another service (passed through to the upstream, or
    /// judged by the webhook or the upstream) already do.
    #[error(
        "{limit} requests are waiting on the upstream or the authentication webhook already; retry later"
    )]
    UpstreamBusy { limit: usize },
}

/// Seconds a client turned away for a busy source, or a full pass-through, is asked to wait.
const RETRY_AFTER_SECONDS: &str = "5";

/// The wire form: keys in this order, `internal` only when present.
#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    path: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    internal: Option<&'a str>,
}

/// What the request log records of an error response.
#[derive(Debug, Clone)]
pub(crate) struct ErrorSummary {
    pub code: &'static str,
    pub message: String,
    pub path: String,
    pub internal: Option<String>,
}

impl ApiError {
    /// HTTP status of this error.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ApiError::Busy { .. } | ApiError::UpstreamBusy { .. } | ApiError::NotReady(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Catalog(CatalogError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Catalog(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::SourceUnusable { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::InvalidSecret | ApiError::SecretRequired => StatusCode::UNAUTHORIZED,
            ApiError::AuthRefused { status, .. } => *status,
            ApiError::BodyRead(_)
            | ApiError::InvalidJson(_)
            | ApiError::ParseFailed { .. }
            | ApiError::NotAdmin
            | ApiError::SourceNotFound(_)
            | ApiError::NotSupported { .. }
            | ApiError::InvalidParams { .. } => StatusCode::BAD_REQUEST,
            ApiError::Dump(err) => match Failure::of(err) {
                Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
                Failure::NoMatch => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Cluster(ClusterError::TimedOut { .. }) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Cluster(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The wire `code`.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound | ApiError::SourceNotFound(_) => "not-found",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::BodyTimeout(_) => "request-timeout",
            ApiError::NotAcceptable => "not-acceptable",
            ApiError::Busy { .. } | ApiError::UpstreamBusy { .. } | ApiError::NotReady(_) => {
                "unavailable"
            }
            ApiError::Upstream(_) => "bad-gateway",
            ApiError::BodyRead(_) => "bad-request",
            ApiError::SourceUnusable { .. } => "unexpected",
            ApiError::InvalidSecret | ApiError::SecretRequired | ApiError::NotAdmin => {
                "access-denied"
            }
            ApiError::AuthRefused { code, .. } => code,
            ApiError::InvalidJson(_) => "invalid-json",
            ApiError::NotSupported { .. } => "not-supported",
            ApiError::Catalog(CatalogError::Timeout(_)) => "timeout",
            ApiError::Catalog(_) => "postgres-error",
            ApiError::ParseFailed { .. } => "parse-failed",
            ApiError::InvalidParams { .. } => "invalid-params",
            ApiError::Dump(err) => match Failure::of(err) {
                Failure::Timeout => "timeout",
                Failure::NoMatch => "not-found",
                Failure::VersionMismatch => "pg-dump-version-mismatch",
                _ => "unexpected",
            },
            ApiError::Cluster(ClusterError::TimedOut { .. }) => "timeout",
            ApiError::Cluster(_) => "unexpected",
        }
    }

    /// The JSON path the error is about.
    fn path(&self) -> String {
        match self {
            ApiError::ParseFailed { path, .. } => path.clone(),
            ApiError::InvalidParams { index, .. } => format!("$.opts[{index}]"),
            _ => "$".to_owned(),
        }
    }

    /// Details for operators (pg_dump's stderr, the OS error), never shown to non-admins.
    fn internal(&self) -> Option<String> {
        match self {
            ApiError::Dump(err) => err.internal(),
            ApiError::Cluster(err) => err.internal(),
            _ => None,
        }
    }

    /// Why the source called `name` cannot be dumped.
    pub(crate) fn unavailable(name: &str, why: Unavailable) -> ApiError {
        let name = name.to_owned();
        match why {
            Unavailable::NotFound => ApiError::SourceNotFound(name),
            Unavailable::NotPostgres { kind } => ApiError::NotSupported { name, kind },
            Unavailable::Unusable { reason } => ApiError::SourceUnusable { name, reason },
        }
    }

    /// The response, with `internal` only when `expose_internal` says the caller may see it.
    pub(crate) fn to_response(&self, expose_internal: bool) -> Response {
        let message = self.to_string();
        let path = self.path();
        let internal = self.internal();
        let body = Body {
            error: &message,
            path: &path,
            code: self.code(),
            internal: internal.as_deref().filter(|_| expose_internal),
        };
        let json = serde_json::to_vec(&body).expect("an error body always serializes");
        let mut response = (self.status(), json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if matches!(self, ApiError::Busy { .. } | ApiError::UpstreamBusy { .. }) {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response.extensions_mut().insert(ErrorSummary {
            code: self.code(),
            message,
            path,
            internal,
        });
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.to_response(false)
    }
}

impl From<crate::delegated::Full> for ApiError {
    fn from(full: crate::delegated::Full) -> Self {
        ApiError::UpstreamBusy { limit: full.limit }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Busy(full) => full.into(),
            AuthError::InvalidSecret => ApiError::InvalidSecret,
            AuthError::SecretRequired => ApiError::SecretRequired,
            AuthError::Refused {
                status,
                code,
                message,
            } => ApiError::AuthRefused {
                status,
                code,
                message,
            },
        }
    }
}

impl From<crate::opts::OptsError> for ApiError {
    fn from(err: crate::opts::OptsError) -> Self {
        ApiError::InvalidParams {
            index: err.index,
            message: err.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The response follows the one classification the metrics record.
    #[test]
    fn dump_failures_answer_as_the_metrics_count_them() {
        let stderr = String::new;
        let cases = [
            (
                DumpError::VersionMismatch {
                    server: "17.2".to_owned(),
                    installed: Vec::new(),
                },
                Failure::VersionMismatch,
                500,
                "pg-dump-version-mismatch",
            ),
            (
                DumpError::Spawn { detail: stderr() },
                Failure::Spawn,
                500,
                "unexpected",
            ),
            (
                DumpError::Failed { stderr: stderr() },
                Failure::PgDump,
                500,
                "unexpected",
            ),
            (
                DumpError::NoMatch {
                    message: stderr(),
                    stderr: stderr(),
                },
                Failure::NoMatch,
                400,
                "not-found",
            ),
            (
                DumpError::TimedOut {
                    limit: Duration::from_secs(1),
                },
                Failure::Timeout,
                504,
                "timeout",
            ),
        ];
        for (err, failure, status, code) in cases {
            assert_eq!(Failure::of(&err), failure, "{err:?}");
            let err = ApiError::Dump(err);
            assert_eq!(
                (err.status().as_u16(), err.code()),
                (status, code),
                "{err:?}"
            );
        }
    }
}
