//! Compressed answers: zstd and gzip round-trip byte-exact, `Accept-Encoding` is read as HTTP
//! says (q-values, `identity;q=0`, unknown codings, `Vary`), error answers and tiny answers go
//! uncompressed as Hasura sends them, and the client asks for zstd and notices a compressed
//! stream cut short.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::postgres::bin_dir;
use crate::support::{
    big_table_db, eventually, http, normalize_restrict_key, pg_dump_children, post_dump, Reply,
    Server, TestDb,
};

/// Rows whose values span lines, hold tabs, backslashes and SQL-looking text: a dump of a
/// few MB, so that the compressed stream has many chunks.
const MULTILINE: &str = r#"
CREATE TABLE notes (id int PRIMARY KEY, body text, extra jsonb);
INSERT INTO notes
SELECT g,
       'note ' || g || E'\nsecond line\twith a tab\n\n-- not a comment\n\\. not the end\n' || md5(g::text),
       jsonb_build_object('n', g, 'text', E'a\nb')
FROM generate_series(1, 20000) g;
"#;

fn decode(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    match coding {
        None => body.to_vec(),
        Some("zstd") => zstd::decode_all(body).expect("a complete zstd stream"),
        Some("gzip") => {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut plain)
                .expect("a complete gzip stream");
            plain
        }
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
}

async fn dump_with(server: &Server, body: &serde_json::Value, accept: &[&str]) -> Reply {
    let headers: Vec<_> = accept
        .iter()
        .map(|value| ("accept-encoding", *value))
        .collect();
    post_dump(server, body.to_string(), &headers).await
}

/// A custom-format archive as pg_restore reads it back, as SQL.
fn restored(archive: &[u8]) -> String {
    let mut child = Command::new(bin_dir().join("pg_restore"))
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("pg_restore");
    let mut stdin = child.stdin.take().unwrap();
    let archive = archive.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&archive));
    let mut sql = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut sql)
        .unwrap();
    writer.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success());
    normalize_restrict_key(&sql)
}

#[tokio::test]
async fn every_coding_round_trips_byte_exact() {
    let db = TestDb::with(MULTILINE).await;
    let server = Server::builder(&db.url).start();
    let plain_body = json!({"opts": ["--data-only"]});
    let identity = dump_with(&server, &plain_body, &[]).await;
    assert_eq!(identity.status, 200);
    assert_eq!(identity.header("content-encoding"), None);
    assert!(identity.body.len() > 2_000_000, "{}", identity.body.len());
    let custom_body = json!({"opts": ["-Fc"]});
    let custom = dump_with(&server, &custom_body, &[]).await;
    assert_eq!(custom.status, 200);
    for coding in ["zstd", "gzip"] {
        let reply = dump_with(&server, &plain_body, &[coding]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-encoding").as_deref(), Some(coding));
        assert!(
            reply.body.len() * 2 < identity.body.len(),
            "{coding}: not compressed"
        );
        let plain = decode(Some(coding), &reply.body);
        assert_eq!(
            normalize_restrict_key(&String::from_utf8(plain).unwrap()),
            normalize_restrict_key(&identity.text()),
            "{coding}"
        );

        let reply = dump_with(&server, &custom_body, &[coding]).await;
        assert_eq!(reply.header("content-encoding").as_deref(), Some(coding));
        let archive = decode(Some(coding), &reply.body);
        assert_eq!(restored(&archive), restored(&custom.body), "{coding}");
    }
}

#[tokio::test]
async fn accept_encoding_is_negotiated_as_http_says() {
    let db = TestDb::with(MULTILINE).await;
    let server = Server::builder(&db.url).start();
    let body = json!({"opts": ["--schema-only"]});
    let cases: &[(&[&str], u16, Option<&str>)] = &[
        (&[], 200, None),
        (&["gzip"], 200, Some("gzip")),
        (&["zstd"], 200, Some("zstd")),
        (&["gzip, deflate, br, zstd"], 200, Some("zstd")),
        (&["zstd;q=0.5, gzip"], 200, Some("gzip")),
        (&["gzip;q=0"], 200, None),
        (&["zstd;q=0, gzip;q=0.1"], 200, Some("gzip")),
        (&["br, deflate, compress"], 200, None),
        (&["*"], 200, Some("zstd")),
        (&["identity"], 200, None),
        (&["identity, gzip;q=0.5"], 200, None),
        (&["br", "gzip;q=0.3"], 200, Some("gzip")),
        (&["gzip, identity;q=0"], 200, Some("gzip")),
        (&["identity;q=0"], 406, None),
        (&["br, *;q=0"], 406, None),
        (&["gzip;q=0, zstd;q=0, identity;q=0"], 406, None),
    ];
    let mut plain = None;
    for (accept, status, coding) in cases {
        let reply = dump_with(&server, &body, accept).await;
        assert_eq!(reply.status, *status, "{accept:?}: {}", reply.text());
        assert_eq!(
            reply.header("content-encoding").as_deref(),
            *coding,
            "{accept:?}"
        );
        if *status == 406 {
            assert_eq!(reply.json()["code"], "not-acceptable", "{accept:?}");
            continue;
        }
        assert_eq!(
            reply.header("vary").as_deref(),
            Some("accept-encoding"),
            "{accept:?}"
        );
        let text =
            normalize_restrict_key(&String::from_utf8(decode(*coding, &reply.body)).unwrap());
        assert_eq!(
            plain.get_or_insert_with(|| text.clone()),
            &text,
            "{accept:?}"
        );
    }
    // A refused request started no pg_dump and the server goes on.
    assert!(pg_dump_children(server.pid()).is_empty());
}

#[tokio::test]
async fn error_answers_are_never_compressed() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).secret("s3cret").start();
    let client = http();
    let dump = server.url("/v1alpha1/pg_dump");
    let admin = ("x-hasura-admin-secret", "s3cret");
    let long_opts: Vec<String> = (0..200).map(|i| format!("--table=t{i}")).collect();
    for accept in ["gzip", "zstd", "gzip, zstd, identity;q=0", "*"] {
        let requests = [
            ("unknown path", client.get(server.url("/no/such/path"))),
            ("other method", client.get(&dump)),
            ("no secret", client.post(&dump).body("{}")),
            (
                "bad JSON",
                client.post(&dump).header(admin.0, admin.1).body("{"),
            ),
            (
                "forbidden option",
                client
                    .post(&dump)
                    .header(admin.0, admin.1)
                    .body(json!({"opts": ["-f", "/tmp/x"]}).to_string()),
            ),
            (
                "unknown source",
                client
                    .post(&dump)
                    .header(admin.0, admin.1)
                    .body(json!({"opts": long_opts, "source": "x".repeat(800)}).to_string()),
            ),
        ];
        for (what, request) in requests {
            let response = request
                .header("accept-encoding", accept)
                .send()
                .await
                .unwrap();
            let status = response.status();
            assert!(status.is_client_error(), "{what}: {status}");
            assert_eq!(
                response.headers().get("content-encoding"),
                None,
                "{what}, {accept}"
            );
            let body = response.bytes().await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
            assert!(body["code"].is_string(), "{what}: {body}");
        }
        for path in ["/healthz", "/v1/version"] {
            let response = client
                .get(server.url(path))
                .header("accept-encoding", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers().get("content-encoding"), None, "{path}");
        }
    }
}

