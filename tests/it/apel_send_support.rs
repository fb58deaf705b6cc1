//! What the APEL sender tests share: a spool filled by the accounting job's own writer, the
//! `sender.cfg` an operator would have, and python-dirq's view of the spool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use egi_accounting::send::config::SenderConfig;
use egi_accounting::send::stomp::Timeouts;
use egi_accounting::send::{Backoff, Options};
use egi_accounting::spool::DirqSpool;
use egi_test_harness::rabbitmq::HostCredentials;
use tempfile::TempDir;

/// A spool and what was put in it: element id -> body.
pub(crate) struct Spool {
    pub(crate) dir: TempDir,
    pub(crate) bodies: BTreeMap<String, Vec<u8>>,
}

impl Spool {
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The elements on disk now (python-dirq's pattern), and the lock files.
    pub(crate) fn on_disk(&self) -> (Vec<String>, Vec<String>) {
        let mut elements = Vec::new();
        let mut locks = Vec::new();
        for d in std::fs::read_dir(self.path()).unwrap() {
            let d = d.unwrap();
            if !d.path().is_dir() {
                continue;
            }
            let dir = d.file_name().into_string().unwrap();
            for e in std::fs::read_dir(d.path()).unwrap() {
                let name = e.unwrap().file_name().into_string().unwrap();
                match name.strip_suffix(".lck") {
                    Some(n) => locks.push(format!("{dir}/{n}")),
                    None if name.len() == 14 => elements.push(format!("{dir}/{name}")),
                    None => {}
                }
            }
        }
        elements.sort();
        locks.sort();
        (elements, locks)
    }

    /// Adds a raw element (such as a corrupt one) with the real writer.
    pub(crate) fn add_raw(&mut self, body: &[u8]) -> String {
        let name = DirqSpool::open(self.path())
            .unwrap()
            .add(body)
            .unwrap()
            .as_str()
            .to_owned();
        self.bodies.insert(name.clone(), body.to_vec());
        name
    }
}

/// One APEL message of `records` records, as the accounting job writes them.
pub(crate) fn apel_message(tag: usize, records: usize) -> String {
    let mut m = String::from("APEL-cloud-message: v0.4\n");
    for r in 0..records {
        if r > 0 {
            m.push_str("%%\n");
        }
        m.push_str(&format!(
            "VMUUID: {tag:04}-{r:03}-6f1d2c3b-0000-4000-8000-00000000abcd\n\
             SiteName: EGI-NOTEBOOKS\nCloudComputeService: notebooks\n\
             MachineName: jupyter-user-{r}\nLocalUserId: user{r}\nFQAN: vo.notebooks.egi.eu\n\
             Status: completed\nStartTime: 1764547200\nEndTime: 1764550800\n\
             WallDuration: 3600\nCpuDuration: 1200\nCpuCount: 1\nMemory: 2048\n\
             ImageId: jupyter/scipy-notebook\nCloudType: EGI Notebooks\n"
        ));
    }
    m
}

/// A spool with `messages` messages of `records` records each.
pub(crate) fn spool_with(messages: usize, records: usize) -> Spool {
    let dir = tempfile::Builder::new()
        .prefix("egi-spool-")
        .tempdir()
        .unwrap();
    let mut spool = Spool {
        dir,
        bodies: BTreeMap::new(),
    };
    for i in 0..messages {
        spool.add_raw(apel_message(i, records).as_bytes());
    }
    spool
}

/// The `sender.cfg` of SSM's STOMP mode for a local broker.
pub(crate) fn stomp_cfg(
    port: u16,
    destination: &str,
    spool: &Path,
    creds: &HostCredentials,
) -> String {
    format!(
        "[sender]\nprotocol: STOMP\n\n[broker]\nhost: localhost\nport: {port}\nuse_ssl: false\n\n\
         [certificates]\ncertificate: {}\nkey: {}\ncapath: /etc/grid-security/certificates\n\n\
         [messaging]\ndestination: {destination}\npath: {}\npath_type: dirq\n\n\
         [logging]\nlogfile: /var/log/apel/ssmsend.log\nlevel: INFO\nconsole: true\n",
        creds.certificate.display(),
        creds.key.display(),
        spool.display(),
    )
}

/// The `sender.cfg` of SSM's AMS mode for a loopback AMS (`host` as a URL).
pub(crate) fn ams_cfg(
    url: &str,
    port: u16,
    token: Option<&str>,
    topic: &str,
    spool: &Path,
    creds: &HostCredentials,
) -> String {
    let token = token.map(|t| format!("token: {t}\n")).unwrap_or_default();
    format!(
        "[sender]\nprotocol: AMS\n\n[broker]\nhost: {url}\nauthn_port: {port}\nport: 443\nuse_ssl: true\n\n\
         [certificates]\ncertificate: {}\nkey: {}\n\n\
         [messaging]\nams_project: accounting\ndestination: {topic}\n{token}path: {}\n",
        creds.certificate.display(),
        creds.key.display(),
        spool.display(),
    )
}

pub(crate) fn config(text: &str) -> SenderConfig {
    SenderConfig::from_ini_str(text).expect("sender.cfg parses")
}

/// Options for tests: quick retries, short receipt wait.
pub(crate) fn quick(attempts: u32) -> Options {
    Options::default()
        .backoff(Backoff {
            attempts,
            first: Duration::from_millis(20),
            max: Duration::from_millis(100),
        })
        .stomp_timeouts(Timeouts {
            connect: Duration::from_secs(10),
            receipt: Duration::from_secs(2),
        })
}

/// Runs python-dirq (the library SSM reads the spool with) on the spool.
pub(crate) fn python_dirq(spool: &Path, code: &str) -> String {
    let script = format!(
        "import sys\nfrom dirq.QueueSimple import QueueSimple\nq = QueueSimple(sys.argv[1])\n{code}"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .arg(spool)
        .output()
        .expect("python3 runs (.ci/install-peers installs dirq)");
    assert!(
        out.status.success(),
        "python-dirq: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A path under a directory that does not exist.
pub(crate) fn nowhere() -> PathBuf {
    PathBuf::from("/nonexistent/egi-send-test")
}
