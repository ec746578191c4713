//! `herald`: Herald's command line. Installed (copied or linked) as `kubectl-herald` on the
//! PATH it is also the kubectl plugin: `kubectl herald status` runs `kubectl-herald status`,
//! so both names take the same subcommands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald_cli::{fetch, render, report};
use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Parser)]
#[command(
    version,
    about = "Herald's command line (also the kubectl plugin kubectl-herald)"
)]
struct Cli {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Cluster-wide status: problems first, then Services, nodes and pools.
    Status {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Exit with status 1 when the report lists problems.
        #[arg(long)]
        fail_on_problems: bool,
    },
}

async fn client(
    kubeconfig: Option<&PathBuf>,
    context: Option<String>,
) -> anyhow::Result<kube::Client> {
    let options = KubeConfigOptions {
        context,
        ..KubeConfigOptions::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options).await?
        }
        None if options.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => return Ok(kube::Client::try_default().await?),
    };
    Ok(kube::Client::try_from(config)?)
}

/// Exit status when the report lists problems and `--fail-on-problems` is given.
const PROBLEMS: u8 = 1;
/// Exit status when no report could be made (no kubeconfig, server unreachable).
const FAILED: u8 = 2;

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Status {
            json,
            fail_on_problems,
        } => {
            let client = client(cli.kubeconfig.as_ref(), cli.context).await?;
            let report = report::build(&fetch::inputs(&client).await?);
            let out = if json {
                render::json(&report)
            } else {
                render::text(&report)
            };
            print!("{out}");
            Ok(if fail_on_problems && report.has_problems() {
                ExitCode::from(PROBLEMS)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            // kube's errors repeat their sources in their own message: print each cause
            // once.
            let mut message = e.to_string();
            for cause in e.chain().skip(1).map(ToString::to_string) {
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
            }
            eprintln!("error: {message}");
            ExitCode::from(FAILED)
        }
    }
}