#[tokio::test]
async fn tiny_answers_are_not_compressed_unless_identity_is_refused() {
    let db = TestDb::with("CREATE TABLE t (id int); INSERT INTO t VALUES (1);").await;
    let server = Server::builder(&db.url).start();
    let body = json!({"opts": ["--data-only", "-t", "t"], "clean_output": true});
    let plain = dump_with(&server, &body, &[]).await;
    assert_eq!(plain.status, 200);
    assert!(plain.body.len() < 700, "not tiny: {}", plain.body.len());
    for accept in ["gzip", "zstd", "gzip, zstd"] {
        let reply = dump_with(&server, &body, &[accept]).await;
        assert_eq!(reply.header("content-encoding"), None, "{accept}");
        assert_eq!(reply.text(), plain.text(), "{accept}");
    }
    let reply = dump_with(&server, &body, &["gzip, identity;q=0"]).await;
    assert_eq!(reply.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(decode(Some("gzip"), &reply.body), plain.body);
}

#[tokio::test]
async fn client_leaving_a_compressed_dump_stops_pg_dump() {
    // 60 MB of distinct hex digits: compressed by half at best, so a client that stops
    // reading holds pg_dump back whatever the socket buffers.
    let db = TestDb::with(
        "CREATE TABLE big (id int, payload text);
         INSERT INTO big SELECT g, (SELECT string_agg(md5(g::text || '/' || i), '') FROM generate_series(1, 32) i)
         FROM generate_series(1, 60000) g;",
    )
    .await;
    let server = Server::builder(&db.url).start();
    for coding in ["zstd", "gzip"] {
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        let body = r#"{"opts":["--data-only"]}"#;
        write!(
            stream,
            "POST /v1alpha1/pg_dump HTTP/1.1\r\nHost: test\r\nAccept-Encoding: {coding}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut head = [0u8; 4096];
        let n = stream.read(&mut head).unwrap();
        let head = String::from_utf8_lossy(&head[..n]).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(
            head.contains(&format!("content-encoding: {coding}")),
            "{head}"
        );
        // The client stops reading for a while, then leaves.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            pg_dump_children(server.pid()).len(),
            1,
            "pg_dump still writing"
        );
        drop(stream);
        eventually("pg_dump to be killed", || {
            pg_dump_children(server.pid()).is_empty()
        })
        .await;
    }
    let logs = server.wait_http_logs(2).await;
    assert!(
        logs.iter().all(|log| log["detail"]["complete"] == false),
        "{logs:?}"
    );
}

#[tokio::test]
async fn memory_stays_flat_while_compressing_a_large_dump() {
    let db = big_table_db().await;
    let server = Server::builder(&db.url).start();
    for coding in ["zstd", "gzip"] {
        let mut response = http()
            .post(server.url("/v1alpha1/pg_dump"))
            .header("accept-encoding", coding)
            .body(r#"{"opts": ["--data-only"]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut total = 0usize;
        while let Some(chunk) = response.chunk().await.unwrap() {
            total += chunk.len();
        }
        assert!(total > 1_000_000, "{coding}: {total} bytes");
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    assert!(peak_kib < 32 * 1024, "server peak RSS {peak_kib} KiB");
}

/// A one-request HTTP server that answers with `coding` and `body` as the whole (valid)
/// HTTP answer; returns its address and, once it has answered, the request it got.
fn one_shot_server(
    coding: &'static str,
    body: Vec<u8>,
) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let served = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers, then the JSON body (small, sent at once by the client).
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the client closed early");
            request.extend_from_slice(&buf[..n]);
        }
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/sql; charset=utf-8\r\n\
             Content-Encoding: {coding}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(&body).unwrap();
        String::from_utf8_lossy(&request).into_owned()
    });
    (addr, served)
}

