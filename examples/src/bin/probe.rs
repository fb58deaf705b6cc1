//! `probe`: a Nagios/ARGO check of a notebooks service, replacing `egi-notebooks-probe`.
//!
//! Reads a status service's `{code,msg,time}` JSON (`--url`), or runs a probe itself
//! (`--hub` with `--run`), and prints one line, `NOTEBOOKS OK - message | perfdata`, exiting
//! 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. A result older than `--warning-age` is at least
//! WARNING, older than `--critical-age` CRITICAL. An unreachable or failing status service
//! is CRITICAL; an answer that is not the expected JSON, bad arguments or any internal error
//! are UNKNOWN: it never crashes.
//!
//! ```sh
//! cargo run -p egi-examples --bin probe -- -t 10 --url https://hub.example/services/status/
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use egi_monitoring::hub::HubClient;
use egi_monitoring::limits::{BodyError, MAX_BODY_BYTES, read_body};
use egi_monitoring::nagios::{Check, Staleness, evaluate_status, from_outcome};
use egi_monitoring::{
    ExecuteProbe, HubReachable, Probe, SpawnProbe, SpawnSettings, Status, Timeouts, epoch_seconds,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Run {
    Hub,
    Spawn,
    Execute,
}

#[derive(Parser)]
#[command(version, about = "Nagios/ARGO check of a notebooks service")]
struct Args {
    /// Seconds before giving up on the status service (or on each phase of a direct run).
    #[arg(short = 't', long, default_value_t = 10.0)]
    timeout: f64,

    /// The status service's URL (the monitor's page, or any {code,msg,time} JSON).
    #[arg(
        short = 'u',
        long,
        required_unless_present = "hub",
        conflicts_with = "hub"
    )]
    url: Option<String>,

    /// Seconds after which a result is stale: WARNING.
    #[arg(long, default_value_t = 7200.0)]
    warning_age: f64,

    /// Seconds after which a result is stale: CRITICAL.
    #[arg(long, default_value_t = 10800.0)]
    critical_age: f64,

    /// Run a probe directly against this hub (its URL or /hub/api URL) instead.
    #[arg(long)]
    hub: Option<String>,

    /// The probe to run with --hub.
    #[arg(long, value_enum, default_value = "hub")]
    run: Run,

    /// The probe user with --hub.
    #[arg(long, env = "JUPYTERHUB_USER", default_value = "monitor")]
    user: String,

    /// Seconds from start request to ready event with --hub.
    #[arg(long, env = "SPAWN_TIMEOUT", default_value_t = 600.0)]
    spawn_timeout: f64,

    /// Name at the start of the output line.
    #[arg(long, default_value = DEFAULT_SERVICE)]
    service: String,
}

fn main() -> ExitCode {
    // Whatever happens, the answer is a plugin line and a Nagios code: before the arguments
    // are parsed under the default name, after it under `--service`.
    set_panic_hook(DEFAULT_SERVICE.to_owned());
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or("invalid arguments");
            println!(
                "{DEFAULT_SERVICE} UNKNOWN - {}",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(3);
        }
    };
    set_panic_hook(args.service.clone());
    let check = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(check(&args)),
        Err(e) => Check::new(Status::Unknown, format!("cannot start the runtime: {e}")),
    };
    println!("{}", check.line(&args.service));
    ExitCode::from(check.status.exit_code())
}

/// The name at the start of the output line unless `--service` says otherwise.
const DEFAULT_SERVICE: &str = "NOTEBOOKS";

/// Makes any panic print `{service} UNKNOWN - internal error: ...` and exit 3.
fn set_panic_hook(service: String) {
    std::panic::set_hook(Box::new(move |info| {
        println!("{}", panic_line(&service, info));
        std::process::exit(3);
    }));
}

fn panic_line(service: &str, info: &dyn std::fmt::Display) -> String {
    Check::new(Status::Unknown, format!("internal error: {info}")).line(service)
}

