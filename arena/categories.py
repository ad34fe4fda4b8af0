"""Battle categories, computed when a battle is stored and when it gets a follow-up turn.

Built-in heuristics (language, coding, math, long query, multi-turn, vision, hard prompt; tools for
a battle whose models were given tools) plus the
admin-defined CategoryRule rows. The battle services store them on the battle; they are never
recomputed for old battles, so a published snapshot's per-category ratings stay reproducible from
its exported log. This module only computes (and reads the rules): it writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from arena.models import CategoryRule

CODING = "coding"
MATH = "math"
LONG_QUERY = "long_query"
MULTI_TURN = "multi_turn"
VISION = "vision"
HARD_PROMPT = "hard_prompt"
TOOLS = "tools"
BUILTIN = (CODING, MATH, LONG_QUERY, MULTI_TURN, VISION, HARD_PROMPT, TOOLS)
# Categories ranked on their own board only: their battles are left out of the overall board (a
# tools battle judges models with tools, a different contest from the plain arena's).
OWN_BOARD_ONLY = (TOOLS,)

LONG_QUERY_CHARS = 500

_CODE_WORDS = re.compile(
    r"\b(def|class|function|python|javascript|typescript|java|rust|golang|c\+\+|sql|regex|bash|"
    r"code|compile[rs]?|bug|stack ?trace|exception|api|json|html|css|algorithm)\b",
    re.I,
)
_MATH_WORDS = re.compile(
    r"\b(math|solve|equation|integral|derivative|prove|proof|theorem|probability|matrix|"
    r"calculate|compute)\b",
    re.I,
)
_MATH_SYMBOLS = re.compile(r"[=+^∫√∑π≤≥]|\d\s*[*/]\s*\d")
# Signals of the criteria Chatbot Arena's hard-prompt judge uses (specificity, domain knowledge,
# complexity, problem solving, creativity, technical accuracy, real-world application).
_HARD_SIGNALS = (
    re.compile(r"\b(step[- ]by[- ]step|explain why|justify|prove|derive|trade-?offs?)\b", re.I),
    re.compile(r"\b(must|should not|without using|at least|at most|exactly|constraints?)\b", re.I),
    re.compile(r"\b(design|optimi[sz]e|implement|architecture|analy[sz]e|compare)\b", re.I),
    re.compile(r"^\s*(?:\d+[.)]|[-*])\s+\S", re.M),
)


def on_board(board: str, categories: Iterable[str]) -> bool:
    """Whether a battle of ``categories`` counts on the board of category ``board`` ("" is the
    overall board, which leaves out the OWN_BOARD_ONLY categories)."""
    found = set(categories)
    return board in found if board else not found.intersection(OWN_BOARD_ONLY)


def category_rules() -> list[tuple[str, re.Pattern[str]]]:
    """The enabled admin rules, compiled (a rule that does not compile is skipped)."""
    compiled = []
    for name, pattern in CategoryRule.objects.filter(enabled=True).values_list("name", "pattern"):
        try:
            compiled.append((name, re.compile(pattern, re.I | re.M)))
        except re.error:  # validated in the admin; a bad row must not stop battles
            continue
    return compiled


def is_hard_prompt(text: str) -> bool:
    """Heuristic: at least three of length, explicit constraints, multi-step reasoning, technical
    or mathematical content, and structure."""
    score = sum(1 for signal in _HARD_SIGNALS if signal.search(text))
    score += len(text) >= 200
    score += bool(_CODE_WORDS.search(text) or _MATH_WORDS.search(text))
    return score >= 3


def prompt_categories(
    text: str,
    *,
    has_image: bool = False,
    has_tools: bool = False,
    language: str = "",
    rules: Iterable[tuple[str, re.Pattern[str]]] | None = None,
) -> list[str]:
    """Categories of one prompt: built-ins, the language (lower case, e.g. "english") and the
    names of matching admin rules. ``rules`` defaults to the enabled CategoryRule rows."""
    found: list[str] = []
    if "```" in text or _CODE_WORDS.search(text):
        found.append(CODING)
    if _MATH_WORDS.search(text) or (_MATH_SYMBOLS.search(text) and re.search(r"\d", text)):
        found.append(MATH)
    if len(text) > LONG_QUERY_CHARS:
        found.append(LONG_QUERY)
    if has_image:
        found.append(VISION)
    if has_tools:
        found.append(TOOLS)
    if is_hard_prompt(text):
        found.append(HARD_PROMPT)
    if language and language != "unknown":
        found.append(language.lower())
    for name, pattern in category_rules() if rules is None else rules:
        if pattern.search(text):
            found.append(name)
    return list(dict.fromkeys(found))


def categories_after_turn(*, current: Iterable[str], prompt: str) -> list[str]:
    """A battle's categories once a follow-up is sent: multi-turn, plus the categories of the new
    prompt (the first prompt's language stays the battle's language)."""
    return list(dict.fromkeys([*current, MULTI_TURN, *prompt_categories(prompt)]))
