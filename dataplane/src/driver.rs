//! Carries the dataplane out on this host: loads the XDP balancer (maps pinned, so a restart
//! keeps forwarding), attaches it to the uplinks, writes what [`super::program`] plans,
//! attaches the TC decapsulation program on backend hosts, and binds the VIPs this host is a
//! backend of to `lo` so its stack accepts the decapsulated packets. On a balancer it runs
//! the [`Keeper`] that keeps the backends' next hops resolved for `bpf_fib_lookup`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use herald_ebpf::abi::{
    self, DropReason, FAMILY_V4, MAGLEV_DEFAULT_SIZE, MAX_BACKENDS, MAX_VIPS, VipKey,
};
use herald_ebpf::{Balancer, Decap, LoadOptions, XdpMode};
use thiserror::Error;
use tracing::{info, warn};

use super::maglev::TableSize;
use super::neighbours::Keeper;
use super::program::{Op, Programmer, VipAddr};
use crate::Vip;

/// Where pins live by default (DESIGN §5).
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/herald";

/// `--xdp-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// In the driver (veth, most 10G+ NICs).
    #[default]
    Native,
    /// In the kernel's generic path after the driver: works everywhere, slower.
    Generic,
}

impl Mode {
    fn xdp(self) -> XdpMode {
        match self {
            Self::Native => XdpMode::Driver,
            Self::Generic => XdpMode::Skb,
        }
    }
}

/// What the dataplane should do on this host.
#[derive(Debug, Clone, Default)]
pub struct DataplaneOptions {
    /// `--xdp-interface`: uplinks the balancer is attached to (none: no balancing here).
    pub xdp_interfaces: Vec<String>,
    /// `--xdp-mode`.
    pub xdp_mode: Mode,
    /// `--decap`: this host is a backend: decapsulate on `decap_interfaces`.
    pub decap: bool,
    /// `--decap-interface`: where to decapsulate (empty: every non-loopback interface).
    pub decap_interfaces: Vec<String>,
    /// `--bpf-pin-dir`.
    pub pin_dir: PathBuf,
    /// `--sysctl-net-dir`: where the `net.*` sysctls are written (`/proc/sys/net`; in a pod,
    /// where the node's is mounted, `/proc/sys` being read-only in containers).
    pub sysctl_net_dir: PathBuf,
}

impl DataplaneOptions {
    /// Whether there is anything to do.
    pub fn enabled(&self) -> bool {
        !self.xdp_interfaces.is_empty() || self.decap
    }
}

/// Why the dataplane could not start or change.
#[derive(Debug, Error)]
pub enum DataplaneError {
    /// Loading, attaching or writing the programs and maps.
    #[error(transparent)]
    Ebpf(#[from] herald_ebpf::Error),
    /// Binding VIPs to `lo` or reading interfaces.
    #[error("{what}: {reason}")]
    Host {
        /// What was being done.
        what: String,
        /// Why it failed.
        reason: String,
    },
}

/// Counters of one programmed VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipCounters {
    /// The VIP.
    pub vip: VipAddr,
    /// The Service it serves.
    pub service: String,
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
}

/// What `/status` and the metrics show of the dataplane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Interfaces with the balancer attached, and the mode.
    pub attached: Vec<(String, &'static str)>,
    /// Interfaces decapsulating.
    pub decap: Vec<String>,
    /// VIPs bound to `lo`.
    pub bound: Vec<IpAddr>,
    /// Per VIP counters.
    pub vips: Vec<VipCounters>,
    /// Drops per reason.
    pub drops: Vec<(&'static str, u64)>,
    /// Packets decapsulated.
    pub decapsulated: u64,
    /// Next hops of the backends with a neighbour entry Herald keeps (`address dev if`).
    pub next_hops: Vec<String>,
    /// Why a backend's next hop could not be kept at the last look.
    pub next_hop_errors: Vec<String>,
}

/// Name of a drop reason as metrics and `/status` show it.
pub fn drop_reason_name(reason: DropReason) -> &'static str {
    match reason {
        DropReason::NoBackend => "no_backend",
        DropReason::Family => "family",
        DropReason::Fib => "no_route",
        DropReason::NoNeigh => "no_neighbour",
        DropReason::Headroom => "headroom",
        DropReason::TooBig => "too_big",
    }
}

