"""Drives the Kubernetes API simulator with the official Python client.

Usage: kube_client.py KUBECONFIG. Prints one JSON summary line that the Rust test
(tests/kubesim/python.rs) asserts on.
"""
import json
import sys
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
NS = "py"
out = {}


def status_of(call):
    try:
        call()
    except ApiException as e:
        return [e.status, json.loads(e.body).get("reason")]
    return None


def pod(name):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "py"}),
        spec=client.V1PodSpec(
            restart_policy="OnFailure",
            containers=[client.V1Container(name="notebook", image="quay.io/jupyter/base-notebook:2024")],
        ),
    )


v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
start_rv = v1.list_namespaced_pod(NS).metadata.resource_version
created = v1.create_namespaced_pod(NS, pod("nb"))
out["duplicate"] = status_of(lambda: v1.create_namespaced_pod(NS, pod("nb")))
out["invalid"] = status_of(lambda: v1.create_namespaced_pod(NS, pod("Bad_Name")))
out["missing"] = status_of(lambda: v1.read_namespaced_pod("nope", NS))
v1.create_namespaced_persistent_volume_claim(NS, client.V1PersistentVolumeClaim(
    metadata=client.V1ObjectMeta(name="claim-nb"),
    spec=client.V1PersistentVolumeClaimSpec(
        access_modes=["ReadWriteOnce"],
        resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
    ),
))
v1.create_namespaced_secret(NS, client.V1Secret(metadata=client.V1ObjectMeta(name="tokens"), string_data={"token": "abc"}))
out["secret_token"] = v1.read_namespaced_secret("tokens", NS).data["token"]
out["labelled"] = len(v1.list_namespaced_pod(NS, label_selector="app=py,tier notin (db)").items)
out["unlabelled"] = len(v1.list_namespaced_pod(NS, label_selector="app=other").items)

# Status until Running with a pod IP.
deadline = time.time() + 10
while True:
    st = v1.read_namespaced_pod_status("nb", NS).status
    if st.phase == "Running" and st.pod_ip:
        out["pod_ip"] = st.pod_ip
        out["ready"] = all(c.ready for c in st.container_statuses)
        break
    if time.time() > deadline:
        raise SystemExit("pod never Running")
    time.sleep(0.05)

deadline = time.time() + 10
while v1.read_namespaced_persistent_volume_claim("claim-nb", NS).status.phase != "Bound":
    if time.time() > deadline:
        raise SystemExit("claim never Bound")
    time.sleep(0.05)
out["pvc_phase"] = "Bound"

out["wrong_uid"] = None
try:
    v1.delete_namespaced_pod("nb", NS, body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="wrong")))
except ApiException as e:
    out["wrong_uid"] = [e.status, json.loads(e.body)["message"]]

# Watch from before the create: replayed ADDED and MODIFIED, then our delete.
types = []
deleted = False
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_pod, NS, resource_version=start_rv, timeout_seconds=10,
                   field_selector="metadata.name=nb"):
    types.append(ev["type"])
    obj = ev["object"]
    if not deleted and obj.status.phase == "Running":
        v1.delete_namespaced_pod("nb", NS, body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=created.metadata.uid)))
        deleted = True
    if ev["type"] == "DELETED":
        w.stop()
out["watch_types"] = types

events = v1.list_namespaced_event(NS, field_selector="involvedObject.kind=Pod,involvedObject.name=nb")
items = sorted(events.items, key=lambda e: int(e.metadata.resource_version))
out["event_reasons"] = [e.reason for e in items]
print(json.dumps(out))
