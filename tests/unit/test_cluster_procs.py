import os
import pwd
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.cluster import procs
from tests.cluster.config import Paths


@pytest.fixture
def paths(tmp_path):
    return Paths(cache=tmp_path / "cache", state=tmp_path / "state")


def test_start_is_idempotent_and_stop_ends_the_process(paths):
    pid = procs.start(paths, "sleeper", ["sleep", "60"])
    try:
        assert procs.running_pid(paths, "sleeper") == pid
        assert procs.start(paths, "sleeper", ["sleep", "60"]) == pid
        assert "starting: sleep 60" in paths.component_log("sleeper").read_text()
    finally:
        procs.stop(paths, "sleeper", grace=5)
    assert procs.running_pid(paths, "sleeper") is None
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_reused_pid_is_not_mistaken_for_ours(paths):
    pid = procs.start(paths, "sleeper", ["sleep", "60"])
    try:
        pidfile = paths.pids / "sleeper.pid"
        # Same pid, different start time: what a recycled pid looks like.
        pidfile.write_text(f"{pid} 1\n")
        assert procs.running_pid(paths, "sleeper") is None
        procs.stop(paths, "sleeper")
        assert os.path.exists(f"/proc/{pid}"), "stop() must not signal a process it did not start"
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_exited_early_reports_the_log_tail(paths):
    procs.start(paths, "crasher", ["sh", "-c", "echo boom-marker; exit 3"])
    deadline = time.monotonic() + 5
    while procs.exited_early(paths, "crasher") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    report = procs.exited_early(paths, "crasher")
    assert report is not None and "boom-marker" in report


def test_wait_for_fails_fast_when_the_component_died():
    with pytest.raises(RuntimeError, match="apiserver died"):
        procs.wait_for(lambda: False, what="x", timeout=30, alive=lambda: "apiserver died")


def test_stop_sends_the_signal_the_component_shuts_down_on(paths):
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # A run started in the background (`cmd &`) passes SIGINT on ignored to its children.
        pytest.skip("this test run ignores SIGINT, and so would the component")
    # Ignores SIGTERM, as a server in "smart" shutdown waits for its clients; ends on SIGINT.
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('handler-set', flush=True); time.sleep(60)"
    )
    procs.start(paths, "server", [sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while "handler-set" not in paths.component_log("server").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    procs.stop(paths, "server", grace=10, sig=signal.SIGINT)
    assert time.monotonic() - started < 5, "SIGINT ended it without waiting for SIGKILL"
    assert procs.running_pid(paths, "server") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_start_runs_the_process_as_the_user_asked(paths):
    nobody = pwd.getpwnam("nobody")
    pid = procs.start(paths, "as-nobody", ["sleep", "60"], cwd=paths.state, user="nobody")
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        uid = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        gid = next(line.split()[1:] for line in status.splitlines() if line.startswith("Gid:"))
        assert set(uid) == {str(nobody.pw_uid)} and set(gid) == {str(nobody.pw_gid)}
    finally:
        procs.stop(paths, "as-nobody", grace=5)
