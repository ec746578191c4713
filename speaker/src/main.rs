//! `herald-speaker`: the speaker binary. Thin: parses flags, sets up logging, runs a mode.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use herald_ipam::convert::DEFAULT_LB_CLASS;
use herald_l2::gossip::SwimTiming;
use herald_speaker::dataplane::driver::{DEFAULT_PIN_DIR, DataplaneOptions, Mode};
use herald_speaker::engine::ExitMode;
use herald_speaker::standalone::daemon::{self, GossipOptions, Options};
use herald_speaker::status::StatusReport;

/// Herald's speaker: announces load-balancer addresses over BGP or ARP/NDP and balances
/// their traffic.
///
/// Without a subcommand it runs on a Kubernetes node (cluster mode): it watches the API
/// server and announces the addresses the controller wrote to Services' status.
#[derive(Debug, Parser)]
#[command(
    name = "herald-speaker",
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Cluster mode's flags.
#[derive(Debug, Args)]
struct ClusterArgs {
    /// This node's name: its Node object (labels, Ready) and EndpointSlice nodeName.
    /// Cluster mode; in a DaemonSet, from the downward API (spec.nodeName).
    #[arg(long, env = "NODE_NAME", required = true)]
    node_name: Option<String>,
    /// Kubeconfig file; without it, the in-cluster configuration (service account), else
    /// `$KUBECONFIG` / `~/.kube/config`.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The `spec.loadBalancerClass` announced (the controller's --lb-class); Services
    /// without a class are announced too unless --lb-class-exclusive is given.
    #[arg(long, default_value = DEFAULT_LB_CLASS)]
    lb_class: String,
    /// Announce only Services of --lb-class, not those without a class (give it exactly
    /// when the controller has it).
    #[arg(long)]
    lb_class_exclusive: bool,
    /// Namespace of the Secrets that BGPPeer.passwordSecret names (the speakers may read
    /// Secrets there only).
    #[arg(long, env = "POD_NAMESPACE", default_value = "herald-system")]
    secrets_namespace: String,
    /// Address of the admin HTTP server (/metrics, /healthz, /readyz, /status).
    #[arg(long, default_value = "0.0.0.0:9471")]
    admin_addr: SocketAddr,
    /// Where to accept BGP connections from peers marked `passive`. Nothing is bound
    /// unless such a peer exists, so Herald can run beside a CNI's BGP daemon.
    #[arg(long, default_value = "[::]:179")]
    bgp_listen_addr: SocketAddr,
    #[command(flatten)]
    gossip: GossipArgs,
    #[command(flatten)]
    dataplane: DataplaneArgs,
    #[command(flatten)]
    exit: ExitArgs,
}