#[test]
fn the_client_asks_for_zstd_and_notices_a_compressed_stream_cut_short() {
    let sql = "SELECT 1;\n".repeat(20_000);
    let zstd = zstd::encode_all(sql.as_bytes(), 3).unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(sql.as_bytes()).unwrap();
    let gzip = gzip.finish().unwrap();
    for (coding, compressed) in [("zstd", zstd), ("gzip", gzip)] {
        for cut in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("out.sql");
            let body = match cut {
                true => compressed[..compressed.len() / 2].to_vec(),
                false => compressed.clone(),
            };
            let (endpoint, served) = one_shot_server(coding, body);
            let output = crate::support::pgdump_api()
                .args(["dump", "-q", "--endpoint", &endpoint, "-o"])
                .arg(&out)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let request = served.join().unwrap().to_lowercase();
            let accept = request
                .lines()
                .find_map(|line| line.strip_prefix("accept-encoding:"))
                .unwrap_or_else(|| panic!("no accept-encoding in {request}"));
            assert!(accept.trim().starts_with("zstd"), "{accept}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            if cut {
                assert!(
                    !output.status.success(),
                    "{coding}: a cut stream was accepted"
                );
                assert!(stderr.contains("before the dump was complete"), "{stderr}");
                assert!(!out.exists(), "{coding}: a partial file was left");
            } else {
                assert!(output.status.success(), "{coding}: {stderr}");
                assert_eq!(std::fs::read_to_string(&out).unwrap(), sql);
            }
        }
    }
}

#[tokio::test]
async fn metrics_are_compressed_by_the_same_rules() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url)
        .args(["--enabled-apis", "pgdump,metrics"])
        .start();
    let get = |accept: &'static str| {
        let request = http().get(server.url("/v1/metrics"));
        async move {
            let response = request
                .header("accept-encoding", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let coding = response
                .headers()
                .get("content-encoding")
                .map(|value| value.to_str().unwrap().to_owned());
            (coding, response.bytes().await.unwrap().to_vec())
        }
    };
    // Whether the metrics are compressed is decided by their size, as for a dump.
    let (_, before) = get("identity").await;
    let (coding, _) = get("gzip").await;
    assert_eq!(
        coding.is_some(),
        before.len() >= 700,
        "metrics of {} bytes",
        before.len()
    );
    let reply = dump_with(&server, &json!({"opts": ["--schema-only"]}), &[]).await;
    assert_eq!(reply.status, 200);
    let (coding, plain) = get("identity").await;
    assert_eq!(coding, None);
    assert!(plain.len() >= 700, "metrics of {} bytes", plain.len());
    for accept in ["gzip", "zstd"] {
        let (coding, body) = get(accept).await;
        assert_eq!(coding.as_deref(), Some(accept));
        // The counters move between requests; the series names stay.
        let text = String::from_utf8(decode(coding.as_deref(), &body)).unwrap();
        let names = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|line| line.starts_with("# TYPE"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            names(&text),
            names(&String::from_utf8_lossy(&plain)),
            "{accept}"
        );
    }
}
