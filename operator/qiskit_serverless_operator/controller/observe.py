"""What phase a ServerlessJob is in, derived from its batch Job and pod (pure functions).

The operator never remembers phases: each reconcile reads the Job and pod and asks
``observe``, then ``advance`` keeps phases from moving backwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..constants import PHASE_ORDER, TERMINAL_JOB_PHASES, JobPhase

# Waiting reasons that will not fix themselves: the job ends in ERROR rather than hang.
_FATAL_WAITING = {
    "ErrImagePull": "ImagePullFailed",
    "ImagePullBackOff": "ImagePullFailed",
    "InvalidImageName": "ImagePullFailed",
    "CreateContainerConfigError": "PodConfigError",
    "CreateContainerError": "PodConfigError",
    "RunContainerError": "PodConfigError",
}


# A pod being scheduled, its image pulled (the kubelet says ContainerCreating meanwhile) and
# its container created is one step for the job: INITIALIZING, PodPending. Each status write
# is API server and etcd work for every job, and these two came a second apart.
_STARTING = frozenset({"PodPending", "ContainerCreating"})


# Terminated reasons of a container the runtime failed to start: the program never ran
# (containerd reports exit code 128, "StartError", e.g. when the kubelet restarts in the middle
# of starting it), so a new pod is safe; any other exit code is the program's own.
_NEVER_STARTED = frozenset({"StartError", "ContainerCannotRun"})


@dataclass(frozen=True)
class Observation:
    phase: JobPhase
    reason: str
    message: str = ""
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    # The pod failed before the program ran: the operator may start the job in a new pod.
    never_started: bool = False
    # DONE from the program's exit code, before the batch Job's own verdict.
    ahead_of_job: bool = False


def _conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not obj:
        return {}
    return {
        c["type"]: c
        for c in (obj.get("status") or {}).get("conditions") or []
        if c.get("status") == "True"
    }


def _main_container(pod: dict[str, Any] | None) -> dict[str, Any]:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == "main":
            return status
    return {}


def _start_failure(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    """The terminated state of a container (init or main) the runtime failed to start."""
    status = (pod or {}).get("status") or {}
    for container in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated.get("reason") in _NEVER_STARTED:
            return {"container": container.get("name"), **terminated}
    return None


def observe(
    job: dict[str, Any] | None, pod: dict[str, Any] | None, timeout_seconds: int | None = None
) -> Observation:
    """The phase the cluster shows for one ServerlessJob's batch Job and pod."""
    if job is None:
        return Observation(JobPhase.QUEUED, "NotStarted")
    conditions = _conditions(job)
    container = _main_container(pod)
    terminated = (container.get("state") or {}).get("terminated") or {}
    exit_code = terminated.get("exitCode")
    finished_at = terminated.get("finishedAt") or (job.get("status") or {}).get("completionTime")

    start_failure = _start_failure(pod)
    if start_failure is not None:
        detail = start_failure.get("message") or start_failure["reason"]
        return Observation(
            JobPhase.ERROR,
            "PodStartFailed",
            f"the container runtime could not start the job's container "
            f"{start_failure['container']!r}, so the program never ran: {detail}",
            start_failure.get("exitCode"),
            finished_at=finished_at,
            never_started=True,
        )
    if "Complete" in conditions or "SuccessCriteriaMet" in conditions:
        return Observation(
            JobPhase.DONE,
            "Succeeded",
            "the program finished",
            exit_code or 0,
            finished_at=finished_at,
        )
    failed = conditions.get("Failed") or conditions.get("FailureTarget")
    # Deleted from outside the program: by hand, or by the Job controller at the deadline,
    # which deletes the pod before it writes why. Until the Job says, the job is not over.
    deleting = pod is not None and bool((pod.get("metadata") or {}).get("deletionTimestamp"))
    if failed:
        if failed.get("reason") == "DeadlineExceeded":
            limit = f" of {timeout_seconds} s" if timeout_seconds else ""
            return Observation(
                JobPhase.ERROR,
                "Timeout",
                f"the job ran past its timeout{limit} (spec.timeoutSeconds) and was stopped",
                exit_code,
                finished_at=finished_at,
            )
        if terminated.get("reason") == "OOMKilled":
            return Observation(
                JobPhase.ERROR,
                "OutOfMemory",
                "the program ran out of memory (raise spec.resources.limits.memory)",
                exit_code,
                finished_at=finished_at,
            )
        if deleting:
            # Not by the operator: it stops a job through spec.stop (CANCELED) and removes a
            # finished one's pod only after its end is recorded.
            return Observation(
                JobPhase.ERROR,
                "PodDeleted",
                f"the job's pod {(pod or {})['metadata']['name']} was deleted while the job "
                "ran; stop a job with spec.stop (job.stop()) instead",
                exit_code,
                finished_at=finished_at,
            )
        if exit_code is not None:
            return Observation(
                JobPhase.ERROR,
                "ProgramFailed",
                f"the program exited with code {exit_code}",
                exit_code,
                finished_at=finished_at,
            )
        if pod is None and failed.get("reason") == "BackoffLimitExceeded":
            return Observation(
                JobPhase.ERROR,
                "PodLost",
                "the job's pod is gone (deleted, or its node lost) before it finished; a "
                "job's pod is never started twice",
                None,
                finished_at=finished_at,
            )
        return Observation(
            JobPhase.ERROR,
            "JobFailed",
            failed.get("message") or "the job's pod failed",
            None,
            finished_at=finished_at,
        )

    if pod is None:
        return Observation(JobPhase.INITIALIZING, "PodPending", "creating the job's pod")
    waiting = (container.get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in _FATAL_WAITING:
        detail = waiting.get("message") or waiting["reason"]
        image = container.get("image") or ""
        if _FATAL_WAITING[waiting["reason"]] == "ImagePullFailed":
            message = f"image {image} cannot be pulled: {detail}"
        else:
            message = f"the job's pod cannot start: {detail}"
        return Observation(JobPhase.ERROR, _FATAL_WAITING[waiting["reason"]], message)
    running = (container.get("state") or {}).get("running")
    if running:
        return Observation(
            JobPhase.RUNNING,
            "Running",
            "the program is running",
            started_at=running.get("startedAt"),
        )
    if terminated:
        # The container ended; the Job controller writes its verdict a second or two later
        # (it batches pod updates). Exit code 0 of the one container of a pod that never
        # restarts is the program's success, its result already stored by the wrapper:
        # DONE now. Not for a pod being deleted (the Job controller at the deadline, or by
        # hand): a program may exit 0 on SIGTERM, and what the Job says decides then.
        if exit_code == 0 and not deleting:
            return Observation(
                JobPhase.DONE,
                "Succeeded",
                "the program finished",
                0,
                finished_at=finished_at,
                ahead_of_job=True,
            )
        if exit_code == 0:
            return Observation(JobPhase.RUNNING, "Finishing")
        if deleting:
            return Observation(JobPhase.RUNNING, "PodTerminating", "the job's pod is being deleted")
        return Observation(
            JobPhase.ERROR,
            "ProgramFailed",
            f"the program exited with code {exit_code}",
            exit_code,
            finished_at=finished_at,
        )
    reason = waiting.get("reason") or "PodPending"
    if reason in _STARTING:
        # The kubelet's normal start: one status write for it, not one per step.
        return Observation(JobPhase.INITIALIZING, "PodPending", "creating the job's pod")
    return Observation(JobPhase.INITIALIZING, reason, "starting the job's pod")


def advance(current: str | None, proposed: JobPhase) -> JobPhase:
    """Phases never move backwards and a terminal phase is final."""
    if not current:
        return proposed
    now = JobPhase(current)
    if now in TERMINAL_JOB_PHASES:
        return now
    return proposed if PHASE_ORDER[proposed] >= PHASE_ORDER[now] else now


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
