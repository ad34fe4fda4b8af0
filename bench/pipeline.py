"""Benchmark: the filtering pipeline on synthetic conversations with planted near-copies and PII.

Generates N conversations (default 1M; ``--rows`` to scale down) with a fixed seed: prompts and
replies of random words from a 5,000-word vocabulary (so unrelated prompts share almost no
3-word shingles), ``--dup-rate`` of them near-copies of an earlier prompt (word substitutions,
insertions, deletions, case and punctuation, kept only when the Jaccard similarity of the word
3-gram shingles to the source is at least 0.8; the reply differs so exact dedup cannot catch
them), and ``--pii-rate`` of them carrying one planted PII value of a random kind.

Measured, in this process on the in-memory rows:
  <step>_rows_per_s   each step alone over all N rows, per wall-clock second and per CPU second
                      of this process (<step>_rows_per_cpu_s: the figure that holds on a
                      machine others share)
  neardup_conv_per_s_per_core  rows / CPU seconds of the process while near-dedup ran alone
  neardup_recall      planted near-copies dropped / planted near-copies
  neardup_precision   planted near-copies dropped / rows dropped
  pii_recall          planted values with no fragment left / planted values
  pii_partial_leaks   planted values no longer whole in the output but with a fragment left
                      (a run of 4+ letters/digits of the value, more often in the output than
                      in the rest of the original row)
Measured in subprocesses running the command line on a JSON Lines file (input written
streaming, output written streaming):
  end_to_end_rows_per_s (and _per_cpu_s), pipeline_peak_mb   all steps (normalize,dedup,neardup,pii,lang,
                                            toxicity,quality): wall time and peak RSS
  export_peak_mb      peak RSS while the streaming steps (normalize,pii,lang,toxicity,quality)
                      read the rows and write the output JSONL: the export path, with no
                      global index held
Measured in this process on the first ``--sharded-rows`` rows (the keys are held in memory):
  neardup_sharded_keys_rows_per_cpu_s   the per-shard part of sharded near-dedup (shingles,
                      MinHash signatures, serialised as the shards store them): it scales with
                      the pipeline workers
  neardup_global_pass_rows_per_cpu_s    the one global LSH pass over every shard's signatures
                      in input order: the serial part, which bounds what more workers add
  neardup_sharded_same_as_stream        the sharded run dropped exactly the rows one stream did
The last stdout line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import orjson
import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collection.pipeline import Log, build_steps, stream  # noqa: E402
from collection.pipeline.dedup import NearDedup, shingles  # noqa: E402
from collection.pipeline.shards import decide  # noqa: E402

ALL_STEPS = ["normalize", "dedup", "neardup", "pii", "lang", "toxicity", "quality"]
EXPORT_STEPS = ["normalize", "pii", "lang", "toxicity", "quality"]


# --- synthetic data ------------------------------------------------------------------------


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9))))
    return sorted(words)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _alnum(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _phone(rng: random.Random) -> str:
    region = rng.choice(["US", "US", "GB", "DE", "FR", "IN", "BR"])
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    national = str(example.national_number)
    while True:
        # keep the example's leading digits (the mobile range), randomise the rest
        keep = 3 if region == "US" else 2
        number = phonenumbers.parse(
            "+" + str(example.country_code) + national[:keep] + _digits(rng, len(national) - keep)
        )
        if phonenumbers.is_valid_number(number):
            break
    if region == "US" and rng.random() < 0.5:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    style = rng.choice(
        [phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.E164]
    )
    return phonenumbers.format_number(number, style)


def _card(rng: random.Random) -> str:
    prefix = rng.choice(["4", "51", "37", "6011"])
    length = 15 if prefix == "37" else 16
    body = prefix + _digits(rng, length - len(prefix) - 1)
    digits = body + luhn.calc_check_digit(body)
    if rng.random() < 0.5:
        return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))
    return digits


def _iban(rng: random.Random) -> str:
    country, bban = rng.choice(
        [
            ("DE", lambda: _digits(rng, 18)),
            ("GB", lambda: _alnum(rng, 4, string.ascii_uppercase) + _digits(rng, 14)),
            ("FR", lambda: _digits(rng, 23)),
            ("NL", lambda: _alnum(rng, 4, string.ascii_uppercase) + _digits(rng, 10)),
            ("ES", lambda: _digits(rng, 20)),
        ]
    )
    while True:
        body = bban()
        number = country + stdnum_iban.calc_check_digits(country + "00" + body) + body
        if stdnum_iban.is_valid(number):
            break
    if rng.random() < 0.5:
        return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    return number


def _b64url(rng: random.Random, n: int) -> str:
    return _alnum(rng, n, string.ascii_letters + string.digits + "-_")


# kind -> (value maker, sentence template holding the value)
PII_MAKERS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "email": lambda r: (
        v := f"{_alnum(r, 6, string.ascii_lowercase)}.{_alnum(r, 5, string.ascii_lowercase)}"
        f"{r.randint(1, 99)}@{r.choice(['gmail.com', 'example.org', 'mail.co.uk'])}",
        f"write to {v} soon",
    ),
    "phone": lambda r: (v := _phone(r), f"call me on {v} tomorrow"),
    "card": lambda r: (v := _card(r), f"my card is {v} thanks"),
    "iban": lambda r: (v := _iban(r), f"send it to {v} please"),
    "ipv4": lambda r: (
        v := ".".join(str(r.randint(1, 254)) for _ in range(4)),
        f"the server at {v} is down",
    ),
    "ipv6": lambda r: (
        v := ":".join(f"{r.randint(1, 0xFFFF):x}" for _ in range(8)),
        f"ping {v} again",
    ),
    "openai_key": lambda r: (v := "sk-proj-" + _b64url(r, 40), f"my key {v} fails"),
    "hf_token": lambda r: (v := "hf_" + _alnum(r, 34), f"token {v} here"),
    "github_token": lambda r: (v := "ghp_" + _alnum(r, 36), f"use {v} to push"),
    "aws_key": lambda r: (
        v := "AKIA" + _alnum(r, 16, string.ascii_uppercase + string.digits),
        f"aws id {v} leaked",
    ),
    "jwt": lambda r: (
        v := "eyJ" + _b64url(r, 20) + ".eyJ" + _b64url(r, 40) + "." + _b64url(r, 43),
        f"bearer {v} expired",
    ),
    "password": lambda r: (
        v := _alnum(r, 12, string.ascii_letters + string.digits + "!#$%"),
        f"password: {v} works",
    ),
    "url_credentials": lambda r: (
        v := f"{_alnum(r, 6, string.ascii_lowercase)}:{_alnum(r, 14)}",
        f"connect to postgres://{v}@db.internal:5432/app now",
    ),
    "hex_secret": lambda r: (
        v := _alnum(r, 40, "0123456789abcdef"),
        f"the secret hash {v} matters",
    ),
}


def _perturb(words: list[str], rng: random.Random, vocab: list[str]) -> list[str]:
    out = list(words)
    for _ in range(rng.randint(1, 2)):
        kind = rng.random()
        i = rng.randrange(len(out))
        if kind < 0.35:
            out[i] = rng.choice(vocab)
        elif kind < 0.55:
            out.insert(i, rng.choice(vocab))
        elif kind < 0.7 and len(out) > 5:
            del out[i]
        elif kind < 0.85:
            out[i] = out[i].upper()
        else:
            out[i] = out[i] + rng.choice(",.!?")
    return out


def generate(
    n: int, *, seed: int, dup_rate: float, pii_rate: float
) -> tuple[list[dict[str, Any]], set[str], list[tuple[str, str, str]]]:
    """Rows, the ids of planted near-copies, and (id, kind, value) of each planted PII value."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    rows: list[dict[str, Any]] = []
    # Sources for near-copies: each row's user turns (first prompt's words, later user turns).
    sources: list[tuple[list[str], list[str]]] = []
    copies: set[str] = set()
    planted: list[tuple[str, str, str]] = []
    kinds = list(PII_MAKERS)
    for index in range(n):
        row_id = f"c{index:07d}"
        words: list[str] | None = None
        later: list[str] = []
        if sources and rng.random() < dup_rate:
            source, source_later = rng.choice(sources)
            for _ in range(5):
                candidate = _perturb(source, rng, vocab)
                j = _jaccard(
                    [" ".join(candidate), *source_later], [" ".join(source), *source_later]
                )
                if 0.8 <= j < 1.0:
                    words, later = candidate, source_later
                    copies.add(row_id)
                    break
        copy = words is not None
        if words is None:
            words = rng.choices(vocab, k=rng.randint(40, 70))
            if rng.random() < 0.1:  # a second turn
                later = [" ".join(rng.choices(vocab, k=rng.randint(5, 20)))]
        prompt = " ".join(words)
        reply = " ".join(rng.choices(vocab, k=rng.randint(30, 90))) + "."
        if rng.random() < pii_rate:
            kind = rng.choice(kinds)
            value, sentence = PII_MAKERS[kind](rng)
            planted.append((row_id, kind, value))
            if rng.random() < 0.5 and not copy:  # a near-copy's user turns stay as planted
                prompt = prompt + " " + sentence
            else:
                reply = sentence + " " + reply
        if not copy:
            entry = (prompt.split(), later)
            if len(sources) < 200_000:
                sources.append(entry)
            else:
                sources[rng.randrange(len(sources))] = entry
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
        for turn in later:
            messages += [
                {"role": "user", "content": turn},
                {
                    "role": "assistant",
                    "content": " ".join(rng.choices(vocab, k=rng.randint(10, 40))),
                },
            ]
        rows.append({"id": row_id, "messages": messages, "source": "bench"})
    return rows, copies, planted


