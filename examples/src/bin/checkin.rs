//! `checkin`: logs in to EGI Check-in with the device flow, prints who you are and your VOs,
//! then keeps the access token fresh and shows each refresh (never the token itself).
//!
//! ```text
//! cargo run -p egi-examples --bin checkin -- --client-id my-client [--client-secret ...] \
//!     [--issuer https://aai-demo.egi.eu/auth/realms/egi] [--store ~/.cache/egi-checkin]
//! ```
//!
//! With `--store DIR` the tokens are kept encrypted in DIR (the key in DIR/key), and a later
//! run resumes without logging in again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::Parser;
use egi_checkin::{
    CheckinClient, EncryptedFileStore, FileStoreKey, Instance, ManagerOptions, MemoryStore, Token,
    TokenManager, TokenStore, UsernamePolicy, VoPolicy,
};

/// Device-flow login to EGI Check-in, then a token kept fresh.
#[derive(Debug, Parser)]
struct Args {
    /// The issuer (Check-in production by default; demo and dev are at aai-demo.egi.eu and
    /// aai-dev.egi.eu, same path).
    #[arg(long, env = "CHECKIN_ISSUER", default_value = Instance::Production.issuer())]
    issuer: String,
    /// The registered client id.
    #[arg(long, env = "CHECKIN_CLIENT_ID")]
    client_id: String,
    /// The client secret, for a confidential client.
    #[arg(long, env = "CHECKIN_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Keep tokens encrypted in this directory and resume from it.
    #[arg(long)]
    store: Option<PathBuf>,
    /// VOs allowed in (all VOs are listed either way).
    #[arg(long = "allowed-vo", default_value = "vo.notebooks.egi.eu")]
    allowed_vos: Vec<String>,
    /// Stop after this many refreshes (default: run until interrupted).
    #[arg(long)]
    refreshes: Option<u64>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut builder = CheckinClient::builder(&args.client_id);
    if let Some(secret) = &args.client_secret {
        builder = builder.secret(secret.clone().into());
    }
    let client = builder
        .discover(&args.issuer)
        .await
        .with_context(|| format!("discovering {}", args.issuer))?;
    let store: Arc<dyn TokenStore> = match &args.store {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let key = FileStoreKey::load_or_create(&dir.join("key"))?;
            Arc::new(EncryptedFileStore::new(dir.join("tokens"), &key)?)
        }
        None => Arc::new(MemoryStore::new()),
    };
    let identity = format!("{}@{}", args.client_id, args.issuer);
    let manager = match TokenManager::resume(
        client.clone(),
        Arc::clone(&store),
        &identity,
        ManagerOptions::default(),
    )
    .await
    {
        Ok(manager) => {
            println!("resumed the stored login");
            manager
        }
        Err(e) if e.needs_login() => {
            let device = client
                .start_device_login()
                .await
                .context("starting the device login")?;
            match &device.verification_uri_complete {
                Some(uri) => println!("open {uri}"),
                None => println!(
                    "open {} and enter the code {}",
                    device.verification_uri, device.user_code
                ),
            }
            let login = client
                .finish_device_login(&device, tokio::time::sleep)
                .await
                .context("device login")?;
            println!("logged in: sub {}", login.id_token.subject);
            TokenManager::new(
                client.clone(),
                store,
                &identity,
                login.tokens,
                ManagerOptions::default(),
            )
            .await?
        }
        Err(e) => return Err(e).context("reading the stored login"),
    };

    let token = manager.access_token().await?;
    let user = client
        .user_info(token.access_token(), token.tokens().subject())
        .await?;
    println!("username: {}", UsernamePolicy::default().username(&user)?);
    println!(
        "preferred_username: {}",
        user.preferred_username.as_deref().unwrap_or("-")
    );
    println!("email: {}", user.email.as_deref().unwrap_or("-"));
    println!(
        "VOs: {}",
        user.vos("urn:mace:egi.eu", "aai.egi.eu").join(", ")
    );
    for group in user.groups() {
        println!(
            "  {} (role {})",
            group.group_path(),
            group.role().unwrap_or("-")
        );
    }
    match VoPolicy::allow(args.allowed_vos.iter().cloned()).admit(&user) {
        Ok(m) => println!(
            "admitted; primary group {}",
            m.primary_group.unwrap_or_default()
        ),
        Err(e) => println!("not admitted: {e}"),
    }
    show(&token);

    // The manager refreshes on demand: ask again whenever the token leaves its fresh window.
    let mut updates = manager.subscribe();
    let mut seen = 0;
    while args.refreshes.is_none_or(|n| seen < n) {
        let current = manager.current().context("no token")?;
        let wait = refresh_wait(&current);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                if let Err(e) = manager.access_token().await {
                    if e.needs_login() {
                        return Err(e).context("the login is gone; run again to log in");
                    }
                    eprintln!("refresh failed, will retry: {e}");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
            changed = updates.changed() => {
                changed.context("manager gone")?;
                if let Some(token) = updates.borrow_and_update().clone() {
                    seen += 1;
                    print!("refresh {seen}: ");
                    show(&token);
                }
            }
        }
    }
    Ok(())
}

/// How long until the token needs a refresh (at most a minute).
fn refresh_wait(token: &Token) -> Duration {
    token
        .refresh_at()
        .and_then(|at| at.duration_since(SystemTime::now()).ok())
        .unwrap_or_default()
        .min(Duration::from_secs(60))
        + Duration::from_millis(10)
}

fn show(token: &Token) {
    let left = token
        .expires_at()
        .and_then(|at| at.duration_since(SystemTime::now()).ok())
        .map_or_else(|| "unknown".to_owned(), |d| format!("{}s", d.as_secs()));
    println!("token generation {}, expires in {left}", token.generation());
}