fn duration(value: f64, what: &str) -> Result<Duration, Check> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| Check::new(Status::Unknown, format!("invalid {what}: {value}")))
}

async fn check(args: &Args) -> Check {
    match try_check(args).await {
        Ok(check) | Err(check) => check,
    }
}

async fn try_check(args: &Args) -> Result<Check, Check> {
    let timeout = duration(args.timeout, "--timeout")?;
    if let Some(hub) = &args.hub {
        return run_directly(args, hub, timeout).await;
    }
    let url = args.url.as_deref().unwrap_or_default();
    if let Err(e) = reqwest::Url::parse(url) {
        return Err(Check::new(
            Status::Unknown,
            format!("invalid --url {url:?}: {e}"),
        ));
    }
    let staleness = Staleness {
        warning: duration(args.warning_age, "--warning-age")?,
        critical: duration(args.critical_age, "--critical-age")?,
    };
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("egi-notebooks-probe/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            Check::new(
                Status::Unknown,
                format!("cannot build the HTTP client: {e}"),
            )
        })?;
    let unreachable = |e: reqwest::Error| {
        let why = if e.is_timeout() {
            format!("no answer within {}", egi_monitoring::seconds(timeout))
        } else {
            error_chain(&e)
        };
        Check::new(
            Status::Critical,
            format!("cannot reach the status service {url}: {why}"),
        )
    };
    let response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    let body = match read_body(response, MAX_BODY_BYTES, &format!("GET {url}")).await {
        Ok(body) => body,
        Err(BodyError::TooLarge(e)) => {
            return Err(Check::new(
                Status::Critical,
                format!("the status service's answer is too large: {e}"),
            ));
        }
        Err(BodyError::Transport(e)) => return Err(unreachable(e)),
    };
    if !status.is_success() {
        let message = egi_monitoring::hub::body_message(status.as_u16(), &body);
        return Err(Check::new(
            Status::Critical,
            format!(
                "the status service {url} answered HTTP {}: {message}",
                status.as_u16()
            ),
        ));
    }
    Ok(evaluate_status(
        &body,
        epoch_seconds(std::time::SystemTime::now()),
        staleness,
    ))
}

async fn run_directly(args: &Args, hub: &str, timeout: Duration) -> Result<Check, Check> {
    let token = std::env::var("JUPYTERHUB_API_TOKEN").unwrap_or_default();
    let client = HubClient::builder(hub)
        .token(token)
        .request_timeout(timeout)
        .build()
        .map_err(|e| Check::new(Status::Unknown, e.report()))?;
    let timeouts = Timeouts {
        request: timeout,
        spawn: duration(args.spawn_timeout, "--spawn-timeout")?,
        stop: timeout.max(Duration::from_secs(60)),
        kernel: timeout,
        execute: timeout,
    };
    let settings = SpawnSettings::new(&args.user).timeouts(timeouts);
    let probe: Box<dyn Probe> = match args.run {
        Run::Hub => Box::new(HubReachable::new(client).timeouts(timeouts)),
        Run::Spawn => Box::new(SpawnProbe::new(client, settings)),
        Run::Execute => Box::new(ExecuteProbe::new(client, settings)),
    };
    Ok(from_outcome(&probe.run().await))
}

/// `outer: inner: innermost`, without repeating a message already included.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let s = inner.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_are_reported_under_the_service_name() {
        assert_eq!(
            panic_line("JUPYTER", &"boom | at x\ny"),
            "JUPYTER UNKNOWN - internal error: boom / at x y"
        );
        let args = Args::try_parse_from(["probe", "--service", "BINDER", "-u", "http://x/"]);
        assert_eq!(args.map(|a| a.service).ok().as_deref(), Some("BINDER"));
        let args = Args::try_parse_from(["probe", "-u", "http://x/"]);
        assert_eq!(
            args.map(|a| a.service).ok().as_deref(),
            Some(DEFAULT_SERVICE)
        );
    }
}