/// The dataplane of this host.
pub struct Dataplane {
    opts: DataplaneOptions,
    balancer: Option<Balancer>,
    programmer: Programmer,
    decap: Option<(Decap, Vec<String>)>,
    services: BTreeMap<VipAddr, String>,
    /// VIP addresses this process bound to `lo`.
    bound: BTreeSet<IpAddr>,
    netlink: Option<rtnetlink::Handle>,
    sysctls_done: bool,
    /// Keeps the backends' next hops resolved (balancer only).
    neighbours: Option<Keeper>,
    /// `no_neighbour` drops at the last snapshot: a rise asks the keeper to look at once.
    no_neighbour_seen: AtomicU64,
}

fn host(what: impl Into<String>, e: impl std::fmt::Display) -> DataplaneError {
    DataplaneError::Host {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// This host's addresses, by interface.
fn addresses() -> BTreeMap<String, Vec<IpAddr>> {
    let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let ip = a.address.as_ref().and_then(|s| {
                s.as_sockaddr_in()
                    .map(|v| IpAddr::V4(v.ip()))
                    .or_else(|| s.as_sockaddr_in6().map(|v| IpAddr::V6(v.ip())))
            });
            let entry = out.entry(a.interface_name).or_default();
            entry.extend(ip);
        }
    }
    out
}

fn vip_addr(key: &VipKey) -> VipAddr {
    let address = if key.family == FAMILY_V4 {
        IpAddr::from([key.addr[0], key.addr[1], key.addr[2], key.addr[3]])
    } else {
        IpAddr::from(key.addr)
    };
    VipAddr {
        address,
        port: u16::from_be(key.port),
        proto: key.proto,
    }
}

fn backend_addr(b: &abi::Backend) -> IpAddr {
    if b.family == FAMILY_V4 {
        IpAddr::from([b.addr[0], b.addr[1], b.addr[2], b.addr[3]])
    } else {
        IpAddr::from(b.addr)
    }
}

