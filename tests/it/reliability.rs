//! Limits, time limits, shutdown and hostile input: what a client sees when it hits them,
//! and that no pg_dump is left behind.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    big_table_db, dump_json, eventually, http, lock_articles, pg_dump_children, post_dump,
    send_raw, spawn_dump, Server, TestDb, REFERENCE_SCHEMA,
};

/// The metrics text, read with the admin role (no secret configured).
async fn metrics(server: &Server) -> String {
    let response = http().get(server.url("/v1/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn concurrency_limit_queues_and_never_exceeds_it() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url)
        .args([
            "--pg-dump-max-concurrent",
            "2",
            "--enabled-apis",
            "pgdump,metrics",
        ])
        .start();
    let lock = lock_articles(&db).await;
    let requests: Vec<_> = (0..6).map(|_| spawn_dump(&server)).collect();
    eventually("2 pg_dump running", || {
        pg_dump_children(server.pid()).len() == 2
    })
    .await;
    eventually_async(&server, "4 requests queued", |text| {
        metric(text, "pgdump_dumps_queued{source=\"default\"}") == Some(4.0)
    })
    .await;
    let watch_until = Instant::now() + Duration::from_millis(700);
    while Instant::now() < watch_until {
        assert!(pg_dump_children(server.pid()).len() <= 2);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(lock);
    for request in requests {
        let (status, _, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("CREATE TABLE public.articles"));
    }
    let text = metrics(&server).await;
    assert_eq!(
        metric(&text, "pgdump_dumps_succeeded_total{source=\"default\"}"),
        Some(6.0)
    );
    assert_eq!(
        metric(&text, "pgdump_dumps_running{source=\"default\"}"),
        Some(0.0)
    );
}

/// Polls the metrics until `check` holds.
async fn eventually_async(server: &Server, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check(&metrics(server).await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A server that runs one pg_dump at a time and lets one more request wait.
async fn one_slot_one_place_in_line() -> (TestDb, Server) {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url)
        .args(["--pg-dump-max-concurrent", "1", "--pg-dump-max-queue", "1"])
        .args(["--enabled-apis", "pgdump,metrics"])
        .start();
    (db, server)
}

#[tokio::test]
async fn full_queue_is_a_503_with_retry_after() {
    let (db, server) = one_slot_one_place_in_line().await;
    let lock = lock_articles(&db).await;
    let running = spawn_dump(&server);
    eventually("pg_dump running", || {
        pg_dump_children(server.pid()).len() == 1
    })
    .await;
    let queued = spawn_dump(&server);
    eventually_async(&server, "1 queued", |text| {
        metric(text, "pgdump_dumps_queued{source=\"default\"}") == Some(1.0)
    })
    .await;
    let (status, retry, body) = spawn_dump(&server).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.as_deref(), Some("5"));
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "unavailable");
    assert_eq!(
        body["error"],
        "source \"default\" is busy: 1 dumps running and 1 waiting; retry later"
    );
    drop(lock);
    assert_eq!(running.await.unwrap().0, 200);
    assert_eq!(queued.await.unwrap().0, 200);
}

#[tokio::test]
async fn a_client_leaving_the_queue_frees_its_place() {
    let (db, server) = one_slot_one_place_in_line().await;
    let lock = lock_articles(&db).await;
    let running = spawn_dump(&server);
    eventually("pg_dump running", || {
        pg_dump_children(server.pid()).len() == 1
    })
    .await;
    let leaving = send_raw(&server, r#"{"opts":["--schema-only"]}"#);
    eventually_async(&server, "1 queued", |text| {
        metric(text, "pgdump_dumps_queued{source=\"default\"}") == Some(1.0)
    })
    .await;
    drop(leaving);
    eventually_async(&server, "queue empty, the leaver counted", |text| {
        metric(text, "pgdump_dumps_queued{source=\"default\"}") == Some(0.0)
            && metric(
                text,
                "pgdump_dumps_failed_total{source=\"default\",reason=\"client_gone\"}",
            ) == Some(1.0)
    })
    .await;
    let queued = spawn_dump(&server);
    drop(lock);
    assert_eq!(running.await.unwrap().0, 200);
    assert_eq!(queued.await.unwrap().0, 200);
}

#[tokio::test]
async fn time_limit_before_the_first_byte_is_a_504_and_kills_pg_dump() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url)
        .args(["--pg-dump-timeout", "1"])
        .start();
    let _lock = lock_articles(&db).await;
    let started = Instant::now();
    let reply = dump_json(&server, json!({"opts": ["--schema-only"]})).await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_secs(20));
    let body = reply.json();
    assert_eq!(body["code"], "timeout");
    assert_eq!(
        body["error"],
        "pg_dump ran past the time limit of 1 s and was stopped"
    );
    eventually("pg_dump to be gone", || {
        pg_dump_children(server.pid()).is_empty()
    })
    .await;
}

