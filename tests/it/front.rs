//! Front mode (`--upstream`): pgdump-api in front of a Hasura stand-in ([`hasura`]). The
//! Hasura CLI's own request sequences, replayed as its source (v2.48, `cli/`) sends them, work
//! through the front; pg_dump's auth is the upstream's word for every credential but a known
//! admin secret; everything else passes through — bodies streamed both ways, WebSockets,
//! health — and survives clients that leave, an upstream that restarts, and requests that
//! must not be forwarded.

pub(crate) mod hasura;

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{eventually, http, Server, TestDb, REFERENCE_SCHEMA};
use hasura::{Hasura, ADMIN_SECRET, JWT_KEY, VERSION};

/// pgdump-api in front of `hasura`; `knows_secret`: configured with Hasura's admin secret.
fn front(db: &TestDb, hasura: &Hasura, knows_secret: bool) -> Server {
    let builder = Server::builder(&db.url).args(["--upstream", &hasura.url()]);
    match knows_secret {
        true => builder.secret(ADMIN_SECRET).start(),
        false => builder.start(),
    }
}

/// The Hasura CLI as its source sends requests: Go's HTTP client (its User-Agent, gzip
/// negotiated and decoded by the transport), JSON bodies written by `json.Encoder` (a
/// trailing newline), every URL built from the one `endpoint`.
struct HasuraCli {
    client: reqwest::Client,
    endpoint: String,
    /// Sent once `Validate` has learnt the server's version.
    admin_secret: Option<String>,
}

impl HasuraCli {
    fn new(endpoint: String, admin_secret: &str) -> HasuraCli {
        HasuraCli {
            client: reqwest::Client::builder()
                .user_agent("Go-http-client/1.1")
                .gzip(true)
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            endpoint,
            admin_secret: Some(admin_secret.to_owned()),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        secret: bool,
    ) -> (u16, String) {
        let url = format!("{}/{path}", self.endpoint);
        let mut request = self.client.request(method.parse().unwrap(), url);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(format!("{body}\n"));
        }
        if let (true, Some(secret)) = (secret, &self.admin_secret) {
            request = request.header("X-Hasura-Admin-Secret", secret);
        }
        let response = request.send().await.expect("the CLI's request");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// `hasura_cli` `ExecutionContext.Validate`, which every command below runs first:
    /// `util.GetServerStatus` and `checkServerVersion` (GET version, before the admin secret
    /// header is set), the config API, `export_metadata` on the v1 query path, and the server
    /// state's `get_catalog_state`.
    async fn validate(&self) {
        for _ in 0..2 {
            let (status, body) = self.send("GET", "v1/version", None, false).await;
            assert_eq!(status, 200, "{body}");
            let version: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(version["version"], VERSION);
        }
        // A failure here is only logged by the CLI; through the front it succeeds.
        let (status, body) = self.send("GET", "v1alpha1/config", None, true).await;
        assert_eq!(status, 200, "{body}");
        let export = json!({"type": "export_metadata", "args": {}});
        let (status, body) = self.send("POST", "v1/query", Some(export), true).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["version"], 3);
        self.catalog_state().await;
    }

