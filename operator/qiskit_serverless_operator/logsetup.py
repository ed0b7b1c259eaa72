"""Logging for the project's processes (the operator, the REST gateway): one format, and the
HTTP client's line per API request only when asked for (--verbose)."""

from __future__ import annotations

import logging


def configure(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # One line per API request: with thousands of jobs, most of the log and a
        # measurable part of the CPU.
        logging.getLogger("httpx2").setLevel(logging.WARNING)
