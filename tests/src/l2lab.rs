//! Layer-2 lab: herald-l2's `l2-agent` example as node processes on a [`Segment`], and a capture of what the
//! client namespace sees on the wire.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use herald_l2::raw::{ETH_P_ARP, ETH_P_IPV6, PacketSocket};

use crate::Daemon;
use crate::segment::{Port, Segment};

/// Gossip port the lab nodes use.
pub const GOSSIP_PORT: u16 = 7946;

/// A gossip key file, removed on drop.
#[derive(Debug)]
pub struct KeyFile {
    path: PathBuf,
}

impl KeyFile {
    /// Writes a 64-hex-digit key to a unique file under the temp directory.
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "herald-l2-key-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let key: String = (0..32u8)
            .map(|i| format!("{:02x}", i.wrapping_mul(29) ^ 0x5a))
            .collect();
        std::fs::write(&path, key).expect("writing key file");
        KeyFile { path }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One `l2-agent` process in a node namespace, with the `owned` lines it printed.
#[derive(Debug)]
pub struct LabNode {
    /// The process (SIGKILLed on drop).
    pub daemon: Daemon,
    /// Node name given to the process.
    pub name: String,
    owned: Arc<Mutex<Option<BTreeSet<String>>>>,
    reports: Arc<AtomicUsize>,
    reader: Option<JoinHandle<()>>,
}

/// Node name of node `i` (0-based) in the lab.
pub fn node_name(i: usize) -> String {
    format!("node{}", i + 1)
}

impl LabNode {
    /// Starts node `i` of `seg` with `bin` answering for `addrs` on its segment interface,
    /// gossiping on its gossip interface with every node of the segment as seed.
    pub fn spawn(seg: &Segment, i: usize, addrs: &[&str], key: &KeyFile, extra: &[&str]) -> Self {
        let name = node_name(i);
        let node = &seg.nodes[i];
        let bin = crate::workspace_example("l2-agent");
        let mut cmd = node.ns.command(bin.to_str().expect("a UTF-8 path"));
        cmd.args(["--name", &name, "--interface", &node.ifname]);
        cmd.args([
            "--gossip-bind",
            &format!("{}:{GOSSIP_PORT}", seg.gossip[i].ipv4),
        ]);
        for g in &seg.gossip {
            cmd.args(["--seed", &format!("{}:{GOSSIP_PORT}", g.ipv4)]);
        }
        cmd.arg("--key-file").arg(key.path());
        for a in addrs {
            cmd.args(["--address", a]);
        }
        cmd.args(extra);
        cmd.stdout(Stdio::piped());
        let mut daemon = Daemon::spawn(&name, &mut cmd);
        let stdout = daemon.take_stdout().expect("piped stdout");
        let owned = Arc::new(Mutex::new(None));
        let sink = owned.clone();
        let reports = Arc::new(AtomicUsize::new(0));
        let counted = reports.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("owned") {
                    let set = rest
                        .split_whitespace()
                        .filter_map(|p| p.split('@').next())
                        .map(str::to_owned)
                        .collect();
                    *sink.lock().expect("lock") = Some(set);
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            }
            // The process ended: it announces nothing any more.
            *sink.lock().expect("lock") = None;
        });
        LabNode {
            daemon,
            name,
            owned,
            reports,
            reader: Some(reader),
        }
    }

    /// How many `owned` lines the node printed: one at start and one per change of what it
    /// announces.
    pub fn reports(&self) -> usize {
        self.reports.load(Ordering::SeqCst)
    }

    /// The addresses the node last said it announces (`None` before its first report and
    /// after it exited).
    pub fn owned(&self) -> Option<BTreeSet<String>> {
        self.owned.lock().expect("lock").clone()
    }

    /// Sends SIGTERM: the node leaves the gossip gracefully and exits.
    pub fn terminate(&self) {
        self.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// SIGKILLs the node and waits for it.
    pub fn kill(&mut self) {
        self.daemon.kill();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        *self.owned.lock().expect("lock") = None;
    }
}