    async fn catalog_state(&self) -> Value {
        let get = json!({"type": "get_catalog_state", "args": {}});
        let (status, body) = self.send("POST", "v1/metadata", Some(get), true).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// `hasuradb.ExportSchemaDump` / `seed.ExportDatadump`: the pg_dump request.
    async fn pg_dump(&self, opts: &[&str]) -> String {
        let request = json!({"opts": opts, "clean_output": true, "source": "default"});
        let (status, body) = self
            .send("POST", "v1alpha1/pg_dump", Some(request), true)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `migrate apply --skip-execution --version V`: the catalog state store's `SetVersion`
    /// (get the CLI state, mark the version, set it back).
    async fn mark_applied(&self, version: &str) {
        let state = self.catalog_state().await;
        let mut cli_state = state["cli_state"].clone();
        if cli_state.is_null() {
            cli_state = json!({"settings": {}, "isStateCopyCompleted": false});
        }
        cli_state["migrations"]["default"][version] = json!(false);
        let set = json!({"type": "set_catalog_state", "args": {"type": "cli", "state": cli_state}});
        let (status, body) = self.send("POST", "v1/metadata", Some(set), true).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hasura_cli_migrate_create_from_server_works_through_the_front() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let hasura = Hasura::start().await;
    // With the secret known (checked locally) and unknown (checked by Hasura).
    for knows_secret in [true, false] {
        let server = front(&db, &hasura, knows_secret);
        let cli = HasuraCli::new(server.url(""), ADMIN_SECRET);
        // `migrate create init --from-server`: Validate, NewMigrate's state read, the dump,
        // then `migrate apply --skip-execution` on the new version.
        cli.validate().await;
        cli.catalog_state().await;
        let sql = cli.pg_dump(&["-O", "-x", "--schema-only"]).await;
        assert!(sql.contains("CREATE TABLE public.articles"), "{sql}");
        cli.mark_applied("1718000000000").await;
        let state = cli.catalog_state().await;
        assert_eq!(
            state["cli_state"]["migrations"]["default"]["1718000000000"],
            false
        );
    }
    // Hasura saw the CLI's requests, the admin secret on each of them but the version checks.
    let seen = hasura.shared.seen();
    let versions = seen.iter().filter(|s| s.path == "/v1/version").count();
    assert_eq!(versions, 4);
    for call in seen
        .iter()
        .filter(|s| s.path == "/v1/metadata" || s.path == "/v1/query")
    {
        assert_eq!(call.headers["user-agent"], "Go-http-client/1.1");
        // Passed through, or an admin check that names the caller the same way.
        assert_eq!(call.headers["x-forwarded-for"], "127.0.0.1");
        if call.headers.get("x-hasura-admin-secret").is_none() {
            panic!("a metadata call without the secret: {call:?}");
        }
    }
    // pg_dump requests never reach Hasura.
    assert!(seen.iter().all(|s| s.path != "/v1alpha1/pg_dump"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hasura_cli_seed_create_and_metadata_export_work_through_the_front() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    db.client()
        .await
        .batch_execute("INSERT INTO authors (name) VALUES ('Ann'), ('Bob');")
        .await
        .unwrap();
    let hasura = Hasura::start().await;
    let server = front(&db, &hasura, false);
    let cli = HasuraCli::new(server.url(""), ADMIN_SECRET);
    // `seed create authors --from-table authors`: Validate, then the data dump; the CLI
    // quotes the table name.
    cli.validate().await;
    let sql = cli
        .pg_dump(&[
            "--no-owner",
            "--no-acl",
            "--data-only",
            "--column-inserts",
            "--table",
            "\"authors\"",
        ])
        .await;
    assert!(
        sql.contains("INSERT INTO public.authors (id, name) VALUES (1, 'Ann');"),
        "{sql}"
    );
    // `metadata export`: Validate, then export_metadata on the v1 metadata path.
    cli.validate().await;
    let export = json!({"type": "export_metadata", "args": {}});
    let (status, body) = cli.send("POST", "v1/metadata", Some(export), true).await;
    assert_eq!(status, 200, "{body}");
    let metadata: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(metadata["sources"][0]["name"], "default");
}

/// A pg_dump request with `headers`: (status, content type, body).
async fn dump_with(server: &Server, headers: &[(&str, String)]) -> (u16, String, String) {
    let mut request = http()
        .post(server.url("/v1alpha1/pg_dump"))
        .body(r#"{"opts":["--schema-only"]}"#);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dump_auth_is_the_upstreams_word_for_every_credential_but_a_known_secret() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let hasura = Hasura::start().await;
    let server = front(&db, &hasura, true);
    let bearer = |token: String| ("authorization", format!("Bearer {token}"));

    // An admin JWT: Hasura says admin, the dump runs.
    let admin = hasura::jwt(JWT_KEY, "admin", &["admin", "user"]);
    let (status, _, body) = dump_with(&server, &[bearer(admin.clone())]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("CREATE TABLE public.authors"));
    // The same token asking for another role: Hasura's refusal, word for word.
    let (status, content_type, body) =
        dump_with(&server, &[bearer(admin), ("x-hasura-role", "user".into())]).await;
    assert_eq!(
        (status, content_type.as_str()),
        (400, "application/json; charset=utf-8")
    );
    assert_eq!(
        body,
        r#"{"path":"$.args","error":"restricted access : admin only","code":"access-denied"}"#
    );
    // A user's JWT, a forged JWT, no credential at all: each as Hasura answers it.
    let user = hasura::jwt(JWT_KEY, "user", &["user"]);
    let forged = hasura::jwt(b"not-the-key-not-the-key-not-the-key", "admin", &["admin"]);
    let cases = [
        (vec![bearer(user)], 400, "restricted access : admin only"),
        (
            vec![bearer(forged)],
            400,
            "Could not verify JWT: JWSError JWSInvalidSignature",
        ),
        (
            vec![],
            400,
            "Missing 'Authorization' or 'Cookie' header in JWT authentication mode",
        ),
    ];
    for (headers, expected_status, message) in cases {
        let (status, _, body) = dump_with(&server, &headers).await;
        assert_eq!(status, expected_status, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], message);
    }
    // The admin check Hasura got: the caller's credential on a call that changes nothing.
    let checks: Vec<_> = hasura
        .shared
        .seen()
        .into_iter()
        .filter(|seen| seen.path == "/v1/metadata")
        .collect();
    assert_eq!(checks.len(), 5);
    for check in &checks {
        assert_eq!(
            check.body,
            Some(json!({"type": "get_catalog_state", "args": {}}))
        );
    }
    assert!(checks[0].headers["authorization"]
        .to_str()
        .unwrap()
        .starts_with("Bearer "));

    // The secret pgdump-api knows is checked here: Hasura is not asked.
    let before = hasura.shared.seen().len();
    let (status, _, _) =
        dump_with(&server, &[("x-hasura-admin-secret", ADMIN_SECRET.into())]).await;
    assert_eq!(status, 200);
    let (status, _, body) = dump_with(&server, &[("x-hasura-admin-secret", "wrong".into())]).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"code\":\"access-denied\""), "{body}");
    assert_eq!(hasura.shared.seen().len(), before);

    // An upstream that cannot answer: our 502, in our error format.
    let (_addr, _shared) = hasura.stop().await;
    let (status, _, body) = dump_with(&server, &[bearer("x.y.z".into())]).await;
    assert_eq!(status, 502, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "bad-gateway");
    assert_eq!(body["path"], "$");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_other_request_passes_through_unchanged() {
    let db = TestDb::new().await;
    let hasura = Hasura::start().await;
    let server = front(&db, &hasura, false);

    // The version is Hasura's.
    let version = http().get(server.url("/v1/version")).send().await.unwrap();
    let version: Value = serde_json::from_str(&version.text().await.unwrap()).unwrap();
    assert_eq!(version["version"], VERSION);

    // Method, path, query and headers pass; hop-by-hop headers stay; the caller is named.
    let response = http()
        .request(reqwest::Method::PATCH, server.url("/echo?a=1&b=%20"))
        .header("x-custom", "kept")
        .header("connection", "x-hop")
        .header("x-hop", "dropped")
        .header("accept-encoding", "gzip")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Not compressed by the front: Hasura's answer as Hasura sent it.
    assert!(response.headers().get("content-encoding").is_none());
    let seen_headers: Value =
        serde_json::from_str(response.headers()["x-seen-headers"].to_str().unwrap()).unwrap();
    assert_eq!(response.text().await.unwrap(), "hello");
    assert_eq!(seen_headers["x-custom"], "kept");
    assert!(seen_headers.get("x-hop").is_none(), "{seen_headers}");
    assert!(seen_headers.get("connection").is_none(), "{seen_headers}");
    assert_eq!(seen_headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen_headers["x-forwarded-proto"], "http");
    assert_eq!(seen_headers["x-forwarded-host"], server.addr.to_string());
    assert_eq!(seen_headers["host"], hasura.addr.to_string());
    let last = hasura.shared.seen().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("PATCH", "/echo?a=1&b=%20")
    );

    // A large request body streams up, and comes back.
    let size = 32 * 1024 * 1024;
    let upload = reqwest::Body::wrap_stream(futures_util::stream::iter(
        (0..size / 65536).map(|_| Ok::<_, std::io::Error>(vec![b'u'; 65536])),
    ));
    let mut response = http()
        .post(server.url("/echo"))
        .body(upload)
        .send()
        .await
        .unwrap();
    let mut received = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        received += chunk.len();
    }
    assert_eq!(received, size);

    // Health: ours and Hasura's.
    let health = http().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "OK");
    hasura.shared.unhealthy.store(true, Ordering::SeqCst);
    let health = http().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 500);
    assert_eq!(health.text().await.unwrap(), "ERROR");

