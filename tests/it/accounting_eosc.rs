//! EOSC EU Node accounting against the loopback EOSC accounting API and the real OpenID
//! provider (client credentials, tokens checked by introspection): the notebooks database
//! is written by an accounting run over the bundled sample, then each day's metrics are
//! sent once, whatever fails in between (5xx, 401, 422, a slow API, refused credentials).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use egi_accounting::config::Config;
use egi_accounting::eosc::{self, EoscConfig, Error, Metric, Options, Progress, Sender};
use egi_accounting::job;
use egi_accounting::notebooks_db::NotebooksDb;
use egi_accounting::snapshot::SnapshotSource;
use egi_accounting::spool::WriterSink;
use egi_test_harness::eosc::{EoscApi, EoscApiOptions, Fault, Introspection};
use egi_test_harness::oidc::{self, OidcProvider};
use egi_test_harness::synthetic::Params;
use serde_json::Value;

use crate::helpers::example_bin;
use crate::helpers::{sample_path, window};

const OTHER_SECRET: &str = "other-secret";
const INSTALLATION: &str = "inst-1";
/// The sample's two days: 2025-11-02 and 2025-11-03 (UTC).
const FROM: &str = "2025-11-02";
const TO: &str = "2025-11-04";

struct Setup {
    provider: OidcProvider,
    api: EoscApi,
    dir: tempfile::TempDir,
}

impl Setup {
    fn db_path(&self) -> PathBuf {
        self.dir.path().join("notebooks.db")
    }

    fn timestamp_file(&self) -> PathBuf {
        self.dir.path().join("eosc-timestamp")
    }

    /// The chart's INI file for this setup, with `secret` and `flavors` lines.
    fn ini(&self, secret: &str, flavors: &str, timeout: u64) -> String {
        format!(
            "[default]\nnotebooks_db={db}\n\n[eosc]\ntoken_url={issuer}/protocol/openid-connect/token\n\
             client_secret={secret}\nclient_id={client}\naccounting_url={api}\n\
             installation_id={INSTALLATION}\ntimeout={timeout}\ntimestamp_file={ts}\n\n\
             [eosc.flavors]\n{flavors}",
            db = self.db_path().display(),
            issuer = self.provider.issuer(),
            client = oidc::OTHER_CLIENT_ID,
            api = self.api.url(),
            ts = self.timestamp_file().display(),
        )
    }

    fn config(&self, secret: &str, flavors: &str, timeout: u64) -> EoscConfig {
        EoscConfig::from_ini_str(&self.ini(secret, flavors, timeout), |_| None)
            .expect("EOSC configuration")
    }

    fn token_requests(&self) -> u64 {
        self.provider
            .token_requests("client_credentials")
            .expect("provider counters")
    }
}

const FLAVORS: &str = "small=m-small\nmedium=m-medium\nlarge=m-large\n";

/// The provider, the API (checking tokens at the provider) and a notebooks database written
/// by an accounting run over the bundled sample.
async fn setup() -> Setup {
    let provider = OidcProvider::start(oidc::Options {
        rotate: false,
        access_ttl: Duration::from_secs(300),
    })
    .expect("OpenID provider");
    let api = EoscApi::start(EoscApiOptions {
        installations: vec![INSTALLATION.to_owned()],
        metric_definitions: ["m-small", "m-medium", "m-large"]
            .map(str::to_owned)
            .to_vec(),
        introspection: Some(Introspection {
            url: format!(
                "{}/protocol/openid-connect/token/introspect",
                provider.issuer()
            ),
            client_id: oidc::CLIENT_ID.to_owned(),
            client_secret: oidc::CLIENT_SECRET.to_owned(),
        }),
    })
    .await
    .expect("EOSC API");
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup { provider, api, dir };
    let config = Config::from_ini_str("", |_| None).unwrap();
    let source = SnapshotSource::from_path(sample_path()).unwrap();
    let mut db = NotebooksDb::open(setup.db_path()).unwrap();
    let mut sink = WriterSink::new(Vec::new(), "buffer");
    job::run_with_db(
        &source,
        &window(Params::SAMPLE_END, "24h"),
        &config.records,
        config.limits,
        &mut sink,
        &mut db,
    )
    .await
    .expect("accounting run");
    setup
}

