//! A throwaway PostgreSQL cluster: the integration tests', the demo's, the load test's and the
//! benchmark's.
//!
//! The cluster is initdb'd into a private temporary directory, listens on 127.0.0.1 on a free
//! port with password authentication (so that a dump really needs the password), and runs as
//! an unprivileged user when we are root. A watchdog shell holds the read end of a pipe whose
//! write end lives as long as this process: when the process exits, however it exits, the
//! watchdog stops the server and removes its directory. The watchdog and the server run in
//! process groups of their own, so a Ctrl-C in the terminal reaches neither before the
//! process that owns them has let go.

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The settings every cluster gets: loopback only, and durability off, which only speeds up
/// loading (pg_dump reads the same either way).
const SETTINGS: &[&str] = &[
    "listen_addresses=127.0.0.1",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=200",
];

/// A running throwaway cluster; its superuser is `postgres`.
pub struct Cluster {
    /// The bin directory of the PostgreSQL build it runs.
    pub bin_dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    password: String,
    /// Its directory: data, sockets and `server.log`.
    dir: PathBuf,
    /// The postmaster and the watchdog, until [`Cluster::stop`].
    processes: Mutex<Option<(Child, Child)>>,
}

impl Cluster {
    /// Starts a cluster of the build in `bin_dir` whose superuser `postgres` has `password`;
    /// `settings` (`name=value`) come on top of the defaults. `name` tags its directory.
    pub fn start(bin_dir: &Path, name: &str, password: &str, settings: &[&str]) -> Result<Cluster> {
        let user = server_user();
        let bin_dir = accessible_to(bin_dir, user)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("pgdump-api-{name}-"))
            .tempdir()
            .context("temp dir")?
            .keep();
        let data = dir.join("data");
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, password).context("pwfile")?;
        if let Some((uid, gid)) = user {
            for path in [&dir, &pwfile] {
                chown(path, Some(uid), Some(gid)).context("chown")?;
            }
        }
        let initdb = as_server_user(&mut Command::new(bin_dir.join("initdb")), user)
            .args(["-U", "postgres", "-A", "scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "-N"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&data)
            .output()
            .context("initdb")?;
        if !initdb.status.success() {
            bail!(
                "initdb failed:\n{}",
                String::from_utf8_lossy(&initdb.stderr)
            );
        }
        let port = free_port()?;
        let mut postgres = Command::new(bin_dir.join("postgres"));
        as_server_user(&mut postgres, user)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir);
        for setting in SETTINGS.iter().chain(settings) {
            postgres.args(["-c", setting]);
        }
        let log = std::fs::File::create(dir.join("server.log")).context("server.log")?;
        let server = postgres
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("postgres")?;
        let watchdog = Command::new("sh")
            .args([
                "-c",
                r#"cat >/dev/null; kill -INT "$1"; while kill -0 "$1" 2>/dev/null; do sleep 0.1; done; rm -rf "$2""#,
                "watchdog",
            ])
            .arg(server.id().to_string())
            .arg(&dir)
            .stdin(Stdio::piped())
            .process_group(0)
            .spawn()
            .context("watchdog")?;
        let cluster = Cluster {
            bin_dir,
            port,
            password: password.to_owned(),
            dir,
            processes: Mutex::new(Some((server, watchdog))),
        };
        wait_ready(&cluster)?;
        Ok(cluster)
    }

    /// A connection string for `dbname`, password included.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{dbname}",
            self.password, self.port
        )
    }

    /// A connection string for `dbname` without the password (see [`Cluster::password`]).
    pub fn url_without_password(&self, dbname: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The cluster's pg_dump.
    pub fn pg_dump(&self) -> PathBuf {
        self.bin_dir.join("pg_dump")
    }

    /// `postgres --version`, e.g. `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
    pub fn version(&self) -> String {
        version_of(&self.bin_dir.join("postgres"))
    }

    /// Connects as the superuser; the connection runs on the current tokio runtime.
    pub async fn connect(&self, dbname: &str) -> Result<tokio_postgres::Client> {
        let (client, connection) =
            tokio_postgres::connect(&self.url(dbname), tokio_postgres::NoTls)
                .await
                .with_context(|| {
                    format!(
                        "connect to {dbname} on port {} (the end of its server log:\n{})",
                        self.port,
                        self.log_tail()
                    )
                })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Creates the database `name` (a plain identifier) holding `sql`.
    pub async fn create_database(&self, name: &str, sql: &str) -> Result<()> {
        self.connect("postgres")
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        if !sql.is_empty() {
            self.connect(name)
                .await?
                .batch_execute(sql)
                .await
                .with_context(|| format!("the schema of {name}"))?;
        }
        Ok(())
    }

    /// The last lines of the server's log: why it refuses connections, or stopped.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log"))
            .unwrap_or_else(|err| format!("(no log: {err})"));
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the server and removes its directory now, rather than when this process exits.
    pub fn stop(&self) {
        let processes = self.processes.lock().map(|mut processes| processes.take());
        if let Ok(Some((mut server, mut watchdog))) = processes {
            drop(watchdog.stdin.take());
            // Reaped here, so that the watchdog sees it gone.
            let _ = server.wait();
            let _ = watchdog.wait();
        }
    }
}

/// The output of `program --version`, trimmed.
pub fn version_of(program: &Path) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|err| format!("unknown ({err})"))
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// PostgreSQL's bin directory: `PGDUMP_API_TEST_PG_BIN`, else the newest Debian install,
/// else a build fetched by `scripts/fetch-postgres` into `target/`.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PGDUMP_API_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
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
        return Ok(bin);
    }
    eprintln!("==> no PostgreSQL installed: fetching one into target/postgres");
    let script = workspace_root().join("scripts/fetch-postgres");
    let output = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not run {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed", script.display());
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // The owner of /proc/self is this process's effective user.
    std::fs::metadata("/proc/self")
        .is_ok_and(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == 0)
}

