"""The REST gateway's pieces without a cluster: its JSON shapes, error shapes, routing, the
authentication and authorization caches, and refusing oversized uploads (the API server and
object storage are stand-ins here; tests/e2e/in_cluster/test_rest_gateway.py runs it for real)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from qiskit_serverless_operator.config import ConfigError
from qiskit_serverless_operator.gateway import app as gateway_app
from qiskit_serverless_operator.gateway import shapes
from qiskit_serverless_operator.gateway.auth import Authority, _Identity, namespace_of
from qiskit_serverless_operator.gateway.config import GatewayConfig
from qiskit_serverless_operator.gateway.errors import GatewayError
from tests.unit.operator_env import REQUIRED

pytestmark = pytest.mark.unit


def _job(phase: str | None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "j",
            "uid": "11111111-2222-3333-4444-555555555555",
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "annotations": {"serverless.qiskit.org/submitted-at": "1764583200.250000"},
        },
        "spec": {"function": "f", "stop": status.pop("stop", False)},
        "status": {"phase": phase, **status} if phase else {},
    }


@pytest.mark.parametrize(
    ("phase", "status"),
    [
        (None, "QUEUED"),
        ("QUEUED", "QUEUED"),
        ("INITIALIZING", "PENDING"),
        ("RUNNING", "RUNNING"),
        ("DONE", "SUCCEEDED"),
        ("ERROR", "FAILED"),
        ("CANCELED", "STOPPED"),
    ],
)
def test_phases_in_the_gateways_words(phase: str | None, status: str) -> None:
    assert shapes.job_status(_job(phase)) == status


def test_a_stop_not_yet_done_reads_stopping_and_the_client_maps_every_status() -> None:
    from qiskit_serverless.core.job import _map_status_from_serveless

    assert shapes.job_status(_job("RUNNING", stop=True)) == "STOPPING"
    assert shapes.job_status(_job("CANCELED", stop=True)) == "STOPPED"
    mapped = {_map_status_from_serveless(s) for s in shapes.GATEWAY_STATUS.values()}
    assert mapped == {"QUEUED", "INITIALIZING", "RUNNING", "DONE", "ERROR", "CANCELED"}


def test_job_json_has_the_fields_the_client_reads() -> None:
    shape = shapes.job_json(_job("RUNNING", subStatus="MAPPING"), None)
    assert shape["id"] == "11111111-2222-3333-4444-555555555555"
    assert shape["status"] == "RUNNING" and shape["sub_status"] == "MAPPING"
    assert shape["created"] == "2025-12-01T10:00:00.250000Z"
    assert shape["program"] == {"id": None, "title": "f", "provider": None}
    # A sub-status outlives nothing: only a RUNNING job has one.
    assert shapes.job_json(_job("DONE", subStatus="MAPPING"), None)["sub_status"] is None


def test_function_json_leaves_provider_out_for_a_users_own_function() -> None:
    from qiskit_serverless.core.function import RunnableQiskitFunction

    qf = {
        "metadata": {"uid": "u"},
        "spec": {"title": "t", "entrypoint": "main.py", "dependencies": ["a==1"]},
    }
    shape = shapes.function_json(qf)
    assert "provider" not in shape and shape["dependencies"] == '["a==1"]'
    decoded = RunnableQiskitFunction.from_json({**shape, "client": None})
    assert str(decoded) == "QiskitFunction(t)" and decoded.arguments_schema is None
    qf["spec"]["provider"] = "acme"
    assert str(RunnableQiskitFunction.from_json({**shapes.function_json(qf), "client": None})) == (
        "QiskitFunction(acme/t)"
    )


def test_events_carry_what_error_message_formats() -> None:
    from qiskit_serverless.core.job_event import JobEvent
    from qiskit_serverless.utils.errors import format_err_event

    sj = _job(
        "ERROR",
        reason="ProgramFailed",
        message="the program exited with code 7",
        completionTime="2026-12-01T10:01:00Z",
        events=[{"created": "t", "code": "E1", "message": "gone", "exception": "ValueError"}],
    )
    events = [JobEvent.from_json(e) for e in shapes.job_events(sj)]
    texts = [format_err_event(e) for e in events]
    assert "| Message: gone" in texts[0] and "| Code: E1" in texts[0]
    assert "| Message: the program exited with code 7" in texts[1]
    assert "| Code: ProgramFailed" in texts[1]
    assert shapes.job_events(_job("DONE")) == []


def test_namespace_from_the_instance_or_the_service_account() -> None:
    sa = _Identity("system:serviceaccount:team-a:alice", (), "", ())
    person = _Identity("alice@example.com", (), "", ())
    assert namespace_of("team-b", sa) == "team-b"
    assert namespace_of(None, sa) == "team-a"
    assert namespace_of("crn:v1:bluemix:public:quantum", sa) == "team-a"
    with pytest.raises(GatewayError) as missing:
        namespace_of(None, person)
    assert missing.value.status == 400 and "instance" in missing.value.message
    with pytest.raises(GatewayError, match="not a namespace name"):
        namespace_of("Not_A_Namespace", person)


class FakeApi:
    """Plays the API server's TokenReview and SubjectAccessReview answers."""

    def __init__(self, users: dict[str, str], allowed: set[tuple[str, str, str]]) -> None:
        self.users, self.allowed = users, allowed
        self.calls: list[str] = []

    async def create(self, obj: Any) -> Any:
        body = obj.to_dict()
        self.calls.append(body["kind"])
        spec = body["spec"]
        if body["kind"] == "TokenReview":
            user = self.users.get(spec["token"])
            return SimpleNamespace(
                status=SimpleNamespace(
                    authenticated=bool(user),
                    error=None if user else "invalid bearer token",
                    user=SimpleNamespace(username=user, groups=["g"], uid="", extra={})
                    if user
                    else None,
                )
            )
        attrs = spec["resourceAttributes"]
        ok = (spec["user"], attrs["verb"], attrs["namespace"]) in self.allowed
        return SimpleNamespace(status=SimpleNamespace(allowed=ok, reason="" if ok else "no"))

    async def list(self, *_: Any, **__: Any):  # readyz
        if False:
            yield None


