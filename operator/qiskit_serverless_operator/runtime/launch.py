"""The program's own process in a job's pod (started by the wrapper, __main__.py).

``python -m qiskit_serverless_operator.runtime.launch PROGRAM`` runs PROGRAM as ``__main__``
after arranging that ``qiskit_serverless``, when the program imports it, offers
``distribute_task``, ``get``, ``put`` and ``Target`` backed by the cluster (tasks.py): the
versions that still have them (Ray-based, up to 0.36) and the ones that removed them (0.37)
both run a program written for them unchanged. Nothing is imported ahead: a program that
never imports qiskit_serverless pays nothing.

``... launch --task PAYLOAD_URL RESULT_PATH`` is a task's pod: it makes the pickled call.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import runpy
import sys
from types import ModuleType

from . import tasks


def _offer_tasks(module: ModuleType) -> None:
    for name in tasks.EXPORTS:
        setattr(module, name, getattr(tasks, name))
    core = sys.modules.get("qiskit_serverless.core")
    if core is not None:
        for name in tasks.EXPORTS:
            setattr(core, name, getattr(tasks, name))


class _OfferOnImport(importlib.abc.MetaPathFinder):
    """Finds qiskit_serverless as usual, and adds the task functions once it is loaded."""

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname != "qiskit_serverless":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            _offer_tasks(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    if "qiskit_serverless" in sys.modules:
        _offer_tasks(sys.modules["qiskit_serverless"])
    elif not any(isinstance(f, _OfferOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _OfferOnImport())


def main(argv: list[str]) -> None:
    install()
    if argv[:1] == ["--task"]:
        _, payload_url, result_path = argv
        tasks.run_task(payload_url, result_path)
        return
    program = argv[0]
    sys.argv = [program, *argv[1:]]
    sys.path.insert(0, os.path.dirname(os.path.abspath(program)))
    runpy.run_path(program, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
