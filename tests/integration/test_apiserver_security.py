"""The apiserver enforces what later issues rely on: RBAC, signed SA tokens, Pod Security."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.kube import new_service_account_client, wait_until


def test_service_account_token_is_authenticated_and_rbac_scoped(
    api_client: client.ApiClient, core: client.CoreV1Api, namespace: str
) -> None:
    as_reader = client.CoreV1Api(new_service_account_client(api_client, namespace, "reader"))

    with pytest.raises(ApiException) as denied:
        as_reader.list_namespaced_config_map(namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in denied.value.body

    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="read-cm"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="read-cm"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="read-cm"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
            ],
        ),
    )

    def allowed() -> bool:
        try:
            as_reader.list_namespaced_config_map(namespace)
            return True
        except ApiException as exc:
            assert exc.status == 403
            return False

    wait_until(allowed, timeout=30, what="the RoleBinding to take effect")
    # Still scoped: the grant covers configmaps in this namespace only.
    with pytest.raises(ApiException) as still_denied:
        as_reader.list_namespaced_secret(namespace)
    assert still_denied.value.status == 403


def test_pod_security_admission_rejects_a_privileged_pod(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="privileged"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="c",
                    image="example.invalid/none",
                    security_context=client.V1SecurityContext(privileged=True),
                )
            ]
        ),
    )
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(namespace, pod, dry_run="All")
    assert rejected.value.status == 403
    message = json.loads(rejected.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "privileged" in message
