"""The Kubernetes objects one ServerlessJob becomes (pure functions, no API calls).

Names are derived from the ServerlessJob's name only, so a re-run after a crash
finds (and never duplicates) what an earlier run created.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from .. import constants as c
from ..config import OperatorConfig

_DNS_LABEL = 63
FILES_LISTING_KEY = "files.json"


def restricted_pod_security() -> dict[str, Any]:
    """Pod Security 'restricted': non-root uid 1000, seccomp RuntimeDefault."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def child_name(kind: str, name: str) -> str:
    """``<kind>-<name>``, shortened with a hash suffix to stay a valid DNS label."""
    full = f"{kind}-{name}"
    if len(full) <= _DNS_LABEL:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{full[: _DNS_LABEL - 9].rstrip('-.')}-{digest}"


def batch_job_name(sj_name: str) -> str:
    return child_name("sj", sj_name)


def arguments_secret_name(sj_name: str) -> str:
    return child_name("sj-args", sj_name)


# The runtime Secret's key holding the token a job's pod presents to the job endpoint.
GATEWAY_TOKEN_KEY = "gateway-token"


def token_digest(token: str) -> str:
    """What the job's status keeps of its pod's token (status.tokenSha256)."""
    return hashlib.sha256(token.encode()).hexdigest()


def runtime_secret_name(sj_name: str) -> str:
    return child_name("sj-rt", sj_name)


def output_secret_name(sj_name: str) -> str:
    return child_name("sj-out", sj_name)


def provider_secret_name(sj_name: str) -> str:
    return child_name("sj-prov", sj_name)


@dataclass(frozen=True)
class Placement:
    """Where a job's batch Job, its pod and their Secrets live. A job of a provider's catalog
    function (``spec.provider``: the provider's namespace) runs there, so that the provider's
    code, image and data never enter the user's namespace; every other job in its own.

    ``base`` names the children; in a provider's namespace it carries a hash of the user's
    namespace and job name, since jobs of many namespaces meet there."""

    namespace: str
    base: str
    remote: bool


def placement(sj: dict[str, Any]) -> Placement:
    meta = sj["metadata"]
    provider = (sj.get("spec") or {}).get("provider")
    if provider and provider != meta["namespace"]:
        digest = hashlib.sha256(f"{meta['namespace']}/{meta['name']}".encode()).hexdigest()[:8]
        return Placement(provider, f"{digest}-{meta['name']}", True)
    return Placement(meta["namespace"], meta["name"], False)


def credentials_secret_name(sj_name: str) -> str:
    return child_name("sj-cred", sj_name)


def source_configmap_name(qf_name: str) -> str:
    return child_name("qf-src", qf_name)


def owner_reference(body: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": body.get("apiVersion", c.API_VERSION),
        "kind": body.get("kind", c.JOB_KIND),
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def _labels(sj: dict[str, Any]) -> dict[str, str]:
    title = sj["spec"]["function"]
    labels = {
        c.LABEL_JOB: sj["metadata"]["name"],
        # The job's own namespace: its children may live in a provider's.
        c.LABEL_JOB_NAMESPACE: sj["metadata"]["namespace"],
        c.LABEL_FUNCTION: title,
        c.LABEL_MANAGED_BY: c.MANAGER,
    }
    task = sj["spec"].get("task")
    if task:
        labels[c.LABEL_TASK_PARENT] = task["parent"]
    return labels


def task_name(parent: str, index: int) -> str:
    """``<job>-t<index>``, shortened with a hash of the whole to stay a DNS label."""
    full = f"{parent}-t{index}"
    if len(full) <= _DNS_LABEL:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    suffix = f"-{digest}-t{index}"
    return f"{parent[: _DNS_LABEL - len(suffix)].rstrip('-.')}{suffix}"


def task_job(
    parent: dict[str, Any], index: int, requests: dict[str, str], env: dict[str, str]
) -> dict[str, Any]:
    """A task's ServerlessJob: the parent's function, credentials and priority, owned by the
    parent (deleted with it), labelled with it (found, stopped and spread by it)."""
    meta, spec = parent["metadata"], parent["spec"]
    labels = {c.LABEL_TASK_PARENT: meta["name"], **kueue_labels(parent)}
    task_spec: dict[str, Any] = {
        "function": spec["function"],
        "task": {"parent": meta["name"], "index": index, **({"env": env} if env else {})},
        "resources": {"requests": requests},
    }
    for key in ("provider", "credentials", "priority", "timeoutSeconds"):
        if key in spec:
            task_spec[key] = spec[key]
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.JOB_KIND,
        "metadata": {
            "name": task_name(meta["name"], index),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(parent)],
        },
        "spec": task_spec,
    }


