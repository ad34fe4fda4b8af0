"""The site's URL patterns, walked from the root resolver; concrete paths made from them, and the
callers that ask them (tests/security/conftest.py's `world`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from arena.models import Battle
from tests.arena.helpers import finish_turn, last_turn


def url_patterns(resolver: URLResolver | None = None, prefix: str = "") -> Iterator[str]:
    """Every route of the site as one string ('b/<uuid:battle_id>/vote/'), included ones too."""
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            yield from url_patterns(entry, prefix + str(entry.pattern))
        else:
            assert isinstance(entry, URLPattern)
            yield prefix + str(entry.pattern)


def url_fill(route: str, values: dict[str, str]) -> str:
    """A concrete path for a route: converters and named regex groups replaced by ``values``."""
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], route)
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values[m.group(1)], path)
    return "/" + path.replace("^", "").replace("$", "")


def battle_of(bob: User) -> Battle:
    """A new battle of bob's: its turn finished, not voted on, with an image."""
    client = Client()
    client.force_login(bob)
    response = client.post("/battles/", {"prompt": "hello"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, response.content
    battle = Battle.objects.filter(user=bob).order_by("-created_at").first()
    assert battle is not None
    finish_turn(last_turn(battle))
    Battle.objects.filter(id=battle.id).update(image=b"\x89PNG fake", image_mime="image/png")
    return battle


def path_values(world: dict[str, Any], battle: Battle) -> dict[str, str]:
    """A value for each path parameter of the site: bob's own where he has one, else an ID that
    names nothing."""
    turn = last_turn(battle)
    return {
        "battle_id": str(battle.id),
        "generation_id": str(turn.generation_a_id),
        "turn_id": str(turn.id),
        "snapshot_id": str(world["snapshot"].id),
        "token_id": str(world["token"].id),
        "uidb64": "MQ",
        "token": "set-password",
        "object_id": str(uuid.uuid4()),
        "id": str(world["bob"].id),
        "content_type_id": "1",
        "quest_type": "rank",
        "assignment_id": "987654",
        "item_id": "987654",
        "dataset_id": "987654",
        "hold_id": "987654",
        "version_id": "987654",
        "filter_id": "987654",
        "job_id": "987654",
        "export_format": "sft",
        "app_label": "arena",
        "url": "no-such-admin-page/",
    }


def callers(world: dict[str, Any]) -> dict[str, Client]:
    """A client per caller: anonymous, bob, alice, and a script holding bob's API token."""
    bob, alice = Client(), Client()
    bob.force_login(world["bob"])
    alice.force_login(world["alice"])
    token = Client(headers={"Authorization": f"Bearer {world['raw']}"})
    return {"anonymous": Client(), "bob": bob, "alice": alice, "token": token}
