"""Operator configuration, read once from the environment (a ConfigMap/Secret in-cluster)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

from .constants import QueueingStrategy
from .files import Limits


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def int_setting(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _optional_int(env: dict[str, str], name: str) -> int | None:
    if not env.get(name):
        return None
    value = int_setting(env, name, 0)
    if value < 1:
        raise ConfigError(f"{name} must be at least 1 (unset it for no limit), got {value}")
    return value


def _quantity(env: dict[str, str], name: str, kind: str) -> str | None:
    raw = env.get(name)
    if not raw:
        return None
    from .controller.queueing import cpu_millis, memory_bytes

    try:
        (cpu_millis if kind == "cpu" else memory_bytes)(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a Kubernetes {kind} quantity, got {raw!r}") from exc
    return raw


def _strategy(env: dict[str, str], name: str) -> QueueingStrategy:
    raw = env.get(name)
    if not raw:
        return QueueingStrategy.BEST_EFFORT_FIFO
    try:
        return QueueingStrategy(raw)
    except ValueError:
        choices = " or ".join(s.value for s in QueueingStrategy)
        raise ConfigError(f"{name} must be {choices}, got {raw!r}") from None


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _ttl(env: dict[str, str], name: str, default: int | None) -> int | None:
    """Seconds, or None for "keep": ``keep`` (or ``none``) says so, an absent value is the
    default."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"keep", "none"}:
        return None
    value = int_setting(env, name, 0)
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more seconds, or keep; got {raw!r}")
    return value


# How long a finished job stays in the API server when an archive keeps its history (like
# Argo Workflows' ttlStrategy): an hour after success, a day after failure or cancellation.
DEFAULT_TTL_AFTER_SUCCESS = 3600
DEFAULT_TTL_AFTER_FAILURE = 24 * 3600


@dataclass(frozen=True)
class S3Settings:
    """Where results and logs live. No keys: boto3's own credential chain (workload identity:
    IRSA, a pod identity agent, an instance profile); no endpoint: AWS's own."""

    endpoint: str | None
    bucket: str
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    region: str = "us-east-1"

    @classmethod
    def from_env(cls, env: dict[str, str]) -> S3Settings:
        keys = (env.get("QSO_S3_ACCESS_KEY") or None, env.get("QSO_S3_SECRET_KEY") or None)
        if bool(keys[0]) != bool(keys[1]):
            raise ConfigError(
                "set both QSO_S3_ACCESS_KEY and QSO_S3_SECRET_KEY, or neither (workload identity)"
            )
        return cls(
            endpoint=env.get("QSO_S3_ENDPOINT") or None,
            bucket=env["QSO_S3_BUCKET"],
            access_key=keys[0],
            secret_key=keys[1],
            region=env.get("QSO_S3_REGION", "us-east-1"),
        )


S3_REQUIRED = ("QSO_S3_BUCKET",)


def require(env: dict[str, str], names: tuple[str, ...]) -> None:
    missing = [name for name in names if not env.get(name)]
    if missing:
        raise ConfigError("missing settings: " + ", ".join(missing))


def file_limits(env: dict[str, str]) -> Limits:
    """The files API's limits, the same for the REST gateway and the operator's job endpoint."""
    limits = Limits(
        max_file_bytes=int_setting(env, "QSO_FILES_MAX_FILE_BYTES", Limits.max_file_bytes),
        quota_bytes=int_setting(env, "QSO_FILES_QUOTA_BYTES", Limits.quota_bytes),
    )
    if limits.max_file_bytes < 1 or limits.quota_bytes < 1:
        raise ConfigError("QSO_FILES_MAX_FILE_BYTES and QSO_FILES_QUOTA_BYTES must be positive")
    return limits


