//! Probes that compute: run code, or a whole notebook, in a kernel of a freshly spawned
//! server.

use crate::error::{Error, Result};
use crate::hub::HubClient;
use crate::kernel::protocol::{Execution, KernelError};
use crate::kernel::{self, Channels};
use crate::notebook::params::Parameters;
use crate::notebook::{CellRun, Notebook, RunRecord, check_output};
use crate::outcome::{Outcome, Status, Timeline, seconds};
use crate::probes::server::{Up, bring_up, conclude, spawn_time, tear_down};
use crate::probes::{Probe, ProbeFuture, SpawnSettings};

/// What [`ExecuteProbe::new`] runs unless told otherwise: prints the Python version and
/// computes 6 × 7 (expected result `42`).
pub const DEFAULT_CODE: &str = "import platform\nprint(platform.python_version())\n6 * 7";

/// Runs code in a kernel and checks it did not raise (and, optionally, its result).
///
/// OK: "Executed code in 0.05 s (server ready in 3.2 s): result 42". CRITICAL: the exception
/// name and message, a wrong result, or the failing phase.
#[derive(Debug, Clone)]
pub struct ExecuteProbe {
    client: HubClient,
    settings: SpawnSettings,
    kernel_name: String,
    code: String,
    expected_result: Option<String>,
}

impl ExecuteProbe {
    /// Runs [`DEFAULT_CODE`] in a `python3` kernel and expects `42`.
    pub fn new(client: HubClient, settings: SpawnSettings) -> Self {
        Self {
            client,
            settings,
            kernel_name: "python3".into(),
            code: DEFAULT_CODE.into(),
            expected_result: Some("42".into()),
        }
    }

    /// Runs `code` instead, expecting `expected_result` (the `text/plain` of the value of
    /// its last expression) if given.
    #[must_use]
    pub fn code(mut self, code: impl Into<String>, expected_result: Option<String>) -> Self {
        self.code = code.into();
        self.expected_result = expected_result;
        self
    }

    /// Uses the kernel `name` instead of `python3`.
    #[must_use]
    pub fn kernel_name(mut self, name: impl Into<String>) -> Self {
        self.kernel_name = name.into();
        self
    }
}

impl Probe for ExecuteProbe {
    fn name(&self) -> &str {
        "execute"
    }

    fn run(&self) -> ProbeFuture<'_> {
        let job = Job::Code {
            code: &self.code,
            expected: self.expected_result.as_deref(),
        };
        Box::pin(async move {
            run_job(
                &self.client,
                &self.settings,
                &self.kernel_name,
                job,
                &mut None,
            )
            .await
        })
    }
}

/// Runs the code cells of a notebook in order in one kernel, stopping at the first error.
///
/// OK: "Ran 4 cells of check.ipynb in 0.3 s (server ready in 3.2 s)". CRITICAL: "cell 3 (id
/// a1b2) of check.ipynb raised ZeroDivisionError: division by zero", an output that differs
/// from the expected one, or the failing phase.
///
/// With [`NotebookProbe::parameters`], papermill-style parameters are injected first;
/// [`NotebookProbe::run_notebook`] also returns what the executed notebook needs.
#[derive(Debug, Clone)]
pub struct NotebookProbe {
    client: HubClient,
    settings: SpawnSettings,
    kernel_name: String,
    notebook: Notebook,
}

impl NotebookProbe {
    /// Runs `notebook` in a `python3` kernel.
    pub fn new(client: HubClient, settings: SpawnSettings, notebook: Notebook) -> Self {
        Self {
            client,
            settings,
            kernel_name: "python3".into(),
            notebook,
        }
    }

    /// Uses the kernel `name` instead of `python3`.
    #[must_use]
    pub fn kernel_name(mut self, name: impl Into<String>) -> Self {
        self.kernel_name = name.into();
        self
    }

    /// Injects `parameters` as papermill does (see [`Notebook::with_parameters`]).
    pub fn parameters(mut self, parameters: &Parameters) -> Result<Self> {
        self.notebook = self.notebook.with_parameters(parameters)?;
        Ok(self)
    }

    /// The notebook it runs (with the parameters injected).
    pub fn notebook(&self) -> &Notebook {
        &self.notebook
    }

    /// Runs the notebook once, as [`Probe::run`] does, and also returns the record of the
    /// cells run, for [`Notebook::executed`]: none if no cell was started (the server, the
    /// kernel or its websocket failed first).
    pub async fn run_notebook(&self) -> (Outcome, Option<RunRecord>) {
        let mut record = None;
        let outcome = run_job(
            &self.client,
            &self.settings,
            &self.kernel_name,
            Job::Notebook(&self.notebook),
            &mut record,
        )
        .await;
        (outcome, record)
    }
}

impl Probe for NotebookProbe {
    fn name(&self) -> &str {
        "notebook"
    }

    fn run(&self) -> ProbeFuture<'_> {
        Box::pin(async move { self.run_notebook().await.0 })
    }
}

