//! `xtask image-test ARCHIVE`: the container image's test, run by `scripts/test` after
//! `scripts/image`. Container runtimes cannot start containers on these machines, so it runs
//! the image's own filesystem: the archive is read back with buildah (as `docker load` would
//! read it), the container's root is mounted, `/proc` and the usual device nodes are mounted
//! inside, and the image's entrypoint and command run under `chroot --userspec` as the
//! image's user with the image's environment. It checks that:
//!
//! - every PostgreSQL server of the matrix (12-18, throwaway clusters on loopback) is dumped
//!   through the API by the bundled pg_dump of its major, else the nearest newer one, as the
//!   `X-Pg-Dump-Version` header says;
//! - `pgdump-api --version` inside says what the release binary says;
//! - no file of the image is writable by its user outside its home and `/tmp`;
//! - the image runs as a non-root user, listens on 8080 and names the pg_dumps it bundles.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use xtask::Cluster;

mod container;

use crate::server::listening_address;
use crate::{random_hex, step, target_dir};
use container::Container;

/// Where the bundled pg_dumps live: `/opt/postgresql/MAJOR/bin`.
const PG_ROOT: &str = "/opt/postgresql/";

pub(crate) fn run(archive: Option<String>) -> Result<()> {
    let archive = PathBuf::from(archive.context("usage: xtask image-test ARCHIVE")?);
    step(&format!("reading {} with buildah", archive.display()));
    let container = Container::from_archive(&archive)?;
    let config = container.config()?;
    let image = Image::from_config(&config)?;

    step("checking what the image's user may write");
    let (home, writable) = writable_by(&container.root, &image)?;
    ensure!(
        writable.is_empty(),
        "the image's user {} may write outside {home} and /tmp:\n{}",
        image.user,
        writable.join("\n")
    );

    container.mount_runtime()?;
    let version = image.run(&container.root, &["--version"])?;
    let expected = Command::new(target_dir().join("release/pgdump-api"))
        .arg("--version")
        .output()
        .context("the release binary's --version")?;
    ensure!(
        version.trim() == String::from_utf8_lossy(&expected.stdout).trim(),
        "pgdump-api --version in the image says {version:?}, the release binary {:?}",
        String::from_utf8_lossy(&expected.stdout)
    );
    let label = &config["Labels"]["org.opencontainers.image.version"];
    ensure!(
        version.split_whitespace().nth(1) == label.as_str(),
        "the version label {label} is not the binary's {version:?}"
    );
    step(&format!("{} inside the image", version.trim()));

    let matrix = crate::matrix()?;
    let bundled = image.pg_dump_majors()?;
    let fetched: Vec<u32> = matrix.pg_dumps.iter().map(|(major, _)| *major).collect();
    ensure!(
        fetched.iter().all(|major| bundled.contains(major)),
        "the image bundles pg_dump {bundled:?}, the matrix fetches {fetched:?}"
    );
    step(&format!(
        "starting PostgreSQL {}",
        matrix
            .servers
            .iter()
            .map(|(major, _)| major.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let clusters = start_clusters(&matrix.servers)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(dump_each(&container, &image, &clusters, &bundled));
    for (_, cluster) in &clusters {
        cluster.stop();
    }
    result?;
    step("the image passed");
    Ok(())
}

/// The image's settings that the test uses.
struct Image {
    /// `UID:GID`, numeric (Kubernetes' `runAsNonRoot` can only check a numeric user).
    user: String,
    uid: u32,
    gid: u32,
    workdir: String,
    env: Vec<(String, String)>,
    /// Entrypoint then command.
    argv: Vec<String>,
}

impl Image {
    fn from_config(config: &Value) -> Result<Image> {
        let user = config["User"].as_str().unwrap_or_default().to_owned();
        let (uid, gid) = user
            .split_once(':')
            .and_then(|(uid, gid)| Some((uid.parse().ok()?, gid.parse().ok()?)))
            .with_context(|| format!("the image's user {user:?} is not numeric UID:GID"))?;
        ensure!(uid != 0, "the image runs as root");
        let strings = |value: &Value| -> Vec<String> {
            value
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| Some(item.as_str()?.to_owned()))
                .collect()
        };
        let env: Vec<(String, String)> = strings(&config["Env"])
            .into_iter()
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                Some((name.to_owned(), value.to_owned()))
            })
            .collect();
        let mut argv = strings(&config["Entrypoint"]);
        argv.extend(strings(&config["Cmd"]));
        ensure!(
            argv == ["pgdump-api", "serve"],
            "entrypoint and command are {argv:?}"
        );
        ensure!(
            config["ExposedPorts"].get("8080/tcp").is_some(),
            "the image does not expose 8080/tcp"
        );
        let image = Image {
            user,
            uid,
            gid,
            workdir: config["WorkingDir"].as_str().unwrap_or("/").to_owned(),
            env,
            argv,
        };
        ensure!(
            image.var("HASURA_GRAPHQL_SERVER_PORT") == Some("8080"),
            "the image does not set HASURA_GRAPHQL_SERVER_PORT=8080"
        );
        Ok(image)
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// The majors of the pg_dumps that `HASURA_GRAPHQL_PG_DUMP_PATHS` names, each checked
    /// to be there.
    fn pg_dump_majors(&self) -> Result<Vec<u32>> {
        let paths = self
            .var("HASURA_GRAPHQL_PG_DUMP_PATHS")
            .context("the image does not set HASURA_GRAPHQL_PG_DUMP_PATHS")?;
        paths
            .split(':')
            .map(|path| {
                path.strip_prefix(PG_ROOT)
                    .and_then(|rest| rest.strip_suffix("/bin"))
                    .and_then(|major| major.parse().ok())
                    .with_context(|| format!("{path} is not {PG_ROOT}MAJOR/bin"))
            })
            .collect()
    }

    /// A command running the entrypoint with `args` (the image's command when empty) in
    /// `root`, as the image's user, with the image's environment and working directory.
    fn command(&self, root: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("chroot");
        command
            .env_clear()
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .arg(format!("--userspec={}:{}", self.uid, self.gid))
            .arg("--groups=")
            .arg(root)
            // The image's own env(1) enters the working directory.
            .args(["/usr/bin/env", "-C", &self.workdir]);
        if args.is_empty() {
            command.args(&self.argv);
        } else {
            command.arg(&self.argv[0]).args(args);
        }
        command
    }

    /// Runs the entrypoint with `args` and returns its stdout.
    fn run(&self, root: &Path, args: &[&str]) -> Result<String> {
        let output = self.command(root, args).output().context("chroot")?;
        ensure!(
            output.status.success(),
            "pgdump-api {args:?} in the image failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Every file and directory under `root` that the image's user may write (by owner, group
/// or others' bits), outside its home (from `/etc/passwd`, returned too) and `/tmp`.
fn writable_by(root: &Path, image: &Image) -> Result<(String, Vec<String>)> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).context("/etc/passwd")?;
    let entry = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.get(2).and_then(|uid| uid.parse().ok()) == Some(image.uid))
        .with_context(|| format!("no user {} in the image's /etc/passwd", image.uid))?;
    let (name, home) = (entry[0].to_owned(), entry.get(5).copied().unwrap_or("/"));
    ensure!(home != "/", "the image's user has / as its home");
    // Its groups: the primary one and those /etc/group lists it in.
    let groups = std::fs::read_to_string(root.join("etc/group")).context("/etc/group")?;
    let mut gids = vec![image.gid];
    for fields in groups
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
    {
        if fields
            .get(3)
            .is_some_and(|members| members.split(',').any(|m| m == name))
        {
            gids.extend(fields.get(2).and_then(|gid| gid.parse::<u32>().ok()));
        }
    }
    let allowed = [root.join(home.trim_start_matches('/')), root.join("tmp")];
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if allowed.contains(&path) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.mode();
            let writable = (meta.uid() == image.uid && mode & 0o200 != 0)
                || (gids.contains(&meta.gid()) && mode & 0o020 != 0)
                || mode & 0o002 != 0;
            if writable {
                found.push(format!(
                    "{:o} {}:{} /{}",
                    mode & 0o7777,
                    meta.uid(),
                    meta.gid(),
                    path.strip_prefix(root)?.display()
                ));
            }
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok((home.to_owned(), found))
}

/// Starts a cluster per server, in parallel.
fn start_clusters(servers: &[(u32, PathBuf)]) -> Result<Vec<(u32, Cluster)>> {
    let password = random_hex()?;
    std::thread::scope(|scope| {
        let started: Vec<_> = servers
            .iter()
            .map(|(major, bin)| {
                let password = &password;
                scope.spawn(move || {
                    Cluster::start(bin, &format!("image-pg{major}"), password, &[])
                        .map(|cluster| (*major, cluster))
                })
            })
            .collect();
        started
            .into_iter()
            .map(|handle| handle.join().expect("cluster thread"))
            .collect()
    })
}

/// Serves every cluster from the image (one source each) and dumps each through the API.
async fn dump_each(
    container: &Container,
    image: &Image,
    clusters: &[(u32, Cluster)],
    bundled: &[u32],
) -> Result<()> {
    let mut yaml = String::new();
    for (major, cluster) in clusters {
        let table = format!("image_check_pg{major}");
        cluster
            .create_database("image_check", &format!("CREATE TABLE {table} (id int)"))
            .await?;
        yaml.push_str(&format!(
            "- name: pg{major}\n  kind: postgres\n  configuration:\n    connection_info:\n      database_url: {}\n",
            cluster.url("image_check")
        ));
    }
    let sources = "/tmp/image-test-sources.yaml";
    container.write(sources, &yaml, image)?;
    let secret = random_hex()?;
    let mut command = image.command(&container.root, &[]);
    command
        .env("HASURA_GRAPHQL_SOURCES_FILE", sources)
        .env("HASURA_GRAPHQL_ADMIN_SECRET", &secret);
    // The image's own port when it is free here, else any (the machine may be serving 8080).
    if std::net::TcpListener::bind("0.0.0.0:8080").is_err() {
        step("8080 is taken on this machine: the server gets another port");
        command.env("HASURA_GRAPHQL_SERVER_PORT", "0");
    }
    let server = Served::start(&mut command)?;
    step(&format!(
        "pgdump-api serve in the image, as {}, on {}",
        image.user, server.addr
    ));
    let uid = crate::proc_field(&format!("/proc/{}/status", server.child.id()), "Uid");
    ensure!(
        uid.as_deref()
            .and_then(|uids| uids.split_whitespace().next())
            == Some(&image.uid.to_string()),
        "the server runs as {uid:?}, not {}",
        image.uid
    );

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/v1alpha1/pg_dump", server.addr.port());
    for (major, _) in clusters {
        let response = client
            .post(&url)
            .header("X-Hasura-Admin-Secret", &secret)
            .body(
                serde_json::json!({
                    "opts": ["-O", "-x", "--schema-only"],
                    "clean_output": true,
                    "source": format!("pg{major}"),
                })
                .to_string(),
            )
            .send()
            .await
            .with_context(|| format!("dump of PostgreSQL {major}"))?;
        let status = response.status();
        let used = response
            .headers()
            .get("x-pg-dump-version")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await?;
        ensure!(
            status == 200,
            "PostgreSQL {major}: {status} {body}\n{}",
            server.log()
        );
        let expected = bundled
            .iter()
            .copied()
            .filter(|m| m >= major)
            .min()
            .with_context(|| format!("no bundled pg_dump for PostgreSQL {major}"))?;
        ensure!(
            used.split('.').next() == Some(&expected.to_string()),
            "PostgreSQL {major} was dumped by pg_dump {used:?}, not {expected}"
        );
        ensure!(
            body.contains(&format!("CREATE TABLE public.image_check_pg{major}")),
            "PostgreSQL {major}: the dump lacks its table:\n{body}"
        );
        step(&format!("PostgreSQL {major}: dumped by pg_dump {used}"));
    }
    Ok(())
}

/// The server started from the image; killed when dropped.
struct Served {
    child: Child,
    addr: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    fn start(command: &mut Command) -> Result<Served> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("chroot pgdump-api serve")?;
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().context("stdout")?) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().context("stderr")?),
        ] {
            let (log, tx) = (log.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(addr) = listening_address(&line) {
                        let _ = tx.send(addr);
                    }
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            });
        }
        let mut served = Served {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => served.addr = addr,
            Err(_) => bail!("pgdump-api did not start in the image:\n{}", served.log()),
        }
        Ok(served)
    }

    fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
