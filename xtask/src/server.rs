//! `pgdump-api serve` as the demo, the load test and the benchmark start it: on 127.0.0.1,
//! the database URL and the admin secret in its environment (a command line is readable by
//! every local user), its JSON log lines read for the `listening` address.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// A running server; killed when dropped.
pub(crate) struct Server {
    child: Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

/// How to start one.
pub(crate) struct Options<'a> {
    pub(crate) database_url: &'a str,
    pub(crate) admin_secret: &'a str,
    pub(crate) pg_dump: &'a Path,
    /// 0 for any free port.
    pub(crate) port: u16,
    /// More settings for its environment.
    pub(crate) env: &'a [(&'a str, String)],
    /// Copy its log lines to our stdout (else they are kept, and shown if it fails to start).
    pub(crate) echo: bool,
}

impl Server {
    /// Starts `bin` and waits for its `listening` line.
    pub(crate) fn start(bin: &Path, options: &Options) -> Result<Server> {
        let mut child = Command::new(bin)
            .args(["serve", "--server-host", "127.0.0.1", "--server-port"])
            .arg(options.port.to_string())
            .arg("--pg-dump-path")
            .arg(options.pg_dump)
            .env("HASURA_GRAPHQL_DATABASE_URL", options.database_url)
            .env("HASURA_GRAPHQL_ADMIN_SECRET", options.admin_secret)
            .envs(options.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (addr_tx, addr_rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let (kept, echo) = (Arc::clone(&log), options.echo);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = listening_address(&line) {
                    let _ = addr_tx.send(addr);
                }
                if echo {
                    let _ = writeln!(std::io::stdout().lock(), "{line}");
                } else if let Ok(mut kept) = kept.lock() {
                    kept.push_str(&line);
                    kept.push('\n');
                }
            }
        });
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        match addr_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) if addr.ip().is_loopback() => server.addr = addr,
            Ok(addr) => bail!("not on loopback: {addr}"),
            Err(_) => match server.log() {
                log if log.is_empty() => bail!("pgdump-api did not start (its error is above)"),
                log => bail!("pgdump-api did not start:\n{log}"),
            },
        }
        Ok(server)
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log lines so far (unless they were echoed).
    pub(crate) fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// `http://ADDR{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Whether the server has exited on its own.
    pub(crate) fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of a `listening` log line.
pub(crate) fn listening_address(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value["detail"]["message"] != "listening" {
        return None;
    }
    value["detail"]["address"].as_str()?.parse().ok()
}
