//! The lab harness itself: namespaces are created, connected and removed.

use std::time::Duration;

use herald_tests::{Daemon, Netns, require_privileged, veth_pair, wait_until};

fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

#[test]
fn veth_pair_connects_two_namespaces_and_drop_removes_them() {
    require_privileged!();
    herald_tests::require_command("ping", "iputils-ping");
    let (a, b) = (Netns::new("harn-a"), Netns::new("harn-b"));
    veth_pair(
        &a,
        &["10.99.0.1/24", "fd00:99::1/64"],
        &b,
        &["10.99.0.2/24", "fd00:99::2/64"],
    );
    for target in ["10.99.0.2", "fd00:99::2"] {
        let out = a.try_exec("ping", &["-c1", "-W2", target]);
        assert!(
            out.status.success(),
            "ping {target}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let names = (a.name().to_owned(), b.name().to_owned());
    assert!(netns_exists(&names.0) && netns_exists(&names.1));
    drop((a, b));
    assert!(
        !netns_exists(&names.0) && !netns_exists(&names.1),
        "namespaces left behind"
    );
}

#[test]
fn daemon_is_killed_by_pid_on_drop() {
    require_privileged!();
    let ns = Netns::new("harn-d");
    let mut daemon = Daemon::spawn("sleep", ns.command("sleep").arg("600"));
    let pid = daemon.pid();
    assert!(!daemon.has_exited());
    drop(daemon);
    wait_until("the child to be gone", Duration::from_secs(5), || {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            Err(format!("/proc/{pid} still exists"))
        } else {
            Ok(())
        }
    });
}

#[test]
fn namespaces_left_by_a_killed_test_process_are_removed_and_a_running_ones_are_kept() {
    require_privileged!();
    // A pid that no longer runs: a child that has exited and been reaped.
    let mut child = std::process::Command::new("true").spawn().expect("true");
    let dead = child.id();
    child.wait().expect("wait");
    let stale = format!("herald-stale-{dead}-0");
    let live = Netns::new("alive");
    let add = std::process::Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .expect("ip netns add");
    assert!(add.success());
    let exists = |name: &str| std::path::Path::new(&format!("/run/netns/{name}")).exists();
    herald_tests::netns::remove_stale();
    let (stale_left, live_left) = (exists(&stale), exists(live.name()));
    if stale_left {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &stale])
            .status();
    }
    assert!(!stale_left, "{stale} (pid {dead} gone) was not removed");
    assert!(
        live_left,
        "{} of this running process was removed",
        live.name()
    );
}
