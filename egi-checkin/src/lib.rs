//! # egi-checkin
//!
//! EGI Check-in (OpenID Connect) for the notebooks platform: login flows, ID-token
//! validation, the EGI claims (VOs from AARC-G002 entitlements), and a [`TokenManager`] that
//! keeps one identity's access token valid under concurrency, refresh-token rotation and
//! provider failures. Built on `openidconnect` (discovery types, JWKS and ID-token
//! verification, PKCE, nonces) with `reqwest`; requests are built and answers parsed by pure
//! functions, and the HTTP client never follows redirects (a redirected token request could
//! hand credentials to another host). TLS certificates are always verified.
//!
//! ## Contents
//!
//! - [`CheckinClient`]: discovery ([`Instance`] presets for production, demo and
//!   development), refresh, client credentials, userinfo, token exchange (RFC 8693),
//!   introspection (RFC 7662), revocation (RFC 7009).
//! - [`ServiceAccount`]: the client credentials grant at a token URL, without discovery
//!   (a batch job calling an API as itself).
//! - [`login`]: authorization code with PKCE S256, state and nonce
//!   ([`CheckinClient::login`], [`CheckinClient::complete_login`]); the device flow
//!   ([`CheckinClient::start_device_login`], [`CheckinClient::finish_device_login`]).
//! - [`claims`]: [`UserInfo`] with both entitlement claims merged, [`UsernamePolicy`],
//!   [`VoPolicy`] (allowed VOs and the primary group); [`entitlement`]: the AARC-G002 parser.
//! - [`manager`]: [`TokenManager`], single-flight refresh persisted through a
//!   [`TokenStore`] ([`MemoryStore`], [`EncryptedFileStore`]) before tokens are handed out.
//! - [`fresh`]: [`TokenManager::keep_fresh`], a background task that refreshes inside the
//!   refresh margin (spread by identity key), backs off on failure and reports
//!   [`Freshness`] through a [`KeepFresh`] handle (dropping it stops the task).
//! - [`registry`]: [`TokenRegistry`], many users' managers for a gateway: one per identity
//!   key, kept fresh, bounded by [`RegistryOptions::max_users`] (least recently used dropped,
//!   resumed from the store), logout.
//! - [`seal`]: [`SealKey`], values sealed (XChaCha20-Poly1305) for a purpose and a time to
//!   live in cookie-safe text, and [`PendingLogin::seal`] / [`PendingLogin::unseal`], so
//!   that any replica of a gateway completes a login another replica started.
//! - [`Error`]: [`Error::needs_login`] (the grant is gone) versus [`Error::is_transient`].
//!
//! Token values never appear in `Debug` output, error messages or tracing events.
//!
//! ## Example: device login, then a token kept fresh
//!
//! ```no_run
//! use std::sync::Arc;
//! use egi_checkin::{CheckinClient, Instance, ManagerOptions, MemoryStore, TokenManager, VoPolicy};
//! use secrecy::ExposeSecret;
//!
//! # async fn run() -> egi_checkin::Result<()> {
//! let client = CheckinClient::builder("my-client-id")
//!     .discover(Instance::Production.issuer())
//!     .await?;
//! let device = client.start_device_login().await?;
//! println!("open {} and enter {}", device.verification_uri, device.user_code);
//! let login = client.finish_device_login(&device, tokio::time::sleep).await?;
//!
//! let user = client
//!     .user_info(login.tokens.access_token(), Some(&login.id_token.subject))
//!     .await?;
//! let membership = VoPolicy::allow(["vo.notebooks.egi.eu"]).admit(&user)?;
//! println!("primary group {:?}", membership.primary_group);
//!
//! let store = Arc::new(MemoryStore::new());
//! let manager = TokenManager::new(client, store, user.sub.clone(), login.tokens, ManagerOptions::default()).await?;
//! let token = manager.access_token().await?; // refreshed when needed, once for all callers
//! let _bearer = token.access_token().expose_secret();
//! # Ok(())
//! # }
//! ```
//!
//! ## Example: a gateway's users, kept fresh, with the login state in a cookie
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use egi_checkin::{
//!     CheckinClient, Freshness, Instance, MemoryStore, PendingLogin, RegistryOptions, SealKey,
//!     TokenRegistry,
//! };
//! use secrecy::ExposeSecret;
//!
//! # async fn run(callback: url::Url) -> egi_checkin::Result<()> {
//! let client = CheckinClient::builder("my-client-id")
//!     .redirect_uri("https://notebooks.example.org/oauth_callback")
//!     .discover(Instance::Production.issuer())
//!     .await?;
//! // The same key on every replica (read from a secret, `SealKey::from_base64`).
//! let seal_key = SealKey::generate();
//! let registry = TokenRegistry::new(
//!     client.clone(),
//!     Arc::new(MemoryStore::new()),
//!     RegistryOptions::default().max_users(5_000),
//! );
//!
//! // GET /login: redirect to `url`, the pending login in a short-lived cookie.
//! let (url, pending) = client.login().build()?;
//! let cookie = pending.seal(&seal_key, Duration::from_secs(600));
//! # let _ = url;
//!
//! // GET /oauth_callback (on any replica): complete the login, then keep it fresh.
//! let pending = PendingLogin::unseal(&seal_key, &cookie)?;
//! let login = client.complete_login(pending, &callback).await?;
//! let key = login.id_token.subject.clone();
//! registry.login(&key, login.tokens).await?;
//!
//! // Any request: the user's token, refreshed in the background before it is needed.
//! match registry.get(&key).await? {
//!     Some(manager) => {
//!         let token = manager.access_token().await?;
//!         let _bearer = token.access_token().expose_secret();
//!     }
//!     None => { /* no login stored, or the grant is gone: redirect to /login */ }
//! }
//! if let Some(Freshness::Retrying { attempt, error, .. }) = registry.freshness(&key) {
//!     eprintln!("refresh failing ({attempt} attempts): {error}");
//! }
//! registry.logout(&key).await?;
//! # Ok(())
//! # }
//! ```

pub mod claims;
mod client;
pub mod entitlement;
mod error;
pub mod file_store;
pub mod fresh;
mod grants;
mod http;
mod id_token;
pub mod login;
pub mod manager;
mod provider;
pub mod registry;
pub mod seal;
mod service;
pub mod store;
#[cfg(test)]
mod test_provider;
mod token;

pub use claims::{Membership, UserInfo, UsernameClaim, UsernamePolicy, VoPolicy};
pub use client::{AuthMethod, CheckinClient, ClientBuilder, Exchanged, Introspection};
pub use entitlement::Entitlement;
pub use error::{Endpoint, Error, Result};
pub use file_store::{EncryptedFileStore, FileStoreKey};
pub use fresh::{Freshness, KeepFresh, KeepFreshOptions};
pub use grants::{ExchangeRequest, TokenType};
pub use http::{HttpOptions, USER_AGENT};
pub use id_token::IdTokenInfo;
pub use login::{DeviceAuthorization, Login, LoginBuilder, PendingLogin};
pub use manager::{ManagerOptions, RefreshMargin, RetryPolicy, Token, TokenManager};
pub use openidconnect::Nonce;
pub use provider::{CheckinProviderMetadata, Endpoints, ExtraMetadata, Instance, parse_issuer};
pub use registry::{RegistryOptions, TokenRegistry};
pub use seal::{SealError, SealKey};
pub use secrecy::{ExposeSecret, SecretString};
pub use service::ServiceAccount;
pub use store::{MemoryStore, StoreLock, TokenStore};
pub use token::TokenSet;
