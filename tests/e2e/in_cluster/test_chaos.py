"""The chaos run, small: a dozen jobs of every kind on the in-cluster install (two operator
replicas) while the active replica is SIGKILLed twice, the API server and the kubelet are
restarted, object storage is down for 15 s, and a running job's pod and another's Secret are
deleted by hand. Nothing may be lost, doubled, stuck or unexplained (benchmarks/chaos.py is
the full-size run and its table)."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.chaos import Plan, run, table


def test_jobs_survive_faults(
    cluster: dict[str, Any], api_client: client.ApiClient, namespace: str, in_cluster: list[str]
) -> None:
    in_cluster.append(namespace)
    plan = Plan(
        jobs=12,
        operator_kills=2,
        apiserver_restarts=1,
        s3_outage_seconds=15,
        kubelet_restarts=1,
        long_seconds=40,
        gap_seconds=(2.0, 5.0),
    )
    report = run(cluster, api_client, namespace, plan)
    print(table(report, plan))

    assert report.submitted == plan.jobs
    assert report.not_terminal == [], report.not_terminal
    assert sum(report.phases.values()) == plan.jobs
    assert report.unexpected == [], report.unexpected
    assert report.duplicates == [], report.duplicates
    assert report.unreadable_results == [], report.unreadable_results
    assert report.unaccounted == [], report.unaccounted
    # Every kind was there to be tested, and every fault was recovered from.
    assert report.phases["DONE"] and report.phases["ERROR"] and report.phases["CANCELED"]
    assert sorted(report.sabotaged.values()) == ["pod", "secret"]
    recovered = {what for what, _, seconds in report.recoveries if seconds != float("inf")}
    assert recovered == {"operator", "apiserver", "s3", "kubelet"}, report.recoveries
    assert len(report.recoveries) == 5
