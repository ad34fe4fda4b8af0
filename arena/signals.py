"""The arena's signal (vote_cast) and the session key its anonymous battles are kept under. The
receivers of other apps' signals are in arena.receivers."""

from __future__ import annotations

from django.dispatch import Signal
from django.http import HttpRequest

# `vote_cast`: the arena's one hand-off to the apps above it (collection turns votes into quests
# and daily-goal progress; the arena imports none of them). Sent by arena.services.vote_cast
# after the vote's transaction commits (transaction.on_commit), once per stored vote, with
# `sender=Vote` and `vote_id`, `battle_id`, `choice`, `user_id` (None for an anonymous voter) and
# `turn_index` (1 for a battle's first turn: no vote of the battle came before it) and `tools`
# (whether the battle is a tools battle: its models were given tools).
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
