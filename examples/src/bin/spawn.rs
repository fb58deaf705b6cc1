//! `spawn`: start, poll and stop a notebook server for a user on Kubernetes with egi-spawner,
//! streaming the spawn's progress, the way a hub would.
//!
//! Talks to the cluster in `KUBECONFIG` (or `~/.kube/config`, or the in-cluster service
//! account); with `--simulate` it starts the in-repo Kubernetes API simulator in-process
//! instead, so it runs anywhere. The spawner's state is kept in `--state` (JSON, as a hub
//! keeps it in its database), so `start`, `poll` and `stop` can be separate runs.
//!
//! ```sh
//! cargo run -p egi-examples --bin spawn -- --simulate run --user alice --hold 2
//! cargo run -p egi-examples --bin spawn -- --config spawner.json start --user alice --option profile=gpu
//! ```
//!
//! Exit codes: 0 ok, 1 the spawn failed (the cluster's reason is printed), 2 usage,
//! 69 the API is unavailable, 78 bad configuration or options.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use egi_spawner::kube::{KubeCluster, RuntimeOptions};
use egi_spawner::spawner::StartRequest;
use egi_spawner::{
    Error, HubContext, KubeSpawnerConfig, PollStatus, ProgressEvent, Spawner, SpawnerState, User,
};
use futures_util::StreamExt;
use secrecy::SecretString;

#[derive(Parser)]
#[command(version, about = "Start, poll and stop notebook servers on Kubernetes")]
struct Args {
    /// The spawner configuration (JSON; KubeSpawner's option names).
    #[arg(long)]
    config: Option<PathBuf>,

    /// Run against the in-repo Kubernetes API simulator, started in this process.
    #[arg(long)]
    simulate: bool,

    /// Where the spawner state is kept between runs.
    #[arg(long, default_value = "spawn-state.json")]
    state: PathBuf,

    /// Seconds to wait for the server to be ready.
    #[arg(long, default_value_t = 300)]
    start_timeout: u64,

    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "warn")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Who {
    /// The user (the hub's raw user name).
    #[arg(long)]
    user: String,
    /// The named server ("" for the default server).
    #[arg(long, default_value = "")]
    server: String,
    /// A group (VO) of the user, for profiles with vo_claims; repeatable.
    #[arg(long = "group")]
    groups: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server, print progress and its URL.
    Start {
        #[command(flatten)]
        who: Who,
        /// A user option, key=value (e.g. profile=gpu); repeatable.
        #[arg(long = "option")]
        options: Vec<String>,
    },
    /// Print whether the server runs (and its exit status if not).
    Poll {
        #[command(flatten)]
        who: Who,
    },
    /// Stop the server and wait until it is gone.
    Stop {
        #[command(flatten)]
        who: Who,
        /// Skip the grace period.
        #[arg(long)]
        now: bool,
    },
    /// Start, hold for a while, poll, stop: a whole session in one run.
    Run {
        #[command(flatten)]
        who: Who,
        /// A user option, key=value; repeatable.
        #[arg(long = "option")]
        options: Vec<String>,
        /// Seconds to keep the server before stopping it.
        #[arg(long, default_value_t = 1)]
        hold: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log_level))
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("spawn: {error:#}");
            let code = match error.downcast_ref::<Error>() {
                Some(Error::Config(_) | Error::Options(_)) => 78,
                Some(Error::Transport { .. } | Error::CacheUnavailable { .. }) => 69,
                Some(_) => 1,
                None if error.downcast_ref::<std::io::Error>().is_some() => 78,
                None => 1,
            };
            ExitCode::from(code)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config: KubeSpawnerConfig = match &args.config {
        Some(path) => {
            // tokio::fs: no blocking file I/O on the runtime's threads.
            let text = tokio::fs::read_to_string(path)
                .await
                .with_context(|| format!("reading {}", path.display()))?;
            match serde_json::from_str(&text) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("spawn: {}: {error}", path.display());
                    return Ok(ExitCode::from(78));
                }
            }
        }
        None => KubeSpawnerConfig::default(),
    };
    let mut options = RuntimeOptions::default();
    options.start_timeout = Duration::from_secs(args.start_timeout);

    let simulator = if args.simulate {
        Some(egi_test_harness::kubesim::KubeSim::start(Default::default()).await?)
    } else {
        None
    };
    let cluster = match &simulator {
        Some(sim) => {
            let client = egi_spawner::kube::client(kube::Config::new(sim.url().parse()?))?;
            KubeCluster::new(client, config, options)?
        }
        None => KubeCluster::infer(config, options).await?,
    };

    let code = match args.command {
        Command::Start { who, options } => {
            let spawner = spawner(&cluster, &who, &args.state).await?;
            let url = start(&spawner, &who, &options).await;
            save(&args.state, &spawner.state()).await?;
            println!("{}", url?);
            ExitCode::SUCCESS
        }
        Command::Poll { who } => {
            let spawner = spawner(&cluster, &who, &args.state).await?;
            let status = spawner.poll().await?;
            save(&args.state, &spawner.state()).await?;
            match status {
                PollStatus::Running => println!("running"),
                PollStatus::Exited { code, reason } => {
                    println!(
                        "exited {code}{}",
                        reason.map(|r| format!(" ({r})")).unwrap_or_default()
                    )
                }
            }
            ExitCode::SUCCESS
        }
        Command::Stop { who, now } => {
            let spawner = spawner(&cluster, &who, &args.state).await?;
            spawner.stop(now).await?;
            spawner.clear_state();
            save(&args.state, &spawner.state()).await?;
            println!("stopped");
            ExitCode::SUCCESS
        }
        Command::Run { who, options, hold } => {
            let spawner = spawner(&cluster, &who, &args.state).await?;
            let started = start(&spawner, &who, &options).await;
            let url = match started {
                Ok(url) => url,
                Err(error) => {
                    let _ = spawner.stop(true).await;
                    return Err(error.into());
                }
            };
            println!("ready at {url}");
            tokio::time::sleep(Duration::from_secs(hold)).await;
            println!("poll: {:?}", spawner.poll().await?);
            spawner.stop(false).await?;
            spawner.clear_state();
            save(&args.state, &spawner.state()).await?;
            println!("stopped");
            ExitCode::SUCCESS
        }
    };
    // Stop watching before the simulator goes, so its end is not reported as a failure.
    drop(cluster);
    if let Some(sim) = simulator {
        sim.shutdown().await;
    }
    Ok(code)
}

