//! `run-notebook`: runs a notebook with parameters on a user's server through JupyterHub, as
//! papermill runs one on a local kernel, and writes the executed notebook.
//!
//! Parameters are read as papermill's CLI reads them and injected as it does (a code cell
//! tagged `injected-parameters` after the cell tagged `parameters`, or at the top): `-f`
//! YAML/JSON files, then `-y` YAML strings, then `-p NAME VALUE` (typed: `True`, `False`,
//! `None`, ints, floats, else strings), then `-r NAME VALUE` (strings as given), later ones
//! replacing earlier ones. The server of `--user` is started, the code cells run in order in
//! one kernel until one fails, the server is stopped, and the executed notebook (outputs,
//! execution counts, `metadata.papermill` timings per cell) is written to OUTPUT, whole or
//! not at all.
//!
//! Exit status: 0 every cell ran; 1 the kernel could not be deleted afterwards; 2 a cell
//! failed (OUTPUT is written, up to and including that cell) or the service failed (OUTPUT
//! is written if any cell started); 3 invalid arguments, notebook or parameters (nothing
//! is written). The outcome and each phase's time go to stderr.
//!
//! ```sh
//! MONITORED_URL=https://hub.example/hub/api JUPYTERHUB_API_TOKEN=... \
//!   cargo run -p egi-examples --bin run-notebook -- in.ipynb out.ipynb -p alpha 0.5 -f p.yaml
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use egi_monitoring::hub::HubClient;
use egi_monitoring::notebook::params::Parameters;
use egi_monitoring::notebook::{Notebook, write_notebook};
use egi_monitoring::{NotebookProbe, SpawnSettings, Status, Timeouts};

#[derive(Parser)]
#[command(
    version,
    about = "Run a notebook with papermill-style parameters on a JupyterHub user's server"
)]
struct Args {
    /// The notebook to run (.ipynb, nbformat 4).
    input: PathBuf,

    /// Where to write the executed notebook.
    output: PathBuf,

    /// A parameter, typed as papermill's `-p` does (True, False, None, int, float, string).
    #[arg(short = 'p', long = "parameters", num_args = 2, value_names = ["NAME", "VALUE"], allow_hyphen_values = true)]
    parameters: Vec<String>,

    /// A parameter taken as a string, as given (papermill's `-r`).
    #[arg(short = 'r', long = "parameters-raw", num_args = 2, value_names = ["NAME", "VALUE"], allow_hyphen_values = true)]
    parameters_raw: Vec<String>,

    /// A YAML or JSON file of parameters (papermill's `-f`).
    #[arg(short = 'f', long = "parameters-file", value_name = "PATH")]
    parameters_file: Vec<PathBuf>,

    /// A YAML string of parameters (papermill's `-y`).
    #[arg(short = 'y', long = "parameters-yaml", value_name = "YAML")]
    parameters_yaml: Vec<String>,

    /// Write the notebook with its parameters injected, without running it.
    #[arg(long)]
    prepare_only: bool,

    /// The hub's URL or its /hub/api URL.
    #[arg(long, env = "MONITORED_URL", default_value = "")]
    hub: String,

    /// The proxy's public URL, when --hub is the hub's internal address.
    #[arg(long, env = "MONITORED_PUBLIC_URL")]
    public_url: Option<String>,

    /// A service token with the probe scopes (admin:users, admin:servers, access:servers,
    /// list:users).
    #[arg(
        long,
        env = "JUPYTERHUB_API_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    token: String,

    /// The user whose server runs the notebook (created if missing; a leftover server of
    /// theirs is stopped first).
    #[arg(long, env = "JUPYTERHUB_USER", default_value = "monitor")]
    user: String,

    /// A named server of the user instead of the default one.
    #[arg(long, default_value = "")]
    server: String,

    /// The kernel to run it in.
    #[arg(short = 'k', long, default_value = "python3")]
    kernel: String,

    /// Seconds each cell may take.
    #[arg(long, default_value_t = 600.0)]
    execution_timeout: f64,

    /// Seconds from the start request to the server being ready.
    #[arg(long, env = "SPAWN_TIMEOUT", default_value_t = 600.0)]
    spawn_timeout: f64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("run-notebook: cannot start the runtime: {e}");
            return ExitCode::from(Status::Unknown.exit_code());
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(status) => ExitCode::from(status.exit_code()),
        Err(e) => {
            eprintln!("run-notebook: {e:#}");
            ExitCode::from(Status::Unknown.exit_code())
        }
    }
}

/// Reads everything, runs, writes; an `Err` is a problem of the input (nothing written).
async fn run(args: &Args) -> anyhow::Result<Status> {
    let parameters = parameters(args)?;
    let notebook = Notebook::from_path(&args.input, false)
        .map_err(|e| anyhow::anyhow!(e.report()))?
        .with_parameters(&parameters)
        .map_err(|e| anyhow::anyhow!(e.report()))?;
    if args.prepare_only {
        write_notebook(&args.output, notebook.document())
            .map_err(|e| anyhow::anyhow!(e.report()))?;
        return Ok(Status::Ok);
    }
    if args.hub.is_empty() {
        bail!("no hub: set --hub or MONITORED_URL");
    }
    let mut client = HubClient::builder(&args.hub).token(&args.token);
    if let Some(public) = &args.public_url {
        client = client.public_url(public);
    }
    let client = client.build().map_err(|e| anyhow::anyhow!(e.report()))?;
    let timeouts = Timeouts {
        spawn: secs(args.spawn_timeout, "--spawn-timeout")?,
        execute: secs(args.execution_timeout, "--execution-timeout")?,
        ..Timeouts::default()
    };
    let settings = SpawnSettings::new(&args.user)
        .named_server(&args.server)
        .timeouts(timeouts);
    let probe = NotebookProbe::new(client, settings, notebook).kernel_name(&args.kernel);
    let (outcome, record) = probe.run_notebook().await;
    let phases: Vec<String> = outcome
        .phases
        .iter()
        .map(|p| format!("{} {:.3} s", p.name, p.duration.as_secs_f64()))
        .collect();
    eprintln!("{}: {}", outcome.status, outcome.message);
    eprintln!("phases: {}", phases.join(", "));
    if let Some(mut record) = record {
        record.input_path = Some(args.input.display().to_string());
        record.output_path = Some(args.output.display().to_string());
        write_notebook(&args.output, &probe.notebook().executed(&record))
            .map_err(|e| anyhow::anyhow!(e.report()))?;
    }
    Ok(outcome.status)
}

/// papermill's order: files, YAML strings, `-p`, `-r`.
fn parameters(args: &Args) -> anyhow::Result<Parameters> {
    let mut parameters = Parameters::new();
    for path in &args.parameters_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        parameters.merge_yaml(&shown(path), &text)?;
    }
    for yaml in &args.parameters_yaml {
        parameters.merge_yaml("given with -y", yaml)?;
    }
    for pair in args.parameters.chunks_exact(2) {
        parameters.set_cli(&pair[0], &pair[1])?;
    }
    for pair in args.parameters_raw.chunks_exact(2) {
        parameters.set_raw(&pair[0], &pair[1])?;
    }
    Ok(parameters)
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

fn secs(value: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| anyhow::anyhow!("invalid {what}: {value}"))
}