/// The unprivileged user to run the server as, when we are root.
fn server_user() -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    ["postgres", "nobody"].iter().find_map(|name| {
        let line = passwd
            .lines()
            .find(|line| line.split(':').next() == Some(name))?;
        let fields: Vec<&str> = line.split(':').collect();
        Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
    })
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .context("a free port")
}

fn as_server_user(command: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
}

/// `bin_dir` if the server's user can run it, else a copy of its install that it can (a
/// checkout in a private directory cannot be entered by the unprivileged user).
fn accessible_to(bin_dir: &Path, user: Option<(u32, u32)>) -> Result<PathBuf> {
    let runs = |dir: &Path| {
        as_server_user(&mut Command::new(dir.join("postgres")), user)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if runs(bin_dir) {
        return Ok(bin_dir.to_owned());
    }
    let install = bin_dir.parent().context("bin dir has no parent")?;
    let name = install.to_string_lossy().replace(['/', '@'], "_");
    let copy = std::env::temp_dir().join(format!("pgdump-api-pg{name}"));
    if !runs(&copy.join("bin")) {
        // Copied beside it and renamed into place, so that a cluster started at the same
        // time (another test, another process) never runs a half-copied install.
        let partial = tempfile::Builder::new()
            .prefix(&format!("pgdump-api-pg{name}.partial-"))
            .tempdir()
            .context("temp dir")?
            .keep();
        let status = Command::new("cp")
            .arg("-a")
            .arg(install)
            .arg(partial.join("install"))
            .status()
            .context("cp")?;
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&partial)
            .status()
            .ok();
        // A copy left broken by an earlier run is replaced; losing the race to a copy made
        // at the same time is fine: it is the same install.
        if copy.exists() && !runs(&copy.join("bin")) {
            let _ = std::fs::remove_dir_all(&copy);
        }
        let _ = std::fs::rename(partial.join("install"), &copy);
        let _ = std::fs::remove_dir_all(&partial);
        if !status.success() || !runs(&copy.join("bin")) {
            bail!("{} cannot be run by the server user", bin_dir.display());
        }
    }
    Ok(copy.join("bin"))
}

fn wait_ready(cluster: &Cluster) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    // Some server-only builds have no pg_isready: any client build's will do.
    let pg_isready = std::iter::once(cluster.bin_dir.clone())
        .chain(self::bin_dir().ok())
        .map(|dir| dir.join("pg_isready"))
        .find(|path| path.is_file())
        .context("no pg_isready found")?;
    let port = cluster.port.to_string();
    while Instant::now() < deadline {
        let ready = Command::new(&pg_isready)
            .args(["-q", "-h", "127.0.0.1", "-p", &port])
            .status()
            .is_ok_and(|status| status.success());
        if ready {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "PostgreSQL did not start on port {port}:\n{}",
        cluster.log_tail()
    )
}
