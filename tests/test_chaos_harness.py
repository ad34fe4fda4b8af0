"""`make chaos` and bench/load.py judge by their own arithmetic: a vote lost, doubled or a stream left
open must fail the run, and the load step named must be the first one past 1 s."""

from __future__ import annotations

import sys
from typing import Any

from ludus_dev.chaos import FAULTS, failed_checks, vote_counts
from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))  # as the bench scripts import each other
from load import p99_over_1s_at


def _report(**changes: Any) -> dict[str, Any]:
    acknowledged = {("b1", 1), ("b2", 2), ("b3", 3)}
    report: dict[str, Any] = {
        **vote_counts(acknowledged, {1: 1, 2: 1, 3: 1}),
        "stuck_generations": 0,
        "streams_unended": 0,
        "stuck_rounds": 0,
        "recovered": True,
        "fault_details": {fault: {"back": True} for fault in FAULTS},
    }
    return report | changes


def test_it_counts_acknowledged_votes_stored_lost_and_duplicated() -> None:
    acknowledged = {("b1", 1), ("b2", 2), ("b3", 3), ("b4", 4)}
    counts = vote_counts(acknowledged, {1: 1, 2: 2, 4: 1, 9: 1})  # 9: stored, never acknowledged
    assert counts == {"acknowledged": 4, "stored": 3, "lost": 1, "duplicated": 1}


def test_it_passes_a_run_where_everything_held() -> None:
    assert failed_checks(_report()) == []


def test_it_fails_on_each_broken_promise() -> None:
    lost = vote_counts({("b1", 1), ("b2", 2)}, {1: 1})
    assert failed_checks(_report(**lost)) == ["1 acknowledged votes are not stored"]
    doubled = vote_counts({("b1", 1)}, {1: 2})
    assert failed_checks(_report(**doubled)) == ["1 votes are stored more than once"]
    assert failed_checks(_report(stuck_generations=2)) == ["2 answers are still streaming"]
    assert failed_checks(_report(streams_unended=1)) == [
        "1 watched answers neither ended nor errored"
    ]
    assert failed_checks(_report(stuck_rounds=1)) == ["1 visitors' rounds never ended"]
    assert failed_checks(_report(recovered=False)) == [
        "a battle after the faults did not stream and take a vote"
    ]
    down = {"kill_web": {"back": False}, "kill_gen_mid_answer": {"back": True, "mid_answer": False}}
    assert failed_checks(_report(fault_details=down)) == [
        "kill_web: the service did not come back",
        "kill_gen_mid_answer: no answer was streaming when the worker was killed",
    ]
    nothing = vote_counts(set(), {})
    assert failed_checks(_report(**nothing)) == ["no vote was acknowledged: the load did not run"]


def test_it_names_the_first_step_whose_one_request_p99_passed_a_second() -> None:
    def step(users: int, **p99: float) -> dict[str, Any]:
        return {"users": users, "actions": {a: {"p99_s": s} for a, s in p99.items()}}

    steps = [
        step(2, battle=0.2, vote=0.1, stream=4.0),  # a whole stream is not one request
        step(4, battle=0.9, leaderboard=1.0),
        step(8, vote=1.2),
        step(16, battle=3.0),
    ]
    assert p99_over_1s_at(steps) == 8
    assert p99_over_1s_at(steps[:2]) is None
