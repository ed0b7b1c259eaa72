"""Qiskit Serverless' custom-image convention, run as the job's program: an image holding
``/runner/runner.py`` with ``class Runner`` whose ``run(arguments)`` returns the result
(IBM's ``gateway/templates/main.tmpl`` does the same).

Arguments are read from ``ARGUMENTS_PATH`` and the result written to ``RESULTS_PATH``
directly, with the image's own qiskit_serverless codec when it has one, so an image built
for any qiskit-serverless version runs unchanged. An error is reported with the image's
``send_error()`` (when it has it) and raised again: the job ends in ERROR with the traceback.
"""

import json
import os
import sys
import traceback

RUNNER_PATH = os.environ.get("QSO_RUNNER_PATH", "/runner")


def _codec():  # type: ignore[no-untyped-def]
    try:
        from qiskit_serverless.serializers.program_serializers import (
            QiskitObjectsDecoder,
            QiskitObjectsEncoder,
        )
    except ImportError:  # an image without qiskit_serverless: plain JSON
        return None, None
    return QiskitObjectsDecoder, QiskitObjectsEncoder


def main() -> None:
    sys.path.append(RUNNER_PATH)
    from runner import Runner  # the image's

    decoder, encoder = _codec()
    with open(os.environ["ARGUMENTS_PATH"], encoding="utf-8") as handle:
        arguments = json.load(handle, cls=decoder) if decoder else json.load(handle)
    try:
        result = Runner().run(arguments)
    except Exception as exc:
        try:
            from qiskit_serverless import send_error
        except ImportError:
            send_error = None
        if send_error is not None:
            message = getattr(exc, "message", "".join(traceback.format_exception_only(exc)))
            send_error(getattr(exc, "code", 1), str(message).strip(), type(exc).__name__, None)
        raise
    if result is not None:
        path = os.environ["RESULTS_PATH"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(result, handle, cls=encoder) if encoder else json.dump(result, handle)


if __name__ == "__main__":
    main()
