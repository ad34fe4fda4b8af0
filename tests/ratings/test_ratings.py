"""Ratings math: closed forms, an independent optimiser, simulations, and the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, stats

from arena.ratings import (
    DEFAULT_PRIOR,
    BattleLogError,
    Battles,
    PairCounts,
    bootstrap_bt,
    compute_leaderboard,
    counts_from_battles,
    fit_bt,
    fit_style,
    load_battles,
    online_elo,
    ratings_over_time,
    sandwich_intervals,
    separated_models,
    style_features,
    winrate_matrix,
)
from arena.ratings.bt import NORMAL_FROM, poisson_resample
from arena.ratings.cli import main
from arena.ratings.style import poisson1_weights

WINNERS = np.array(["model_a", "model_b", "tie"])


def simulate(n: int, m: int, seed: int, tie_rate: float = 0.1) -> tuple[Battles, np.ndarray]:
    rng = np.random.default_rng(seed)
    strength = np.sort(rng.normal(0, 1.0, m))[::-1]
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    p = 1 / (1 + np.exp(-(strength[a] - strength[b])))
    u = rng.random(n)
    outcome = np.where(u < tie_rate, 2, np.where(rng.random(n) < p, 0, 1)).astype(np.int8)
    models = tuple(f"m{k:02d}" for k in range(m))
    return Battles(models, a, b, outcome), strength


def test_it_matches_closed_form_for_two_models() -> None:
    counts = PairCounts.from_rows([("x", "y", "model_a", 30), ("y", "x", "model_a", 10)])
    fit = fit_bt(counts)
    assert fit.rating[0] - fit.rating[1] == pytest.approx(400 * math.log10(3), abs=1e-3)
    assert fit.rating.mean() == pytest.approx(1000)


def test_it_counts_ties_half() -> None:
    counts = PairCounts.from_rows(
        [("x", "y", "model_a", 10), ("x", "y", "model_b", 4), ("x", "y", "tie", 6)]
    )
    fit = fit_bt(counts)
    assert fit.rating[0] - fit.rating[1] == pytest.approx(400 * math.log10(13 / 7), abs=1e-3)
    excluded = fit_bt(
        PairCounts.from_rows(
            [("x", "y", "model_a", 10), ("x", "y", "model_b", 5), ("x", "y", "tie (bothbad)", 9)]
        ),
        bothbad="exclude",
    )
    assert excluded.rating[0] - excluded.rating[1] == pytest.approx(400 * math.log10(2), abs=1e-3)


def test_it_gives_equal_ratings_to_symmetric_models_and_honours_anchor() -> None:
    rows = [(p, q, "model_a", 5) for p in "xyz" for q in "xyz" if p != q]
    fit = fit_bt(PairCounts.from_rows(rows))
    assert np.allclose(fit.rating, 1000)
    counts = PairCounts.from_rows([("x", "y", "model_a", 30), ("y", "x", "model_a", 10)])
    anchored = fit_bt(counts, anchor=("y", 1200.0))
    assert anchored.rating[1] == pytest.approx(1200)
    assert anchored.rating[0] == pytest.approx(1200 + 400 * math.log10(3), abs=1e-3)


def test_it_agrees_with_lbfgs_on_unaggregated_rows() -> None:
    battles, _ = simulate(3000, 6, seed=3)
    fit = fit_bt(counts_from_battles(battles))
    a, b = battles.a, battles.b
    y = np.where(battles.outcome == 0, 1.0, np.where(battles.outcome == 1, 0.0, 0.5))

    def nll(r: np.ndarray) -> tuple[float, np.ndarray]:
        z = (r[a] - r[b]) * math.log(10) / 400
        p = 1 / (1 + np.exp(-z))
        value = float(np.sum(np.logaddexp(0, z) - y * z))
        g = (p - y) * math.log(10) / 400
        return value, np.bincount(a, g, 6) - np.bincount(b, g, 6)

    res = optimize.minimize(
        nll, np.zeros(6), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15}
    )
    ref = res.x - res.x.mean() + 1000
    assert np.max(np.abs(ref - fit.rating)) < 1e-3


def test_it_recovers_strengths_with_calibrated_intervals() -> None:
    # No ties here: random ties shrink BT differences (ties count half), so truth would not match.
    battles, strength = simulate(20000, 12, seed=5, tie_rate=0.0)
    counts = counts_from_battles(battles)
    fit = fit_bt(counts)
    truth = strength * 400 / math.log(10)
    truth = truth - truth.mean() + 1000
    assert stats.spearmanr(fit.rating, truth).statistic > 0.95
    covered = []
    for seed in range(8):
        sim, _ = simulate(20000, 12, seed=100 + seed)
        # Same strengths, fresh battles: re-simulate outcomes with the first strengths.
        rng = np.random.default_rng(seed)
        p = 1 / (1 + np.exp(-(strength[sim.a] - strength[sim.b])))
        oc = np.where(rng.random(len(sim)) < p, 0, 1)
        sim = Battles(sim.models, sim.a, sim.b, oc.astype(np.int8))
        c = counts_from_battles(sim)
        f = fit_bt(c)
        boot = bootstrap_bt(c, f, rounds=200, seed=seed)
        covered.append((boot.lower <= truth) & (truth <= boot.upper))
        sand = sandwich_intervals(c, f)
        assert np.allclose(sand.upper - sand.lower, boot.upper - boot.lower, rtol=0.3)
    coverage = float(np.mean(covered))
    assert 0.85 <= coverage <= 0.99


def test_it_fits_davidson_ties() -> None:
    battles, strength = simulate(5000, 5, seed=9, tie_rate=0.3)
    fit = fit_bt(counts_from_battles(battles), ties="davidson")
    assert fit.tie_param is not None
    assert stats.spearmanr(fit.rating, strength).statistic > 0.95


def test_it_recovers_planted_style_coefficient() -> None:
    rng = np.random.default_rng(11)
    n, m = 20000, 8
    strength = rng.normal(0, 0.5, m)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    sa = rng.poisson(200, (n, 4)).astype(float)
    sb = rng.poisson(200, (n, 4)).astype(float)
    diff = (sa - sb) / (sa + sb + 1)
    z = (diff - diff.mean(0)) / diff.std(0)
    logit = strength[a] - strength[b] + 0.5 * z[:, 0]
    outcome = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), 0, 1).astype(np.int8)
    battles = Battles(tuple(f"m{k}" for k in range(m)), a, b, outcome, style_a=sa, style_b=sb)
    result = fit_style(battles, rounds=20, seed=1)
    assert result.coefficients["length"] == pytest.approx(0.5, abs=0.06)
    assert abs(result.coefficients["bold"]) < 0.06
    assert (
        result.coefficient_lower["length"]
        < result.coefficients["length"]
        < result.coefficient_upper["length"]
    )


def test_it_removes_adaptive_sampling_bias_with_ipw() -> None:
    # Model 0 is shown against the weak model 2 far more often when it wins more... simulate a
    # sampler that depends on a hidden draw-level variable: only the propensity corrects it.
    rng = np.random.default_rng(13)
    n = 60000
    strength = np.array([0.0, 0.0, 0.0])
    pairs = np.array([[0, 1], [0, 2], [1, 2]])
    # Easy prompts (where model 0 shines) are routed to pair (0, 2) with high probability.
    easy = rng.random(n) < 0.5
    prob = np.where(easy[:, None], [0.1, 0.8, 0.1], [0.45, 0.1, 0.45])
    choice = (rng.random(n)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1)
    a, b = pairs[choice, 0], pairs[choice, 1]
    bonus = np.where(easy & (a == 0), 1.0, np.where(~easy & (a == 0), -1.0, 0.0))
    p = 1 / (1 + np.exp(-(strength[a] - strength[b] + bonus)))
    outcome = np.where(rng.random(n) < p, 0, 1).astype(np.int8)
    pair_prob = prob[np.arange(n), choice]
    battles = Battles(("m0", "m1", "m2"), a, b, outcome, pair_prob=pair_prob)
    naive = fit_bt(counts_from_battles(battles)).rating
    weighted = fit_bt(counts_from_battles(battles, ipw=True)).rating
    # Under uniform pair sampling, model 0's easy and hard bonuses cancel: it ties the others.
    assert naive[0] - 1000 > 20
    assert abs(weighted[0] - 1000) < 10


def test_it_applies_elo_closed_form_for_one_battle() -> None:
    battles = Battles(("x", "y"), np.array([0]), np.array([1]), np.array([0], dtype=np.int8))
    elo = online_elo(battles)
    assert elo.rating[0] == pytest.approx(1002.0)
    assert elo.rating[1] == pytest.approx(998.0)


def test_it_counts_style_outside_code_blocks() -> None:
    text = "# Title\n\n- one\n- **two**\n\n```\n# not a header\n- not a list\n```\n1. three\n"
    features = style_features(text)
    assert features["headers"] == 1
    assert features["lists"] == 3
    assert features["bold"] == 1
    assert features["length"] > 10


def write_jsonl(path: Path, rows: list[dict[str, object] | str]) -> None:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


def sample_rows(n: int = 400) -> list[dict[str, object] | str]:
    battles, _ = simulate(n, 4, seed=21)
    return [
        {
            "model_a": battles.models[a],
            "model_b": battles.models[b],
            "winner": str(WINNERS[o]),
            "tstamp": k,
        }
        for k, (a, b, o) in enumerate(zip(battles.a, battles.b, battles.outcome, strict=True))
    ]


def test_it_reads_jsonl_and_array_alike(tmp_path: Path) -> None:
    rows = sample_rows()
    write_jsonl(tmp_path / "b.jsonl", rows)
    (tmp_path / "b.json").write_text(json.dumps(rows, indent=1))
    lines = load_battles(tmp_path / "b.jsonl")
    array = load_battles(tmp_path / "b.json")
    assert array.models == lines.models
    assert np.array_equal(array.a, lines.a) and np.array_equal(array.outcome, lines.outcome)
    assert lines.tstamp is not None and lines.tstamp[5] == 5
    # Field order, nested objects, CRLF line ends and blank lines change nothing.
    reordered = [{"winner": r["winner"], **r} for r in rows if isinstance(r, dict)]
    nested = [{**r, "judge": {"winner": "model_b"}} for r in rows if isinstance(r, dict)]
    crlf = "".join(json.dumps(r) + "\r\n" for r in rows)
    for name, text in (
        ("reordered", "\n".join(json.dumps(r) for r in reordered)),
        ("nested", "\n\n".join(json.dumps(r) for r in nested)),
        ("crlf", crlf),
    ):
        (tmp_path / name).write_text(text)
        other = load_battles(tmp_path / name)
        assert other.models == lines.models, name
        assert np.array_equal(other.a, lines.a) and np.array_equal(other.outcome, lines.outcome)
        assert other.tstamp is not None and np.array_equal(other.tstamp, lines.tstamp), name


def test_it_names_the_line_of_a_bad_element_of_a_json_array(tmp_path: Path) -> None:
    rows = sample_rows(5)
    rows[3] = {"model_a": "m00", "model_b": "m00", "winner": "tie"}
    (tmp_path / "b.json").write_text(json.dumps(rows, indent=1))
    (tmp_path / "broken.json").write_text('[\n{"model_a": "x",\n "model_b": }\n]')

    with pytest.raises(BattleLogError, match="same model") as error:
        load_battles(tmp_path / "b.json")
    with pytest.raises(BattleLogError, match="invalid JSON") as broken:
        load_battles(tmp_path / "broken.json")

    assert error.value.line == 2 + 3 * 6  # "[" then six lines per indented object
    assert broken.value.line == 3


def test_it_runs_the_command_line_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "battles.jsonl"
    write_jsonl(path, sample_rows())
    out = tmp_path / "out.json"
    assert main([str(path), "--bootstrap", "50", "--seed", "3", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["method"] == "bt" and result["bootstrap"] == 50 and result["battles"] == 400
    assert {"model", "rating", "lower", "upper", "rank", "battles"} <= set(result["models"][0])
    assert (
        main(
            [
                str(path),
                "--bootstrap",
                "50",
                "--seed",
                "3",
                "--output",
                str(tmp_path / "again.json"),
            ]
        )
        == 0
    )
    assert (tmp_path / "again.json").read_text() == out.read_text()
    assert main([str(path), "--bootstrap", "20", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "rank,model,rating,lower,upper,battles,provisional,separated"
    assert len(lines) == 5
    assert main([str(path), "--method", "elo", "--bootstrap", "5"]) == 0
    assert (
        main([str(path), "--interval", "sandwich", "--ties", "davidson", "--anchor", "m00=1100"])
        == 0
    )
    assert '"rating": 1100.0' in capsys.readouterr().out


def test_it_reports_bad_lines_or_skips_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = sample_rows(50)
    rows[6] = '{"model_a": "m00", "model_b": "m01", "winner": "nobody"}'
    rows[9] = "{not json"
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, rows)
    with pytest.raises(BattleLogError) as error:
        load_battles(path)
    assert error.value.line == 7
    assert main([str(path)]) == 2
    assert "line 7" in capsys.readouterr().err
    skipped = load_battles(path, skip_bad=True)
    assert skipped.skipped == 2 and len(skipped) == 48
    assert main([str(path), "--skip-bad", "--bootstrap", "10"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 2


def test_it_filters_categories_and_builds_matrices() -> None:
    rows: list[dict[str, object]] = [
        {"model_a": "x", "model_b": "y", "winner": "model_a", "category": ["coding"]},
        {"model_a": "x", "model_b": "y", "winner": "model_b", "categories": ["math"]},
        {"model_a": "y", "model_b": "x", "winner": "tie"},
    ]
    battles = load_battles(rows)
    assert len(battles.in_category("coding")) == 1
    result = compute_leaderboard(battles, rounds=10, category="math")
    assert result["battles"] == 1
    wr = winrate_matrix(counts_from_battles(battles))
    assert wr[0, 1] == pytest.approx(0.5) and wr[1, 0] == pytest.approx(0.5)


def skewed_counts(seed: int) -> tuple[PairCounts, np.ndarray]:
    """Counts with skewed pair frequencies: cells both below and above NORMAL_FROM battles."""
    rng = np.random.default_rng(seed)
    m, n = 10, 15000
    strength = rng.normal(0, 0.6, m)
    popularity = 1.0 / np.arange(1, m + 1) ** 1.2
    popularity /= popularity.sum()
    a = rng.choice(m, n, p=popularity)
    b = (a + 1 + rng.choice(m - 1, n)) % m
    p = 1 / (1 + np.exp(-(strength[a] - strength[b])))
    u = rng.random(n)
    outcome = np.where(u < 0.1, 2, np.where(rng.random(n) < p, 0, 1)).astype(np.int8)
    battles = Battles(tuple(f"m{k}" for k in range(m)), a, b, outcome)
    return counts_from_battles(battles), strength


def test_poisson_bootstrap_matches_exact_multinomial_bootstrap() -> None:
    counts, _ = skewed_counts(31)
    cells = counts.n.ravel()
    assert (cells[cells > 0] < NORMAL_FROM).any() and (cells >= NORMAL_FROM).any()
    fit = fit_bt(counts)
    rounds = 400
    ours = bootstrap_bt(counts, fit, rounds=rounds, seed=1)
    # Reference: FastChat's exact multinomial resampling of all battles, one full fit per round.
    rng = np.random.default_rng(2)
    total = int(cells.sum())
    ref = np.empty((rounds, len(counts.models)))
    for r in range(rounds):
        drawn = rng.multinomial(total, cells / total).astype(float).reshape(counts.n.shape)
        resampled = PairCounts(counts.models, counts.i, counts.j, drawn, drawn, drawn)
        ref[r] = fit_bt(resampled).rating
    lower, upper = np.percentile(ref, [2.5, 97.5], axis=0)
    width = upper - lower
    # Monte Carlo error of a 2.5% quantile from 400 rounds is ~0.05 of the width (per side).
    assert np.mean(ours.upper - ours.lower) == pytest.approx(np.mean(width), rel=0.08)
    assert np.all(np.abs(ours.lower - lower) < 0.2 * width)
    assert np.all(np.abs(ours.upper - upper) < 0.2 * width)
    # Bootstrap means sit on the fit (no bias from the normal approximation of large cells).
    assert ours.samples is not None
    assert np.all(np.abs(ours.samples.mean(axis=0) - fit.rating) < 0.1 * width)


def test_poisson_resample_moments_and_poisson1_weights() -> None:
    rng = np.random.default_rng(3)
    n = np.array([0.0, 2.0, 9.0, 10.0, 400.0])
    draws = poisson_resample(rng, n, 20000)
    assert np.all(draws[0] == 0) and np.all(draws >= 0)
    assert np.allclose(draws.mean(axis=1), n, atol=0.1 + 0.03 * np.sqrt(n))
    assert np.allclose(draws.var(axis=1), n, rtol=0.05, atol=0.05)
    assert np.all(draws[1:3] == np.round(draws[1:3]))  # small cells: exact Poisson integers
    w = poisson1_weights(rng, (200000, 2)).astype(float)
    assert w.mean() == pytest.approx(1.0, abs=0.01) and w.var() == pytest.approx(1.0, abs=0.02)
    assert np.mean(w == 0) == pytest.approx(math.exp(-1), abs=0.005)
    assert np.mean(w == 3) == pytest.approx(math.exp(-1) / 6, abs=0.003)


def simulate_davidson(
    strength: np.ndarray, kappa: float, n: int, seed: int
) -> tuple[Battles, np.ndarray]:
    rng = np.random.default_rng(seed)
    m = len(strength)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    half = (strength[a] - strength[b]) / 2
    odds = np.column_stack([np.exp(half), np.exp(-half), np.full(n, math.exp(kappa))])
    prob = odds / odds.sum(axis=1, keepdims=True)
    outcome = (rng.random(n)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1).astype(np.int8)
    return Battles(tuple(f"m{k}" for k in range(m)), a, b, outcome), strength


def test_davidson_sandwich_intervals_cover_truth_and_match_bootstrap() -> None:
    rng = np.random.default_rng(41)
    strength = rng.normal(0, 0.8, 8)
    truth = strength * 400 / math.log(10)
    truth = truth - truth.mean() + 1000
    covered = []
    for seed in range(8):
        battles, _ = simulate_davidson(strength, -0.5, 8000, seed)
        counts = counts_from_battles(battles)
        fit = fit_bt(counts, ties="davidson")
        assert fit.tie_param == pytest.approx(-0.5, abs=0.1)
        sand = sandwich_intervals(counts, fit, ties="davidson")
        covered.append((sand.lower <= truth) & (truth <= sand.upper))
        boot = bootstrap_bt(counts, fit, rounds=150, seed=seed, ties="davidson")
        assert np.allclose(sand.upper - sand.lower, boot.upper - boot.lower, rtol=0.3)
        assert np.allclose(sand.lower + sand.upper, 2 * fit.rating)
    assert 0.85 <= float(np.mean(covered)) <= 1.0


def test_ratings_over_time_refits_cumulative_battles() -> None:
    battles, _ = simulate(3000, 5, seed=51)
    rng = np.random.default_rng(5)
    tstamp = rng.permutation(len(battles)).astype(float) + 1.7e9
    # The first 300 battles in time never involve model m04.
    late = tstamp < 1.7e9 + 300
    b = np.where(late & (battles.b == 4), 3, battles.b)
    a = np.where(late & (battles.a == 4), np.where(b == 0, 1, 0), battles.a)
    b = np.where(a == b, (a + 1) % 4, b)
    timed = Battles(battles.models, a, b, battles.outcome, tstamp=tstamp)
    points = ratings_over_time(timed, points=10)
    assert [p["battles"] for p in points] == list(range(300, 3001, 300))
    assert [p["until"] for p in points] == [1.7e9 + k - 1 for k in range(300, 3001, 300)]
    assert "m04" not in points[0]["ratings"] and "m04" in points[1]["ratings"]
    full = fit_bt(counts_from_battles(timed), prior=DEFAULT_PRIOR)
    assert points[-1]["ratings"] == {
        m: round(float(r), 4) for m, r in zip(full.models, full.rating, strict=True)
    }
    first = fit_bt(counts_from_battles(timed.select(late)), prior=DEFAULT_PRIOR)
    assert points[0]["ratings"] == {
        m: round(float(r), 4) for m, r in zip(first.models, first.rating, strict=True) if m != "m04"
    }


def test_it_keeps_an_undefeated_model_finite_and_says_the_data_separate() -> None:
    """Two votes, both won by s: the maximum-likelihood rating is unbounded (thousands of
    points); the published fit holds it with the weak prior and flags both models."""
    counts = PairCounts.from_rows([("s", "m", "model_a", 2)])

    mle = fit_bt(counts)
    result = compute_leaderboard(counts, rounds=20, min_votes=300)

    mle_ratings = dict(zip(mle.models, mle.rating, strict=True))
    assert mle_ratings["s"] - mle_ratings["m"] > 2000
    ratings = {row["model"]: row for row in result["models"]}
    assert 1000 < ratings["s"]["rating"] < 1200 and 800 < ratings["m"]["rating"] < 1000
    assert all(row["separated"] and row["provisional"] for row in ratings.values())
    assert all(row["rank"] is None for row in ratings.values())
    assert result["separated"] == 2 and result["prior"] == DEFAULT_PRIOR
    assert compute_leaderboard(PairCounts.from_rows([]), rounds=5)["models"] == []


def test_it_flags_only_the_models_outside_the_connected_core() -> None:
    battles, _ = simulate(600, 4, seed=8)
    rows = [
        (battles.models[a], battles.models[b], ("model_a", "model_b", "tie")[o], 1)
        for a, b, o in zip(battles.a, battles.b, battles.outcome, strict=True)
    ]
    rows += [("newcomer", "m00", "model_a", 3), ("newcomer", "m01", "model_a", 2)]
    counts = PairCounts.from_rows(rows)

    flags = dict(zip(counts.models, separated_models(counts), strict=True))

    assert flags == {"m00": False, "m01": False, "m02": False, "m03": False, "newcomer": True}
    counts_with_loss = PairCounts.from_rows([*rows, ("m02", "newcomer", "model_a", 1)])
    assert not separated_models(counts_with_loss).any()


def test_it_ranks_only_models_past_the_vote_threshold() -> None:
    battles, _ = simulate(900, 4, seed=9)
    rows = [
        (battles.models[a], battles.models[b], ("model_a", "model_b", "tie")[o], 1)
        for a, b, o in zip(battles.a, battles.b, battles.outcome, strict=True)
    ]
    rows += [("young", "m00", "model_b", 5), ("young", "m03", "model_a", 5)]

    result = compute_leaderboard(PairCounts.from_rows(rows), rounds=30, min_votes=100)

    young = next(row for row in result["models"] if row["model"] == "young")
    ranked = [row for row in result["models"] if not row["provisional"]]
    assert young["provisional"] and young["rank"] is None and young["battles"] == 10
    assert len(ranked) == 4 and min(row["rank"] for row in ranked) == 1
    assert all(isinstance(row["rank"], int) for row in ranked)


def test_it_fits_both_bad_apart_with_its_own_davidson_parameter() -> None:
    rng = np.random.default_rng(12)
    n = 20_000
    a = rng.integers(0, 3, n)
    b = (a + rng.integers(1, 3, n)) % 3
    strength = np.array([0.5, 0.0, -0.5])
    half = (strength[a] - strength[b]) / 2
    # Davidson: win : loss : tie : both bad = e^(d/2) : e^(-d/2) : e^-0.5 : e^-1.5
    weights = np.stack(
        [np.exp(half), np.exp(-half), np.full(n, math.exp(-0.5)), np.full(n, math.exp(-1.5))], 1
    )
    p = weights / weights.sum(axis=1, keepdims=True)
    outcome = (rng.random(n)[:, None] > p.cumsum(axis=1)).sum(axis=1).astype(np.int8)
    counts = counts_from_battles(Battles(("x", "y", "z"), a, b, outcome))

    apart = fit_bt(counts, ties="davidson", bothbad="davidson")
    merged = fit_bt(counts, ties="davidson")
    result = compute_leaderboard(counts, rounds=30, ties="davidson", bothbad="davidson")

    assert apart.tie_param is not None and abs(apart.tie_param + 0.5) < 0.05
    assert apart.bothbad_param is not None and abs(apart.bothbad_param + 1.5) < 0.08
    assert merged.bothbad_param is None
    assert abs((apart.theta[0] - apart.theta[2]) - 1.0) < 0.06
    assert result["bothbad"] == "davidson" and "davidson_log_nu_bothbad" in result
    sandwich = sandwich_intervals(counts, apart, ties="davidson", bothbad="davidson")
    assert np.all(sandwich.lower < apart.rating) and np.all(apart.rating < sandwich.upper)
    with pytest.raises(ValueError, match="Davidson ties"):
        fit_bt(counts, bothbad="davidson")


def test_the_command_line_takes_the_prior_the_threshold_and_both_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "battles.jsonl"
    write_jsonl(path, sample_rows())

    assert main([str(path), "--bootstrap", "10", "--min-votes", "1000", "--prior", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["min_votes"] == 1000 and result["prior"] == 0.0
    assert all(row["provisional"] and row["rank"] is None for row in result["models"])
    assert main([str(path), "--ties", "davidson", "--bothbad", "davidson", "--bootstrap", "5"]) == 0
    assert '"bothbad": "davidson"' in capsys.readouterr().out
    assert main([str(path), "--bothbad", "davidson"]) == 2
    capsys.readouterr()
    assert main([str(path), "--method", "style"]) == 2  # this log has no style features
    assert "no battle has style features" in capsys.readouterr().err
