"""A function's arguments schema (``spec.argumentsSchema``, a JSON Schema) and the check of a
run's arguments against it, before any job exists.

As in Qiskit Serverless (0.35+, ``validate_arguments``), arguments are checked as the SDK
encodes them: a circuit is ``{"__type__": "QuantumCircuit", "__value__": "<QPY>"}``, so a
schema constrains the plain arguments and only the ``__type__`` tag of Qiskit objects.

The check is bounded, since the schema is the function's author's and the arguments the
user's: a schema of at most 64 KiB, 2000 nodes and 64 levels, with no reference outside
itself (nothing is fetched), and a check that gives up after 2 seconds. The SDK, the REST
gateway and the operator (for jobs made with kubectl) all check here.
"""

from __future__ import annotations

import concurrent.futures
import json
from dataclasses import dataclass, field
from typing import Any

MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_NODES = 2000
MAX_SCHEMA_DEPTH = 64
CHECK_SECONDS = 2.0

_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="arguments")


class SchemaError(ValueError):
    """The function's schema cannot be used; the message says why."""


@dataclass
class ArgumentsError(ValueError):
    """The arguments do not satisfy the schema: where (a JSON path) and why."""

    message: str
    path: list[str | int] = field(default_factory=list)

    def __str__(self) -> str:
        where = "/".join(str(p) for p in self.path)
        return f"arguments{'/' + where if where else ''}: {self.message}"


def _shape(node: Any, depth: int = 0) -> int:
    if depth > MAX_SCHEMA_DEPTH:
        raise SchemaError(f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels")
    if isinstance(node, dict):
        return 1 + sum(_shape(v, depth + 1) for v in node.values())
    if isinstance(node, list):
        return 1 + sum(_shape(v, depth + 1) for v in node)
    return 1


def check_schema(schema: Any) -> None:
    """Refuse a schema that is not a usable JSON Schema (or is too big to be safe)."""
    from jsonschema import exceptions, validators

    if not isinstance(schema, dict | bool):
        raise SchemaError(f"a JSON Schema is an object or a boolean, not {type(schema).__name__}")
    size = len(json.dumps(schema))
    if size > MAX_SCHEMA_BYTES:
        raise SchemaError(f"the schema is {size} bytes, over the {MAX_SCHEMA_BYTES} allowed")
    nodes = _shape(schema)
    if nodes > MAX_SCHEMA_NODES:
        raise SchemaError(f"the schema has {nodes} nodes, over the {MAX_SCHEMA_NODES} allowed")
    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise SchemaError(f"{exc.message}" + (f" (at {where})" if where else "")) from None


def _first_error(schema: Any, arguments: Any) -> ArgumentsError | None:
    from jsonschema import exceptions, validators
    from referencing.exceptions import Unresolvable

    validator = validators.validator_for(schema)(schema)
    try:
        error = exceptions.best_match(validator.iter_errors(arguments))
    except Unresolvable as exc:
        raise SchemaError(
            f"the schema references something that cannot be resolved: {exc}"
        ) from None
    if error is None:
        return None
    return ArgumentsError(error.message, list(error.absolute_path))


def validate(schema: Any, arguments: Any) -> None:
    """Raise ArgumentsError (the most relevant failure) or SchemaError; None when valid."""
    check_schema(schema)
    future = _pool.submit(_first_error, schema, arguments)
    try:
        error = future.result(timeout=CHECK_SECONDS)
    except concurrent.futures.TimeoutError:
        raise SchemaError(
            f"checking the arguments against the schema took over {CHECK_SECONDS:.0f} s; "
            "the function's schema must be simpler"
        ) from None
    if error is not None:
        raise error


def schema_of(spec: dict[str, Any]) -> Any | None:
    """The function's schema, or None (no schema, or ``{}``, which allows everything)."""
    schema = spec.get("argumentsSchema")
    return None if schema in (None, {}) else schema
