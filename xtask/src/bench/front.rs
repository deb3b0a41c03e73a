//! Front mode (`--upstream`) side by side with the upstream it fronts, in one run: an
//! upstream stand-in in this process (hyper, on its own runtime thread) answers small
//! requests, a large streamed response, the admin check of the metadata API, and WebSocket
//! upgrades; the same requests go straight to it and through pgdump-api in front of it,
//! alternating. Measured: the latency a small request gains, the throughput a large response
//! keeps, the server's peak memory while things pass through, the time a delegated auth check
//! adds to a pg_dump request (against a locally checked admin secret), and how many idle
//! WebSockets the front holds at once and at what memory each.
//!
//! Settings (environment):
//!   BENCH_FRONT              1 (default) runs this part; 0 skips it
//!   BENCH_FRONT_SMALL        small requests per side (default 2000)
//!   BENCH_FRONT_BIG_MB       size of the large response in MiB (default 100)
//!   BENCH_WEBSOCKETS         idle WebSockets to hold open (default 10000; `scripts/bench`
//!                            raises the open-files limit for it)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xtask::Cluster;

use super::{median, micros};
use crate::server::{Options, Server};
use crate::{env_number, status_kib, step};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

const CHUNK: usize = 64 * 1024;
const TINY_DUMP: &str =
    r#"{"opts": ["-O", "-x", "--schema-only", "--schema", "public"], "clean_output": true}"#;

