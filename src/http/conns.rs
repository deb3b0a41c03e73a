//! The server's open connections: how many it keeps, which of them are idle, and which to
//! close when it must make room. A connection is idle while no request is in flight on it —
//! it waits for its first request's headers, or for the next one on a kept-alive
//! connection. At the cap (`--max-connections`), or when `accept` fails for want of file
//! descriptors, the oldest idle connections are closed first, so that a new, well-formed
//! request is still answered; a connection busy with a request is never closed for room, nor
//! one taken over by an upgrade (a WebSocket passed through in front mode).
//! Each period of pressure is logged once when it starts and once when it ends.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt;
use tokio::sync::Notify;

/// File descriptors kept free for everything but client connections: the listener, the
/// runtime, stdio and logs.
const BASE_RESERVE: u64 = 32;
/// File descriptors kept free per pg_dump that may run: its pipes (and those it needs while
/// it starts), a passfile, a connection that learns the server version.
const RESERVE_PER_PG_DUMP: u64 = 8;
/// The default cap never exceeds this, however high the open-files limit.
const DEFAULT_CEILING: u64 = 4096;
/// A cap lowered after the open-files limit was hit keeps this many descriptors spare.
const HEADROOM_AFTER_EXHAUSTION: usize = 16;
/// Nor does it go below this.
const MIN_CAP: usize = 8;
/// A period of pressure ends after this long without a connection closed for room.
const QUIET: Duration = Duration::from_secs(10);

/// The default `--max-connections`: the open-files limit less what pg_dump and the server
/// itself need, at most [`DEFAULT_CEILING`], at least [`MIN_CAP`].
pub(crate) fn default_cap(open_files: Option<u64>, pg_dumps: usize) -> usize {
    let open_files = open_files.unwrap_or(DEFAULT_CEILING);
    let reserve = BASE_RESERVE + RESERVE_PER_PG_DUMP * pg_dumps as u64;
    // A tiny limit still leaves some connections rather than none.
    let cap = open_files
        .saturating_sub(reserve)
        .max(open_files / 4)
        .min(DEFAULT_CEILING);
    (cap as usize).max(MIN_CAP)
}

/// This process's soft limit on open files (`None`: unlimited or unknown).
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&limits)
}

fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether `accept` failed because this process or the system ran out of file descriptors.
pub(crate) fn out_of_files(err: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux; std has no ErrorKind for them.
    matches!(err.raw_os_error(), Some(23 | 24))
}

/// Every open connection, oldest first.
#[derive(Debug)]
pub(crate) struct Connections {
    registry: Mutex<Registry>,
    /// Signalled when a connection ends or becomes idle: there may be room again.
    changed: Arc<Notify>,
}

#[derive(Debug)]
struct Registry {
    next_id: u64,
    live: BTreeMap<u64, Arc<Conn>>,
    /// How many connections are kept; lowered if the open-files limit is hit first.
    cap: usize,
    /// How many live connections were asked to close and have not yet.
    closing: usize,
    pressure: Option<Pressure>,
}

/// One period during which connections were closed for room or refused.
#[derive(Debug)]
struct Pressure {
    started: Instant,
    /// The last connection closed for room, or failed accept.
    last: Instant,
    closed_idle: u64,
    failed_accepts: u64,
}

/// One connection, as the accept loop and its own task see it.
#[derive(Debug)]
pub(crate) struct Conn {
    id: u64,
    busy: AtomicBool,
    /// Taken over by an upgrade: busy until its tunnel ends.
    upgraded: AtomicBool,
    closing: AtomicBool,
    close: Notify,
    changed: Arc<Notify>,
}

impl Conn {
    /// Completes when this connection is asked to close (for room, or at shutdown).
    pub(crate) async fn close_requested(&self) {
        self.close.notified().await;
    }

    /// Whether a request is in flight (from its headers to the end of its response).
    pub(crate) fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) || self.upgraded.load(Ordering::SeqCst)
    }

    fn request_close(&self) -> bool {
        let first = !self.closing.swap(true, Ordering::SeqCst);
        if first {
            self.close.notify_one();
        }
        first
    }
}

/// Removes its connection from the registry when the connection's task ends.
pub(crate) struct Registered {
    connections: Arc<Connections>,
    conn: Arc<Conn>,
}

