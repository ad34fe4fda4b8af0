"""Prompt moderation: a pluggable check that runs before any generation.

The check is a callable `(text) -> Verdict`, named by the ARENA_MODERATION_CHECK setting (dotted
path); the default is a small offline word list (ARENA_BLOCKED_WORDS extends it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string

DEFAULT_BLOCKED_WORDS = (
    "child sexual",
    "csam",
    "make a bomb",
    "build a bomb",
    "nerve agent",
    "kill yourself",
)
BLOCKED_MESSAGE = (
    "This prompt was blocked by the moderation filter. Please rephrase it and try again."
)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""


@lru_cache(maxsize=8)
def _word_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    escaped = "|".join(re.escape(w.lower()) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"\b(?:{escaped})\b", re.IGNORECASE)


def word_list_check(text: str, words: Iterable[str] | None = None) -> Verdict:
    if words is None:
        words = (*DEFAULT_BLOCKED_WORDS, *getattr(settings, "ARENA_BLOCKED_WORDS", ()))
    words = tuple(w for w in words if w.strip())
    if not words:
        return Verdict(True)
    match = _word_pattern(words).search(" ".join(text.split()))
    if match:
        return Verdict(False, f"matched {match.group(0).lower()!r}")
    return Verdict(True)


def moderation_check() -> Callable[[str], Verdict]:
    path = getattr(settings, "ARENA_MODERATION_CHECK", "arena.moderation.word_list_check")
    check: Callable[[str], Verdict] = import_string(path)
    return check


def prompt_allowed(text: str) -> Verdict:
    return moderation_check()(text)
