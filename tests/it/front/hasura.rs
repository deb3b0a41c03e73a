//! A Hasura GraphQL Engine stand-in for front mode's tests: what the Hasura CLI and the front
//! call (`/v1/version`, `/healthz`, `/v1alpha1/config`, the metadata API on `/v1/metadata`
//! and `/v1/query` with Hasura's admin checks by secret and by JWT role), a WebSocket echo
//! endpoint, an echo of request bodies and headers, and a large streamed response. It runs
//! in the test process on a real socket; dropping it closes every connection it had, as a
//! stopped Hasura would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use base64::Engine;
use futures_util::StreamExt;
use hmac::{KeyInit, Mac};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub const ADMIN_SECRET: &str = "hasura-admin-s3cret";
pub const JWT_KEY: &[u8] = b"a-jwt-key-of-at-least-thirty-two-bytes";
pub const VERSION: &str = "v2.48.0";

/// What the stand-in saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    /// The JSON body of a metadata call.
    pub body: Option<Value>,
}

#[derive(Default)]
pub struct Shared {
    seen: Mutex<Vec<Seen>>,
    /// The CLI's state, as `set_catalog_state` left it.
    cli_state: Mutex<Value>,
    pub unhealthy: AtomicBool,
    /// Large responses being streamed right now.
    pub streaming: AtomicUsize,
}

impl Shared {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn cli_state(&self) -> Value {
        self.cli_state.lock().unwrap().clone()
    }
}

/// A running stand-in.
pub struct Hasura {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    /// The accept loop; aborting it aborts every connection task it holds.
    server: tokio::task::JoinHandle<()>,
}

impl Hasura {
    pub async fn start() -> Hasura {
        Hasura::start_at("127.0.0.1:0".parse().unwrap(), Arc::default()).await
    }

    /// Starts on `addr` with `shared` state (a restart keeps both).
    pub async fn start_at(addr: SocketAddr, shared: Arc<Shared>) -> Hasura {
        let listener = TcpListener::bind(addr).await.expect("bind the stand-in");
        let addr = listener.local_addr().unwrap();
        let router = routes(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Hasura {
            addr,
            shared,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it: the listener and every connection close.
    pub async fn stop(self) -> (SocketAddr, Arc<Shared>) {
        self.server.abort();
        let _ = (&mut { self.server }).await;
        (self.addr, self.shared)
    }
}

fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/v1/version",
            get(|| async { json_reply(json!({ "version": VERSION })) }),
        )
        .route("/healthz", get(healthz))
        .route("/v1alpha1/config", get(config))
        .route("/v1/metadata", post(metadata))
        .route("/v1/query", post(metadata))
        .route("/v1/graphql", any(websocket))
        .route("/big", get(big))
        .route("/echo", any(echo))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            record,
        ))
        .with_state(shared)
}

/// Records every request's method, path and headers.
async fn record(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    shared.seen.lock().unwrap().push(Seen {
        method: request.method().to_string(),
        path: request.uri().to_string(),
        headers: request.headers().clone(),
        body: None,
    });
    next.run(request).await
}

fn json_reply(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        value.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, path: &str, code: &str, message: &str) -> Response {
    let body = json!({ "path": path, "error": message, "code": code });
    (status, json_reply(body)).into_response()
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.unhealthy.load(Ordering::SeqCst) {
        false => "OK".into_response(),
        true => (StatusCode::INTERNAL_SERVER_ERROR, "ERROR").into_response(),
    }
}

async fn config(headers: HeaderMap) -> Response {
    match role(&headers) {
        Ok(_) => json_reply(json!({
            "version": VERSION,
            "is_admin_secret_set": true,
            "is_auth_hook_set": false,
            "is_jwt_set": true,
            "jwt": [],
        })),
        Err(refused) => *refused,
    }
}

/// The caller's role, as Hasura with an admin secret and an HS256 JWT secret decides it.
fn role(headers: &HeaderMap) -> Result<String, Box<Response>> {
    let requested = headers
        .get("x-hasura-role")
        .and_then(|role| role.to_str().ok())
        .map(str::to_owned);
    if let Some(sent) = headers
        .get("x-hasura-admin-secret")
        .or_else(|| headers.get("x-hasura-access-key"))
    {
        return match sent.as_bytes() == ADMIN_SECRET.as_bytes() {
            true => Ok(requested.unwrap_or_else(|| "admin".to_owned())),
            false => Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                "$",
                "access-denied",
                "invalid \"x-hasura-admin-secret\"/\"x-hasura-access-key\"",
            ))),
        };
    }
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "$",
            "invalid-headers",
            "Missing 'Authorization' or 'Cookie' header in JWT authentication mode",
        )));
    };
    let invalid = |why: &str| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "$",
            "invalid-jwt",
            &format!("Could not verify JWT: {why}"),
        ))
    };
    let claims = verify(token).ok_or_else(|| invalid("JWSError JWSInvalidSignature"))?;
    let claims = &claims["https://hasura.io/jwt/claims"];
    let allowed: Vec<&str> = claims["x-hasura-allowed-roles"]
        .as_array()
        .map(|roles| roles.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match requested {
        Some(role) if allowed.contains(&role.as_str()) => Ok(role),
        Some(_) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "$",
            "access-denied",
            "Your requested role is not in allowed roles",
        ))),
        None => claims["x-hasura-default-role"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| invalid("JWTClaimsSetDecodeError \"expected default role\"")),
    }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// An HS256 JWT for `default_role`, with `allowed` roles, signed with `key`.