def _jaccard(a: list[str], b: list[str]) -> float:
    """Jaccard similarity of the shingles near-dedup takes from these user turns."""
    sa, sb = set(shingles("\n".join(a))), set(shingles("\n".join(b)))
    return len(sa & sb) / len(sa | sb)


# --- measurements --------------------------------------------------------------------------


def _text(row: dict[str, Any]) -> str:
    return "\n".join(str(m["content"]) for m in row["messages"])


def _fragments(value: str) -> set[str]:
    import re

    return {run for run in re.findall(r"[A-Za-z0-9]{4,}", value)} | {
        run for run in re.findall(r"\d{3,}", value)
    }


def pii_score(
    original: dict[str, dict[str, Any]],
    redacted: dict[str, dict[str, Any]],
    planted: list[tuple[str, str, str]],
) -> tuple[float, int, dict[str, int]]:
    found = 0
    partial = 0
    missed: dict[str, int] = {}
    for row_id, kind, value in planted:
        after = _text(redacted[row_id])
        before_rest = _text(original[row_id]).replace(value, " ", 1)
        left = [f for f in _fragments(value) if after.count(f) > before_rest.count(f)]
        if not left:
            found += 1
            continue
        missed[kind] = missed.get(kind, 0) + 1
        if value not in after:
            partial += 1
    return (found / len(planted) if planted else 1.0), partial, missed


