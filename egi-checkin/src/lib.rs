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
//! - [`login`]: authorization code with PKCE S256, state and nonce
//!   ([`CheckinClient::login`], [`CheckinClient::complete_login`]); the device flow
//!   ([`CheckinClient::start_device_login`], [`CheckinClient::finish_device_login`]).
//! - [`claims`]: [`UserInfo`] with both entitlement claims merged, [`UsernamePolicy`],
//!   [`VoPolicy`] (allowed VOs and the primary group); [`entitlement`]: the AARC-G002 parser.
//! - [`manager`]: [`TokenManager`], single-flight refresh persisted through a
//!   [`TokenStore`] ([`MemoryStore`], [`EncryptedFileStore`]) before tokens are handed out.
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
pub use store::{MemoryStore, StoreLock, TokenStore};
pub use token::TokenSet;
