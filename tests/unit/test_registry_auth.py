"""Registry credentials in build and job pods, and the copies of the site's Secrets."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from qiskit_serverless_operator.config import OperatorConfig
from qiskit_serverless_operator.controller import buildspec, jobspec, registry_auth
from tests.unit.operator_env import REQUIRED
from tests.unit.test_job_spec import _qf, _sj

CONFIG = b"eyJhdXRocyI6e319"  # base64 of {"auths":{}}


def _cfg(**extra: str) -> OperatorConfig:
    return OperatorConfig.from_env(
        {
            **REQUIRED,
            "QSO_JOB_ENDPOINT_URL": "http://gw",
            "QSO_REGISTRY": "reg",
            "QSO_BUILDER_IMAGE": "reg/b:1",
            **extra,
        }
    )


def test_the_build_pod_pushes_with_the_mounted_copy_and_pulls_with_the_pull_secret() -> None:
    qf = _qf(dependencies=["tabulate==0.9.0"])
    tag = buildspec.build_tag("reg/runtime:1", qf["spec"])
    job = buildspec.build_job(
        qf, _cfg(), tag, with_ca=False, push_secret="b-push", pull_secret="qso-registry-pull"
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "qso-registry-pull"}]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DOCKER_CONFIG"] == registry_auth.DOCKER_CONFIG_DIR
    (volume,) = [v for v in pod["volumes"] if v["name"] == "registry-auth"]
    assert volume["secret"] == {
        "secretName": "b-push",
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }
    assert {"name": "registry-auth", "mountPath": "/etc/qso/registry", "readOnly": True} in (
        container["volumeMounts"]
    )
    plain = buildspec.build_job(qf, _cfg(), tag, with_ca=False)["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in plain
    assert all(v["name"] != "registry-auth" for v in plain["volumes"])


def test_the_job_pod_names_the_pull_secret_only_when_there_is_one() -> None:
    cfg = _cfg()
    pulled = jobspec.batch_job(_sj(), _qf(), cfg, arguments_secret="a", pull_secret="p")
    assert pulled["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "p"}]
    plain = jobspec.batch_job(_sj(), _qf(), cfg, arguments_secret="a")
    assert "imagePullSecrets" not in plain["spec"]["template"]["spec"]


class FakeKube:
    def __init__(self, secrets: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.secrets = secrets
        self.applied: list[dict[str, Any]] = []
        self.created: list[dict[str, Any]] = []

    async def get(self, _res: Any, name: str, namespace: str) -> dict[str, Any] | None:
        return self.secrets.get((namespace, name))

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(obj)
        return obj

    async def create_or_get(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        self.created.append(obj)
        return obj, True


def _ctx(kube: FakeKube, **extra: str) -> Any:
    return SimpleNamespace(config=_cfg(**extra), kube=kube, registry_sources={}, registry_copies={})


def test_the_pull_secret_is_copied_once_per_namespace_and_again_when_it_changes() -> None:
    source = {"data": {".dockerconfigjson": CONFIG.decode()}}
    kube = FakeKube({("site", "pull"): source})
    ctx = _ctx(kube, QSO_REGISTRY_PULL_SECRET="site/pull")
    assert asyncio.run(registry_auth.ensure_pull_secret(ctx, "alice")) == "qso-registry-pull"
    assert asyncio.run(registry_auth.ensure_pull_secret(ctx, "alice")) == "qso-registry-pull"
    asyncio.run(registry_auth.ensure_pull_secret(ctx, "bob"))
    assert [(s["metadata"]["namespace"], s["type"]) for s in kube.applied] == [
        ("alice", "kubernetes.io/dockerconfigjson"),
        ("bob", "kubernetes.io/dockerconfigjson"),
    ]
    assert kube.applied[0]["data"] == {".dockerconfigjson": CONFIG.decode()}
    # A rotated credential: once the source is read again, each namespace gets the new copy.
    source["data"] = {".dockerconfigjson": "bmV3"}
    ctx.registry_sources.clear()
    asyncio.run(registry_auth.ensure_pull_secret(ctx, "alice"))
    assert kube.applied[-1]["data"] == {".dockerconfigjson": "bmV3"}
    assert len(kube.applied) == 3


def test_no_pull_secret_configured_means_none_and_no_copies() -> None:
    kube = FakeKube({})
    assert asyncio.run(registry_auth.ensure_pull_secret(_ctx(kube), "alice")) is None
    assert kube.applied == []


def test_a_missing_site_secret_is_a_retried_error_that_names_it() -> None:
    ctx = _ctx(FakeKube({}), QSO_REGISTRY_PULL_SECRET="site/pull")
    with pytest.raises(kopf.TemporaryError, match="site/pull"):
        asyncio.run(registry_auth.ensure_pull_secret(ctx, "alice"))
    wrong = FakeKube({("site", "pull"): {"data": {"config.json": "x"}}})
    with pytest.raises(kopf.TemporaryError, match=r"has no \.dockerconfigjson"):
        asyncio.run(
            registry_auth.ensure_pull_secret(_ctx(wrong, QSO_REGISTRY_PULL_SECRET="site/pull"), "a")
        )


def test_the_push_copy_belongs_to_its_build_job() -> None:
    kube = FakeKube({("qso", "push"): {"data": {".dockerconfigjson": CONFIG.decode()}}})
    ctx = _ctx(kube, QSO_REGISTRY_PUSH_SECRET="qso/push")
    build = {"metadata": {"name": "qf-b-1", "uid": "u-1"}}
    assert asyncio.run(registry_auth.push_secret(ctx, "alice", build)) == "qf-b-1-push"
    (made,) = kube.created
    assert made["metadata"]["namespace"] == "alice"
    (owner,) = made["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", "qf-b-1", "u-1")


def test_a_bare_name_is_in_the_operator_s_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "qso-system")
    assert registry_auth.source("push") == ("qso-system", "push")
    assert registry_auth.source("other/push") == ("other", "push")
