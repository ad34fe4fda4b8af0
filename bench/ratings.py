"""Benchmark: Ludus ratings against a FastChat-style baseline on simulated arena battles.

Generates N battles (default 1M) over 100 models with skewed pair frequencies and known strengths
(fixed seed), writes them to a temporary JSONL file, and times:
  bt_counts_s   Ludus BT fit + 1,000-round bootstrap from PairCounts
  bt_file_s     the same from the JSONL file, parsing and counting included
  style_s       Ludus style control with 100 bootstrap rounds (from in-memory arrays)
  style_peak_mb peak RSS of the subprocess that runs the style step alone (ru_maxrss of the child:
                interpreter, numpy, the battle arrays and the fit)
  baseline_fit_s, baseline_bootstrap_s
                FastChat way: pandas pivot tables to cells, scipy L-BFGS on the logistic loss,
                100-round multinomial bootstrap in a pool of 2 processes
  max_rating_diff  max |Ludus - baseline| rating after centring both on 1000
The last stdout line is one JSON object with every figure.

Resampling (stated in the output too): Ludus BT draws each (pair, outcome) cell as Poisson(n)
(the multinomial bootstrap with a Poisson(N) total: the same intervals), using the normal
approximation N(n, n) for cells of 10 battles or more; style control reweights battles by
Poisson(1) counts. tests/ratings checks both against exact resampling / known truth.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One BLAS/OpenMP thread (as in tests and CI): on 2 shared cores, threaded BLAS on small matrices
# made a 100x100 triangular solve ~100x slower. Set before numpy is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arena.ratings import (
    Battles,
    bootstrap_bt,
    counts_from_battles,
    fit_bt,
    fit_style,
    load_battles,
)
from arena.ratings.bt import NORMAL_FROM

MODELS = 100
WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")


def simulate(n: int, seed: int = 2024) -> tuple[Battles, np.ndarray]:
    """Battles with skewed pair frequencies (Zipf-like popularity), ties and style features."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 0.8, MODELS)
    popularity = 1.0 / np.arange(1, MODELS + 1) ** 0.8
    popularity /= popularity.sum()
    a = rng.choice(MODELS, n, p=popularity)
    b = rng.choice(MODELS, n, p=popularity)
    same = a == b
    while same.any():
        b[same] = rng.choice(MODELS, int(same.sum()), p=popularity)
        same = a == b
    sa = rng.poisson([400, 3, 6, 4], (n, 4)).astype(float)
    sb = rng.poisson([400, 3, 6, 4], (n, 4)).astype(float)
    diff = (sa - sb) / (sa + sb + 1)
    z = (diff - diff.mean(axis=0)) / diff.std(axis=0)
    logit = strength[a] - strength[b] + z @ np.array([0.3, 0.05, 0.1, 0.0])
    p_a = 1 / (1 + np.exp(-logit))
    u = rng.random(n)
    tie = u < 0.15
    bothbad = u < 0.03
    outcome = np.where(rng.random(n) < p_a, 0, 1)
    outcome = np.where(tie, 2, outcome)
    outcome = np.where(bothbad, 3, outcome).astype(np.int8)
    models = tuple(f"model-{k:03d}" for k in range(MODELS))
    tstamp = 1.7e9 + np.arange(n, dtype=np.float64)
    return Battles(models, a, b, outcome, tstamp=tstamp, style_a=sa, style_b=sb), strength


def write_jsonl(battles: Battles, path: Path) -> None:
    names = battles.models
    with open(path, "w") as handle:
        assert battles.tstamp is not None
        for a, b, o, t in zip(
            battles.a.tolist(),
            battles.b.tolist(),
            battles.outcome.tolist(),
            battles.tstamp.tolist(),
            strict=True,
        ):
            handle.write(
                f'{{"model_a": "{names[a]}", "model_b": "{names[b]}", "winner": "{WINNERS[o]}", "tstamp": {t}}}\n'
            )


def ludus_bt(counts_source: Battles | Path, rounds: int) -> np.ndarray:
    battles = load_battles(counts_source) if isinstance(counts_source, Path) else counts_source
    counts = counts_from_battles(battles)
    fit = fit_bt(counts)
    bootstrap_bt(counts, fit, rounds=rounds, seed=0)
    return fit.rating


# --- FastChat-style baseline -------------------------------------------------------------------


def _fastchat_cells(df):  # type: ignore[no-untyped-def]
    """compute_mle_elo's preprocessing: pivot tables of wins and ties, wins doubled, ties once."""
    import pandas as pd

    ptbl_a_win = pd.pivot_table(
        df[df["winner"] == "model_a"],
        index="model_a",
        columns="model_b",
        aggfunc="size",
        fill_value=0,
    )
    ptbl_tie = pd.pivot_table(
        df[df["winner"].isin(["tie", "tie (bothbad)"])],
        index="model_a",
        columns="model_b",
        aggfunc="size",
        fill_value=0,
    )
    ptbl_tie = ptbl_tie + ptbl_tie.T
    ptbl_b_win = pd.pivot_table(
        df[df["winner"] == "model_b"],
        index="model_a",
        columns="model_b",
        aggfunc="size",
        fill_value=0,
    )
    ptbl_win = ptbl_a_win * 2 + ptbl_b_win.T * 2 + ptbl_tie
    models = list(ptbl_win.index)
    win = ptbl_win.reindex(index=models, columns=models).to_numpy(dtype=float)
    win = np.nan_to_num(win)
    i, j = np.nonzero(win + win.T)
    keep = i != j
    return models, i[keep], j[keep], win[i[keep], j[keep]]


