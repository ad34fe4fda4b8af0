"""`manage.py demo_loop`: the fine-tuning loop on this machine, from simulated crowd votes to the
leaderboard after a fine-tuned model entered the arena (see collection.training.demo).

manage.py demo_loop [--base zoo-llama-xs] [--reference zoo-llama-l] [--judge zoo-llama-m]
                    [--method sft|dpo] [--battles 120] [--battles-after 80] [--steps 80]
                    [--noise 0.5] [--seed 0]

The last line printed is one JSON object: base_model, new_model, rating_before, rating_after,
heldout_loss_before, heldout_loss_after, judge_win_rate.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from collection.models import JobState
from collection.training import demo, services, simulate
from modelhub.models import Model


def _rating(board: dict[str, dict[str, Any]], name: str) -> float | None:
    row = board.get(name)
    return None if row is None else round(float(row["rating"]), 1)


class Command(BaseCommand):
    help = (
        "Run the fine-tuning loop on zoo models: simulated votes, a frozen dataset version, a "
        "job fine-tuning a weak model, its evaluation and promotion, new votes, and the "
        "leaderboard before and after."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base", default="zoo-llama-xs", help="the weak model to fine-tune")
        parser.add_argument(
            "--reference", default="zoo-llama-l", help="the model whose likelihood voters follow"
        )
        parser.add_argument("--judge", default="zoo-llama-m", help="the gate's judge model")
        parser.add_argument("--method", choices=["sft", "dpo"], default="sft")
        parser.add_argument("--battles", type=int, default=120, help="simulated votes before")
        parser.add_argument("--battles-after", type=int, default=80, help="simulated votes after")
        parser.add_argument("--steps", type=int, default=80, help="training steps")
        parser.add_argument("--lora", action="store_true", help="train a LoRA adapter")
        parser.add_argument(
            "--noise", type=float, default=0.5, help="voter noise (nats per token; 0: none)"
        )
        parser.add_argument("--max-new-tokens", type=int, default=24)
        parser.add_argument("--rounds", type=int, default=100, help="bootstrap rounds per board")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, **o: Any) -> None:
        names = {o["base"], o["reference"], o["judge"]}
        found = {m.name: m for m in Model.objects.filter(name__in=names)}
        missing = sorted(names - set(found))
        if missing:
            raise CommandError(f"no such model: {', '.join(missing)} (load the zoo first)")
        if min(o["battles"], o["battles_after"], o["steps"]) < 1:
            raise CommandError("--battles, --battles-after and --steps must be at least 1")
        base, reference, judge = found[o["base"]], found[o["reference"]], found[o["judge"]]
        say = self.stdout.write
        cache = simulate.Models()
        started = time.monotonic()
        stamp = time.strftime("%Y%m%d%H%M%S")
        common = {
            "reference": reference,
            "noise": o["noise"],
            "cache": cache,
            "max_new_tokens": o["max_new_tokens"],
            "say": say,
        }
        try:
            say(
                f"1. {o['battles']} simulated battles (voters follow {reference.name}'s likelihood)"
            )
            before_round = demo.crowd_round(
                battles=o["battles"], seed=o["seed"], tag=f"demo-{stamp}-a", **common
            )
            say(f"   {before_round.votes} votes, {before_round.skipped} skipped")
            before = demo.ratings(o["rounds"])
            self._board("Leaderboard before", before)

            version = demo.freeze(method=o["method"])
            say(f"2. Froze {version} ({version.row_count} rows, {version.content_hash[:12]})")
            job = services.job_create(
                version=version,
                method=o["method"],
                base_model=base,
                judge_model=judge,
                hyperparameters={
                    "max_steps": o["steps"],
                    "save_steps": o["steps"],
                    "lora": o["lora"],
                    "test_fraction": 0.2,
                    "judge_prompts": 8,
                    "max_new_tokens": o["max_new_tokens"],
                },
                seed=o["seed"],
            )
            say(f"3. Job #{job.id}: {o['method'].upper()} of {base.name}, {o['steps']} steps")
            job = demo.train(job)
            if job.state not in (JobState.DONE, JobState.PROMOTED):
                raise CommandError(f"job #{job.id} ended {job.state}: {job.error}")
            m = job.metrics
            say(
                f"   held-out loss {m.get('heldout_loss_before')} -> {m.get('heldout_loss_after')}"
                f", judge ({m.get('judge_model')}) win rate {m.get('judge_win_rate')}"
            )
            if job.state == JobState.DONE:
                job = services.job_promote(job_id=job.id)
            new = job.promoted_model
            assert new is not None
            say(f"4. Promoted as {new.name}; {o['battles_after']} more simulated battles")
            after_round = demo.crowd_round(
                battles=o["battles_after"], seed=o["seed"] + 1, tag=f"demo-{stamp}-b", **common
            )
            say(
                f"   {after_round.votes} votes, {after_round.skipped} skipped; {new.name} "
                f"battled {after_round.appearances.get(new.name, 0)} times"
            )
            after = demo.ratings(o["rounds"])
            self._board("Leaderboard after", after)
        except services.JobError as error:
            raise CommandError(str(error)) from None

        rating_before, rating_after = _rating(before, base.name), _rating(after, new.name)
        base_after = _rating(after, base.name)
        if rating_before is None or rating_after is None:
            say("The change: not measurable (a model has no counted vote on the board).")
        else:
            delta = rating_after - rating_before
            word = "above" if delta > 0 else "below" if delta < 0 else "level with"
            say(
                f"The change: {new.name} rates {rating_after} after, {abs(delta):.1f} points {word}"
                f" {base.name}'s {rating_before} before ({base.name} itself rates {base_after} "
                f"on the same board after). 95% intervals: {self._interval(after.get(new.name))}"
                f" after against {self._interval(before.get(base.name))} before: "
                + self._verdict(after.get(new.name), before.get(base.name))
            )
        say(f"({time.monotonic() - started:.0f} s)")
        say(
            json.dumps(
                {
                    "base_model": base.name,
                    "new_model": new.name,
                    "rating_before": rating_before,
                    "rating_after": rating_after,
                    "heldout_loss_before": job.metrics.get("heldout_loss_before"),
                    "heldout_loss_after": job.metrics.get("heldout_loss_after"),
                    "judge_win_rate": job.metrics.get("judge_win_rate"),
                }
            )
        )

    def _verdict(self, new: dict[str, Any] | None, old: dict[str, Any] | None) -> str:
        if new is None or old is None:
            return "not comparable."
        if new["lower"] > old["upper"]:
            return "they do not overlap, a gain these votes support."
        if new["upper"] < old["lower"]:
            return "they do not overlap, a loss these votes support."
        return "they overlap, so these votes do not tell the two apart."

    def _interval(self, row: dict[str, Any] | None) -> str:
        if row is None:
            return "none"
        return f"[{row['lower']:.0f}, {row['upper']:.0f}]"

    def _board(self, title: str, board: dict[str, dict[str, Any]]) -> None:
        self.stdout.write(f"{title}:")
        for name, row in sorted(board.items(), key=lambda item: -float(item[1]["rating"])):
            flag = " (provisional)" if row.get("provisional") else ""
            self.stdout.write(
                f"   {name:<28} {float(row['rating']):7.1f} {self._interval(row)}"
                f" {row.get('battles', 0):4} votes{flag}"
            )
