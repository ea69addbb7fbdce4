"""The Power Platform custom connector's definition (``connector/apiDefinition.swagger.json``),
derived from the same OpenAPI 2.0 definition as ``openapi.json``
(:func:`podcast.http.openapi.build_definition`), so a change to the API reaches both.

The connector variant follows the rules Microsoft's connector certification checks in a
Swagger file (the ones that can be checked offline, :func:`certification_problems`):

- each operation has exactly one response with a schema: the final answer (200); the 202 of
  the asynchronous pattern keeps its ``Location`` and ``Retry-After`` headers, and the error
  and ``default`` responses keep their descriptions, without schemas;
- nothing stands beside a ``$ref``: a reference with a description or summary of its own is
  replaced by the definition it names, with those keywords; definitions nothing refers to
  any more are left out;
- path parameters carry ``x-ms-url-encoding``;
- every operation has a summary and a description, and every parameter and schema property
  an ``x-ms-summary`` and a description (a missing summary is made from the name, a missing
  description from the summary).

``python -m podcast.http.connector --write connector/apiDefinition.swagger.json`` writes the
committed file (``--host`` puts an app's host name in it); a test checks it is current.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from podcast.http.openapi import DEFAULT_HOST, build_definition, render

__all__ = ["FINAL_STATUS", "URL_ENCODING", "certification_problems", "connector_definition", "main"]

FINAL_STATUS: Final = "200"
"""The one response of each operation that keeps its schema."""
URL_ENCODING: Final = "single"
"""``x-ms-url-encoding`` of path parameters (a job id never needs double encoding)."""
_REF_PREFIX: Final = "#/definitions/"


def _summary(name: str) -> str:
    """``input_tokens`` -> ``Input Tokens``: what the Power Platform designer shows by default."""
    return " ".join(word.capitalize() for word in name.replace("-", "_").split("_") if word)


def _schema_properties(schema: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (name, schema) of ``schema``'s properties, nested ones and array items' included."""
    for name, prop in schema.get("properties", {}).items():
        yield name, prop
        yield from _schema_properties(prop)
        if isinstance(prop.get("items"), Mapping):
            yield from _schema_properties(prop["items"])
    if isinstance(schema.get("items"), Mapping):
        yield from _schema_properties(schema["items"])


def _inline_references(node: Any, definitions: Mapping[str, Any]) -> Any:
    """``node`` with every ``$ref`` that has siblings replaced by its definition plus them."""
    if isinstance(node, list):
        return [_inline_references(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:
        target = copy.deepcopy(definitions[ref.removeprefix(_REF_PREFIX)])
        target.pop("example", None)
        merged = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
        return _inline_references(merged, definitions)
    return {key: _inline_references(value, definitions) for key, value in node.items()}


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref.removeprefix(_REF_PREFIX)
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _operations(definition: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in definition.get("paths", {}).items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "options", "head", "patch"):
                yield path, method, operation


def _describe(schema: dict[str, Any]) -> None:
    for name, prop in _schema_properties(schema):
        prop.setdefault("x-ms-summary", _summary(name))
        prop.setdefault("description", prop["x-ms-summary"] + ".")


def connector_definition(host: str = DEFAULT_HOST) -> dict[str, Any]:
    """The connector's Swagger 2.0 definition for ``host`` (no scheme, no path)."""
    definition = copy.deepcopy(build_definition(host=host))
    for _, _, operation in _operations(definition):
        for status, response in operation["responses"].items():
            if status != FINAL_STATUS:
                response.pop("schema", None)
        for parameter in operation.get("parameters", []):
            parameter.setdefault("x-ms-summary", _summary(parameter["name"]))
            if parameter["in"] == "path":
                parameter["x-ms-url-encoding"] = URL_ENCODING
    definitions = definition["definitions"]
    for _, _, operation in _operations(definition):
        for parameter in operation.get("parameters", []):
            refs = list(_references(parameter.get("schema", {})))
            described = definitions[refs[0]].get("description", "") if refs else ""
            parameter.setdefault("description", described or parameter["x-ms-summary"] + ".")
    definition["paths"] = _inline_references(definition["paths"], definitions)
    definitions = _inline_references(definitions, definitions)
    used: set[str] = set()
    pending = list(_references(definition["paths"]))
    while pending:
        name = pending.pop()
        if name not in used:
            used.add(name)
            pending.extend(_references(definitions[name]))
    definition["definitions"] = {name: schema for name, schema in definitions.items() if name in used}
    for schema in definition["definitions"].values():
        _describe(schema)
    for _, _, operation in _operations(definition):
        for response in operation["responses"].values():
            if "schema" in response:
                _describe(response["schema"])
    return definition


def certification_problems(definition: Mapping[str, Any]) -> list[str]:
    """What breaks the offline-checkable certification rules in ``definition`` (empty: none).

    Each problem names where it is (``POST /narrations``, ``definitions.X.properties.y``).
    """
    problems: list[str] = []

    def check_refs(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "$ref" in node and len(node) > 1:
                problems.append(f"{where}: keywords beside $ref ({', '.join(sorted(set(node) - {'$ref'}))})")
            for key, value in node.items():
                check_refs(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                check_refs(item, f"{where}[{index}]")

    def check_properties(schema: Mapping[str, Any], where: str) -> None:
        for name, prop in _schema_properties(schema):
            for keyword in ("x-ms-summary", "description"):
                if not str(prop.get(keyword, "")).strip():
                    problems.append(f"{where}: property {name} has no {keyword}")

    check_refs(definition, "definition")
    for name, schema in definition.get("definitions", {}).items():
        check_properties(schema, f"definitions.{name}")
    for path, method, operation in _operations(definition):
        where = f"{method.upper()} {path}"
        for keyword in ("operationId", "summary", "description"):
            if not str(operation.get(keyword, "")).strip():
                problems.append(f"{where}: no {keyword}")
        with_schema = [status for status, response in operation["responses"].items() if "schema" in response]
        if len(with_schema) != 1:
            problems.append(f"{where}: {len(with_schema)} responses with a schema (one is allowed)")
        for status, response in operation["responses"].items():
            if not str(response.get("description", "")).strip():
                problems.append(f"{where}: response {status} has no description")
            if (status == "default" or status[0] in "45") and "schema" in response:
                problems.append(f"{where}: the {status} response has a schema")
            if "schema" in response:
                check_properties(response["schema"], f"{where} response {status}")
        for parameter in operation.get("parameters", []):
            label = f"{where}: parameter {parameter.get('name')}"
            for keyword in ("x-ms-summary", "description"):
                if not str(parameter.get(keyword, "")).strip():
                    problems.append(f"{label} has no {keyword}")
            if parameter.get("in") == "path" and "x-ms-url-encoding" not in parameter:
                problems.append(f"{label} has no x-ms-url-encoding")
            if "schema" in parameter:
                check_properties(parameter["schema"], label)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m podcast.http.connector [--host HOST] [--write PATH]``: print (or write) the
    connector definition."""
    parser = argparse.ArgumentParser(prog="python -m podcast.http.connector", description=main.__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST, help="the Function App's host name (no scheme)")
    parser.add_argument(
        "--write", type=Path, help="write it to this file (connector/apiDefinition.swagger.json)"
    )
    arguments = parser.parse_args(argv)
    text = render(connector_definition(host=arguments.host))
    if arguments.write:
        arguments.write.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
