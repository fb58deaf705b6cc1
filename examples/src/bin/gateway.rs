//! `gateway`: a notebook gateway built only from the crates' public APIs (see
//! `egi_examples::gateway`): Check-in login with VO gating, servers on Kubernetes with the
//! user's tokens kept fresh, a reverse proxy to them, and JupyterHub's REST API subset so
//! `monitor` and `probe` run against it unchanged.
//!
//! ```sh
//! GATEWAY_CLIENT_SECRET=... GATEWAY_COOKIE_KEY=$(head -c32 /dev/urandom | base64) \
//!   cargo run -p egi-examples --bin gateway -- --config gateway.toml
//! ```
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM, Ctrl-C), 2 usage, 69 Check-in or the
//! cluster unreachable at start, 78 bad configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use egi_checkin::{
    CheckinClient, EncryptedFileStore, FileStoreKey, MemoryStore, RegistryOptions, SealKey,
    TokenRegistry, TokenStore,
};
use egi_examples::gateway::config::GatewayConfig;
use egi_examples::gateway::servers::with_sources;
use egi_examples::gateway::tokens::Tokens;
use egi_examples::gateway::{Gateway, routes};
use egi_spawner::kube::{KubeCluster, RuntimeOptions};

#[derive(Parser)]
#[command(
    version,
    about = "A notebook gateway: Check-in login, Kubernetes servers, proxy, hub API"
)]
struct Args {
    /// The configuration file (TOML).
    #[arg(long, env = "GATEWAY_CONFIG")]
    config: PathBuf,

    /// Overrides `listen` of the configuration.
    #[arg(long, env = "GATEWAY_LISTEN")]
    listen: Option<std::net::SocketAddr>,

    /// The key sealing cookies and pending logins (32 bytes, base64). Replicas share it;
    /// without it a random key is made and sessions end at restart.
    #[arg(long, env = "GATEWAY_COOKIE_KEY", hide_env_values = true)]
    cookie_key: Option<String>,

    /// Directory of the encrypted token store (users' Check-in tokens survive restarts);
    /// without it tokens are kept in memory only.
    #[arg(long, env = "GATEWAY_TOKEN_DIR")]
    token_dir: Option<PathBuf>,

    /// The key file of the token store (created if missing).
    #[arg(long, env = "GATEWAY_TOKEN_KEY_FILE")]
    token_key_file: Option<PathBuf>,

    /// Users whose tokens are kept in memory at once (others are reloaded from the store).
    #[arg(long, env = "GATEWAY_MAX_USERS", default_value_t = 10_000)]
    max_users: usize,

    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, env = "GATEWAY_LOG", default_value = "info")]
    log_level: String,
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
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(message)) => {
            tracing::error!("{message}");
            eprintln!("gateway: {message}");
            ExitCode::from(78)
        }
        Err(Failure::Unavailable(message)) => {
            tracing::error!("{message}");
            eprintln!("gateway: {message}");
            ExitCode::from(69)
        }
    }
}

enum Failure {
    Config(String),
    Unavailable(String),
}

async fn run(args: Args) -> Result<(), Failure> {
    let mut config = GatewayConfig::load(&args.config, |k| std::env::var(k).ok())
        .map_err(|e| Failure::Config(with_sources(&e)))?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let key = match &args.cookie_key {
        Some(encoded) => SealKey::from_base64(encoded)
            .map_err(|e| Failure::Config(format!("GATEWAY_COOKIE_KEY: {}", with_sources(&e))))?,
        None => {
            tracing::warn!("no cookie key given: sessions and pending logins end at restart");
            SealKey::generate()
        }
    };
    let store: Arc<dyn TokenStore> = match &args.token_dir {
        Some(dir) => {
            let key_file = args
                .token_key_file
                .clone()
                .unwrap_or_else(|| dir.join("key"));
            let file_key = FileStoreKey::load_or_create(&key_file)
                .map_err(|e| Failure::Config(format!("token key: {}", with_sources(&e))))?;
            Arc::new(
                EncryptedFileStore::new(dir, &file_key)
                    .map_err(|e| Failure::Config(format!("token store: {}", with_sources(&e))))?,
            )
        }
        None => Arc::new(MemoryStore::new()),
    };
    let mut builder = CheckinClient::builder(config.checkin.client_id.clone())
        .redirect_uri(format!("{}hub/oauth_callback", config.public_url));
    if let Some(secret) = &config.checkin.client_secret {
        builder = builder.secret(secret.clone());
    }
    if !config.checkin.scopes.is_empty() {
        builder = builder.scopes(config.checkin.scopes.clone());
    }
    let checkin = builder
        .discover(&config.checkin.issuer)
        .await
        .map_err(|e| {
            Failure::Unavailable(format!(
                "Check-in discovery at {}: {}",
                config.checkin.issuer,
                with_sources(&e)
            ))
        })?;
    let cluster = KubeCluster::infer(config.spawner.clone(), RuntimeOptions::default())
        .await
        .map_err(|e| Failure::Unavailable(format!("Kubernetes: {}", with_sources(&e))))?;
    let registry = TokenRegistry::new(
        checkin.clone(),
        store,
        RegistryOptions::default().max_users(args.max_users),
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Failure::Unavailable(format!("listen on {}: {e}", config.listen)))?;
    let gateway = Gateway::new(config, checkin, cluster, key, Tokens::new(registry));
    let adopted = gateway
        .servers
        .adopt()
        .await
        .map_err(|e| Failure::Config(format!("state file: {e}")))?;
    for user in gateway.servers.users() {
        for server in user.servers.values() {
            if let Some(updates) = gateway.tokens.updates(&user.user.name).await {
                server.follow(updates, gateway.metrics.clone(), None);
            }
        }
    }
    tracing::info!(
        listen = %gateway.config.listen,
        public_url = %gateway.config.public_url,
        adopted,
        "gateway ready"
    );
    routes::serve(gateway, listener, shutdown())
        .await
        .map_err(|e| Failure::Unavailable(format!("serving: {e}")))
}

async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down; servers keep running and are adopted at the next start");
}
