//! The APEL sender: what SSM's `ssmsend` does, for the spool [`crate::spool`] writes.
//!
//! A [`run`] reads the dirq spool ([`dirq`], locking each element as python-dirq readers do,
//! so it can run beside SSM), signs each message with the host certificate as SSM does
//! ([`smime`]) and publishes it to the ARGO Messaging Service ([`ams`]) or a STOMP broker
//! ([`stomp`]), as the operator's `sender.cfg` ([`config`]) says. An element is removed only
//! once the broker confirmed it (STOMP `RECEIPT`, AMS `messageIds`); anything else keeps it,
//! unlocked, for the next run:
//!
//! - a transient failure (broker unreachable, no receipt, HTTP 5xx) is retried with
//!   exponential back-off ([`Backoff`]), then stops the run;
//! - a refusal of one message (corrupt element, AMS 413) keeps that element and goes on;
//! - anything else (credentials, refused login or destination, AMS 401 or 404) stops the run.
//!
//! Pure parts: [`config`], [`stomp::Frame`], the request and answer functions of [`ams`].
//!
//! ```no_run
//! # async fn run() -> Result<(), egi_accounting::send::Error> {
//! use egi_accounting::send::{self, Options, config::SenderConfig};
//!
//! let config = SenderConfig::load("/etc/apel/sender.cfg".as_ref())?;
//! let report = send::run(&config, &Options::default()).await?;
//! println!("{} sent, {} kept", report.sent, report.kept.len());
//! # Ok(())
//! # }
//! ```

pub mod ams;
pub mod config;
pub mod dirq;
mod error;
pub mod smime;
pub mod stomp;

use std::time::Duration;

pub use error::{Error, Result};

use self::ams::AmsClient;
use self::config::{Broker, SenderConfig};
use self::dirq::{DirqReader, ElementId, MAX_LOCK, MAX_TEMP};
use self::smime::Signer;
use self::stomp::{StompConnection, Timeouts, TlsFiles};

