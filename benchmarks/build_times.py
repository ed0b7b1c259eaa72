"""Function image build times on the local cluster, printed as one table.

    python -m tests.cluster up && python -m tests.cluster operator-start
    KUBECONFIG=/var/lib/qso-cluster/admin.kubeconfig python benchmarks/build_times.py

Uploads a function with one dependency three ways in a fresh namespace: first upload (a build
from nothing), the same upload again (must build nothing), and with one file changed (a new
build). Reports the upload wall time of each, as the SDK user waits for it.
"""

from __future__ import annotations

import tempfile
import time
import uuid
import warnings
from pathlib import Path

from kubernetes import client, config
from qiskit_serverless import QiskitFunction

from qiskit_serverless_operator import KubernetesClient

warnings.filterwarnings("ignore", category=DeprecationWarning)
PROGRAM = "import tabulate\nprint(tabulate.tabulate([[{n}]]))\n"


def main() -> None:
    config.load_kube_config()
    core = client.CoreV1Api()
    namespace = f"bench-build-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    rows = []
    try:
        sdk = KubernetesClient(namespace=namespace)
        with tempfile.TemporaryDirectory() as folder:
            for label, n in (
                ("first upload (build)", 1),
                ("unchanged re-upload", 1),
                ("one file changed (build)", 2),
            ):
                (Path(folder) / "main.py").write_text(PROGRAM.format(n=n))
                started = time.monotonic()
                fn = sdk.upload(
                    QiskitFunction(
                        title="bench",
                        entrypoint="main.py",
                        working_dir=folder,
                        dependencies=["tabulate==0.9.0"],
                    )
                )
                rows.append((label, time.monotonic() - started, fn.image.rsplit("@", 1)[-1][:19]))
    finally:
        core.delete_namespace(namespace)
    print(f"{'upload':<26} {'seconds':>8}  image digest")
    for label, seconds, digest in rows:
        print(f"{label:<26} {seconds:>8.1f}  {digest}")


if __name__ == "__main__":
    main()
