from qiskit_serverless_operator.constants import JobPhase
from qiskit_serverless_operator.controller.observe import advance, format_duration, observe


def _job(*conditions):
    return {"status": {"conditions": [dict(c, status="True") for c in conditions]}}


def _pod(state):
    return {
        "status": {"containerStatuses": [{"name": "main", "image": "reg/img:1", "state": state}]}
    }


def test_no_batch_job_means_queued():
    assert observe(None, None).phase == JobPhase.QUEUED


def test_pod_states_map_to_initializing_and_running():
    assert observe(_job(), None).phase == JobPhase.INITIALIZING
    waiting = _pod({"waiting": {"reason": "ContainerCreating"}})
    # The same reason and message as before the kubelet's first word: no second write.
    assert observe(_job(), waiting) == observe(_job(), {"status": {}})
    assert observe(_job(), waiting).phase == JobPhase.INITIALIZING
    assert observe(_job(), _pod({"waiting": {"reason": "PodInitializing"}})).reason == (
        "PodInitializing"
    )
    running = observe(_job(), _pod({"running": {"startedAt": "2026-01-01T00:00:00Z"}}))
    assert running.phase == JobPhase.RUNNING and running.started_at == "2026-01-01T00:00:00Z"


def test_complete_is_done_and_deadline_is_a_timeout_error():
    assert observe(_job({"type": "Complete"}), None).phase == JobPhase.DONE
    timeout = observe(_job({"type": "Failed", "reason": "DeadlineExceeded"}), None, 30)
    assert timeout.phase == JobPhase.ERROR and timeout.reason == "Timeout"
    assert "timeout of 30 s" in timeout.message


def test_failed_program_reports_its_exit_code_and_oom_is_named():
    pod = _pod({"terminated": {"exitCode": 7, "reason": "Error"}})
    failed = observe(_job({"type": "Failed", "reason": "BackoffLimitExceeded"}), pod)
    assert failed.phase == JobPhase.ERROR and failed.exit_code == 7
    assert "exited with code 7" in failed.message
    oom = _pod({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    assert observe(_job({"type": "Failed"}), oom).reason == "OutOfMemory"


def test_an_unpullable_image_is_an_error_not_a_hang():
    pod = _pod({"waiting": {"reason": "ImagePullBackOff", "message": "not found"}})
    result = observe(_job(), pod)
    assert result.phase == JobPhase.ERROR and result.reason == "ImagePullFailed"
    assert "reg/img:1" in result.message and "not found" in result.message


def test_phases_never_move_backwards_and_terminal_is_final():
    assert advance("RUNNING", JobPhase.INITIALIZING) == JobPhase.RUNNING
    assert advance("QUEUED", JobPhase.RUNNING) == JobPhase.RUNNING
    assert advance("CANCELED", JobPhase.DONE) == JobPhase.CANCELED
    assert advance("DONE", JobPhase.ERROR) == JobPhase.DONE
    assert advance(None, JobPhase.QUEUED) == JobPhase.QUEUED


def test_duration_format():
    assert [format_duration(s) for s in (0, 42, 185, 7300)] == ["0s", "42s", "3m5s", "2h1m"]


def test_a_pod_deleted_by_hand_or_lost_is_an_explained_error():
    pod = _pod({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
    pod["metadata"] = {"name": "sj-x-abc", "deletionTimestamp": "2026-01-01T00:01:00Z"}
    # Being deleted, and the Job has not said why: not over yet (the Job controller deletes
    # the pod at the deadline before it writes DeadlineExceeded).
    assert observe(_job(), pod).phase == JobPhase.RUNNING
    killed = _pod({"terminated": {"exitCode": 143, "finishedAt": "2026-01-01T00:01:01Z"}})
    killed["metadata"] = pod["metadata"]
    waiting = observe(_job(), killed)
    assert waiting.phase == JobPhase.RUNNING and waiting.reason == "PodTerminating"
    timeout = observe(_job({"type": "FailureTarget", "reason": "DeadlineExceeded"}), killed)
    assert timeout.reason == "Timeout"
    deleted = observe(_job({"type": "Failed", "reason": "BackoffLimitExceeded"}), killed)
    assert deleted.phase == JobPhase.ERROR and deleted.reason == "PodDeleted"
    assert "sj-x-abc was deleted while the job ran" in deleted.message
    # A program that failed by itself, its pod not deleted, says so at once.
    failed = _pod({"terminated": {"exitCode": 3, "finishedAt": "2026-01-01T00:01:01Z"}})
    assert observe(_job(), failed).reason == "ProgramFailed"
    # The pod already gone, the Job failed for it: the message says so, not "backoff limit".
    lost = observe(_job({"type": "Failed", "reason": "BackoffLimitExceeded"}), None)
    assert lost.reason == "PodLost" and "never started twice" in lost.message
    # A finished job whose pod the TTL removes stays what it was.
    done = observe(_job({"type": "Complete"}), pod)
    assert done.phase == JobPhase.DONE


def test_a_container_the_runtime_never_started_is_marked_for_a_new_pod():
    # containerd's words when the kubelet restarted in the middle of starting the container.
    start_error = {
        "terminated": {
            "exitCode": 128,
            "reason": "StartError",
            "message": "failed to start containerd task: context canceled",
        }
    }
    failed = observe(_job({"type": "Failed"}), _pod(start_error))
    assert failed.never_started and failed.reason == "PodStartFailed"
    assert "'main'" in failed.message and "context canceled" in failed.message
    # Before the Job controller's verdict, too; and in the wrapper's init container.
    assert observe(_job(), _pod(start_error)).never_started
    init = {"status": {"initContainerStatuses": [{"name": "wrapper", "state": start_error}]}}
    assert observe(_job({"type": "Failed"}), init).never_started
    # The program's own exit code 128 is its failure, not a start failure.
    own = _pod({"terminated": {"exitCode": 128, "reason": "Error"}})
    program = observe(_job({"type": "Failed"}), own)
    assert not program.never_started and program.reason == "ProgramFailed"


def test_exit_code_0_is_done_before_the_job_controller_says_so_unless_the_pod_is_deleted():
    finished = {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "t"}}
    done = observe(_job(), _pod(finished))
    assert (done.phase, done.reason, done.finished_at) == (JobPhase.DONE, "Succeeded", "t")
    # Being deleted (the deadline, or by hand): a program may exit 0 on SIGTERM; the Job's
    # verdict decides.
    deleted = _pod(finished)
    deleted["metadata"] = {"name": "p", "deletionTimestamp": "t"}
    assert observe(_job(), deleted).phase == JobPhase.RUNNING
    timeout = observe(_job({"type": "Failed", "reason": "DeadlineExceeded"}), deleted, 8)
    assert timeout.reason == "Timeout"
