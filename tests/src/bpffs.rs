//! A private bpf filesystem for pins: mounted on a temporary directory in the host's mount
//! namespace (so processes started with `ip netns exec`, which remounts `/sys`, see it and
//! pins outlive a killed speaker), unmounted with everything in it on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A bpffs mount on a temporary directory.
#[derive(Debug)]
pub struct BpfFs {
    dir: tempfile::TempDir,
}

impl BpfFs {
    /// Mounts a fresh bpffs instance.
    pub fn mount() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("herald-bpffs-")
            .tempdir()
            .expect("creating a directory for bpffs");
        let out = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mount -t bpf on {}: {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A pin directory below the mount point.
    pub fn pin_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        // Lazy: a speaker still being reaped must not keep the mount (and its pins) alive.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output();
    }
}
