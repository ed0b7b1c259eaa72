"""What the fault benchmarks share: the in-cluster install (two operator replicas, as a
user's cluster runs it) and a namespace that is removed at the end, even after a failure."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cluster.config import Paths  # noqa: E402
from tests.cluster.operator_local import apply_api  # noqa: E402
from tests.in_cluster import installed  # noqa: E402
from tests.kube import cluster_info, kubectl  # noqa: E402


@contextlib.contextmanager
def in_cluster(stem: str) -> Iterator[tuple[dict[str, Any], client.ApiClient, str]]:
    cluster = cluster_info()
    config.load_kube_config(cluster["kubeconfig"])
    api_client = client.ApiClient()
    apply_api(Paths.from_env())  # a fresh cluster has no CRDs until a test or install ran
    namespace = f"{stem}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api_client).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
    )
    try:
        with installed(cluster) as namespaces:
            namespaces.append(namespace)
            yield cluster, api_client, namespace
    finally:
        kubectl(cluster, "delete", "namespace", namespace, "--wait=false", check=False)