    // An unreachable upstream: 502 in our error format.
    let (_addr, _shared) = hasura.stop().await;
    for path in ["/v1/graphql", "/healthz"] {
        let response = http().get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 502, "{path}");
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["code"], "bad-gateway", "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("did not answer"),
            "{body}"
        );
    }
}

/// The server's peak resident memory so far, in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_response_streams_through_in_flat_memory() {
    let db = TestDb::new().await;
    let hasura = Hasura::start().await;
    let server = front(&db, &hasura, false);
    // Warm up, then measure.
    let _ = http()
        .get(server.url("/big?mb=1"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    let before = peak_rss_kb(server.pid());
    let mut response = http().get(server.url("/big?mb=100")).send().await.unwrap();
    assert_eq!(
        response.headers()["content-length"],
        (100 << 20).to_string()
    );
    let mut received = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        received += chunk.len();
    }
    assert_eq!(received, 100 << 20);
    let grown = peak_rss_kb(server.pid()).saturating_sub(before);
    assert!(grown < 8 * 1024, "the server grew by {grown} kB");
}

/// Sends a raw request; returns what came back until the connection closed or went quiet.
fn raw(server: &Server, request: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_pass_through_and_outlive_connection_shedding() {
    let db = TestDb::new().await;
    let hasura = Hasura::start().await;
    // A cap of 8 connections, so that the traffic below sheds idle ones.
    let server = Server::builder(&db.url)
        .args(["--upstream", &hasura.url(), "--max-connections", "8"])
        .start();
    let mut sockets = Vec::new();
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut socket = std::net::TcpStream::connect(server.addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            socket,
            "GET /v1/graphql HTTP/1.1\r\nHost: front\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        )
        .unwrap();
        let head = read_head(&mut socket);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("sec-websocket-protocol: {protocol}")),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase().contains("upgrade: websocket"),
            "{head}"
        );
        sockets.push(socket);
    }
    // More connections than the cap come and go; the WebSockets stay.
    let idle: Vec<_> = (0..12)
        .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
        .collect();
    for _ in 0..3 {
        let response = http().get(server.url("/v1/version")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    drop(idle);
    for (i, socket) in sockets.iter_mut().enumerate() {
        let message = format!("{{\"type\":\"connection_init\",\"n\":{i}}}");
        socket.write_all(message.as_bytes()).unwrap();
        let mut echoed = vec![0; message.len()];
        socket.read_exact(&mut echoed).unwrap();
        assert_eq!(String::from_utf8(echoed).unwrap(), message);
    }
}

/// Opens a WebSocket through the front: the socket and the head of the answer.
pub(crate) fn open_websocket(server: &Server) -> (std::net::TcpStream, String) {
    let mut socket = std::net::TcpStream::connect(server.addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket
        .write_all(
            b"GET /v1/graphql HTTP/1.1\r\nHost: front\r\nConnection: Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n",
        )
        .unwrap();
    let head = read_head(&mut socket);
    (socket, head)
}

/// Whatever anyone holds open through the front, an admin can still dump: requests and
/// WebSockets passing through never take the last connections (64, or half a small cap);
/// past that they are told to retry (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_through_never_takes_the_connections_an_admin_needs() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let hasura = Hasura::start().await;
    let server = Server::builder(&db.url)
        .secret(ADMIN_SECRET)
        .args(["--upstream", &hasura.url(), "--max-connections", "16"])
        .start();
    let (mut open, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..16 {
        let (socket, head) = open_websocket(&server);
        match head.starts_with("HTTP/1.1 101") {
            true => open.push(socket),
            false => {
                let lower = head.to_ascii_lowercase();
                assert!(head.starts_with("HTTP/1.1 503"), "{head}");
                assert!(lower.contains("retry-after: 5"), "{head}");
                refused.push(socket);
            }
        }
    }
    assert_eq!((open.len(), refused.len()), (8, 8));
    let admin = [("x-hasura-admin-secret", ADMIN_SECRET.to_owned())];
    let (status, _, body) = dump_with(&server, &admin).await;
    assert_eq!(status, 200, "{body}");
    // A WebSocket that closes frees its place.
    drop(open.pop());
    eventually("a WebSocket to pass through again", || {
        open_websocket(&server).1.starts_with("HTTP/1.1 101")
    })
    .await;
}

fn read_head(socket: &mut std::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_mid_response_leave_no_upstream_request_behind() {
    let db = TestDb::new().await;
    let hasura = Hasura::start().await;
    let server = front(&db, &hasura, false);
    let url = server.url("/big?mb=4");
    let requests: Vec<_> = (0..100)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut response = http().get(url).send().await.unwrap();
                let mut received = 0;
                while let Some(chunk) = response.chunk().await.unwrap() {
                    received += chunk.len();
                    // One in five leaves after its first 256 KiB.
                    if i % 5 == 0 && received >= 256 * 1024 {
                        return None;
                    }
                }
                Some(received)
            })
        })
        .collect();
    let mut complete = 0;
    for request in requests {
        if let Some(received) = request.await.unwrap() {
            assert_eq!(received, 4 << 20);
            complete += 1;
        }
    }
    assert_eq!(complete, 80);
    // Every upstream response stream ended: none is left streaming to a client that left.
    eventually("no upstream stream left", || {
        hasura.shared.streaming.load(Ordering::SeqCst) == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_recovers_when_the_upstream_restarts() {
    let db = TestDb::new().await;
    let hasura = Hasura::start().await;
    let server = front(&db, &hasura, false);
    let version = || async {
        http()
            .get(server.url("/v1/version"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // Pooled connections to the upstream exist when it goes away.
    for _ in 0..3 {
        assert_eq!(version().await, 200);
    }
    let (addr, shared) = hasura.stop().await;
    assert_eq!(version().await, 502);
    let _hasura = Hasura::start_at(addr, shared).await;
    for _ in 0..3 {
        assert_eq!(version().await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_must_not_be_forwarded_are_refused_or_neutralised() {
    let db = TestDb::new().await;
    let hasura = Hasura::start().await;
    let server = front(&db, &hasura, false);
    // Content-Length and Transfer-Encoding: the chunked framing wins, the connection closes
    // after the answer, and the request hidden behind the body never reaches the upstream.
    let smuggled = b"POST /echo HTTP/1.1\r\nHost: f\r\nContent-Length: 41\r\nTransfer-Encoding: chunked\r\n\r\n\
        0\r\n\r\nGET /v1/smuggled HTTP/1.1\r\nHost: f\r\n\r\n";
    let answer = raw(&server, smuggled);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
    // Transfer-Encoding that is not chunked, a header with a bad byte, a bad name: 400, and
    // nothing forwarded.
    let before = hasura.shared.seen().len();
    for request in [
        &b"POST /echo HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: gzip\r\n\r\nabc"[..],
        b"GET /echo HTTP/1.1\r\nHost: f\r\nX-Bad: a\x01b\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: f\r\nBad Name: x\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: f\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ] {
        let answer = raw(&server, request);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    let seen = hasura.shared.seen();
    assert_eq!(seen.len(), before, "{:?}", &seen[before..]);
    assert!(seen.iter().all(|s| s.path != "/v1/smuggled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_marks_its_migration_applied_when_the_server_has_the_metadata_api() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let hasura = Hasura::start().await;
    let fronted = front(&db, &hasura, true);
    let bare = Server::builder(&db.url).secret(ADMIN_SECRET).start();
    let project = tempfile::tempdir().unwrap();
    let migrate = |server: &Server| {
        let output = crate::support::pgdump_api()
            .args(["migrate", "create", "init", "--from-server", "--endpoint"])
            .arg(server.url(""))
            .args(["--admin-secret", ADMIN_SECRET, "--project"])
            .arg(project.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        let up_sql = String::from_utf8(output.stdout).unwrap();
        // .../migrations/default/VERSION_init/up.sql
        let version = up_sql
            .trim()
            .rsplit('/')
            .nth(1)
            .unwrap()
            .split('_')
            .next()
            .unwrap()
            .to_owned();
        (version, stderr)
    };
    let (version, stderr) = migrate(&fronted);
    assert!(
        stderr.contains(&format!("marked migration {version} as applied")),
        "{stderr}"
    );
    assert_eq!(
        hasura.shared.cli_state()["migrations"]["default"][&version],
        false
    );
    // A bare pgdump-api: the migration is written, and the user told how to mark it.
    let (version, stderr) = migrate(&bare);
    assert!(
        stderr.contains(&format!(
            "hasura migrate apply --skip-execution --version {version} --database-name default"
        )),
        "{stderr}"
    );
}

/// The dump page's endpoints and the metrics are judged like the dump itself in front mode:
/// with no secret of its own, pgdump-api asks Hasura, and is never open.
#[tokio::test]
async fn page_endpoints_and_metrics_are_judged_by_the_upstream() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let hasura = Hasura::start().await;
    let server = Server::builder(&db.url)
        .args([
            "--upstream",
            &hasura.url(),
            "--enabled-apis",
            "pgdump,metrics",
        ])
        .start();
    let admin = format!("Bearer {}", hasura::jwt(JWT_KEY, "admin", &["admin"]));
    let user = format!("Bearer {}", hasura::jwt(JWT_KEY, "user", &["user"]));
    for path in ["/v1alpha1/pg_dump/sources", "/v1/metrics"] {
        let get = |authorization: Option<&str>| {
            let mut request = http().get(server.url(path));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            async move { request.send().await.unwrap().status().as_u16() }
        };
        assert_eq!(get(Some(&admin)).await, 200, "{path} as admin");
        assert_eq!(get(Some(&user)).await, 400, "{path} as a user");
        assert_eq!(get(None).await, 400, "{path} without a credential");
    }
}

/// Hasura logs what it answers: pgdump-api's http-log has only its own requests, so pipelines
/// built for Hasura's logs count a passed-through request once.
#[tokio::test]
async fn passed_through_requests_are_not_in_pgdump_apis_http_log() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let hasura = Hasura::start().await;
    let server = front(&db, &hasura, true);
    let version = http().get(server.url("/v1/version")).send().await.unwrap();
    assert_eq!(version.status(), 200);
    let (status, _, _) =
        dump_with(&server, &[("x-hasura-admin-secret", ADMIN_SECRET.into())]).await;
    assert_eq!(status, 200);
    let logs = server.wait_http_logs(1).await;
    let urls: Vec<&str> = logs
        .iter()
        .filter_map(|line| line["detail"]["url"].as_str())
        .collect();
    assert_eq!(urls, ["/v1alpha1/pg_dump"]);
}