def task_owner_uid(sj: dict[str, Any]) -> str | None:
    """The UID of the job a task belongs to, from its owner reference (set by the operator;
    the name in spec.task alone could point at any job)."""
    task = sj["spec"].get("task") or {}
    for ref in sj["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == c.JOB_KIND and ref.get("name") == task.get("parent"):
            return ref.get("uid")
    return None


def child_labels(sj: dict[str, Any]) -> dict[str, str]:
    """The labels that find a job's pods, wherever they run."""
    return {k: v for k, v in _labels(sj).items() if k in (c.LABEL_JOB, c.LABEL_JOB_NAMESPACE)}


def configmap_key(path: str, index: int) -> str:
    """ConfigMap keys cannot hold '/': map each file to a safe key, mounted at its path."""
    stem = re.sub(r"[^-._a-zA-Z0-9]", "_", path)[-200:]
    return f"f{index:03d}.{stem}"


def source_configmap(qf: dict[str, Any]) -> dict[str, Any]:
    files: dict[str, str] = qf["spec"]["source"]["files"]
    data = {configmap_key(path, i): text for i, (path, text) in enumerate(sorted(files.items()))}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": source_configmap_name(qf["metadata"]["name"]),
            "namespace": qf["metadata"]["namespace"],
            "labels": {c.LABEL_FUNCTION: qf["spec"]["title"], c.LABEL_MANAGED_BY: c.MANAGER},
            "ownerReferences": [owner_reference(qf)],
        },
        "data": data,
    }


def source_items(qf: dict[str, Any]) -> list[dict[str, str]]:
    files: dict[str, str] = qf["spec"]["source"]["files"]
    return [
        {"key": configmap_key(path, i), "path": path}
        for i, (path, _) in enumerate(sorted(files.items()))
    ]


def resources(sj: dict[str, Any], qf: dict[str, Any], cfg: OperatorConfig) -> dict[str, Any]:
    """Job's resources over the function's defaults over the operator's defaults."""
    merged: dict[str, dict[str, Any]] = {
        "requests": {"cpu": cfg.default_cpu, "memory": cfg.default_memory},
        "limits": {"memory": cfg.default_memory},
    }
    for source in (qf["spec"].get("resources") or {}, sj["spec"].get("resources") or {}):
        for section in ("requests", "limits"):
            merged[section].update(source.get(section) or {})
    # A limit below the request is rejected by the apiserver; raise the request's twin.
    if "memory" in (sj["spec"].get("resources") or {}).get("requests", {}) and "memory" not in (
        (sj["spec"].get("resources") or {}).get("limits", {})
    ):
        merged["limits"]["memory"] = merged["requests"]["memory"]
    return merged


def timeout_seconds(sj: dict[str, Any], cfg: OperatorConfig) -> int:
    return int(sj["spec"].get("timeoutSeconds") or cfg.default_timeout_seconds)


def _job_secret(
    sj: dict[str, Any], name: str, data: dict[str, str], *, where: Placement | None = None
) -> dict[str, Any]:
    """A Secret of the job's, in its own namespace, or (``where``) where its pod runs: there,
    in another namespace, it cannot be owned by the job, and the job's finalizer removes it."""
    where = where or Placement(sj["metadata"]["namespace"], sj["metadata"]["name"], False)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": where.namespace,
        "labels": _labels(sj),
    }
    if not where.remote:
        metadata["ownerReferences"] = [owner_reference(sj)]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata,
        "stringData": data,
    }


