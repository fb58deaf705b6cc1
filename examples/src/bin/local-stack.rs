//! `local-stack`: the whole service on this machine, for a person to click through in a
//! browser: a Check-in-shaped OpenID provider (npm oidc-provider, with a login form that takes
//! any name), kubesim running each notebook pod as the real `jupyterhub-singleuser` on its own
//! loopback address, the gateway, and a Prometheus scraping kubesim. At Ctrl-C it runs the
//! accounting job over what Prometheus saw and prints the APEL records of the session.
//!
//! ```sh
//! .ci/install-peers && cargo run -p egi-examples --bin local-stack
//! ```
//!
//! Everything runs on loopback and stops (by PID) at Ctrl-C. Needs the peers that
//! `.ci/install-peers` installs (the JupyterHub venv, the oidc-provider npm package,
//! Prometheus).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser;
use egi_accounting::apel::Limits;
use egi_accounting::config::Config;
use egi_accounting::metrics::{Filter, LookBack, Timestamp, Window};
use egi_accounting::prometheus::{PrometheusConfig, PrometheusSource};
use egi_accounting::spool::WriterSink;
use egi_checkin::{CheckinClient, MemoryStore, RegistryOptions, SealKey, TokenRegistry};
use egi_examples::gateway::config::{GatewayConfig, loopback_toml};
use egi_examples::gateway::tokens::Tokens;
use egi_examples::gateway::{Gateway, routes};
use egi_spawner::kube::{KubeCluster, RuntimeOptions};
use egi_test_harness::Prometheus;
use egi_test_harness::jupyterhub::Tools;
use egi_test_harness::kubesim::{KubeSim, SimOptions};
use egi_test_harness::oidc::{self, OidcProvider};
use egi_test_harness::prometheus::ScrapeTarget;

#[derive(Parser)]
#[command(
    version,
    about = "Run the gateway, a test Check-in, kubesim with real notebook servers and Prometheus, all on loopback"
)]
struct Args {
    /// Port of the gateway on 127.0.0.1.
    #[arg(long, default_value_t = 8000)]
    port: u16,

    /// Access-token lifetime at the test provider, in seconds (short to watch refreshes).
    #[arg(long, default_value_t = 120)]
    access_ttl: u64,

    /// Log filter.
    #[arg(long, default_value = "info")]
    log_level: String,
}

const VO: &str = "vo.notebooks.egi.eu";
const IMAGE: &str = "quay.io/jupyter/minimal-notebook:2025-01-01";
const SERVICE_TOKEN_VARIABLE: &str = "GATEWAY_SERVICE_STATUS_TOKEN";

