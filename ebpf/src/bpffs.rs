//! The bpf filesystem that pinned maps and attachments live in.

use std::path::Path;

use crate::error::Error;

/// Where the kernel's bpf filesystem is conventionally mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

fn is_bpffs_mounted(mountpoint: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|mounts| {
        mounts.lines().any(|l| {
            let mut f = l.split_whitespace();
            let (_, point, fstype) = (f.next(), f.next(), f.next());
            fstype == Some("bpf") && point.map(Path::new) == Some(mountpoint)
        })
    })
}

/// Makes sure `dir` exists on a bpf filesystem: mounts bpffs at [`BPFFS`] if `dir` is below it
/// and nothing is mounted there yet, then creates `dir`.
pub fn prepare_dir(dir: &Path) -> Result<(), Error> {
    let fail = |reason: String| Error::Bpffs {
        path: dir.to_owned(),
        reason,
    };
    let root = Path::new(BPFFS);
    if dir.starts_with(root) && !is_bpffs_mounted(root) {
        nix::mount::mount(
            Some("bpf"),
            root,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| fail(format!("mounting bpffs at {BPFFS}: {e} (needs root)")))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("creating the pin directory: {e}")))
}
