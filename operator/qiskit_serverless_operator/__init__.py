"""Kubernetes-native Qiskit Serverless: custom resources reconciled by a kopf operator.

``from qiskit_serverless_operator import QiskitServerless`` is the SDK's entry point. It is
imported lazily: the job pods carry only this file, constants and the runtime wrapper.
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in {"QiskitServerless", "KubernetesClient", "LocalClient"}:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