def time_step(
    name: str, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], Log, float, float]:
    log = Log()
    wall, cpu = time.perf_counter(), time.process_time()
    kept = list(stream(build_steps([name]), rows, log))
    return kept, log, time.perf_counter() - wall, time.process_time() - cpu


def sharded_neardup(rows: list[dict[str, Any]], shard_rows: int = 2000) -> dict[str, Any]:
    """Near-dedup as the product runs it in shards: signatures per shard, then the global pass;
    compared with one stream over the same rows."""
    step = NearDedup()
    _, log, _, _ = time_step("neardup", rows)
    shards = [rows[i : i + shard_rows] for i in range(0, len(rows), shard_rows)]
    cpu = time.process_time()
    keys = [[[r["id"], k] for r, k in zip(s, step.keys(s), strict=True)] for s in shards]
    keys_cpu = time.process_time() - cpu
    cpu = time.process_time()
    drops = decide(step, lambda: keys)
    pass_cpu = time.process_time() - cpu
    dropped = {shards[i][int(j)]["id"] for i, d in enumerate(drops) for j in d}
    return {
        "neardup_sharded_rows": len(rows),
        "neardup_sharded_keys_rows_per_cpu_s": round(len(rows) / keys_cpu),
        "neardup_global_pass_rows_per_cpu_s": round(len(rows) / pass_cpu),
        "neardup_sharded_same_as_stream": dropped == {e.id for e in log.dropped()},
    }


