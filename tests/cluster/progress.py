"""Progress lines for long work and the closing timing table."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

HEARTBEAT_SECONDS = 30


def say(message: str) -> None:
    print(f"[cluster] {message}", flush=True)


def run_with_heartbeat(
    argv: Sequence[str | Path],
    *,
    what: str,
    log: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run a long command with its output in ``log``, printing a line every 30 s.

    On failure the log's tail goes into the exception so CI output shows the cause.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"{what}: started (output in {log})")
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(a) for a in argv], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        while True:
            try:
                proc.wait(timeout=HEARTBEAT_SECONDS)
                break
            except subprocess.TimeoutExpired:
                say(f"{what}: still running, {time.monotonic() - started:.0f} s")
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(
            f"{what} failed with exit code {proc.returncode} after {elapsed:.0f} s:\n"
            + "\n".join(tail)
        )
    say(f"{what}: done in {elapsed:.0f} s")


class PhaseTimer:
    """Records how long each named phase of ``up`` took and prints them as a table."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str]] = []

    @contextmanager
    def phase(self, name: str, note: str = "") -> Iterator[None]:
        say(f"== {name}")
        started = time.monotonic()
        try:
            yield
        finally:
            self.rows.append((name, time.monotonic() - started, note))

    def table(self) -> str:
        width = max([len("phase")] + [len(r[0]) for r in self.rows])
        lines = [f"{'phase':<{width}}  {'seconds':>8}  note", f"{'-' * width}  {'-' * 8}  ----"]
        for name, seconds, note in self.rows:
            lines.append(f"{name:<{width}}  {seconds:>8.1f}  {note}")
        total = sum(r[1] for r in self.rows)
        lines.append(f"{'total':<{width}}  {total:>8.1f}")
        return "\n".join(lines)

    def print_table(self) -> None:
        print(self.table(), file=sys.stdout, flush=True)