class FakeKube:
    def __init__(self, api: FakeApi, functions: list[dict[str, Any]]) -> None:
        self.client = api
        self.functions = functions

    async def list(self, res: Any, namespace: str, **_: Any) -> list[dict[str, Any]]:
        return [f for f in self.functions if namespace in ("*", f["metadata"]["namespace"])]

    async def each(self, res: Any, namespace: str, **_: Any):
        for item in await self.list(res, namespace):
            yield item

    async def get(self, *_: Any) -> None:
        return None


ALICE = "system:serviceaccount:ns:alice"


def _gateway(**config: Any):
    api = FakeApi({"good": ALICE}, {(ALICE, "list", "ns"), (ALICE, "get", "ns")})
    qf = {"metadata": {"namespace": "ns", "uid": "u1", "name": "f"}, "spec": {"title": "f"}}
    cfg = GatewayConfig.from_env({**REQUIRED, **config})
    return gateway_app.build(cfg, FakeKube(api, [qf])), api


def _run(gateway, scenario) -> Any:
    async def main() -> Any:
        async with TestClient(TestServer(gateway_app.api(gateway))) as http:
            return await scenario(http)

    return asyncio.run(main())


def test_routes_answer_with_and_without_the_slash_and_errors_are_json() -> None:
    gateway, api = _gateway()
    headers = {"Authorization": "Bearer good", "Service-CRN": "ns"}

    async def scenario(http: TestClient) -> list[tuple[int, Any]]:
        out = []
        for method, path, hdrs in (
            ("GET", "/api/v1/programs", headers),
            ("GET", "/api/v1/programs/", headers),
            ("GET", "/api/v1/programs/", {}),
            ("GET", "/api/v1/programs/", {"Authorization": "Bearer bad"}),
            ("GET", "/api/v1/programs/", {**headers, "Service-CRN": "other"}),
            ("GET", "/api/v1/nothing", headers),
            ("DELETE", "/api/v1/programs/", headers),
        ):
            response = await http.request(method, path, headers=hdrs)
            out.append((response.status, await response.json()))
        return out

    answers = _run(gateway, scenario)
    assert answers[0] == answers[1] == (200, [shapes.function_json(gateway.kube.functions[0])])
    assert answers[2] == (401, {"detail": "Authorization token was not provided."})
    assert answers[3][0] == 401 and "Authorization token is not valid." in answers[3][1]["detail"]
    assert answers[4][0] == 403 and 'in namespace "other"' in answers[4][1]["message"]
    assert answers[5] == (404, {"message": "no such endpoint: GET /api/v1/nothing"})
    assert answers[6] == (405, {"message": "DELETE is not allowed on /api/v1/programs/"})
    # One TokenReview per token and one SubjectAccessReview per question, then the caches.
    assert api.calls.count("TokenReview") == 2
    assert api.calls.count("SubjectAccessReview") == 2