#[derive(Debug, Clone, Copy)]
enum Job<'a> {
    Code {
        code: &'a str,
        expected: Option<&'a str>,
    },
    Notebook(&'a Notebook),
}

async fn run_job(
    client: &HubClient,
    settings: &SpawnSettings,
    kernel_name: &str,
    job: Job<'_>,
    record: &mut Option<RunRecord>,
) -> Outcome {
    let mut timeline = Timeline::start();
    let mut up = Up::default();
    let work = match bring_up(client, settings, &mut timeline, &mut up).await {
        Ok(path) => {
            let ready = spawn_time(&timeline);
            in_kernel(
                client,
                settings,
                kernel_name,
                &path,
                job,
                &mut timeline,
                record,
            )
            .await
            .map(|(status, message)| match status {
                Status::Ok => (
                    status,
                    format!("{message} (server ready in {})", seconds(ready)),
                ),
                _ => (status, message),
            })
        }
        Err(e) => Err(e),
    };
    let stop = if up.start_requested {
        Some(tear_down(client, settings, &mut timeline).await)
    } else {
        None
    };
    conclude(timeline, work, stop)
}

/// Creates a kernel, runs the job, deletes the kernel (even when the job failed).
async fn in_kernel(
    client: &HubClient,
    settings: &SpawnSettings,
    kernel_name: &str,
    server_path: &str,
    job: Job<'_>,
    timeline: &mut Timeline,
    record: &mut Option<RunRecord>,
) -> Result<(Status, String)> {
    let t = settings.timeouts;
    let (server_path, how) = timeline
        .phase("route", t.request, route(client, settings, server_path))
        .await?;
    let server_path = server_path.as_str();
    timeline.detail("kernel_route", how);
    let id = timeline
        .phase(
            "kernel",
            t.kernel,
            kernel::create(client, server_path, kernel_name),
        )
        .await?;
    timeline.detail("kernel_id", id.clone());
    let result = match timeline
        .phase(
            "websocket",
            t.kernel,
            Channels::connect(client, server_path, &id, &settings.user),
        )
        .await
    {
        Ok(mut channels) => {
            let result = run(&mut channels, job, settings, timeline, record).await;
            channels.close().await;
            result
        }
        Err(e) => Err(e),
    };
    let deleted = timeline
        .phase(
            "kernel delete",
            t.request,
            kernel::delete(client, server_path, &id),
        )
        .await;
    match (result, deleted) {
        (Err(e), _) => Err(e),
        (Ok((Status::Ok, message)), Err(e)) => Ok((
            Status::Warning,
            format!("{message}; but deleting the kernel failed: {}", e.report()),
        )),
        (Ok(done), _) => Ok(done),
    }
}

/// Where kernel requests go, and how that was decided (for the status): through the proxy
/// when its URL was given or the hub API URL reaches the server; else to the URL the hub
/// knows for it (`full_url`, with `JupyterHub.public_url`); else straight to the server, at
/// the proxy's target for it (`GET /hub/api/proxy`), as the proxy itself would, when the
/// hub API URL is the hub's own address (EGI's chart: `http://hub:8081/hub/api`).
async fn route(
    client: &HubClient,
    settings: &SpawnSettings,
    server_path: &str,
) -> Result<(String, String)> {
    let given = client.public_base().as_str();
    if client.public_url_given() {
        return Ok((
            server_path.to_owned(),
            format!("through the proxy at {given}"),
        ));
    }
    let status = client.server_status(server_path).await?;
    if status == 200 {
        return Ok((server_path.to_owned(), format!("through {given}")));
    }
    let full_url = client
        .user(&settings.user)
        .await?
        .and_then(|u| u.server(&settings.server).and_then(|s| s.full_url.clone()));
    if let Some(full) = full_url {
        return Ok((
            full.clone(),
            format!(
                "to the server's public URL {full} (GET {server_path}api on {given} answered HTTP {status})"
            ),
        ));
    }
    let routes = client.proxy_routes().await.map_err(|e| {
        Error::Config(format!(
            "kernel requests through {given} do not reach the server (GET {server_path}api \
             answered HTTP {status}), and the proxy's routes are not readable ({}): set \
             MONITORED_PUBLIC_URL to the proxy's URL, or give the token the proxy scope",
            e.report()
        ))
    })?;
    let target = routes
        .iter()
        .find(|(spec, _)| spec.trim_end_matches('/') == server_path.trim_end_matches('/'))
        .map(|(_, target)| target.clone())
        .ok_or_else(|| {
            Error::Config(format!(
                "kernel requests through {given} do not reach the server (GET {server_path}api \
                 answered HTTP {status}) and the proxy has no route for it: set \
                 MONITORED_PUBLIC_URL to the proxy's URL"
            ))
        })?;
    let direct = format!(
        "{}/{}/",
        target.trim_end_matches('/'),
        server_path.trim_matches('/')
    );
    Ok((
        direct,
        format!(
            "directly to the server at {target}, the proxy's target for {server_path} \
             ({given} is the hub's own address: GET {server_path}api answered HTTP {status})"
        ),
    ))
}

