//! Two OS processes share one [`EncryptedFileStore`] file under refresh-token rotation: when
//! both need a new token at once, exactly one refresh reaches the provider and both get its
//! result (the other process adopts it from the store under the file lock).
//!
//! The processes are this test binary run again on [`refresher_child`], which does nothing
//! unless started that way (it is `#[ignore]`d and checks its environment).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use egi_checkin::{
    CheckinClient, EncryptedFileStore, ExposeSecret, FileStoreKey, TokenManager, TokenStore,
};
use egi_test_harness::oidc::{self, REFRESH_GRANT};

use crate::checkin_support::{client, device_login, http, options, provider};

const CHILD: &str = "checkin_processes::refresher_child";
const ENV_ISSUER: &str = "EGI_TEST_CHILD_ISSUER";
const ENV_DIR: &str = "EGI_TEST_CHILD_DIR";
const ENV_START: &str = "EGI_TEST_CHILD_START_MS";
const ENV_OUT: &str = "EGI_TEST_CHILD_OUT";
const IDENTITY: &str = "sam";

fn store(dir: &Path) -> Arc<EncryptedFileStore> {
    let key = FileStoreKey::load_or_create(&dir.join("key")).expect("key");
    Arc::new(EncryptedFileStore::new(dir.join("tokens"), &key).expect("store"))
}

fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(
        t.duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("ms")
}

/// One process: resumes the stored login, waits for the common start, asks for a token and
/// writes it to its output file.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a child process of two_processes_share_one_store_and_refresh_once"]
async fn refresher_child() {
    let (Ok(issuer), Ok(dir), Ok(start), Ok(out)) = (
        std::env::var(ENV_ISSUER),
        std::env::var(ENV_DIR),
        std::env::var(ENV_START),
        std::env::var(ENV_OUT),
    ) else {
        return;
    };
    let c = CheckinClient::builder(oidc::CLIENT_ID)
        .secret(oidc::CLIENT_SECRET.into())
        .leeway(Duration::ZERO)
        .http(http(Duration::from_secs(10)))
        .discover(&issuer)
        .await
        .expect("discovery");
    let m = TokenManager::resume(c, store(Path::new(&dir)), IDENTITY, options())
        .await
        .expect("resume the stored login");
    let start = UNIX_EPOCH + Duration::from_millis(start.parse().expect("start ms"));
    if let Ok(wait) = start.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let token = m.access_token().await.expect("a fresh token");
    std::fs::write(out, token.access_token().expose_secret()).expect("write the result");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_share_one_store_and_refresh_once() {
    let p = provider(true, 2);
    let c = client(&p).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let login = device_login(&p, &c, IDENTITY).await;
    // Stored as a login would store it, then left to expire.
    TokenManager::new(
        c.clone(),
        store(dir.path()),
        IDENTITY,
        login.tokens,
        options(),
    )
    .await
    .expect("store the login");
    let me = std::env::current_exe().expect("this test binary");
    for round in 0..2_u64 {
        let stored = store(dir.path()).load(IDENTITY).await.expect("load");
        let expires_at = stored.and_then(|t| t.expires_at()).expect("expiry");
        // Both processes start asking once the token has expired.
        let start = SystemTime::now().max(expires_at) + Duration::from_millis(1500);
        let outs: Vec<PathBuf> = (0..2)
            .map(|i| dir.path().join(format!("out-{round}-{i}")))
            .collect();
        let children: Vec<_> = outs
            .iter()
            .map(|out| {
                Command::new(&me)
                    .args([
                        CHILD,
                        "--exact",
                        "--ignored",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(ENV_ISSUER, p.issuer())
                    .env(ENV_DIR, dir.path())
                    .env(ENV_START, unix_ms(start).to_string())
                    .env(ENV_OUT, out)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start a child process")
            })
            .collect();
        let ids: Vec<u32> = children.iter().map(std::process::Child::id).collect();
        assert_ne!(ids[0], ids[1], "two processes");
        for child in children {
            let output = tokio::task::spawn_blocking(move || child.wait_with_output())
                .await
                .expect("join")
                .expect("wait");
            assert!(
                output.status.success(),
                "round {round}: child failed:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let tokens: Vec<String> = outs
            .iter()
            .map(|o| std::fs::read_to_string(o).expect("the child's token"))
            .collect();
        assert_eq!(tokens[0], tokens[1], "round {round}: one token for both");
        assert_eq!(
            p.token_requests(REFRESH_GRANT).expect("counters"),
            round + 1,
            "round {round}: exactly one refresh"
        );
        let stored = store(dir.path())
            .load(IDENTITY)
            .await
            .expect("load")
            .expect("stored");
        assert_eq!(stored.access_token().expose_secret(), tokens[0]);
        assert!(
            c.introspect(stored.access_token(), None)
                .await
                .expect("introspect")
                .active,
            "round {round}: the grant lives on"
        );
    }
}
