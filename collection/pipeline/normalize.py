"""Text normalisation: ftfy repairs mojibake, HTML entities left in text, broken Unicode escapes
and odd compatibility characters, and leaves text in NFC."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import ftfy

from .core import Log, Row, map_text


class Normalize:
    name = "normalize"

    def params(self) -> dict[str, Any]:
        return {"ftfy": ftfy.__version__}

    def __call__(self, rows: Iterable[Row], log: Log) -> Iterator[Row]:
        for row in rows:
            fixed = map_text(row, _fix)
            if fixed is None:
                yield row
            else:
                log.change(self.name, row, "text_repaired")
                yield fixed


# Printable ASCII, tabs and newlines, without "&" (HTML entities): text ftfy leaves as it is.
# Skipping it is most of this step's speed; "\r" and control characters still go to ftfy.
_MAY_NEED_FIXING = re.compile(r"[^\t\n\x20-\x25\x27-\x7e]")


def _fix(text: str) -> str:
    if _MAY_NEED_FIXING.search(text) is None:
        return text
    return ftfy.fix_text(text)
