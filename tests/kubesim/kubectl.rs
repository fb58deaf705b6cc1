//! kubectl from Debian's kubernetes-client (1.20) against the simulator.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use egi_test_harness::kubesim::KubeSim;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::AsyncReadExt;

use crate::helpers::{peers_dir, sim, until};

struct Kubectl {
    bin: PathBuf,
    dir: TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(sim: &KubeSim) -> Self {
        let bin = peers_dir().join("kubernetes-client/usr/bin/kubectl");
        assert!(
            bin.is_file(),
            "{} is missing: run .ci/install-peers",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        sim.write_kubeconfig(&dir.path().join("kubeconfig"))
            .unwrap();
        Self { bin, dir }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        c.env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .arg("--request-timeout=30s")
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> Out {
        let o = self.command(args).output().await.expect("kubectl runs");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs and asserts success.
    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert_eq!(o.code, 0, "kubectl {args:?}: {}{}", o.stdout, o.stderr);
        o.stdout
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

const MANIFESTS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: nb
  namespace: team
  labels: {app: x}
spec:
  restartPolicy: OnFailure
  containers:
  - name: notebook
    image: quay.io/jupyter/base-notebook:2024
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: claim-nb
  namespace: team
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
---
apiVersion: v1
kind: Secret
metadata:
  name: tokens
  namespace: team
stringData:
  token: abc
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_lists_watches_patches_and_deletes() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let v = k.ok(&["version"]).await;
    assert!(
        v.contains("Server Version") && v.contains("v1.30.0-kubesim"),
        "{v}"
    );

    let ns = k.write(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n",
    );
    assert_eq!(
        k.ok(&["create", "-f", &ns]).await.trim(),
        "namespace/team created"
    );
    let all = k.write("all.yaml", MANIFESTS);
    let out = k.ok(&["create", "--validate=false", "-f", &all]).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "pod/nb created",
            "persistentvolumeclaim/claim-nb created",
            "secret/tokens created"
        ]
    );
    let again = k.run(&["create", "--validate=false", "-f", &all]).await;
    assert_eq!(again.code, 1);
    assert!(
        again
            .stderr
            .contains("Error from server (AlreadyExists): error when creating"),
        "{}",
        again.stderr
    );
    assert!(
        again.stderr.contains("pods \"nb\" already exists"),
        "{}",
        again.stderr
    );

    until(10, "nb Running", async || {
        sim.object("pods", "team", "nb")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    let json: Value =
        serde_json::from_str(&k.ok(&["get", "pods", "-n", "team", "-o", "json"]).await).unwrap();
    assert_eq!(json["items"][0]["metadata"]["name"], "nb");
    assert_eq!(json["items"][0]["status"]["phase"], "Running");
    let table = k.ok(&["get", "pods", "-n", "team"]).await;
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(&lines[1][..4], ["nb", "1/1", "Running", "0"]);
    assert!(
        k.ok(&["get", "pods", "-n", "team", "-l", "app=x", "-o", "name"])
            .await
            .contains("pod/nb")
    );
    let none = k
        .run(&["get", "pods", "-n", "team", "-l", "app=other"])
        .await;
    assert_eq!(none.code, 0);
    assert!(
        none.stderr
            .contains("No resources found in team namespace."),
        "{}",
        none.stderr
    );
    let running = k
        .ok(&[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(running.trim(), "pod/nb");
    let bad = k
        .run(&["get", "pods", "--field-selector", "spec.bogus=1"])
        .await;
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("field label not supported: spec.bogus"),
        "{}",
        bad.stderr
    );
    let pvcs = k.ok(&["get", "pvc", "-n", "team"]).await;
    assert!(
        pvcs.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("claim-nb")
                && l.contains("Bound")
                && l.contains("standard")),
        "{pvcs}"
    );
    assert!(
        k.ok(&[
            "get",
            "secret",
            "tokens",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.token}"
        ])
        .await
            == "YWJj"
    );
    let events = k.ok(&["get", "events", "-n", "team"]).await;
    for reason in ["Scheduled", "Pulling", "Pulled", "Created", "Started"] {
        assert!(events.contains(reason), "{events}");
    }
    let describe = k.ok(&["describe", "pod", "nb", "-n", "team"]).await;
    assert!(
        describe.contains("Successfully assigned team/nb to sim-node"),
        "{describe}"
    );

    // Patches.
    k.ok(&[
        "patch",
        "pod",
        "nb",
        "-n",
        "team",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"a"}}}"#,
    ])
    .await;
    k.ok(&["patch", "pod", "nb", "-n", "team", "--type", "strategic", "-p", r#"{"spec":{"containers":[{"name":"notebook","image":"quay.io/jupyter/base-notebook:2025"}]}}"#]).await;
    let p = sim.object("pods", "team", "nb").unwrap();
    assert_eq!(p["metadata"]["labels"]["tier"], "a");
    assert_eq!(
        p["spec"]["containers"][0]["image"],
        "quay.io/jupyter/base-notebook:2025"
    );
    assert_eq!(p["spec"]["containers"].as_array().unwrap().len(), 1);

    // Client-side apply: create, configure, unchanged.
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: team\n  labels: {v: \"1\"}\nspec:\n  selector: {app: x}\n  ports:\n  - port: 80\n";
    let f = k.write("svc.yaml", svc);
    assert_eq!(
        k.ok(&["apply", "--validate=false", "-f", &f]).await.trim(),
        "service/web created"
    );
    k.write("svc.yaml", &svc.replace("v: \"1\"", "v: \"2\""));
    assert_eq!(
        k.ok(&["apply", "--validate=false", "-f", &f]).await.trim(),
        "service/web configured"
    );
    assert_eq!(
        k.ok(&["apply", "--validate=false", "-f", &f]).await.trim(),
        "service/web unchanged"
    );
    let s = sim.object("svc", "team", "web").unwrap();
    assert_eq!(s["metadata"]["labels"]["v"], "2");
    assert!(
        s["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    assert!(s["spec"]["clusterIP"].is_string());

    // A watch in the background sees a pod come and go.
    let mut watch = k
        .command(&["get", "pods", "-n", "team", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    until(10, "watch open", async || {
        (sim.counters().open_watches_on("pods", "team") > 0).then_some(())
    })
    .await;
    let pod2 = k.write(
        "pod2.yaml",
        &MANIFESTS
            .split("---")
            .next()
            .unwrap()
            .replace("name: nb", "name: watched"),
    );
    k.ok(&["create", "--validate=false", "-f", &pod2]).await;
    until(10, "watched Running", async || {
        sim.object("pods", "team", "watched")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    let started = std::time::Instant::now();
    assert_eq!(
        k.ok(&["delete", "pod", "watched", "-n", "team"])
            .await
            .trim(),
        "pod \"watched\" deleted"
    );
    assert!(
        sim.object("pods", "team", "watched").is_none(),
        "kubectl delete returned before the pod was gone"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let _ = tokio::time::timeout(Duration::from_millis(300), watch.wait()).await;
    watch.start_kill().unwrap();
    let mut seen = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut seen)
        .await
        .unwrap();
    let rows: Vec<Vec<&str>> = seen
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|r: &Vec<&str>| r.first() == Some(&"watched"))
        .collect();
    let statuses: Vec<&str> = rows.iter().map(|r| r[2]).collect();
    assert!(
        statuses.contains(&"Pending") || statuses.contains(&"ContainerCreating"),
        "{seen}"
    );
    assert!(statuses.contains(&"Running"), "{seen}");
    assert!(statuses.contains(&"Terminating"), "{seen}");

    let missing = k.run(&["delete", "pod", "watched", "-n", "team"]).await;
    assert_eq!(missing.code, 1);
    assert_eq!(
        missing.stderr.trim(),
        "Error from server (NotFound): pods \"watched\" not found"
    );
    let bad = k
        .run(&["create", "secret", "generic", "Bad_Name", "-n", "team"])
        .await;
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr
            .contains("is invalid: metadata.name: Invalid value: \"Bad_Name\""),
        "{}",
        bad.stderr
    );

    let c = sim.counters();
    assert!(c.count("create", "pods", "team") >= 3);
    assert!(c.count("watch", "pods", "team") >= 1);
    assert!(c.count("patch", "pods", "team") >= 2);
    assert!(c.count("patch", "services", "team") >= 1);
    assert!(c.count("delete", "pods", "team") >= 2);
    assert!(c.verb("list") >= 5);
}
