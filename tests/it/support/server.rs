//! The real `pgdump-api` binary, started on port 0 and stopped when dropped; its log lines are
//! collected for assertions and printed when a test fails.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::postgres::cluster;

/// How to start a server.
pub struct ServerBuilder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    database_url: Option<String>,
    pg_dumps: Vec<PathBuf>,
    host: String,
    /// A command that runs the server, e.g. `prlimit --nofile=256:256` (it must exec it).
    launcher: Vec<String>,
}

/// A running `pgdump-api serve`.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl ServerBuilder {
    /// Adds command-line arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets the admin secret.
    pub fn secret(self, secret: &str) -> Self {
        self.args(["--admin-secret", secret])
    }

    /// Listens on `host` instead of 127.0.0.1.
    pub fn host(mut self, host: &str) -> Self {
        self.host = host.to_owned();
        self
    }

    /// Uses this pg_dump (repeatable) instead of the default cluster's.
    pub fn pg_dump(mut self, path: impl Into<PathBuf>) -> Self {
        self.pg_dumps.push(path.into());
        self
    }

    /// Runs the server through `launcher` (a command that execs its arguments, so that the
    /// server keeps the launcher's pid).
    pub fn launcher<I: IntoIterator<Item = S>, S: Into<String>>(mut self, launcher: I) -> Self {
        self.launcher = launcher.into_iter().map(Into::into).collect();
        self
    }

    /// Starts the server and waits for its "listening" line.
    pub fn start(mut self) -> Server {
        let binary = env!("CARGO_BIN_EXE_pgdump-api");
        let mut command = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        super::without_hasura_env(&mut command);
        command.arg("serve");
        command.args(["--server-host", &self.host, "--server-port", "0"]);
        if self.pg_dumps.is_empty() {
            self.pg_dumps.push(cluster().pg_dump());
        }
        for pg_dump in &self.pg_dumps {
            command.arg("--pg-dump-path").arg(pg_dump);
        }
        if let Some(url) = &self.database_url {
            command.args(["--database-url", url]);
        }
        command
            .args(&self.args)
            .envs(self.envs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start pgdump-api");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = listening_address(&line) {
                    let _ = addr_tx.send(addr);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut err_pipe = child.stderr.take().expect("stderr");
        let err_text = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err_pipe.read_to_string(&mut text);
            err_text.lock().unwrap().push_str(&text);
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "pgdump-api did not start.\nstdout:\n{}\nstderr:\n{}",
                    logs.lock().unwrap().join("\n"),
                    stderr.lock().unwrap()
                );
            }
        };
        Server {
            child,
            addr,
            logs,
            stderr,
        }
    }
}

fn listening_address(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value["type"] != "startup" || value["detail"]["message"] != "listening" {
        return None;
    }
    let addr: SocketAddr = value["detail"]["address"].as_str()?.parse().ok()?;
    // A server on every interface is reached over loopback.
    Some(match addr.ip().is_unspecified() {
        true => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        false => addr,
    })
}

impl Server {
    /// A server for `database_url` with the given flags.
    pub fn builder(database_url: &str) -> ServerBuilder {
        ServerBuilder {
            args: Vec::new(),
            envs: Vec::new(),
            database_url: Some(database_url.to_owned()),
            pg_dumps: Vec::new(),
            host: "127.0.0.1".to_owned(),
            launcher: Vec::new(),
        }
    }

    /// A server whose sources come from a sources file.
    pub fn builder_with_sources(file: &Path) -> ServerBuilder {
        ServerBuilder {
            args: vec!["--sources-file".to_owned(), file.display().to_string()],
            envs: Vec::new(),
            database_url: None,
            pg_dumps: Vec::new(),
            host: "127.0.0.1".to_owned(),
            launcher: Vec::new(),
        }
    }

    /// A server given neither a database URL nor a sources file (the test sets what it needs).
    pub fn builder_bare() -> ServerBuilder {
        ServerBuilder {
            args: Vec::new(),
            envs: Vec::new(),
            database_url: None,
            pg_dumps: Vec::new(),
            host: "127.0.0.1".to_owned(),
            launcher: Vec::new(),
        }
    }

    /// `http://ADDR/PATH` (over loopback when the server listens on every interface).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process id, to find its pg_dump children.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The http-log lines so far, parsed.
    pub fn http_logs(&self) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|value| value["type"] == "http-log")
            .collect()
    }

    /// Waits until `count` http-log lines were written (they are written when a response ends).
    pub async fn wait_http_logs(&self, count: usize) -> Vec<serde_json::Value> {
        super::eventually("http-log lines", || self.http_logs().len() >= count).await;
        self.http_logs()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for pgdump-api")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- pgdump-api stdout ---\n{}\n--- pgdump-api stderr ---\n{}",
                self.logs.lock().unwrap().join("\n"),
                self.stderr.lock().unwrap()
            );
        }
    }
}
