//! Where a dump goes, written so that it never looks complete when it is not: into a
//! temporary file beside its final path, renamed into place only once the whole response was
//! read. Until then the final path is untouched (an older file there stays as it was); on any
//! failure, or when the writer is dropped, the temporary file is removed.

use std::fs::Permissions;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tempfile::{NamedTempFile, TempDir};

const BUFFER: usize = 64 * 1024;

/// A file being written; it appears at its path only on [`AtomicFile::commit`].
pub(super) struct AtomicFile {
    path: PathBuf,
    temp: BufWriter<NamedTempFile>,
}

impl AtomicFile {
    /// Starts writing `path`: creates a hidden temporary file in the same directory, so that
    /// the final rename cannot cross file systems.
    pub(super) fn create(path: &Path) -> anyhow::Result<AtomicFile> {
        let file_name = path
            .file_name()
            .with_context(|| format!("{} does not name a file", path.display()))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{}.", file_name.to_string_lossy()))
            .suffix(".partial")
            // Like any new file: what the umask allows. tempfile's default is owner-only.
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .with_context(|| format!("could not create a temporary file in {}", dir.display()))?;
        Ok(AtomicFile {
            path: path.to_owned(),
            temp: BufWriter::with_capacity(BUFFER, temp),
        })
    }

    /// Flushes the data to disk and renames the temporary file to the final path.
    pub(super) fn commit(self) -> anyhow::Result<()> {
        let path = self.path;
        let temp = self
            .temp
            .into_inner()
            .map_err(|err| err.into_error())
            .with_context(|| format!("could not write {}", path.display()))?;
        temp.as_file()
            .sync_all()
            .with_context(|| format!("could not write {}", path.display()))?;
        temp.persist(&path)
            .map_err(|err| err.error)
            .with_context(|| format!("could not rename the finished dump to {}", path.display()))?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// A directory being filled; it appears at its path only on [`AtomicDir::commit`], so that a
/// migration directory never exists without its complete `up.sql`.
pub(super) struct AtomicDir {
    path: PathBuf,
    temp: TempDir,
}

impl AtomicDir {
    /// Starts building `path`, which must not exist yet; its parent directories are created.
    pub(super) fn create(path: &Path) -> anyhow::Result<AtomicDir> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            bail!("{} does not name a directory", path.display());
        };
        if path.exists() {
            bail!("{} already exists", path.display());
        }
        std::fs::create_dir_all(parent)
            .with_context(|| format!("could not create {}", parent.display()))?;
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".partial")
            .permissions(Permissions::from_mode(0o777))
            .tempdir_in(parent)
            .with_context(|| {
                format!(
                    "could not create a temporary directory in {}",
                    parent.display()
                )
            })?;
        Ok(AtomicDir {
            path: path.to_owned(),
            temp,
        })
    }

    /// Where a file of the directory is written before the commit.
    pub(super) fn staged(&self, file: &str) -> PathBuf {
        self.temp.path().join(file)
    }

    /// Renames the temporary directory to the final path; on failure it is removed.
    pub(super) fn commit(self) -> anyhow::Result<PathBuf> {
        std::fs::rename(self.temp.path(), &self.path).with_context(|| {
            format!("could not rename the migration to {}", self.path.display())
        })?;
        // The temporary path is gone now; keep TempDir from looking for it.
        let _ = self.temp.keep();
        Ok(self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump.sql");
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"SELECT 1;\n").unwrap();
        assert!(!path.exists());
        assert_eq!(entries(dir.path()).len(), 1);
        file.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "SELECT 1;\n");
        assert_eq!(entries(dir.path()), ["dump.sql"]);
    }

    #[test]
    fn dropped_file_leaves_the_old_one_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump.sql");
        std::fs::write(&path, "old").unwrap();
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"new, but cut short").unwrap();
        drop(file);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(entries(dir.path()), ["dump.sql"]);
    }

    #[test]
    fn directory_appears_only_on_commit() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("migrations/default/1_init");
        let dir = AtomicDir::create(&path).unwrap();
        std::fs::write(dir.staged("up.sql"), "SELECT 1;\n").unwrap();
        assert!(!path.exists());
        assert_eq!(dir.commit().unwrap(), path);
        assert_eq!(entries(&path), ["up.sql"]);
        assert_eq!(entries(path.parent().unwrap()), ["1_init"]);

        let dropped = AtomicDir::create(&root.path().join("migrations/default/2_x")).unwrap();
        drop(dropped);
        assert_eq!(entries(path.parent().unwrap()), ["1_init"]);
        assert!(AtomicDir::create(&path).is_err(), "exists already");
    }
}
