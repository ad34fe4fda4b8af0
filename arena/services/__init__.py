"""Writes for the arena, by sub-domain: pair sampling, battles and their turns, votes, identity
leaks. The public names are re-exported here (`from arena import services`)."""

from arena.services.base import (
    ArenaError,
    Blocked,
    Conflict,
    NotFound,
    RateLimited,
    ServiceError,
    TooEarly,
    ip_hash,
)
from arena.services.battles import (
    battle_continue,
    battle_create,
    battle_flag,
    battles_adopt,
    turn_regenerate,
)
from arena.services.leaks import generation_leak_flag
from arena.services.sampling import pair_sample
from arena.services.votes import VoteResult, vote_cast

__all__ = [
    "ArenaError",
    "Blocked",
    "Conflict",
    "NotFound",
    "RateLimited",
    "ServiceError",
    "TooEarly",
    "VoteResult",
    "battle_continue",
    "battle_create",
    "battle_flag",
    "battles_adopt",
    "generation_leak_flag",
    "ip_hash",
    "pair_sample",
    "turn_regenerate",
    "vote_cast",
]
