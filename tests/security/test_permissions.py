"""Every URL pattern of the site, asked by four callers: an anonymous visitor, a contributor (bob),
staff (alice) and a script holding bob's API token. The tables below say what each gets; a new URL
fails the walk until its row is written here, so that nobody adds a page without deciding who may
open it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.security.walk import battle_of, callers, path_values, url_fill, url_patterns

pytestmark = pytest.mark.django_db

CALLERS = ("anonymous", "bob", "alice", "token")
LOGIN = "login"  # 302 to /accounts/login/
ADMIN_LOGIN = "admin-login"  # 302 to /admin/login/
HEALTH = "health"  # 200 or 503 (whether a worker serves every queue), as health says
Expected = int | str

# GET, per caller (anonymous, bob, alice, bob's API token). {battle_id} is bob's battle: finished,
# not voted on, with an image; {generation_id} one of its answers.
GET: dict[str, tuple[Expected, Expected, Expected, Expected]] = {
    "": (200, 200, 200, 200),
    "side-by-side/": (200, 200, 200, 200),
    "chat/": (200, 200, 200, 200),
    "tools/": (200, 200, 200, 200),  # the tools arena: a page anyone may open, like the arena
    "battles/": (405, 405, 405, 405),
    "b/<uuid:battle_id>/": (404, 200, 404, 404),
    "b/<uuid:battle_id>/continue/": (405, 405, 405, 405),
    "b/<uuid:battle_id>/regenerate/": (405, 405, 405, 405),
    "b/<uuid:battle_id>/vote/": (405, 405, 405, 405),
    "b/<uuid:battle_id>/flag/": (405, 405, 405, 405),
    "b/<uuid:battle_id>/image/": (404, 200, 404, 404),
    "b/<uuid:battle_id>/answer/<uuid:generation_id>/": (404, 200, 404, 404),
    "s/<uuid:battle_id>/": (404, 404, 404, 404),  # shared only once voted on
    "status/": (ADMIN_LOGIN, ADMIN_LOGIN, 200, ADMIN_LOGIN),
    "accounts/signup/": (200, 200, 200, 200),
    "accounts/tokens/": (LOGIN, 200, 200, LOGIN),
    "accounts/tokens/<int:token_id>/revoke/": (LOGIN, 405, 405, LOGIN),
    "leaderboard/": (200, 200, 200, 200),
    "leaderboard/<int:snapshot_id>/export.json": (401, 200, 200, 200),
    "leaderboard/<int:snapshot_id>/export.csv": (401, 200, 200, 200),
    "leaderboard/<int:snapshot_id>/battles.jsonl": (401, 200, 200, 200),
    "healthz": (HEALTH, HEALTH, HEALTH, HEALTH),
    "metrics": (403, 403, 200, 403),  # with a metrics token configured (an API token is not it)
    "accounts/login/": (200, 200, 200, 200),
    "accounts/logout/": (405, 405, 405, 405),
    "accounts/password_change/": (LOGIN, 200, 200, LOGIN),
    "accounts/password_change/done/": (LOGIN, 200, 200, LOGIN),
    "accounts/password_reset/": (200, 200, 200, 200),
    "accounts/password_reset/done/": (200, 200, 200, 200),
    "accounts/reset/<uidb64>/<token>/": (200, 200, 200, 200),  # "the link is invalid"
    "accounts/reset/done/": (200, 200, 200, 200),
    # Quests: contributors only; the game's rules and boards are public. {assignment_id} and
    # {item_id} name nothing of the caller's.
    "quests/": (LOGIN, 200, 200, LOGIN),
    "quests/rules/": (200, 200, 200, 200),
    "quests/leaderboard/": (200, 200, 200, 200),
    "quests/quality/": (ADMIN_LOGIN, ADMIN_LOGIN, 200, ADMIN_LOGIN),  # staff: answer quality
    "quests/<slug:quest_type>/": (LOGIN, 200, 200, LOGIN),
    "quests/a/<int:assignment_id>/submit/": (LOGIN, 405, 405, LOGIN),
    "quests/a/<int:assignment_id>/skip/": (LOGIN, 405, 405, LOGIN),
    "quests/i/<int:item_id>/draft/": (LOGIN, 405, 405, LOGIN),
    "quests/i/<int:item_id>/image/": (LOGIN, 404, 404, LOGIN),
    "me/": (LOGIN, 200, 200, LOGIN),
    "me/leaderboard/": (LOGIN, 405, 405, LOGIN),
    # Datasets: staff build and freeze them; downloads take a session or a token (the IDs name
    # nothing, so whoever gets past the gate meets 404).
    # Voter anomalies: staff review the voters held out of the leaderboards.
    "staff/anomalies/": (ADMIN_LOGIN, ADMIN_LOGIN, 200, ADMIN_LOGIN),
    "staff/anomalies/<int:hold_id>/decide/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    "datasets/": (ADMIN_LOGIN, ADMIN_LOGIN, 200, ADMIN_LOGIN),
    "datasets/review/": (ADMIN_LOGIN, ADMIN_LOGIN, 200, ADMIN_LOGIN),
    "datasets/review/<int:item_id>/decide/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    "datasets/review/<int:item_id>/change/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    "datasets/review/bulk/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    "datasets/review/filters/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    "datasets/review/filters/<int:filter_id>/delete/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    "datasets/<int:dataset_id>/freeze/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    "datasets/<int:dataset_id>/preview/": (ADMIN_LOGIN, ADMIN_LOGIN, 404, ADMIN_LOGIN),
    "datasets/v/<int:version_id>/": (ADMIN_LOGIN, ADMIN_LOGIN, 404, ADMIN_LOGIN),
    "datasets/v/<int:version_id>/datasheet.md": (ADMIN_LOGIN, ADMIN_LOGIN, 404, ADMIN_LOGIN),
    "datasets/v/<int:version_id>/manifest.json": (401, 404, 404, 404),
    "datasets/v/<int:version_id>/delete/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    "datasets/v/<int:version_id>/resume/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    "datasets/v/<int:version_id>/augment/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    "datasets/v/<int:version_id>/augmentations/<int:job_id>.jsonl": (
        ADMIN_LOGIN,
        ADMIN_LOGIN,
        404,
        ADMIN_LOGIN,
    ),
    "datasets/v/<int:version_id>/<slug:export_format>.jsonl": (401, 404, 404, 404),
    "datasets/v/<int:version_id>/<slug:export_format>.parquet": (401, 404, 404, 404),
    # Fine-tuning jobs: staff with the job permissions (a superuser here); {job_id} names none.
    "training/": (ADMIN_LOGIN, ADMIN_LOGIN, 200, ADMIN_LOGIN),
    "training/launch/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    "training/<int:job_id>/": (ADMIN_LOGIN, ADMIN_LOGIN, 404, ADMIN_LOGIN),
    "training/<int:job_id>/cancel/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    "training/<int:job_id>/resume/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    "training/<int:job_id>/promote/": (ADMIN_LOGIN, ADMIN_LOGIN, 405, ADMIN_LOGIN),
    # The researcher API: a token (with the scope) or nothing, a session included; its schema is
    # public.
    "api/v1/": (404, 404, 404, 404),
    "api/v1/openapi.json": (200, 200, 200, 200),
    "api/v1/leaderboard": (401, 401, 401, 200),
    "api/v1/leaderboard/snapshots": (401, 401, 401, 200),
    "api/v1/leaderboard/snapshots/<snapshot_id>": (401, 401, 401, 200),
    "api/v1/battles": (401, 401, 401, 200),
    "api/v1/datasets/versions": (401, 401, 401, 200),
    "api/v1/datasets/versions/<version_id>": (401, 401, 401, 404),
    "api/v1/datasets/versions/<version_id>/files/<export_format>": (401, 401, 401, 404),
    # The admin's own entry and exit; every other admin URL follows ADMIN_RULE.
    "admin/login/": (200, 200, 302, 200),  # staff already in: on to the index
    "admin/logout/": (302, 302, 405, 302),  # to the admin's index, which asks for a login
}

# POST (without CSRF enforcement: test_hostile_inputs covers CSRF), per caller, on a fresh battle
# of bob's each time. The owner is asked last, after the others were refused.
POST: dict[str, tuple[dict[str, Any], tuple[Expected, Expected, Expected, Expected]]] = {
    "battles/": ({"prompt": "hello"}, (302, 302, 302, 302)),
    "b/<uuid:battle_id>/continue/": ({"prompt": "more"}, (404, 302, 404, 404)),
    "b/<uuid:battle_id>/regenerate/": ({}, (404, 302, 404, 404)),
    "b/<uuid:battle_id>/vote/": ({"turn": "{turn_id}", "choice": "a"}, (404, 302, 404, 404)),
    "b/<uuid:battle_id>/flag/": ({"reason": "spam"}, (404, 302, 404, 404)),
    "accounts/tokens/": ({"name": "more"}, (LOGIN, 200, 200, LOGIN)),
    "accounts/tokens/<int:token_id>/revoke/": ({}, (LOGIN, 302, 404, LOGIN)),
    "staff/anomalies/<int:hold_id>/decide/": (
        {"decision": "release"},
        (ADMIN_LOGIN, ADMIN_LOGIN, 404, ADMIN_LOGIN),
    ),
    "datasets/v/<int:version_id>/resume/": ({}, (ADMIN_LOGIN, ADMIN_LOGIN, 404, ADMIN_LOGIN)),
    "datasets/v/<int:version_id>/augment/": ({}, (ADMIN_LOGIN, ADMIN_LOGIN, 404, ADMIN_LOGIN)),
    "training/launch/": ({"method": "sft"}, (ADMIN_LOGIN, ADMIN_LOGIN, 400, ADMIN_LOGIN)),
    "training/<int:job_id>/cancel/": ({}, (ADMIN_LOGIN, ADMIN_LOGIN, 404, ADMIN_LOGIN)),
    "training/<int:job_id>/resume/": ({}, (ADMIN_LOGIN, ADMIN_LOGIN, 404, ADMIN_LOGIN)),
    "training/<int:job_id>/promote/": ({}, (ADMIN_LOGIN, ADMIN_LOGIN, 404, ADMIN_LOGIN)),
}

# The admin: staff only. Others are sent to its login page; staff get a page, a redirect within
# the admin, 404 for an object that does not exist or 403 where the admin lets nobody in (adding
# generations, deleting ledger entries), never a login page or an error.
ADMIN_PREFIX = "admin/"


def _mismatch(response: Any, expected: Expected, where: str) -> list[str]:
    """[] when the response is what the table expects, else one line saying what came instead."""
    status, location = response.status_code, response.get("Location", "")
    if expected == LOGIN:
        ok = status == 302 and location.startswith("/accounts/login/")
    elif expected == ADMIN_LOGIN:
        ok = status == 302 and location.startswith("/admin/login/")
    elif expected == HEALTH:
        ok = status in {200, 503}
    else:
        ok = status == expected
    return [] if ok else [f"{where}: expected {expected}, got {status} {location}".rstrip()]


def test_every_url_pattern_has_an_entry() -> None:
    routes = {r for r in url_patterns() if not r.startswith(ADMIN_PREFIX) or r in GET}
    assert routes == set(GET), (
        f"without an entry: {sorted(routes - set(GET))}; gone: {sorted(set(GET) - routes)}"
    )
    assert set(POST) <= set(GET)


def test_every_url_answers_each_caller_as_its_table_says(world: dict[str, Any]) -> None:
    clients = callers(world)
    battle = battle_of(world["bob"])
    values = path_values(world, battle)
    wrong: list[str] = []
    for route in url_patterns():
        path = url_fill(route, values)
        if route in GET:
            for caller, expected in zip(CALLERS, GET[route], strict=True):
                wrong += _mismatch(clients[caller].get(path), expected, f"GET {path} as {caller}")
            continue
        assert route.startswith(ADMIN_PREFIX), f"{route} has no entry"
        for caller in CALLERS:
            response = clients[caller].get(path)
            where = f"GET {path} as {caller}"
            if caller != "alice":
                wrong += _mismatch(response, ADMIN_LOGIN, where)
            elif response.status_code not in {200, 302, 403, 404} or response.get(
                "Location", ""
            ).startswith("/admin/login/"):
                wrong.append(f"{where}: got {response.status_code} {response.get('Location', '')}")
    assert not wrong, "\n".join(wrong)


def test_every_post_answers_each_caller_as_its_table_says(world: dict[str, Any]) -> None:
    clients = callers(world)
    order = ("anonymous", "alice", "token", "bob")  # the owner last: the others change nothing
    wrong: list[str] = []
    for route, (data, expected) in POST.items():
        battle = battle_of(world["bob"])
        values = path_values(world, battle)
        path = url_fill(route, values)
        form = {k: v.format(**values) if isinstance(v, str) else v for k, v in data.items()}
        for caller in order:
            response = clients[caller].post(path, form)
            wrong += _mismatch(
                response, expected[CALLERS.index(caller)], f"POST {path} as {caller}"
            )
    assert not wrong, "\n".join(wrong)


def test_the_healthz_details_are_for_staff_only(world: dict[str, Any]) -> None:
    for caller, client in callers(world).items():
        body = client.get("/healthz").json()
        assert (set(body) == {"status"}) == (caller != "alice"), caller
