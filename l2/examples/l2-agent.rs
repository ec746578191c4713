//! l2-agent: one layer-2 node, the `herald-l2` agent (link watcher, gossip, election,
//! responder) driven from arguments. The example of the library's API, and the process the
//! library's failover tests run several of on one segment. Not a product binary:
//! `herald-speaker` is.
//!
//! ```text
//! cargo run -p herald-l2 --example l2-agent -- \
//!     --name N --interface IF [--interface IF2] --address A [--address B]
//!     --gossip-bind IP:PORT [--seed IP:PORT]... --key-file PATH
//!     [--announce-repeats 5] [--announce-interval-ms 1000]
//!     [--swim-timing fast|memberlist-lan] [--probe-interval-ms P --suspect-timeout-ms S]
//!     [--realtime on|off]
//! ```
//!
//! `--probe-interval-ms` and `--suspect-timeout-ms` (both or neither) set the timing as the
//! speaker's `--l2-probe-interval` and `--l2-suspect-timeout` do, with the same bounds.
//!
//! `--realtime on` (the default, as in the speaker) runs the gossip thread under `SCHED_FIFO`
//! when the process may; `off` keeps it at normal priority.
//!
//! Prints one line per change of what this node announces (`owned <addr>@<if> ...`) on
//! stdout. SIGTERM and SIGINT leave the gossip gracefully; SIGKILL is the crash the tests want.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use herald_l2::agent::{Agent, AgentConfig, simple_policies};
use herald_l2::gossip::{GossipConfig, SwimTiming, seal::GossipKey};
use herald_l2::responder::AnnounceConfig;

struct Args {
    name: String,
    interfaces: Vec<String>,
    addresses: Vec<IpAddr>,
    bind: SocketAddr,
    seeds: Vec<SocketAddr>,
    key_file: PathBuf,
    announce: AnnounceConfig,
    timing: SwimTiming,
    realtime: bool,
}

fn parse() -> anyhow::Result<Args> {
    let mut name = None;
    let mut interfaces = Vec::new();
    let mut addresses = Vec::new();
    let mut bind = None;
    let mut seeds = Vec::new();
    let mut key_file = None;
    let mut announce = AnnounceConfig::default();
    let mut timing = SwimTiming::default();
    let mut realtime = true;
    let (mut probe, mut suspect) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--name" => name = Some(value),
            "--interface" => interfaces.push(value),
            "--address" => addresses.push(value.parse().context("--address")?),
            "--gossip-bind" => bind = Some(value.parse().context("--gossip-bind")?),
            "--seed" => seeds.push(value.parse().context("--seed")?),
            "--key-file" => key_file = Some(PathBuf::from(value)),
            "--announce-repeats" => {
                announce.repeats = value.parse().context("--announce-repeats")?
            }
            "--announce-interval-ms" => {
                announce.interval =
                    Duration::from_millis(value.parse().context("--announce-interval-ms")?)
            }
            "--swim-timing" => {
                timing = match value.as_str() {
                    "fast" => SwimTiming::default(),
                    "memberlist-lan" => SwimTiming::memberlist_lan(),
                    other => bail!("--swim-timing: fast or memberlist-lan, not {other}"),
                }
            }
            "--probe-interval-ms" => {
                probe = Some(Duration::from_millis(
                    value.parse().context("--probe-interval-ms")?,
                ))
            }
            "--suspect-timeout-ms" => {
                suspect = Some(Duration::from_millis(
                    value.parse().context("--suspect-timeout-ms")?,
                ))
            }
            "--realtime" => {
                realtime = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    other => bail!("--realtime: on or off, not {other}"),
                }
            }
            other => bail!("unknown argument {other}"),
        }
    }
    match (probe, suspect) {
        (Some(p), Some(s)) => timing = SwimTiming::from_settings(p, s)?,
        (None, None) => {}
        _ => bail!("--probe-interval-ms and --suspect-timeout-ms go together"),
    }
    Ok(Args {
        name: name.context("--name is required")?,
        interfaces,
        addresses,
        bind: bind.context("--gossip-bind is required")?,
        seeds,
        key_file: key_file.context("--key-file is required")?,
        announce,
        timing,
        realtime,
    })
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = parse()?;
    let key = GossipKey::from_file(&args.key_file)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let agent = Agent::spawn(AgentConfig {
            node: args.name.clone(),
            interfaces: args.interfaces.clone(),
            gossip: GossipConfig {
                name: args.name.clone(),
                bind: args.bind,
                advertise: args.bind,
                seeds: args.seeds,
                key,
                timing: args.timing,
                facts_interval: Duration::from_millis(500),
                realtime: args.realtime,
            },
            announce: args.announce,
        })
        .await?;
        // Interface names differ between nodes here, so the policy names none: each node offers
        // the interfaces given to it with --interface (the agent reports only those).
        agent.set_policies(simple_policies(&args.addresses, &[]));
        let mut owned = agent.owned();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            let line: Vec<String> = owned
                .borrow_and_update()
                .iter()
                .map(|(a, i)| format!("{a}@{i}"))
                .collect();
            println!("owned {}", line.join(" "));
            tokio::select! {
                r = owned.changed() => r?,
                _ = term.recv() => break,
                r = tokio::signal::ctrl_c() => { r?; break }
            }
        }
        agent.leave();
        // Give the leave message a moment to go out.
        tokio::time::sleep(Duration::from_millis(100)).await;
        anyhow::Ok(())
    })
}
