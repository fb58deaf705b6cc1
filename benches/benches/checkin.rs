#![allow(missing_docs)] // criterion_group! generates an undocumented public function
//! Cached-token reads of `egi_checkin::TokenManager` under contention: 1 and 8 reader
//! threads asking for the identity's fresh token at once (the hub's hot path). Goal: under
//! 1 µs median per read with 8 readers.
//!
//! The manager holds a real login from the test provider (npm oidc-provider, started by the
//! harness; `.ci/install-peers` installs it).
//!
//! `cargo bench -p egi-benches --bench checkin`

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use egi_checkin::{CheckinClient, ManagerOptions, MemoryStore, TokenManager};
use egi_test_harness::oidc::{self, OidcProvider, Options};

fn manager(runtime: &tokio::runtime::Runtime, provider: &OidcProvider) -> TokenManager {
    runtime.block_on(async {
        let client = CheckinClient::builder(oidc::CLIENT_ID)
            .secret(oidc::CLIENT_SECRET.into())
            .discover(&provider.issuer())
            .await
            .expect("discovery");
        let device = client
            .start_device_login()
            .await
            .expect("device authorization");
        provider
            .approve_device(&device.user_code, "bench")
            .expect("approve");
        let login = client
            .finish_device_login(&device, |_| std::future::ready(()))
            .await
            .expect("login");
        TokenManager::new(
            client,
            Arc::new(MemoryStore::new()),
            "bench",
            login.tokens,
            ManagerOptions::default(),
        )
        .await
        .expect("manager")
    })
}

/// `readers` threads each read `iters` times, all at once; the time per read is the wall
/// time over `iters` (each thread's reads overlap the others').
fn contended(manager: &TokenManager, readers: usize, iters: u64) -> Duration {
    let start = Arc::new(Barrier::new(readers + 1));
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let (m, start) = (manager.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                let t0 = Instant::now();
                for _ in 0..iters {
                    black_box(m.cached().expect("fresh token"));
                }
                t0.elapsed()
            })
        })
        .collect();
    start.wait();
    threads
        .into_iter()
        .map(|t| t.join().expect("reader"))
        .max()
        .unwrap_or_default()
}

fn cached_reads(c: &mut Criterion) {
    let provider = OidcProvider::start(Options {
        rotate: true,
        access_ttl: Duration::from_secs(3600),
    })
    .expect("oidc-provider starts (run .ci/install-peers)");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let manager = manager(&runtime, &provider);
    let mut group = c.benchmark_group("checkin_cached_token");
    for readers in [1usize, 8] {
        group.bench_with_input(
            BenchmarkId::new("readers", readers),
            &readers,
            |b, &readers| {
                b.iter_custom(|iters| contended(&manager, readers, iters));
            },
        );
    }
    group.finish();
    // The async entry point's fast path, for comparison (one reader, no runtime needed:
    // a fresh token completes the future on its first poll).
    c.bench_function("checkin_access_token_fast_path", |b| {
        b.iter(|| {
            use futures_util::FutureExt;
            black_box(
                manager
                    .access_token()
                    .now_or_never()
                    .expect("ready")
                    .expect("token"),
            )
        });
    });
}

criterion_group!(benches, cached_reads);
criterion_main!(benches);
