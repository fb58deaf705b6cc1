//! Fidelity tests of the Kubernetes API simulator (`egi_test_harness::kubesim`): the
//! protocol from Rust over plain HTTP, then real clients (kubectl from Debian's
//! kubernetes-client, the Python `kubernetes` package) against it.

mod deploy;
mod helpers;
mod kubectl;
mod kubelet;
mod lags;
mod processes;
mod protocol;
mod python;
mod scale;
