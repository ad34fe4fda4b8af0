"""The fine-tuning loop, shown (``manage.py demo_loop``): simulated crowd votes on zoo models, a
dataset version frozen from them, a job fine-tuning a weak zoo model, its evaluation gate and
promotion, new simulated votes, and the leaderboard before and after.

Battles and votes go through the arena's own services: ``battle_create`` draws each pair (the
promoted model with the new-model boost) and ``vote_cast`` records each verdict. The answers are
sampled in this process from the drawn models' files and stored with ``generation_finish`` rather
than streamed by the serving pool (the pool's streaming path needs its workers and engine; the
demo must run alone on two cores in minutes). A battle whose model has no local files is skipped.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from arena.leaderboard import services as leaderboard
from arena.leaderboard.boards import ALL
from arena.selectors import Requester
from arena.services.base import ServiceError
from arena.services.battles import battle_create
from arena.services.votes import vote_cast
from collection import datasets, tasks
from collection.models import Dataset, DatasetVersion, FinetuneJob, JobState, VersionStatus
from collection.training import services, simulate
from modelhub.models import Engine, Generation, GenerationStatus, Model
from modelhub.services.lifecycle import generation_finish

FALLBACK_PROMPTS = [
    "What is 9 plus 9?",
    "Tell me the capital of Norway.",
    "Spell house backwards.",
    "What is 12 times 20?",
    "Tell me the capital of Belgium.",
    "What colour is the sky?",
    "Say hello.",
    "What is 14 plus 13?",
]
Say = Callable[[str], None]


@dataclass
class Round:
    battles: int = 0
    votes: int = 0
    skipped: int = 0
    appearances: dict[str, int] = field(default_factory=dict)


def prompts(limit: int = 200) -> list[str]:
    """Held-out single-question prompts of the zoo corpus (never trained on), else a few of ours."""
    path = Path(settings.MODELS_DIR) / "corpus" / "heldout.jsonl"
    found: list[str] = []
    if path.exists():
        for line in path.read_text().splitlines():
            messages = json.loads(line).get("messages", [])
            users = [m["content"] for m in messages if m.get("role") == "user"]
            if len(users) == 1 and users[0] not in found:
                found.append(users[0])
            if len(found) >= limit:
                break
    return found or FALLBACK_PROMPTS


def _local(model: Model) -> Path | None:
    path = model.files()
    return path if model.engine == Engine.LOCAL and (path / "config.json").exists() else None


def crowd_round(
    *,
    battles: int,
    reference: Model,
    noise: float,
    seed: int,
    tag: str,
    cache: simulate.Models,
    max_new_tokens: int,
    say: Say,
) -> Round:
    """``battles`` anonymous battles, each answered by its two drawn models and voted on by one
    simulated voter (its own session) who prefers the reply ``reference`` finds more likely."""
    rng = random.Random(seed)
    reference_dir = _local(reference)
    if reference_dir is None:
        raise services.JobError(f"The reference {reference.name} has no local files.")
    pool = prompts()
    done = Round()
    for index in range(battles):
        voter = Requester(user_id=None, session_key=f"{tag}-{index}", ip_hash=f"{tag}-{index}")
        prompt = rng.choice(pool)
        try:
            battle = battle_create(requester=voter, prompt=prompt)
        except ServiceError as error:
            raise services.JobError(f"No battle could start: {error}") from None
        done.battles += 1
        turn = battle.turns.get()
        generations = [turn.generation_a, turn.generation_b]
        dirs = [_local(g.model) for g in generations if g is not None]
        if len(dirs) != 2 or None in dirs:
            done.skipped += 1
            continue
        for offset, (generation, path) in enumerate(zip(generations, dirs, strict=True)):
            assert generation is not None and path is not None
            text = simulate.sample_reply(
                cache,
                path,
                prompt,
                max_new_tokens=max_new_tokens,
                seed=seed * 7919 + index * 2 + offset,
            )
            generation_finish(
                generation=generation, status=GenerationStatus.DONE, seq=1, text=text,
                finish_reason="stop",
            )  # fmt: skip
        # The stored answers (a serving worker may have finished one first): scored as shown.
        texts = dict(
            Generation.objects.filter(id__in=[g.id for g in generations if g]).values_list(
                "id", "text"
            )
        )
        a, b = (texts[g.id] for g in generations if g is not None)
        choice = simulate.vote(
            simulate.reply_score(cache, reference_dir, prompt, a),
            simulate.reply_score(cache, reference_dir, prompt, b),
            noise=noise,
            rng=rng,
        )
        try:
            vote_cast(battle_id=battle.id, turn_id=turn.id, requester=voter, choice=choice)
        except ServiceError as error:
            say(f"  vote refused on battle {battle.id}: {error}")
            continue
        done.votes += 1
        for generation in generations:
            assert generation is not None
            name = generation.model.name
            done.appearances[name] = done.appearances.get(name, 0) + 1
        if (index + 1) % 10 == 0:
            say(f"  {index + 1}/{battles} battles")
    return done


def ratings(rounds: int) -> dict[str, dict[str, Any]]:
    """A published snapshot's Bradley-Terry board (all categories), by model name."""
    snapshot = leaderboard.leaderboard_refresh(rounds=rounds, style_rounds=5, elo_rounds=5)
    board = snapshot.data.get("boards", {}).get("bt", {}).get(ALL) or {"models": []}
    return {row["model"]: row for row in board.get("models", [])}


def freeze(*, method: str) -> DatasetVersion:
    """A frozen version of every counted battle so far (``method``'s records are its pairs or
    its winning answers)."""
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    dataset = Dataset.objects.create(
        name=f"demo-loop-{stamp}",
        description=f"Simulated crowd votes of manage.py demo_loop ({method.upper()}).",
        sources=["battles"],
        steps=[],
    )
    version = datasets.dataset_version_create(dataset=dataset)
    tasks.dataset_freeze(version.id)
    version.refresh_from_db()
    if version.status != VersionStatus.DONE:
        raise services.JobError(f"{version} did not freeze: {version.error}")
    return version


def train(job: FinetuneJob, *, wait_s: float = 3600) -> FinetuneJob:
    """Run the job here; when a train worker took it first, wait for that worker."""
    services.job_run(job_id=job.id)
    deadline = time.monotonic() + wait_s
    while True:
        job.refresh_from_db()
        if job.state in (JobState.DONE, JobState.PROMOTED, JobState.FAILED, JobState.CANCELLED):
            return job
        if time.monotonic() > deadline:
            raise services.JobError(f"Job #{job.id} is still {job.state} after {wait_s:.0f} s.")
        time.sleep(2)
