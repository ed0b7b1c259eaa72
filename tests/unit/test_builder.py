"""The build pod's program, run here for real (the push goes to a registry that refuses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import qiskit_serverless_operator
from tests.cluster.config import Paths

PACKAGE_PARENT = Path(qiskit_serverless_operator.__file__).parents[1]


def _crane_dir() -> Path:
    found = sorted(Paths.from_env().bin.glob("crane-*/crane"))
    if not found:
        pytest.skip("crane is built by `python -m tests.cluster up` (the test command runs it)")
    return found[-1].parent


def _build(
    tmp_path: Path, files: dict[str, str], deps: list[str], target: str, path_prefix: str = ""
) -> tuple[subprocess.CompletedProcess[str], dict]:
    source = tmp_path / "source"
    source.mkdir()
    for name, text in files.items():
        (source / name).write_text(text)
    termination = tmp_path / "termination"
    env = {
        "PATH": f"{path_prefix}:/usr/bin:/bin",
        "PYTHONPATH": str(PACKAGE_PARENT),
        "QSO_BUILD_SOURCE": str(source),
        "QSO_BUILD_WORK": str(tmp_path / "work"),
        "QSO_BASE_IMAGE": "127.0.0.1:9/qso/runtime:1",
        "QSO_TARGET_IMAGE": target,
        "QSO_DEPENDENCIES": json.dumps(deps),
        "QSO_REGISTRY_INSECURE": "true",
        "QSO_TERMINATION_LOG": str(termination),
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "qiskit_serverless_operator.builder"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(termination.read_text()) if termination.exists() else {}
    return done, report


def test_a_registry_that_refuses_the_push_fails_the_build_with_its_reason(tmp_path):
    crane = _crane_dir()
    done, report = _build(
        tmp_path, {"main.py": "print(1)\n"}, [], "127.0.0.1:9/qso/fn:1", path_prefix=str(crane)
    )
    assert done.returncode == 12, done.stdout + done.stderr
    assert report["error"].startswith("pushing 127.0.0.1:9/qso/fn:1 failed:")
    assert "refused" in report["error"]


def test_syntax_errors_name_the_file_and_line(tmp_path):
    done, report = _build(
        tmp_path, {"main.py": "ok = 1\n", "lib.py": "def f(:\n  pass\n"}, [], "r/x:1"
    )
    assert done.returncode == 10
    assert report["error"].startswith("SyntaxError in lib.py line 1:")


def test_builder_catches_the_unexpected(tmp_path):
    source_missing_env = {k: v for k, v in os.environ.items() if not k.startswith("QSO_")}
    termination = tmp_path / "t"
    done = subprocess.run(
        [sys.executable, "-m", "qiskit_serverless_operator.builder"],
        env={
            **source_missing_env,
            "PYTHONPATH": str(PACKAGE_PARENT),
            "QSO_TERMINATION_LOG": str(termination),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert json.loads(termination.read_text())["error"].startswith(
        "builder error: KeyError: 'QSO_BASE_IMAGE'"
    )
