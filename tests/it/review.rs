//! Attacks on the front's pass-through reservation, the launcher and the auth hook: requests
//! that end abnormally must give back what they held.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::front::hasura::Hasura;
use crate::front::open_websocket;
use crate::support::{eventually, serve_app, Server, TestDb};

/// Sends `request` on a new connection; `read`: read the answer to its end (else drop at once).
fn send_and_leave(server: &Server, request: &[u8], read: bool) {
    let mut socket = TcpStream::connect(server.addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = socket.write_all(request);
    if read {
        let mut answer = [0; 1024];
        let _ = socket.read(&mut answer);
    }
}

/// How many of `tries` WebSockets open through the front at once.
fn websockets_that_open(server: &Server, tries: usize) -> usize {
    let opened: Vec<TcpStream> = (0..tries)
        .map(|_| open_websocket(server))
        .filter(|(_, head)| head.starts_with("HTTP/1.1 101"))
        .map(|(socket, _)| socket)
        .collect();
    opened.len()
}

const WS: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// Requests and upgrades that end abnormally — clients leaving mid-answer, HEAD, HTTP/1.0
/// upgrades, upgrades refused upstream or abandoned, uploads cut short, CONNECT — hold no
/// place among the requests passing through once they are over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_ending_abnormally_leak_no_pass_through_place() {
    let db = TestDb::new().await;
    let hasura = Hasura::start().await;
    let server = Server::builder(&db.url)
        .args(["--upstream", &hasura.url(), "--max-connections", "16"])
        .start();
    assert_eq!(websockets_that_open(&server, 10), 8);
    let kinds: Vec<(&str, String, bool)> = vec![
        ("GET left mid-answer", "GET /big?mb=4 HTTP/1.1\r\nHost: f\r\n\r\n".into(), true),
        ("HEAD", "HEAD /big?mb=4 HTTP/1.1\r\nHost: f\r\n\r\n".into(), true),
        ("HTTP/1.0 GET", "GET /big?mb=4 HTTP/1.0\r\n\r\n".into(), true),
        ("HTTP/1.0 upgrade", format!("GET /v1/graphql HTTP/1.0\r\n{WS}\r\n"), true),
        ("upgrade left at once", format!("GET /v1/graphql HTTP/1.1\r\nHost: f\r\n{WS}\r\n"), false),
        ("upgrade refused upstream", format!("GET /echo HTTP/1.1\r\nHost: f\r\n{WS}\r\n"), true),
        ("upgrade with a body", format!("POST /v1/graphql HTTP/1.1\r\nHost: f\r\n{WS}Content-Length: 10\r\n\r\nab"), true),
        ("upgrade with 100-continue", format!("POST /v1/graphql HTTP/1.1\r\nHost: f\r\n{WS}Expect: 100-continue\r\nContent-Length: 10\r\n\r\n"), true),
        ("upload cut short", "POST /echo HTTP/1.1\r\nHost: f\r\nContent-Length: 100000\r\n\r\nabc".into(), true),
        ("CONNECT", "CONNECT f:80 HTTP/1.1\r\nHost: f:80\r\n\r\n".into(), true),
        ("two upgrades pipelined", format!("GET /echo HTTP/1.1\r\nHost: f\r\n{WS}\r\nGET /v1/graphql HTTP/1.1\r\nHost: f\r\n{WS}\r\n"), true),
    ];
    for (kind, request, read) in kinds {
        for _ in 0..10 {
            send_and_leave(&server, request.as_bytes(), read);
        }
        eventually(&format!("8 WebSockets to open after 10 × {kind}"), || {
            websockets_that_open(&server, 8) == 8
        })
        .await;
    }
}

/// pg_dump's options come from the request and follow the launcher's own on its command line:
/// none of them — `--`, `--parent`, the subcommand's name, a program's path — reaches the
/// launcher as its own, and each request is either refused as a bad option or dumped by
/// pg_dump itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_opts_never_reach_the_launcher_as_its_own() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).start();
    let marker = std::env::temp_dir().join(format!("review-launcher-{}", std::process::id()));
    let touch = format!("/usr/bin/touch {}", marker.display());
    let hostile: Vec<Vec<String>> = vec![
        vec![
            "--".into(),
            "/usr/bin/touch".into(),
            marker.display().to_string(),
        ],
        vec!["--parent".into(), "1".into()],
        vec![
            "--parent=1".into(),
            "--".into(),
            "/bin/sh".into(),
            "-c".into(),
            touch.clone(),
        ],
        vec![
            "__exec-pg-dump".into(),
            "--parent".into(),
            "1".into(),
            "--".into(),
            "/bin/sh".into(),
        ],
        vec!["--help".into()],
        vec!["--version".into()],
        vec!["-f".into(), marker.display().to_string()],
        vec![format!("--file={}", marker.display())],
    ];
    for opts in hostile {
        let reply = crate::support::dump_json(
            &server,
            serde_json::json!({ "opts": opts, "clean_output": false }),
        )
        .await;
        let text = reply.text();
        assert!(
            reply.status == 400
                || (reply.status == 200 && text.contains("PostgreSQL database dump")),
            "{opts:?}: {} {text}",
            reply.status
        );
        assert!(!text.contains("pgdump-api launcher"), "{opts:?}: {text}");
        assert!(
            !marker.exists(),
            "{opts:?} ran a program of the request's choosing"
        );
    }
    // The server still dumps.
    let reply = crate::support::dump_json(&server, serde_json::json!({ "opts": ["-s"] })).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// An `Upgrade` in an HTTP/1.0 request is ignored, as RFC 9110 (7.8) says: such a connection
