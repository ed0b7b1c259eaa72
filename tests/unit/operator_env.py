"""The least configuration the operator starts with, for tests that build an OperatorConfig
(each adds what it is about), and the admission loop's state set up around a fake API."""

from typing import Any

import pytest

REQUIRED = {
    "QSO_S3_ENDPOINT": "http://s3",
    "QSO_S3_BUCKET": "b",
    "QSO_S3_ACCESS_KEY": "a",
    "QSO_S3_SECRET_KEY": "s",
    "QSO_RUNTIME_IMAGE": "reg/runtime:1",
}


def queue_under_test(monkeypatch: pytest.MonkeyPatch, kube: Any, **env: str) -> None:
    """The operator's context with ``kube`` for its API and a capacity of 4 CPUs and 8 GiB
    (plus ``env``), and the admission loop's own memory fresh: a tick as on a new start."""
    from qiskit_serverless_operator.config import OperatorConfig
    from qiskit_serverless_operator.controller import scheduler, usage
    from qiskit_serverless_operator.controller.context import Context, set_context

    cfg = OperatorConfig.from_env(
        {
            **REQUIRED,
            "QSO_JOB_ENDPOINT_URL": "http://gw:8000/",
            "QSO_CAPACITY_CPU": "4",
            "QSO_CAPACITY_MEMORY": "8Gi",
            **env,
        }
    )
    set_context(Context(config=cfg, kube=kube, store=None))  # type: ignore[arg-type]
    monkeypatch.setattr(scheduler, "_memory", scheduler._Memory(admitted={}))
    monkeypatch.setattr(usage, "_marked", {})
    monkeypatch.setattr(usage, "_own_status", None)
