//! The deployment manifests of `examples/deploy/`: they render with kubectl's kustomize, every
//! object is its Kubernetes type, the configuration they carry is read by the binaries they
//! run, Secrets are referenced and never inlined, the gateway's Role allows exactly the
//! requests its spawner makes, they apply to the simulator, and the kube-state-metrics
//! allowlist exports what egi-accounting reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use egi_examples::gateway::config::GatewayConfig;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, PodSpec, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::helpers::peers_dir;

mod cluster;

/// The namespace the root kustomization puts everything in.
const NAMESPACE: &str = "notebooks";

/// Every Secret the manifests reference, by name: the operator creates these (README).
const SECRETS: [&str; 6] = [
    "accounting-prometheus",
    "apel-host-cert",
    "gateway-checkin",
    "gateway-cookie-key",
    "gateway-token-key",
    "status-service-token",
];

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy")
}

fn kubectl_bin() -> PathBuf {
    let bin = peers_dir().join("kubernetes-client/usr/bin/kubectl");
    assert!(
        bin.is_file(),
        "{} is missing: run .ci/install-peers",
        bin.display()
    );
    bin
}

/// Runs kubectl (1.20, the oldest kustomize an operator may have) and returns its standard
/// output, failing with its standard error.
async fn kubectl(args: &[&str], kubeconfig: Option<&Path>) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut c = tokio::process::Command::new(kubectl_bin());
    c.env("HOME", home.path())
        .env(
            "KUBECONFIG",
            kubeconfig.unwrap_or(&home.path().join("none")),
        )
        .arg("--cache-dir")
        .arg(home.path().join("cache"))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = c.output().await.expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The objects `kubectl kustomize` renders from `dir`.
async fn render(dir: &Path) -> Vec<Value> {
    let yaml = kubectl(&["kustomize", &dir.to_string_lossy()], None).await;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml).expect("kustomize output is YAML");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn kind_name(o: &Value) -> (String, String) {
    (
        o["kind"].as_str().unwrap_or_default().to_owned(),
        o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn find<'a>(objects: &'a [Value], kind: &str, name_prefix: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            let (k, n) = kind_name(o);
            k == kind && n.starts_with(name_prefix)
        })
        .unwrap_or_else(|| panic!("no {kind} {name_prefix}* rendered"))
}

/// Parses `object` as `T` and checks that writing it back gives the same JSON: a field the
/// type does not know (a typo, a field in the wrong place) is lost on the way and fails.
fn typed<T: DeserializeOwned + Serialize>(object: &Value) -> T {
    let (kind, name) = kind_name(object);
    let value: T = serde_json::from_value(object.clone())
        .unwrap_or_else(|e| panic!("{kind} {name} is not a valid {kind}: {e}"));
    let back = serde_json::to_value(&value).unwrap();
    assert_eq!(
        &back, object,
        "{kind} {name} holds fields its type does not know"
    );
    value
}

fn check_type(object: &Value) {
    let (kind, name) = kind_name(object);
    match kind.as_str() {
        "ServiceAccount" => {
            let _: ServiceAccount = typed(object);
        }
        "Role" => {
            let _: Role = typed(object);
        }
        "RoleBinding" => {
            let _: RoleBinding = typed(object);
        }
        "ConfigMap" => {
            let _: ConfigMap = typed(object);
        }
        "Service" => {
            let _: Service = typed(object);
        }
        "PersistentVolumeClaim" => {
            let _: PersistentVolumeClaim = typed(object);
        }
        "Deployment" => {
            let _: Deployment = typed(object);
        }
        "CronJob" => {
            let _: CronJob = typed(object);
        }
        other => panic!("{other} {name}: a kind the deployment should not hold"),
    }
}

/// The pod specs of the workloads, by workload name.
fn pod_specs(objects: &[Value]) -> BTreeMap<String, PodSpec> {
    let mut specs = BTreeMap::new();
    for o in objects {
        let (kind, name) = kind_name(o);
        let spec = match kind.as_str() {
            "Deployment" => typed::<Deployment>(o).spec.and_then(|s| s.template.spec),
            "CronJob" => typed::<CronJob>(o)
                .spec
                .and_then(|s| s.job_template.spec)
                .and_then(|s| s.template.spec),
            _ => continue,
        };
        specs.insert(name, spec.expect("a workload has a pod spec"));
    }
    specs
}

/// The text of `key` in the rendered ConfigMap `name`-<hash>.
fn config_file(objects: &[Value], name: &str, key: &str) -> String {
    find(objects, "ConfigMap", &format!("{name}-"))["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {name} has no {key}"))
        .to_owned()
}