def runtime_secret(
    sj: dict[str, Any],
    *,
    result_url: str,
    logs_url: str,
    gateway_token: str,
    files_listing: str | None = None,
    provider_logs_url: str | None = None,
    task_payload_url: str | None = None,
    arguments_json: str | None = None,
) -> dict[str, Any]:
    """What the pod needs to report back, and nothing more: no storage credentials. With
    ``files_listing``, the job's files folders (JSON: mount -> files with download links);
    with ``provider_logs_url``, where the provider's share of the logs goes; with
    ``task_payload_url``, the pickled call a task's pod makes (runtime/tasks.py); with
    ``arguments_json``, the arguments too (see ``secret_bytes``)."""
    data = {"result-url": result_url, "logs-url": logs_url, GATEWAY_TOKEN_KEY: gateway_token}
    if arguments_json is not None:
        data[c.ARGUMENTS_FILE] = arguments_json
    if task_payload_url is not None:
        data["task-payload-url"] = task_payload_url
    if files_listing is not None:
        data[FILES_LISTING_KEY] = files_listing
    if provider_logs_url is not None:
        data["provider-logs-url"] = provider_logs_url
    where = placement(sj)
    return _job_secret(sj, runtime_secret_name(where.base), data, where=where)


def secret_bytes(secret: dict[str, Any]) -> int:
    """What a Secret made here holds, as the API server counts it against its 1 MiB.

    A job's pod mounts one Secret, its runtime Secret, with the arguments in it when both
    fit: the kubelet waits at most a second for a Secret it has not seen to reach its cache
    ("failed to sync secret cache", kubernetes/kubernetes#126958), then retries the mount
    half a second later; under load one pod in seven missed that with two Secrets each
    (benchmarks/queue_burst.py), starting 1.5 s late. Large arguments with a large files
    listing still get a Secret of their own."""
    return sum(
        len(key.encode()) + len(value.encode()) for key, value in secret["stringData"].items()
    )


def output_secret(sj: dict[str, Any], *, result_url: str, logs_url: str) -> dict[str, Any]:
    """Read links for the job's owner: whoever may read Secrets in the namespace (RBAC) may
    read the job's result and logs, and nobody else; the pod never mounts this Secret."""
    return _job_secret(
        sj,
        output_secret_name(sj["metadata"]["name"]),
        {"result-url": result_url, "logs-url": logs_url},
    )


def provider_secret(sj: dict[str, Any], *, logs_url: str) -> dict[str, Any]:
    """The read link of the provider's share of a provider function's logs (where its pod
    runs: the provider's namespace for a catalog function)."""
    where = placement(sj)
    return _job_secret(sj, provider_secret_name(where.base), {"logs-url": logs_url}, where=where)


def arguments_secret(sj: dict[str, Any], arguments_json: str) -> dict[str, Any]:
    """The arguments, where the pod runs (inline ones, or a copy for a provider's pod)."""
    where = placement(sj)
    return _job_secret(
        sj, arguments_secret_name(where.base), {c.ARGUMENTS_FILE: arguments_json}, where=where
    )


def credentials_copy(sj: dict[str, Any], data: dict[str, str]) -> dict[str, Any]:
    """The user's IBM Quantum credentials beside a provider's pod (the function runs with the
    user's account, as on IBM's catalog); removed with the job."""
    where = placement(sj)
    return _job_secret(sj, credentials_secret_name(where.base), data, where=where)


