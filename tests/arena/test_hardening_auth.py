"""Password guessing and token guessing are throttled: log-in and sign-up attempts per client
address and per username, requests with API tokens (bad ones included) per address."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from tests.helpers import rate_window_fresh

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-pass-123"


@pytest.fixture(autouse=True)
def _one_window() -> None:
    rate_window_fresh()


def _address() -> str:
    """A client address of this test alone (the limits' windows outlive a test)."""
    return f"198.51.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


@override_settings(AUTH_ATTEMPTS_PER_MINUTE_PER_IP=100, AUTH_ATTEMPTS_PER_MINUTE_PER_USERNAME=3)
def test_it_throttles_log_in_attempts_per_username() -> None:
    name = f"victim-{uuid.uuid4().hex[:8]}"
    get_user_model().objects.create_user(name, password=PASSWORD)
    codes = [
        Client(REMOTE_ADDR=_address())
        .post("/accounts/login/", {"username": name, "password": "wrong"})
        .status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]  # from four addresses: the username is the limit
    # The right password does not get through the limit either (no oracle).
    right = Client(REMOTE_ADDR=_address()).post(
        "/accounts/login/", {"username": name.upper(), "password": PASSWORD}
    )
    assert right.status_code == 429


@override_settings(AUTH_ATTEMPTS_PER_MINUTE_PER_IP=3, AUTH_ATTEMPTS_PER_MINUTE_PER_USERNAME=100)
def test_it_throttles_log_in_and_sign_up_attempts_per_address() -> None:
    client = Client(REMOTE_ADDR=_address())
    codes = [
        client.post(
            "/accounts/login/", {"username": f"u{k}-{uuid.uuid4().hex[:6]}", "password": "x"}
        ).status_code
        for k in range(3)
    ]
    signup = client.post(
        "/accounts/signup/",
        {"username": f"new-{uuid.uuid4().hex[:6]}", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert codes == [200, 200, 200] and signup.status_code == 429
    assert not get_user_model().objects.filter(username__startswith="new-").exists()
    assert Client(REMOTE_ADDR=_address()).get("/accounts/login/").status_code == 200


@override_settings(ARENA_EXPORTS_PER_MINUTE_PER_IP=3)
def test_it_throttles_bad_api_tokens_per_address() -> None:
    client = Client(REMOTE_ADDR=_address())
    codes = [
        client.get(
            "/leaderboard/1/export.json", HTTP_AUTHORIZATION=f"Bearer ludus_{uuid.uuid4().hex}"
        ).status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]