def run_cli(
    steps: list[str], source: Path, workdir: Path
) -> tuple[float, float, float, dict[str, Any]]:
    """Wall seconds, CPU seconds, peak RSS (MB) and report of one command-line run in a fresh
    process. Peak RSS is the process's VmHWM: its ru_maxrss would start from this (large) bench
    process's, which the forked child inherits before it execs."""
    script = (
        "import runpy, sys\n"
        "sys.argv = ['collection.pipeline'] + sys.argv[1:]\n"
        "try:\n"
        "    runpy.run_module('collection.pipeline', run_name='__main__')\n"
        "finally:\n"
        "    status = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
        "    print('PEAK_KB', status, file=sys.stderr)\n"
    )
    report = workdir / "report.json"
    args = [
        sys.executable,
        "-c",
        script,
        "run",
        "--steps",
        ",".join(steps),
        "--input",
        str(source),
        "--output",
        str(workdir / "out.jsonl"),
        "--report",
        str(report),
        "--no-progress",
    ]
    began = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    if done.returncode not in (0, None):
        sys.stderr.write(done.stderr)
        raise SystemExit(f"command line failed ({done.returncode})")
    peak_kb = next(
        int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK_KB")
    )
    return wall, cpu, peak_kb / 1024, json.loads(report.read_text())


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--dup-rate", type=float, default=0.05)
    p.add_argument("--pii-rate", type=float, default=0.05)
    p.add_argument("--skip-cli", action="store_true", help="in-process figures only")
    p.add_argument("--cli-only", action="store_true", help="command-line figures only")
    p.add_argument("--sharded-rows", type=int, default=200_000, help="0: no sharded figures")
    args = p.parse_args()
    out: dict[str, Any] = {"rows": args.rows, "cpus": os.cpu_count()}

    began = time.perf_counter()
    rows, copies, planted = generate(
        args.rows, seed=args.seed, dup_rate=args.dup_rate, pii_rate=args.pii_rate
    )
    out["generate_s"] = round(time.perf_counter() - began, 1)
    out["planted_near_copies"] = len(copies)
    out["planted_pii"] = len(planted)
    print(f"generated {args.rows} rows in {out['generate_s']} s", file=sys.stderr)

    for name in [] if args.cli_only else ALL_STEPS:
        kept, log, wall, cpu = time_step(name, rows)
        out[f"{name}_rows_per_s"] = round(len(rows) / wall)
        out[f"{name}_rows_per_cpu_s"] = round(len(rows) / cpu)
        print(f"{name}: {wall:.1f} s wall, {cpu:.1f} s cpu", file=sys.stderr)
        if name == "neardup":
            dropped = {e.id for e in log.dropped()}
            hits = len(dropped & copies)
            out["neardup_conv_per_s_per_core"] = round(len(rows) / cpu)
            out["neardup_recall"] = round(hits / len(copies), 4) if copies else 1.0
            out["neardup_precision"] = round(hits / len(dropped), 4) if dropped else 1.0
        if name == "pii":
            by_id = {r["id"]: r for r in rows}
            recall, partial, missed = pii_score(by_id, {r["id"]: r for r in kept}, planted)
            out["pii_recall"] = round(recall, 4)
            out["pii_partial_leaks"] = partial
            out["pii_missed_by_kind"] = missed
            del by_id
        del kept, log

    if args.sharded_rows and not args.cli_only:
        out.update(sharded_neardup(rows[: args.sharded_rows]))
        print(f"sharded near-dedup: {out['neardup_global_pass_rows_per_cpu_s']} rows/s in the"
              " global pass", file=sys.stderr)  # fmt: skip

    if not args.skip_cli:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            source = workdir / "in.jsonl"
            with source.open("wb") as handle:
                for row in rows:
                    handle.write(orjson.dumps(row) + b"\n")
            del rows
            wall, _, peak, _ = run_cli(EXPORT_STEPS, source, workdir)
            out["export_peak_mb"] = round(peak)
            out["export_s"] = round(wall, 1)
            print(f"export path: {wall:.1f} s, peak {peak:.0f} MB", file=sys.stderr)
            wall, cpu, peak, report = run_cli(ALL_STEPS, source, workdir)
            out["end_to_end_rows_per_s"] = round(args.rows / wall)
            out["end_to_end_rows_per_cpu_s"] = round(args.rows / cpu)
            out["end_to_end_s"] = round(wall, 1)
            out["pipeline_peak_mb"] = round(peak)
            out["end_to_end_kept"] = report["steps"][-1]["rows_out"]
            print(f"end to end: {wall:.1f} s, {cpu:.1f} s cpu, peak {peak:.0f} MB", file=sys.stderr)
    out["bench_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