impl Dataplane {
    /// Loads and attaches what `opts` asks for. A pinned balancer from a previous run is
    /// reused: its VIPs and backends keep their ids, and forwarding never stops.
    /// `host_interfaces` are the non-loopback interfaces, where decapsulation goes when
    /// `decap_interfaces` is empty (passed in: the driver does not read the host itself).
    pub async fn start(
        opts: DataplaneOptions,
        host_interfaces: Vec<String>,
    ) -> Result<Self, DataplaneError> {
        let mut programmer = Programmer::new(
            TableSize::new(MAGLEV_DEFAULT_SIZE).expect("the default size is a valid prime"),
            MAX_VIPS,
            MAX_BACKENDS,
        );
        let balancer = if opts.xdp_interfaces.is_empty() {
            None
        } else {
            let mut balancer = Balancer::load(&LoadOptions {
                pin_dir: Some(opts.pin_dir.clone()),
                ..LoadOptions::default()
            })?;
            let vips = balancer.vips()?;
            let backends = balancer.backends()?;
            if !vips.is_empty() {
                info!(
                    vips = vips.len(),
                    backends = backends.len(),
                    "dataplane: adopting pinned maps"
                );
            }
            programmer.recover(
                vips.iter().map(|(k, id)| (vip_addr(k), *id)),
                backends
                    .iter()
                    .map(|(id, b)| (*id, backend_addr(b), b.flags & abi::BACKEND_LOCAL != 0)),
            );
            for interface in &opts.xdp_interfaces {
                balancer.attach(interface, opts.xdp_mode.xdp())?;
                info!(%interface, mode = ?opts.xdp_mode, "dataplane: XDP balancer attached");
            }
            Some(balancer)
        };
        let decap = if opts.decap {
            let interfaces = if opts.decap_interfaces.is_empty() {
                host_interfaces
            } else {
                opts.decap_interfaces.clone()
            };
            let mut decap = Decap::load_pinned(Some(&opts.pin_dir))?;
            for interface in &interfaces {
                decap.attach(interface)?;
                info!(%interface, "dataplane: decapsulation attached");
            }
            Some((decap, interfaces))
        } else {
            None
        };
        let mut netlink = None;
        let neighbours = if balancer.is_some() {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| host("opening rtnetlink", e))?;
            tokio::spawn(conn);
            netlink = Some(handle.clone());
            Some(Keeper::start(handle))
        } else {
            None
        };
        Ok(Self {
            opts,
            balancer,
            programmer,
            decap,
            services: BTreeMap::new(),
            bound: BTreeSet::new(),
            netlink,
            sysctls_done: false,
            neighbours,
            no_neighbour_seen: AtomicU64::new(0),
        })
    }

    /// Makes the maps serve `desired` and binds the VIPs this host is a backend of. Errors
    /// are per VIP or per write; everything that could be done is done.
    pub async fn apply(&mut self, desired: &[Vip]) -> Vec<String> {
        let local: BTreeSet<IpAddr> = addresses()
            .into_iter()
            .filter(|(i, _)| i != "lo")
            .flat_map(|(_, a)| a)
            .collect();
        let mut errors = Vec::new();
        if let Some(balancer) = &mut self.balancer {
            let (ops, plan_errors) = self.programmer.plan(desired, |a| local.contains(&a));
            errors.extend(plan_errors.iter().map(ToString::to_string));
            for op in ops {
                if let Err(e) = execute(balancer, &op) {
                    errors.push(format!("dataplane write {op:?}: {e}"));
                }
            }
            self.services = desired
                .iter()
                .map(|v| (VipAddr::of(v), v.service.clone()))
                .collect();
        }
        if let Some(keeper) = &self.neighbours {
            // The hosts packets are encapsulated to; a local backend goes up the stack.
            keeper.set_backends(
                desired
                    .iter()
                    .flat_map(|v| &v.backends)
                    .filter(|(b, w)| *w > 0 && !local.contains(b))
                    .map(|(b, _)| *b)
                    .collect(),
            );
        }
        // The host's stack must accept a VIP it is a backend of: decapsulated packets (and,
        // on a balancer, packets for a local backend) are addressed to it.
        let wanted: BTreeSet<IpAddr> = desired
            .iter()
            .filter(|v| v.backends.iter().any(|(b, w)| *w > 0 && local.contains(b)))
            .map(|v| v.address)
            .collect();
        if let Err(e) = self.bind(&wanted).await {
            errors.push(e.to_string());
        }
        errors
    }

    async fn handle(&mut self) -> Result<rtnetlink::Handle, DataplaneError> {
        if let Some(h) = &self.netlink {
            return Ok(h.clone());
        }
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| host("opening rtnetlink", e))?;
        tokio::spawn(conn);
        self.netlink = Some(handle.clone());
        Ok(handle)
    }

    async fn bind(&mut self, wanted: &BTreeSet<IpAddr>) -> Result<(), DataplaneError> {
        if *wanted == self.bound {
            return Ok(());
        }
        if !self.sysctls_done && !wanted.is_empty() {
            // With the VIP on lo, Linux would answer ARP for it on every interface (weak
            // host model) and use it as ARP source: only the announcing node may do that.
            for (key, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
                let path = self.opts.sysctl_net_dir.join("ipv4/conf/all").join(key);
                let current = std::fs::read_to_string(&path).unwrap_or_default();
                if current.trim().parse::<u8>().unwrap_or(0) < value.parse().unwrap_or(0) {
                    std::fs::write(&path, value)
                        .map_err(|e| host(format!("setting {}", path.display()), e))?;
                    info!(sysctl = %path.display(), value, "dataplane: set for VIPs bound to lo");
                }
            }
            self.sysctls_done = true;
        }
        let handle = self.handle().await?;
        let lo = nix::net::if_::if_nametoindex("lo").map_err(|e| host("finding lo", e))?;
        for addr in wanted.difference(&self.bound.clone()) {
            let prefix = if addr.is_ipv4() { 32 } else { 128 };
            match handle.address().add(lo, *addr, prefix).execute().await {
                Ok(()) => info!(vip = %addr, "dataplane: VIP bound to lo"),
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -(nix::libc::EEXIST) => {}
                Err(e) => return Err(host(format!("binding {addr} to lo"), e)),
            }
            self.bound.insert(*addr);
        }
        let gone: Vec<IpAddr> = self.bound.difference(wanted).copied().collect();
        for addr in gone {
            unbind(&handle, lo, addr).await?;
            self.bound.remove(&addr);
        }
        Ok(())
    }

    /// Counters and attachments for `/status` and the metrics.
    pub fn snapshot(&self) -> Snapshot {
        let mut out = Snapshot {
            bound: self.bound.iter().copied().collect(),
            ..Snapshot::default()
        };
        if let Some(b) = &self.balancer {
            let mode = match self.opts.xdp_mode {
                Mode::Native => "native",
                Mode::Generic => "generic",
            };
            out.attached = self
                .opts
                .xdp_interfaces
                .iter()
                .map(|i| (i.clone(), mode))
                .collect();
            for (vip, id) in self.programmer.vips() {
                let stats = b.vip_stats(id).unwrap_or_default();
                out.vips.push(VipCounters {
                    vip,
                    service: self.services.get(&vip).cloned().unwrap_or_default(),
                    packets: stats.packets,
                    bytes: stats.bytes,
                });
            }
            for reason in DropReason::ALL {
                out.drops
                    .push((drop_reason_name(reason), b.drops(reason).unwrap_or(0)));
            }
            if let Some(keeper) = &self.neighbours {
                // A rising count means a next hop lost its entry (flushed, or a route moved
                // to a new gateway): look now rather than at the next periodic look.
                let now = b.drops(DropReason::NoNeigh).unwrap_or(0);
                if now > self.no_neighbour_seen.swap(now, Ordering::Relaxed) {
                    keeper.kick();
                }
                let status = keeper.status();
                out.next_hops = status.next_hops;
                out.next_hop_errors = status.errors;
            }
        }
        if let Some((d, interfaces)) = &self.decap {
            out.decap = interfaces.clone();
            out.decapsulated = d.counters().map(|(ok, _)| ok.packets).unwrap_or(0);
        }
        out
    }

    /// Stops: with `keep` (a planned restart) everything stays attached, pinned and bound
    /// for the next start to adopt, so forwarding goes on; otherwise detaches the programs,
    /// removes the pinned maps and unbinds the VIPs.
    pub async fn shutdown(mut self, keep: bool) {
        if keep {
            // The balancer goes on forwarding: its next hops keep their managed entries.
            if let Some(keeper) = self.neighbours.take() {
                keeper.stop(false).await;
            }
            info!("dataplane: left attached for the next start (--on-exit restart)");
            return;
        }
        if let Some(mut balancer) = self.balancer.take() {
            for interface in &self.opts.xdp_interfaces {
                if let Err(e) = balancer.detach(interface) {
                    warn!(%interface, error = %e, "dataplane: detaching XDP");
                }
            }
            if let Err(e) = balancer.unpin_all() {
                warn!(error = %e, "dataplane: removing pinned maps");
            }
        }
        // Detached first: no packet looks for these entries any more.
        if let Some(keeper) = self.neighbours.take() {
            keeper.stop(true).await;
        }
        if let Some((mut decap, interfaces)) = self.decap.take() {
            for interface in &interfaces {
                if let Err(e) = decap.detach(interface) {
                    warn!(%interface, error = %e, "dataplane: detaching decapsulation");
                }
            }
        }
        if let Err(e) = self.bind(&BTreeSet::new()).await {
            warn!(error = %e, "dataplane: unbinding VIPs");
        }
        info!("dataplane: detached");
    }
}

