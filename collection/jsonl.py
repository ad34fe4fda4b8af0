"""JSON Lines input for the collection's pure command lines (the pipeline, the quality tools):
one JSON object a line, blank lines skipped, a precise error naming the first bad line. No Django."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import orjson


class LineError(ValueError):
    """A line of a JSON Lines input that the command cannot take; the message names the line."""


def json_objects(handle: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; LineError at the first that is not a JSON
    object."""
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise LineError(f"line {number}: not JSON ({error})") from None
        if not isinstance(row, dict):
            raise LineError(f"line {number}: a JSON object was expected")
        yield number, row
