"""Arena settings: read from django.conf.settings when set there, else from the environment."""

from __future__ import annotations

from django.conf import settings

from config.env import env_int


def _int(name: str, default: int) -> int:
    value = getattr(settings, name, None)
    return int(value) if value is not None else env_int(f"LUDUS_{name}", default)


def battle_limit_per_owner() -> int:
    return _int("ARENA_BATTLES_PER_MINUTE", 20)


def battle_limit_per_ip() -> int:
    return _int("ARENA_BATTLES_PER_MINUTE_PER_IP", 60)


def vote_limit_per_owner() -> int:
    return _int("ARENA_VOTES_PER_MINUTE", 60)


def vote_limit_per_ip() -> int:
    return _int("ARENA_VOTES_PER_MINUTE_PER_IP", 600)


def export_limit_per_user() -> int:
    return _int("ARENA_EXPORTS_PER_MINUTE", 30)


def export_limit_per_ip() -> int:
    return _int("ARENA_EXPORTS_PER_MINUTE_PER_IP", 60)