fn execute(balancer: &mut Balancer, op: &Op) -> Result<(), herald_ebpf::Error> {
    match op {
        Op::SetBackend { id, address, local } => {
            balancer.set_backend(*id, &abi::Backend::new(*address, *local))
        }
        Op::SetTable { vip_id, table } => balancer.set_table(*vip_id, table),
        Op::SetVip { vip, id } => {
            balancer.set_vip(&VipKey::new(vip.address, vip.port, vip.proto), *id)
        }
        Op::RemoveVip { vip } => {
            balancer.remove_vip(&VipKey::new(vip.address, vip.port, vip.proto))
        }
        Op::RemoveBackend { id } => balancer.remove_backend(*id),
    }
}

async fn unbind(handle: &rtnetlink::Handle, lo: u32, addr: IpAddr) -> Result<(), DataplaneError> {
    use futures_util::TryStreamExt;
    let prefix = if addr.is_ipv4() { 32 } else { 128 };
    let mut found = handle
        .address()
        .get()
        .set_link_index_filter(lo)
        .set_address_filter(addr)
        .set_prefix_length_filter(prefix)
        .execute();
    while let Some(msg) = found
        .try_next()
        .await
        .map_err(|e| host(format!("finding {addr} on lo"), e))?
    {
        handle
            .address()
            .del(msg)
            .execute()
            .await
            .map_err(|e| host(format!("unbinding {addr} from lo"), e))?;
        info!(vip = %addr, "dataplane: VIP unbound from lo");
    }
    Ok(())
}