/// cannot switch protocols, so the client gets no 101 it cannot use and the upstream's
/// connection is not switched to be thrown away; and such requests, kept alive, cannot fill
/// the cap and lock an admin out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_asked_over_http_1_0_is_ignored() {
    let db = TestDb::with(crate::support::REFERENCE_SCHEMA).await;
    let hasura = Hasura::start().await;
    let server = Server::builder(&db.url)
        .secret(crate::front::hasura::ADMIN_SECRET)
        .args(["--upstream", &hasura.url(), "--max-connections", "16"])
        .start();
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut socket = TcpStream::connect(server.addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
            .write_all(
                b"GET /v1/graphql HTTP/1.0\r\nConnection: keep-alive, Upgrade\r\n\
                  Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            )
            .unwrap();
        let mut head = [0; 64];
        let n = socket.read(&mut head).unwrap_or(0);
        let head = String::from_utf8_lossy(&head[..n]).into_owned();
        assert!(head.starts_with("HTTP/1.0 400"), "{head}");
        held.push(socket);
    }
    let admin = crate::support::post_dump(
        &server,
        serde_json::json!({ "opts": ["-s"] }).to_string(),
        &[("x-hasura-admin-secret", crate::front::hasura::ADMIN_SECRET)],
    );
    let reply = tokio::time::timeout(Duration::from_secs(20), admin)
        .await
        .expect("an admin's dump got no connection");
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// The launcher is the server's own image, not whatever file now sits at its path: a binary
/// replaced on disk while the server runs (an upgrade, a rollback) does not start pg_dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_replaced_on_disk_does_not_become_the_launcher() {
    let db = TestDb::with(crate::support::REFERENCE_SCHEMA).await;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("pgdump-api");
    std::fs::copy(env!("CARGO_BIN_EXE_pgdump-api"), &copy).unwrap();
    // `sh -c 'shift; exec COPY "$@"' sh BINARY serve …`: the copy runs in the test binary's place.
    let server = Server::builder(&db.url)
        .launcher([
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            format!("shift; exec '{}' \"$@\"", copy.display()),
            "sh".to_owned(),
        ])
        .start();
    let reply = crate::support::dump_json(&server, serde_json::json!({ "opts": ["-s"] })).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // Another program renamed over the running binary, as an upgrade does.
    let replacement = dir.path().join("new");
    std::fs::write(
        &replacement,
        "#!/bin/sh\necho 'not the server that is running' >&2\nexit 2\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &replacement,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::rename(&replacement, &copy).unwrap();
    let reply = crate::support::dump_json(&server, serde_json::json!({ "opts": ["-s"] })).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("CREATE TABLE"), "{}", reply.text());
}

/// Clients that leave while the webhook keeps them waiting give their turns back at once, not
/// after the hook's timeout: the next caller is judged straight away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_during_a_hook_call_give_their_turns_back() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let db = TestDb::new().await;
    let (hang, called) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (hanging, calls) = (Arc::clone(&hang), Arc::clone(&called));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::get(move || {
            let (hanging, calls) = (Arc::clone(&hanging), Arc::clone(&calls));
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if hanging.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                }
                (
                    [("content-type", "application/json")],
                    serde_json::json!({"x-hasura-role": "user"}).to_string(),
                )
            }
        }),
    );
    let hook = format!("{}/hook", serve_app(app).await);
    let server = Server::builder(&db.url)
        .secret("s3cret")
        .env("HASURA_GRAPHQL_AUTH_HOOK", &hook)
        .env("HASURA_GRAPHQL_AUTH_HOOK_TIMEOUT", "60")
        .start();
    let body = r#"{"opts":["-s"]}"#;
    let request = format!(
        "POST /v1alpha1/pg_dump HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let waiting: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut socket = TcpStream::connect(server.addr).unwrap();
            socket.write_all(request.as_bytes()).unwrap();
            socket
        })
        .collect();
    eventually("64 calls to the hook", || {
        called.load(Ordering::SeqCst) >= 64
    })
    .await;
    drop(waiting);
    hang.store(false, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        crate::support::post_dump(&server, body, &[("authorization", "Bearer x")]),
    )
    .await
    .expect("no turn for the hook after its callers left");
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_secs(20));
}
