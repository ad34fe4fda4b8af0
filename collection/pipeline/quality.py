"""Quality heuristics: each drops a row with the reason it names.

- ``empty``: no messages, or a user or assistant turn with no text (image-only turns count as
  text-less only when they carry no image either).
- ``too_short``: the first prompt under ``min_prompt_chars`` or a reply under ``min_reply_chars``.
- ``repetition``: a reply that loops: under ``min_unique_ngrams`` of its word 3-grams distinct
  (from 30 words up), or one character repeated ``max_char_run`` times.
- ``error_marker``: a reply that is an error the serving path leaked (a traceback, an HTTP or
  rate-limit error, a chat-template token).
- ``identity_leak``: a reply naming a model or its maker (``identity_names``), which in an
  anonymous battle reveals the side.
- ``cut_off``: a reply that did not finish: ``finish_reason == "length"``, ``cut_off`` true (the
  product sets it when a vote ended the stream), or an unclosed code fence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .core import Log, Row, message_text

IDENTITY_NAMES = (
    "ChatGPT",
    "GPT-3.5",
    "GPT-4",
    "GPT-4o",
    "GPT-5",
    "OpenAI",
    "Claude",
    "Anthropic",
    "Gemini",
    "Bard",
    "Google DeepMind",
    "LLaMA",
    "Meta AI",
    "Mistral",
    "Mixtral",
    "Qwen",
    "Alibaba Cloud",
    "DeepSeek",
    "Grok",
    "xAI",
    "Phi-3",
    "Gemma",
    "Command R",
    "Cohere",
)

ERROR_MARKERS = (
    r"Traceback \(most recent call last\)",
    r"\b(?:Internal Server Error|Bad Gateway|Service Unavailable|Gateway Timeout)\b",
    r"\brate limit(?:ed| exceeded)?\b",
    r"\bcontext length (?:exceeded|is exceeded)\b|maximum context length",
    r"<\|(?:endoftext|im_start|im_end|eot_id|start_header_id|end_header_id)\|>",
    r"\[(?:ERROR|error)\]",
    r"^\s*(?:Error|Exception):",
)


# Lower-case substrings one of which every error marker contains.
_ERROR_HINTS = (
    "traceback",
    "error",
    "gateway",
    "unavailable",
    "rate limit",
    "context length",
    "<|",
    "exception",
)


class QualityFilter:
    name = "quality"

    def __init__(
        self,
        *,
        min_prompt_chars: int = 3,
        min_reply_chars: int = 2,
        min_unique_ngrams: float = 0.3,
        max_char_run: int = 50,
        identity_names: Sequence[str] = IDENTITY_NAMES,
    ) -> None:
        self.min_prompt_chars = min_prompt_chars
        self.min_reply_chars = min_reply_chars
        self.min_unique_ngrams = min_unique_ngrams
        self.max_char_run = max_char_run
        self.identity_names = tuple(identity_names)
        self._identity = re.compile(
            r"(?<![\w-])(?:" + "|".join(re.escape(n) for n in self.identity_names) + r")(?![\w-])",
            re.IGNORECASE,
        )
        self._error = re.compile("|".join(ERROR_MARKERS), re.MULTILINE)
        # Substring tests gate the regexes: a scan with Python's re costs 20-30 us a reply.
        self._identity_hints = tuple({n.lower() for n in self.identity_names})

    def params(self) -> dict[str, Any]:
        return {
            "min_prompt_chars": self.min_prompt_chars,
            "min_reply_chars": self.min_reply_chars,
            "min_unique_ngrams": self.min_unique_ngrams,
            "max_char_run": self.max_char_run,
            "identity_names": list(self.identity_names),
            "error_markers": list(ERROR_MARKERS),
        }

    def __call__(self, rows: Iterable[Row], log: Log) -> Iterator[Row]:
        for row in rows:
            verdict = self.judge(row)
            if verdict is None:
                yield row
            else:
                reason, detail = verdict
                log.drop(self.name, row, reason, **detail)

    def judge(self, row: Row) -> tuple[str, dict[str, Any]] | None:
        """The first failing heuristic and its detail, or None for a row that passes."""
        messages = row.get("messages") or []
        if not messages:
            return "empty", {"turn": None}
        prompt_seen = False
        for index, message in enumerate(messages):
            role = message.get("role")
            if role not in ("user", "assistant"):
                continue
            text = message_text(message).strip()
            if not text and not _has_media(message):
                return "empty", {"turn": index}
            if role == "user":
                if (
                    not prompt_seen
                    and len(text) < self.min_prompt_chars
                    and not _has_media(message)
                ):
                    return "too_short", {"turn": index, "chars": len(text)}
                prompt_seen = True
                continue
            if len(text) < self.min_reply_chars:
                return "too_short", {"turn": index, "chars": len(text)}
            lower = text.lower()
            if any(h in lower for h in _ERROR_HINTS) and self._error.search(text):
                return "error_marker", {"turn": index}
            words = lower.split()
            if _char_run(words, self.max_char_run) or _loops(words, self.min_unique_ngrams):
                return "repetition", {"turn": index}
            if any(h in lower for h in self._identity_hints):
                named = self._identity.search(text)
                if named:
                    return "identity_leak", {"turn": index, "name": named.group(0)}
            if message.get("finish_reason") == "length" or text.count("```") % 2:
                return "cut_off", {"turn": index}
        if row.get("finish_reason") == "length" or row.get("cut_off"):
            return "cut_off", {"turn": len(messages) - 1}
        return None


def _has_media(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") not in (None, "text") for p in content
    )


def _char_run(words: list[str], length: int) -> bool:
    """A character repeated ``length`` times in a row (without spaces: spaced repeats are
    ``_loops``'s)."""
    return any(c * length in word for word in words if len(word) >= length for c in set(word))


def _loops(words: list[str], min_unique: float) -> bool:
    if len(words) < 30:
        return False
    return len(set(zip(words, words[1:], words[2:], strict=False))) / (len(words) - 2) < min_unique
