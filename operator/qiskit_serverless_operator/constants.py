"""The one place for API names and lifecycle vocabulary.

The SDK, the operator and the manifests all import these; the CRD YAML in
``crds/`` is the schema's single source and is checked against them in tests.
"""

from __future__ import annotations

from enum import StrEnum

GROUP = "serverless.qiskit.org"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "qiskit"

FUNCTION_KIND = "QiskitFunction"
FUNCTION_PLURAL = "qiskitfunctions"
FUNCTION_SHORT = "qf"

JOB_KIND = "ServerlessJob"
JOB_PLURAL = "serverlessjobs"
JOB_SHORT = "sj"


class JobPhase(StrEnum):
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    ERROR = "ERROR"
    CANCELED = "CANCELED"


TERMINAL_JOB_PHASES = frozenset({JobPhase.DONE, JobPhase.ERROR, JobPhase.CANCELED})


class FunctionPhase(StrEnum):
    PENDING = "Pending"
    BUILDING = "Building"
    READY = "Ready"
    FAILED = "Failed"
