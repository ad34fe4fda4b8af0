"""Quality control math: voter reliabilities and anomalies, Dawid-Skene, Krippendorff's alpha."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

from arena.ratings import Battles, bootstrap_bt, counts_from_battles, fit_bt
from arena.ratings.bt import DEFAULT_PRIOR
from collection.quality import assess_voters, dawid_skene, krippendorff_alpha
from collection.quality.cli import main
from collection.quality.simulation import battle_rows, simulate


def _rating_and_rank(battles: Battles, target: int) -> tuple[float, int]:
    fit = fit_bt(counts_from_battles(battles), prior=DEFAULT_PRIOR)
    return float(fit.rating[target]), int((fit.rating > fit.rating[target]).sum()) + 1


def test_it_ranks_voters_by_reliability_and_flags_the_coordinated_group() -> None:
    sim = simulate(
        battles=60_000,
        models=20,
        voters={"honest": 120, "careless": 40, "spammer": 20},
        attack_votes=400,
        attackers=16,
        gold_per_judge=30,
        activity_sigma=0.3,
        seed=1,
    )
    reports = assess_voters(sim.battles, sim.gold)
    assert [r.judge for r in reports] == list(sim.battles.judges)
    reliability = np.array([r.reliability for r in reports])
    flagged = np.array([r.flagged for r in reports])
    assert stats.spearmanr(reliability, sim.accuracy).statistic >= 0.8
    assert flagged[sim.attackers].all()
    assert flagged[~sim.attackers].mean() < 0.01
    target = sim.battles.models[sim.target]
    assert all(target in r.reasons[0] for r in reports if r.flagged)


def test_it_keeps_a_rigged_model_in_place_on_a_scaled_down_arena() -> None:
    # The acceptance simulation of bench/quality.py at 1/20 of its size: 50k battles, 20 models.
    sim = simulate(
        battles=50_000,
        models=20,
        voters={"honest": 800, "careless": 200},
        attack_votes=500,
        attackers=20,
        seed=4,
    )
    battles = sim.battles
    assert battles.judge is not None
    attacker_vote = sim.attackers[battles.judge]
    clean = battles.select(~attacker_vote)
    counts = counts_from_battles(clean)
    fit = fit_bt(counts, prior=DEFAULT_PRIOR)
    intervals = bootstrap_bt(counts, fit, rounds=100, seed=0, prior=DEFAULT_PRIOR)
    width = intervals.upper[sim.target] - intervals.lower[sim.target]
    clean_rating, clean_rank = _rating_and_rank(clean, sim.target)
    rigged_rating, _ = _rating_and_rank(battles, sim.target)
    assert (rigged_rating - clean_rating) / width > 1.0  # the attack works without protection

    flagged = np.array([r.flagged for r in assess_voters(battles)])
    assert flagged[sim.attackers].mean() >= 0.8
    assert flagged[~sim.attackers].mean() < 0.01
    protected_rating, protected_rank = _rating_and_rank(
        battles.select(~flagged[battles.judge]), sim.target
    )
    assert abs(protected_rating - clean_rating) / width < 0.5
    assert abs(protected_rank - clean_rank) <= 1


def test_it_flags_rigged_votes_spread_over_many_small_accounts_as_a_group() -> None:
    # 300 votes from 150 accounts, two each: too few to test any account alone.
    sim = simulate(
        battles=50_000,
        models=20,
        voters={"honest": 800, "careless": 200},
        attack_votes=300,
        attackers=150,
        seed=6,
    )
    reports = assess_voters(sim.battles)
    flagged = np.array([r.flagged for r in reports])
    assert flagged[sim.attackers].mean() >= 0.8
    assert flagged[~sim.attackers].mean() < 0.01
    group = [r for r in reports if r.flagged and r.reasons[0].startswith("one-sided group: ")]
    assert len(group) >= 120
    assert sim.battles.models[sim.target] in group[0].reasons[0]


def test_it_flags_a_judge_who_votes_against_the_board_in_the_sequential_test() -> None:
    sim = simulate(battles=40_000, models=12, voters={"honest": 200}, activity_sigma=0.2, seed=2)
    battles = sim.battles
    assert battles.judge is not None
    # One judge's votes turned around: the weaker model wins each decided battle.
    mine = battles.judge == 0
    weaker_a = sim.strength[battles.a] < sim.strength[battles.b]
    outcome = battles.outcome.copy()
    decided = mine & (outcome <= 1)
    outcome[decided] = np.where(weaker_a[decided], 0, 1)
    turned = Battles(
        models=battles.models,
        a=battles.a,
        b=battles.b,
        outcome=outcome,
        tstamp=battles.tstamp,
        judges=battles.judges,
        judge=battles.judge,
    )
    reports = assess_voters(turned)
    assert reports[0].flagged
    assert any(r.startswith("sequential test: the first ") for r in reports[0].reasons)
    assert reports[0].reliability < 0.3
    assert sum(r.flagged for r in reports[1:]) <= 1


def test_it_flags_votes_too_fast_for_their_answers() -> None:
    n = 40
    judge = np.repeat(np.arange(2), n // 2)
    tstamp = np.r_[np.arange(n // 2) * 2.0, np.arange(n // 2) * 60.0]  # every 2 s / every 60 s
    tokens = np.full((n, 4), 400.0)  # 800 tokens to read per battle
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, n)
    battles = Battles(
        models=("m0", "m1", "m2", "m3"),
        a=a,
        b=a + 1,
        outcome=rng.integers(0, 3, n).astype(np.int8),
        tstamp=tstamp,
        style_a=tokens,
        style_b=tokens,
        judges=("fast", "reader"),
        judge=judge,
    )
    fast, reader = assess_voters(battles)
    assert fast.flagged and fast.reasons[0].startswith("too fast: 19 of 19 timed votes")
    assert not reader.flagged


def test_it_estimates_label_reliability_with_dawid_skene() -> None:
    rng = np.random.default_rng(3)
    labels = ["helpful", "refusal", "unsafe"]
    truth = rng.integers(0, 3, 400)
    accuracy = np.r_[np.linspace(0.95, 0.6, 12), [1 / 3] * 3]
    items, who, given = [], [], []
    for item, true in enumerate(truth):
        for worker in rng.choice(len(accuracy), 5, replace=False):
            right = rng.random() < accuracy[worker]
            label = true if right else rng.choice([k for k in range(3) if k != true])
            items.append(f"i{item}")
            who.append(f"w{worker:02d}")
            given.append(labels[label])
    gold = {f"i{k}": labels[truth[k]] for k in range(20)}
    fit = dawid_skene(items, who, given, gold=gold)
    order = [int(str(c)[1:]) for c in fit.contributors]
    assert stats.spearmanr(fit.reliability, accuracy[order]).statistic >= 0.8
    assert abs(fit.reliability[order.index(0)] - 0.95) < 0.08
    consensus = [fit.labels[k] for k in fit.posterior.argmax(axis=1)]
    expected = [labels[truth[int(str(i)[1:])]] for i in fit.items]
    assert np.mean([c == e for c, e in zip(consensus, expected, strict=True)]) > 0.93


def test_it_computes_krippendorffs_alpha_of_the_reference_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 coders, 12 units.
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    pairs = [(u, v) for row in coders for u, v in enumerate(row) if v is not None]
    items, values = [p[0] for p in pairs], [p[1] for p in pairs]
    assert round(krippendorff_alpha(items, values, level="nominal"), 3) == 0.743
    assert round(krippendorff_alpha(items, values, level="ordinal"), 3) == 0.815
    assert round(krippendorff_alpha(items, values, level="interval"), 3) == 0.849
    assert krippendorff_alpha([1, 1, 2, 2], ["x", "x", "y", "y"]) == 1.0
    assert np.isnan(krippendorff_alpha([1, 2], ["x", "y"]))  # nothing pairable


def test_it_writes_voter_and_label_reports_from_the_command_line(tmp_path: Path) -> None:
    sim = simulate(
        battles=20_000,
        models=10,
        voters={"honest": 60},
        attack_votes=200,
        attackers=8,
        gold_per_judge=5,
        seed=5,
    )
    log = tmp_path / "battles.jsonl"
    log.write_text("".join(json.dumps(row) + "\n" for row in battle_rows(sim.battles)))
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        json.dumps({"judge": "judge-000000", "winner": "model_a", "gold": "model_b"}) + "\n"
    )
    out = tmp_path / "voters.json"
    assert (
        main(["voters", str(log), "--gold", str(gold), "--format", "json", "--output", str(out)])
        == 0
    )
    voters = json.loads(out.read_text())["voters"]
    assert len(voters) == 68
    assert set(voters[0]) == {"judge", "votes", "reliability", "flagged", "reasons"}
    assert sum(v["votes"] for v in voters) == 20_200
    assert {v["judge"] for v in voters if v["flagged"]} == set(sim.battles.judges[60:])

    labels = tmp_path / "labels.jsonl"
    rows = [
        {"item": "q1", "judge": "bob", "label": "helpful", "set": "s1"},
        {"item": "q1", "judge": "eve", "label": "helpful", "set": "s1"},
        {"item": "q2", "judge": "bob", "label": "unsafe", "set": "s1"},
        {"item": "q2", "judge": "eve", "label": "unsafe", "set": "s1"},
        {"item": "q3", "judge": "bob", "label": "helpful", "set": "s2"},
        {"item": "q3", "judge": "eve", "label": "unsafe", "set": "s2"},
    ]
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "labels.json"
    assert main(["labels", str(labels), "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [c["judge"] for c in report["contributors"]] == ["bob", "eve"]
    assert {i["item"]: i["label"] for i in report["items"]}["q2"] == "unsafe"
    assert report["agreement"] == [
        {"set": "s1", "items": 2, "alpha": 1.0},
        {"set": "s2", "items": 1, "alpha": 0.0},
    ]
    assert main(["voters", str(tmp_path / "missing.jsonl")]) == 2
    anonymous = tmp_path / "anonymous.jsonl"  # a log without judges has no voters to score
    anonymous.write_text(json.dumps({"model_a": "x", "model_b": "y", "winner": "tie"}) + "\n")
    assert main(["voters", str(anonymous), "--output", str(out)]) == 0
    assert json.loads(out.read_text()) == {"voters": []}
