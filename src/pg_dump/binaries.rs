//! The installed pg_dump binaries: found in the usual places or configured, each asked for its
//! version, and the choice of one for a server's version ([`Toolbox::for_server`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::server_version::Version;

/// Reads the output of `pg_dump --version`, e.g. `pg_dump (PostgreSQL) 15.18 (Debian …)`.
fn version_of(output: &str) -> Option<Version> {
    let number = output
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut parts = number.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some(Version { major, minor })
}

/// One installed pg_dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgDump {
    pub path: PathBuf,
    pub version: Version,
}

impl PgDump {
    /// Asks `path --version`.
    pub(crate) fn probe(path: &Path) -> anyhow::Result<PgDump> {
        let output = Command::new(path)
            .arg("--version")
            .output()
            .with_context(|| format!("could not run {}", path.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("{} --version failed: {}", path.display(), output.status);
        }
        let version = version_of(&stdout)
            .with_context(|| format!("{} --version printed {stdout:?}", path.display()))?;
        Ok(PgDump {
            path: path.to_owned(),
            version,
        })
    }
}

/// The pg_dump binaries this server may run.
#[derive(Debug, Clone)]
pub(crate) struct Toolbox {
    binaries: Vec<PgDump>,
}

impl Toolbox {
    /// Probes the configured paths (each a pg_dump or a directory holding one), or, when none
    /// are configured, the usual install locations. Fails when nothing usable is found.
    pub(crate) fn discover(configured: &[PathBuf]) -> anyhow::Result<Toolbox> {
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

    /// A toolbox of exactly these binaries (tests: an empty one has no pg_dump).
    #[cfg(test)]
    pub(crate) fn from_binaries(binaries: Vec<PgDump>) -> Toolbox {
        Toolbox { binaries }
    }

    /// Every known binary, newest first.
    pub(crate) fn binaries(&self) -> &[PgDump] {
        &self.binaries
    }

    /// The newest pg_dump: it can dump every older server (used when the server's version
    /// could not be learnt; pg_dump then reports what is wrong itself).
    pub(crate) fn newest(&self) -> Option<&PgDump> {
        self.binaries.iter().max_by_key(|b| b.version)
    }

    /// The pg_dump for a server: the same major, else the nearest newer one (pg_dump refuses
    /// newer servers, and a much newer pg_dump writes SQL an old server cannot replay).
    pub(crate) fn for_server(&self, server: Version) -> Option<&PgDump> {
        self.binaries
            .iter()
            .filter(|b| b.version.major >= server.major)
            .min_by_key(|b| (b.version.major, std::cmp::Reverse(b.version.minor)))
    }

    /// The installed versions, newest first, for error messages.
    pub(crate) fn versions(&self) -> Vec<Version> {
        self.binaries.iter().map(|b| b.version).collect()
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

    fn toolbox(versions: &[(u32, u32)]) -> Toolbox {
        Toolbox::from_binaries(
            versions
                .iter()
                .map(|&(major, minor)| PgDump {
                    path: PathBuf::from(format!("/pg{major}.{minor}/pg_dump")),
                    version: Version { major, minor },
                })
                .collect(),
        )
    }

    #[test]
    fn the_same_major_else_the_nearest_newer() {
        let tools = toolbox(&[(18, 1), (15, 14), (15, 18), (17, 6)]);
        let pick = |major| {
            tools
                .for_server(Version { major, minor: 0 })
                .map(|b| b.version)
        };
        assert_eq!(
            pick(15),
            Some(Version {
                major: 15,
                minor: 18
            })
        );
        assert_eq!(
            pick(16),
            Some(Version {
                major: 17,
                minor: 6
            })
        );
        assert_eq!(
            pick(12),
            Some(Version {
                major: 15,
                minor: 18
            })
        );
        assert_eq!(
            pick(18),
            Some(Version {
                major: 18,
                minor: 1
            })
        );
        assert_eq!(pick(19), None);
    }

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
                version_of(banner),
                Some(Version { major, minor }),
                "{banner}"
            );
        }
        assert_eq!(version_of("pg_dump"), None);
    }
}