#[tokio::test]
async fn time_limit_mid_stream_aborts_the_response() {
    let db = big_table_db().await;
    let server = Server::builder(&db.url)
        .args(["--pg-dump-timeout", "2"])
        .start();
    let mut response = http()
        .post(server.url("/v1alpha1/pg_dump"))
        .body(r#"{"opts":["--data-only"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.chunk().await.unwrap().expect("first chunk");
    // A slow reader: pg_dump waits on the full pipe until the limit kills it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outcome = crate::support::drain(&mut response).await;
    assert!(
        outcome.is_err(),
        "the cut-off dump must not end like a complete one"
    );
    eventually("pg_dump to be gone", || {
        pg_dump_children(server.pid()).is_empty()
    })
    .await;
    let logs = server.wait_http_logs(1).await;
    let error = logs[0]["detail"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("time limit"), "{error}");
}

#[tokio::test]
async fn twenty_clients_leaving_mid_stream_leave_no_pg_dump_behind() {
    let db = big_table_db().await;
    let server = Server::builder(&db.url)
        .args(["--pg-dump-max-concurrent", "20"])
        .start();
    let body = r#"{"opts":["--data-only"]}"#;
    let clients: Vec<_> = (0..20).map(|_| send_raw(&server, body)).collect();
    for mut client in clients {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < 100_000 {
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0, "stream ended early");
            got += n;
        }
        drop(client);
    }
    eventually("every pg_dump to be gone", || {
        pg_dump_children(server.pid()).is_empty()
    })
    .await;
    let admin = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sessions = crate::support::pg_dump_sessions(&admin, &db).await;
        if sessions == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{sessions} pg_dump sessions left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = dump_json(&server, json!({"opts": ["--schema-only"]})).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn shutdown_past_the_grace_period_kills_pg_dump_and_exits_0() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url)
        .args(["--graceful-shutdown-timeout", "1"])
        .start();
    let _lock = lock_articles(&db).await;
    let _request = spawn_dump(&server);
    eventually("pg_dump running", || {
        pg_dump_children(server.pid()).len() == 1
    })
    .await;
    let pg_dump = pg_dump_children(server.pid())[0];
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(15));
    eventually("pg_dump to be gone", || {
        !std::path::Path::new(&format!("/proc/{pg_dump}")).exists()
            || std::fs::read_to_string(format!("/proc/{pg_dump}/stat"))
                .is_ok_and(|stat| stat.contains(") Z "))
    })
    .await;
}

#[tokio::test]
async fn slow_request_headers_are_cut_off() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url)
        .args(["--request-header-timeout", "1"])
        .start();
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"POST /v1alpha1/pg_dump HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "connection held open"
    );
    let reply = dump_json(&server, json!({"opts": ["-s"]})).await;
    assert_eq!(reply.status, 200);
}

/// The metrics count a dump. (Who may read them is tested in-process, in `src/http/tests`.)
#[tokio::test]
async fn metrics_count_a_dump() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url)
        .secret("adm")
        .args([
            "--enabled-apis",
            "pgdump,metrics",
            "--metrics-secret",
            "m3trics",
        ])
        .start();
    let reply = post_dump(
        &server,
        r#"{"opts":["-s"]}"#,
        &[("x-hasura-admin-secret", "adm")],
    )
    .await;
    assert_eq!(reply.status, 200);
    let response = http()
        .get(server.url("/v1/metrics"))
        .header("authorization", "Bearer m3trics")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let version = reply.header("x-pg-dump-version").unwrap();
    for series in [
        "pgdump_dumps_started_total{source=\"default\"} 1".to_owned(),
        "pgdump_dumps_succeeded_total{source=\"default\"} 1".to_owned(),
        format!("pgdump_pg_dump_runs_total{{source=\"default\",version=\"{version}\"}} 1"),
        "pgdump_dump_duration_seconds_count{source=\"default\"} 1".to_owned(),
        "pgdump_pg_dump_installed{".to_owned(),
    ] {
        assert!(text.contains(&series), "{series} not in\n{text}");
    }
}