@dataclass(frozen=True)
class OperatorConfig:
    s3: S3Settings
    # The image jobs run when their function brings source but no image of its own.
    runtime_image: str
    # Where job pods reach the operator's job endpoint (update_status() and the other calls
    # a program makes to ENV_JOB_GATEWAY_HOST; not the REST gateway users talk to).
    job_endpoint_url: str
    job_endpoint_bind: str = "0.0.0.0"
    job_endpoint_port: int = 8000
    metrics_port: int = 9090
    metrics_bind: str = "0.0.0.0"
    # Finished job pods (and their batch Jobs) are removed this long after they end;
    # the ServerlessJob and its stored result and logs stay.
    finished_pod_ttl_seconds: int = 300
    # A job whose function does not exist waits this long after its creation before it ends
    # in ERROR: GitOps engines and `kubectl apply -f dir/` apply a job and its function in
    # the same second, in no promised order.
    function_wait_seconds: int = 10
    # On ServerlessJob deletion: keep (True) or delete (False) its result and logs.
    retain_objects_on_delete: bool = False
    # Logs kept per job (the tail), like the reference implementation's cap.
    max_log_bytes: int = 50 * 1024 * 1024
    # Presigned URLs handed to pods are valid this long past the job's timeout.
    url_grace_seconds: int = 3600
    # The read links of a job's result and logs (sj-out Secret): the S3 maximum, 7 days; a
    # client whose link expired asks for new ones (the refresh-links annotation).
    read_link_seconds: int = 7 * 24 * 3600
    default_timeout_seconds: int = 24 * 3600
    default_cpu: str = "500m"
    default_memory: str = "1Gi"
    namespace: str | None = None  # None: all namespaces
    # Image builds (functions with dependencies): where images are pushed, the builder image,
    # and the package index settings passed to pip in build pods. No registry: no builds.
    registry: str | None = None
    registry_insecure: bool = False
    # kubernetes.io/dockerconfigjson Secrets (``name`` in the operator's namespace, or
    # ``namespace/name``): build pods push with the first, job and build pods pull with the
    # second (controller/registry_auth.py). None: the registry needs no credentials.
    registry_push_secret: str | None = None
    registry_pull_secret: str | None = None
    builder_image: str | None = None
    pip_index_url: str | None = None
    pip_extra_index_url: str | None = None
    pip_ca_bundle: str | None = None  # a file the operator reads and hands to build pods
    build_proxy: dict[str, str] = field(default_factory=dict)
    build_timeout_seconds: int = 1800
    peering: str = "qiskit-serverless-operator"
    # kopf peering: the live replica with the highest priority acts, the others stand by.
    # A random priority per process makes replicas of one Deployment distinct.
    peering_priority: int = 0
    # How long a silent replica counts as alive; a standby takes over after this.
    peering_lifetime_seconds: int = 30
    # Admission (controller/queueing.py): concurrent jobs per user and per namespace, and the
    # CPU/memory all admitted jobs may request together (None: the nodes' allocatable).
    max_running_per_user: int | None = None
    max_running_per_namespace: int | None = None
    capacity_cpu: str | None = None
    capacity_memory: str | None = None
    # A job the cluster has no room for: skipped (BestEffortFIFO) or waited for (StrictFIFO).
    queueing_strategy: QueueingStrategy = QueueingStrategy.BEST_EFFORT_FIFO
    # Fair share: a user's past job-seconds count half after this long.
    usage_half_life_seconds: int = 3600
    # Waiting jobs whose status shows an exact queue position (the rest: "position N+").
    queue_positions_shown: int = 100
    # The files API (files.py): what a job's pod may store in /data and /function_data.
    files: Limits = field(default_factory=Limits)
    # Job history (archive/): the PostgreSQL finished jobs are archived in before their TTL
    # deletes them. None: no archive, and a job is deleted only if its spec asks.
    archive_dsn: str | None = field(default=None, repr=False)
    # A finished job's time in the API server, unless its spec.ttlSecondsAfterFinished says
    # (None: kept until deleted by hand). DONE is a success; ERROR and CANCELED failures.
    ttl_after_success_seconds: int | None = None
    ttl_after_failure_seconds: int | None = None
    # Archived jobs' stored result and logs are removed this long after the job finished
    # (None: kept as long as the archive row).
    archive_objects_ttl_seconds: int | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorConfig:
        env = dict(os.environ if env is None else env)
        require(env, (*S3_REQUIRED, "QSO_RUNTIME_IMAGE", "QSO_JOB_ENDPOINT_URL"))
        return cls(
            s3=S3Settings.from_env(env),
            files=file_limits(env),
            runtime_image=env["QSO_RUNTIME_IMAGE"],
            job_endpoint_url=env["QSO_JOB_ENDPOINT_URL"].rstrip("/"),
            job_endpoint_bind=env.get("QSO_JOB_ENDPOINT_BIND", "0.0.0.0"),
            job_endpoint_port=int_setting(env, "QSO_JOB_ENDPOINT_PORT", 8000),
            metrics_port=int_setting(env, "QSO_METRICS_PORT", 9090),
            metrics_bind=env.get("QSO_METRICS_BIND", "0.0.0.0"),
            finished_pod_ttl_seconds=int_setting(env, "QSO_FINISHED_POD_TTL_SECONDS", 300),
            function_wait_seconds=int_setting(env, "QSO_FUNCTION_WAIT_SECONDS", 10),
            retain_objects_on_delete=_bool(env, "QSO_RETAIN_OBJECTS_ON_DELETE", False),
            max_log_bytes=int_setting(env, "QSO_MAX_LOG_BYTES", 50 * 1024 * 1024),
            read_link_seconds=int_setting(env, "QSO_READ_LINK_SECONDS", 7 * 24 * 3600),
            default_timeout_seconds=int_setting(env, "QSO_DEFAULT_TIMEOUT_SECONDS", 24 * 3600),
            default_cpu=env.get("QSO_DEFAULT_CPU", "500m"),
            default_memory=env.get("QSO_DEFAULT_MEMORY", "1Gi"),
            namespace=env.get("QSO_NAMESPACE") or None,
            registry=env.get("QSO_REGISTRY") or None,
            registry_insecure=_bool(env, "QSO_REGISTRY_INSECURE", False),
            registry_push_secret=env.get("QSO_REGISTRY_PUSH_SECRET") or None,
            registry_pull_secret=env.get("QSO_REGISTRY_PULL_SECRET") or None,
            builder_image=env.get("QSO_BUILDER_IMAGE") or None,
            pip_index_url=env.get("QSO_PIP_INDEX_URL") or None,
            pip_extra_index_url=env.get("QSO_PIP_EXTRA_INDEX_URL") or None,
            pip_ca_bundle=env.get("QSO_PIP_CA_BUNDLE") or None,
            build_proxy={
                key: env[f"QSO_BUILD_{key}"]
                for key in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
                if env.get(f"QSO_BUILD_{key}")
            },
            build_timeout_seconds=int_setting(env, "QSO_BUILD_TIMEOUT_SECONDS", 1800),
            peering=env.get("QSO_PEERING", "qiskit-serverless-operator"),
            peering_priority=int_setting(env, "QSO_PEERING_PRIORITY", random.randint(1, 1_000_000)),
            peering_lifetime_seconds=int_setting(env, "QSO_PEERING_LIFETIME_SECONDS", 30),
            max_running_per_user=_optional_int(env, "QSO_MAX_RUNNING_PER_USER"),
            max_running_per_namespace=_optional_int(env, "QSO_MAX_RUNNING_PER_NAMESPACE"),
            capacity_cpu=_quantity(env, "QSO_CAPACITY_CPU", "cpu"),
            capacity_memory=_quantity(env, "QSO_CAPACITY_MEMORY", "memory"),
            queueing_strategy=_strategy(env, "QSO_QUEUEING_STRATEGY"),
            usage_half_life_seconds=int_setting(env, "QSO_USAGE_HALF_LIFE_SECONDS", 3600),
            queue_positions_shown=int_setting(env, "QSO_QUEUE_POSITIONS_SHOWN", 100),
            archive_dsn=env.get("QSO_ARCHIVE_DSN") or None,
            ttl_after_success_seconds=_ttl(
                env,
                "QSO_TTL_AFTER_SUCCESS_SECONDS",
                DEFAULT_TTL_AFTER_SUCCESS if env.get("QSO_ARCHIVE_DSN") else None,
            ),
            ttl_after_failure_seconds=_ttl(
                env,
                "QSO_TTL_AFTER_FAILURE_SECONDS",
                DEFAULT_TTL_AFTER_FAILURE if env.get("QSO_ARCHIVE_DSN") else None,
            ),
            archive_objects_ttl_seconds=_ttl(env, "QSO_ARCHIVE_OBJECTS_TTL_SECONDS", None),
        )
