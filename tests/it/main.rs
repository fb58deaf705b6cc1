//! Integration tests of the `egi-*` crates against real peers, as one test binary.
//!
//! Each test starts the peers it needs (fresh temporary directory, free loopback port) and
//! stops them when done. Peers must be on `PATH`: `.ci/install-peers` installs them.

mod accounting_cli;
mod accounting_eosc;
mod accounting_job;
mod accounting_notebooks_db;
mod accounting_pinned_tls;
mod accounting_resets;
mod accounting_tls;
mod apel_send;
mod apel_send_faults;
mod apel_send_support;
mod checkin_concurrency;
mod checkin_faults;
mod checkin_flows;
mod checkin_fresh;
mod checkin_interop;
mod checkin_processes;
mod checkin_refresh;
mod checkin_support;
mod end_to_end;
mod helpers;
mod monitoring;
mod monitoring_examples;
mod monitoring_faults;
mod monitoring_field;
mod monitoring_notebooks;
mod prometheus_peer;
mod sample_data;
mod sources_agree;
