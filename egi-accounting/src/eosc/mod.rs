//! EOSC EU Node accounting: the Python tool's `egi-notebooks-eosc-accounting` job. For each
//! day it sums, per user and group and per flavor mapped in `[eosc.flavors]`, the hours the
//! pods of the [notebooks database](crate::notebooks_db) ran that day, and `POST`s one
//! metric each to `{accounting_url}/accounting-system/installations/{id}/metrics` with a
//! client-credentials token ([`egi_checkin::ServiceAccount`]).
//!
//! - Pure: [`report::periods`] (which days), [`report::day_metrics`] (a day's metrics).
//! - IO: [`NotebooksDb`] (rows), [`AccountingApi`] (one metric), [`Progress`] (timestamp
//!   file and metrics sent), [`run`] in between.
//!
//! Nothing is sent twice and nothing is lost: the timestamp file moves past a day only once
//! every metric of that day was accepted, and each accepted metric is recorded before the
//! next is sent, so a run stopped half-way (an error, a crash) sends only the rest of that
//! day next time. The one gap is a request that timed out or whose connection broke after
//! the API stored it: it is sent again, since no answer tells whether it was stored.
//!
//! Compared with the Python tool: a day not yet over is left for a later run; an explicit
//! `--from-date` neither resends days the timestamp file covers nor moves it back; a 401 gets one fresh token and one
//! retry; pods whose time in a day is negative (broken rows) count zero.

pub mod config;
mod error;
pub mod progress;
pub mod push;
pub mod report;

use std::time::SystemTime;

use egi_checkin::{ServiceAccount, TokenSet};

pub use config::EoscConfig;
pub use error::{Error, Result};
pub use progress::Progress;
pub use push::AccountingApi;
pub use report::{Metric, Period};

use crate::notebooks_db::NotebooksDb;

/// What to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// `--from-date`, epoch seconds (default: the timestamp file, else yesterday).
    pub from: Option<i64>,
    /// `--to-date`, epoch seconds (default: today 00:00 UTC).
    pub to: Option<i64>,
    /// Compute and hand out the metrics, but send nothing and keep no progress.
    pub dry_run: bool,
    /// The current time, epoch seconds.
    pub now: i64,
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Days reported.
    pub periods: usize,
    /// Metrics computed.
    pub metrics: usize,
    /// Metrics sent now (accepted by the API).
    pub sent: usize,
    /// Metrics not sent again: accepted by an earlier, interrupted run.
    pub already_sent: usize,
}

/// Where metrics go: the token endpoint and the API.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The client credentials.
    pub account: ServiceAccount,
    /// The API.
    pub api: AccountingApi,
}

impl Sender {
    /// The sender `config` describes.
    pub fn new(config: &EoscConfig) -> Result<Self> {
        config.check_for_sending()?;
        let mut http = egi_checkin::HttpOptions::default();
        http.timeout = config.timeout;
        http.token_timeout = config.timeout;
        let account = ServiceAccount::new(
            &config.token_url,
            config.client_id.clone(),
            config.client_secret.clone(),
            &http,
        )
        .map_err(Error::Token)?
        .scopes(config.scopes.iter().cloned());
        let api = AccountingApi::new(
            &config.accounting_url,
            &config.installation_id,
            config.timeout,
        )?;
        Ok(Self { account, api })
    }
}

/// Reports the days `options` asks for from `db`: to `sender` (required unless
/// `options.dry_run`), or, in a dry run, only to `shown`, which sees every metric computed.
/// Progress is kept in `progress` (none: every run starts from yesterday or `--from-date`).
///
/// The future is not `Send` (it holds the SQLite connection across requests): run it on a
/// current-thread runtime or with `tokio::task::spawn_local`.
pub async fn run(
    config: &EoscConfig,
    db: &NotebooksDb,
    sender: Option<&Sender>,
    progress: Option<&Progress>,
    options: Options,
    shown: &mut dyn FnMut(&Metric),
) -> Result<Report> {
    let last_end = match progress {
        Some(p) => p.last_end()?,
        None => None,
    };
    let periods = report::periods(options.from, options.to, last_end, options.now);
    if periods.is_empty() {
        tracing::info!("no whole day to report");
    }
    let sender = match (sender, options.dry_run) {
        (_, true) => None,
        (Some(s), false) => Some(s),
        (None, false) => {
            return Err(Error::Config(
                "no sender given for a run that is not dry".into(),
            ));
        }
    };
    let mut token: Option<TokenSet> = None;
    let mut report = Report::default();
    for period in periods {
        let rows = db
            .overlapping(period.start, period.end)
            .map_err(Error::Database)?;
        let (metrics, unmapped) = report::day_metrics(&rows, &config.flavors, period);
        for flavor in &unmapped {
            tracing::info!(
                flavor,
                "pods of a flavor without a metric in [eosc.flavors] are not reported"
            );
        }
        tracing::info!(
            start = %report::zulu(period.start),
            end = %report::zulu(period.end),
            pods = rows.len(),
            metrics = metrics.len(),
            "period"
        );
        report.periods += 1;
        report.metrics += metrics.len();
        metrics.iter().for_each(&mut *shown);
        let Some(sender) = sender else { continue };
        let already = match progress {
            Some(p) => p.sent_in(period)?,
            None => Default::default(),
        };
        for metric in &metrics {
            let key = metric.key();
            if already.contains(&key) {
                report.already_sent += 1;
                continue;
            }
            push(sender, &mut token, metric).await?;
            if let Some(p) = progress {
                p.mark_sent(&key)?;
            }
            report.sent += 1;
        }
        if let Some(p) = progress {
            p.advance(period.end)?;
        }
    }
    Ok(report)
}

/// Sends one metric, with a token fetched when none is held or it expired, and once more
/// with a fresh token if the API answers 401.
async fn push(sender: &Sender, token: &mut Option<TokenSet>, metric: &Metric) -> Result<()> {
    for attempt in 0..2 {
        let fresh = token
            .as_ref()
            .filter(|t| !t.is_expired_at(SystemTime::now()));
        let current = match fresh {
            Some(t) => t.clone(),
            None => {
                let t = sender.account.token().await.map_err(Error::Token)?;
                *token = Some(t.clone());
                t
            }
        };
        match sender.api.push(current.access_token(), metric).await {
            Err(Error::Rejected { status: 401, .. }) if attempt == 0 => {
                tracing::info!("the accounting API refused the token: getting a new one");
                *token = None;
            }
            outcome => return outcome,
        }
    }
    unreachable!("the loop returns on its second attempt")
}

#[cfg(test)]
mod tests;
