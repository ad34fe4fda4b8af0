from __future__ import annotations

import csv
import hashlib
import io
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.test import Client

from arena import tasks
from arena.leaderboard import selectors, services
from arena.models import LeaderboardSnapshot, Mode
from modelhub.models import Model
from tests.leaderboard.votes import make_vote, simulate_votes
from worker.celery import app

ROUNDS = {"rounds": 60, "style_rounds": 20, "elo_rounds": 10, "seed": 7, "min_votes": 30}


def _logged_in() -> Client:
    client = Client()
    client.force_login(User.objects.create_user("alice", password="pw"))
    return client


def test_it_counts_only_anonymous_unleaked_unflagged_votes(board_models: list[Model]) -> None:
    alpha, beta, gamma, _ = board_models
    make_vote(alpha, beta, "a")
    make_vote(alpha, gamma, "b")
    make_vote(alpha, beta, "a", mode=Mode.NAMED, anony=False)  # side-by-side
    make_vote(beta, gamma, "a", anony=False)  # after the reveal
    make_vote(alpha, beta, "b", leaked=True)
    make_vote(alpha, beta, "b", flagged=True)
    make_vote(alpha, gamma, "tie", flagged=True, leaked=True)  # counted once, as flagged

    rows = selectors.vote_count_rows()

    assert sorted((a, b, w, n) for a, b, w, _, n in rows) == [
        ("alpha-7b", "beta-chat", "model_a", 1),
        ("alpha-7b", "gamma-1", "model_b", 1),
    ]
    assert selectors.vote_exclusions() == {
        "flagged": 2,
        "leaked": 1,
        "not_anonymous": 2,
        "unfinished": 0,
        "held": 0,
    }


def test_it_reports_the_exclusions_on_the_page(board_models: list[Model]) -> None:
    alpha, beta, *_ = board_models
    make_vote(alpha, beta, "a")
    make_vote(beta, alpha, "a")
    make_vote(alpha, beta, "b", leaked=True)
    make_vote(alpha, beta, "b", flagged=True)
    make_vote(alpha, beta, "b", mode=Mode.NAMED, anony=False)
    services.leaderboard_refresh(**ROUNDS)

    page = Client().get("/leaderboard/").content.decode()

    assert "3 votes excluded" in page
    assert "1 — battle flagged" in page
    assert "1 — a model&#x27;s identity leaked before the vote" in page
    assert "1 — not a blind vote" in page


def test_it_stores_a_snapshot_from_the_beat_task(board_models: list[Model]) -> None:
    simulate_votes(board_models, 30)
    LeaderboardSnapshot.objects.all().delete()

    snapshot_id = tasks.refresh_leaderboard()

    snapshot = LeaderboardSnapshot.objects.get(id=snapshot_id)
    assert snapshot.votes_counted == 30
    assert snapshot.method == "bt"
    assert snapshot.params["rounds"] == services.default_params()["rounds"]
    assert len(snapshot.vote_hash) == 64
    names = {row["model"] for row in snapshot.data["boards"]["bt"][""]["models"]}
    assert names == {m.name for m in board_models}
    # An unchanged vote set confirms the snapshot instead of storing another one.
    assert tasks.refresh_leaderboard() == snapshot_id
    assert LeaderboardSnapshot.objects.count() == 1
    make_vote(board_models[0], board_models[1], "a")
    assert tasks.refresh_leaderboard() != snapshot_id


def test_it_schedules_the_refresh_every_minute_on_the_default_queue() -> None:
    entry = app.conf.beat_schedule["refresh-leaderboard"]

    assert entry["task"] == "arena.tasks.refresh_leaderboard"
    assert entry["schedule"] == 60.0
    assert entry["options"]["queue"] == "default"


def test_it_exports_a_snapshot_as_json_and_csv(board_models: list[Model]) -> None:
    simulate_votes(board_models, 30)
    snapshot = services.leaderboard_refresh(**ROUNDS)
    client = _logged_in()

    exported = client.get(f"/leaderboard/{snapshot.id}/export.json").json()
    lines = client.get(f"/leaderboard/{snapshot.id}/export.csv").content.decode()

    assert exported["vote_hash"] == snapshot.vote_hash
    assert exported["votes_counted"] == 30
    assert exported["params"]["seed"] == 7
    assert exported["boards"]["bt"][""] == snapshot.data["boards"]["bt"][""]
    rows = list(csv.DictReader(io.StringIO(lines)))
    overall = [r for r in rows if r["method"] == "bt" and r["category"] == "all"]
    assert [r["model"] for r in overall] == [
        m["model"] for m in snapshot.data["boards"]["bt"][""]["models"]
    ]
    assert {r["category"] for r in rows} == {"all", "coding"}
    # 30 votes over four models: every model is short of the threshold (30), in both exports.
    assert all(r["provisional"] == "True" and r["rank"] == "" for r in overall)
    exported_rows = exported["boards"]["bt"][""]["models"]
    assert all(row["provisional"] and row["rank"] is None for row in exported_rows)
    assert exported["params"]["min_votes"] == 30