fn options(dry_run: bool) -> Options {
    Options {
        from: Some(eosc::report::parse_date(FROM).unwrap()),
        to: Some(eosc::report::parse_date(TO).unwrap()),
        dry_run,
        now: chrono::Utc::now().timestamp(),
    }
}

async fn report(
    s: &Setup,
    config: &EoscConfig,
    dry_run: bool,
) -> (eosc::Result<eosc::Report>, Vec<Metric>) {
    let db = NotebooksDb::open(&config.notebooks_db).unwrap();
    let sender = if dry_run {
        None
    } else {
        Some(Sender::new(config).expect("sender"))
    };
    let progress = Progress::new(s.timestamp_file());
    let mut shown = Vec::new();
    let outcome = eosc::run(
        config,
        &db,
        sender.as_ref(),
        Some(&progress),
        options(dry_run),
        &mut |m: &Metric| shown.push(m.clone()),
    )
    .await;
    (outcome, shown)
}

fn as_json(metrics: &[Metric]) -> Vec<Value> {
    metrics
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect()
}

/// Asserts that `got` holds the metrics `want`, in order: every field equal, values to
/// 1e-9 (serde_json reads decimals back to within an ulp).
#[track_caller]
fn assert_metrics(got: &[Value], want: &[Value]) {
    let strip = |v: &Value| {
        let mut v = v.clone();
        let value = v["value"].take().as_f64().expect("a numeric value");
        (v, value)
    };
    assert_eq!(got.len(), want.len(), "{got:#?}\n{want:#?}");
    for (g, w) in got.iter().zip(want) {
        let ((g, gv), (w, wv)) = (strip(g), strip(w));
        assert_eq!(g, w);
        assert!((gv - wv).abs() < 1e-9, "{gv} != {wv}");
    }
}

fn stored(s: &Setup) -> Vec<Value> {
    s.api
        .stored()
        .into_iter()
        .map(|m| {
            assert_eq!(m.installation, INSTALLATION);
            m.metric
        })
        .collect()
}

