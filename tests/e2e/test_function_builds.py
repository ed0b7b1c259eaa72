"""Image builds on the cluster: dependencies installed once, at build time, cached by content."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from kubernetes import client
from qiskit_serverless import QiskitFunction
from qiskit_serverless.exception import QiskitServerlessException

from qiskit_serverless_operator import KubernetesClient
from tests.serverless import BuildJobCounter

PROGRAM = """
import tabulate
from qiskit_serverless import save_result
print(tabulate.tabulate([["a", 1]], headers=["k", "v"]))
save_result({"version": tabulate.__version__, "marker": MARKER})
"""


def _finish(job, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while not job.in_terminal_state() and time.monotonic() < deadline:
        time.sleep(0.5)
    return job.status()


def _upload(sdk: KubernetesClient, folder: Path, marker: str, title: str = "tabulated"):
    (folder / "main.py").write_text(PROGRAM.replace("MARKER", repr(marker)))
    return sdk.upload(
        QiskitFunction(
            title=title,
            entrypoint="main.py",
            working_dir=str(folder),
            dependencies=["tabulate==0.9.0"],
        )
    )


def test_build_once_run_and_rebuild_on_change(
    api_client: client.ApiClient, namespace: str, operator, tmp_path: Path, capfd
) -> None:
    sdk = KubernetesClient(namespace=namespace, api_client=api_client)
    counter = BuildJobCounter(client.BatchV1Api(api_client), namespace)
    try:
        first = _upload(sdk, tmp_path, "v1")
        assert "@sha256:" in first.image
        assert "[build] pushed" in sdk.build_logs("tabulated")
        progress = capfd.readouterr().err
        assert "[upload tabulated" in progress and "Building: building" in progress
        job1 = first.run()
        assert _finish(job1) == "DONE", job1.logs()
        assert job1.result() == {"version": "0.9.0", "marker": "v1"}
        assert "---  ---" in job1.logs()  # tabulate, installed at build time, printed this
        assert len(counter.names) == 1

        again = _upload(sdk, tmp_path, "v1")
        time.sleep(3)
        assert again.image == first.image
        assert len(counter.names) == 1, counter.names  # unchanged: no new build Job

        changed = _upload(sdk, tmp_path, "v2")
        assert changed.image != first.image
        job2 = changed.run()
        assert _finish(job2) == "DONE", job2.logs()
        assert job2.result()["marker"] == "v2"
        assert len(counter.names) == 2
        # The earlier job is untouched by the rebuild.
        assert job1.result()["marker"] == "v1" and job1.status() == "DONE"
    finally:
        counter.stop()


@pytest.mark.parametrize(
    ("files", "deps", "expected"),
    [
        (
            {"main.py": "print('ok')\n"},
            ["qso-no-such-package-4f1d==1.0"],
            "ERROR: Could not find a version that satisfies the requirement "
            "qso-no-such-package-4f1d==1.0",
        ),
        (
            {"main.py": "x = 1\ndef broken(:\n"},
            ["tabulate==0.9.0"],
            "SyntaxError in main.py line 2",
        ),
    ],
)
def test_build_failures_say_why(
    api_client: client.ApiClient,
    namespace: str,
    operator,
    tmp_path: Path,
    files: dict,
    deps: list,
    expected: str,
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    sdk = KubernetesClient(namespace=namespace, api_client=api_client)
    with pytest.raises(QiskitServerlessException) as info:
        sdk.upload(
            QiskitFunction(
                title="bad_build",
                entrypoint="main.py",
                working_dir=str(tmp_path),
                dependencies=deps,
            )
        )
    assert expected in str(info.value)
    assert "build failed" in str(info.value)
    logs = sdk.build_logs("bad_build")
    assert "[build] FAILED: " + expected in logs


def test_concurrent_uploads_of_the_same_function_build_once(
    api_client: client.ApiClient, namespace: str, operator, tmp_path: Path
) -> None:
    (tmp_path / "main.py").write_text(PROGRAM.replace("MARKER", "'same'"))
    counter = BuildJobCounter(client.BatchV1Api(api_client), namespace)
    results: list = []

    def upload() -> None:
        sdk = KubernetesClient(namespace=namespace, api_client=api_client)
        sdk.progress = False
        results.append(
            sdk.upload(
                QiskitFunction(
                    title="twice",
                    entrypoint="main.py",
                    working_dir=str(tmp_path),
                    dependencies=["tabulate==0.9.0"],
                )
            )
        )

    try:
        threads = [threading.Thread(target=upload) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert len(results) == 3
        assert len({fn.image for fn in results}) == 1
        assert len(counter.names) == 1, counter.names
    finally:
        counter.stop()


def test_a_folder_too_big_for_inline_source_goes_as_an_archive(
    api_client: client.ApiClient, namespace: str, operator, tmp_path: Path
) -> None:
    # 1.5 MB of data (and one binary file): more than a QiskitFunction object can carry.
    (tmp_path / "data.txt").write_text("0123456789\n" * 140_000)
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "main.py").write_text(
        "import tabulate\nfrom qiskit_serverless import save_result\n"
        "lines = open('data.txt').read().splitlines()\n"
        "save_result({'lines': len(lines), 'blob': len(open('blob.bin', 'rb').read())})\n"
    )
    sdk = KubernetesClient(namespace=namespace, api_client=api_client)
    fn = sdk.upload(
        QiskitFunction(
            title="bulky",
            entrypoint="main.py",
            working_dir=str(tmp_path),
            dependencies=["tabulate==0.9.0"],
        )
    )
    body = fn.raw_data
    assert "archive" in body["spec"]["source"] and "files" not in body["spec"]["source"]
    assert "@sha256:" in fn.image
    job = fn.run()
    assert _finish(job) == "DONE", job.logs()
    assert job.result() == {"lines": 140_000, "blob": 16_384}


def test_a_registry_that_refuses_the_push(
    api_client: client.ApiClient, cluster: dict, namespace: str, operator, tmp_path: Path
) -> None:
    from tests.kube import OperatorProcess

    (tmp_path / "main.py").write_text("print('x')\n")
    operator.stop()
    refusing = OperatorProcess(cluster, tmp_path / "refusing.log")
    # Nothing listens there: every push is refused.
    refusing.env["QSO_REGISTRY"] = "127.0.0.1:9"
    refusing.start()
    try:
        sdk = KubernetesClient(namespace=namespace, api_client=api_client)
        with pytest.raises(QiskitServerlessException) as info:
            sdk.upload(
                QiskitFunction(
                    title="nowhere",
                    entrypoint="main.py",
                    working_dir=str(tmp_path),
                    dependencies=["tabulate==0.9.0"],
                )
            )
        message = str(info.value)
        assert "build failed: pushing 127.0.0.1:9/qso-functions/" in message
        assert "refused" in message
    finally:
        refusing.stop()
        operator.start()
