"""Request bodies made of printable text, as haven accepts them, for fuzzing past its validation.

haven takes printable text only (haven.api.schemas), which its OpenAPI schema does not say, so
most strings Schemathesis generates are refused with a 400 and a chain of operations ends at its
first step. ``printable`` replaces every unprintable character; test_schemathesis_serve.py applies
it to the bodies of the schema it fuzzes valid requests with.
"""

from __future__ import annotations

from typing import Any


def printable(value: Any) -> Any:
    if isinstance(value, str):
        return "".join(c if c.isprintable() else "x" for c in value)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    return value