def _fastchat_fit(m: int, i: np.ndarray, j: np.ndarray, w: np.ndarray) -> np.ndarray:
    from scipy.optimize import minimize

    log_base = math.log(10.0)

    def loss(coef: np.ndarray) -> tuple[float, np.ndarray]:
        z = (coef[i] - coef[j]) * log_base
        value = float(np.sum(w * np.logaddexp(0.0, -z)))
        g = -w / (1 + np.exp(z)) * log_base
        return value, np.bincount(i, g, m) - np.bincount(j, g, m)

    res = minimize(
        loss,
        np.zeros(m),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-10, "ftol": 1e-14, "maxiter": 10000},
    )
    return 400.0 * res.x + 1000.0


def _baseline_round(args: tuple[int, int, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    seed, m, i, j, w = args
    rng = np.random.default_rng(seed)
    total = w.sum()
    drawn = rng.multinomial(round(total / 2), w / total) * 2.0  # cells are in half-battle units
    return _fastchat_fit(m, i, j, drawn)


def baseline(battles: Battles, rounds: int) -> tuple[np.ndarray, list[str], float, float]:
    import pandas as pd

    df = pd.DataFrame(
        {
            "model_a": np.array(battles.models, dtype=object)[battles.a],
            "model_b": np.array(battles.models, dtype=object)[battles.b],
            "winner": np.array(WINNERS, dtype=object)[battles.outcome],
        }
    )
    start = time.perf_counter()
    models, i, j, w = _fastchat_cells(df)
    rating = _fastchat_fit(len(models), i, j, w)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_baseline_round, [(s, len(models), i, j, w) for s in range(rounds)])
    return rating, models, fit_s, time.perf_counter() - start


# --- Style in a child process, for a clean peak-memory figure -------------------------------------


def style_child(n: int) -> None:
    battles, _ = simulate(n)
    start = time.perf_counter()
    fit_style(battles, rounds=100, seed=0)
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"style_s": elapsed, "style_peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--battles", type=int, default=1_000_000)
    parser.add_argument("--style-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.style_child:
        style_child(args.battles)
        return
    battles, _ = simulate(args.battles)
    print(f"{len(battles):,} battles over {MODELS} models")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "battles.jsonl"
        write_jsonl(battles, path)
        print(f"JSONL file: {path.stat().st_size / 1e6:.0f} MB")
        start = time.perf_counter()
        counts = counts_from_battles(battles)
        fit = fit_bt(counts)
        bootstrap_bt(counts, fit, rounds=1000, seed=0)
        bt_counts_s = time.perf_counter() - start
        print(f"Ludus BT + 1000 bootstrap rounds from counts: {bt_counts_s:.2f} s")
        start = time.perf_counter()
        ludus_bt(path, 1000)
        bt_file_s = time.perf_counter() - start
        print(f"Ludus BT + 1000 rounds from the JSONL file:   {bt_file_s:.2f} s")
    child = subprocess.run(
        [sys.executable, __file__, "--style-child", "--battles", str(args.battles)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    style = json.loads(child.stdout.strip().splitlines()[-1])
    print(
        f"Ludus style control, 100 rounds: {style['style_s']:.2f} s, peak RSS {style['style_peak_mb']:.0f} MB"
    )
    base_rating, base_models, base_fit_s, base_boot_s = baseline(battles, 100)
    print(
        f"Baseline fit (pandas cells + L-BFGS): {base_fit_s:.2f} s; 100-round bootstrap, 2 processes: {base_boot_s:.2f} s"
    )
    index = [battles.models.index(m) for m in base_models]
    ours = fit.rating[index]
    diff = float(np.max(np.abs((ours - ours.mean()) - (base_rating - base_rating.mean()))))
    print(f"max |Ludus - baseline| rating after centring: {diff:.5f}")
    print(
        json.dumps(
            {
                "bt_counts_s": round(bt_counts_s, 3),
                "bt_file_s": round(bt_file_s, 3),
                "style_s": round(style["style_s"], 3),
                "style_peak_mb": round(style["style_peak_mb"], 1),
                "style_peak_mb_method": "ru_maxrss of a child process running only the style step",
                "baseline_fit_s": round(base_fit_s, 3),
                "baseline_bootstrap_s": round(base_boot_s, 3),
                "max_rating_diff": diff,
                "bt_resampling": f"Poisson cells, normal approximation from {NORMAL_FROM:g} battles",
                "style_resampling": "Poisson(1) battle weights",
                "battles": len(battles),
                "models": MODELS,
            }
        )
    )


if __name__ == "__main__":
    main()
