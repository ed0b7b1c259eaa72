"""The cluster is real: pods from the runtime image run, Services resolve by DNS, S3 works."""

from __future__ import annotations

import re
import secrets
import uuid
from pathlib import Path

from kubernetes import client

from tests.kube import python_pod, restricted_container_security, wait_pod_finished, wait_until
from tests.serverless import s3_client

REPO = Path(__file__).resolve().parents[2]


def _pinned(package: str) -> str:
    text = (REPO / "requirements" / "constraints.txt").read_text()
    match = re.search(rf"^{re.escape(package)}==(\S+)$", text, re.MULTILINE)
    assert match, f"{package} is not pinned in requirements/constraints.txt"
    return match.group(1)


def test_node_ready_and_coredns_running(core: client.CoreV1Api, cluster: dict) -> None:
    node = core.read_node(cluster["node"])
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True"
    assert node.status.node_info.kubelet_version == cluster["kubernetes_version"]
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    dns_pods = core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns").items
    assert dns_pods, "no CoreDNS pod in kube-system"
    assert {p.status.phase for p in dns_pods} == {"Running"}


def test_runtime_image_imports_qiskit(
    core: client.CoreV1Api, cluster: dict, namespace: str
) -> None:
    pod = python_pod(
        "qiskit-version", cluster["images"]["runtime"], "import qiskit; print(qiskit.__version__)"
    )
    core.create_namespaced_pod(namespace, pod)
    finished = wait_pod_finished(core, namespace, "qiskit-version")
    log = core.read_namespaced_pod_log("qiskit-version", namespace)
    assert finished.status.phase == "Succeeded", log
    # The version the runtime image was built with, read back through the kubelet.
    assert log.strip() == _pinned("qiskit")


def test_service_answers_another_pod_by_dns_name(
    api_client: client.ApiClient, core: client.CoreV1Api, cluster: dict, namespace: str
) -> None:
    apps = client.AppsV1Api(api_client)
    token = secrets.token_hex(12)
    labels = {"app": "web"}
    server = client.V1Container(
        name="web",
        image=cluster["images"]["runtime"],
        command=[
            "sh",
            "-c",
            'mkdir -p /tmp/www && echo "$TOKEN" > /tmp/www/token && '
            "exec python3 -m http.server 8080 --directory /tmp/www",
        ],
        env=[client.V1EnvVar(name="TOKEN", value=token)],
        ports=[client.V1ContainerPort(container_port=8080)],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/token", port=8080), period_seconds=1
        ),
        security_context=restricted_container_security(),
        volume_mounts=[client.V1VolumeMount(name="tmp", mount_path="/tmp")],
    )
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[server],
                        automount_service_account_token=False,
                        volumes=[
                            client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource())
                        ],
                    ),
                ),
            ),
        ),
    )
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                selector=labels, ports=[client.V1ServicePort(port=80, target_port=8080)]
            ),
        ),
    )
    wait_until(
        lambda: (
            (apps.read_namespaced_deployment("web", namespace).status.available_replicas or 0) >= 1
        ),
        timeout=300,
        what="deployment web available",
    )

    fqdn = f"web.{namespace}.svc.cluster.local"
    code = (
        "import os, urllib.request\n"
        "for url in ('http://web/token', f'http://{os.environ[\"FQDN\"]}/token'):\n"
        "    print(urllib.request.urlopen(url, timeout=10).read().decode().strip())\n"
    )
    core.create_namespaced_pod(
        namespace, python_pod("client", cluster["images"]["runtime"], code, FQDN=fqdn)
    )
    finished = wait_pod_finished(core, namespace, "client")
    log = core.read_namespaced_pod_log("client", namespace)
    assert finished.status.phase == "Succeeded", log
    # Both the short name (search path) and the full name reach the server through the Service.
    assert log.split() == [token, token]


def test_pod_uploads_an_object_to_s3(core: client.CoreV1Api, cluster: dict, namespace: str) -> None:
    s3cfg = cluster["s3"]
    s3 = s3_client(cluster)
    key = f"smoke/{uuid.uuid4()}.txt"
    body = f"hello from a pod {secrets.token_hex(8)}"
    # The pod gets a presigned URL, never the storage credentials.
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": s3cfg["bucket"], "Key": key}, ExpiresIn=600
    )
    code = (
        "import os, urllib.request\n"
        "req = urllib.request.Request(os.environ['URL'], data=os.environ['BODY'].encode(),"
        " method='PUT')\n"
        "print(urllib.request.urlopen(req, timeout=30).status)\n"
    )
    core.create_namespaced_pod(
        namespace, python_pod("uploader", cluster["images"]["runtime"], code, URL=url, BODY=body)
    )
    try:
        finished = wait_pod_finished(core, namespace, "uploader")
        log = core.read_namespaced_pod_log("uploader", namespace)
        assert finished.status.phase == "Succeeded", log
        assert log.strip() == "200"
        stored = s3.get_object(Bucket=s3cfg["bucket"], Key=key)["Body"].read().decode()
        assert stored == body
    finally:
        s3.delete_object(Bucket=s3cfg["bucket"], Key=key)
