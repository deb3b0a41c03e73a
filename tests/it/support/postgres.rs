//! A throwaway PostgreSQL cluster per test binary, and a fresh database per test.
//!
//! The cluster is initdb'd into a private temporary directory, listens on 127.0.0.1 on a free
//! port with password authentication (so that a dump really needs the password), and runs as
//! an unprivileged user when the tests run as root. A watchdog shell holds the read end of a
//! pipe whose write end lives as long as this process: when the test binary exits, however it
//! exits, the watchdog stops the server and removes its directory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// The superuser's password: distinctive, so that tests can look for it where it must not be.
pub const PASSWORD: &str = "pw-Zq8r4Lk2";

/// The cluster of this test binary.
pub struct Cluster {
    pub bin_dir: PathBuf,
    pub port: u16,
    _watchdog: Mutex<ChildStdin>,
}

/// The shared cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<&'static Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| cluster_of(&bin_dir()))
}

/// The cluster of the PostgreSQL build in `bin_dir`, started on first use.
pub fn cluster_of(bin_dir: &Path) -> &'static Cluster {
    static CLUSTERS: OnceLock<Mutex<HashMap<PathBuf, &'static Cluster>>> = OnceLock::new();
    let clusters = CLUSTERS.get_or_init(Default::default);
    if let Some(cluster) = clusters.lock().unwrap().get(bin_dir) {
        return cluster;
    }
    // Started outside the lock: clusters of different versions start in parallel.
    let started = Cluster::start(bin_dir.to_owned()).unwrap_or_else(|err| panic!("{err}"));
    let mut clusters = clusters.lock().unwrap();
    let cluster: &'static Cluster = clusters
        .entry(bin_dir.to_owned())
        .or_insert_with(|| Box::leak(Box::new(started)));
    cluster
}

/// PostgreSQL's bin directory: `PGDUMP_API_TEST_PG_BIN`, else the newest Debian install,
/// else a build fetched by `scripts/fetch-postgres` into `target/`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PGDUMP_API_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            ["initdb", "postgres", "pg_dump", "pg_isready"]
                .iter()
                .all(|tool| bin.join(tool).is_file())
                .then_some((major, bin))
        })
        .collect();
    installed.sort();
    if let Some((_, bin)) = installed.pop() {
        return bin;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-postgres");
    let output = Command::new(&script)
        .output()
        .unwrap_or_else(|err| panic!("could not run {}: {err}", script.display()));
    assert!(
        output.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// The unprivileged user to run the server as, when we are root.
fn server_user() -> Option<(u32, u32)> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.stdout.trim_ascii() == b"0")
        .unwrap_or(false);
    if !is_root {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    ["postgres", "nobody"].iter().find_map(|name| {
        let line = passwd
            .lines()
            .find(|line| line.split(':').next() == Some(name))?;
        let fields: Vec<&str> = line.split(':').collect();
        Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

fn as_server_user(command: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
}

impl Cluster {
    fn start(bin_dir: PathBuf) -> Result<Cluster, String> {
        let user = server_user();
        let bin_dir = accessible_to(&bin_dir, user)?;
        let dir = tempfile::Builder::new()
            .prefix("pgdump-api-test-")
            .tempdir()
            .map_err(|err| format!("temp dir: {err}"))?
            .keep();
        let data = dir.join("data");
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, PASSWORD).map_err(|err| err.to_string())?;
        if let Some((uid, gid)) = user {
            for path in [&dir, &pwfile] {
                chown(path, Some(uid), Some(gid)).map_err(|err| format!("chown: {err}"))?;
            }
        }
        let initdb = as_server_user(&mut Command::new(bin_dir.join("initdb")), user)
            .args([
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&data)
            .output()
            .map_err(|err| format!("initdb: {err}"))?;
        if !initdb.status.success() {
            return Err(format!(
                "initdb failed:\n{}",
                String::from_utf8_lossy(&initdb.stderr)
            ));
        }
        let port = free_port();
        let mut postgres = Command::new(bin_dir.join("postgres"));
        as_server_user(&mut postgres, user)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?);
        let server = postgres.spawn().map_err(|err| format!("postgres: {err}"))?;
        let watchdog = Command::new("sh")
            .args([
                "-c",
                r#"cat >/dev/null; kill -INT "$1"; while kill -0 "$1" 2>/dev/null; do sleep 0.1; done; rm -rf "$2""#,
                "watchdog",
            ])
            .arg(server.id().to_string())
            .arg(&dir)
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|err| format!("watchdog: {err}"))?;
        let watchdog = watchdog.stdin.expect("piped stdin");
        wait_ready(&bin_dir, port, &dir)?;
        Ok(Cluster {
            bin_dir,
            port,
            _watchdog: Mutex::new(watchdog),
        })
    }

    /// A connection string for `dbname`, password included.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{dbname}",
            self.port
        )
    }

    /// The cluster's pg_dump.
    pub fn pg_dump(&self) -> PathBuf {
        self.bin_dir.join("pg_dump")
    }
}