def test_it_keeps_exports_for_logged_in_users(board_models: list[Model]) -> None:
    simulate_votes(board_models, 6)
    snapshot = services.leaderboard_refresh(**ROUNDS)

    browser = "text/html,application/xhtml+xml,*/*;q=0.8"
    for suffix in ("export.json", "export.csv", "battles.jsonl"):
        response = Client().get(f"/leaderboard/{snapshot.id}/{suffix}", HTTP_ACCEPT=browser)
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]
        # A script (curl, pandas) gets a 401 that says what to send, not a login page.
        response = Client().get(f"/leaderboard/{snapshot.id}/{suffix}", HTTP_ACCEPT="*/*")
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert "/accounts/tokens/" in response.json()["error"]
    assert Client().get("/leaderboard/").status_code == 200


def _cli(path: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "arena.ratings", str(path), *args],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _stored_command(snapshot: LeaderboardSnapshot, key: str, path: Path) -> dict[str, Any]:
    """Run the command line the snapshot names for a board, on the downloaded battles file."""
    argv = shlex.split(snapshot.params["commands"][key])
    assert argv[:4] == ["python", "-m", "arena.ratings", "battles.jsonl"]
    return _cli(path, *argv[4:])


def test_it_reproduces_the_snapshot_from_its_battles_with_the_command_line(
    board_models: list[Model], tmp_path: Path
) -> None:
    simulate_votes(board_models, 80)
    make_vote(board_models[0], board_models[1], "a", leaked=True)  # not in the vote set
    snapshot = services.leaderboard_refresh(**ROUNDS)
    client = _logged_in()

    response = client.get(f"/leaderboard/{snapshot.id}/battles.jsonl")
    body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    path = tmp_path / "battles.jsonl"
    path.write_bytes(body)

    assert hashlib.sha256(body).hexdigest() == snapshot.vote_hash
    assert len(body.splitlines()) == 80
    boards = snapshot.data["boards"]
    assert "elo:coding" not in snapshot.params["commands"] and "coding" not in boards["elo"]
    for key in ("bt:", "bt:coding", "style:", "elo:", "bt_ipw:coding"):
        method, category = key.split(":")
        assert _stored_command(snapshot, key, path) == boards[method][category], key
    assert snapshot.params["commands"]["bt:coding"] == (
        "python -m arena.ratings battles.jsonl --bootstrap 60 --seed 7 --ties half"
        " --bothbad tie --prior 0.5 --min-votes 30 --category coding"
    )
    # Fewer than 30 votes in coding: every model is provisional there, and the CLI says so too.
    coding = boards["bt"]["coding"]["models"]
    assert coding and all(row["provisional"] and row["rank"] is None for row in coding)
    assert any(not row["provisional"] for row in boards["bt"][""]["models"])


def test_it_publishes_sampling_adjusted_ratings_that_the_command_line_reproduces(
    board_models: list[Model], tmp_path: Path
) -> None:
    alpha, beta, gamma, _ = board_models
    # An adaptive sampler showed alpha-beta six times as often as alpha-gamma.
    for choice, n in (("a", 12), ("b", 4)):
        for _ in range(n):
            make_vote(alpha, beta, choice, pair_probability=0.6)
    for choice, n in (("a", 1), ("b", 3)):
        for _ in range(n):
            make_vote(alpha, gamma, choice, pair_probability=0.1)
    for choice, n in (("a", 3), ("b", 3)):
        for _ in range(n):
            make_vote(beta, gamma, choice, pair_probability=0.3)
    snapshot = services.leaderboard_refresh(**ROUNDS)
    body = b"".join(
        _logged_in().get(f"/leaderboard/{snapshot.id}/battles.jsonl").streaming_content  # type: ignore[attr-defined]
    )
    path = tmp_path / "battles.jsonl"
    path.write_bytes(body)

    boards = snapshot.data["boards"]
    plain = {m["model"]: m["rating"] for m in boards["bt"][""]["models"]}
    weighted = {m["model"]: m["rating"] for m in boards["bt_ipw"][""]["models"]}
    assert boards["bt_ipw"][""]["ipw"] is True
    # Weighting up the rare alpha-gamma battles (which gamma mostly won) lifts gamma.
    assert weighted["gamma-1"] - weighted["alpha-7b"] > plain["gamma-1"] - plain["alpha-7b"]
    assert _stored_command(snapshot, "bt_ipw:", path) == boards["bt_ipw"][""]
    assert snapshot.params["commands"]["bt_ipw:"].endswith(" --ipw")
    page = Client().get("/leaderboard/", {"ipw": "on"}).content.decode()
    assert "Sampling-adjusted ratings (IPW)" in page
    assert "Sampling-adjusted" not in Client().get("/leaderboard/").content.decode()