impl Drop for LabNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Checks that every address in `addrs` is announced by exactly one of the running `nodes`
/// (by their own reports); returns the owner index per address.
pub fn owners(nodes: &[LabNode], addrs: &[&str]) -> Result<Vec<usize>, String> {
    let reports: Vec<Option<BTreeSet<String>>> = nodes.iter().map(LabNode::owned).collect();
    addrs
        .iter()
        .map(|a| {
            let holders: Vec<usize> = reports
                .iter()
                .enumerate()
                .filter(|(_, r)| r.as_ref().is_some_and(|s| s.contains(*a)))
                .map(|(i, _)| i)
                .collect();
            match holders.as_slice() {
                [one] => Ok(*one),
                _ => Err(format!("{a} held by {holders:?}; reports {reports:?}")),
            }
        })
        .collect()
}

/// A frame seen in the client namespace and when.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When the capture thread read it.
    pub at: Instant,
    /// The frame.
    pub frame: Vec<u8>,
}

/// Captures ARP and IPv6 frames arriving at the client until dropped.
#[derive(Debug)]
pub struct Capture {
    frames: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Capture {
    /// Starts capturing on the client's interface.
    pub fn start(client: &Port) -> Self {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for ethertype in [ETH_P_ARP, ETH_P_IPV6] {
            let socket = client
                .ns
                .run_in(|| PacketSocket::open(&client.ifname, ethertype))
                .expect("capture socket");
            let (frames, stop) = (frames.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(Some(n)) = socket.recv_timeout(&mut buf, Duration::from_millis(50)) {
                        frames.lock().expect("lock").push(Seen {
                            at: Instant::now(),
                            frame: buf[..n].to_vec(),
                        });
                    }
                }
            }));
        }
        Capture {
            frames,
            stop,
            threads,
        }
    }

    /// The first frame seen after `since` that satisfies `pred`.
    pub fn first_after(&self, since: Instant, pred: impl Fn(&[u8]) -> bool) -> Option<Seen> {
        self.frames
            .lock()
            .expect("lock")
            .iter()
            .find(|s| s.at >= since && pred(&s.frame))
            .cloned()
    }

    /// The frames seen so far, forgetting them (bounds memory in long runs).
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.frames.lock().expect("lock"))
    }

    /// Forgets the frames seen so far (bounds memory across benchmark trials).
    pub fn clear(&self) {
        self.frames.lock().expect("lock").clear();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Parses `aa:bb:..` into bytes.
pub fn mac_bytes(mac: &str) -> [u8; 6] {
    let v: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex"))
        .collect();
    v.try_into().expect("6 bytes")
}

/// A gratuitous ARP (broadcast request, sender = target = `vip`) from `mac`.
pub fn is_gratuitous_arp(frame: &[u8], mac: [u8; 6], vip: std::net::Ipv4Addr) -> bool {
    frame.len() >= 42
        && frame[0..6] == [0xff; 6]
        && frame[6..12] == mac
        && frame[12..14] == [0x08, 0x06]
        && frame[20..22] == [0, 1]
        && frame[28..32] == vip.octets()
        && frame[38..42] == vip.octets()
}

/// An ARP reply from `mac` saying `vip` is at `mac`.
pub fn is_arp_reply(frame: &[u8], mac: [u8; 6], vip: std::net::Ipv4Addr) -> bool {
    frame.len() >= 42
        && frame[6..12] == mac
        && frame[12..14] == [0x08, 0x06]
        && frame[20..22] == [0, 2]
        && frame[22..28] == mac
        && frame[28..32] == vip.octets()
}

/// An unsolicited neighbour advertisement (to all nodes, override set) for `vip` from `mac`.
pub fn is_unsolicited_na(frame: &[u8], mac: [u8; 6], vip: std::net::Ipv6Addr) -> bool {
    frame.len() >= 78
        && frame[6..12] == mac
        && frame[12..14] == [0x86, 0xdd]
        && frame[20] == 58
        && frame[38..54] == herald_l2::packet::ALL_NODES.octets()
        && frame[54] == 136
        && frame[58] & 0x60 == 0x20 // solicited clear, override set
        && frame[62..78] == vip.octets()
}

/// An ARP request from the client for `vip`, to send repeatedly while measuring.
pub fn arp_request(client: &Port, vip: std::net::Ipv4Addr) -> Vec<u8> {
    let src = mac_bytes(&client.mac);
    let sender: std::net::Ipv4Addr = client.ipv4.parse().expect("client v4");
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&vip.octets());
    f
}
