//! herald-tests: network-namespace lab harness and real-peer wrappers for end-to-end tests.
//!
//! Tests that cross a wire run against real kernels and daemons in network namespaces that the
//! test creates and removes itself. They need root, `ip` (iproute2) and whatever daemon they
//! drive; when a prerequisite is missing they fail with a message naming it. Setting
//! `HERALD_SKIP_PRIVILEGED=1` skips them instead (for a developer's laptop; CI never sets it).
//!
//! # Layout
//! - [`privileged`]: the skip / fail-loudly gate ([`require_privileged!`], [`require_command`]).
//! - [`netns`]: [`Netns`], a uniquely named namespace deleted on drop, with veth helpers.
//! - [`process`]: [`Daemon`], a child process ended by its own pid on drop.
//! - [`bpffs`]: [`BpfFs`], a private bpf filesystem for pinned maps, unmounted on drop.
//! - [`container`]: Herald's images built with podman and run as the chart's pod spec says.
//! - [`bird`]: [`bird::Bird`], BIRD 2 as a BGP peer read back through `birdc`.
//! - [`frr`]: [`frr::Frr`], FRR 8 (zebra, bgpd, bfdd) read back through `vtysh ... json`.
//! - [`gobgp`]: [`gobgp::GoBgp`], GoBGP 3 read back through `gobgp ... -j`.
//! - [`exabgp`]: [`exabgp::ExaBgp`], ExaBGP 4 with its parsed messages read back as JSON.
//! - [`http`]: a minimal GET for admin endpoints in a namespace, and a metric reader.
//! - [`lab`]: [`lab::HeraldLab`], herald-bgp's `bgp-speaker` example as a process.
//! - [`l2lab`]: herald-l2's `l2-agent` example as node processes, and a client-side wire capture.
//! - [`segment`]: a bridge namespace with node and client namespaces (layer-2 tests) and
//!   `arping` / `ndisc6` wrappers.
//! - [`name_server`]: [`NameServer`], a TCP server in a namespace answering with its name,
//!   and [`Conn`], a client of it.
//! - [`xdp_pass`]: [`XdpPass`], a pass-everything XDP program for the receiving side of a
//!   veth that a balancer transmits on.
//! - [`placement`]: the addresses standalone mode gives a configuration, to expect them.
//! - [`wait`]: [`wait_until`], polling a condition with a deadline instead of sleeping.

pub mod bird;
pub mod bpffs;
pub mod container;
pub mod exabgp;
pub mod frr;
pub mod gobgp;
pub mod http;
pub mod l2lab;
pub mod lab;
pub mod name_server;
pub mod netns;
pub mod placement;
pub mod privileged;
pub mod process;
pub mod segment;
pub mod wait;
pub mod xdp_pass;

pub use bpffs::BpfFs;
pub use name_server::{Conn, NameServer};
pub use netns::{Netns, unique_ifname, veth_pair};
pub use privileged::{require_command, skip_privileged};
pub use process::Daemon;
pub use wait::wait_until;
pub use xdp_pass::XdpPass;

/// target/<profile>/, where this test executable's directory (target/<profile>/deps) is.
fn workspace_binary_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(std::path::Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The path of a binary of this workspace (`herald-speaker`, ...), next to the test
/// executable's directory. `cargo test --workspace` (what `make test` runs) builds them.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let path = workspace_binary_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: build the workspace first (`cargo build --workspace`, as `make test` does)",
        path.display()
    );
    path
}

/// The path of an example of a workspace library (`bgp-speaker`, `l2-agent`,
/// `bfd-session`), in the target directory's `examples/`. `cargo build --workspace
/// --all-targets` (what `make test` runs first) builds them.
pub fn workspace_example(name: &str) -> std::path::PathBuf {
    let bin = workspace_binary_dir().join("examples").join(name);
    assert!(
        bin.exists(),
        "{} not found: build the examples first (`cargo build --workspace --all-targets`, as \
         `make test` does)",
        bin.display()
    );
    bin
}

/// `herald-speaker status --json` of the speaker running in `ns`.
pub fn speaker_status(ns: &Netns) -> Result<serde_json::Value, String> {
    let bin = workspace_binary("herald-speaker");
    let out = ns
        .command(bin.to_str().expect("a UTF-8 path"))
        .args(["status", "--json"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}
