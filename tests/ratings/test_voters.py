"""Ratings with a voter report: flagged judges held out, reliabilities as weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from arena.ratings import load_battles
from arena.ratings.cli import main
from collection.quality.cli import main as quality_main
from collection.quality.simulation import battle_rows, simulate


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _board(path: Path, *extra: str) -> dict[str, dict[str, Any]]:
    out = path.with_suffix(".board.json")
    assert main([str(path), "--bootstrap", "10", "--output", str(out), *extra]) == 0
    result = json.loads(out.read_text())
    return {row["model"]: row for row in result["models"]} | {"": result}


def test_it_reads_the_judge_of_each_row(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"model_a": "x", "model_b": "y", "winner": "model_a", "judge": "zoe"},
        {"model_a": "x", "model_b": "y", "winner": "tie"},
        {"model_a": "y", "model_b": "x", "winner": "model_b", "judge": {"winner": "model_a"}},
        {"model_a": "y", "model_b": "x", "winner": "model_a", "judge": "ann"},
    ]
    log = _write(tmp_path / "b.jsonl", rows)
    battles = load_battles(log, judges=True)
    assert battles.judges == ("ann", "zoe")
    assert battles.judge is not None and battles.judge.tolist() == [1, -1, -1, 0]
    picked = battles.select(np.array([False, True, False, True])).judge
    assert picked is not None and picked.tolist() == [-1, 0]
    assert load_battles(log).judge is None  # read only when asked for


def test_it_holds_flagged_voters_out_of_the_board(tmp_path: Path) -> None:
    sim = simulate(
        battles=30_000,
        models=12,
        voters={"honest": 150},
        attack_votes=400,
        attackers=10,
        seed=7,
    )
    log = _write(tmp_path / "battles.jsonl", battle_rows(sim.battles))
    report = tmp_path / "voters.json"
    assert quality_main(["voters", str(log), "--format", "json", "--output", str(report)]) == 0
    flagged = {v["judge"] for v in json.loads(report.read_text())["voters"] if v["flagged"]}
    assert set(sim.battles.judges[150:]) <= flagged and len(flagged) <= 12
    rows = battle_rows(sim.battles)
    honest_rows = [r for r in rows if r["judge"] not in flagged]
    clean = _write(tmp_path / "clean.jsonl", honest_rows)

    target = sim.battles.models[sim.target]
    rigged = _board(log)
    protected = _board(log, "--voters", str(report))
    reference = _board(clean)
    held_out = len(rows) - len(honest_rows)
    assert held_out >= 400
    assert protected[""]["voters"] == {"held_out": held_out, "weighted": False}
    assert protected[target]["rating"] == reference[target]["rating"]
    assert rigged[target]["rating"] > reference[target]["rating"] + 10


def test_it_weights_votes_by_reliability(tmp_path: Path) -> None:
    sim = simulate(battles=5_000, models=6, voters={"honest": 20}, seed=8)
    rows = battle_rows(sim.battles)
    log = _write(tmp_path / "battles.jsonl", rows)
    names = sim.battles.judges
    # A coin (weight 0), a perfect judge (weight 1), a judge at 0.75 (weight 0.5); others absent.
    report = tmp_path / "voters.json"
    report.write_text(
        json.dumps(
            {
                "voters": [
                    {"judge": names[0], "reliability": 0.5, "flagged": False},
                    {"judge": names[1], "reliability": 1.0, "flagged": False},
                    {"judge": names[2], "reliability": 0.75, "flagged": False},
                ]
            }
        )
    )
    weighted = _board(log, "--voters", str(report), "--voter-weights")
    assert weighted[""]["voters"] == {"held_out": 0, "weighted": True}
    # The same board from the weight field: 0 for judge 0, 0.5 for judge 2, 1 elsewhere.
    factor = {names[0]: 0.0, names[2]: 0.5}
    explicit = _write(
        tmp_path / "explicit.jsonl",
        [{**r, "weight": factor.get(str(r["judge"]), 1.0)} for r in rows],
    )
    reference = _board(explicit)
    unweighted = _board(log, "--voters", str(report))
    for model in sim.battles.models:
        assert weighted[model]["rating"] == reference[model]["rating"]
    assert any(weighted[m]["rating"] != unweighted[m]["rating"] for m in sim.battles.models)


def test_it_refuses_weights_without_a_report_and_a_malformed_report(tmp_path: Path) -> None:
    log = _write(
        tmp_path / "b.jsonl",
        [{"model_a": "x", "model_b": "y", "winner": "model_a", "judge": "zoe"}],
    )
    assert main([str(log), "--voter-weights"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"voters": [{"name": "zoe"}]}))
    assert main([str(log), "--voters", str(bad)]) == 2
    bad.write_text("[1, 2]")
    assert main([str(log), "--voters", str(bad)]) == 2
    assert main([str(log), "--voters", str(tmp_path / "missing.json")]) == 2
