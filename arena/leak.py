"""Identity leak detection on model output. Pure: no Django imports.

A reply leaks when it names a model of the battle or its organisation (whole words, any case), or
matches one of the model's own self-identification phrases. Only model output is checked: a user's
prompt naming a model reveals nothing about which side is which.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

MIN_TERM_LENGTH = 3


@dataclass(frozen=True)
class Identity:
    name: str
    display_name: str = ""
    organization: str = ""
    patterns: tuple[str, ...] = field(default_factory=tuple)

    def terms(self) -> list[str]:
        terms = [self.name, self.display_name, self.organization, *self.patterns]
        # Slugs like "llama-3-8b" are also written "llama 3 8b".
        terms += [t.replace("-", " ") for t in (self.name, self.display_name) if "-" in t]
        return sorted({t.strip().lower() for t in terms if len(t.strip()) >= MIN_TERM_LENGTH})


@lru_cache(maxsize=512)
def _pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    if not terms:
        return None
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)


def leaked_terms(text: str, identities: Iterable[Identity]) -> list[str]:
    """The identity terms that appear in `text` (empty when nothing leaks)."""
    terms = tuple(sorted({t for identity in identities for t in identity.terms()}))
    pattern = _pattern(terms)
    if pattern is None or not text:
        return []
    return sorted({m.group(0).lower() for m in pattern.finditer(text)})


def is_leak(text: str, identities: Iterable[Identity]) -> bool:
    return bool(leaked_terms(text, identities))
