//! The `gateway` example against real peers: the npm oidc-provider (Check-in shaped) for
//! login, kubesim for spawning, egi-monitoring's own client and probes for the REST API.

mod api;
mod binary;
mod login;
mod servers;
mod support;
