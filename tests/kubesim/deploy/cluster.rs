//! The manifests meet the cluster: the gateway's Role against the requests its spawner makes
//! on the simulator, `kubectl apply -k` to the simulator, and the kube-state-metrics allowlist
//! against what the simulator's kube-state-metrics exports of a spawned pod.

use std::collections::BTreeSet;

use egi_spawner::kube::{KubeCluster, RuntimeOptions};
use egi_spawner::spawner::StartRequest;
use egi_spawner::{HubContext, Spawner, User, UserTokens};
use egi_test_harness::kubesim::{KubeSim, SimOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{
    NAMESPACE, deploy_dir, find, gateway_config, kind_name, kubectl, pod_specs, render, typed,
};
use crate::helpers::{pvc, sim, sim_with, until};

/// The kube-state-metrics labels of `kube_pod_annotations` egi-accounting joins on
/// (`egi-accounting/src/record/join.rs`: user, group, flavor).
const ACCOUNTING_LABELS: [&str; 3] = [
    "annotation_hub_jupyter_org_username",
    "annotation_egi_eu_primary_group",
    "annotation_egi_eu_flavor",
];

fn user(name: &str) -> User {
    User {
        name: name.to_owned(),
        id: Some(7),
        groups: vec!["vo.notebooks.egi.eu".to_owned()],
        primary_group: Some("vo.notebooks.egi.eu".to_owned()),
    }
}

fn tokens(access: &str) -> UserTokens {
    UserTokens {
        access_token: SecretString::from(access.to_owned()),
        id_token: Some(SecretString::from(format!("id-{access}"))),
    }
}

fn request(user: &str, hub_api_url: &str) -> StartRequest {
    StartRequest {
        hub: HubContext::for_server(
            user,
            "",
            hub_api_url,
            SecretString::from("hub-api-token"),
            8888,
        ),
        user_options: serde_json::Map::new(),
        tokens: Some(tokens("access-1")),
    }
}

fn kube_client(sim: &KubeSim) -> kube::Client {
    let url: axum::http::Uri = sim.url().parse().expect("simulator url");
    kube::Client::try_from(kube::Config::new(url)).expect("client")
}

/// (resource, verb) pairs a Role grants in the core group, refusing what would grant more
/// than listed verbs on listed resources (other groups, wildcards, resource names).
fn grants(role: &Role) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        assert_eq!(
            rule.api_groups.as_deref(),
            Some(&[String::new()][..]),
            "{rule:?}"
        );
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for resource in rule.resources.iter().flatten() {
            for verb in &rule.verbs {
                assert!(resource != "*" && verb != "*", "{rule:?}");
                out.insert((resource.clone(), verb.clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_allows_exactly_the_requests_the_spawner_makes() {
    let objects = render(&deploy_dir()).await;
    let role: Role = typed(find(&objects, "Role", "gateway-spawner"));
    let binding: RoleBinding = typed(find(&objects, "RoleBinding", "gateway-spawner"));
    let account: ServiceAccount = typed(find(&objects, "ServiceAccount", "gateway"));
    let gateway_pod = &pod_specs(&objects)["gateway"];
    // The gateway runs as the account the binding gives the Role to, in the Role's namespace.
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subjects = binding.subjects.clone().unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), account.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(gateway_pod.service_account_name, account.metadata.name);
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
    let allowed = grants(&role);

    // The gateway's own spawner configuration, on the simulator.
    let config = gateway_config(&objects);
    let sim = sim().await;
    sim.put_object("namespaces", json!({"metadata": {"name": NAMESPACE}}))
        .unwrap();
    // bob's home exists already without the username annotation (made by hand, or by a
    // KubeSpawner that did not annotate): the create meets a 409 and reads it.
    let mut claim = pvc("claim-bob", "10Gi", None);
    claim["metadata"]["namespace"] = json!(NAMESPACE);
    sim.put_object("persistentvolumeclaims", claim).unwrap();
    let hub_api = config.hub_api_url.clone().unwrap_or_default();
    let cluster = KubeCluster::new(
        kube_client(&sim),
        config.spawner.clone(),
        RuntimeOptions::default(),
    )
    .expect("cluster");

    // alice: a first start (claim, Secret, pod, the pod cache and the events), a token
    // refresh, a stop; then a start after a gateway restart lost the spawner's memory of
    // the Secret (create, 409, update).
    let alice = cluster.spawner(user("alice"), "");
    alice
        .start(request("alice", &hub_api))
        .await
        .expect("alice starts");
    assert!(alice.update_tokens(&tokens("access-2")).await.unwrap());
    alice.stop(false).await.expect("alice stops");
    let again = cluster.spawner(user("alice"), "");
    again
        .start(request("alice", &hub_api))
        .await
        .expect("alice starts again");
    again.stop(true).await.expect("alice stops again");
    // bob: his existing claim is found by name after the 409.
    let bob = cluster.spawner(user("bob"), "");
    bob.start(request("bob", &hub_api))
        .await
        .expect("bob starts");
    bob.stop(true).await.expect("bob stops");
    assert!(
        sim.objects("pods", NAMESPACE).is_empty(),
        "every server stopped"
    );

    let counters = sim.counters();
    let mut used = BTreeSet::new();
    for r in &counters.requests {
        assert_eq!(
            r.namespace, NAMESPACE,
            "outside the Role's namespace: {r:?}"
        );
        used.insert((r.resource.clone(), r.verb.clone()));
    }
    let missing: Vec<_> = used.difference(&allowed).collect();
    let unused: Vec<_> = allowed.difference(&used).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "the Role lacks {missing:?} and grants {unused:?} the spawner never used: {counters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_the_manifests_to_the_simulator() {
    let objects = render(&deploy_dir()).await;
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let kc = Some(kubeconfig.as_path());
    kubectl(&["create", "namespace", NAMESPACE], kc).await;
    let deploy = deploy_dir().to_string_lossy().into_owned();
    let apply = ["apply", "--validate=false", "-k", deploy.as_str()];
    let first = kubectl(&apply, kc).await;
    let created: BTreeSet<&str> = first.lines().collect();
    assert_eq!(created.len(), objects.len(), "{first}");
    assert!(created.iter().all(|l| l.ends_with(" created")), "{first}");
    let second = kubectl(&apply, kc).await;
    assert!(
        second.lines().all(|l| l.ends_with(" unchanged")),
        "a second apply changes nothing: {second}"
    );

    let table = kubectl(&["get", "deployments,cronjobs", "-n", NAMESPACE], kc).await;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "AGE"], "{table}");
    let names: BTreeSet<&str> = rows.iter().filter_map(|r| r.first().copied()).collect();
    for name in [
        "deployment.apps/gateway",
        "deployment.apps/status-web",
        "cronjob.batch/accounting",
    ] {
        assert!(names.contains(name), "{table}");
    }

    // What the simulator stored is what was rendered (plus server fields and kubectl's
    // last-applied annotation).
    for o in &objects {
        let (kind, name) = kind_name(o);
        let stored = sim
            .object(&kind, NAMESPACE, &name)
            .unwrap_or_else(|| panic!("{kind} {name} not stored"));
        assert_eq!(stored["kind"], o["kind"]);
        assert_eq!(stored["apiVersion"], o["apiVersion"]);
        let mut fields = vec!["data", "rules", "subjects", "roleRef"];
        if kind == "Deployment" || kind == "CronJob" {
            fields.push("spec");
        }
        for field in fields {
            assert_eq!(stored[field], o[field], "{kind} {name} {field}");
        }
        assert_eq!(
            stored["metadata"]["labels"], o["metadata"]["labels"],
            "{kind} {name}"
        );
    }
    let deployment: Deployment =
        serde_json::from_value(sim.object("deployments", NAMESPACE, "gateway").unwrap())
            .expect("the stored Deployment is a Deployment");
    assert_eq!(
        deployment
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .service_account_name
            .as_deref(),
        Some("gateway")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_state_metrics_allowlist_exports_the_annotations_accounting_reads() {
    // The flag is the same in the chart values and in the patch.
    let text =
        std::fs::read_to_string(deploy_dir().join("kube-state-metrics/values.yaml")).unwrap();
    let values: Value = serde_saphyr::from_str(&text).unwrap();
    let from_values = values["metricAnnotationsAllowList"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let text =
        std::fs::read_to_string(deploy_dir().join("kube-state-metrics/allowlist-patch.yaml"))
            .unwrap();
    let patch: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(patch[0]["op"], "add");
    assert_eq!(patch[0]["path"], "/spec/template/spec/containers/0/args/-");
    let flag = patch[0]["value"].as_str().unwrap();
    assert_eq!(
        flag.strip_prefix("--metric-annotations-allowlist="),
        Some(from_values.as_str())
    );
    let list = from_values
        .strip_prefix("pods=[")
        .and_then(|l| l.strip_suffix(']'))
        .expect("pods=[...]");
    let allowlist: Vec<String> = list.split(',').map(str::to_owned).collect();

    // kube-state-metrics (the simulator's) with that allowlist, and a server of the
    // gateway's spawner whose pod carries a flavor as a profile would set it.
    let objects = render(&deploy_dir()).await;
    let mut config = gateway_config(&objects).spawner;
    config.namespace = "default".to_owned();
    config
        .extra_annotations
        .insert("egi.eu/flavor".to_owned(), "small".to_owned());
    config
        .extra_annotations
        .insert("egi.eu/other".to_owned(), "not exported".to_owned());
    let sim = sim_with(SimOptions {
        metrics_annotations: allowlist,
        ..SimOptions::default()
    })
    .await;
    let cluster =
        KubeCluster::new(kube_client(&sim), config, RuntimeOptions::default()).expect("cluster");
    let alice = cluster.spawner(user("alice@example.org"), "");
    alice
        .start(request("alice@example.org", "http://gateway:8000/hub/api"))
        .await
        .expect("alice starts");
    let line = until(10, "kube_pod_annotations of alice's pod", async || {
        sim.metrics_text()
            .lines()
            .find(|l| l.starts_with("kube_pod_annotations{") && l.contains("jupyter-alice"))
            .map(str::to_owned)
    })
    .await;
    for label in ACCOUNTING_LABELS {
        assert!(
            line.contains(&format!("{label}=\"")),
            "{label} missing: {line}"
        );
    }
    assert!(
        line.contains("annotation_hub_jupyter_org_username=\"alice@example.org\""),
        "{line}"
    );
    assert!(
        line.contains("annotation_egi_eu_primary_group=\"vo.notebooks.egi.eu\""),
        "{line}"
    );
    assert!(!line.contains("annotation_egi_eu_other"), "{line}");
    alice.stop(true).await.unwrap();
}