impl Registered {
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

/// A request's handle on its connection (a request extension), for a response that takes the
/// connection over: an upgrade, after which hyper no longer serves it.
#[derive(Clone)]
pub(crate) struct ConnHandle(pub(super) Arc<Registered>);

impl ConnHandle {
    /// The connection is taken over: it stays registered and busy — never closed for room —
    /// until the returned hold is dropped.
    pub(crate) fn take_over(&self) -> TakenOver {
        self.0.conn.upgraded.store(true, Ordering::SeqCst);
        TakenOver(Arc::clone(&self.0))
    }
}

/// Keeps a taken-over connection registered; see [`ConnHandle::take_over`].
pub(crate) struct TakenOver(Arc<Registered>);

impl TakenOver {
    /// Completes when the connection is asked to close (at shutdown).
    pub(crate) async fn close_requested(&self) {
        self.0.conn.close_requested().await;
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.remove(&self.conn);
    }
}

impl Connections {
    pub(crate) fn new(cap: usize) -> Arc<Connections> {
        Arc::new(Connections {
            registry: Mutex::new(Registry {
                next_id: 0,
                live: BTreeMap::new(),
                cap: cap.max(1),
                closing: 0,
                pressure: None,
            }),
            changed: Arc::new(Notify::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection; at the cap, asks the oldest idle one to close.
    pub(crate) fn open(self: &Arc<Self>) -> Registered {
        let mut registry = self.lock();
        let id = registry.next_id;
        registry.next_id += 1;
        let conn = Arc::new(Conn {
            id,
            busy: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            changed: Arc::clone(&self.changed),
        });
        registry.live.insert(id, Arc::clone(&conn));
        registry.make_room();
        Registered {
            connections: Arc::clone(self),
            conn,
        }
    }

    fn remove(&self, conn: &Conn) {
        let mut registry = self.lock();
        if registry.live.remove(&conn.id).is_some() && conn.closing.load(Ordering::SeqCst) {
            registry.closing -= 1;
        }
        registry.end_pressure_if_over();
        drop(registry);
        self.changed.notify_one();
    }

    /// Whether more connections are open than kept — after one was accepted at the cap with
    /// none idle, or while those asked to close are still closing: the accept loop then
    /// waits, closing idle ones as they appear, so that sockets never outnumber the cap by
    /// more than one.
    pub(crate) fn over_cap(&self) -> bool {
        let mut registry = self.lock();
        registry.make_room();
        registry.live.len() > registry.cap
    }

    /// `accept` failed for want of file descriptors: keep fewer connections from now on, and
    /// close idle ones to free some.
    pub(crate) fn out_of_files(&self, err: &io::Error) {
        let mut registry = self.lock();
        let live = registry.live.len();
        let lowered = live
            .saturating_sub(HEADROOM_AFTER_EXHAUSTION)
            .max(MIN_CAP)
            .min(registry.cap);
        if lowered < registry.cap {
            tracing::warn!(target: "server", error = %err, open_connections = live,
                max_connections = lowered,
                "the open-files limit was reached before the connection limit: lowering the connection limit");
            registry.cap = lowered;
        }
        registry.pressure("out of file descriptors").failed_accepts += 1;
        registry.close_oldest_idle(HEADROOM_AFTER_EXHAUSTION);
    }

    /// Completes when a connection ends or becomes idle.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Asks every connection to close (at shutdown): idle ones close at once, busy ones after
    /// their response.
    pub(crate) fn close_all(&self) {
        let registry = self.lock();
        for conn in registry.live.values() {
            conn.request_close();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().live.is_empty()
    }
}

impl Registry {
    /// Live connections not already asked to close.
    fn kept(&self) -> usize {
        self.live.len() - self.closing
    }

    /// Over the cap: asks the oldest idle connections to close, never the newest (the one
    /// just accepted, which has not had time to send its request). They are closed in
    /// batches of an eighth of the cap: one waiting for the rest of its headers takes
    /// [`CLOSE_GRACE`](super::CLOSE_GRACE) to go, and the accept loop waits for it, so one
    /// at a time would keep a backlog of new connections waiting that long each.
    fn make_room(&mut self) {
        let over = self.kept().saturating_sub(self.cap);
        if over > 0 {
            self.pressure("connection limit reached");
            self.close_oldest_idle(over.max(self.cap / 8));
        }
    }

    /// Asks up to `count` of the oldest idle connections to close.
    fn close_oldest_idle(&mut self, count: usize) {
        let newest = self.live.keys().next_back().copied();
        let chosen: Vec<Arc<Conn>> = self
            .live
            .values()
            .filter(|conn| Some(conn.id) != newest && !conn.is_busy())
            .filter(|conn| !conn.closing.load(Ordering::SeqCst))
            .take(count)
            .cloned()
            .collect();
        for conn in &chosen {
            if conn.request_close() {
                self.closing += 1;
            }
        }
        if let Some(pressure) = &mut self.pressure {
            pressure.closed_idle += chosen.len() as u64;
        }
    }

    /// The current period of pressure, logged when it starts.
    fn pressure(&mut self, why: &'static str) -> &mut Pressure {
        if self
            .pressure
            .as_ref()
            .is_some_and(|p| p.last.elapsed() > QUIET)
        {
            self.end_pressure();
        }
        let (live, cap) = (self.live.len(), self.cap);
        let pressure = self.pressure.get_or_insert_with(|| {
            tracing::warn!(target: "server", open_connections = live, max_connections = cap,
                "{why}: closing idle connections, oldest first, to serve new ones");
            Pressure {
                started: Instant::now(),
                last: Instant::now(),
                closed_idle: 0,
                failed_accepts: 0,
            }
        });
        pressure.last = Instant::now();
        pressure
    }

    /// Ends the period of pressure once under the cap again and quiet for a while.
    fn end_pressure_if_over(&mut self) {
        let quiet = self
            .pressure
            .as_ref()
            .is_some_and(|p| p.last.elapsed() > QUIET);
        if quiet && self.live.len() <= self.cap * 9 / 10 {
            self.end_pressure();
        }
    }

    /// Logs what the period of pressure cost.
    fn end_pressure(&mut self) {
        if let Some(pressure) = self.pressure.take() {
            tracing::info!(target: "server", open_connections = self.live.len(),
                max_connections = self.cap, closed_idle = pressure.closed_idle,
                failed_accepts = pressure.failed_accepts,
                duration_ms = pressure.last.duration_since(pressure.started).as_millis() as u64,
                "connection pressure is over");
        }
    }
}

/// Marks its connection busy while a request is in flight: from the request's headers to the
/// end (or drop) of its response body.
#[derive(Debug, Clone)]
pub(crate) struct TrackBusy<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> TrackBusy<S> {
    pub(crate) fn new(inner: S, conn: Arc<Conn>) -> Self {
        TrackBusy { inner, conn }
    }
}

/// Idle again when dropped.
struct BusyGuard(Arc<Conn>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> hyper::service::Service<Request<B>> for TrackBusy<S>
where
    S: hyper::service::Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn call(&self, request: Request<B>) -> Self::Future {
        self.conn.busy.store(true, Ordering::SeqCst);
        let guard = BusyGuard(Arc::clone(&self.conn));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            // The body holds the guard: the connection is busy until the body is dropped.
            Ok(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _busy = &guard;
                    frame
                }))
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cap_leaves_room_for_pg_dump() {
        assert_eq!(default_cap(Some(1024), 4), 1024 - 32 - 32);
        assert_eq!(default_cap(Some(256), 4), 256 - 64);
        assert_eq!(default_cap(Some(1 << 20), 4), DEFAULT_CEILING as usize);
        assert_eq!(default_cap(None, 4), DEFAULT_CEILING as usize - 64);
        assert_eq!(default_cap(Some(64), 8), 16);
        assert_eq!(default_cap(Some(10), 8), MIN_CAP);
    }

    #[test]
    fn reads_the_soft_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             127431               127431               processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), None);
        assert!(open_files_limit().is_some());
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_is_asked_to_close() {
        let connections = Connections::new(2);
        let oldest = connections.open();
        let busy = connections.open();
        busy.conn().busy.store(true, Ordering::SeqCst);
        let newest = connections.open();
        assert!(oldest.conn().closing.load(Ordering::SeqCst));
        assert!(!busy.conn().closing.load(Ordering::SeqCst));
        assert!(!newest.conn().closing.load(Ordering::SeqCst));
        // No more accepts until the closing one is gone.
        assert!(connections.over_cap());
        drop(oldest);
        assert!(!connections.over_cap());
        // Full of busy connections and a newcomer: wait until one is idle.
        newest.conn().busy.store(true, Ordering::SeqCst);
        let newcomer = connections.open();
        assert!(connections.over_cap());
        assert!(!busy.conn().closing.load(Ordering::SeqCst));
        busy.conn().busy.store(false, Ordering::SeqCst);
        assert!(connections.over_cap());
        assert!(busy.conn().closing.load(Ordering::SeqCst));
        assert!(!newcomer.conn().closing.load(Ordering::SeqCst));
        drop(busy);
        assert!(!connections.over_cap());
    }

    #[test]
    fn a_connection_taken_over_by_an_upgrade_is_never_closed_for_room() {
        let connections = Connections::new(1);
        let handle = ConnHandle(Arc::new(connections.open()));
        let tunnel = handle.take_over();
        // hyper is done with the connection; only the tunnel holds it.
        drop(handle);
        let newest = connections.open();
        assert!(!tunnel.0.conn.closing.load(Ordering::SeqCst));
        assert!(connections.over_cap());
        drop(tunnel);
        assert!(!connections.over_cap());
        assert!(!newest.conn().closing.load(Ordering::SeqCst));
    }

    #[test]
    fn out_of_files_lowers_the_cap_and_frees_descriptors() {
        let connections = Connections::new(1000);
        let open: Vec<_> = (0..40).map(|_| connections.open()).collect();
        let err = io::Error::from_raw_os_error(24);
        assert!(out_of_files(&err));
        connections.out_of_files(&err);
        let asked = open
            .iter()
            .filter(|c| c.conn().closing.load(Ordering::SeqCst))
            .count();
        assert_eq!(asked, HEADROOM_AFTER_EXHAUSTION);
        assert_eq!(connections.lock().cap, 40 - HEADROOM_AFTER_EXHAUSTION);
    }
}