def batch_job(
    sj: dict[str, Any],
    qf: dict[str, Any],
    cfg: OperatorConfig,
    *,
    arguments_secret: str,
    pull_secret: str | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job that runs the program once: deadline, TTL and one pod, no retries.
    ``arguments_secret`` holds the arguments under ARGUMENTS_FILE: the runtime Secret, or a
    Secret of their own when they do not fit beside the rest."""
    where = placement(sj)
    name = where.base
    namespace = where.namespace
    uid = sj["metadata"]["uid"]
    labels = _labels(sj)
    image = (qf.get("status") or {}).get("image") or qf["spec"].get("image") or cfg.runtime_image
    entrypoint = qf["spec"]["entrypoint"]
    env = [
        {"name": "ARGUMENTS_PATH", "value": f"{c.POD_ARGUMENTS_DIR}/{c.ARGUMENTS_FILE}"},
        {"name": "RESULTS_PATH", "value": c.POD_RESULTS_PATH},
        {"name": "DATA_PATH", "value": c.POD_DATA_DIR},
        {"name": "ENV_JOB_ID_GATEWAY", "value": uid},
        {"name": "ENV_JOB_GATEWAY_HOST", "value": cfg.job_endpoint_url},
        {"name": "QSO_ENTRYPOINT", "value": entrypoint},
        {"name": "QSO_SOURCE_DIR", "value": c.POD_SOURCE_DIR},
        {"name": "QSO_RUNTIME_DIR", "value": c.POD_RUNTIME_DIR},
        {"name": "QSO_MAX_LOG_BYTES", "value": str(cfg.max_log_bytes)},
        # The wrapper fills /data and /function_data from the files API and keeps what the
        # program writes there (runtime/folders.py), through the job endpoint.
        {"name": "QSO_FILES_SYNC", "value": "1"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {
            "name": "ENV_JOB_GATEWAY_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": runtime_secret_name(name), "key": GATEWAY_TOKEN_KEY}
            },
        },
    ]
    for key, value in sorted((qf["spec"].get("env") or {}).items()):
        env.append({"name": key, "value": value})
    task = sj["spec"].get("task")
    for key, value in sorted(((task or {}).get("env") or {}).items()):
        env.append({"name": key, "value": value})
    credentials = (sj["spec"].get("credentials") or {}).get("secretRef", {}).get("name")
    if credentials and where.remote:
        credentials = credentials_secret_name(where.base)
    if credentials:
        for var, key in (
            ("QISKIT_IBM_TOKEN", "token"),
            ("QISKIT_IBM_CHANNEL", "channel"),
            ("QISKIT_IBM_INSTANCE", "instance"),
        ):
            env.append(
                {
                    "name": var,
                    "valueFrom": {
                        "secretKeyRef": {
                            "name": credentials,
                            "key": key,
                            "optional": key != "token",
                        }
                    },
                }
            )

    folder_room = cfg.files.quota_bytes + cfg.files.max_file_bytes
    volumes: list[dict[str, Any]] = [
        {
            "name": "arguments",
            "secret": {
                "secretName": arguments_secret,
                "defaultMode": 0o440,
                "items": [{"key": c.ARGUMENTS_FILE, "path": c.ARGUMENTS_FILE}],
            },
        },
        {
            "name": "runtime",
            "secret": {"secretName": runtime_secret_name(name), "defaultMode": 0o440},
        },
        {"name": "tmp", "emptyDir": {}},
        # Room for a full folder and one more file being written: the kubelet evicts a pod
        # that goes past it instead of letting it fill the node's disk.
        {"name": "data", "emptyDir": {"sizeLimit": str(folder_room)}},
        {"name": "function-data", "emptyDir": {"sizeLimit": str(folder_room)}},
        {"name": "results", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "arguments", "mountPath": c.POD_ARGUMENTS_DIR, "readOnly": True},
        {"name": "runtime", "mountPath": c.POD_RUNTIME_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "data", "mountPath": c.POD_DATA_DIR},
        {"name": "function-data", "mountPath": c.POD_FUNCTION_DATA_DIR},
        {"name": "results", "mountPath": c.POD_RESULTS_PATH.rsplit("/", 1)[0]},
    ]
    source_cm = (qf.get("status") or {}).get("sourceConfigMap")
    if source_cm:
        volumes.append(
            {
                "name": "source",
                "configMap": {"name": source_cm, "items": source_items(qf), "defaultMode": 0o444},
            }
        )
        mounts.append({"name": "source", "mountPath": c.POD_SOURCE_DIR, "readOnly": True})

    init_containers = []
    if qf["spec"].get("image"):
        inject = wrapper_injection(cfg.runtime_image)
        init_containers.append(inject["init"])
        volumes.append(inject["volume"])
        mounts.append(inject["mount"])
        env.append(inject["env"])

    kueue_queue = kueue_queue_name(sj)
    job_labels = {**labels, **kueue_labels(sj)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": batch_job_name(name),
            "namespace": namespace,
            "labels": job_labels,
            # Owners live in the same namespace: a provider's pod is removed by the job's
            # finalizer (and its TTL) instead of the garbage collector.
            **({} if where.remote else {"ownerReferences": [owner_reference(sj)]}),
        },
        "spec": {
            # Kueue's contract: a suspended Job with its queue-name label; Kueue admits it
            # by setting suspend to false (docs/operator.md, "Kueue").
            "suspend": bool(kueue_queue),
            "backoffLimit": 0,
            "completions": 1,
            "parallelism": 1,
            # Never a second pod while the first is still terminating.
            "podReplacementPolicy": "Failed",
            "activeDeadlineSeconds": timeout_seconds(sj, cfg),
            "ttlSecondsAfterFinished": cfg.finished_pod_ttl_seconds,
            "template": {
                "metadata": {
                    "labels": labels,
                    **(
                        {"annotations": {c.ANNOTATION_PROVIDER: qf["spec"]["provider"]}}
                        if qf["spec"].get("provider")
                        else {}
                    ),
                },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 10,
                    **({"imagePullSecrets": [{"name": pull_secret}]} if pull_secret else {}),
                    "volumes": volumes,
                    "securityContext": restricted_pod_security(),
                    **({"initContainers": init_containers} if init_containers else {}),
                    # A job's tasks spread over the nodes (soft: a full node never blocks one).
                    **(
                        {
                            "topologySpreadConstraints": [
                                {
                                    "maxSkew": 1,
                                    "topologyKey": "kubernetes.io/hostname",
                                    "whenUnsatisfiable": "ScheduleAnyway",
                                    "labelSelector": {
                                        "matchLabels": {c.LABEL_TASK_PARENT: task["parent"]}
                                    },
                                }
                            ]
                        }
                        if task
                        else {}
                    ),
                    "containers": [
                        {
                            "name": "main",
                            "image": image,
                            "command": ["python3", "-m", c.RUNTIME_MODULE],
                            "workingDir": c.POD_SOURCE_DIR if source_cm else "/tmp",
                            "env": env,
                            "resources": resources(sj, qf, cfg),
                            "volumeMounts": mounts,
                            "securityContext": restricted_container_security(),
                        }
                    ],
                },
            },
        },
    }


WRAPPER_DIR = "/opt/qso"


def wrapper_injection(runtime_image: str) -> dict[str, Any]:
    """For a prebuilt image, which need not hold our wrapper (an image built for IBM's
    service does not): an init container of the runtime base image copies the wrapper (the
    standard library only) into an emptyDir the main container finds on its PYTHONPATH."""
    copy = (
        "import os, shutil, qiskit_serverless_operator as q; "
        f"shutil.copytree(os.path.dirname(q.__file__), '{WRAPPER_DIR}/qiskit_serverless_operator', "
        "ignore=shutil.ignore_patterns('__pycache__'), dirs_exist_ok=True)"
    )
    return {
        "init": {
            "name": "wrapper",
            "image": runtime_image,
            "command": ["python3", "-c", copy],
            "volumeMounts": [{"name": "qso-wrapper", "mountPath": WRAPPER_DIR}],
            "resources": {
                "requests": {"cpu": "10m", "memory": "32Mi"},
                "limits": {"memory": "128Mi"},
            },
            "securityContext": restricted_container_security(),
        },
        "volume": {"name": "qso-wrapper", "emptyDir": {"sizeLimit": "64Mi"}},
        "mount": {"name": "qso-wrapper", "mountPath": WRAPPER_DIR, "readOnly": True},
        "env": {"name": "PYTHONPATH", "value": WRAPPER_DIR},
    }


def kueue_queue_name(sj: dict[str, Any]) -> str | None:
    """The Kueue LocalQueue that admits this job, or None for the operator's own queue."""
    return (sj["metadata"].get("labels") or {}).get(c.LABEL_KUEUE_QUEUE) or None


def kueue_labels(sj: dict[str, Any]) -> dict[str, str]:
    """What Kueue reads on the batch Job: the queue's name and, if set, the priority class."""
    labels = sj["metadata"].get("labels") or {}
    if not labels.get(c.LABEL_KUEUE_QUEUE):
        return {}
    keys = (c.LABEL_KUEUE_QUEUE, c.LABEL_KUEUE_PRIORITY_CLASS)
    return {key: labels[key] for key in keys if labels.get(key)}


def job_user(sj: dict[str, Any]) -> str:
    """Who submitted the job: the verified submitter annotation, else the namespace's user."""
    meta = sj["metadata"]
    submitter = (meta.get("annotations") or {}).get(c.ANNOTATION_SUBMITTER)
    return submitter or c.namespace_user(meta["namespace"])


def queue_user(sj: dict[str, Any]) -> str:
    """Whose job it is (queue, usage, files): a task is its job's user's (the operator wrote
    it in the task's status when it checked the task), any other job its submitter's."""
    if sj["spec"].get("task"):
        return (sj.get("status") or {}).get("user") or job_user(sj)
    return job_user(sj)
