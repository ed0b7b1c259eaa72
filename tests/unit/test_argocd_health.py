"""The Argo CD health checks (manifests/argocd/health/*.lua), run in a real Lua runtime.

Argo CD runs each script with the live object as the global ``obj`` and reads the returned
table's ``status`` and ``message``; lupa does the same here for every phase.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa
import pytest
import yaml

from qiskit_serverless_operator import constants as c

pytestmark = pytest.mark.unit

ARGOCD = Path(__file__).resolve().parents[2] / "manifests" / "argocd"
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = _to_lua(lua, obj)
    result = lua.execute((ARGOCD / "health" / script).read_text())
    status, message = result["status"], result["message"]
    assert status in ARGO_STATUSES, status
    assert isinstance(message, str) and message, f"{script} gave no message for {obj}"
    return status, message


def _to_lua(lua: lupa.LuaRuntime, value: Any) -> Any:
    # Argo CD hands the object over as nested Lua tables, not Python proxies.
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def _function(phase: str | None, message: str | None = None, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": c.API_VERSION,
        "kind": c.FUNCTION_KIND,
        "metadata": {"name": "hello", "generation": 1},
        "spec": {"title": "hello"},
    }
    if phase is not None:
        body["status"] = {"phase": phase, "observedGeneration": 1, **status}
        if message is not None:
            body["status"]["message"] = message
    return body


def _job(phase: str | None, message: str | None = None, spec: dict | None = None, **status):
    body: dict[str, Any] = {
        "apiVersion": c.API_VERSION,
        "kind": c.JOB_KIND,
        "metadata": {"name": "hello", "generation": 1},
        "spec": {"function": "hello", **(spec or {})},
    }
    if phase is not None:
        body["status"] = {"phase": phase, **status}
        if message is not None:
            body["status"]["message"] = message
    return body


FUNCTION_EXPECTED = {
    c.FunctionPhase.PENDING: "Progressing",
    c.FunctionPhase.BUILDING: "Progressing",
    c.FunctionPhase.READY: "Healthy",
    c.FunctionPhase.FAILED: "Degraded",
}

JOB_EXPECTED = {
    c.JobPhase.QUEUED: "Progressing",
    c.JobPhase.INITIALIZING: "Progressing",
    c.JobPhase.RUNNING: "Progressing",
    c.JobPhase.DONE: "Healthy",
    c.JobPhase.ERROR: "Degraded",
    c.JobPhase.CANCELED: "Suspended",
}


def test_every_phase_has_an_expectation() -> None:
    assert set(FUNCTION_EXPECTED) == set(c.FunctionPhase)
    assert set(JOB_EXPECTED) == set(c.JobPhase)


@pytest.mark.parametrize("phase", list(c.FunctionPhase))
def test_function_health_per_phase(phase: c.FunctionPhase) -> None:
    status, message = health("qiskitfunction.lua", _function(phase.value, f"about {phase}"))
    assert status == FUNCTION_EXPECTED[phase]
    assert message == f"about {phase}"


def test_function_health_without_message_still_explains() -> None:
    assert health("qiskitfunction.lua", _function("Ready", image="r/x@sha256:ab")) == (
        "Healthy",
        "Ready: r/x@sha256:ab",
    )
    assert health("qiskitfunction.lua", _function("Failed"))[0] == "Degraded"


def test_function_without_status_is_progressing() -> None:
    status, message = health("qiskitfunction.lua", _function(None))
    assert status == "Progressing" and "operator" in message


def test_function_with_unseen_generation_is_progressing_even_if_ready() -> None:
    body = _function("Ready", "was ready")
    body["metadata"]["generation"] = 2
    status, message = health("qiskitfunction.lua", body)
    assert status == "Progressing" and "generation 2" in message


def test_function_unknown_phase() -> None:
    assert health("qiskitfunction.lua", _function("Exploded"))[0] == "Unknown"


@pytest.mark.parametrize("phase", list(c.JobPhase))
def test_job_health_per_phase(phase: c.JobPhase) -> None:
    status, message = health("serverlessjob.lua", _job(phase.value, f"about {phase}"))
    assert status == JOB_EXPECTED[phase]
    assert f"about {phase}" in message


def test_job_running_message_shows_sub_status() -> None:
    status, message = health("serverlessjob.lua", _job("RUNNING", subStatus="MAPPING"))
    assert (status, message) == ("Progressing", "RUNNING: MAPPING")


def test_suspended_queued_job_is_suspended() -> None:
    status, _ = health("serverlessjob.lua", _job("QUEUED", spec={"suspend": True}))
    assert status == "Suspended"
    assert health("serverlessjob.lua", _job("QUEUED", spec={"suspend": False}))[0] == "Progressing"


def test_job_without_status_and_unknown_phase() -> None:
    assert health("serverlessjob.lua", _job(None))[0] == "Progressing"
    assert health("serverlessjob.lua", _job("LOST"))[0] == "Unknown"


def test_argocd_cm_keys_name_the_scripts_for_our_kinds() -> None:
    kustomization = yaml.safe_load((ARGOCD / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    assert generator["name"] == "argocd-cm"
    entries = dict(item.split("=", 1) for item in generator["files"])
    # Argo CD's key format: resource.customizations.health.<group>_<Kind>
    assert entries == {
        f"resource.customizations.health.{c.GROUP}_{c.FUNCTION_KIND}": "health/qiskitfunction.lua",
        f"resource.customizations.health.{c.GROUP}_{c.JOB_KIND}": "health/serverlessjob.lua",
    }


def test_applications_sync_operator_before_functions() -> None:
    apps = {
        path.name: yaml.safe_load(path.read_text()) for path in ARGOCD.glob("application-*.yaml")
    }
    waves = {
        doc["metadata"]["name"]: int(doc["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        for doc in apps.values()
    }
    assert waves["qiskit-serverless-operator"] < waves["qiskit-functions-quantum-team"]
    operator = apps["application-operator.yaml"]
    assert (ARGOCD.parents[0] / ".." / operator["spec"]["source"]["path"]).resolve().is_dir()
    for doc in apps.values():
        assert doc["apiVersion"] == "argoproj.io/v1alpha1" and doc["kind"] == "Application"
        assert "ServerSideApply=true" in doc["spec"]["syncPolicy"]["syncOptions"]
