"""Tool-use dialogues for the zoo's tool model, and the function-calling test set the build ships.

The tools are the platform's built-in ones, by the names and arguments the tool loop registers:
``calculator(expression)`` and ``search(query)``. A training dialogue offers one or both, asks a
question, and holds the whole exchange: the assistant's call (Hermes format, see ``chat``), the
``tool`` message with the result, and the answer that uses it. Arithmetic questions call the
calculator with the question's expression; lookup questions call search with the topic; small
talk with tools offered is answered without a call.

The test set is drawn from a random stream of its own and shares no question with training:
each case is ``{"id", "category", "messages", "tools", "expected"}`` where ``expected`` lists the
calls in BFCL's possible-answer shape, ``{"name": N, "arguments": {param: [accepted values]}}``
(an empty list: no call is right).
"""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path
from typing import Any

from modelhub.zoo import chat, corpus

CALCULATOR: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}
SEARCH: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the document collection.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
}
ARITH_QUESTIONS = [
    "What is {e}?",
    "Calculate {e}.",
    "How much is {e}?",
    "Compute {e}.",
    "Please work out {e}.",
    "Can you tell me what {e} is?",
]
LOOKUP_QUESTIONS = [
    "Search for {t}.",
    "Look up {t}.",
    "Find information about {t}.",
    "Can you search the documents for {t}?",
    "What do the documents say about {t}?",
]
ASPECTS = ["history", "weather", "food", "music", "population", "rivers", "schools", "markets"]
PLACES = sorted(set(corpus.CAPITALS) | set(corpus.CAPITALS.values()))

Case = dict[str, Any]
TEST_SET = "evals/tool_calls.jsonl"  # where the build writes the test set, under the zoo


def _tools_for(rng: random.Random, needed: dict[str, Any]) -> list[dict[str, Any]]:
    """The needed tool, alone or with the other one, in either order."""
    other = SEARCH if needed is CALCULATOR else CALCULATOR
    tools = [needed, other] if rng.random() < 0.6 else [needed]
    rng.shuffle(tools)
    return tools


def _number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.4g}"


def arithmetic(rng: random.Random) -> tuple[list[dict[str, Any]], str]:
    """A question, its full tool exchange and the expression it must send."""
    op = rng.choice(["+", "-", "*", "/"])
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    if op == "/":
        a = a * rng.randint(1, 9)  # mostly whole results
    expression = f"{a} {op} {b}"
    fa, fb = Fraction(a), Fraction(b)
    result = {"+": fa + fb, "-": fa - fb, "*": fa * fb, "/": fa / fb}[op]
    question = rng.choice(ARITH_QUESTIONS).format(e=expression)
    answer = _number(result)
    return _exchange(
        question, "calculator", {"expression": expression}, answer, f"{expression} = {answer}."
    ), expression


def lookup(rng: random.Random) -> tuple[list[dict[str, Any]], str]:
    place = rng.choice(PLACES)
    topic = f"the {rng.choice(ASPECTS)} of {place}"
    question = rng.choice(LOOKUP_QUESTIONS).format(t=topic)
    found = f"{topic[4:].capitalize()}: see the {place} article, section one."
    messages = _exchange(question, "search", {"query": topic}, found, f"I found this: {found}")
    return messages, topic


def _exchange(
    question: str, name: str, arguments: dict[str, Any], result: str, answer: str
) -> list[dict[str, Any]]:
    call = {"type": "function", "function": {"name": name, "arguments": arguments}}
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": result},
        {"role": "assistant", "content": answer},
    ]


def training_texts(seed: int, n: int) -> list[str]:
    """``n`` rendered tool dialogues: 45% arithmetic, 40% lookup, 15% small talk, no call."""
    rng = random.Random(f"tools-train-{seed}")
    texts = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.45:
            messages, _ = arithmetic(rng)
            tools = _tools_for(rng, CALCULATOR)
        elif roll < 0.85:
            messages, _ = lookup(rng)
            tools = _tools_for(rng, SEARCH)
        else:
            messages = corpus.generate_dialogues(1, rng)[0]
            tools = _tools_for(rng, rng.choice([CALCULATOR, SEARCH]))
        texts.append(chat.render(messages, tools=tools))
    return texts


def test_cases(seed: int, n_each: int, train_texts: list[str]) -> list[Case]:
    """The bundled function-calling test set: held-out arithmetic and lookup questions."""
    rng = random.Random(f"tools-test-{seed}")
    seen = "\n".join(train_texts)
    cases: list[Case] = []
    for category, make, needed, param in (
        ("arithmetic", arithmetic, CALCULATOR, "expression"),
        ("lookup", lookup, SEARCH, "query"),
    ):
        taken = 0
        while taken < n_each:
            messages, value = make(rng)
            question = messages[0]["content"]
            if f"<|user|>\n{question}<|end|>" in seen:
                continue  # held out: never a training question
            seen += f"\n<|user|>\n{question}<|end|>"
            taken += 1
            accepted = [value] if param == "expression" else [value, value.removeprefix("the ")]
            cases.append(
                {
                    "id": f"{category}-{taken}",
                    "category": category,
                    "messages": messages[:1],
                    "tools": _tools_for(rng, needed),
                    "expected": [
                        {"name": needed["function"]["name"], "arguments": {param: accepted}}
                    ],
                }
            )
    return cases


def write_cases(path: Path, cases: list[Case]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))


def read_cases(path: Path) -> list[Case]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
