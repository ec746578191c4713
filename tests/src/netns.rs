//! Network namespaces created by a test and removed when it ends.

use std::fs::File;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn next_id() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// An interface name unique to this process and call, at most 15 bytes (IFNAMSIZ - 1):
/// `tag` (up to 4 bytes), the pid in base 36 and a counter.
pub fn unique_ifname(tag: &str) -> String {
    let tag: String = tag.chars().take(4).collect();
    format!("{tag}{}x{}", base36(std::process::id()), base36(next_id()))
}

fn base36(mut n: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// A named network namespace (`ip netns add`), unique per process and call, deleted on drop
/// together with every interface inside it. Loopback is brought up on creation.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `herald-<tag>-<pid>-<n>`. The first call of a process also removes the
    /// namespaces of test processes that are gone ([`remove_stale`]).
    pub fn new(tag: &str) -> Self {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(remove_stale);
        let name = format!("herald-{tag}-{}-{}", std::process::id(), next_id());
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <name> <program> <args>`, ready to be extended and run.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args` inside the namespace and returns stdout; panics with stderr on failure.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let out = run(self.command(program).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `program args` inside the namespace and returns its whole output, success or not.
    pub fn try_exec(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program} in {}: {e}", self.name))
    }

    /// `ip <args>` inside the namespace; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        let out = run(Command::new("ip").args(&full));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Enables IPv4 and IPv6 forwarding inside the namespace (for router namespaces).
    pub fn enable_forwarding(&self) {
        self.exec(
            "sysctl",
            &[
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ],
        );
    }

    /// Moves the calling thread into this namespace (for in-process drivers under test). The
    /// thread stays there; use a dedicated thread.
    pub fn enter_current_thread(&self) {
        let file = File::open(format!("/run/netns/{}", self.name))
            .unwrap_or_else(|e| panic!("opening /run/netns/{}: {e}", self.name));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns into {}: {e}", self.name));
    }
}

impl Netns {
    /// Runs `f` on a fresh thread inside this namespace and returns its result: for opening
    /// sockets that belong to the namespace (they stay bound to it after the thread ends).
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.enter_current_thread();
                    f()
                })
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Creates a veth pair with one end in each namespace, both up, with addresses (`a_addrs`,
/// `b_addrs` in `ip addr add` CIDR form). IPv6 duplicate address detection is switched off on
/// both ends, so addresses are usable at once. Returns the two interface names.
pub fn veth_pair(a: &Netns, a_addrs: &[&str], b: &Netns, b_addrs: &[&str]) -> (String, String) {
    let (a_if, b_if) = (unique_ifname("va"), unique_ifname("vb"));
    a.ip(&[
        "link",
        "add",
        &a_if,
        "type",
        "veth",
        "peer",
        "name",
        &b_if,
        "netns",
        b.name(),
    ]);
    for (ns, ifname, addrs) in [(a, &a_if, a_addrs), (b, &b_if, b_addrs)] {
        ns.exec(
            "sysctl",
            &["-qw", &format!("net.ipv6.conf.{ifname}.accept_dad=0")],
        );
        for addr in addrs {
            ns.ip(&["addr", "add", addr, "dev", ifname]);
        }
        ns.ip(&["link", "set", ifname, "up"]);
    }
    (a_if, b_if)
}

/// The pid in a name [`Netns::new`] gave: `herald-<tag>-<pid>-<n>`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("herald-")?;
    let mut parts = rest.rsplitn(3, '-');
    let n = parts.next()?;
    let pid = parts.next()?;
    let tag = parts.next()?;
    (!tag.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Deletes the namespaces named by [`Netns::new`] whose process no longer runs: a test
/// process that was killed (a timeout, SIGKILL) had no chance to drop them, and they would
/// stay on the machine. A namespace of a process still running is never touched.
pub fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = owner_pid(&name)
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

#[cfg(test)]
mod stale_tests {
    use super::owner_pid;

    #[test]
    fn only_names_made_by_netns_new_have_an_owner() {
        assert_eq!(owner_pid("herald-xlb-14370-0"), Some(14370));
        assert_eq!(owner_pid("herald-skb-spk-77-12"), Some(77));
        for other in [
            "herald-demo-client",
            "herald-14370-0",
            "cni-1234-5",
            "herald-x-1-y",
        ] {
            assert_eq!(owner_pid(other), None, "{other}");
        }
    }
}