/// The metrics a dry run computes: what must reach the API, each once.
async fn expected(s: &Setup) -> Vec<Value> {
    let (outcome, shown) = report(s, &s.config(OTHER_SECRET, FLAVORS, 5), true).await;
    let r = outcome.expect("dry run");
    assert_eq!(r.periods, 2);
    assert!(r.metrics >= 3, "{r:?}");
    assert_eq!(r.sent, 0);
    as_json(&shown)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_day_is_sent_once_with_a_client_credentials_token() {
    let s = setup().await;
    let want = expected(&s).await;
    // A dry run asks for no token, sends nothing and keeps no progress.
    assert_eq!(s.token_requests(), 0);
    assert_eq!(s.api.requests(), 0);
    assert!(!s.timestamp_file().exists());
    // Per user, group and flavor: the sample's users, their VO, hours of a day at most.
    for m in &want {
        let hours = m["value"].as_f64().unwrap();
        assert!(hours > 0.0 && hours <= 24.0, "{m}");
    }
    assert!(
        want.iter()
            .any(|m| m["user_id"] == "zoë" && m["metric_definition_id"] == "m-small"),
        "{want:?}"
    );

    let config = s.config(OTHER_SECRET, FLAVORS, 5);
    let (outcome, _) = report(&s, &config, false).await;
    let r = outcome.expect("run");
    assert_eq!((r.sent, r.already_sent), (want.len(), 0));
    assert_metrics(&stored(&s), &want);
    assert_eq!(s.token_requests(), 1);
    assert_eq!(
        std::fs::read_to_string(s.timestamp_file()).unwrap(),
        "2025-11-04T00:00:00Z"
    );

    // Again, even with the same --from-date: the timestamp file says it was sent.
    let (outcome, _) = report(&s, &config, false).await;
    assert_eq!(outcome.expect("second run").sent, 0);
    assert_metrics(&stored(&s), &want);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_mid_day_sends_only_the_rest_next_time() {
    let s = setup().await;
    let want = expected(&s).await;
    let config = s.config(OTHER_SECRET, FLAVORS, 5);
    s.api.arm(&[Fault::Pass, Fault::Status(500)]);
    let (outcome, _) = report(&s, &config, false).await;
    let e = outcome.expect_err("a 500 fails the run");
    assert!(matches!(e, Error::Rejected { status: 500, .. }), "{e}");
    assert!(e.is_transient());
    assert_metrics(&stored(&s), &want[..1]);
    assert!(!s.timestamp_file().exists(), "no day may be marked done");

    let (outcome, _) = report(&s, &config, false).await;
    let r = outcome.expect("the retry");
    assert_eq!((r.sent, r.already_sent), (want.len() - 1, 1));
    // Each metric once, in order.
    assert_metrics(&stored(&s), &want);
    assert_eq!(
        std::fs::read_to_string(s.timestamp_file()).unwrap(),
        "2025-11-04T00:00:00Z"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_is_renewed_once() {
    let s = setup().await;
    let want = expected(&s).await;
    let config = s.config(OTHER_SECRET, FLAVORS, 5);
    s.api.arm(&[Fault::Unauthorized]);
    let (outcome, _) = report(&s, &config, false).await;
    outcome.expect("a new token after a 401");
    assert_eq!(s.token_requests(), 2);
    assert_metrics(&stored(&s), &want);

    // A 401 twice in a row is permanent, and nothing more is sent.
    let s = setup().await;
    s.api.arm(&[Fault::Unauthorized, Fault::Unauthorized]);
    let (outcome, _) = report(&s, &config_for(&s), false).await;
    let e = outcome.expect_err("refused twice");
    assert!(matches!(e, Error::Rejected { status: 401, .. }), "{e}");
    assert!(!e.is_transient());
    assert!(stored(&s).is_empty());
    assert!(!s.timestamp_file().exists());
}

fn config_for(s: &Setup) -> EoscConfig {
    s.config(OTHER_SECRET, FLAVORS, 5)
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_or_metrics_stop_the_run_and_keep_the_day() {
    let s = setup().await;
    let (outcome, _) = report(&s, &s.config("wrong-secret", FLAVORS, 5), false).await;
    let e = outcome.expect_err("wrong secret");
    assert!(matches!(e, Error::Token(_)), "{e}");
    assert!(!e.is_transient());
    assert_eq!(s.api.requests(), 0);
    assert!(!s.timestamp_file().exists());

    // A flavor mapped to a metric definition the API does not know: 422, permanent.
    let (outcome, _) = report(&s, &s.config(OTHER_SECRET, "small=m-unknown\n", 5), false).await;
    let e = outcome.expect_err("unknown metric definition");
    match &e {
        Error::Rejected {
            status: 422,
            message,
        } => {
            assert!(message.contains("m-unknown"), "{message}");
        }
        other => panic!("{other}"),
    }
    assert!(!e.is_transient());
    assert!(stored(&s).is_empty());
    assert!(!s.timestamp_file().exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_api_is_a_transient_failure_and_nothing_is_lost() {
    let s = setup().await;
    let want = expected(&s).await;
    let config = s.config(OTHER_SECRET, FLAVORS, 1);
    s.api.arm(&[Fault::Slow(Duration::from_secs(5))]);
    let (outcome, _) = report(&s, &config, false).await;
    let e = outcome.expect_err("timed out");
    assert!(matches!(e, Error::Timeout(_)), "{e}");
    assert!(e.is_transient());
    assert!(!s.timestamp_file().exists());
    let (outcome, _) = report(&s, &config, false).await;
    outcome.expect("the retry");
    assert_metrics(&stored(&s), &want);
}

async fn run_bin(
    s: &Setup,
    ini: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let config = s.dir.path().join("config.ini");
    std::fs::write(&config, ini).unwrap();
    let mut cmd = Command::new(example_bin("eosc-accounting"));
    for var in [
        "NOTEBOOKS_DB",
        "VERBOSE",
        "TOKEN_URL",
        "CLIENT_ID",
        "CLIENT_SECRET",
        "ACCOUNTING_URL",
        "TIMESTAMP_FILE",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("-c").arg(&config).args(args);
    cmd.envs(env.iter().copied());
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_reads_the_charts_configuration_and_exits_by_kind_of_failure() {
    let s = setup().await;
    let want = expected(&s).await;
    let ini = s.ini("not-the-secret", FLAVORS, 5);
    let dates = ["--from-date", FROM, "--to-date", TO];

    // --dry-run prints the metrics, sends nothing.
    let out = run_bin(&s, &ini, &[&dates[..], &["--dry-run"]].concat(), &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_metrics(&printed, &want);
    assert_eq!(s.api.requests(), 0);

    // The wrong secret: permanent (1). No notebooks database: configuration (78).
    let out = run_bin(&s, &ini, &dates, &[]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_bin(
        &s,
        &ini,
        &dates,
        &[("NOTEBOOKS_DB", "/nonexistent/notebooks.db")],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stored(&s).is_empty());

    // The secret from the environment (CLIENT_SECRET) overrides the file's; a 503 is
    // transient: exit 75, nothing marked done.
    s.api.arm(&[Fault::Status(503)]);
    let env = [("CLIENT_SECRET", OTHER_SECRET)];
    let out = run_bin(&s, &ini, &dates, &env).await;
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!s.timestamp_file().exists());

    let out = run_bin(&s, &ini, &dates, &env).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_metrics(&stored(&s), &want);
    assert_eq!(
        std::fs::read_to_string(s.timestamp_file()).unwrap(),
        "2025-11-04T00:00:00Z"
    );
    // Run again by the CronJob's retry: nothing more.
    let out = run_bin(&s, &ini, &dates, &env).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_metrics(&stored(&s), &want);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_account_gets_tokens_by_client_credentials_alone() {
    use egi_checkin::{ExposeSecret, HttpOptions, SecretString, ServiceAccount};
    let p = OidcProvider::start(oidc::Options::default()).expect("OpenID provider");
    let token_url = format!("{}/protocol/openid-connect/token", p.issuer());
    let o = HttpOptions::default();
    let account = |id: &str, secret: &str| {
        ServiceAccount::new(&token_url, id, SecretString::from(secret.to_owned()), &o)
            .unwrap()
            .scopes(eosc::config::DEFAULT_SCOPES.split(' '))
    };
    // The Python tool's scopes, no discovery: a token the provider calls active, for the
    // service's client.
    let tokens = account(oidc::OTHER_CLIENT_ID, OTHER_SECRET)
        .token()
        .await
        .expect("client credentials");
    assert!(tokens.refresh_token().is_none());
    let info: Value = reqwest::Client::new()
        .post(format!("{token_url}/introspect"))
        .basic_auth(oidc::CLIENT_ID, Some(oidc::CLIENT_SECRET))
        .form(&[("token", tokens.access_token().expose_secret())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], oidc::OTHER_CLIENT_ID, "{info}");
    // A secret that Basic's form-urlencoding changes (+ / =).
    account(oidc::B64_CLIENT_ID, oidc::B64_CLIENT_SECRET)
        .token()
        .await
        .expect("a Base64 secret");
    // A wrong secret: invalid_client, permanent.
    let e = account(oidc::OTHER_CLIENT_ID, "wrong")
        .token()
        .await
        .expect_err("wrong secret");
    assert!(
        matches!(&e, egi_checkin::Error::OAuth { code, .. } if code == "invalid_client"),
        "{e}"
    );
    assert!(!e.is_transient());
}