pub fn jwt(key: &[u8], default_role: &str, allowed: &[&str]) -> String {
    let header = b64().encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({
        "sub": "1234",
        "iat": 1_700_000_000,
        "https://hasura.io/jwt/claims": {
            "x-hasura-default-role": default_role,
            "x-hasura-allowed-roles": allowed,
        },
    });
    let payload = b64().encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(key).unwrap();
    mac.update(signed.as_bytes());
    let signature = b64().encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

/// The claims of a token signed with [`JWT_KEY`].
fn verify(token: &str) -> Option<Value> {
    let (signed, signature) = token.rsplit_once('.')?;
    let mut mac = HmacSha256::new_from_slice(JWT_KEY).unwrap();
    mac.update(signed.as_bytes());
    mac.verify_slice(&b64().decode(signature).ok()?).ok()?;
    let payload = signed.split_once('.')?.1;
    serde_json::from_slice(&b64().decode(payload).ok()?).ok()
}

/// The metadata API: admin only; the calls the Hasura CLI makes.
async fn metadata(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let call: Value = match serde_json::from_slice(&body) {
        Ok(call) => call,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                "$",
                "invalid-json",
                &err.to_string(),
            )
        }
    };
    if let Some(last) = shared.seen.lock().unwrap().last_mut() {
        last.body = Some(call.clone());
    }
    match role(&headers) {
        Ok(role) if role == "admin" => {}
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "$.args",
                "access-denied",
                "restricted access : admin only",
            )
        }
        Err(refused) => return *refused,
    }
    match call["type"].as_str() {
        Some("export_metadata") => json_reply(json!({
            "version": 3,
            "sources": [{
                "name": "default",
                "kind": "postgres",
                "tables": [{ "table": { "schema": "public", "name": "authors" } }],
                "configuration": {
                    "connection_info": { "database_url": { "from_env": "PG_DATABASE_URL" } }
                },
            }],
        })),
        Some("get_catalog_state") => json_reply(json!({
            "id": "6d6a6b4e-0000-4000-8000-000000000001",
            "cli_state": shared.cli_state(),
            "console_state": {},
        })),
        Some("set_catalog_state") if call["args"]["type"] == "cli" => {
            *shared.cli_state.lock().unwrap() = call["args"]["state"].clone();
            json_reply(json!({ "message": "success" }))
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "$",
            "not-supported",
            "not implemented by the stand-in",
        ),
    }
}

/// `GET /big?mb=N`: N MiB streamed in 64 KiB chunks.
async fn big(State(shared): State<Arc<Shared>>, uri: axum::http::Uri) -> Response {
    let mb: u64 = uri
        .query()
        .and_then(|query| query.strip_prefix("mb="))
        .and_then(|mb| mb.parse().ok())
        .unwrap_or(1);
    let chunks = mb * 16;
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    /// Counts the streams in progress; a client that left drops it.
    struct Streaming(Arc<Shared>);
    impl Drop for Streaming {
        fn drop(&mut self) {
            self.0.streaming.fetch_sub(1, Ordering::SeqCst);
        }
    }
    shared.streaming.fetch_add(1, Ordering::SeqCst);
    let guard = Streaming(shared);
    let stream = futures_util::stream::iter(0..chunks).then(move |_| {
        let chunk = chunk.clone();
        let _held = &guard;
        async move {
            tokio::task::yield_now().await;
            Ok::<_, std::io::Error>(chunk)
        }
    });
    let length = (chunks * 64 * 1024).to_string();
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, length),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Echoes the request body (streamed back as it arrives), and its headers as JSON in
/// `x-seen-headers`.
async fn echo(headers: HeaderMap, body: Body) -> Response {
    let seen: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.to_string(), Value::String(value))
        })
        .collect();
    let mut response = Response::new(body);
    response.headers_mut().insert(
        "x-seen-headers",
        Value::Object(seen).to_string().parse().unwrap(),
    );
    response
}

/// A WebSocket handshake answered with 101, then every byte echoed back. (The handshake's
/// accept key is not computed: the front passes bytes, not frames.)
async fn websocket(mut request: Request) -> Response {
    let protocol = request.headers().get("sec-websocket-protocol").cloned();
    if !request
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|upgrade| upgrade.as_bytes().eq_ignore_ascii_case(b"websocket"))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "$",
            "bad-request",
            "not a websocket",
        );
    }
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut reader, &mut writer).await;
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, "websocket".parse().unwrap());
    headers.insert(header::CONNECTION, "upgrade".parse().unwrap());
    headers.insert("sec-websocket-accept", "stand-in".parse().unwrap());
    if let Some(protocol) = protocol {
        headers.insert("sec-websocket-protocol", protocol);
    }
    response
}
