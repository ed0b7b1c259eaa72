"""The Python SDK: Qiskit Serverless on Kubernetes (see kubernetes_client)."""

from .kubernetes_client import KubernetesClient, QiskitServerless
from .local_client import LocalClient

__all__ = ["KubernetesClient", "LocalClient", "QiskitServerless"]