async fn run(
    channels: &mut Channels,
    job: Job<'_>,
    settings: &SpawnSettings,
    timeline: &mut Timeline,
    record: &mut Option<RunRecord>,
) -> Result<(Status, String)> {
    let timeout = settings.timeouts.execute;
    match job {
        Job::Code { code, expected } => {
            let execution = timeline
                .phase("execute", timeout, channels.execute(code))
                .await?;
            record_outputs(timeline, "", &execution);
            let took = seconds(timeline.phase_duration("execute").unwrap_or_default());
            if let Some(error) = &execution.error {
                timeline.mark_failed("execute");
                return Ok((Status::Critical, format!("code raised {}", describe(error))));
            }
            let result = execution.result().unwrap_or("");
            if let Some(expected) = expected
                && result.trim() != expected.trim()
            {
                timeline.mark_failed("execute");
                return Ok((
                    Status::Critical,
                    format!("code returned {result:?}, expected {expected:?}"),
                ));
            }
            let mut message = format!("Executed code in {took}");
            if !result.is_empty() {
                message.push_str(&format!(": result {}", first_line(result)));
            }
            Ok((Status::Ok, message))
        }
        Job::Notebook(notebook) => {
            let run = record.insert(RunRecord {
                start: chrono::Utc::now(),
                end: chrono::Utc::now(),
                cells: Vec::new(),
                finished: false,
                input_path: None,
                output_path: None,
            });
            let result = run_cells(channels, notebook, timeout, timeline, run).await;
            run.end = chrono::Utc::now();
            result
        }
    }
}

/// Runs the code cells in order, recording each in `run`, until one fails.
async fn run_cells(
    channels: &mut Channels,
    notebook: &Notebook,
    timeout: std::time::Duration,
    timeline: &mut Timeline,
    run: &mut RunRecord,
) -> Result<(Status, String)> {
    let started = tokio::time::Instant::now();
    for (n, cell) in notebook.cells.iter().enumerate() {
        let phase = format!("cell {}", cell.index);
        let start = chrono::Utc::now();
        let executed = timeline
            .phase(&phase, timeout, channels.execute_cell(&cell.source))
            .await;
        let mut cell_run = CellRun {
            index: cell.index,
            start,
            end: chrono::Utc::now(),
            execution: Default::default(),
            failed: true,
        };
        let execution = match executed {
            Ok(execution) => execution,
            Err(e) => {
                run.cells.push(cell_run);
                return Err(e);
            }
        };
        record_outputs(timeline, &format!("cell {} ", cell.index), &execution);
        let failure = if let Some(error) = &execution.error {
            Some(format!(
                "cell {} (id {}) of {} raised {}",
                cell.index,
                cell.id,
                notebook.name,
                describe(error)
            ))
        } else {
            check_output(cell, &execution).err().map(|mismatch| {
                format!(
                    "wrong output in {}: {mismatch} ({n} cells ran fine before)",
                    notebook.name
                )
            })
        };
        cell_run.execution = execution;
        cell_run.failed = failure.is_some();
        run.cells.push(cell_run);
        if let Some(message) = failure {
            timeline.mark_failed(&phase);
            return Ok((Status::Critical, message));
        }
    }
    run.finished = true;
    let count = notebook.cells.len();
    let cells = if count == 1 { "cell" } else { "cells" };
    Ok((
        Status::Ok,
        format!(
            "Ran {count} {cells} of {} in {}",
            notebook.name,
            seconds(started.elapsed())
        ),
    ))
}

fn record_outputs(timeline: &mut Timeline, prefix: &str, execution: &Execution) {
    for (key, value) in [
        ("stdout", execution.stdout()),
        ("stderr", execution.stderr()),
    ] {
        if !value.is_empty() {
            timeline.detail(format!("{prefix}{key}"), value);
        }
    }
    if let Some(result) = execution.result() {
        timeline.detail(format!("{prefix}result"), result);
    }
    if let Some(error) = &execution.error {
        timeline.detail(
            format!("{prefix}traceback"),
            strip_ansi(&error.traceback.join("\n")),
        );
    }
}

/// `ZeroDivisionError: division by zero`.
fn describe(error: &KernelError) -> String {
    if error.evalue.is_empty() {
        error.ename.clone()
    } else {
        format!("{}: {}", error.ename, first_line(&error.evalue))
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Removes the colour escapes IPython puts in tracebacks.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_are_named() {
        let e = KernelError {
            ename: "ZeroDivisionError".into(),
            evalue: "division by zero\nmore".into(),
            traceback: vec![],
        };
        assert_eq!(describe(&e), "ZeroDivisionError: division by zero");
        let bare = KernelError {
            ename: "KeyboardInterrupt".into(),
            evalue: String::new(),
            traceback: vec![],
        };
        assert_eq!(describe(&bare), "KeyboardInterrupt");
    }

    #[test]
    fn tracebacks_lose_their_colours() {
        assert_eq!(
            strip_ansi("\u{1b}[0;31mZeroDivisionError\u{1b}[0m: division by zero"),
            "ZeroDivisionError: division by zero"
        );
    }
}