def test_an_upload_over_the_limit_is_refused_with_413_and_the_client_reads_it() -> None:
    gateway, _ = _gateway(QSO_GATEWAY_MAX_UPLOAD_BYTES="1000")

    async def scenario(http: TestClient) -> tuple[int, Any]:
        form = FormData()
        form.add_field("title", "f")
        form.add_field("entrypoint", "main.py")
        form.add_field("artifact", b"x" * 5000, filename="artifact.tar")
        response = await http.post(
            "/api/v1/programs/upload/",
            data=form,
            headers={"Authorization": "Bearer good", "Service-CRN": "ns"},
        )
        return response.status, await response.json()

    status, body = _run(gateway, scenario)
    assert status == 413 and body == {
        "message": "artifact.tar is over the 1000 bytes an upload may hold"
    }


def test_an_unexpected_error_is_a_500_without_details() -> None:
    gateway, api = _gateway()

    async def broken(_: Any) -> Any:
        raise RuntimeError("secret detail")

    api.create = broken  # type: ignore[method-assign]

    async def scenario(http: TestClient) -> tuple[int, Any]:
        response = await http.get("/api/v1/programs/", headers={"Authorization": "Bearer x"})
        return response.status, await response.json()

    assert _run(gateway, scenario) == (500, {"message": "Internal server error"})


def test_configuration_is_checked_by_name() -> None:
    with pytest.raises(ConfigError, match="missing settings: QSO_S3_BUCKET"):
        GatewayConfig.from_env({})
    with pytest.raises(ConfigError, match="QSO_S3_ACCESS_KEY and QSO_S3_SECRET_KEY"):
        GatewayConfig.from_env({**REQUIRED, "QSO_S3_SECRET_KEY": ""})
    with pytest.raises(ConfigError, match="QSO_GATEWAY_TLS_CERT and QSO_GATEWAY_TLS_KEY"):
        GatewayConfig.from_env({**REQUIRED, "QSO_GATEWAY_TLS_CERT": "/x"})
    with pytest.raises(ConfigError, match="no file"):
        GatewayConfig.from_env(
            {**REQUIRED, "QSO_GATEWAY_TLS_CERT": "/nope.crt", "QSO_GATEWAY_TLS_KEY": "/nope.key"}
        )
    with pytest.raises(ConfigError, match="QSO_GATEWAY_PORT must be an integer"):
        GatewayConfig.from_env({**REQUIRED, "QSO_GATEWAY_PORT": "https"})


def test_authority_caches_by_token_hash_not_the_token() -> None:
    api = FakeApi({"good": ALICE}, set())
    authority = Authority(SimpleNamespace(client=api))  # type: ignore[arg-type]
    asyncio.run(authority._identity("good"))
    assert all("good" not in json.dumps(key) for key in authority._tokens._items)


def _self_signed(tmp_path, name: str) -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path, monkeypatch) -> None:
    import os
    import ssl

    from cryptography import x509

    from qiskit_serverless_operator.gateway import __main__ as gateway_main

    cert, key = _self_signed(tmp_path, "first")
    cfg = GatewayConfig.from_env(
        {**REQUIRED, "QSO_GATEWAY_TLS_CERT": cert, "QSO_GATEWAY_TLS_KEY": key}
    )
    context = gateway_main.tls_context(cfg)
    assert context is not None
    monkeypatch.setattr(gateway_main, "CERT_CHECK_SECONDS", 0.05)

    async def served_name() -> str:
        async def handle(reader, writer) -> None:
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        client_context = ssl.create_default_context()
        client_context.check_hostname = False
        client_context.verify_mode = ssl.CERT_NONE
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        server.close()
        await server.wait_closed()
        name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        return name

    async def scenario() -> tuple[str, str]:
        before = await served_name()
        reloader = asyncio.create_task(gateway_main._reload_certificates(cfg, context))
        await asyncio.sleep(0.1)
        _self_signed(tmp_path, "second")  # cert-manager rewrites the mounted Secret
        stat = os.stat(cert)
        os.utime(cert, (stat.st_atime, stat.st_mtime + 5))
        await asyncio.sleep(0.3)
        after = await served_name()
        reloader.cancel()
        return before, after

    assert asyncio.run(scenario()) == ("CN=first", "CN=second")
