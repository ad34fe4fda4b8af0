"""Text normalisation: ftfy repairs mojibake, HTML entities left in text, broken Unicode escapes
and odd compatibility characters, and leaves text in NFC."""

from __future__ import annotations

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


def _fix(text: str) -> str:
    # Pure ASCII without "&" (HTML entities) needs no repair; skipping it is most of the speed.
    if text.isascii() and "&" not in text and "\\" not in text:
        return text
    return ftfy.fix_text(text)
