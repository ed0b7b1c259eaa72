"""The SDK's view of job history: the history API (``history.serverless.qiskit.org``) that
the REST gateway serves behind the Kubernetes API server (an aggregated API).

It lists every job of a namespace, live or archived, paged on the server in the one job
order, and reads an archived job and its result and logs, all with the caller's kubeconfig:
the cluster's RBAC on ``serverlessjobrecords`` decides. A cluster without it (no archive, no
gateway) answers 404 on discovery, and the SDK reads the ServerlessJobs themselves instead.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

GROUP = "history.serverless.qiskit.org"
VERSION = "v1alpha1"
PLURAL = "serverlessjobrecords"
BASE = f"/apis/{GROUP}/{VERSION}"
JOB_NAME_ANNOTATION = "serverless.qiskit.org/job-name"


class HistoryApi:
    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self._api = api
        self.namespace = namespace
        self._served: bool | None = None

    def _call(self, method: str, path: str, query: dict[str, Any] | None = None) -> Any:
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        request = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=params,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return json.loads(response.data or b"null")

    def served(self) -> bool:
        """Whether the cluster serves the history API (asked once per client)."""
        if self._served is None:
            try:
                self._call("GET", BASE)
                self._served = True
            except ApiException as exc:
                if exc.status not in (404, 503):
                    raise
                # 404: not installed; 503: installed but its gateway is down (read live jobs).
                self._served = False
        return self._served

    def _records(self) -> str:
        return f"{BASE}/namespaces/{urllib.parse.quote(self.namespace)}/{PLURAL}"

    def list(
        self,
        limit: int | None,
        offset: int,
        function: str | None = None,
        phase: str | None = None,
    ) -> list[dict[str, Any]]:
        """The namespace's jobs (a job's tasks left out), newest first."""
        fields = ["task=false"]
        if function:
            fields.append(f"spec.function={function}")
        if phase:
            fields.append(f"status.phase={phase}")
        found = self._call(
            "GET",
            self._records(),
            {"limit": limit, "offset": offset or None, "fieldSelector": ",".join(fields)},
        )
        return list(found.get("items") or [])

    def get(self, job_id: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", f"{self._records()}/{urllib.parse.quote(job_id)}")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def output(self, job_id: str, which: str) -> str | None:
        """A job's ``result``, ``logs`` or ``providerlogs`` text (None: there is none)."""
        found = self._call("GET", f"{self._records()}/{urllib.parse.quote(job_id)}/{which}")
        return found.get("text")

    def delete(self, job_id: str) -> None:
        self._call("DELETE", f"{self._records()}/{urllib.parse.quote(job_id)}")


def job_body(record: dict[str, Any]) -> dict[str, Any]:
    """A history record as the ServerlessJob it was (its name, its id as the UID)."""
    meta = record["metadata"]
    annotations = dict(meta.get("annotations") or {})
    name = annotations.pop(JOB_NAME_ANNOTATION, meta["name"])
    return {
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "creationTimestamp": meta.get("creationTimestamp"),
            "annotations": annotations,
            "labels": meta.get("labels") or {},
        },
        "spec": record.get("spec") or {},
        "status": record.get("status") or {},
    }
