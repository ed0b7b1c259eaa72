"""An operator upgrade that changes only the runtime image: the function keeps running on its
old image while the new one builds, and keeps it if the rebuild fails; a source change still
waits for its build. Build tags follow the base image's digest, not its name."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from qiskit_serverless_operator.config import OperatorConfig
from qiskit_serverless_operator.controller import buildspec, functions
from tests.unit.operator_env import REQUIRED
from tests.unit.test_job_spec import _qf

OLD_RUNTIME = "reg/runtime:1@sha256:" + "a" * 64
NEW_RUNTIME = "reg/runtime:2@sha256:" + "b" * 64
OLD_IMAGE = "reg/qso-functions/ns/hello@sha256:" + "1" * 64
NEW_IMAGE = "reg/qso-functions/ns/hello@sha256:" + "2" * 64


def _cfg(runtime: str) -> OperatorConfig:
    return OperatorConfig.from_env(
        {
            **REQUIRED,
            "QSO_JOB_ENDPOINT_URL": "http://gw",
            "QSO_REGISTRY": "reg",
            "QSO_BUILDER_IMAGE": "reg/b:1",
            "QSO_RUNTIME_IMAGE": runtime,
        }
    )


class FakeKube:
    """Build Jobs by name; the build pod's termination message reports the pushed image."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.report: dict[str, str] = {}

    async def get(self, _res: Any, name: str, _namespace: str) -> dict[str, Any] | None:
        return self.jobs.get(name)

    async def create_or_get(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        obj = {**obj, "metadata": {**obj["metadata"], "uid": "j-1"}}
        self.jobs.setdefault(obj["metadata"]["name"], obj)
        return obj, True

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        return obj

    async def delete(self, _res: Any, name: str, _namespace: str) -> None:
        self.jobs.pop(name, None)

    async def list(self, *_args: Any, **_kwargs: Any) -> list[dict[str, Any]]:
        message = json.dumps(self.report)
        state = {"terminated": {"message": message}}
        return [{"metadata": {"name": "p"}, "status": {"containerStatuses": [{"state": state}]}}]

    async def pod_log_tail(self, *_args: Any, **_kwargs: Any) -> str:
        return "log"

    def finish(self, condition: str, report: dict[str, str]) -> None:
        (job,) = self.jobs.values()
        job["status"] = {"conditions": [{"type": condition, "status": "True"}]}
        self.report = report


class FakeStore:
    bucket = "b"

    async def aput(self, _key: str, _data: bytes) -> None:
        return None

    def presign_get(self, key: str, _seconds: int) -> str:
        return f"https://s3/{key}"


def _ctx(kube: FakeKube, runtime: str) -> Any:
    return SimpleNamespace(
        config=_cfg(runtime), kube=kube, store=FakeStore(), registry_sources={}, registry_copies={}
    )


def _build(ctx: Any, qf: dict[str, Any]) -> dict[str, Any]:
    status = functions.desired_status(qf, ctx.config.runtime_image, builds=True)
    assert status["reason"] == "NeedsBuild"
    result = asyncio.run(functions._build(ctx, qf, status))
    qf["status"] = result
    return result


def _built_on_old_runtime() -> dict[str, Any]:
    qf = _qf(dependencies=["tabulate==0.9.0"])
    kube = FakeKube()
    ctx = _ctx(kube, OLD_RUNTIME)
    assert _build(ctx, qf)["phase"] == "Building"
    kube.finish("Complete", {"image": OLD_IMAGE})
    built = _build(ctx, qf)
    assert (built["phase"], built["reason"], built["image"]) == ("Ready", "Built", OLD_IMAGE)
    return qf


def test_a_new_runtime_image_rebuilds_while_the_old_image_keeps_running() -> None:
    qf = _built_on_old_runtime()
    kube = FakeKube()
    ctx = _ctx(kube, NEW_RUNTIME)
    during = _build(ctx, qf)
    assert (during["phase"], during["reason"], during["image"]) == (
        "Ready",
        "Rebuilding",
        OLD_IMAGE,
    )
    assert len(kube.jobs) == 1  # the build runs meanwhile
    assert _build(ctx, qf)["reason"] == "Rebuilding"  # level-triggered: the same Job followed
    kube.finish("Complete", {"image": NEW_IMAGE})
    after = _build(ctx, qf)
    assert (after["phase"], after["reason"], after["image"]) == ("Ready", "Built", NEW_IMAGE)
    assert after["buildTag"] == buildspec.build_tag(NEW_RUNTIME, qf["spec"])
    assert kube.jobs == {}


def test_a_failed_rebuild_keeps_the_old_image_and_is_not_retried() -> None:
    qf = _built_on_old_runtime()
    kube = FakeKube()
    ctx = _ctx(kube, NEW_RUNTIME)
    _build(ctx, qf)
    kube.finish("Failed", {"error": "pip: no matching distribution"})
    failed = _build(ctx, qf)
    assert (failed["phase"], failed["reason"], failed["image"]) == (
        "Ready",
        "RebuildFailed",
        OLD_IMAGE,
    )
    assert "pip: no matching distribution" in failed["message"]
    kube.jobs.clear()  # the failed Job's time is up
    again = _build(ctx, qf)
    assert (again["reason"], again["image"], kube.jobs) == ("RebuildFailed", OLD_IMAGE, {})


def test_a_changed_source_waits_for_its_own_build() -> None:
    qf = _built_on_old_runtime()
    qf["spec"]["source"]["files"]["main.py"] = "print(2)"
    during = _build(_ctx(FakeKube(), NEW_RUNTIME), qf)
    assert (during["phase"], during["reason"]) == ("Building", "Building")


def test_the_build_tag_follows_the_base_image_s_digest_when_it_is_pinned() -> None:
    spec = _qf(dependencies=["tabulate==0.9.0"])["spec"]
    digest = "@sha256:" + "c" * 64
    assert buildspec.build_tag("a/runtime:0.1.0" + digest, spec) == buildspec.build_tag(
        "b/runtime:0.2.0" + digest, spec
    )
    assert buildspec.build_tag(OLD_RUNTIME, spec) != buildspec.build_tag(NEW_RUNTIME, spec)
    # A tag alone says nothing of the content: a new reference is a new base.
    assert buildspec.build_tag("a/runtime:1", spec) != buildspec.build_tag("a/runtime:2", spec)