/// Runs the front-mode measurements; the table for the report, or `None` when skipped.
pub(super) fn run(bin: &Path, cluster: &Cluster, db: &str, secret: &str) -> Result<Option<String>> {
    if std::env::var("BENCH_FRONT").is_ok_and(|value| value == "0") {
        return Ok(None);
    }
    let small = env_number("BENCH_FRONT_SMALL", 2000)? as usize;
    let big_mb = env_number("BENCH_FRONT_BIG_MB", 100)?;
    let wanted = env_number("BENCH_WEBSOCKETS", 10_000)? as usize;
    // Each WebSocket takes two descriptors here (the client's socket, the upstream's) and two
    // in the server; `scripts/bench` raises the limit as far as the machine lets it.
    let room = (open_files_limit().saturating_sub(256) / 2) as usize;
    let websockets = wanted.min(room);
    if websockets < wanted {
        eprintln!("    the open-files limit allows {websockets} WebSockets, not {wanted}");
    }

    // The upstream gets a thread of its own, as a separate Hasura would have.
    let upstream_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let upstream = upstream_runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let upstream_addr = upstream.local_addr()?;
    upstream_runtime.spawn(serve_upstream(upstream));
    // A bare TCP relay to the same upstream, on threads of its own as a separate process
    // would be: what copying the bytes alone costs a proxy.
    let relay_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let relay = relay_runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let relay_addr = relay.local_addr()?;
    relay_runtime.spawn(serve_relay(relay, upstream_addr));

    let server = Server::start(
        bin,
        &Options {
            database_url: &cluster.url(db),
            admin_secret: secret,
            pg_dump: &cluster.pg_dump(),
            port: 0,
            env: &[
                (
                    "HASURA_GRAPHQL_PG_DUMP_UPSTREAM",
                    format!("http://{upstream_addr}"),
                ),
                // Room for the WebSockets: they are never shed.
                (
                    "HASURA_GRAPHQL_MAX_CONNECTIONS",
                    (websockets + 64).to_string(),
                ),
            ],
            echo: false,
        },
    )?;
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let direct = format!("http://{upstream_addr}");
    let front = format!("http://{}", server.addr);
    let http = reqwest::Client::builder().no_gzip().build()?;
    let mut rows = Vec::new();

    step(&format!(
        "front mode: {small} small requests per side, alternating"
    ));
    let (direct_us, front_us) = client_runtime.block_on(async {
        let (mut direct_us, mut front_us) = (Vec::new(), Vec::new());
        for _ in 0..small {
            direct_us.push(timed_get(&http, &format!("{direct}/small")).await?.0);
            front_us.push(timed_get(&http, &format!("{front}/small")).await?.0);
        }
        anyhow::Ok((median(&direct_us), median(&front_us)))
    })?;
    note(
        &mut rows,
        format!(
            "| small request, median latency | {:.3} ms | {:.3} ms (+{:.3} ms) | ≤ +1 ms |",
            direct_us / 1e3,
            front_us / 1e3,
            (front_us - direct_us) / 1e3
        ),
    );

    let rounds = 5;
    step(&format!(
        "front mode: a {big_mb} MiB response, {rounds} rounds per side, alternating"
    ));
    let bytes = big_mb << 20;
    let relayed = format!("http://{relay_addr}");
    let (direct_us, front_us, relay_us) = client_runtime.block_on(async {
        let (mut direct_us, mut front_us, mut relay_us) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            for (base, series) in [
                (&direct, &mut direct_us),
                (&front, &mut front_us),
                (&relayed, &mut relay_us),
            ] {
                let (us, got) = timed_get(&http, &format!("{base}/big?mb={big_mb}")).await?;
                if got != bytes {
                    bail!("{got} bytes of {bytes}");
                }
                series.push(us);
            }
        }
        anyhow::Ok((median(&direct_us), median(&front_us), median(&relay_us)))
    })?;
    let mb_s = |us: f64| bytes as f64 / (1 << 20) as f64 / (us / 1e6);
    note(
        &mut rows,
        format!(
            "| {big_mb} MiB response, throughput | {:.0} MiB/s | {:.0} MiB/s ({:.2}×) | ≥ 0.95× |",
            mb_s(direct_us),
            mb_s(front_us),
            direct_us / front_us
        ),
    );
    note(
        &mut rows,
        format!(
            "| for reference: the same response through a bare TCP relay (bytes copied, nothing parsed) | {:.0} MiB/s | {:.0} MiB/s ({:.2}×) | |",
            mb_s(direct_us),
            mb_s(relay_us),
            direct_us / relay_us
        ),
    );

    step(&format!("front mode: a tiny pg_dump with a local admin secret vs a delegated auth check, {small} / 10 rounds"));
    let (local_us, delegated_us) = client_runtime.block_on(async {
        let (mut local_us, mut delegated_us) = (Vec::new(), Vec::new());
        let url = format!("{front}/v1alpha1/pg_dump");
        for _ in 0..(small / 10).max(10) {
            let start = Instant::now();
            let sent = http.post(&url).header("x-hasura-admin-secret", secret);
            drain(sent.body(TINY_DUMP).send().await?).await?;
            local_us.push(micros(start));
            let start = Instant::now();
            let sent = http
                .post(&url)
                .header("authorization", "Bearer an-admin-token");
            drain(sent.body(TINY_DUMP).send().await?).await?;
            delegated_us.push(micros(start));
        }
        anyhow::Ok((median(&local_us), median(&delegated_us)))
    })?;
    note(&mut rows, format!(
        "| tiny pg_dump request, delegated auth vs local secret | {:.2} ms | {:.2} ms (+{:.2} ms) | ≤ +2 ms |",
        local_us / 1e3,
        delegated_us / 1e3,
        (delegated_us - local_us) / 1e3
    ));
    // The check alone: a request refused right after it (an option pg_dump lacks).
    let (local_us, delegated_us) = client_runtime.block_on(async {
        let (mut local_us, mut delegated_us) = (Vec::new(), Vec::new());
        let url = format!("{front}/v1alpha1/pg_dump");
        let refused = r#"{"opts": ["--no-such-option"]}"#;
        for _ in 0..small {
            for (name, value, series) in [
                ("x-hasura-admin-secret", secret, &mut local_us),
                ("authorization", "Bearer an-admin-token", &mut delegated_us),
            ] {
                let start = Instant::now();
                let response = http
                    .post(&url)
                    .header(name, value)
                    .body(refused)
                    .send()
                    .await?;
                if response.status() != reqwest::StatusCode::BAD_REQUEST {
                    bail!("expected a 400, got {}", response.status());
                }
                response.bytes().await?;
                series.push(micros(start));
            }
        }
        anyhow::Ok((median(&local_us), median(&delegated_us)))
    })?;
    note(&mut rows, format!(
        "| pg_dump request refused after auth (no pg_dump run), delegated auth vs local secret | {:.3} ms | {:.3} ms (+{:.3} ms) | ≤ +2 ms |",
        local_us / 1e3,
        delegated_us / 1e3,
        (delegated_us - local_us) / 1e3
    ));
    let peak_kib = status_kib(server.pid(), "VmHWM");
    note(
        &mut rows,
        format!(
            "| server memory, peak after all of the above | | {:.1} MiB | ≤ 32 MiB |",
            peak_kib as f64 / 1024.0
        ),
    );

    step(&format!(
        "front mode: {websockets} idle WebSockets held open at once"
    ));
    let before_kib = status_kib(server.pid(), "VmRSS");
    let (open, answered) = client_runtime.block_on(hold_websockets(server.addr, websockets))?;
    let after_kib = status_kib(server.pid(), "VmRSS");
    let each = (after_kib.saturating_sub(before_kib)) as f64 * 1024.0 / open.max(1) as f64;
    note(&mut rows, format!(
        "| idle WebSockets held open at once | | {open} opened, {answered} still answering; {:.1} KiB each | {websockets}, none dropped, ≤ 20 KiB each |",
        each / 1024.0
    ));
    drop(server);
    upstream_runtime.shutdown_timeout(Duration::from_secs(1));
    relay_runtime.shutdown_timeout(Duration::from_secs(1));

    let mut table =
        "| through the front (pgdump-api `--upstream`) | straight to the upstream | through the front | target |\n|---|---|---|---|\n"
            .to_owned();
    for row in rows {
        table.push_str(&row);
        table.push('\n');
    }
    Ok(Some(table))
}

