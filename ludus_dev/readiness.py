"""When `make run` (and the fault drill) may say the arena is ready: a battle can start."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime
from typing import Any


def battle_ready(report: dict[str, Any], *, since: datetime) -> bool:
    """Whether a /healthz report says the arena can start a battle: no part down, and at least two
    arena models each with an endpoint that a probe made since `since` found healthy. (Health
    left from an earlier run says nothing about the engine this run started: a battle sent on it
    would be refused until the first probe.)"""
    if report.get("down"):
        return False
    answering = {
        endpoint["model"]
        for endpoint in report.get("endpoints", [])
        if endpoint["healthy"]
        and endpoint.get("arena_eligible", True)
        and endpoint["last_checked_at"]
        and datetime.fromisoformat(endpoint["last_checked_at"]) >= since
    }
    return len(answering) >= 2


def wait_battle_ready(url: str, *, since: datetime, timeout_s: float, token: str) -> bool:
    """Poll `url`/healthz (with the metrics `token`, for its details) until `battle_ready`; False
    if that takes longer than timeout_s."""
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url + "/healthz", headers={"Authorization": f"Bearer {token}"})
    while True:
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if battle_ready(json.load(response), since=since):
                    return True
        except (OSError, ValueError):
            pass  # not listening yet, or 503 while workers start
        if time.monotonic() >= deadline:
            return False
        time.sleep(1)
