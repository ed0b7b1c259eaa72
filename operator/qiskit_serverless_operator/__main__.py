"""python -m qiskit_serverless_operator: run the operator (kopf) against the current cluster."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

import kopf

from . import logsetup
from .config import ConfigError, OperatorConfig


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's own credential loaders: no need to import the `kubernetes` client here.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


# kopf logs every handler call; this one runs on every job event.
_ROUTINE = "Handler 'job_record' succeeded"


def _not_routine(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_ROUTINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="qiskit-serverless-operator",
        description="Reconcile QiskitFunctions and ServerlessJobs.",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="kopf liveness endpoint (empty to disable)",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logsetup.configure(args.verbose)
    if not args.verbose:
        # One line per admission tick (every second) and per job event: with thousands of
        # jobs that is most of the log.
        logging.getLogger("kopf.objects").addFilter(_not_routine)
    try:
        cfg = OperatorConfig.from_env()
    except ConfigError as exc:
        print(f"qiskit-serverless-operator: {exc}", file=sys.stderr)
        return 2
    from . import memory
    from .controller import handlers, scheduler  # noqa: F401  (registers the handlers with kopf)

    scheduler.watched_namespaces = tuple(args.namespace or ())

    memory.limit_arenas()

    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace or (),
            peering_name=cfg.peering,
            priority=cfg.peering_priority,
            liveness_endpoint=args.liveness or None,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
