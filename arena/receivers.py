"""The arena's receivers of other apps' signals (connected in ArenaConfig.ready): they call the
arena's services, which send the arena's own signal (arena.signals), so they live apart from it."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from arena.services import battles_adopt, generation_leak_flag
from arena.signals import SESSION_OWNER_KEY


def battles_adopt_on_login(
    sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    """user_logged_in: the battles this browser started anonymously now belong to the account."""
    session = getattr(request, "session", None)
    if session is None or user is None or user.pk is None:
        return
    keys = {session.get(SESSION_OWNER_KEY) or "", session.session_key or ""} - {""}
    for key in keys:
        battles_adopt(session_key=key, user_id=user.pk)


def battle_leak_on_finish(sender: Any, generation: Any, **kwargs: Any) -> None:
    """generation_finishing: flag the battle when the finished answer names one of its models,
    before the answer is stored as finished (which it is all the same if this fails)."""
    generation_leak_flag(generation=generation)