/// What stopping means (both modes).
#[derive(Debug, Args)]
struct ExitArgs {
    /// What SIGTERM does. `restart` (a rollout or upgrade): BGP sessions with graceful
    /// restart close without a Cease, so routers keep the routes until the next start
    /// re-announces them, BFD says AdminDown, and the XDP balancer and decapsulation stay
    /// attached for the next start to adopt. `withdraw` (leaving for good): a Cease to every
    /// peer, so routers withdraw at once, and the dataplane is detached. To take a node out
    /// of service without dropping traffic, drain it first (`herald-speaker drain`).
    #[arg(long, value_enum, default_value_t = ExitArg::Restart)]
    on_exit: ExitArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExitArg {
    Restart,
    Withdraw,
}

impl From<ExitArgs> for ExitMode {
    fn from(a: ExitArgs) -> Self {
        match a.on_exit {
            ExitArg::Restart => ExitMode::Restart,
            ExitArg::Withdraw => ExitMode::Withdraw,
        }
    }
}

/// Layer-2 mode's gossip among speakers (both modes).
#[derive(Debug, Args)]
struct GossipArgs {
    /// Layer-2 mode: the UDP address this speaker gossips on (SWIM membership among
    /// speakers, default port 7946). Other speakers reach this node at this address, so
    /// give the node's own IP, not 0.0.0.0. Needed when there are L2Advertisements that
    /// can select this node.
    #[arg(long, requires = "gossip_key_file")]
    gossip_bind: Option<SocketAddr>,
    /// Another speaker's --gossip-bind address to join through; repeat for each. In cluster
    /// mode the default is every other Node's InternalIP (of --gossip-bind's family) at
    /// --gossip-bind's port.
    #[arg(long = "gossip-peer", requires = "gossip_bind")]
    gossip_peers: Vec<SocketAddr>,
    /// File with the key every speaker shares to authenticate gossip: 32 raw bytes or 64
    /// hex digits (for example `openssl rand -hex 32`, or a Secret mounted as a file).
    #[arg(long, requires = "gossip_bind")]
    gossip_key_file: Option<PathBuf>,
    /// Layer-2 failure detection: how often a speaker probes another one (SWIM probe
    /// period; the direct-ack timeout is 2/5 of it). A duration (`15ms`, `1s`), 10ms to 60s.
    /// Every speaker should use the same value.
    #[arg(long, default_value = "15ms", value_parser = parse_timer)]
    l2_probe_interval: Duration,
    /// Layer-2 failure detection: how long a speaker that missed a probe has to refute the
    /// suspicion before the others declare it down and take over its addresses. A duration,
    /// at least --l2-probe-interval and at most 60s. Failover takes about one probe interval
    /// plus this.
    #[arg(long, default_value = "60ms", value_parser = parse_timer)]
    l2_suspect_timeout: Duration,
}

/// A `--l2-*` timer: a Kubernetes-style duration (the bounds are checked together later).
fn parse_timer(s: &str) -> Result<Duration, String> {
    herald_api::duration::parse_duration(s).map_err(|e| e.to_string())
}

impl GossipArgs {
    /// The gossip settings, if layer 2 is on; timers out of bounds are refused (also when
    /// layer 2 is off, so a typo does not wait for the first L2Advertisement).
    fn options(self) -> Result<Option<GossipOptions>, String> {
        let timing = SwimTiming::from_settings(self.l2_probe_interval, self.l2_suspect_timeout)
            .map_err(|e| format!("--l2-probe-interval / --l2-suspect-timeout: {e}"))?;
        Ok(match (self.gossip_bind, self.gossip_key_file) {
            (Some(bind), Some(key_file)) => Some(GossipOptions {
                bind,
                peers: self.gossip_peers,
                key_file,
                timing,
            }),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start
enum Command {
    /// Run the whole system on this host from YAML files, without Kubernetes.
    Standalone {
        /// A YAML file, or a directory of them, with IPPool, BGPPeer, BGPAdvertisement,
        /// L2Advertisement, BFDProfile, Service, EndpointSlice and Node objects. Changes
        /// are picked up without a restart (file events and SIGHUP); an invalid change is
        /// refused and the previous configuration keeps running.
        #[arg(long)]
        config: PathBuf,
        /// This host's node name (matched by nodeSelectors and EndpointSlice nodeName).
        #[arg(long)]
        node_name: String,
        /// Directory where the last applied assignments are kept, to report Services whose
        /// address moved since the previous run (addresses are a function of the
        /// configuration; the same file gives the same addresses on every host). Created if
        /// missing.
        #[arg(long)]
        state_dir: PathBuf,
        /// Address of the admin HTTP server (/metrics, /healthz, /readyz, /status).
        /// Port 0 picks a free port (logged at start).
        #[arg(long, default_value = "127.0.0.1:9471")]
        admin_addr: SocketAddr,
        /// Where to accept BGP connections from peers marked `passive`. Nothing is bound
        /// unless such a peer exists, so Herald can run beside a CNI's BGP daemon.
        #[arg(long, default_value = "[::]:179")]
        bgp_listen_addr: SocketAddr,
        #[command(flatten)]
        gossip: GossipArgs,
        #[command(flatten)]
        dataplane: DataplaneArgs,
        #[command(flatten)]
        exit: ExitArgs,
    },
    /// Take this node out of service without dropping traffic: its routes carry the
    /// GRACEFUL_SHUTDOWN community (RFC 8326) and LOCAL_PREF 0 for `--wait`, so routers move
    /// traffic elsewhere first, then are withdrawn; layer-2 addresses move to other nodes.
    /// The node stays drained until `--undo` or a restart (in a cluster, also while its Node
    /// carries the annotation herald.dev/drain=true). Talks to the running speaker's admin
    /// address, from the node itself.
    Drain {
        /// The speaker's admin address.
        #[arg(long, default_value = "127.0.0.1:9471")]
        admin_addr: SocketAddr,
        /// How long routes carry GRACEFUL_SHUTDOWN before they are withdrawn (`0s`:
        /// withdraw at once; at most 1h).
        #[arg(long, default_value = "30s")]
        wait: String,
        /// Serve again: announce normally.
        #[arg(long)]
        undo: bool,
    },
    /// Print a running speaker's /status as tables.
    Status {
        /// The speaker's admin address.
        #[arg(long, default_value = "127.0.0.1:9471")]
        admin_addr: SocketAddr,
        /// Print the raw JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// The fast path on this host (DESIGN §6).
#[derive(Debug, Args)]
struct DataplaneArgs {
    /// Attach the XDP balancer to this uplink: VIP traffic arriving there is forwarded to
    /// the backends (Maglev, IPIP/IP6IP6, direct server return). Repeat for each uplink.
    /// An interface that already carries another XDP program is refused, not taken over.
    #[arg(long = "xdp-interface", value_name = "IFACE")]
    xdp_interfaces: Vec<String>,
    /// `native` runs in the driver (fast; veth and most 10G+ NICs); `generic` works on any
    /// interface, slower.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Native)]
    xdp_mode: XdpModeArg,
    /// This host is a backend: decapsulate IPIP/IP6IP6 from the balancers (TC ingress) and
    /// bind the VIPs it serves to `lo` (this sets net.ipv4.conf.all.arp_ignore=1 and
    /// arp_announce=2 so the host does not answer ARP for them).
    #[arg(long)]
    decap: bool,
    /// Decapsulate only on this interface (repeatable). Default: every non-loopback
    /// interface present at start.
    #[arg(long = "decap-interface", value_name = "IFACE", requires = "decap")]
    decap_interfaces: Vec<String>,
    /// Directory on a bpf filesystem where maps and attachments are pinned, so a restarted
    /// speaker keeps forwarding. bpffs is mounted at /sys/fs/bpf if needed.
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    bpf_pin_dir: PathBuf,
    /// Where the `net.*` sysctls are (`--decap` sets two ARP ones). In a container
    /// `/proc/sys` is read-only: mount the node's `/proc/sys/net` elsewhere and name it here
    /// (the chart uses /host/proc/sys/net).
    #[arg(long, value_name = "DIR", default_value = "/proc/sys/net")]
    sysctl_net_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum XdpModeArg {
    Native,
    Generic,
}

impl From<DataplaneArgs> for DataplaneOptions {
    fn from(a: DataplaneArgs) -> Self {
        Self {
            xdp_interfaces: a.xdp_interfaces,
            xdp_mode: match a.xdp_mode {
                XdpModeArg::Native => Mode::Native,
                XdpModeArg::Generic => Mode::Generic,
            },
            decap: a.decap,
            decap_interfaces: a.decap_interfaces,
            pin_dir: a.bpf_pin_dir,
            sysctl_net_dir: a.sysctl_net_dir,
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn drain(admin_addr: SocketAddr, wait: &str, undo: bool) -> Result<(), String> {
    let url = format!("http://{admin_addr}/drain");
    let request = if undo {
        ureq::delete(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
    } else {
        ureq::post(&url)
            .query("wait", wait)
            .config()
            .http_status_as_error(false)
            .build()
            .send_empty()
    };
    let mut response = request.map_err(|e| {
        format!(
            "cannot reach {url}: {e} (is herald-speaker running with --admin-addr {admin_addr}?)"
        )
    })?;
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if response.status().is_success() {
        print!("{body}");
        Ok(())
    } else {
        Err(format!("{url}: {}: {}", response.status(), body.trim_end()))
    }
}

fn status(admin_addr: SocketAddr, json: bool) -> Result<(), String> {
    let url = format!("http://{admin_addr}/status");
    let body = ureq::get(&url)
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .map_err(|e| {
            format!(
                "cannot read {url}: {e} (is herald-speaker running with --admin-addr {admin_addr}?)"
            )
        })?;
    if json {
        println!("{body}");
        return Ok(());
    }
    let report: StatusReport = serde_json::from_str(&body)
        .map_err(|e| format!("{url} returned something that is not a status: {e}"))?;
    print!("{}", report.render());
    Ok(())
}

/// An error with its causes, each once: "dataplane: program herald_xdp: <why the kernel
/// refused it>" rather than the outermost message alone.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

async fn kube_client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, String> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration: {e}"))?,
    };
    // Named once at start: the connection errors that follow do not say where they went.
    tracing::info!(api_server = %config.cluster_url, "Kubernetes API server");
    kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

/// Cluster mode: client, admin server, signals, then [`herald_speaker::cluster::run`].
async fn cluster(args: ClusterArgs) -> Result<(), String> {
    use std::sync::Arc;

    use herald_speaker::admin::{self, Shared};
    use herald_speaker::cluster;
    use tokio::signal::unix::{SignalKind, signal};

    let node_name = args
        .node_name
        .ok_or("--node-name (or NODE_NAME) is required in cluster mode")?;
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| format!("installing the SIGINT handler: {e}"))?;
    let client = kube_client(args.kubeconfig.as_ref()).await?;
    let shared = Arc::new(Shared::default());
    let (bound, serve) = admin::bind(args.admin_addr, shared.clone())
        .await
        .map_err(|e| format!("binding the admin address {}: {e}", args.admin_addr))?;
    let server = tokio::spawn(serve);
    tracing::info!(admin_addr = %bound, "admin HTTP listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = stop_tx.send(true);
    });
    let gossip = args.gossip.options()?;
    let result = cluster::run(
        client,
        cluster::Options {
            node_name,
            lb_class: herald_ipam::convert::LbClass {
                name: args.lb_class,
                exclusive: args.lb_class_exclusive,
            },
            secrets_namespace: args.secrets_namespace,
            bgp_listen_addr: args.bgp_listen_addr,
            gossip,
            dataplane: args.dataplane.into(),
            on_exit: args.exit.into(),
        },
        shared,
        stop_rx,
    )
    .await
    .map_err(|e| chain(&e));
    server.abort();
    result
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        None => runtime().and_then(|r| r.block_on(cluster(cli.cluster))),
        Some(Command::Standalone {
            config,
            node_name,
            state_dir,
            admin_addr,
            bgp_listen_addr,
            gossip,
            dataplane,
            exit,
        }) => {
            let gossip = match gossip.options() {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("herald-speaker: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("herald-speaker: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime
                .block_on(daemon::run(Options {
                    config,
                    node_name,
                    state_dir,
                    admin_addr,
                    bgp_listen_addr,
                    gossip,
                    dataplane: dataplane.into(),
                    on_exit: exit.into(),
                }))
                .map_err(|e| chain(&e))
        }
        Some(Command::Status { admin_addr, json }) => status(admin_addr, json),
        Some(Command::Drain {
            admin_addr,
            wait,
            undo,
        }) => drain(admin_addr, &wait, undo),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-speaker: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn an_error_prints_with_each_distinct_cause_once() {
        let e = Outer(Middle(std::io::Error::other(
            "unknown network interface eth9",
        )));
        assert_eq!(chain(&e), "outer: unknown network interface eth9");
    }
}