/// `bin_dir` if the server's user can run it, else a copy of its install that it can (a
/// checkout in a private directory cannot be entered by the unprivileged user).
fn accessible_to(bin_dir: &Path, user: Option<(u32, u32)>) -> Result<PathBuf, String> {
    let runs = |dir: &Path| {
        as_server_user(&mut Command::new(dir.join("postgres")), user)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if runs(bin_dir) {
        return Ok(bin_dir.to_owned());
    }
    let install = bin_dir.parent().ok_or("bin dir has no parent")?;
    let name = install.to_string_lossy().replace(['/', '@'], "_");
    let copy = std::env::temp_dir().join(format!("pgdump-api-pg{name}"));
    if !runs(&copy.join("bin")) {
        let status = Command::new("cp")
            .arg("-a")
            .arg(install)
            .arg(&copy)
            .status()
            .map_err(|err| format!("cp: {err}"))?;
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&copy)
            .status()
            .ok();
        if !status.success() || !runs(&copy.join("bin")) {
            return Err(format!(
                "{} cannot be run by the server user",
                bin_dir.display()
            ));
        }
    }
    Ok(copy.join("bin"))
}

fn wait_ready(bin_dir: &Path, port: u16, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    // Some server-only builds have no pg_isready: any client build's will do.
    let pg_isready = [bin_dir.to_owned(), self::bin_dir()]
        .into_iter()
        .map(|dir| dir.join("pg_isready"))
        .find(|path| path.is_file())
        .ok_or("no pg_isready found")?;
    while Instant::now() < deadline {
        let ready = Command::new(&pg_isready)
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|status| status.success());
        if ready {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::File::open(dir.join("server.log"))
        .map(|file| {
            BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    Err(format!("PostgreSQL did not start on port {port}:\n{log}"))
}

/// A database of its own for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// Creates an empty database.
    pub async fn new() -> TestDb {
        TestDb::new_on(cluster()).await
    }

    /// Creates an empty database on `cluster`.
    pub async fn new_on(cluster: &Cluster) -> TestDb {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&cluster.url("postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        TestDb {
            url: cluster.url(&name),
            admin_url: cluster.url("postgres"),
            name,
        }
    }

    /// Creates a database holding `sql`.
    pub async fn with(sql: &str) -> TestDb {
        let db = TestDb::new().await;
        db.client().await.batch_execute(sql).await.expect("schema");
        db
    }

    /// A new client connection to this database.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    /// Drops the database, on a thread of its own since the test's runtime may be gone.
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin_url, NoTls).await.ok()?;
                tokio::spawn(connection);
                // WITH (FORCE) ends sessions a test left open; PostgreSQL 12 lacks it.
                let force = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if client.batch_execute(&force).await.is_err() {
                    let plain = format!("DROP DATABASE IF EXISTS {name}");
                    client.batch_execute(&plain).await.ok()?;
                }
                Some(())
            })
        });
        // Best effort: the whole cluster is removed when the test binary exits anyway.
        let _ = dropped.join();
    }
}

/// Connects with tokio-postgres; the connection runs on the current runtime.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|err| panic!("connect {url}: {err}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}
