"""The CRD YAML (the schema's single source) agrees with the constants module and reads well."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from qiskit_serverless_operator import constants as c

CRDS = Path(__file__).resolve().parents[2] / "crds"


def _crd(plural: str) -> dict:
    for path in CRDS.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if (
                doc
                and doc.get("kind") == "CustomResourceDefinition"
                and doc["metadata"]["name"] == f"{plural}.{c.GROUP}"
            ):
                return doc
    raise AssertionError(f"no CRD for {plural} in {CRDS}")


@pytest.mark.parametrize(
    ("plural", "kind", "short"),
    [
        (c.JOB_PLURAL, c.JOB_KIND, c.JOB_SHORT),
        (c.FUNCTION_PLURAL, c.FUNCTION_KIND, c.FUNCTION_SHORT),
    ],
)
def test_names_match_the_constants(plural: str, kind: str, short: str) -> None:
    crd = _crd(plural)
    assert crd["spec"]["group"] == c.GROUP
    assert crd["spec"]["names"]["kind"] == kind
    assert crd["spec"]["names"]["shortNames"] == [short]
    assert crd["spec"]["names"]["categories"] == [c.CATEGORY]
    (version,) = crd["spec"]["versions"]
    assert version["name"] == c.VERSION and version["subresources"] == {"status": {}}


def test_title_rule_matches_the_constants() -> None:
    fn = _crd(c.FUNCTION_PLURAL)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    title = fn["properties"]["spec"]["properties"]["title"]
    assert title["pattern"] == c.TITLE_PATTERN and title["maxLength"] == c.TITLE_MAX_LENGTH


def test_phase_enums_match_the_constants() -> None:
    job = _crd(c.JOB_PLURAL)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    fn = _crd(c.FUNCTION_PLURAL)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert job["properties"]["status"]["properties"]["phase"]["enum"] == [
        p.value for p in c.JobPhase
    ]
    assert fn["properties"]["status"]["properties"]["phase"]["enum"] == [
        p.value for p in c.FunctionPhase
    ]


def _undescribed(schema: dict, path: str) -> list[str]:
    missing = []
    for name, sub in (schema.get("properties") or {}).items():
        here = f"{path}.{name}"
        if name != "metadata" and not sub.get("description"):
            missing.append(here)
        missing += _undescribed(sub, here)
    if isinstance(schema.get("items"), dict):
        missing += _undescribed(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        missing += _undescribed(schema["additionalProperties"], f"{path}{{}}")
    return missing


@pytest.mark.parametrize("plural", [c.JOB_PLURAL, c.FUNCTION_PLURAL])
def test_every_field_has_a_description(plural: str) -> None:
    schema = _crd(plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema.get("description")
    assert _undescribed(schema, plural) == []


def test_job_printer_columns_are_the_ones_users_expect() -> None:
    columns = _crd(c.JOB_PLURAL)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [col["name"] for col in columns if not col.get("priority")] == [
        "Function",
        "Status",
        "Sub-Status",
        "Age",
        "Duration",
    ]
    fn_columns = _crd(c.FUNCTION_PLURAL)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [col["name"] for col in fn_columns if not col.get("priority")] == [
        "Title",
        "Phase",
        "Image",
        "Age",
    ]
