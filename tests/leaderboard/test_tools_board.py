"""Tools battles are ranked on their own board: their votes count in the tools category and never
on the overall board, and the snapshot's command lines reproduce both."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.test import Client

from arena.leaderboard import services
from modelhub.models import Model
from tests.leaderboard.votes import make_vote, simulate_votes

ROUNDS = {"rounds": 40, "style_rounds": 10, "elo_rounds": 5, "seed": 3, "min_votes": 5}


def _board_command(snapshot: Any, key: str, path: Path) -> dict[str, Any]:
    argv = shlex.split(snapshot.params["commands"][key])
    out = subprocess.run(
        [sys.executable, "-m", "arena.ratings", str(path), *argv[4:]],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_it_keeps_tools_votes_off_the_overall_board_and_ranks_them_in_their_category(
    board_models: list[Model], tmp_path: Path
) -> None:
    alpha, beta, gamma, _ = board_models
    simulate_votes([alpha, beta, gamma], 60)
    # In tools battles the weakest plain model wins every time.
    for other in (alpha, beta) * 10:
        make_vote(gamma, other, "a", categories=["tools", "math"])
    snapshot = services.leaderboard_refresh(**ROUNDS)
    boards = snapshot.data["boards"]

    assert "tools" in snapshot.data["categories"]
    overall, tools = boards["bt"][""], boards["bt"]["tools"]
    assert overall["battles"] == 60 and overall["exclude_categories"] == ["tools"]
    assert tools["battles"] == 20 and "exclude_categories" not in tools
    assert tools["models"][0]["model"] == "gamma-1"
    assert [m["model"] for m in overall["models"]][-1] == "gamma-1"
    # Other categories still hold the tools battles that fall in them.
    assert boards["bt"]["math"]["battles"] >= 20
    for method in ("bt_ipw", "style", "elo"):
        assert boards[method][""]["battles"] == 60, method
    assert snapshot.data["over_time"][-1]["battles"] == 60

    client = Client()
    client.force_login(User.objects.create_user("alice", password="pw"))
    body = b"".join(client.get(f"/leaderboard/{snapshot.id}/battles.jsonl").streaming_content)  # type: ignore[attr-defined]
    path = tmp_path / "battles.jsonl"
    path.write_bytes(body)
    assert len(body.splitlines()) == 80  # the file holds every counted vote
    assert snapshot.params["commands"]["bt:"].endswith(" --exclude-category tools")
    for key in ("bt:", "bt:tools", "bt_ipw:", "style:", "elo:"):
        method, category = key.split(":")
        assert _board_command(snapshot, key, path) == boards[method][category], key

    page = Client().get("/leaderboard/", {"category": "tools"}).content.decode()
    assert "gamma-1" in page or "Gamma One" in page


def test_it_keeps_tools_votes_off_the_live_overall_board(board_models: list[Model]) -> None:
    alpha, beta, gamma, _ = board_models
    simulate_votes([alpha, beta, gamma], 60)
    full = services.leaderboard_refresh(**ROUNDS)
    for other in (alpha, beta) * 5:
        make_vote(gamma, other, "a", categories=["tools"])
    make_vote(alpha, beta, "a")

    live = services.leaderboard_publish_live()

    assert live is not None and live.live
    bt = live.data["boards"]["bt"]
    assert bt[""]["battles"] == full.data["boards"]["bt"][""]["battles"] + 1
    assert bt["tools"]["battles"] == 10
