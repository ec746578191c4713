//! bfd-session: one BFD session of the `herald-bfd` library, from the command line. Prints a
//! line per state change; SIGTERM or SIGINT sends AdminDown (RFC 5880 §6.8.16) and exits.
//! The example of the library's API, and the process its tests run against FRR's bfdd and
//! against itself.
//!
//! ```text
//! cargo run -p herald-bfd --example bfd-session -- \
//!     --peer IP --local IP [--interval-ms 300] [--multiplier 3] [--multihop MIN_TTL] [--passive]
//! ```
//!
//! Output, one line per change: `state Up diag=None sent=12 received=9 dropped=0 down=0`;
//! `diag` says why the session left Up (`ControlDetectionTimeExpired`,
//! `NeighborSignaledSessionDown`, ...).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herald_bfd::driver::{BfdConfig, BfdHandle};
use herald_bfd::profile::Profile;
use herald_bfd::transport::Hop;
use tokio::signal::unix::{SignalKind, signal};

fn parse() -> Result<BfdConfig> {
    let (mut peer, mut local) = (None::<IpAddr>, None::<IpAddr>);
    let mut profile = Profile::default();
    let mut hop = Hop::Single;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--passive" {
            profile.passive_mode = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--peer" => peer = Some(value.parse().context("--peer")?),
            "--local" => local = Some(value.parse().context("--local")?),
            "--interval-ms" => {
                let ms = value.parse().context("--interval-ms")?;
                profile.receive_interval = ms;
                profile.transmit_interval = ms;
            }
            "--multiplier" => profile.detect_multiplier = value.parse().context("--multiplier")?,
            "--multihop" => {
                let minimum_ttl = value.parse().context("--multihop")?;
                profile.minimum_ttl = minimum_ttl;
                hop = Hop::Multi { minimum_ttl };
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(BfdConfig {
        peer: peer.context("--peer is required")?,
        local: local.context("--local is required")?,
        hop,
        profile,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let config = parse()?;
    let session = BfdHandle::spawn(config).context("starting the BFD session")?;
    let mut status = session.watch_status();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut last = None;
    loop {
        let now = *status.borrow_and_update();
        if last != Some(now.state) {
            last = Some(now.state);
            println!(
                "state {:?} diag={:?} sent={} received={} dropped={} down={}",
                now.state, now.diag, now.sent, now.received, now.dropped, now.down_count
            );
        }
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            changed = status.changed() => if changed.is_err() { break },
        }
    }
    session.admin_down(Duration::from_secs(1)).await;
    Ok(())
}
