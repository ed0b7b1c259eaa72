"""Two replicas, real failover: the active one is SIGKILLed and its pod force-deleted three
times; each time a job made at that moment is admitted by another replica (the bound and
its p50/max over ten kills: benchmarks/failover.py and docs/operator.md)."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.failover import PROGRAM, takeover
from tests.serverless import custom, make_function, wait_function_phase


def test_a_standby_takes_over_after_the_active_replica_is_killed(
    cluster: dict[str, Any], api_client: client.ApiClient, namespace: str, in_cluster: list[str]
) -> None:
    in_cluster.append(namespace)
    api = custom(api_client)
    make_function(api, namespace, "quick", {"main.py": PROGRAM})
    wait_function_phase(api, namespace, "quick", "Ready", timeout=120)
    takeovers = [takeover(cluster, api, namespace, "quick") for _ in range(3)]
    print([(t.killed, t.admitted_by, round(t.seconds, 1)) for t in takeovers])
    for t in takeovers:
        # Admitted at all (the wait is 180 s: liveness, not speed), and not by the dead pod.
        assert t.seconds != float("inf"), t
        assert t.admitted_by is not None and t.admitted_by != t.killed, t
    assert len({t.killed for t in takeovers}) == 3  # a new active replica each time