async fn spawner(
    cluster: &KubeCluster,
    who: &Who,
    state: &PathBuf,
) -> anyhow::Result<egi_spawner::kube::KubeSpawner> {
    let user = User {
        name: who.user.clone(),
        id: None,
        groups: who.groups.clone(),
        primary_group: who.groups.first().cloned(),
    };
    let spawner = cluster.spawner(user, &who.server);
    if let Ok(text) = tokio::fs::read_to_string(state).await {
        let saved: SpawnerState = serde_json::from_str(&text).map_err(Error::State)?;
        spawner.load_state(saved);
    }
    Ok(spawner)
}

async fn save(path: &PathBuf, state: &SpawnerState) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    tokio::fs::write(path, text)
        .await
        .with_context(|| format!("writing {}", path.display()))
}

async fn start(
    spawner: &egi_spawner::kube::KubeSpawner,
    who: &Who,
    options: &[String],
) -> Result<String, Error> {
    let mut user_options = serde_json::Map::new();
    for option in options {
        let (key, value) = option.split_once('=').unwrap_or((option, ""));
        user_options.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
    }
    let token = std::env::var("JUPYTERHUB_API_TOKEN")
        .unwrap_or_else(|_| format!("{:032x}", fastrand::u128(..)));
    let api_url = std::env::var("JUPYTERHUB_API_URL")
        .unwrap_or_else(|_| "http://hub:8081/hub/api".to_owned());
    let hub = HubContext::for_server(
        &who.user,
        &who.server,
        &api_url,
        SecretString::from(token),
        8888,
    );
    let mut progress = spawner.progress();
    let request = StartRequest {
        hub,
        user_options,
        tokens: None,
    };
    let start = spawner.start(request);
    tokio::pin!(start);
    // Print progress while the start runs; the stream ends with the start.
    loop {
        tokio::select! {
            result = &mut start => {
                while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(50), progress.next()).await {
                    print_progress(&event);
                }
                return result;
            }
            Some(event) = progress.next() => print_progress(&event),
        }
    }
}

/// `[ 42%] message`; an event without progress only updates the message.
fn print_progress(event: &ProgressEvent) {
    match event.progress {
        Some(progress) => eprintln!("[{progress:>3}%] {}", event.message),
        None => eprintln!("[    ] {}", event.message),
    }
}
