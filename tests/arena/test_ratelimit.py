"""Rate limits: counted only when every limit passes, per IPv6 /64, and per the peer's address
unless a configured proxy vouches for the client's (the web process as the Procfile runs it)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings
from django.test import Client

from arena import ratelimit
from arena.services import ip_hash
from ludus_dev.fake_upstream import free_port
from tests.helpers import ROOT, database_url_for_tests


def test_a_refused_user_spends_nothing_of_the_shared_ip_budget(db: None) -> None:
    limits = [("user:1", 2), ("ip:shared", 4)]
    assert ratelimit.hit("t", limits) and ratelimit.hit("t", limits)
    for _ in range(10):  # over the user's own limit: refused, and the IP bucket stays at 2
        assert not ratelimit.hit("t", limits)
    assert ratelimit.hit("t", [("user:2", 2), ("ip:shared", 4)])
    assert ratelimit.hit("t", [("user:3", 2), ("ip:shared", 4)])
    assert not ratelimit.hit("t", [("user:4", 2), ("ip:shared", 4)])  # the IP's own limit


def test_it_skips_empty_identities_and_limits_of_zero(db: None) -> None:
    for _ in range(5):
        assert ratelimit.hit("t", [("", 1), ("user:1", 0)])


def test_ipv6_addresses_of_one_64_share_a_bucket() -> None:
    assert ip_hash("2001:db8:1:2::1") == ip_hash("2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert ip_hash("2001:db8:1:2::1") != ip_hash("2001:db8:1:3::1")
    assert ip_hash("::ffff:198.51.100.7") == ip_hash("198.51.100.7")
    assert ip_hash("198.51.100.7") != ip_hash("198.51.100.8")
    assert ip_hash("") == ""


@pytest.mark.django_db
def test_battles_from_one_ipv6_64_meet_its_per_ip_limit(settings: Any) -> None:
    settings.ARENA_BATTLES_PER_MINUTE = 0
    settings.ARENA_BATTLES_PER_MINUTE_PER_IP = 3
    statuses = [
        Client(REMOTE_ADDR=f"2001:db8:aa:bb::{i:x}")
        .post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true")
        .status_code
        for i in range(1, 6)
    ]
    # No models are up (503), but the limit is counted first: the fourth address is refused.
    assert statuses == [503, 503, 503, 429, 429]
    other = Client(REMOTE_ADDR="2001:db8:aa:bc::1")
    assert other.post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true").status_code == 503


def test_a_user_over_their_limit_leaves_the_ip_budget_to_others(
    settings: Any, bob: Any, charlie: Any
) -> None:
    settings.ARENA_BATTLES_PER_MINUTE = 1
    settings.ARENA_BATTLES_PER_MINUTE_PER_IP = 3
    eager = Client(REMOTE_ADDR="203.0.113.9")
    eager.force_login(bob)
    statuses = [
        eager.post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true").status_code
        for _ in range(6)
    ]
    # No models are up (503) once the limits passed; bob's own limit refuses the rest (429).
    assert statuses == [503] + [429] * 5
    # Two more visitors behind the same address still get past the limits.
    neighbour = Client(REMOTE_ADDR="203.0.113.9")
    neighbour.force_login(charlie)
    assert neighbour.post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true").status_code == 503
    anonymous = Client(REMOTE_ADDR="203.0.113.9")
    assert anonymous.post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true").status_code == 503
    assert anonymous.post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true").status_code == 429


def _web_command() -> str:
    procfile = (ROOT / "Procfile").read_text()
    match = re.search(r"^web:\s*(.+)$", procfile, re.M)
    assert match
    return match.group(1)


@pytest.fixture
def web_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """The Procfile's web process on the test database, with the environment the test names."""
    port = free_port()
    env = dict(os.environ)
    for name in ("LUDUS_BEHIND_PROXY", "LUDUS_TRUSTED_PROXIES", "FORWARDED_ALLOW_IPS"):
        env.pop(name, None)
    env |= {
        "PATH": f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": django_settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_CONN_MAX_AGE": "0",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "LUDUS_ARENA_BATTLES_PER_MINUTE": "0",
        "LUDUS_ARENA_BATTLES_PER_MINUTE_PER_IP": "3",
        **request.param,
    }
    proc = subprocess.Popen(
        ["/bin/sh", "-c", "exec " + _web_command()],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/healthz", timeout=1)
            break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the web process did not start")
        time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _battles_with_rotating_forwarded_for(url: str, count: int) -> list[int]:
    token = "a" * 32  # a CSRF secret of our own, sent as cookie and header
    statuses = []
    with httpx.Client(base_url=url, cookies={"csrftoken": token}) as client:
        for i in range(count):
            response = client.post(
                "/battles/",
                data={"prompt": "hi"},
                headers={"X-CSRFToken": token, "HX-Request": "true",
                         "X-Forwarded-For": f"198.51.100.{i + 1}"},
            )  # fmt: skip
            statuses.append(response.status_code)
    return statuses


UNTRUSTED = [{}, {"LUDUS_BEHIND_PROXY": "1", "LUDUS_TRUSTED_PROXIES": "10.0.0.1"}]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("web_server", UNTRUSTED, indirect=True, ids=["direct", "other-proxy"])
def test_a_forwarded_for_header_from_an_untrusted_peer_changes_no_bucket(web_server: str) -> None:
    # No models are up: each battle gets 503 after the rate limit counted it; the fourth, 429.
    assert _battles_with_rotating_forwarded_for(web_server, 5) == [503, 503, 503, 429, 429]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "web_server", [{"LUDUS_BEHIND_PROXY": "1", "LUDUS_TRUSTED_PROXIES": "127.0.0.1"}],
    indirect=True,
)  # fmt: skip
def test_a_trusted_proxy_names_the_client_whose_bucket_counts(web_server: str) -> None:
    assert _battles_with_rotating_forwarded_for(web_server, 5) == [503] * 5


def _voted(client: Client, choice: str = "a") -> Any:
    from arena.models import Battle
    from tests.arena.helpers import finish_turn, last_turn

    assert client.post("/battles/", {"prompt": "hello"}, HTTP_HX_REQUEST="true").status_code == 200
    battle = Battle.objects.order_by("-created_at").first()
    assert battle is not None
    turn = last_turn(battle)
    finish_turn(turn)
    data = {"turn": turn.id, "choice": choice}
    return client.post(f"/b/{battle.id}/vote/", data, HTTP_HX_REQUEST="true"), battle, turn


def test_it_refuses_votes_past_the_daily_budget_and_counts_only_stored_votes(
    settings: Any, bob: Any, arena_models: list[Any]
) -> None:
    settings.ARENA_VOTES_PER_DAY = 2
    client = Client()
    client.force_login(bob)
    first, battle, turn = _voted(client)
    assert first.status_code == 200
    again = client.post(
        f"/b/{battle.id}/vote/", {"turn": turn.id, "choice": "b"}, HTTP_HX_REQUEST="true"
    )
    assert again.status_code == 409  # refused: the budget is given back
    assert _voted(client)[0].status_code == 200
    spent, battle, _turn = _voted(client)
    assert spent.status_code == 429
    assert spent.content.decode() == (
        "You have cast today's 2 votes, the daily budget. It renews at midnight UTC."
    )
    assert not battle.votes.exists()
    assert 'data-testid="votes-left">0<' in client.get("/quests/").content.decode()
    # Another voter has their own budget.
    other = Client()
    assert _voted(other)[0].status_code == 200
