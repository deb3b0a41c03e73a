//! [`run`] on real sockets with a shutdown future that the test controls: by the time it
//! returns, its connections are closed and their pg_dump processes have exited.

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{config, installed_pg_dump, state_of, DATABASE_URL};
use crate::http::run;
use crate::pg_dump::Toolbox;

/// How long in-flight requests get after the shutdown.
const GRACE: Duration = Duration::from_millis(500);

/// The state of `pgdump-api serve --database-url URL` with `pg_dump` and a grace of [`GRACE`].
fn state_with_grace(url: &str, pg_dump: Toolbox) -> Arc<crate::http::AppState> {
    let mut config = config(url, &[]);
    config.graceful_shutdown_timeout = GRACE;
    state_of(config, pg_dump)
}

/// Serves `state` with [`run`] on a real socket until `clients`, given its address, are done;
/// returns what they returned and how long `run` took to return after that.
///
/// The clients live in the shutdown future, which `run` polls: so `run` returns straight into
/// the calling task, and nothing else runs on this (single-threaded) runtime before the caller
/// checks the sockets — a connection task that `run` left behind cannot close its socket in
/// the meantime.
async fn serve_until<T, F>(
    state: Arc<crate::http::AppState>,
    clients: impl FnOnce(SocketAddr) -> F,
) -> (T, Duration)
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let done = Arc::new(Mutex::new(None));
    let shutdown = {
        let done = Arc::clone(&done);
        let clients = clients(addr);
        async move {
            let opened = clients.await;
            *done.lock().unwrap() = Some((opened, Instant::now()));
        }
    };
    tokio::time::timeout(
        GRACE + Duration::from_secs(30),
        run(listener, state, shutdown),
    )
    .await
    .expect("run returned");
    let (opened, stopped) = done.lock().unwrap().take().expect("the clients ran");
    let took = stopped.elapsed();
    // (A blocking connect: awaiting would let other tasks run.)
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting connections"
    );
    (opened, took)
}

#[tokio::test]
async fn run_closes_its_connections_before_it_returns() {
    let (opened, took) = serve_until(
        state_with_grace(DATABASE_URL, Toolbox::from_binaries(Vec::new())),
        open_clients,
    )
    .await;
    // The request in flight got its grace, and not much more.
    assert!(took >= GRACE, "returned after only {took:?}");
    assert!(took < GRACE + Duration::from_secs(3), "took {took:?}");
    for (name, stream) in opened {
        assert_closed(name, stream.into_std().unwrap(), false);
    }
}

/// A dump whose pg_dump is still connecting when the grace period ends: by the time `run`
/// returns, the client's connection is closed and pg_dump has exited.
///
/// The database is a socket that never answers, like a server that hangs: it closes the first
/// connection — the version probe's, which then fails at once, so that the newest pg_dump
/// runs as documented — and holds the next one, pg_dump's, without a word. When pg_dump
/// exits, the system closes its end.
#[tokio::test]
async fn run_stops_its_pg_dumps_before_it_returns() {
    let database = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("postgres://u:pw@{}/db", database.local_addr().unwrap());
    let (held, pg_dump_connected) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        drop(database.accept());
        if let Ok((pg_dump, _)) = database.accept() {
            let _ = held.send(pg_dump);
        }
    });
    let state = state_with_grace(&url, installed_pg_dump());
    let dumped = url.clone();
    let ((client, pg_dump, pid), took) = serve_until(state, |addr| async move {
        let mut client = TcpStream::connect(addr).await.unwrap();
        let body = r#"{"opts":["--schema-only"]}"#;
        let request = format!(
            "POST /v1alpha1/pg_dump HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        client.write_all(request.as_bytes()).await.unwrap();
        let pg_dump = tokio::time::timeout(Duration::from_secs(20), pg_dump_connected)
            .await
            .expect("pg_dump connected")
            .unwrap();
        let pid = pg_dump_child(&dumped).expect("pg_dump is our child");
        (client, pg_dump, pid)
    })
    .await;
    assert!(took >= GRACE, "returned after only {took:?}");
    assert_closed("dump", client.into_std().unwrap(), false);
    // pg_dump has exited and been reaped (not even a zombie is left), and its socket closed
    // with it (after the startup request it wrote).
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pg_dump {pid} is still there"
    );
    assert_closed("pg_dump's", pg_dump, true);
}

/// The pid of this process's pg_dump child that dumps `url`.
fn pg_dump_child(url: &str) -> Option<u32> {
    let address = url.split_once('@')?.1;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid …
            let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let ours = comm == "pg_dump"
                && ppid == std::process::id()
                && String::from_utf8_lossy(&cmdline).contains(address);
            ours.then_some(pid)
        })
}

/// Three connections to `addr`: one idle after a request, one with a request in flight, one
/// half-way through its request headers.
async fn open_clients(addr: SocketAddr) -> Vec<(&'static str, TcpStream)> {
    let mut idle = TcpStream::connect(addr).await.unwrap();
    // Not /healthz: without pg_dump this server is not ready, and says so.
    idle.write_all(b"GET /v1/version HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let head = read_until(&mut idle, b"\"}").await;
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    // The handler waits for a body that never comes; the 100 Continue says that it reads it.
    let mut in_flight = TcpStream::connect(addr).await.unwrap();
    in_flight
        .write_all(
            b"POST /v1alpha1/pg_dump HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_until(&mut in_flight, b"\r\n\r\n").await;
    assert!(head.starts_with(b"HTTP/1.1 100"), "{head:?}");
    in_flight.write_all(b"{\"opts\":").await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    // Time for the server to read what was sent.
    tokio::time::sleep(Duration::from_millis(100)).await;
    vec![("idle", idle), ("in flight", in_flight), ("half-way", half)]
}

/// Reads from `stream` until `end` has arrived; returns all that was read.
async fn read_until(stream: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut read = Vec::new();
    let mut buf = [0u8; 1024];
    while !read.windows(end.len()).any(|window| window == end) {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&read));
        read.extend_from_slice(&buf[..n]);
    }
    read
}

/// Asserts that the other end of `stream` is closed: what is left to read ends at once (and
/// is empty unless `may_have_data`), or the connection was reset. Blocks the thread, not only
/// the task, while it reads.
fn assert_closed(name: &str, mut stream: std::net::TcpStream, may_have_data: bool) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(
            rest.is_empty() || may_have_data,
            "the {name} connection got {:?}",
            String::from_utf8_lossy(&rest)
        ),
        Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("the {name} connection is still open")
        }
        Err(_) => {}
    }
}
