"""Start the cluster's components as detached local processes and stop them by pid.

A pid file records the pid and the process start time (field 22 of
/proc/PID/stat), so ``down`` never signals an unrelated process that reused a pid.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import Paths
from .progress import say


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after its ")" are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    # A zombie has exited: it only waits for its parent (maybe this very process) to reap it.
    if fields[0] == "Z":
        return None
    return fields[19]


def _pidfile(paths: Paths, name: str) -> Path:
    return paths.pids / f"{name}.pid"


def running_pid(paths: Paths, name: str) -> int | None:
    """The pid of our ``name`` process if it is still the one we started."""
    try:
        pid_text, started = _pidfile(paths, name).read_text().split()
    except (OSError, ValueError):
        return None
    pid = int(pid_text)
    return pid if _start_time(pid) == started else None


def user_args(user: str | None) -> dict[str, Any]:
    """subprocess arguments that run a child as ``user`` (its own groups, not root's)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {
        "user": entry.pw_uid,
        "group": entry.pw_gid,
        "extra_groups": os.getgrouplist(user, entry.pw_gid),
    }


def start(
    paths: Paths,
    name: str,
    argv: Sequence[str | Path],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Start ``name`` unless it already runs; its output goes to logs/NAME.log.

    ``user`` drops root in the child itself, not through runuser/su: those stay the parent
    (the pid we would signal) and SIGKILL their child 2 s after a SIGTERM."""
    pid = running_pid(paths, name)
    if pid is not None:
        return pid
    paths.pids.mkdir(parents=True, exist_ok=True)
    log = paths.component_log(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n==== {time.ctime()} starting: {' '.join(map(str, argv))}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            # Its own session: the component outlives `up` and a Ctrl-C in this terminal.
            start_new_session=True,
            **user_args(user),
        )
    started = None
    for _ in range(50):
        started = _start_time(proc.pid)
        if started:
            break
        time.sleep(0.01)
    _pidfile(paths, name).write_text(f"{proc.pid} {started}\n")
    return proc.pid


def exited_early(paths: Paths, name: str) -> str | None:
    """If ``name`` is not running, the tail of its log (for an error message)."""
    if running_pid(paths, name) is not None:
        return None
    log = paths.component_log(name)
    tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
    return f"{name} is not running; last lines of {log}:\n" + "\n".join(tail)


def stop(
    paths: Paths, name: str, grace: float = 10.0, sig: signal.Signals = signal.SIGTERM
) -> None:
    """``sig`` (SIGTERM unless the component shuts down cleanly on another), wait up to
    ``grace`` seconds, then SIGKILL; remove the pid file."""
    pid = running_pid(paths, name)
    if pid is not None:
        say(f"stopping {name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and running_pid(paths, name) is not None:
            _reap(pid)
            time.sleep(0.1)
        if running_pid(paths, name) is not None:
            say(f"{name} ignored {sig.name} for {grace:.0f} s; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            for _ in range(100):
                _reap(pid)
                if running_pid(paths, name) is None:
                    break
                time.sleep(0.05)
    _pidfile(paths, name).unlink(missing_ok=True)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_for(
    check: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    interval: float = 0.5,
    alive: Callable[[], str | None] = lambda: None,
) -> None:
    """Poll ``check`` until it holds; fail fast if ``alive`` reports a dead component."""
    deadline = time.monotonic() + timeout
    last_note = time.monotonic()
    while True:
        try:
            if check():
                return
        except Exception:  # a service that is not ready yet fails in many ways
            pass
        dead = alive()
        if dead:
            raise RuntimeError(f"while waiting for {what}: {dead}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        if time.monotonic() - last_note > 30:
            say(f"still waiting for {what}")
            last_note = time.monotonic()
        time.sleep(interval)


def kill_shims(containerd_socket: Path) -> None:
    """containerd-shim processes outlive their containerd; end those of this one (and so
    their containers)."""
    marker = str(containerd_socket).encode()
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and b"containerd-shim" in cmdline[0] and marker in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc_dir.name), signal.SIGKILL)


def alive(paths: Paths, *names: str) -> Callable[[], str | None]:
    """For wait_for: the tail of the log of the first of ``names`` that is not running."""

    def check() -> str | None:
        for name in names:
            dead = exited_early(paths, name)
            if dead:
                return dead
        return None

    return check


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first (the order to unmount them in)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mountpoint = line.split()[4].replace("\\040", " ")
        if mountpoint == str(root) or mountpoint.startswith(f"{root}/"):
            found.append(mountpoint)
    return sorted(found, key=len, reverse=True)


def remove_cgroup_tree(directory: Path) -> None:
    """Remove a cgroup and those below it, deepest first; one still in use is left for the
    kernel."""
    if not directory.is_dir():
        return
    for child in sorted(
        (p for p in directory.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        with contextlib.suppress(OSError):
            child.rmdir()
    with contextlib.suppress(OSError):
        directory.rmdir()