fn config_text(listen: &str, issuer: &str, state: &std::path::Path) -> String {
    loopback_toml(
        listen,
        &format!("http://{listen}/"),
        issuer,
        oidc::CLIENT_ID,
        VO,
        state,
    ) + &format!(
        r#"
[spawner]
namespace = "default"
image = "{IMAGE}"
cpu_guarantee = 0.5
[spawner.storage]
capacity = "1Gi"
[spawner.storage.policy]
type = "per-user"
[[spawner.profile_list]]
display_name = "Python"
slug = "python"
description = "jupyterhub-singleuser with ipykernel"
default = true
[[spawner.profile_list]]
display_name = "Notebooks VO, more CPU"
slug = "vo-lab"
description = "only for members of {VO}"
vo_claims = ["{VO}"]
[spawner.profile_list.kubespawner_override]
cpu_guarantee = 1.0
"#,
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log_level))
        .with_writer(std::io::stderr)
        .init();
    let tools = Tools::find()?;
    let listen = format!("127.0.0.1:{}", args.port);
    let url = format!("http://{listen}/");
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("port {} is taken: use --port", args.port))?;

    let callback = format!("{url}hub/oauth_callback");
    let ttl = Duration::from_secs(args.access_ttl.max(10));
    let provider = tokio::task::spawn_blocking(move || {
        OidcProvider::start_with_redirects(
            oidc::Options {
                rotate: true,
                access_ttl: ttl,
            },
            &[callback],
        )
    })
    .await??;
    let sim = KubeSim::start(SimOptions {
        process_images: vec![tools.singleuser_pods("minimal-notebook")],
        ..SimOptions::default()
    })
    .await?;
    let addr = sim.addr();
    let prometheus = tokio::task::spawn_blocking(move || {
        Prometheus::scraping(&[ScrapeTarget::new("kubesim", addr, Duration::from_secs(5))])
    })
    .await??;

    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("gateway.toml");
    std::fs::write(
        &config_path,
        config_text(&listen, &provider.issuer(), &dir.path().join("state.json")),
    )?;
    let service_token = format!("{:032x}", fastrand::u128(..));
    let config = GatewayConfig::load(&config_path, |k| match k {
        "GATEWAY_CLIENT_SECRET" => Some(oidc::CLIENT_SECRET.to_owned()),
        SERVICE_TOKEN_VARIABLE => Some(service_token.clone()),
        _ => None,
    })?;
    let checkin = CheckinClient::builder(oidc::CLIENT_ID)
        .secret(oidc::CLIENT_SECRET.to_owned().into())
        .redirect_uri(format!("{url}hub/oauth_callback"))
        .discover(&provider.issuer())
        .await?;
    let client = egi_spawner::kube::client(kube::Config::new(sim.url().parse()?))?;
    let cluster = KubeCluster::new(client, config.spawner.clone(), RuntimeOptions::default())?;
    let registry = TokenRegistry::new(
        checkin.clone(),
        Arc::new(MemoryStore::new()),
        RegistryOptions::default(),
    );
    let gateway = Gateway::new(
        config,
        checkin,
        cluster,
        SealKey::generate(),
        Tokens::new(registry),
    );
    println!(
        "\nThe whole service runs on loopback:\n\
         \n  open {url} and log in with any name (the test Check-in asks for one);\n\
         \x20 'outsider' is in no VO and is refused, everyone else is in {VO}.\n\
         \n  Start a server: a real jupyterhub-singleuser starts as a kubesim pod on its own\n\
         \x20 127.244.x.y address; open it to reach JupyterLab's API and files through the gateway.\n\
         \x20 Your tokens are refreshed every ~{} s and written into the server's Secret.\n\
         \n  The hub API for tools (egi-monitoring's probe, curl): {url}hub/api with\n\
         \x20 Authorization: token {service_token}\n\
         \x20 Prometheus: {}   kubesim: {}\n\
         \nCtrl-C stops everything and prints the APEL records of the session.\n",
        ttl.as_secs() / 2,
        prometheus.url(),
        sim.url(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(routes::serve(gateway.clone(), listener, async move {
        let _ = rx.await;
    }));
    tokio::signal::ctrl_c().await?;
    println!("\nstopping servers ...");
    for user in gateway.servers.users() {
        for name in user.servers.keys() {
            let _ = gateway.servers.stop(&user.user.name, name).await;
        }
    }
    let _ = tx.send(());
    let _ = served.await;
    // Let Prometheus scrape the last figures, then account as the cron job would.
    tokio::time::sleep(Duration::from_secs(6)).await;
    print_records(&prometheus).await;
    drop(gateway);
    sim.shutdown().await;
    drop(provider);
    Ok(())
}

async fn print_records(prometheus: &Prometheus) {
    let run = async {
        let vo = format!("[VO]\n{VO} = urn:mace:egi.eu:group:{VO}:role=member#aai.egi.eu, {VO}\n");
        let records = Config::from_ini_str(&vo, |_| None)?.records;
        let source = PrometheusSource::new(PrometheusConfig::new(prometheus.url().parse()?))?;
        let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
        let window = Window {
            // Ahead of now by the tool's 90 s rule, so the stopped sessions are `completed`.
            at: Timestamp::from_millis((now + 120) * 1000),
            range: LookBack::parse("6h")?,
            filter: Filter::default(),
        };
        let mut sink = WriterSink::new(std::io::stdout().lock(), "standard output");
        let report =
            egi_accounting::job::run(&source, &window, &records, Limits::default(), &mut sink)
                .await?;
        anyhow::Ok(report)
    };
    match run.await {
        Ok(report) => println!("\n({} records for {} pods)", report.records, report.pods),
        Err(error) => eprintln!("accounting failed: {error:#}"),
    }
}
