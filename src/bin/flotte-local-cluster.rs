//! flotte-local-cluster: the program behind `packaging/local-cluster`. Everything but argument
//! parsing, stdout and exit codes is in `flotte::quickstart` (built with the `isolated` feature).

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flotte::cli::Console;
use flotte::quickstart::{self, DEFAULT_STATE_DIR, Health, LINK_DIR, Links, Settings};

/// A local flotte cluster: etcd and three isolated systemd hosts, each with a flotted
#[derive(Debug, Parser)]
#[command(
    name = "flotte-local-cluster",
    after_help = "Exit status: 0 success (`status`: the cluster is up); 1 an error (`status`: \
                  no cluster, or only part of one); 2 a usage error."
)]
struct Args {
    /// Where the cluster's state and its hosts' directories live
    #[arg(long, env = "FLOTTE_LOCAL_CLUSTER_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Start the cluster and the example units (when it is up already: show it)
    Up {
        /// The example units to submit and start
        #[arg(long, default_value = "units")]
        units: PathBuf,
        /// The flotted binary [default: the one beside this program]
        #[arg(long)]
        flotted: Option<PathBuf>,
        /// Prefix of the hosts' cgroup names [default: flotte-local- and a random number]
        #[arg(long, env = "FLOTTE_LOCAL_CLUSTER_GROUP_PREFIX")]
        group_prefix: Option<String>,
        /// host-1's address; host-2 and host-3 get the next ones
        #[arg(long, env = "FLOTTE_LOCAL_CLUSTER_FIRST_IP", default_value_t = quickstart::FIRST_IP)]
        first_ip: std::net::Ipv4Addr,
    },
    /// Stop everything the cluster runs and remove its state
    Down,
    /// Show what runs
    Status,
    /// Print the shell lines that point flottectl and etcdctl at the cluster
    Env,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(code) => code,
        Err(e)
            if e.downcast_ref::<quickstart::QuickstartError>()
                .is_some_and(|e| e.is_broken_pipe()) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // The library's errors name their causes themselves.
            eprintln!("flotte-local-cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (mut out, mut err) = (io::stdout(), io::stderr());
    let mut console = Console {
        out: &mut out,
        err: &mut err,
    };
    let here = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find this program's file: {e}"))?;
    let bin_dir = here
        .parent()
        .context("this program's file has no directory")?;
    match args.command {
        Sub::Up {
            units,
            flotted,
            group_prefix,
            first_ip,
        } => {
            let absolute = |path: PathBuf| {
                std::path::absolute(&path)
                    .map_err(|e| anyhow::anyhow!("cannot make {} absolute: {e}", path.display()))
            };
            let flotted = absolute(flotted.unwrap_or_else(|| bin_dir.join("flotted")))?;
            let settings = Settings {
                state_dir: args.state_dir,
                links: Links {
                    dir: LINK_DIR.into(),
                    flottectl: absolute(bin_dir.join("flottectl"))?,
                    flotted: flotted.clone(),
                },
                flotted,
                units,
                // Unique, and unlike the tests' `flotte-test-<pid>` names that `isolated`'s sweeper
                // kills once that PID is gone (which the tests use on purpose).
                group_prefix: group_prefix
                    .unwrap_or_else(|| format!("flotte-local-{:08x}", rand::random::<u32>())),
                first_ip,
            };
            quickstart::up(&settings, &mut console).await?;
        }
        Sub::Down => match quickstart::down(&args.state_dir)? {
            Some(_) => println!("Stopped the local cluster in {}.", args.state_dir.display()),
            None => println!("No local cluster in {}.", args.state_dir.display()),
        },
        Sub::Status => {
            return Ok(
                match quickstart::status(&args.state_dir, &mut console).await? {
                    Health::Up(_) => ExitCode::SUCCESS,
                    Health::Down | Health::Stale(..) => ExitCode::FAILURE,
                },
            );
        }
        Sub::Env => match quickstart::load(&args.state_dir)? {
            Some(state) => print!("{}", quickstart::env(&state.cluster, Some(bin_dir))),
            None => anyhow::bail!(
                "no local cluster in {}: start one with `packaging/local-cluster up`",
                args.state_dir.display()
            ),
        },
    }
    Ok(ExitCode::SUCCESS)
}
