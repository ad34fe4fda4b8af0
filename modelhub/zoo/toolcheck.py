"""A function-calling evaluation in the style of BFCL's AST checker, against any OpenAI endpoint.

    python -m modelhub.zoo.toolcheck --base-url http://127.0.0.1:8100/v1 --model zoo-llama-tools \
        [--cases data/models/evals/tool_calls.jsonl]

Each case (see ``tooluse``) sends its messages and tools with the official ``openai`` client
(streamed, as the arena asks) and compares the reply's ``tool_calls`` with the expected calls:
same number of calls, same names, and for every argument a value among the accepted ones. Values compare by type: numbers within a
relative tolerance (an int equals the same float, never a bool or a string), strings after
case-folding, trimming and collapsing whitespace, lists item by item, objects key by key; an
argument the case does not expect fails the call, an expected one may be left out only when its
accepted values include ``""`` (BFCL's "optional"). A reply with no calls is right only when the
case expects none. Prints one line per category, the accuracy, then a JSON summary line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from modelhub.zoo import tooluse

REL_TOLERANCE = 1e-6
# The test set of the zoo the platform serves (settings.MODELS_DIR's default location).
DEFAULT_CASES = Path(os.environ.get("LUDUS_MODELS_DIR", "data/models")) / tooluse.TEST_SET


def _string(value: str) -> str:
    return re.sub(r"\s+", " ", value.strip().casefold()).rstrip(".?!")


def values_match(got: Any, want: Any) -> bool:
    """Type-aware equality (see module docstring)."""
    if isinstance(want, bool) or isinstance(got, bool):
        return isinstance(want, bool) and isinstance(got, bool) and got == want
    if isinstance(want, int | float):
        return isinstance(got, int | float) and math.isclose(
            got, want, rel_tol=REL_TOLERANCE, abs_tol=REL_TOLERANCE
        )
    if isinstance(want, str):
        return isinstance(got, str) and _string(got) == _string(want)
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(values_match(g, w) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(values_match(got[k], want[k]) for k in want)
        )
    return bool(got == want)


def call_matches(name: str, arguments: Any, expected: dict[str, Any]) -> bool:
    """One call against one expected call (``{"name", "arguments": {param: [accepted]}}``)."""
    if name != expected["name"] or not isinstance(arguments, dict):
        return False
    accepted: dict[str, list[Any]] = expected["arguments"]
    if set(arguments) - set(accepted):
        return False
    for param, options in accepted.items():
        if param not in arguments:
            if "" not in options:
                return False
        elif not any(values_match(arguments[param], option) for option in options):
            return False
    return True


def calls_match(calls: list[tuple[str, str]], expected: list[dict[str, Any]]) -> bool:
    """The reply's calls ``(name, arguments JSON)`` against the expected ones, in any order."""
    if len(calls) != len(expected):
        return False
    left = list(expected)
    for name, raw in calls:
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError:
            return False
        hit = next((e for e in left if call_matches(name, arguments, e)), None)
        if hit is None:
            return False
        left.remove(hit)
    return True


def _streamed_calls(stream: Any) -> list[tuple[str, str]]:
    """The ``(name, arguments JSON)`` of a streamed reply's function calls, assembled from their
    deltas by index (streamed, as the arena asks every engine for its answers)."""
    calls: dict[int, list[str]] = {}
    kinds: dict[int, str] = {}
    for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                name, arguments = calls.setdefault(delta.index, ["", ""])
                if delta.type:
                    kinds[delta.index] = delta.type
                if delta.function is not None:
                    calls[delta.index] = [
                        name + (delta.function.name or ""),
                        arguments + (delta.function.arguments or ""),
                    ]
    return [
        (name, arguments)
        for index, (name, arguments) in sorted(calls.items())
        if kinds.get(index, "function") == "function"
    ]


def evaluate(
    base_url: str, model: str, cases: list[tooluse.Case], api_key: str = "unused"
) -> dict[str, Any]:
    """Run every case; returns ``{"model", "cases", "accuracy", "by_category",
    "called_by_category"}``."""
    import openai  # the evaluation speaks to endpoints exactly as users' clients do

    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=1, timeout=120)
    right: dict[str, list[bool]] = defaultdict(list)
    called: dict[str, list[bool]] = defaultdict(list)
    for case in cases:
        pairs = _streamed_calls(
            client.chat.completions.create(
                model=model,
                messages=case["messages"],
                tools=case["tools"],
                temperature=0.0,
                max_tokens=64,
                stream=True,
            )
        )
        called[case["category"]].append(bool(pairs))
        right[case["category"]].append(calls_match(pairs, case["expected"]))
    total = [ok for oks in right.values() for ok in oks]
    return {
        "model": model,
        "cases": len(total),
        "accuracy": round(sum(total) / len(total), 4) if total else 0.0,
        "by_category": {k: round(sum(v) / len(v), 4) for k, v in sorted(right.items())},
        # How often the reply held any call at all (the rate the zoo's tool model is held to).
        "called_by_category": {k: round(sum(v) / len(v), 4) for k, v in sorted(called.items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelhub.zoo.toolcheck", description=__doc__)
    parser.add_argument("--base-url", required=True, help="OpenAI-compatible base URL (…/v1)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    parser.add_argument("--api-key", default="unused")
    args = parser.parse_args(argv)
    result = evaluate(args.base_url, args.model, tooluse.read_cases(args.cases), args.api_key)
    for category, accuracy in result["by_category"].items():
        print(
            f"{category:12} {accuracy:.1%} (called a tool: {result['called_by_category'][category]:.1%})"
        )
    print(f"accuracy     {result['accuracy']:.1%} of {result['cases']} cases")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