/// Retries of transient failures: `attempts` tries in all per message, waiting `first`,
/// then twice as long each time, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Tries per message (at least 1).
    pub attempts: u32,
    /// The first wait.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            attempts: 4,
            first: Duration::from_secs(2),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait after failed try `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// How a run behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Read, lock, check and sign every element, but connect to nothing and remove nothing.
    pub dry_run: bool,
    /// Retries of transient failures.
    pub backoff: Backoff,
    /// STOMP connection and receipt timeouts.
    pub stomp: Timeouts,
    /// Timeout of each AMS request.
    pub http_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dry_run: false,
            backoff: Backoff::default(),
            stomp: Timeouts::default(),
            http_timeout: Duration::from_secs(30),
        }
    }
}

impl Options {
    /// These options with `dry_run` set.
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// These options with another back-off.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// These options with other STOMP timeouts.
    #[must_use]
    pub fn stomp_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.stomp = timeouts;
        self
    }
}

/// What a run did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// Messages the broker confirmed (their elements are removed).
    pub sent: usize,
    /// Messages a dry run would have sent.
    pub would_send: usize,
    /// Elements another reader (SSM) held locked: left to it.
    pub locked_elsewhere: usize,
    /// Elements kept because only they were refused ([`Error::is_message_specific`]).
    pub kept: Vec<Error>,
}

/// Where messages go during a run.
enum Publisher<'a> {
    Stomp {
        config: &'a SenderConfig,
        broker: &'a config::StompBroker,
        conn: Option<StompConnection>,
    },
    Ams(AmsClient),
}

impl Publisher<'_> {
    async fn publish(&mut self, options: &Options, id: &ElementId, signed: &str) -> Result<()> {
        match self {
            Publisher::Ams(client) => {
                let ams_id = client.publish(id, signed).await?;
                tracing::info!(element = %id, ams_id, "sent");
                Ok(())
            }
            Publisher::Stomp {
                config,
                broker,
                conn,
            } => {
                let mut c = match conn.take() {
                    Some(c) => c,
                    None => {
                        let tls = TlsFiles {
                            certificate: &config.certificate,
                            key: &config.key,
                            capath: config.capath.as_deref(),
                        };
                        StompConnection::connect(broker, tls, options.stomp).await?
                    }
                };
                // A failed connection is dropped (its state is unknown) and made anew.
                c.send(&config.destination, id, signed).await?;
                tracing::info!(element = %id, "sent");
                *conn = Some(c);
                Ok(())
            }
        }
    }

    async fn close(self) {
        if let Publisher::Stomp { conn: Some(c), .. } = self {
            c.disconnect().await;
        }
    }
}

/// Checks an element's body: SSM decodes it as ASCII and sends nothing empty.
fn check_body(id: &ElementId, body: &[u8]) -> Result<()> {
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        "empty".to_owned()
    } else if let Some(at) = body.iter().position(|b| !b.is_ascii()) {
        format!("byte {at} is not ASCII")
    } else {
        return Ok(());
    };
    Err(Error::CorruptElement {
        name: id.to_string(),
        reason,
    })
}

/// Sends every element of the spool `config` names; see the [module](self) documentation.
pub async fn run(config: &SenderConfig, options: &Options) -> Result<Report> {
    let signer = Signer::load(&config.certificate, &config.key)?;
    tracing::info!(signer = %signer.subject(), "messages will be signed");
    let reader = DirqReader::open(&config.spool)?;
    let ids = reader.elements()?;
    let mut report = Report::default();
    if ids.is_empty() {
        tracing::info!(spool = %config.spool.display(), "no messages to send");
        return Ok(report);
    }
    tracing::info!(messages = ids.len(), "found messages");
    let mut publisher = None;
    let mut outcome = Ok(());
    for id in &ids {
        if !reader.lock(id)? {
            tracing::warn!(element = %id, "locked by another reader: not sent");
            report.locked_elsewhere += 1;
            continue;
        }
        let step = send_one(
            config,
            options,
            &reader,
            &signer,
            &mut publisher,
            id,
            &mut report,
        )
        .await;
        match step {
            Ok(true) => reader.remove(id)?,
            Ok(false) => reader.unlock(id)?,
            Err(e) => {
                reader.unlock(id)?;
                if e.is_message_specific() {
                    tracing::error!(element = %id, error = %e, "kept in the spool");
                    report.kept.push(e);
                } else {
                    outcome = Err(e);
                    break;
                }
            }
        }
    }
    if let Some(p) = publisher {
        p.close().await;
    }
    if let Err(e) = outcome {
        tracing::error!(sent = report.sent, error = %e, "run stopped; what is left stays in the spool");
        return Err(e);
    }
    if !options.dry_run {
        reader.purge(MAX_TEMP, MAX_LOCK)?;
    }
    Ok(report)
}

/// Reads, checks, signs and publishes one locked element: `Ok(true)` when the broker
/// confirmed it (remove it), `Ok(false)` in a dry run.
async fn send_one<'a>(
    config: &'a SenderConfig,
    options: &Options,
    reader: &DirqReader,
    signer: &Signer,
    publisher: &mut Option<Publisher<'a>>,
    id: &ElementId,
    report: &mut Report,
) -> Result<bool> {
    let body = reader.get(id)?;
    check_body(id, &body)?;
    let signed = signer.sign(&body)?;
    if options.dry_run {
        tracing::info!(element = %id, bytes = body.len(), signed_bytes = signed.len(), "would send");
        report.would_send += 1;
        return Ok(false);
    }
    let backoff = options.backoff;
    let mut tries = 0;
    loop {
        tries += 1;
        let result = match publisher {
            Some(p) => p.publish(options, id, &signed).await,
            None => match connect(config, options, signer).await {
                Ok(p) => publisher.insert(p).publish(options, id, &signed).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => {
                report.sent += 1;
                return Ok(true);
            }
            Err(e) if e.is_transient() && tries < backoff.attempts.max(1) => {
                let wait = backoff.delay(tries);
                tracing::warn!(element = %id, error = %e, ?wait, "transient failure, retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn connect<'a>(
    config: &'a SenderConfig,
    options: &Options,
    signer: &Signer,
) -> Result<Publisher<'a>> {
    match &config.broker {
        Broker::Stomp(broker) => Ok(Publisher::Stomp {
            config,
            broker,
            conn: None,
        }),
        Broker::Ams(broker) => Ok(Publisher::Ams(
            AmsClient::connect(broker, &config.destination, signer, options.http_timeout).await?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let b = Backoff {
            attempts: 5,
            first: Duration::from_millis(100),
            max: Duration::from_millis(350),
        };
        let waits: Vec<_> = (1..=5).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350, 350]);
        assert_eq!(b.delay(200), b.max, "no overflow");
    }

    #[test]
    fn only_non_empty_ascii_bodies_are_sent() {
        let id = ElementId::for_tests("5f3c1a00/5f3c1a2b0a1b21");
        assert!(check_body(&id, b"APEL-cloud-message: v0.4\n").is_ok());
        let err = check_body(&id, "SiteName: Zürich".as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spool element 5f3c1a00/5f3c1a2b0a1b21 is corrupt: byte 11 is not ASCII"
        );
        assert!(err.is_message_specific());
        assert!(
            check_body(&id, b" \n")
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }
}
