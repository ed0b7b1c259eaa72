"""Arguments checked against a function's JSON Schema (arguments.py), and the schema's own
bounds: what the SDK, the REST gateway and the operator refuse before a job exists."""

from __future__ import annotations

import json

import pytest
from qiskit import QuantumCircuit
from qiskit_serverless.serializers.program_serializers import QiskitObjectsEncoder

from qiskit_serverless_operator import arguments

pytestmark = pytest.mark.unit

SCHEMA = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "minimum": 1},
        "backend": {"type": "string"},
        "circuits": {
            "type": "array",
            "items": {"type": "object", "properties": {"__type__": {"const": "QuantumCircuit"}}},
        },
    },
    "required": ["n"],
}


def test_valid_arguments_pass_as_the_sdk_encodes_them() -> None:
    circuit = QuantumCircuit(1)
    encoded = json.loads(json.dumps({"n": 2, "circuits": [circuit]}, cls=QiskitObjectsEncoder))
    arguments.validate(SCHEMA, encoded)


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ({"n": "abc"}, ["n"], "'abc' is not of type 'integer'"),
        ({"n": 0}, ["n"], "0 is less than the minimum of 1"),
        ({}, [], "'n' is a required property"),
        ({"n": 1, "circuits": [{"__type__": "ndarray"}]}, ["circuits", 0, "__type__"], ""),
    ],
)
def test_refusals_say_where_and_why(value, path, message) -> None:
    with pytest.raises(arguments.ArgumentsError) as refused:
        arguments.validate(SCHEMA, value)
    assert refused.value.path == path
    assert message in refused.value.message
    assert str(refused.value).startswith("arguments")


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ({"type": "no-such-type"}, "is not valid under any of the given schemas"),
        ("a string", "not str"),
        ({"properties": {"x": {"minimum": "ten"}}}, "'ten' is not of type 'number'"),
        ({"a": "x" * (70 * 1024)}, "bytes, over the"),
    ],
)
def test_unusable_schemas_are_refused(schema, why) -> None:
    with pytest.raises(arguments.SchemaError, match=why):
        arguments.check_schema(schema)


def test_a_deep_or_huge_schema_is_refused() -> None:
    deep: dict = {}
    node = deep
    for _ in range(70):
        node["not"] = {}
        node = node["not"]
    with pytest.raises(arguments.SchemaError, match="deeper than 64"):
        arguments.check_schema(deep)
    wide = {"properties": {f"p{i}": {"type": "string"} for i in range(1500)}}
    with pytest.raises(arguments.SchemaError, match="nodes, over the 2000"):
        arguments.check_schema(wide)


def test_references_outside_the_schema_are_never_fetched() -> None:
    schema = {"$ref": "https://example.com/schema.json"}
    arguments.check_schema(schema)  # well formed...
    with pytest.raises(arguments.SchemaError, match="cannot be resolved"):
        arguments.validate(schema, {})  # ...but nothing is fetched to resolve it


def test_booleans_and_empty_schemas() -> None:
    arguments.validate(True, {"anything": 1})
    with pytest.raises(arguments.ArgumentsError):
        arguments.validate(False, {})
    assert arguments.schema_of({"argumentsSchema": {}}) is None
    assert arguments.schema_of({}) is None
    assert arguments.schema_of({"argumentsSchema": False}) is False
