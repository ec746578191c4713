//! The gate in front of every privileged test.

/// True when `HERALD_SKIP_PRIVILEGED=1` asks to skip privileged tests. Otherwise checks that the
/// process runs as root and panics with a message saying what is missing if it does not.
pub fn skip_privileged() -> bool {
    if std::env::var("HERALD_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        eprintln!("skipped: HERALD_SKIP_PRIVILEGED=1");
        return true;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces, raw sockets, BPF); run `make test` as root, \
         or set HERALD_SKIP_PRIVILEGED=1 to skip it on a developer machine"
    );
    require_command("ip", "iproute2");
    false
}

/// Panics unless `cmd` is on `PATH`, naming the Debian package that provides it.
pub fn require_command(cmd: &str, debian_package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(cmd))))
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `{cmd}` (Debian package {debian_package}); `make test` installs it as root"
    );
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Returns from the calling test when privileged tests are skipped; panics naming the missing
/// prerequisite when they cannot run.
#[macro_export]
macro_rules! require_privileged {
    () => {
        if $crate::skip_privileged() {
            return;
        }
    };
}
