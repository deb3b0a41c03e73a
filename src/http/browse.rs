//! What the dump page (and scripts) ask before a dump, admin-only and read-only:
//! `GET /v1alpha1/pg_dump/sources` (every source, its server's version and the pg_dump that
//! would run) and `POST /v1alpha1/pg_dump/catalog` (a source's schemas and their objects).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::Value;

use super::dump::read_body;
use super::error::ApiError;
use super::state::AppState;
use super::{json_response, require_admin};
use crate::catalog;
use crate::sources::{self, Entry, Source};

/// One entry of `GET /v1alpha1/pg_dump/sources`.
#[derive(Debug, Serialize)]
struct SourceInfo {
    name: String,
    kind: String,
    /// Whether a dump of it can be asked for: a PostgreSQL source whose connection can be had.
    dumpable: bool,
    /// The server's version, when it could be learnt.
    server_version: Option<String>,
    /// The version of the pg_dump that a dump of this source would run now.
    pg_dump: Option<String>,
    /// Why the server's version or a matching pg_dump is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `GET /v1alpha1/pg_dump/sources`.
pub(super) async fn sources(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    if let Err(refused) = require_admin(&state, &headers, peer).await {
        return refused;
    }
    let snapshot = state.sources.snapshot();
    let entries = snapshot.entries().map(|(name, entry)| {
        let state = &state;
        let snapshot = &snapshot;
        async move {
            let unknown = |error: String| SourceInfo {
                name: name.to_owned(),
                kind: entry.kind().to_owned(),
                dumpable: false,
                server_version: None,
                pg_dump: None,
                error: Some(error),
            };
            match (entry, snapshot.get(name)) {
                (_, Ok(source)) => describe(state, &source, entry.kind()).await,
                (Entry::Other { kind }, _) => {
                    unknown(format!("only postgres sources can be dumped, not {kind}"))
                }
                (_, Err(why)) => unknown(ApiError::unavailable(name, why).to_string()),
            }
        }
    });
    let sources = join_all(entries).await;
    json_response(serde_json::json!({ "sources": sources }).to_string())
}

/// A PostgreSQL source as `sources` lists it: the version is learnt (or taken from the cache)
/// as a dump would learn it, and the pg_dump is the one a dump would choose.
async fn describe(state: &AppState, source: &Source, kind: &str) -> SourceInfo {
    let choice = state.dumper.choice(source).await;
    let error = match (&choice.server, choice.pg_dump) {
        (Ok(server), None) => Some(format!("no installed pg_dump can dump a {server} server")),
        (Err(why), _) => Some(why.clone()),
        (Ok(_), Some(_)) => None,
    };
    let pg_dump = choice.pg_dump.map(|pg_dump| pg_dump.version);
    let server_version = choice.server.ok();
    SourceInfo {
        name: source.name.clone(),
        kind: kind.to_owned(),
        dumpable: true,
        server_version: server_version.map(|v| v.to_string()),
        pg_dump: pg_dump.map(|v| v.to_string()),
        error,
    }
}

/// `POST /v1alpha1/pg_dump/catalog` with `{"source": NAME}` (`default` when absent).
pub(super) async fn catalog(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Body,
) -> Response {
    if let Err(refused) = require_admin(&state, &headers, peer).await {
        return refused;
    }
    let answer = async {
        let body = read_body(&headers, body, state.config.request_header_timeout).await?;
        let name = source_name(&body)?;
        let source =
            (state.sources.get(&name).await).map_err(|why| ApiError::unavailable(&name, why))?;
        let _turn = (state.catalog_reads.acquire().await).expect("the semaphore is never closed");
        let catalog = catalog::read(&source.conn).await?;
        let body = serde_json::json!({ "source": name, "schemas": catalog.schemas });
        Ok::<_, ApiError>(json_response(body.to_string()))
    };
    match answer.await {
        Ok(response) => response,
        Err(err) => err.to_response(state.config.dev_mode),
    }
}

/// The `source` of a catalog request body.
fn source_name(body: &[u8]) -> Result<String, ApiError> {
    let parse_failed = |path: &str, message: &str| ApiError::ParseFailed {
        path: path.to_owned(),
        message: message.to_owned(),
    };
    let value: Value =
        serde_json::from_slice(body).map_err(|err| ApiError::InvalidJson(err.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(parse_failed("$", "expected an object"));
    };
    match fields.get("source") {
        None | Some(Value::Null) => Ok(sources::DEFAULT.to_owned()),
        Some(Value::String(name)) if name.is_empty() => {
            Err(parse_failed("$.source", "empty string not allowed"))
        }
        Some(Value::String(name)) => Ok(name.clone()),
        Some(_) => Err(parse_failed("$.source", "expected a string")),
    }
}
