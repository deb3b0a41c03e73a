//! SPEC §2's error rows that are decided before any database is reached, on [`app`] with
//! tower's `oneshot`: routing, authentication, the body, the admin check, the source and the
//! options.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{config, installed_pg_dump, state, state_of, DATABASE_URL, SECRET};
use crate::http::dump::BODY_LIMIT;
use crate::http::{app, AppState};

/// A finished response.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text()))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }
}

/// Sends `request` through [`app`] and reads the whole response.
async fn send(state: &Arc<AppState>, request: Request<Body>) -> Reply {
    let response = app(Arc::clone(state)).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A dump request with `body` and `headers`.
fn post(body: impl Into<Body>, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::post("/v1alpha1/pg_dump");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body.into()).unwrap()
}

async fn dump(state: &Arc<AppState>, body: &str, headers: &[(&str, &str)]) -> Reply {
    send(state, post(body.to_owned(), headers)).await
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// SPEC §2's error format: status, content type, request id, body, and the keys in the wire
/// order (error, path, code, internal).
fn assert_error(reply: &Reply, status: u16, expected: Value) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(reply
        .header("x-request-id")
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(reply.json(), expected);
    let keys: Vec<String> = reply.json().as_object().unwrap().keys().cloned().collect();
    let order = ["error", "path", "code", "internal"];
    assert_eq!(keys, order[..keys.len()], "{}", reply.text());
}

fn error(error: &str, path: &str, code: &str) -> Value {
    json!({"error": error, "path": path, "code": code})
}

fn not_admin() -> Value {
    error(
        "You have to be an admin to access this endpoint",
        "$",
        "access-denied",
    )
}

#[tokio::test]
async fn healthz_and_version_are_public() {
    let state = state_of(
        config(DATABASE_URL, &["--admin-secret", SECRET]),
        installed_pg_dump(),
    );
    let reply = send(&state, get("/healthz")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "OK");
    let reply = send(&state, get("/v1/version")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        reply.json(),
        json!({
            "server_type": "pgdump-api",
            "version": concat!("v", env!("CARGO_PKG_VERSION")),
        })
    );
    let reply = send(&state, get("/v1/graphql")).await;
    assert_error(
        &reply,
        404,
        error("resource does not exist", "$", "not-found"),
    );
}

/// Readiness: a replica without a pg_dump to run is taken out of a load balancer's rotation.
#[tokio::test]
async fn healthz_is_503_without_a_pg_dump() {
    let state = state(&[]);
    let reply = send(&state, get("/healthz")).await;
    assert_error(
        &reply,
        503,
        error(
            "not ready: no pg_dump binary is configured",
            "$",
            "unavailable",
        ),
    );
}

#[tokio::test]
async fn the_callers_request_id_is_kept() {
    let state = state(&[]);
    let reply = dump(&state, "{", &[("x-request-id", "req-7")]).await;
    assert_eq!(reply.header("x-request-id"), Some("req-7"));
    // Two requests without one get different ids.
    let first = send(&state, get("/healthz")).await;
    let second = send(&state, get("/healthz")).await;
    assert_ne!(first.header("x-request-id"), second.header("x-request-id"));
}

#[tokio::test]
async fn disabled_pgdump_api_is_not_found() {
    let state = state(&["--enabled-apis", "metadata,graphql"]);
    assert_error(
        &dump(&state, "not even json", &[]).await,
        404,
        error("resource does not exist", "$", "not-found"),
    );
    // So is the disabled metrics endpoint (off by default).
    let reply = send(&state, get("/v1/metrics")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let state = state(&["--enabled-apis", "pgdump,metrics"]);
    let routes = [
        (
            "/v1alpha1/pg_dump",
            "POST",
            [Method::GET, Method::PUT, Method::DELETE],
        ),
        (
            "/healthz",
            "GET",
            [Method::POST, Method::PUT, Method::DELETE],
        ),
        (
            "/v1/version",
            "GET",
            [Method::POST, Method::PATCH, Method::DELETE],
        ),
        (
            "/v1/metrics",
            "GET",
            [Method::POST, Method::PUT, Method::DELETE],
        ),
    ];
    for (path, allow, methods) in routes {
        for method in methods {
            let request = Request::builder()
                .method(method.clone())
                .uri(path)
                .body(Body::empty())
                .unwrap();
            let reply = send(&state, request).await;
            assert_error(
                &reply,
                405,
                error("method not allowed", "$", "method-not-allowed"),
            );
            assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
        }
    }
}

#[tokio::test]
async fn authentication_errors() {
    let state = state(&["--admin-secret", SECRET]);
    let body = r#"{"opts":["--schema-only"]}"#;
    let invalid = error(
        "invalid \"x-hasura-admin-secret\"/\"x-hasura-access-key\"",
        "$",
        "access-denied",
    );
    for headers in [
        [("x-hasura-admin-secret", "wrong")],
        [("x-hasura-admin-secret", "")],
        [("x-hasura-admin-secret", "t0p-secreT")],
        [("x-hasura-access-key", "t0p-secre")],
    ] {
        assert_error(&dump(&state, body, &headers).await, 401, invalid.clone());
    }
    let required = error(
        "\"x-hasura-admin-secret\"/\"x-hasura-access-key\" required, but not found",
        "$",
        "access-denied",
    );
    assert_error(&dump(&state, body, &[]).await, 401, required);
    // The legacy header authenticates too: the request goes on to parsing.
    let reply = dump(&state, "{}", &[("x-hasura-access-key", SECRET)]).await;
    assert_eq!(reply.json()["code"], "parse-failed", "{}", reply.text());
}

#[tokio::test]
async fn authentication_comes_before_the_body() {
    let state = state(&["--admin-secret", SECRET]);
    // Neither an unparseable nor an oversized body is looked at for a caller without the
    // secret.
    let reply = dump(&state, "{", &[("x-hasura-admin-secret", "wrong")]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    let big = "x".repeat(2 * BODY_LIMIT);
    let length = big.len().to_string();
    let headers = [
        ("x-hasura-admin-secret", "wrong"),
        ("content-length", length.as_str()),
    ];
    let reply = send(&state, post(big.clone(), &headers)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    let reply = send(&state, post(big, &[("content-length", length.as_str())])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
}

#[tokio::test]
async fn unauthorized_role_is_not_admin() {
    let state = state(&["--admin-secret", SECRET, "--unauthorized-role", "anonymous"]);
    assert_error(&dump(&state, r#"{"opts":[]}"#, &[]).await, 400, not_admin());
}

#[tokio::test]
async fn non_admin_role_is_refused_after_parsing() {
    let state = state(&["--admin-secret", SECRET]);
    let headers = [("x-hasura-admin-secret", SECRET), ("x-hasura-role", "user")];
    assert_error(
        &dump(&state, r#"{"opts":["-O"]}"#, &headers).await,
        400,
        not_admin(),
    );
    // A body that does not parse is reported before the role is looked at.
    let reply = dump(&state, "{}", &headers).await;
    assert_eq!(reply.json()["code"], "parse-failed");
    // Without a secret every caller is admin, unless it names another role.
    let open = self::state(&[]);
    let reply = dump(&open, r#"{"opts":[]}"#, &[("x-hasura-role", "user")]).await;
    assert_error(&reply, 400, not_admin());
}

#[tokio::test]
async fn body_errors_in_request_order() {
    let state = state(&[]);
    let cases = [
        ("", "invalid-json", "$"),
        ("{", "invalid-json", "$"),
        (r#"{"opts":[]} trailing"#, "invalid-json", "$"),
        ("[1,2]", "parse-failed", "$"),
        ("{}", "parse-failed", "$"),
        (r#"{"opts":"-s"}"#, "parse-failed", "$.opts"),
        (r#"{"opts":["-s",{}]}"#, "parse-failed", "$.opts[1]"),
        (
            r#"{"opts":[],"clean_output":"true"}"#,
            "parse-failed",
            "$.clean_output",
        ),
        (r#"{"opts":[],"source":1}"#, "parse-failed", "$.source"),
        (r#"{"opts":[],"source":""}"#, "parse-failed", "$.source"),
    ];
    for (body, code, path) in cases {
        let reply = dump(&state, body, &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text()
        );
        let json = reply.json();
        assert_eq!(
            (json["code"].as_str(), json["path"].as_str()),
            (Some(code), Some(path)),
            "{body}: {json}"
        );
        assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert_error(
        &dump(&state, "{}", &[]).await,
        400,
        error("key \"opts\" not found", "$", "parse-failed"),
    );
    assert_error(
        &dump(&state, r#"{"opts":[],"source":""}"#, &[]).await,
        400,
        error("empty string not allowed", "$.source", "parse-failed"),
    );
}

#[tokio::test]
async fn unknown_source_is_not_found() {
    let state = state(&[]);
    let reply = dump(&state, r#"{"opts":[],"source":"analytics"}"#, &[]).await;
    assert_error(
        &reply,
        400,
        error("source \"analytics\" not found", "$", "not-found"),
    );
}

#[tokio::test]
async fn rejected_options_name_the_option_and_its_index() {
    let state = state(&[]);
    let cases: [(&[&str], usize, &str); 8] = [
        (&["-O", "-f", "/tmp/x.sql"], 1, "-f"),
        (&["--schema-only", "--file=/tmp/x.sql"], 1, "--file"),
        (&["-Fd"], 0, "-F"),
        (&["-j", "4"], 0, "-j"),
        (&["-h", "evil.example"], 0, "-h"),
        (&["--role=postgres"], 0, "--role"),
        (&["otherdb"], 0, "otherdb"),
        (&["--no-such-option"], 0, "--no-such-option"),
    ];
    for (opts, index, named) in cases {
        let reply = dump(&state, &json!({ "opts": opts }).to_string(), &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{opts:?}");
        let json = reply.json();
        assert_eq!(json["code"], "invalid-params", "{json}");
        assert_eq!(json["path"], format!("$.opts[{index}]"), "{json}");
        assert!(
            json["error"].as_str().unwrap().contains(named),
            "{opts:?}: {json}"
        );
        assert_eq!(
            json.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["error", "path", "code"]
        );
    }
}

#[tokio::test]
async fn oversized_body_is_413() {
    let state = state(&[]);
    let expected = error(
        &format!("request body is larger than {BODY_LIMIT} bytes"),
        "$",
        "payload-too-large",
    );
    let big = format!(r#"{{"opts":[],"pad":"{}"}}"#, "x".repeat(2 * BODY_LIMIT));
    let length = big.len().to_string();
    // With its length declared, and without (a stream of chunks, read up to the limit).
    let reply = send(
        &state,
        post(big.clone(), &[("content-length", length.as_str())]),
    )
    .await;
    assert_error(&reply, 413, expected.clone());
    let chunks = (0..40).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    assert_error(&send(&state, post(body, &[])).await, 413, expected);
    // A body of exactly the limit is read (and then fails to parse).
    let padded = format!("{{{}}}", " ".repeat(BODY_LIMIT - 2));
    let reply = dump(&state, &padded, &[]).await;
    assert_eq!(reply.json()["code"], "parse-failed", "{}", reply.status);
}

#[tokio::test]
async fn metrics_need_admin_or_the_metrics_secret() {
    let state = state(&[
        "--admin-secret",
        SECRET,
        "--enabled-apis",
        "pgdump,metrics",
        "--metrics-secret",
        "m3trics",
    ]);
    let metrics = |headers: &[(&str, &str)]| {
        let mut request = Request::get("/v1/metrics");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        send(&state, request.body(Body::empty()).unwrap())
    };
    let required = error(
        "\"x-hasura-admin-secret\"/\"x-hasura-access-key\" required, but not found",
        "$",
        "access-denied",
    );
    assert_error(&metrics(&[]).await, 401, required.clone());
    assert_error(
        &metrics(&[("authorization", "Bearer nope")]).await,
        401,
        required,
    );
    let reply = metrics(&[("x-hasura-admin-secret", "wrong")]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let not_admin_role = [("x-hasura-admin-secret", SECRET), ("x-hasura-role", "user")];
    assert_error(&metrics(&not_admin_role).await, 400, not_admin());
    for allowed in [
        &[("x-hasura-admin-secret", SECRET)][..],
        &[("authorization", "Bearer m3trics")][..],
    ] {
        let reply = metrics(allowed).await;
        assert_eq!(reply.status, StatusCode::OK, "{allowed:?}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        assert!(reply.text().ends_with("# EOF\n"), "{}", reply.text());
    }
}
