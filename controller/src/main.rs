//! `herald-controller`: the controller binary. Thin: parses flags, sets up logging and the
//! client, serves admin HTTP, runs [`herald_controller::run::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use herald_controller::admin;
use herald_controller::context::Settings;
use herald_controller::election::Timing;
use herald_controller::metrics::Metrics;
use herald_controller::run::{Election, run};
use herald_ipam::convert::{DEFAULT_LB_CLASS, LbClass};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::watch;
use tracing::info;

/// Herald's controller: allocates addresses for Services of type LoadBalancer from IPPools.
#[derive(Debug, Parser)]
#[command(name = "herald-controller", version, about)]
struct Cli {
    /// Kubeconfig file; without it, the in-cluster configuration (service account), else
    /// `$KUBECONFIG` / `~/.kube/config`.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The `spec.loadBalancerClass` handled; Services without a class are handled too
    /// unless --lb-class-exclusive is given.
    #[arg(long, default_value = DEFAULT_LB_CLASS)]
    lb_class: String,
    /// Handle only Services whose `spec.loadBalancerClass` is --lb-class, and leave those
    /// without a class to another load balancer (run beside it).
    #[arg(long)]
    lb_class_exclusive: bool,
    /// Address of the admin HTTP server (/metrics, /healthz, /readyz).
    #[arg(long, default_value = "0.0.0.0:9472")]
    admin_addr: SocketAddr,
    /// This replica's identity (Lease holder, Events' reporting instance); the pod name.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Run without leader election (a single replica only).
    #[arg(long)]
    no_leader_election: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "herald-system")]
    leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "herald-controller")]
    leader_election_lease: String,
    /// Seconds a Lease stays valid after its last renewal: the longest a failed leader
    /// blocks a takeover.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Seconds between Lease reads and renewals.
    #[arg(long, default_value_t = 2)]
    lease_retry_seconds: u64,
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
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

async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    // Named once at start: the connection errors that follow do not say where they went.
    tracing::info!(api_server = %config.cluster_url, "Kubernetes API server");
    Ok(kube::Client::try_from(config)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    anyhow::ensure!(
        cli.lease_retry_seconds > 0 && cli.lease_retry_seconds < cli.lease_duration_seconds,
        "--lease-retry-seconds must be positive and less than --lease-duration-seconds"
    );
    let client = client(cli.kubeconfig.as_ref()).await?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let (bound, serve) = admin::bind(
        cli.admin_addr,
        admin::Shared {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
    )
    .await
    .with_context(|| format!("binding admin address {}", cli.admin_addr))?;
    info!(admin = %bound, "admin HTTP listening");
    tokio::spawn(serve);

    let identity = cli.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("herald-controller-{}", std::process::id()))
    });
    let settings = Settings {
        lb_class: LbClass {
            name: cli.lb_class.clone(),
            exclusive: cli.lb_class_exclusive,
        },
        instance: identity,
    };
    let election = (!cli.no_leader_election).then(|| Election {
        namespace: cli.leader_election_namespace.clone(),
        name: cli.leader_election_lease.clone(),
        timing: Timing {
            lease_duration: Duration::from_secs(cli.lease_duration_seconds),
            retry_period: Duration::from_secs(cli.lease_retry_seconds),
        },
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        info!("shutting down");
        let _ = shutdown_tx.send(true);
    });
    run(client, settings, election, metrics, ready, shutdown_rx).await
}
