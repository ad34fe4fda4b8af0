"""The arena's signal (vote_cast) and its receivers of others' signals (connected in
ArenaConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal
from django.http import HttpRequest

# `vote_cast`: the arena's one hand-off to the apps above it (collection turns votes into quests
# and daily-goal progress; the arena imports none of them). Sent by arena.services.vote_cast
# after the vote's transaction commits (transaction.on_commit), once per stored vote, with
# `sender=Vote` and `vote_id`, `battle_id`, `choice`, `user_id` (None for an anonymous voter) and
# `turn_index` (1 for a battle's first turn: no vote of the battle came before it).
# Sent with send_robust: a failing receiver never fails the vote it hears about.
vote_cast = Signal()

# The session key under which this browser's anonymous battles are stored. Django's login() gives
# the session a new key (cycle_key) but keeps its data, so this survives the rotation.
SESSION_OWNER_KEY = "arena_owner"


def session_owner_remember(request: HttpRequest) -> None:
    """Note the current session key in the session (once per key) so a later login can adopt the
    battles stored under it."""
    key = request.session.session_key
    if key and request.session.get(SESSION_OWNER_KEY) != key:
        request.session[SESSION_OWNER_KEY] = key


def battles_adopt_on_login(
    sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    """user_logged_in: the battles this browser started anonymously now belong to the account."""
    from arena.services import battles_adopt

    session = getattr(request, "session", None)
    if session is None or user is None or user.pk is None:
        return
    keys = {session.get(SESSION_OWNER_KEY) or "", session.session_key or ""} - {""}
    for key in keys:
        battles_adopt(session_key=key, user_id=user.pk)


def battle_leak_on_finish(sender: Any, generation: Any, **kwargs: Any) -> None:
    """generation_finishing: flag the battle when the finished answer names one of its models,
    before the answer is stored as finished (which it is all the same if this fails)."""
    from arena.services import generation_leak_flag

    generation_leak_flag(generation=generation)
