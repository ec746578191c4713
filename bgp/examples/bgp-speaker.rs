//! bgp-speaker: the `herald-bgp` library as a small daemon, driven by a config file. The
//! example of the library's API (sessions, listener, level-triggered routes, status), and
//! the process the library's end-to-end tests run against BIRD, GoBGP and FRR (SIGKILL for
//! graceful restart, several speakers for ECMP). Not a product binary:
//! `herald-speaker standalone` is.
//!
//! ```text
//! cargo run -p herald-bgp --example bgp-speaker -- CONFIG
//! ```
//!
//! Config, one directive per line (`#` comments):
//! ```text
//! local-as 64512
//! router-id 192.0.2.1
//! peer 10.0.0.2 as 64513        # repeatable; options below apply to the last peer
//! password secret
//! ttl 3
//! gtsm
//! hold 9
//! passive
//! port 1179
//! source 10.0.0.1
//! next-hop-v4 10.0.0.1
//! next-hop-v6 fd00::1
//! listen 0.0.0.0:179            # listener for passive peers
//! status /path/file             # status lines rewritten on every change
//! route 198.51.100.1/32 community 64512:100 large 64512:1:2 local-pref 200
//! routes4 198.18.0.0 20000      # N consecutive /32 from a base address
//! routes6 2001:db8:: 20000      # N consecutive /128
//! ```
//! SIGTERM closes every session with a Cease and a shutdown communication (RFC 8203);
//! SIGHUP re-reads only the routes and sets them (level-triggered).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herald_bgp::driver::{PeerConfig, PeerHandle};
use herald_bgp::fsm::SessionConfig;
use herald_bgp::listener::Listener;
use herald_bgp::route::{DesiredRoutes, RouteAttrs};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

struct Lab {
    peers: Vec<PeerConfig>,
    listen: Option<SocketAddr>,
    status: Option<PathBuf>,
    routes: DesiredRoutes,
}

fn community(s: &str) -> Result<u32> {
    let (a, b) = s.split_once(':').context("community is a:b")?;
    Ok((a.parse::<u32>()? << 16) | b.parse::<u32>()?)
}

fn large(s: &str) -> Result<(u32, u32, u32)> {
    let p: Vec<u32> = s.split(':').map(str::parse).collect::<Result<_, _>>()?;
    match p.as_slice() {
        [a, b, c] => Ok((*a, *b, *c)),
        _ => bail!("large community is a:b:c"),
    }
}

fn parse(path: &Path) -> Result<Lab> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    let mut lab = Lab {
        peers: Vec::new(),
        listen: None,
        status: None,
        routes: HashMap::new(),
    };
    let (mut local_as, mut router_id) = (0u32, Ipv4Addr::UNSPECIFIED);
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let w: Vec<&str> = line.split_whitespace().collect();
        let peer = lab.peers.last_mut();
        match (w.as_slice(), peer) {
            ([], _) => {}
            (["local-as", n], _) => local_as = n.parse()?,
            (["router-id", id], _) => router_id = id.parse()?,
            (["peer", addr, "as", asn], _) => {
                let mut s = SessionConfig::new(local_as, asn.parse()?, router_id);
                s.connect_retry = Duration::from_millis(500);
                lab.peers.push(PeerConfig::new(s, addr.parse()?));
            }
            (["password", pw], Some(p)) => p.password = Some((*pw).to_owned()),
            (["ttl", n], Some(p)) => p.ttl = Some(n.parse()?),
            (["gtsm"], Some(p)) => p.gtsm = true,
            (["hold", n], Some(p)) => p.session.hold_time = n.parse()?,
            (["passive"], Some(p)) => p.session.passive = true,
            (["port", n], Some(p)) => p.peer_port = n.parse()?,
            (["source", a], Some(p)) => p.source_addr = Some(a.parse()?),
            (["next-hop-v4", a], Some(p)) => p.session.next_hop_v4 = Some(a.parse()?),
            (["next-hop-v6", a], Some(p)) => p.session.next_hop_v6 = Some(a.parse()?),
            (["no-graceful-restart"], Some(p)) => p.session.graceful_restart = None,
            (["listen", a], _) => lab.listen = Some(a.parse()?),
            (["status", f], _) => lab.status = Some(PathBuf::from(f)),
            (["route", prefix, rest @ ..], _) => {
                let (mut comms, mut larges, mut pref) = (vec![], vec![], None);
                for kv in rest.chunks(2) {
                    match kv {
                        ["community", c] => comms.push(community(c)?),
                        ["large", c] => larges.push(large(c)?),
                        ["local-pref", n] => pref = Some(n.parse()?),
                        other => bail!("unknown route option {other:?}"),
                    }
                }
                let prefix: IpNet = prefix.parse()?;
                lab.routes
                    .insert(prefix.trunc(), RouteAttrs::new(comms, larges, pref));
            }
            (["routes4", base, n], _) => {
                let base = u32::from(base.parse::<Ipv4Addr>()?);
                for i in 0..n.parse::<u32>()? {
                    let net = Ipv4Net::new(Ipv4Addr::from(base + i), 32)?;
                    lab.routes.insert(IpNet::V4(net), RouteAttrs::default());
                }
            }
            (["routes6", base, n], _) => {
                let base = u128::from(base.parse::<Ipv6Addr>()?);
                for i in 0..n.parse::<u128>()? {
                    let net = Ipv6Net::new(Ipv6Addr::from(base + i), 128)?;
                    lab.routes.insert(IpNet::V6(net), RouteAttrs::default());
                }
            }
            (other, _) => bail!("cannot parse config line {other:?}"),
        }
    }
    Ok(lab)
}

fn write_status(path: &Path, peers: &[PeerHandle]) {
    let mut out = String::new();
    for p in peers {
        let s = p.status();
        out.push_str(&format!(
            "peer={} state={} sent={} received={} established={} updates={} last_error={}\n",
            s.peer,
            s.state.as_str(),
            s.prefixes_sent,
            s.prefixes_received,
            s.established_count,
            s.updates_sent,
            s.last_error.unwrap_or_default().replace(' ', "_"),
        ));
    }
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, out).is_ok() {
        let _ = std::fs::rename(tmp, path);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let path = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: bgp-speaker CONFIG")?,
    );
    let lab = parse(&path)?;
    let mut handles = Vec::new();
    for p in lab.peers {
        let h = PeerHandle::spawn(p)?;
        h.set_routes(lab.routes.clone());
        handles.push(h);
    }
    let _listener = match lab.listen {
        Some(addr) => Some(Listener::bind(addr, &handles.iter().collect::<Vec<_>>())?),
        None => None,
    };
    drop(lab.routes);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut watches: Vec<_> = handles.iter().map(PeerHandle::watch_status).collect();
    loop {
        if let Some(f) = &lab.status {
            write_status(f, &handles);
        }
        let any_change = any_status_change(&mut watches);
        tokio::select! {
            _ = term.recv() => break,
            _ = hup.recv() => {
                let routes = parse(&path)?.routes;
                for h in &handles {
                    h.set_routes(routes.clone());
                }
            }
            _ = any_change => {}
        }
    }
    for h in handles {
        h.shutdown("bgp-speaker stopping").await;
    }
    Ok(())
}

/// Resolves when any status receiver sees a change (polled every 50 ms: a test tool).
async fn any_status_change(
    watches: &mut [tokio::sync::watch::Receiver<herald_bgp::driver::PeerStatus>],
) {
    loop {
        if watches.iter_mut().any(|w| w.has_changed().unwrap_or(false)) {
            for w in watches.iter_mut() {
                w.borrow_and_update();
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
