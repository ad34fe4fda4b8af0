"""The BFCL-style function-calling check: calls matched on name and arguments, by type."""

from __future__ import annotations

import json

import pytest

from modelhub.zoo import tooluse
from modelhub.zoo.toolcheck import calls_match, values_match

CALC = {"name": "calculator", "arguments": {"expression": ["3 + 4"]}}


def _call(name: str, **arguments: object) -> tuple[str, str]:
    return name, json.dumps(arguments)


@pytest.mark.parametrize(
    ("got", "want", "same"),
    [
        (3, 3.0, True),
        (0.1 + 0.2, 0.3, True),
        (3, 3.01, False),
        ("3", 3, False),
        (True, 1, False),
        (1, True, False),
        ("  The History of  ROME. ", "the history of rome", True),
        ("history of rome", "the history of rome", False),
        ([1, "a"], [1.0, "A"], True),
        ([1], [1, 2], False),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1, "b": 2}, {"a": 1}, False),
        (None, None, True),
    ],
)
def test_it_compares_values_by_type(got: object, want: object, same: bool) -> None:
    assert values_match(got, want) is same


def test_it_matches_a_call_on_name_and_arguments() -> None:
    assert calls_match([_call("calculator", expression="3 + 4")], [CALC])
    assert calls_match([_call("calculator", expression=" 3 + 4 ")], [CALC])
    assert not calls_match([_call("calculator", expression="3 + 5")], [CALC])
    assert not calls_match([_call("search", expression="3 + 4")], [CALC])


def test_it_fails_missing_extra_or_unparsable_arguments() -> None:
    assert not calls_match([_call("calculator")], [CALC])
    assert not calls_match([_call("calculator", expression="3 + 4", mode="x")], [CALC])
    assert not calls_match([("calculator", '{"expression": ')], [CALC])
    optional = {"name": "search", "arguments": {"query": ["bees"], "limit": ["", 5]}}
    assert calls_match([_call("search", query="bees")], [optional])
    assert calls_match([_call("search", query="bees", limit=5)], [optional])


def test_it_counts_calls_and_ignores_their_order() -> None:
    search = {"name": "search", "arguments": {"query": ["bees"]}}
    both = [_call("search", query="bees"), _call("calculator", expression="3 + 4")]
    assert calls_match(both, [CALC, search])
    assert not calls_match(both[:1], [CALC, search])
    assert not calls_match(both, [CALC])
    assert calls_match([], [])
    assert not calls_match(both[:1], [])


def test_it_generates_held_out_cases_the_matcher_accepts() -> None:
    """Every case of the bundled set is passed by its own expected call, and by no other."""
    train = tooluse.training_texts(0, 300)
    cases = tooluse.test_cases(0, 10, train)
    assert {c["category"] for c in cases} == {"arithmetic", "lookup"}
    for case in cases:
        question = case["messages"][0]["content"]
        assert f"<|user|>\n{question}<|end|>" not in "".join(train)
        (expected,) = case["expected"]
        offered = {t["function"]["name"] for t in case["tools"]}
        assert expected["name"] in offered
        ((param, accepted),) = expected["arguments"].items()
        assert calls_match([_call(expected["name"], **{param: accepted[0]})], case["expected"])
        assert not calls_match([_call(expected["name"], **{param: "0"})], case["expected"])
