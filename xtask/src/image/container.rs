//! The buildah side of `xtask image-test`: the archive read back into a container whose root
//! is mounted, what a container runtime would mount inside it, and the clean-up.

use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use super::Image;
use crate::target_dir;

/// A buildah container of the archive's image, its root mounted; removed with the image
/// when dropped.
pub(super) struct Container {
    name: String,
    /// The container's root directory.
    pub(super) root: PathBuf,
    /// What was mounted inside it, to unmount in reverse.
    mounts: RefCell<Vec<PathBuf>>,
}

/// buildah with the storage `scripts/image` uses.
fn buildah() -> Command {
    let work = target_dir().join("image");
    let mut command = Command::new("buildah");
    command
        .args(["--storage-driver", "vfs", "--root"])
        .arg(work.join("storage"))
        .arg("--runroot")
        .arg(work.join("run"))
        .env("BUILDAH_ISOLATION", "chroot");
    command
}

/// Runs `command` and returns its stdout, trimmed.
fn output(command: &mut Command) -> Result<String> {
    let output = command.output().with_context(|| format!("{command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl Container {
    pub(super) fn from_archive(archive: &Path) -> Result<Container> {
        let name = format!("pgdump-api-image-test-{}", std::process::id());
        output(
            buildah()
                .args(["from", "--quiet", "--pull-always", "--name", &name])
                .arg(format!("docker-archive:{}", archive.display())),
        )?;
        let mut container = Container {
            name,
            root: PathBuf::new(),
            mounts: Default::default(),
        };
        container.root = PathBuf::from(output(buildah().args(["mount", &container.name]))?);
        Ok(container)
    }

    /// The image's configuration (`User`, `Env`, `Entrypoint`, `Labels`, ...).
    pub(super) fn config(&self) -> Result<Value> {
        let inspect = output(buildah().args(["inspect", "--type", "container", &self.name]))?;
        let inspect: Value = serde_json::from_str(&inspect).context("buildah inspect")?;
        Ok(inspect["OCIv1"]["config"].clone())
    }

    /// What a container runtime provides: `/proc`, and `/dev` with the usual device nodes.
    pub(super) fn mount_runtime(&self) -> Result<()> {
        let proc = self.root.join("proc");
        output(
            Command::new("mount")
                .args(["-t", "proc", "proc"])
                .arg(&proc),
        )?;
        self.mounts.borrow_mut().push(proc);
        let dev = self.root.join("dev");
        output(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "mode=755,nosuid", "tmpfs"])
                .arg(&dev),
        )?;
        self.mounts.borrow_mut().push(dev.clone());
        for node in ["null", "zero", "full", "random", "urandom"] {
            let target = dev.join(node);
            std::fs::write(&target, "").context("device node")?;
            output(
                Command::new("mount")
                    .arg("--bind")
                    .arg(Path::new("/dev").join(node))
                    .arg(&target),
            )?;
            self.mounts.borrow_mut().push(target);
        }
        Ok(())
    }

    /// Writes `contents` to `path` inside the container, readable by the image's user.
    pub(super) fn write(&self, path: &str, contents: &str, image: &Image) -> Result<()> {
        let file = self.root.join(path.trim_start_matches('/'));
        std::fs::write(&file, contents).with_context(|| format!("write {path}"))?;
        std::os::unix::fs::chown(&file, Some(image.uid), Some(image.gid))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        Ok(())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        for mount in self.mounts.borrow_mut().drain(..).rev() {
            let _ = Command::new("umount").arg(&mount).status();
        }
        let image = output(buildah().args(["inspect", "--format", "{{.FromImageID}}", &self.name]));
        let _ = output(buildah().args(["rm", &self.name]));
        if let Ok(image) = image {
            let _ = output(buildah().args(["rmi", &image]));
        }
    }
}