/// Relays each connection to `upstream` byte for byte, with 256 KiB buffers each way.
async fn serve_relay(listener: TcpListener, upstream: SocketAddr) {
    const BUFFER: usize = 256 * 1024;
    while let Ok((mut inbound, _)) = listener.accept().await {
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut inbound,
                    &mut outbound,
                    BUFFER,
                    BUFFER,
                )
                .await;
            }
        });
    }
}

/// A GET to its end: microseconds and body bytes.
async fn timed_get(http: &reqwest::Client, url: &str) -> Result<(f64, u64)> {
    let start = Instant::now();
    let response = http.get(url).send().await?;
    if !response.status().is_success() {
        bail!("{url}: {}", response.status());
    }
    let bytes = drain(response).await?;
    Ok((micros(start), bytes))
}

async fn drain(mut response: reqwest::Response) -> Result<u64> {
    if !response.status().is_success() {
        bail!("answered {}", response.status());
    }
    let mut bytes = 0;
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len() as u64;
    }
    Ok(bytes)
}

/// Opens `count` WebSockets through the front (a few hundred handshakes at a time), then
/// checks that each still echoes a byte: (opened, answering).
async fn hold_websockets(front: SocketAddr, count: usize) -> Result<(usize, usize)> {
    let mut sockets = Vec::with_capacity(count);
    'open: while sockets.len() < count {
        let batch = (count - sockets.len()).min(256);
        let handshakes: Vec<_> = (0..batch)
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(10),
                    websocket(front),
                ))
            })
            .collect();
        for handshake in handshakes {
            match handshake.await? {
                Ok(Ok(socket)) => sockets.push(socket),
                failed => {
                    let why = match failed {
                        Ok(Err(err)) => format!("{err:#}"),
                        _ => "no 101 within 10 s".to_owned(),
                    };
                    eprintln!("    stopped after {} WebSockets: {why}", sockets.len());
                    break 'open;
                }
            }
        }
    }
    // Let the server settle before its memory is read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut answered = 0;
    for socket in &mut sockets {
        let mut byte = [0u8];
        let echoed = async {
            socket.write_all(b"p").await?;
            socket.read_exact(&mut byte).await
        };
        if tokio::time::timeout(Duration::from_secs(5), echoed)
            .await
            .is_ok_and(|r| r.is_ok())
        {
            answered += 1;
        }
    }
    Ok((sockets.len(), answered))
}

async fn websocket(front: SocketAddr) -> Result<TcpStream> {
    let mut socket = TcpStream::connect(front).await.context("connect")?;
    socket
        .write_all(
            b"GET /v1/graphql HTTP/1.1\r\nHost: front\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n",
        )
        .await?;
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).await.context("the 101")?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        bail!("no 101: {}", String::from_utf8_lossy(&head));
    }
    Ok(socket)
}

/// The upstream stand-in's accept loop.
async fn serve_upstream(listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of descriptors: wait for some to close rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(upstream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn upstream(mut request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let response = match path.as_str() {
        "/small" => Response::new(Full::new(Bytes::from_static(b"OK")).boxed()),
        // The admin check of a delegated pg_dump request: every caller is admin here.
        "/v1/metadata" => {
            let _ = request.body_mut().collect().await;
            Response::new(Full::new(Bytes::from_static(b"{}")).boxed())
        }
        "/big" => {
            let mb: u64 = request
                .uri()
                .query()
                .and_then(|query| query.strip_prefix("mb="))
                .and_then(|mb| mb.parse().ok())
                .unwrap_or(1);
            let chunk = Bytes::from(vec![b'x'; CHUNK]);
            let frames = futures_stream(mb * ((1 << 20) / CHUNK as u64), chunk);
            let mut response = Response::new(StreamBody::new(frames).boxed());
            response
                .headers_mut()
                .insert("content-length", (mb << 20).to_string().parse().unwrap());
            response
        }
        "/v1/graphql" => {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                }
            });
            let mut response = Response::new(Empty::new().boxed());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let headers = response.headers_mut();
            headers.insert("upgrade", "websocket".parse().unwrap());
            headers.insert("connection", "upgrade".parse().unwrap());
            headers.insert(
                "sec-websocket-protocol",
                "graphql-transport-ws".parse().unwrap(),
            );
            response
        }
        _ => {
            let mut response = Response::new(Empty::new().boxed());
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    Ok(response)
}

/// `count` frames of `chunk`.
fn futures_stream(
    count: u64,
    chunk: Bytes,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync {
    futures_util::stream::iter((0..count).map(move |_| Ok(Frame::data(chunk.clone()))))
}

/// This process's soft limit on open files.
fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line["Max open files".len()..]
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(1024)
}

/// Shows a row as soon as it is measured, and keeps it for the table.
fn note(rows: &mut Vec<String>, row: String) {
    eprintln!("    {row}");
    rows.push(row);
}
