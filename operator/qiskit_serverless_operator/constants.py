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

# The admission queue: one cluster-scoped object whose status shows usage and the queue.
QUEUE_KIND = "ServerlessQueue"
QUEUE_PLURAL = "serverlessqueues"
QUEUE_SHORT = "sq"
QUEUE_NAME = "default"


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


PHASE_ORDER = {
    JobPhase.QUEUED: 0,
    JobPhase.INITIALIZING: 1,
    JobPhase.RUNNING: 2,
    JobPhase.DONE: 3,
    JobPhase.ERROR: 3,
    JobPhase.CANCELED: 3,
}

# A function's title (spec.title, as in the CRD; tests/unit/test_crds.py checks they agree):
# what users call it by, and a label value on its jobs' pods.
TITLE_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$"
TITLE_MAX_LENGTH = 63

# Labels and annotations on the objects the operator creates (its own domain, so
# Argo CD can be told to ignore them and nothing collides with other controllers).
LABEL_JOB = f"{GROUP}/job"
LABEL_JOB_NAMESPACE = f"{GROUP}/job-namespace"
LABEL_FUNCTION = f"{GROUP}/function"
LABEL_COMPONENT = f"{GROUP}/component"
LABEL_BUILD = f"{GROUP}/build"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
# On a task's ServerlessJob and its pod: the job whose program started it (runtime/tasks.py).
LABEL_TASK_PARENT = f"{GROUP}/task-parent"
MANAGER = "qiskit-serverless-operator"
FINALIZER = f"{GROUP}/cleanup"
# Who submitted a job: the SDK sets it to the caller's user name, and a
# ValidatingAdmissionPolicy (manifests/base/admission-policy.yaml) rejects any other value,
# so it cannot be forged. Jobs without it count as the namespace's shared user.
ANNOTATION_SUBMITTER = f"{GROUP}/submitter"
# The submitter's groups (comma-separated), as the API server authenticated them: a run of
# another namespace's function is authorized for user and groups (controller/access.py).
ANNOTATION_SUBMITTER_GROUPS = f"{GROUP}/submitter-groups"
# When the SDK submitted a job, with sub-second resolution (creationTimestamp has 1 s): it
# orders jobs() and, within one second, the admission queue.
ANNOTATION_SUBMITTED_AT = f"{GROUP}/submitted-at"
# A job's id (its UID) in its own metadata, written with the finalizer when it starts: a copy
# restored from a backup gets a new UID but keeps this, and never runs again once archived.
ANNOTATION_JOB_ID = f"{GROUP}/job-id"
# A ServerlessJob's UID, as written in its status: `--field-selector status.jobId=<uid>`.
JOB_ID_FIELD = "status.jobId"
# A client whose read links (sj-out Secret) expired sets this to a new value (e.g. the time);
# the operator signs new links and records the value in status.linksRefreshed.
ANNOTATION_REFRESH_LINKS = f"{GROUP}/refresh-links"
# On a job's pod: the provider of its function (its logs are split between user and provider).
ANNOTATION_PROVIDER = f"{GROUP}/provider"
# Kueue's contract: a job with this label is admitted by Kueue, not by the operator's queue.
LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
# Kueue's WorkloadPriorityClass of a job: copied to the batch Job, where Kueue reads it.
LABEL_KUEUE_PRIORITY_CLASS = "kueue.x-k8s.io/priority-class"


def job_order(submitted_at: float, job_id: str) -> tuple[float, str]:
    """The one order of job listings (REST, SDK, history API), applied newest first: when it
    was submitted, then its id (unique, where names repeat over time)."""
    return (submitted_at, job_id)


def namespace_user(namespace: str) -> str:
    """The user of jobs submitted without a submitter annotation (e.g. plain kubectl)."""
    return f"namespace:{namespace}"


# Status reasons of a QUEUED job: why it is not running yet.
class QueueReason(StrEnum):
    FUNCTION_NOT_READY = "FunctionNotReady"
    # Its function does not exist (yet): ERROR after QSO_FUNCTION_WAIT_SECONDS.
    FUNCTION_NOT_FOUND = "FunctionNotFound"
    SUSPENDED = "Suspended"
    PENDING = "Pending"  # ready to run: waits for the operator's admission
    ADMITTED = "Admitted"  # admitted; its pod is being created
    KUEUE = "AdmissionByKueue"


# The reason a started job shows while Kueue holds it again (it preempted it to make room for
# a job of higher priority): the phase stays (phases never move backwards), the reason says
# why nothing runs, and Kueue's next admission starts the program again in a new pod.
REASON_EVICTED_BY_KUEUE = "EvictedByKueue"

# A pod whose container the runtime failed to start (the program never ran) is replaced by a
# new batch Job at most this many times; the job's status counts them (startRetries).
REASON_START_RETRY = "PodStartRetry"
MAX_START_RETRIES = 2

# Tasks (distribute_task in a job's program, runtime/tasks.py): each a ServerlessJob owned by
# its job, ended with it (reason ParentEnded).
MAX_TASKS_PER_JOB = 1000
MAX_TASK_PAYLOAD_BYTES = 64 * 1024 * 1024
REASON_PARENT_ENDED = "ParentEnded"


# How the admission loop treats a job the cluster has no room for (Kueue's names).
class QueueingStrategy(StrEnum):
    # Skip it: later jobs that fit start now; a large job can be passed for as long as
    # smaller ones keep fitting.
    BEST_EFFORT_FIFO = "BestEffortFIFO"
    # Hold the capacity for it: no job after it in the order starts until it has. Per-user
    # and per-namespace limits still only skip (a user at their limit blocks nobody else).
    STRICT_FIFO = "StrictFIFO"


# Inside the job pod (the qiskit_serverless program-side contract).
ARGUMENTS_FILE = "arguments.json"
POD_ARGUMENTS_DIR = "/run/qso/arguments"
POD_RUNTIME_DIR = "/run/qso/runtime"
POD_SOURCE_DIR = "/function"
POD_RESULTS_PATH = "/results/result.json"
POD_DATA_DIR = "/data"
POD_FUNCTION_DATA_DIR = "/function_data"
RUNTIME_MODULE = "qiskit_serverless_operator.runtime"

# Kubernetes limits the operator checks before the apiserver does, to say something useful.
SECRET_MAX_BYTES = 1024 * 1024
