//! Everything about the `pg_dump` program: finding the installed binaries and their versions
//! ([`Toolbox`]), and running one for a request ([`process`]).

mod process;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

pub use process::{start, DumpError};

/// A PostgreSQL version as pg_dump reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    /// Parses the output of `pg_dump --version`, e.g. `pg_dump (PostgreSQL) 15.18 (Debian …)`.
    pub fn from_version_output(output: &str) -> Option<Version> {
        let number = output
            .split_whitespace()
            .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
        let mut parts = number.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        Some(Version { major, minor })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One installed pg_dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgDump {
    pub path: PathBuf,
    pub version: Version,
}

impl PgDump {
    /// Asks `path --version`.
    pub fn probe(path: &Path) -> anyhow::Result<PgDump> {
        let output = Command::new(path)
            .arg("--version")
            .output()
            .with_context(|| format!("could not run {}", path.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("{} --version failed: {}", path.display(), output.status);
        }
        let version = Version::from_version_output(&stdout)
            .with_context(|| format!("{} --version printed {stdout:?}", path.display()))?;
        Ok(PgDump {
            path: path.to_owned(),
            version,
        })
    }
}

/// The pg_dump binaries this server may run.
#[derive(Debug, Clone)]
pub struct Toolbox {
    binaries: Vec<PgDump>,
}

impl Toolbox {
    /// Probes the configured paths (each a pg_dump or a directory holding one), or, when none
    /// are configured, the usual install locations. Fails when nothing usable is found.
    pub fn discover(configured: &[PathBuf]) -> anyhow::Result<Toolbox> {
        let mut binaries: Vec<PgDump> = Vec::new();
        if configured.is_empty() {
            for candidate in candidates() {
                if let Ok(found) = PgDump::probe(&candidate) {
                    if !binaries.iter().any(|b| b.version == found.version) {
                        binaries.push(found);
                    }
                }
            }
            if binaries.is_empty() {
                bail!(
                    "no pg_dump found in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, \
                     `pg_config --bindir` or PATH; install PostgreSQL's client programs or set \
                     --pg-dump-path / HASURA_GRAPHQL_PG_DUMP_PATHS"
                );
            }
        } else {
            for path in configured {
                let path = if path.is_dir() {
                    path.join("pg_dump")
                } else {
                    path.clone()
                };
                binaries.push(PgDump::probe(&path).context("unusable --pg-dump-path")?);
            }
        }
        binaries.sort_by_key(|b| std::cmp::Reverse(b.version));
        Ok(Toolbox { binaries })
    }

    /// A toolbox of exactly these binaries.
    pub fn from_binaries(binaries: Vec<PgDump>) -> Toolbox {
        Toolbox { binaries }
    }

    /// Every known binary, newest first.
    pub fn binaries(&self) -> &[PgDump] {
        &self.binaries
    }

    /// The pg_dump to run: the newest, which can dump every older server.
    pub fn newest(&self) -> Option<&PgDump> {
        self.binaries.iter().max_by_key(|b| b.version)
    }
}

/// Where pg_dump usually lives, most specific first: the versioned install directories of
/// Debian/Ubuntu and of the PGDG RPMs, then `pg_config --bindir`, then `PATH` (on Debian
/// `/usr/bin/pg_dump` is a wrapper script that the versioned binaries make redundant).
fn candidates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for pattern_dir in ["/usr/lib/postgresql", "/usr"] {
        let Ok(entries) = std::fs::read_dir(pattern_dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                pattern_dir == "/usr/lib/postgresql"
                    || path
                        .file_name()
                        .is_some_and(|name| name.to_string_lossy().starts_with("pgsql-"))
            })
            .map(|path| path.join("bin"))
            .collect();
        found.sort();
        dirs.extend(found.into_iter().rev());
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        if output.status.success() {
            dirs.push(PathBuf::from(
                String::from_utf8_lossy(&output.stdout).trim(),
            ));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|dir| dir.join("pg_dump"))
        .filter(|path| path.is_file())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_every_known_banner() {
        let cases = [
            (
                "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n",
                (15, 18),
            ),
            ("pg_dump (PostgreSQL) 18.1\n", (18, 1)),
            ("pg_dump (PostgreSQL) 19devel\n", (19, 0)),
            ("pg_dump (PostgreSQL) 9.6.24\n", (9, 6)),
        ];
        for (banner, (major, minor)) in cases {
            assert_eq!(
                Version::from_version_output(banner),
                Some(Version { major, minor }),
                "{banner}"
            );
        }
        assert_eq!(Version::from_version_output("pg_dump"), None);
    }
}
