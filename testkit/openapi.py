"""Checking JSON against the app's OpenAPI 2.0 definition."""

from __future__ import annotations

import copy
from typing import Any


def openapi_schema(definition: dict[str, Any], name: str) -> dict[str, Any]:
    """The definition ``name`` as a standalone JSON schema (for ``openapi_schema_validator``
    with ``OAS30Validator``): ``x-nullable`` as OpenAPI 3's ``nullable``, ``$ref``s
    resolvable against the definitions."""
    converted = copy.deepcopy(definition["definitions"])

    def convert(node: Any) -> None:
        if isinstance(node, dict):
            if node.pop("x-nullable", False):
                node["nullable"] = True
            for value in node.values():
                convert(value)
        elif isinstance(node, list):
            for value in node:
                convert(value)

    convert(converted)
    return {**converted[name], "definitions": converted}