/// Malformed and hostile requests: each a 4xx JSON error, no pg_dump started, server healthy.
#[tokio::test]
async fn a_barrage_of_bad_requests_starts_no_pg_dump() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url)
        .secret("s3cret")
        .args(["--enabled-apis", "pgdump,metrics"])
        .start();
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let long_option = format!("--{}", "x".repeat(100_000));
    let long_source = "s".repeat(100_000);
    let bodies: Vec<String> = vec![
        String::new(),
        "{".into(),
        "{\"opts\":[".into(),
        "{\"opts\":[\"-s\"]".into(),
        "null".into(),
        "42".into(),
        "\"opts\"".into(),
        "[]".into(),
        "{}".into(),
        "{\"opts\":{}}".into(),
        "{\"opts\":[1]}".into(),
        "{\"opts\":[null]}".into(),
        "{\"opts\":[[\"-s\"]]}".into(),
        "{\"opts\":[],\"clean_output\":1}".into(),
        "{\"opts\":[],\"source\":[]}".into(),
        "{\"opts\":[],\"source\":\"\"}".into(),
        "{\"opts\":[\"-s\\u0000x\"]}".into(),
        "{\"opts\":[\"--schema=a\\u0000b\"]}".into(),
        "\u{0}\u{0}\u{0}".into(),
        "{\"opts\":[\"\\ud800\"]}".into(),
        nested,
        json!({"opts": [long_option]}).to_string(),
        json!({"opts": [], "source": long_source}).to_string(),
        json!({"opts": ["-f", "/tmp/pwned.sql"]}).to_string(),
        json!({"opts": ["--filter=/etc/passwd"]}).to_string(),
        json!({"opts": ["-Fd"]}).to_string(),
        json!({"opts": ["-j", "8"]}).to_string(),
        json!({"opts": ["-d", "postgres"]}).to_string(),
        json!({"opts": ["-h", "evil"]}).to_string(),
        json!({"opts": ["-U", "root"]}).to_string(),
        json!({"opts": ["--role=pg_read_all_data"]}).to_string(),
        json!({"opts": ["-W"]}).to_string(),
        json!({"opts": ["--version"]}).to_string(),
        json!({"opts": ["-?"]}).to_string(),
        json!({"opts": ["--no-p"]}).to_string(),
        json!({"opts": ["--s"]}).to_string(),
        json!({"opts": ["-E", "LATIN1"]}).to_string(),
        json!({"opts": ["-Fc"], "clean_output": true}).to_string(),
        json!({"opts": ["--", "-s"]}).to_string(),
        json!({"opts": ["postgres"]}).to_string(),
        format!(
            "{{\"opts\":[],\"pad\":\"{}\"}}",
            "x".repeat(2 * 1024 * 1024)
        ),
    ];
    let admin = [("x-hasura-admin-secret", "s3cret")];
    for body in &bodies {
        let reply = post_dump(&server, body.clone(), &admin).await;
        let shown: String = body.chars().take(80).collect();
        assert!(
            (400..500).contains(&reply.status),
            "{shown:?}: {} {}",
            reply.status,
            reply.text()
        );
        let json = reply.json();
        assert!(
            json["error"].is_string() && json["code"].is_string(),
            "{shown:?}: {json}"
        );
    }
    // Hostile headers too: near-miss secrets, a huge role.
    let big_role = "r".repeat(50_000);
    let odd = [
        vec![("x-hasura-admin-secret", "s3creT")],
        vec![("x-hasura-admin-secret", "s3cre")],
        vec![
            ("x-hasura-admin-secret", "s3cret"),
            ("x-hasura-role", big_role.as_str()),
        ],
    ];
    for headers in odd {
        let reply = post_dump(&server, r#"{"opts":["-s"]}"#, &headers).await;
        assert!((400..500).contains(&reply.status), "{}", reply.text());
    }
    assert!(pg_dump_children(server.pid()).is_empty());
    let text = {
        let response = http()
            .get(server.url("/v1/metrics"))
            .header("x-hasura-admin-secret", "s3cret")
            .send()
            .await
            .unwrap();
        response.text().await.unwrap()
    };
    assert_eq!(
        metric(&text, "pgdump_dumps_started_total{source=\"default\"}"),
        None,
        "{text}"
    );
    let reply = post_dump(&server, r#"{"opts":["-s"]}"#, &admin).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}
