"""python -m qiskit_serverless_operator.runtime.probe: can this prebuilt image run a job?

The operator runs it once per image, in a pod of that image with the wrapper injected
(PYTHONPATH): the image needs Python, and either the function's entrypoint or Qiskit
Serverless' custom-image runner (``/runner/runner.py``). Exits 0 when it can; otherwise 1,
with why in the termination message the operator reads.
"""

import contextlib
import os
import sys
from pathlib import Path


def problem() -> str | None:
    source = Path(os.environ.get("QSO_SOURCE_DIR", "/function"))
    entrypoint = os.environ.get("QSO_ENTRYPOINT", "main.py")
    runner = Path(os.environ.get("QSO_RUNNER_PATH", "/runner")) / "runner.py"
    if not (source / entrypoint).is_file() and not runner.is_file():
        return (
            f"it holds neither the entrypoint {source / entrypoint} nor {runner} "
            "(Qiskit Serverless' custom-image Runner)"
        )
    return None


def main() -> int:
    why = problem()
    if why is None:
        return 0
    with contextlib.suppress(OSError):
        Path("/dev/termination-log").write_text(why)
    print(why, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