fn gateway_config(objects: &[Value]) -> GatewayConfig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        config_file(objects, "gateway-config", "gateway.toml"),
    )
    .unwrap();
    // The environment the Deployment gives: literal values, and a stand-in for each value
    // from a Secret (the service token among them).
    let mut env = BTreeMap::new();
    for e in pod_specs(objects)["gateway"].containers[0]
        .env
        .iter()
        .flatten()
    {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(_)) => format!("secret-for-{}", e.name),
            (None, None) => String::new(),
        };
        env.insert(e.name.clone(), value);
    }
    GatewayConfig::load(&path, |k| env.get(k).cloned())
        .expect("the gateway reads its ConfigMap and environment")
}

#[tokio::test]
async fn manifests_render_parse_as_their_types_and_reference_secrets() {
    let objects = render(&deploy_dir()).await;
    let mut kinds: Vec<(String, String)> = objects.iter().map(kind_name).collect();
    kinds.sort();
    let names: Vec<(&str, &str)> = kinds
        .iter()
        .map(|(k, n)| {
            (
                k.as_str(),
                n.split_once("-config-").map_or(n.as_str(), |(p, _)| p),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("ConfigMap", "accounting"),
            ("ConfigMap", "gateway"),
            ("CronJob", "accounting"),
            ("Deployment", "gateway"),
            ("Deployment", "status-web"),
            ("PersistentVolumeClaim", "apel-spool"),
            ("PersistentVolumeClaim", "gateway-state"),
            ("Role", "gateway-spawner"),
            ("RoleBinding", "gateway-spawner"),
            ("Service", "gateway"),
            ("Service", "status-web"),
            ("ServiceAccount", "gateway"),
        ]
    );
    for o in &objects {
        check_type(o);
        assert_eq!(o["metadata"]["namespace"], NAMESPACE, "{:?}", kind_name(o));
    }

    // Each part applies alone and renders the same objects as the whole.
    let mut parts = Vec::new();
    for part in ["accounting", "monitor", "gateway"] {
        parts.extend(render(&deploy_dir().join(part)).await);
    }
    let strip = |mut o: Value| {
        o["metadata"].as_object_mut().unwrap().remove("namespace");
        if let Some(subjects) = o["subjects"].as_array_mut() {
            for subject in subjects {
                subject.as_object_mut().unwrap().remove("namespace");
            }
        }
        serde_json::to_string(&o)
            .unwrap()
            .replace("egi-notebooks-rs:0.1.0", "egi-notebooks-rs")
    };
    let whole: BTreeSet<String> = objects.iter().cloned().map(strip).collect();
    let parts: BTreeSet<String> = parts.into_iter().map(strip).collect();
    assert_eq!(
        whole, parts,
        "the root kustomization and the parts disagree"
    );

    // Secrets: referenced by name, never an object here, never a literal in the environment.
    let mut referenced = BTreeSet::new();
    for (workload, spec) in pod_specs(&objects) {
        for volume in spec.volumes.iter().flatten() {
            if let Some(secret) = &volume.secret {
                referenced.insert(secret.secret_name.clone().unwrap_or_default());
            }
        }
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for c in containers {
            assert_eq!(
                c.image.as_deref(),
                Some("egi-notebooks-rs:0.1.0"),
                "{workload}/{}",
                c.name
            );
            for env in c.env.iter().flatten() {
                let secret_like = ["TOKEN", "SECRET", "PASSWORD", "COOKIE_KEY"]
                    .iter()
                    .any(|w| env.name.ends_with(w));
                if let Some(from) = env
                    .value_from
                    .as_ref()
                    .and_then(|f| f.secret_key_ref.as_ref())
                {
                    referenced.insert(from.name.clone());
                } else {
                    assert!(!secret_like, "{workload}: {} is inlined", env.name);
                }
            }
        }
    }
    assert_eq!(referenced, SECRETS.map(str::to_owned).into_iter().collect());
    for o in objects.iter().filter(|o| o["kind"] == "ConfigMap") {
        for (key, text) in o["data"].as_object().unwrap() {
            for line in text.as_str().unwrap().lines().map(str::trim) {
                let key_of_line = line.split(['=', ':']).next().unwrap_or("").trim();
                assert!(
                    !["token", "password", "client_secret", "api_token"].contains(&key_of_line),
                    "{key} sets a secret: {line}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_binaries_read_the_configuration_the_manifests_give_them() {
    let objects = render(&deploy_dir()).await;
    let specs = pod_specs(&objects);

    // Every command is an example binary the Dockerfile builds into /usr/local/bin.
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let bins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/src/bin");
    for (workload, spec) in &specs {
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for c in containers {
            let command = c.command.clone().unwrap_or_default();
            let bin = command[0]
                .strip_prefix("/usr/local/bin/")
                .unwrap_or_else(|| panic!("{workload}/{}: {command:?}", c.name));
            assert!(bins.join(format!("{bin}.rs")).is_file(), "no binary {bin}");
            assert!(
                dockerfile.contains(&format!("--bin {bin} ")),
                "the Dockerfile omits {bin}"
            );
        }
    }

    // The accounting job writes where the sender reads: the spool volume.
    let accounting = &specs["accounting"];
    let init = &accounting.init_containers.as_ref().unwrap()[0];
    let mount = |c: &k8s_openapi::api::core::v1::Container, volume: &str| {
        c.volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == volume)
            .map(|m| PathBuf::from(&m.mount_path))
            .unwrap_or_else(|| panic!("{} does not mount {volume}", c.name))
    };
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("config.ini");
    std::fs::write(
        &ini,
        config_file(&objects, "accounting-config", "config.ini"),
    )
    .unwrap();
    let config = egi_accounting::config::Config::load(Some(&ini), |_| None)
        .expect("the accounting job reads its ConfigMap");
    assert_eq!(
        config.spool.as_deref(),
        Some(mount(init, "spool").as_path())
    );
    // sender.cfg read by apel-send's own configuration code: AMS, production topic, the
    // spool and the host certificate where the CronJob mounts them.
    let sender = egi_accounting::send::config::SenderConfig::from_ini_str(&config_file(
        &objects,
        "accounting-config",
        "sender.cfg",
    ))
    .expect("apel-send reads its ConfigMap");
    let send = &accounting.containers[0];
    assert_eq!(sender.spool, mount(send, "spool"));
    assert_eq!(sender.destination, "eu-egi-cloud-accounting");
    match &sender.broker {
        egi_accounting::send::config::Broker::Ams(ams) => {
            assert_eq!(ams.project, "accounting");
            assert!(ams.token.is_none(), "no AMS token in a ConfigMap");
        }
        other => panic!("the deployment sends to AMS, not {other:?}"),
    }
    let cert_mounts: BTreeSet<PathBuf> = send
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name == "host-cert")
        .map(|m| PathBuf::from(&m.mount_path))
        .collect();
    assert_eq!(cert_mounts, [sender.certificate, sender.key].into());
    let args = init.args.clone().unwrap_or_default();
    assert_eq!(PathBuf::from(&args[1]), mount(init, "config"));
    let args = send.args.clone().unwrap_or_default();
    assert_eq!(PathBuf::from(&args[1]), mount(send, "config"));

    // The gateway: its configuration, state on its volume, the spawner in its namespace.
    let gateway = gateway_config(&objects);
    assert_eq!(gateway.spawner.namespace, NAMESPACE);
    assert_eq!(gateway.listen.port(), 8000);
    let gw = &specs["gateway"].containers[0];
    assert!(gateway.state_file.starts_with(mount(gw, "state")));
    let status = gateway
        .services
        .iter()
        .find(|s| s.name == "status")
        .unwrap();
    assert_eq!(status.url.as_deref(), Some("http://status-web/"));
    assert!(status.admin);

    // The monitor answers behind http://status-web/ under the hub's service prefix.
    let monitor = &specs["status-web"].containers[0];
    let env: BTreeMap<&str, &str> = monitor
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.as_str(), e.value.as_deref()?)))
        .collect();
    assert_eq!(env["JUPYTERHUB_SERVICE_PREFIX"], "/services/status/");
    assert_eq!(env["MONITORED_URL"], "http://gateway:8000/hub/api");
    let web = typed::<Service>(find(&objects, "Service", "status-web"));
    assert_eq!(web.spec.unwrap().ports.unwrap()[0].port, 80);

    // Pods reach the gateway's hub API through its Service.
    let service = typed::<Service>(find(&objects, "Service", "gateway"));
    let port = service.spec.unwrap().ports.unwrap()[0].port;
    let hub_api = url::Url::parse(gateway.hub_api_url.as_deref().unwrap()).unwrap();
    assert_eq!(
        hub_api.host_str(),
        Some(format!("gateway.{NAMESPACE}.svc").as_str())
    );
    assert_eq!(hub_api.port().map(i32::from), Some(port));
    assert_eq!(
        env["MONITORED_URL"],
        format!("http://gateway:{port}/hub/api")
    );

    // A JupyterHub registers the same service, with the token of the same Secret.
    let path = deploy_dir().join("jupyterhub/values-status-service.yaml");
    let values: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let hub = &values["hub"];
    assert_eq!(hub["services"]["status"]["url"], "http://status-web/");
    assert_eq!(hub["services"]["status"]["admin"], true);
    let token = &hub["extraEnv"]["STATUS_SERVICE_TOKEN"]["valueFrom"]["secretKeyRef"];
    let monitor_token = monitor
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "JUPYTERHUB_API_TOKEN")
        .and_then(|e| e.value_from.as_ref()?.secret_key_ref.clone())
        .expect("the monitor's token comes from a Secret");
    assert_eq!(token["name"], monitor_token.name);
    assert_eq!(token["key"], monitor_token.key);
    assert!(hub["services"]["status"]["apiToken"].is_null());
}
